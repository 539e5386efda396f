"""Doctor's last check: what the build fetches, asked of the engine that runs it with small
probe builds (probe.py): the frontend of a ``# syntax=`` line, every FROM image, and the
package index from a RUN on the base image, without and with the host's CA."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union
from collections.abc import Mapping

from ragbuild.buildx import builder_driver
from ragbuild.errors import RagbuildError
from ragbuild.run.command import Result

if TYPE_CHECKING:
    from ragbuild import pip_config, probe
from ragbuild.commands.findings import OK, PROBLEM, WARN, Doctor, Finding, _docker


FROM_RE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(?P<image>\S+)", re.I | re.M)


ARG_RE = re.compile(r"^\s*ARG\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:=(?P<value>\S*))?", re.I | re.M)


def from_images(text: str, build_args: Mapping[str, str]) -> list[tuple[str, Optional[str]]]:
    """``(image, arg)`` for each image the Dockerfile's FROM lines name, in order, once each:
    ARG defaults (before the first FROM) and --build-arg values substituted, ``arg`` the build
    arg that named it (``FROM ${PYTHON_IMAGE}``: ``PYTHON_IMAGE``) or None; stage names
    (``FROM builder``) and ``scratch`` left out."""
    values = {m["name"]: m["value"] or "" for m in ARG_RE.finditer(text.split("\nFROM", 1)[0])}
    values.update(build_args)
    stages = {m.lower() for m in re.findall(r"^\s*FROM\s+.*\s+AS\s+(\S+)", text, re.I | re.M)}
    found: list[tuple[str, Optional[str]]] = []
    for match in FROM_RE.finditer(text):
        named = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", match["image"])
        image = re.sub(
            r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: values.get(m[1], ""), match["image"]
        )
        if (
            image
            and image.lower() not in stages
            and image != "scratch"
            and image not in [seen for seen, _ in found]
        ):
            found.append((image, named[1] if named else None))
    return found


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class IndexSetup:
    """What the index probes pass, as the build passes it (steps.facts.host_network): ``host``, the
    CA and index secrets the build gets; ``ca``, the CA bundle the second probe gets: the
    build's, or with ``--no-host-ca`` (``off``) or a bundle the build cannot pass the one the
    host names, so that doctor can say whether the build needs it; ``ca_problem``: why the
    build gets no CA although the host names one (its warning)."""

    host: pip_config.HostNetwork
    ca: Optional[pip_config.HostCA]
    off: bool
    ca_problem: Optional[str] = None


def index_setup(doc: Doctor) -> IndexSetup:
    from ragbuild import pip_config

    host = doc.plan.host if doc.plan is not None else pip_config.HostNetwork()
    off = doc.options.no_host_ca
    if host.ca is not None:
        return IndexSetup(host, host.ca, off)
    explicit = doc.options.host_ca or doc.config.host_ca
    source = "--host-ca" if doc.options.host_ca else "setup.cfg host-ca"
    ca = pip_config.host_ca(doc.environ, given=explicit, given_source=source)
    problem = pip_config.check_ca(ca) if ca is not None else None
    if problem is not None:
        return IndexSetup(host, None, off, None if off else problem.message)
    return IndexSetup(host, ca, off)


def _build_args(doc: Doctor) -> dict[str, str]:
    """The build's build args (the plan's: an index build arg with credentials is in the index
    secret instead), or the flags' when the plan failed."""
    if doc.plan is not None:
        return dict(doc.plan.build_args)
    from ragbuild.plan import parse_build_arg

    found = {}
    for raw in doc.options.build_args:
        try:
            key, value = parse_build_arg(raw)
        except RagbuildError:
            continue
        found[key] = value
    return found


def _builder(doc: Doctor) -> tuple[bool, Optional[str], bool]:
    """``(buildx, builder, sees_local)``: whether the build runs ``docker buildx build`` and on
    which builder (None: the daemon's through ``docker build``, or buildx's current one), and
    whether that builder sees the daemon's images (the docker driver does; a docker-container
    or remote builder pulls every FROM itself)."""
    if doc.plan is None or not doc.plan.buildx:
        return False, None, True
    from ragbuild.buildx import builder_inspect_command

    builder = doc.options.builder
    inspected = doc.runner.run(builder_inspect_command(builder))
    driver = builder_driver(inspected.stdout) if inspected.ok else None
    return True, builder, driver == "docker"


def check_engine(doc: Doctor) -> list[Finding]:
    """What the build fetches, asked of the engine that runs it with probe builds (probe.py):
    the frontend of a ``# syntax=`` line or ``BUILDKIT_SYNTAX``, every FROM image the engine
    does not have (``docker image inspect`` on the daemon, when the builder sees its images),
    and the package index, from a RUN on the build's base image without and with the host's
    CA. The probes run at once (``Runner.run_all``) in a directory of doctor's own."""
    import tempfile

    from ragbuild import probe

    checked = ("dockerfile frontend", "base image", "package index")
    why = (
        "no docker daemon"
        if not doc.daemon
        else "no BuildKit (above)"
        if not doc.buildkit
        else "no such builder (above)"
        if doc.builder_missing
        else None
    )
    text = _read(doc.options.file)
    if why is None and text is None:
        why = f"{doc.options.file} cannot be read (above)"
    if why is not None:
        return [Finding(PROBLEM, check, f"not checked: {why}") for check in checked]
    assert text is not None
    build_args = _build_args(doc)
    frontend = probe.syntax_frontend(text, build_args)
    images = from_images(text, build_args)
    buildx, builder, sees_local = _builder(doc)
    local = {
        image: sees_local
        and doc.runner.run(_docker("image", "inspect", "--format", "{{.Id}}", image)).ok
        for image, _ in images
    }
    setup = index_setup(doc)
    base = images[0][0] if images else None

    directory = tempfile.mkdtemp(prefix="ragbuild-doctor-")
    nonce = os.path.basename(directory)
    probes: dict[Union[str, tuple[str, str]], probe.Probe] = {}  # "index", ("image", name)
    probes["frontend"] = probe.syntax_probe(text, build_args)
    for number, (image, _) in enumerate(images):
        if not local[image]:
            probes["image", image] = probe.image_probe(number, image)
    if base is not None:
        probes["index"] = probe.index_probe(base, build_args, None, nonce, setup.host)
        if setup.ca is not None:
            probes["index-ca"] = probe.index_probe(
                base, build_args, setup.ca.path, nonce, setup.host
            )
    try:
        for one in probes.values():
            one.write(directory)
        network = probe.network_words(doc.options.docker_options)
        results = dict(
            zip(
                probes,
                doc.runner.run_all(
                    [one.command(directory, buildx, builder, network) for one in probes.values()]
                ),
            )
        )
        answers = {
            key: probe.read_answer(probes[key].answer_dir(directory))
            for key in ("index", "index-ca")
            if key in probes
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    found = [_frontend_finding(frontend, results["frontend"])]
    failed = set()
    for image, arg in images:
        line = _image_finding(image, arg, local[image], results.get(("image", image)))
        failed |= {image} if line.status == PROBLEM else set()
        found.append(line)
    if not images:
        found.append(Finding(OK, "base image", "none (FROM scratch or stages only)"))
    if base is None:
        return found + [Finding(OK, "package index", "not checked: no base image to run pip on")]
    if base in failed:
        return found + [
            Finding(
                PROBLEM,
                "package index",
                f"not checked: the engine cannot get the base image {base} (above)",
            )
        ]
    index = setup.host.index.env if setup.host.index is not None else ()
    url = probe.index_url({**build_args, **dict(index)})
    found += _index_findings(
        probe.index_name(url),
        base,
        results["index"],
        answers["index"],
        answers.get("index-ca"),
        setup,
    )
    return found


def _frontend_finding(frontend: Optional[tuple[str, str]], result: Result) -> Finding:
    """The frontend probe's line: ``frontend`` is ``(image, source)`` as doctor reads the
    Dockerfile (probe.syntax_frontend); the probe build's own failure names the image BuildKit
    tried."""
    from ragbuild import probe

    if result.ok:
        if frontend is None:
            return Finding(OK, "dockerfile frontend", "the engine's own (no `# syntax=` line)")
        return Finding(
            OK,
            "dockerfile frontend",
            f"{frontend[0]} ({frontend[1]}): the engine has it or pulls it",
        )
    output = result.stdout + result.stderr
    said = probe.build_reason(output)
    image, source = frontend or (None, "the Dockerfile's header")
    image = probe.frontend_in(output) or image
    if image is None:
        return Finding(
            PROBLEM,
            "dockerfile frontend",
            f"the engine cannot read the Dockerfile's "
            f"first lines ({said}); fix: the parser "
            "directives at the top of "
            "the Dockerfile",
        )
    fix = (
        f"drop --build-arg {probe.SYNTAX_ARG}"
        if source.startswith("--build-arg")
        else "remove the `# syntax=` line"
    )
    return Finding(
        PROBLEM,
        "dockerfile frontend",
        f"the engine cannot get {image}, the frontend "
        f"{source} names ({said}); fix: {fix} (the "
        "engine's built-in frontend then reads the "
        "Dockerfile, RUN --mount included), or docker "
        f"pull/load {image} on the engine",
    )


def _image_finding(
    image: str, arg: Optional[str], local: bool, result: Optional[Result]
) -> Finding:
    if local:
        return Finding(OK, "base image", f"{image} is available to the engine (local)")
    if result is not None and result.ok:
        return Finding(
            OK,
            "base image",
            f"{image} is not local; the engine pulled it (the build finds it in its cache)",
        )
    from ragbuild import probe

    said = probe.build_reason(result.stdout + result.stderr) if result is not None else "?"
    other = f", or --build-arg {arg}=<an image the engine has>" if arg else ""
    return Finding(
        PROBLEM,
        "base image",
        f"the engine does not have {image} and cannot pull it "
        f"({said}); fix: docker pull {image} (or docker load "
        f"it) on the engine{other}",
    )


#: What a package index the engine cannot reach needs, after the probe's own reason.
INDEX_FIX = (
    "fix: the proxy the build's RUN steps use (proxies in ~/.docker/config.json, or "
    "--build-arg HTTPS_PROXY=...), a reachable index (--build-arg PIP_INDEX_URL=..., "
    "--host-index); see docs/troubleshooting.md"
)


def _index_findings(
    name: str,
    base: str,
    result: Result,
    plain: probe.Answer,
    with_ca: Optional[probe.Answer],
    setup: IndexSetup,
) -> list[Finding]:
    """The package index's line from the probes' answers (probe.Answer: without the CA,
    ``with_ca`` with it, None when the CA was not probed)."""
    check = "package index"
    ca, off = setup.ca, setup.off
    found = []
    if setup.ca_problem is not None:  # the build's warning
        found.append(Finding(WARN, "host CA", f"{setup.ca_problem}; the build gets no host CA"))
    if plain.status is None:
        from ragbuild import probe

        said = probe.build_reason(result.stdout + result.stderr)
        return found + [Finding(PROBLEM, check, f"the probe build on {base} failed: {said}")]
    if plain.ok:
        return found + [Finding(OK, check, f"{name} answers from the engine (pip on {base})")]
    if with_ca is not None and with_ca.ok:
        assert ca is not None  # probed with it
        if off:
            return found + [
                Finding(
                    PROBLEM,
                    check,
                    f"{name} answers only with the host's CA "
                    f"({ca.path}, from {ca.source}), which "
                    "--no-host-ca keeps from the build: "
                    f"{plain.reason()}; fix: drop --no-host-ca",
                )
            ]
        return found + [
            Finding(
                OK,
                check,
                f"{name} answers only with the host's CA: ragbuild "
                f"passes it ({ca.path}, from {ca.source}; "
                "--no-host-ca turns it off)",
            )
        ]
    if with_ca is not None and with_ca.status is None:
        return found + [
            Finding(
                PROBLEM,
                check,
                f"{name} does not answer without the host's CA "
                f"({plain.reason()}), and the probe with it "
                "failed; run doctor again",
            )
        ]
    if plain.untrusted and (with_ca is None or with_ca.untrusted):
        trust = (
            f"not even with the host's CA {ca.path} (from {ca.source})"
            if with_ca is not None and ca is not None
            else "and the host's CA cannot be passed (above)"
            if setup.ca_problem
            else "and the host names no CA bundle (PIP_CERT, pip's cert, "
            "REQUESTS_CA_BUNDLE, SSL_CERT_FILE)"
        )
        return found + [
            Finding(
                PROBLEM,
                check,
                f"{name}'s certificate is not trusted in the "
                f"build, {trust}: {plain.reason()}; a "
                "TLS-inspecting proxy? fix: --host-ca <its CA "
                "bundle>; see docs/troubleshooting.md",
            )
        ]
    said = (with_ca or plain).reason()
    return found + [
        Finding(PROBLEM, check, f"{name} unreachable from the engine: {said}; {INDEX_FIX}")
    ]
