"""docker build options ragbuild does not model, passed to the build as given.

Two ways in: the named flags ``--secret SPEC`` and ``--ssh SPEC`` (repeatable, docker's own
spelling), and every word after ``--`` (``... --env dev -- --network host --target runtime``).
Both reach ``docker build`` / ``docker buildx build`` unchanged, before the context, and are shown
in the printed plan, the dry run and the metadata file. Pure: nothing here runs or reads (the
file test ``missing_inputs`` needs is given to it).

An option ragbuild already models, or one that would break what it promises (every tag built,
loaded into the local store, pushed and verified by ragbuild, no attestation index for
SageMaker), is refused (exit 2) with one line naming ragbuild's own flag or the reason.

Secret values never reach a command line: docker's ``--secret`` names a file (``src=``) or an
environment variable (``env=``) that the docker client reads itself
(https://docs.docker.com/build/building/secrets/), so the spec is safe to print. A message about a
bad spec names the field, never the spec's text.
"""

from __future__ import annotations

import os
import shlex
from typing import Callable, Optional
from collections.abc import Collection, Mapping, Sequence

from ragbuild.errors import UsageError
from ragbuild.pip_config import RESERVED_SECRET_IDS
from ragbuild.run.redaction import redact_argv

#: Fields of a ``--secret`` spec, as docker's client parses it (buildx build/secrets.go):
#: ``type=file|env``, ``id``, ``src``/``source``, ``env``.
SECRET_FIELDS = ("type", "id", "src", "source", "env")
SECRET_TYPES = ("file", "env")

_OWN = "ragbuild models it: use its own {flag} (before --)"
#: Options after ``--`` that are refused, with why. Long names; short ones are aliased below.
REFUSED = {
    "--tag": "ragbuild sets the tags (add one with its own --tag, before --)",
    "--push": "ragbuild pushes and verifies every tag itself (its own --push, before --)",
    "--output": "the image must land in the local image store (or be pushed by ragbuild's "
    "--push) for the summary, smoke test, scan and push that follow the build",
    "--load": "ragbuild chooses --load or --push for a buildx build",
    "--file": "ragbuild's -f names the Dockerfile: its context and git checks read that file",
    "--build-arg": "use ragbuild's --build-arg (before --): it keeps its reserved names and "
    "hides secret values in every printout",
    "--provenance": "ragbuild turns attestations off when it pushes (SageMaker refuses an image "
    "index with attestations)",
    "--sbom": "ragbuild turns attestations off when it pushes (SageMaker refuses an image index "
    "with attestations)",
    "--attest": "ragbuild turns attestations off when it pushes (SageMaker refuses an image "
    "index with attestations)",
    "--iidfile": "ragbuild writes the image ID file itself: the summary, smoke test, scan, push "
    "and metadata follow the image by that ID",
    "--quiet": "ragbuild shows the build's progress, and its stdout carries only ragbuild's "
    "result (the pinned digest): the image ID is in the summary and --metadata-file",
    **{
        flag: _OWN.format(flag=flag)
        for flag in (
            "--platform",
            "--builder",
            "--cache-from",
            "--cache-to",
            "--pull",
            "--no-cache",
            "--secret",
            "--ssh",
        )
    },
}
SHORT = {"-t": "--tag", "-o": "--output", "-f": "--file", "-q": "--quiet"}
#: docker build's options that take no value (``docker build --help``, buildx build's
#: ``--quiet``...), so the word after one is no value of it. ``--flag=false`` is one word.
FLAGS = ("--quiet", "-q", "--rm", "--force-rm", "--squash", "--compress", "--disable-content-trust")
#: Options of plain ``docker build`` that ``docker buildx build`` refuses ("unknown flag",
#: buildx 0.13.1; the classic ones it takes and ignores, ``--squash``, ``--compress``, ``--rm``,
#: ``--memory``..., are not among them): a build through buildx cannot pass them.
NOT_FOR_BUILDX = ("--disable-content-trust", "--stream")
#: Labels ragbuild sets itself (plan.py), refused as ``--label KEY=...`` after ``--``.
OWN_LABELS = ("org.opencontainers.image.created", "org.ragbuild.repository")


def secret_fields(spec: str) -> dict[str, str]:
    """A ``--secret`` spec's fields as docker's client reads them: comma-separated key=value, keys
    case-insensitive (buildx build/secrets.go lowercases them), ``source`` an alias of ``src``.
    A part without ``=`` has the key ``""``; ``check_secret`` refuses it."""
    fields = {}
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower() if eq else ""
        fields["src" if key == "source" else key] = value
    return fields


def check_secret(spec: str) -> str:
    """One ``--secret`` spec, checked the way docker's client reads it; the spec is returned
    unchanged. UsageError names the field that is wrong, never the text given."""
    for part in spec.split(","):
        key, eq, _ = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in SECRET_FIELDS:
            shown = f" {key!r}" if eq and key.isidentifier() else ""
            raise UsageError(
                f"--secret: unknown field{shown} (docker takes id=NAME with "
                "env=VARIABLE or src=PATH, and type=env|file); the value itself "
                "never goes on the command line"
            )
    fields = secret_fields(spec)
    if fields.get("type", "file") not in SECRET_TYPES:
        raise UsageError("--secret: type must be env or file")
    if not (fields.get("id") or fields.get("src") or fields.get("env")):
        raise UsageError(
            "--secret needs id=NAME (the RUN --mount=type=secret,id=NAME it serves) "
            "with env=VARIABLE or src=PATH"
        )
    if secret_id(fields) in RESERVED_SECRET_IDS:
        raise UsageError(
            f"--secret id={secret_id(fields)} is ragbuild's own (the host's CA "
            "bundle or index settings): use --host-ca PATH or --host-index, or give "
            "your secret another id"
        )
    return spec


def secret_id(fields: Mapping[str, str]) -> str:
    """The id docker gives a secret: ``id=``, else the base name of ``src=``, else ``env=``
    (https://docs.docker.com/reference/cli/docker/buildx/build/#secret: "defaults to base name
    of the src path")."""
    return fields.get("id") or os.path.basename(fields.get("src") or "") or fields.get("env", "")


def check_ssh(spec: str) -> str:
    """One ``--ssh`` spec: ``default``, or ``ID[=SOCKET|KEY[,KEY...]]``, as docker reads it."""
    ident = spec.split("=", 1)[0]
    if not ident or any(c.isspace() or c == "," for c in ident):
        raise UsageError(f"--ssh {spec!r} is not default or ID[=SOCKET|KEY[,KEY...]]")
    return spec


def missing_inputs(
    secrets: Sequence[str],
    ssh: Sequence[str],
    environ: Mapping[str, str],
    exists: Callable[[str], bool],
) -> Optional[str]:
    """Why docker's client would refuse to start the build over what a spec names, or None:
    a ``--secret`` ``src=`` file that does not exist ("failed to stat"), an ``--ssh`` socket or
    key path that does not exist, an ``--ssh`` without paths while ``SSH_AUTH_SOCK`` is unset
    ("invalid empty ssh agent socket"); buildx build/secrets.go and ssh.go read them so. Pure:
    ``exists`` is the file test. A secret's ``env=`` variable is not required: docker builds
    without it."""
    for spec in secrets:
        fields = secret_fields(spec)
        src = fields.get("src")
        if src and not exists(os.path.expanduser(src)):
            return (
                f"--secret id={fields.get('id') or '?'}: src {src} does not exist (docker's "
                "client reads it before the build)"
            )
    for spec in ssh:
        ident, eq, paths = spec.partition("=")
        if not eq:
            if not environ.get("SSH_AUTH_SOCK"):
                return (
                    f"--ssh {ident}: SSH_AUTH_SOCK is not set, so there is no agent to "
                    f'forward; start one (eval "$(ssh-agent)"; ssh-add), or give '
                    f"--ssh {ident}=PATH to a key"
                )
            continue
        for path in paths.split(","):
            if not exists(os.path.expanduser(path)):
                return f"--ssh {ident}: {path} does not exist (an agent socket or a key file)"
    return None


def option_name(word: str) -> Optional[str]:
    """The docker option a word after ``--`` spells (``--network=host`` -> ``--network``,
    ``-tname`` -> ``--tag``), or None for a value."""
    if word.startswith("--") and len(word) > 2:
        return word.split("=", 1)[0]
    if word.startswith("-") and len(word) > 1 and not word[1].isdigit():
        return SHORT.get(word[:2], word[:2])
    return None


def not_for_buildx(words: Sequence[str]) -> tuple[str, ...]:
    """The options among the build ``words`` that ``docker buildx build`` refuses
    (``NOT_FOR_BUILDX``), each once, as docker names them."""
    return tuple(
        dict.fromkeys(name for word in words if (name := option_name(word)) in NOT_FOR_BUILDX)
    )


def check_extra(words: Sequence[str], own: Collection[str] = ()) -> tuple[str, ...]:
    """The words after ``--``, refusing the options in ``REFUSED`` (and ``--label`` of a label
    ragbuild sets), then any of ``own``: ragbuild's own option strings (``commands.build.own_options``,
    read from its argparse parser), which docker would take for its own or refuse only once
    the run has started (``-- --dry-run`` would start a real build). A value is never quoted
    back: it may be one a user meant to keep."""
    words = tuple(words)
    if "--" in words:
        raise UsageError(
            "a second -- after -- would end docker's options: give the docker build "
            "options once, after one --"
        )
    for i, word in enumerate(words):
        name = option_name(word)
        if name is None:
            before = words[i - 1] if i else ""
            if not before or "=" in before or option_name(before) is None or before in FLAGS:
                # no option takes it as its value: docker would read a second build context
                raise UsageError(
                    "a word after -- that is no option's value is refused: ragbuild "
                    "gives the build context (its own --context, before --); "
                    "docker build takes exactly one"
                )
            continue
        if name in REFUSED:
            shown = word.split("=", 1)[0] if word.startswith("--") else word[:2]  # as typed
            raise UsageError(f"{shown} after -- is refused: {REFUSED[name]}")
        if name == "--label":
            value = (
                word.split("=", 1)[1]
                if "=" in word
                else (words[i + 1] if i + 1 < len(words) else "")
            )
            if value.split("=", 1)[0] in OWN_LABELS:
                raise UsageError(
                    f"--label {value.split('=', 1)[0]} after -- is refused: ragbuild "
                    "sets that label itself"
                )
        elif name in own:
            shown = word.split("=", 1)[0] if word.startswith("--") else word[:2]
            raise UsageError(
                f"{shown} after -- is refused: it is ragbuild's own option, and every "
                "word after -- goes to docker build; give it before --"
            )
    return words


def build_words(
    secrets: Sequence[str] = (), ssh: Sequence[str] = (), extra: Sequence[str] = ()
) -> tuple[str, ...]:
    """The docker build words, in order: each ``--secret``, each ``--ssh``, then the rest."""
    words = []
    for spec in secrets:
        words += ["--secret", check_secret(spec)]
    for spec in ssh:
        words += ["--ssh", check_ssh(spec)]
    return tuple(words) + check_extra(extra)


def describe(
    secrets: Sequence[str] = (), ssh: Sequence[str] = (), extra: Sequence[str] = ()
) -> list[str]:
    """The plan's lines: what each secret reads (never its value), the ssh forwards, the rest."""
    lines = []
    for spec in secrets:
        fields = secret_fields(spec)
        source = (
            f"from ${fields['env']}"
            if fields.get("env")
            else f"from file {fields['src']}"
            if fields.get("src")
            else f"from ${fields.get('id')} or file {fields.get('id')}"
        )
        lines.append(
            f"secret: {fields.get('id') or '(from src)'} {source} (value never printed; "
            "mount it with RUN --mount=type=secret)"
        )
    for spec in ssh:
        lines.append(f"ssh: {spec} (RUN --mount=type=ssh)")
    if extra:
        lines.append(f"docker build options (after --): {shlex.join(redact_argv(extra))}")
    return lines
