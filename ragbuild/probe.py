"""Probe builds: doctor asks the engine that runs the build, with a build of its own, whether it
can get what the build will fetch, so that the answer is the engine's (its network, its proxy
settings, its registry mirrors, the builder's driver), not the shell's.

- the frontend a ``# syntax=`` parser directive or the ``BUILDKIT_SYNTAX`` build arg names:
  the probe is the Dockerfile's own header over ``FROM scratch`` (``syntax_frontend`` names it).
- every ``FROM`` image the engine does not have: a probe ``FROM image`` (the engine pulls it as
  the build would; the build then finds it in the engine's cache).
- the package index: ``python -m pip download --no-deps pip`` in a RUN on the build's base
  image, with the build's ``PIP_*`` build args, once without and once with the host's CA as the
  BuildKit secret ``pip_config.CA_SECRET_ID`` (set as ``PIP_CERT``/``SSL_CERT_FILE`` only when
  the mounted file exists, as the Dockerfile does).

Each probe is ``docker build --no-cache`` (BuildKit: ``DOCKER_BUILDKIT=1``, or ``docker buildx
build [--builder NAME]`` when the build uses buildx) of a Dockerfile in a directory of
doctor's own, whose output is exported with ``-o type=local`` / ``type=tar`` and never becomes an
image. The index probe's RUN always succeeds; it writes pip's exit status and output to files the
final ``FROM scratch`` stage exports, so a failed fetch is told from a build that could not run.
Pure but for ``Probe.write``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Optional
from collections.abc import Mapping, Sequence

from ragbuild.build_failure import PIP_PROXY
from ragbuild.pip_config import CA_SECRET_ID, INDEX_SECRET_ID, TRUE, HostNetwork
from ragbuild.run.command import Command, Kind
from ragbuild.run.redaction import URL_USERINFO_RE

#: A parser directive, as BuildKit reads one (frontend/dockerfile/parser/directives.go): the
#: directives are the comment lines of this form at the very top; the first other line (an
#: instruction, another comment, a blank line) ends them. Names are case-insensitive. Engines
#: differ beyond that (BuildKit 0.8, Docker 20.10: the last of two ``syntax`` lines wins and a
#: ``#!`` line ends them; 0.13: the first wins, a ``#!`` line is skipped, ``//`` comments count):
#: so this names the frontend in doctor's messages, and the probe (``syntax_probe``, the
#: Dockerfile's own header) is what asks the engine.
DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
#: The build arg that names the frontend, beating a ``# syntax=`` line
#: (https://docs.docker.com/build/buildkit/frontend/#custom-dockerfile-syntax).
SYNTAX_ARG = "BUILDKIT_SYNTAX"
#: Build args the index probe passes on: pip's index settings (the ones the Dockerfile's builder
#: stage declares) and BuildKit's predefined proxy args, which reach every RUN.
INDEX_ARGS = (
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_TRUSTED_HOST",
)
PROXY_ARGS = tuple(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (base, base.lower())
)
PYPI = "https://pypi.org/simple/"
#: What the index probe downloads: a small package (1.8 MB) every index that can install the
#: build's uv has, and what pip itself needs (a wheel mirror for pip installs carries it).
PROBE_PACKAGE = "pip"
#: How long pip waits for the index (seconds); it does not retry, a failure is the answer. Its
#: ``-vv`` is what makes it say why it could not fetch a page (a connection error is logged at
#: debug level only; without retries there is no "Retrying ... after ..." warning either).
PIP_TIMEOUT = 20

INDEX_DOCKERFILE = """\
FROM {base} AS probe
ARG {args}
RUN --mount=type=secret,id={secret} --mount=type=secret,id={index_secret} \\
    : {nonce}; \\
    mkdir /ragbuild-probe; \\
    ca=/run/secrets/{secret} index=/run/secrets/{index_secret}; \\
    if [ -s "$ca" ]; then export PIP_CERT="$ca" SSL_CERT_FILE="$ca"; fi; \\
    if [ -s "$index" ]; then \\
        while IFS= read -r line; do case "$line" in PIP_*=*) export "$line" ;; esac; done <"$index"; \\
    fi; \\
    python -m pip download -vv --no-deps --no-cache-dir --disable-pip-version-check --retries 0 \\
        --timeout {timeout} --dest /tmp/ragbuild-probe {package} >/ragbuild-probe/said 2>&1; \\
    echo $? >/ragbuild-probe/status; \\
    rm -rf /tmp/ragbuild-probe
FROM scratch
COPY --from=probe /ragbuild-probe /
"""


def syntax_frontend(text: str, build_args: Mapping[str, str]) -> Optional[tuple[str, str]]:
    """``(image, source)``: the frontend image the build runs its Dockerfile through, and what
    named it (``--build-arg BUILDKIT_SYNTAX`` or ``# syntax=``); None for the engine's built-in
    frontend. The value's first word is the image (BuildKit passes the rest to it)."""
    given = build_args.get(SYNTAX_ARG, "").strip()
    if given:
        return given.split()[0], f"--build-arg {SYNTAX_ARG}"
    for line in text.splitlines():
        match = DIRECTIVE_RE.match(line)
        if not match:
            break
        if match[1].lower() == "syntax":
            return match[2].split()[0], "the `# syntax=` line"
    return None


def index_url(build_args: Mapping[str, str]) -> str:
    """The index pip in the build fetches from first, with any credentials hidden: the first
    ``PIP_FIND_LINKS`` URL with ``PIP_NO_INDEX`` true, else ``PIP_INDEX_URL``, else PyPI."""
    links = build_args.get("PIP_FIND_LINKS", "").split()
    index = build_args.get("PIP_INDEX_URL", "").split()
    if links and build_args.get("PIP_NO_INDEX", "").strip().lower() in TRUE:
        url = links[0]
    else:
        url = index[0] if index else PYPI
    return URL_USERINFO_RE.sub(r"\g<scheme>***@", url)


def index_name(url: str) -> str:
    return "PyPI" if url == PYPI else url


@dataclass(frozen=True)
class Probe:
    """One probe build: ``dockerfile`` (its text), the docker build words it adds (secrets,
    build args) and where its answer lands (``output``: ``-o`` value)."""

    name: str  # file name in doctor's directory, and of its answer directory
    dockerfile: str
    words: tuple[str, ...] = ()
    answer: bool = False  # exports an answer directory (the index probe)
    env: tuple[tuple[str, str], ...] = ()  # added to docker's environment (the index secret's text)

    def write(self, directory: str) -> None:
        with open(
            os.path.join(directory, self.name + ".Dockerfile"), "w", encoding="utf-8"
        ) as handle:
            handle.write(self.dockerfile)

    def answer_dir(self, directory: str) -> str:
        return os.path.join(directory, self.name)

    def command(
        self,
        directory: str,
        buildx: bool = False,
        builder: Optional[str] = None,
        network: Sequence[str] = (),
    ) -> Command:
        """``docker build`` of this probe in ``directory`` (its context: nothing but the
        probe Dockerfiles), never cached, never an image: as the build runs, ``DOCKER_BUILDKIT=1
        docker build``, or ``docker buildx build`` (``buildx``) on ``builder`` (None: buildx's
        current one); ``network``: the build's own ``--network``/``--add-host`` words, which
        decide what a RUN reaches."""
        output = (
            f"type=local,dest={self.answer_dir(directory)}"
            if self.answer
            else "type=tar,dest=" + os.devnull
        )
        argv = ["docker", "buildx", "build"] if buildx else ["docker", "build"]
        argv += ["--builder", builder] if buildx and builder else []
        argv += [
            "-f",
            os.path.join(directory, self.name + ".Dockerfile"),
            "--no-cache",
            "-o",
            output,
            *self.words,
            *network,
            directory,
        ]
        env = (() if buildx else (("DOCKER_BUILDKIT", "1"),)) + self.env
        return Command(tuple(argv), env=env, check=False, kind=Kind.PROBE)


def header(text: str) -> str:
    """The Dockerfile's lines before its first instruction (its comments and blank lines, where
    parser directives are), each line as it is."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "//")):
            break
        lines.append(line + "\n")
    return "".join(lines)


def syntax_probe(text: str, build_args: Mapping[str, str]) -> Probe:
    """The Dockerfile's own header (its directives, whichever the engine reads: BuildKit's
    rules differ between versions) over ``FROM scratch``, with its ``BUILDKIT_SYNTAX``: the
    engine resolves the frontend they name, and needs nothing else. Without one, it is the
    engine's built-in frontend parsing two lines."""
    given = build_args.get(SYNTAX_ARG)
    words = ("--build-arg", f"{SYNTAX_ARG}={given}") if given is not None else ()
    return Probe("frontend", header(text) + "FROM scratch\n", words)


#: How BuildKit names the frontend image it could not get ("resolve image config for
#: docker-image://docker.io/docker/dockerfile:1.7", BuildKit 0.13; without the scheme, 0.8).
RESOLVE_RE = re.compile(r"resolve image config for (?:docker-image://)?(\S+?):?$", re.M)


def frontend_in(output: str) -> Optional[str]:
    """The frontend image a failed probe build could not resolve, as BuildKit names it."""
    match = RESOLVE_RE.search(output)
    return match[1] if match else None


def image_probe(number: int, image: str) -> Probe:
    return Probe(f"image-{number}", f"FROM {image}\n")


def index_probe(
    base: str,
    build_args: Mapping[str, str],
    ca_path: Optional[str],
    nonce: str,
    host: HostNetwork = HostNetwork(),
) -> Probe:
    """pip's fetch on ``base`` with the build's index and proxy build args and its index secret
    (``host.index``, exported as the Dockerfile's /opt/uv/host-env does); with the CA secret
    from ``ca_path`` when given. ``nonce``: words that make this RUN differ from every other
    (the probe's name and doctor's directory): BuildKit runs a step once for concurrent builds
    whose steps are the same (a secret is no part of a step's identity), so without it the
    probes with and without the CA, or two doctors at once, would share one answer."""
    words: list[str] = []
    for key in (*INDEX_ARGS, *PROXY_ARGS):
        if key in build_args:
            words += ["--build-arg", f"{key}={build_args[key]}"]
    if ca_path:
        words += ["--secret", f"id={CA_SECRET_ID},src={ca_path}"]
    words += HostNetwork(index=host.index).build_words()
    name = "index-ca" if ca_path else "index"
    text = INDEX_DOCKERFILE.format(
        base=base,
        args=" ".join(INDEX_ARGS),
        secret=CA_SECRET_ID,
        index_secret=INDEX_SECRET_ID,
        timeout=PIP_TIMEOUT,
        package=PROBE_PACKAGE,
        nonce=shlex.quote(f"{name} {nonce}"),
    )
    return Probe(name, text, tuple(words), answer=True, env=host.build_env())


@dataclass(frozen=True)
class Answer:
    """What the index probe's pip did: ``status`` (its exit status; None: the probe wrote no
    answer, the build itself failed) and ``said`` (its output)."""

    status: Optional[int]
    said: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def untrusted(self) -> bool:
        """pip refused the index's certificate (a TLS-inspecting proxy's, or a private CA's)."""
        return "CERTIFICATE_VERIFY_FAILED" in self.said or "SSLCertVerificationError" in self.said

    def reason(self) -> str:
        return pip_reason(self.said) if self.status is not None else ""


def read_answer(directory: str) -> Answer:
    """The index probe's answer from its export directory; ``Answer(None)`` when there is none."""
    try:
        with open(os.path.join(directory, "status"), encoding="utf-8") as handle:
            status = int(handle.read().strip())
        with open(os.path.join(directory, "said"), encoding="utf-8", errors="replace") as handle:
            said = handle.read()
    except (OSError, ValueError):
        return Answer(None)
    return Answer(status, said)


#: pip's words for why it could not fetch, most telling first: each pattern's ``reason`` group,
#: else its first group (or whole match), is the reason; the proxy's are build_failure's.
PIP_REASONS = (
    re.compile(r"\[SSL: CERTIFICATE_VERIFY_FAILED\] ([^'\"()]+?)(?: \(_ssl\.c:\d+\))?['\")]"),
    *PIP_PROXY,
    re.compile(r"(Failed to establish a new connection: [^'\"]+)"),
    re.compile(r"(Read timed out[^'\"]*)"),
    re.compile(r"Could not fetch URL \S+: (\d{3} [A-Za-z ]+Error[^-]*?) - skipping"),
    re.compile(r"(No matching distribution found for \S+)"),
    re.compile(r"^(?:/bin/sh: \d+: )?(python: not found)", re.M),
)


def pip_reason(said: str) -> str:
    """One line from pip's output saying why it failed: a known cause (``PIP_REASONS``), else
    its last ``ERROR:`` line, else its last line; URL credentials hidden."""
    return URL_USERINFO_RE.sub(r"\g<scheme>***@", _pip_reason(said))


def _pip_reason(said: str) -> str:
    for pattern in PIP_REASONS:
        match = pattern.search(said)
        named = match.groupdict() if match else {}
        if match and named.get("reason", "") is not None:  # None: ProxyError( without words
            reason = named.get("reason") or (match[1] if match.groups() else match[0])
            if "CERTIFICATE_VERIFY_FAILED" in pattern.pattern:
                return f"CERTIFICATE_VERIFY_FAILED: {reason}"
            return reason.strip()
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1]


#: The wrapping BuildKit and the docker clients put before the reason of a failed solve.
SOLVE_PREFIX_RE = re.compile(
    r"^(?:ERROR: |error: |failed to solve(?: with frontend \S+)?: |"
    r"rpc error: code = \w+ desc = |failed to create LLB definition: )+"
)


def build_reason(output: str) -> str:
    """The last line of a failed probe build's output, BuildKit's reason, without the wrapping
    ("failed to solve with frontend dockerfile.v0: failed to create LLB definition: failed to
    do request: Head ...: no such host" -> "failed to do request: Head ...: no such host")."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return SOLVE_PREFIX_RE.sub("", lines[-1]) if lines else "no output"


def network_words(docker_options: Sequence[str]) -> tuple[str, ...]:
    """The build's own ``--network`` and ``--add-host`` (after ``--``), which decide what a
    RUN reaches; the probes get them too."""
    words: list[str] = []
    options = list(docker_options)
    for i, word in enumerate(options):
        if word in ("--network", "--add-host") and i + 1 < len(options):
            words += [word, options[i + 1]]
        elif word.startswith(("--network=", "--add-host=")):
            words.append(word)
    return tuple(words)
