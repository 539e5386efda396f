"""The context guard: what ``docker build`` would send, checked before it is sent.

It reads the build context (read-only; its one process is ``docker version``, asked only when
the two docker clients' walks differ: ``context_rules``), applies ``.dockerignore`` with a port of
Docker's own matcher (moby/patternmatcher), and reports the files and bytes that would be sent.
Above a threshold it warns and names the largest entries; when the context would carry likely
secrets it refuses (``UsageError``, exit 2) unless ``--allow-secrets``. It also warns about
``--build-arg`` names that look like secrets, since build args stay readable in the image's
history. Being read-only, it runs in ``--dry-run`` too, so a dry run shows its verdict.

The matcher library is imported here, lazily, only on the build path.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional
from collections.abc import Iterator

from ragbuild.errors import ToolMissing, UsageError

if TYPE_CHECKING:  # the runner and the options are the callers'
    from ragbuild.config import Options
    from ragbuild.run.runner import Runner

#: How many of the largest top-level entries a size warning names.
LARGEST = 5

#: ``.env`` files that are templates by convention, not secrets.
ENV_TEMPLATES = (".env.example", ".env.sample", ".env.template", ".env.dist", ".env.defaults")
SSH_KEY_PREFIXES = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")
# A literal credential in .npmrc / .pypirc: `_authToken=...`, `_auth=...`, `password = ...`,
# `token: ...`; a value that only references an environment variable (`${NPM_TOKEN}`) is not one.
CREDENTIAL_LINE_RE = re.compile(
    r"^[^#;\n]*?(?:_authToken|_auth|_password|password|token)\s*[=:][ \t]*(?!\$\{|[ \t]*$)\S",
    re.I | re.M,
)


@dataclass
class ContextReport:
    """What the build context holds after ``.dockerignore``."""

    root: str
    ignore_file: Optional[str]  # the ignore file applied, or None
    files: int = 0
    bytes: int = 0
    entries: dict[str, list[int]] = field(default_factory=dict)  # entry -> [bytes, files]
    secrets: list[tuple[str, str]] = field(default_factory=list)  # (path, why), walk order
    #: the walk was the classic CLI's (``ContextRules.prefix_exceptions``): the build must then
    #: be the classic ``docker build`` that walks so (``plan.build_pushes``)
    classic_walk: bool = False

    def largest(self, count: int = LARGEST) -> list[tuple[str, int, int]]:
        """``[(entry, bytes, files)]``, largest first; directories end with ``/``."""
        ranked = sorted(self.entries.items(), key=lambda item: (-item[1][0], item[0]))
        return [(name, size, files) for name, (size, files) in ranked[:count]]


# --- pure helpers ------------------------------------------------------------------------------


def secret_reason(path: str, read_text: Optional[Callable[[], str]] = None) -> Optional[str]:
    """Why the context file ``path`` (slash-separated, relative) is likely a secret, or None.
    ``read_text()`` is called only for files whose content decides (.npmrc, .pypirc)."""
    name = path.rsplit("/", 1)[-1]
    if name.startswith(".env") and name not in ENV_TEMPLATES:
        return "environment file"
    if name.endswith(".pem"):
        return "PEM key or certificate"
    if name.startswith(SSH_KEY_PREFIXES) and not name.endswith(".pub"):
        return "SSH private key"
    if path == ".aws/credentials" or path.endswith("/.aws/credentials"):
        return "AWS credentials"
    if name == ".netrc":
        return "netrc credentials"
    if name in (".npmrc", ".pypirc") and read_text is not None:
        if CREDENTIAL_LINE_RE.search(read_text()):
            return "token or password"
    return None


# --- the matcher -------------------------------------------------------------------------------


class _SdkMatcher:
    """Python < 3.11 (e2b-dockerfile-utils needs 3.11): the Docker SDK's port of the same matcher.
    Slower to import (it pulls in requests) and case-insensitive, unlike Docker on Linux."""

    def __init__(self, patterns: list[str]) -> None:
        from docker.utils.build import PatternMatcher

        kept = [p.strip() for p in patterns if p.strip() and not p.lstrip().startswith("#")]
        self._matcher = PatternMatcher(kept)

    def matches(self, path: str) -> bool:
        return self._matcher.matches(path)

    def may_match_under(self, path: str) -> bool:
        return any(
            p.exclusion and p.cleaned_pattern.startswith(path) for p in self._matcher.patterns
        )

    @property
    def patterns(self) -> list[str]:
        """The cleaned patterns, ``!`` before an exception (as e2b's matcher has them)."""
        return [("!" if p.exclusion else "") + p.cleaned_pattern for p in self._matcher.patterns]


def make_matcher(patterns: list[str]) -> Any:
    """Docker's ``.dockerignore`` semantics: ``matches(path)`` says whether a slash-separated
    relative path is excluded; ``may_match_under(dir)`` whether a ``!`` pattern could bring back
    something below an excluded directory (else the walk skips it)."""
    try:
        from e2b_dockerfile_utils.dockerignore import PatternMatcher
    except ImportError:
        try:
            return _SdkMatcher(patterns)
        except ImportError:
            raise ToolMissing(
                "the build-context check needs e2b-dockerfile-utils (Python 3.11+) "
                "or, on older Pythons, docker (the Docker SDK): run `make venv`, or "
                "`python3 -m pip install e2b-dockerfile-utils`"
            ) from None
    return PatternMatcher(patterns)


# --- the walk ----------------------------------------------------------------------------------


def ignore_file(context: str, dockerfile: str) -> Optional[str]:
    """The ignore file BuildKit applies: ``<Dockerfile>.dockerignore`` beside the Dockerfile,
    else ``.dockerignore`` at the root of the context."""
    for candidate in (f"{dockerfile}.dockerignore", os.path.join(context, ".dockerignore")):
        if os.path.isfile(candidate):
            return candidate
    return None


def read_ignore_file(data: bytes) -> list[str]:
    """The lines of an ignore file as BuildKit reads them (moby/patternmatcher ignorefile.ReadAll,
    https://github.com/moby/patternmatcher/blob/main/ignorefile/ignorefile.go): split at LF only
    (a CR before it dropped, as Go's bufio.ScanLines does; a lone CR stays in the line), a UTF-8
    BOM dropped from the first line, bytes that are not UTF-8 kept as they are (surrogate escapes,
    as ``os.scandir`` names such files). The matcher drops comments and blank lines."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if lines:
        lines[0] = lines[0].removeprefix(b"\xef\xbb\xbf")
    return [os.fsdecode(line.removesuffix(b"\r")) for line in lines]


#: What no pattern may hold: BuildKit sends the patterns in a gRPC (HTTP/2) header, whose values
#: hold no control characters (golang.org/x/net/http/httpguts ValidHeaderFieldValue): a CR fails
#: every engine ("PROTOCOL_ERROR"); a tab, engines from Docker 26 ("non-printable ASCII
#: characters"), so it is refused on every engine too (tested: tests/e2e/test_context_differential.py).
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def refused_pattern(lines: list[str]) -> Optional[tuple[int, str]]:
    """``(line number, line)`` of the first pattern docker's build fails on, or None: a line that
    is not a comment and holds a control character once its ends are trimmed."""
    for number, line in enumerate(lines, 1):
        if not line.startswith("#") and CONTROL.search(line.strip(" \t\n\r\v\f")):
            return number, line
    return None


class ContextRules:
    """The ignore file docker applies to a context and the matcher made from it: the one
    answer to "does ``docker build`` send this path?" (the walk below and git's untracked-file
    check both ask it).

    The sender's walk differs between docker's clients when the ignore file has exceptions
    (``!`` patterns; both tested against the real clients: tests/e2e/test_context_differential.py).
    buildx (``docker buildx build``, and ``docker build`` from Docker 23 on) matches with
    moby/patternmatcher's ``MatchesUsingParentResults`` and walks into an excluded directory
    where an exception could match below it: the default here. The docker CLI's own ``docker
    build`` before Docker 23 (``DOCKER_BUILDKIT=1``) matches with its older matcher
    (``excluded``) and walks into an excluded directory only when an exception's text starts with
    the directory's path and a slash: ``prefix_exceptions=True``. Neither sends a superset of the
    other (``node_modules`` + ``!**/keep*``: only buildx sends ``node_modules/a/keep.js``;
    ``*/*/*`` + ``!logs/keep``: only the older CLI sends ``logs/keep/1.log``)."""

    def __init__(
        self, context: str, dockerfile: str = "Dockerfile", prefix_exceptions: bool = False
    ):
        self.context = context
        self.prefix_exceptions = prefix_exceptions
        self.ignore_file = path = ignore_file(context, dockerfile)
        patterns = []
        if path:
            try:
                with open(path, "rb") as handle:
                    patterns = read_ignore_file(handle.read())
            except OSError as err:
                raise UsageError(f"{path}: cannot be read: {err.strerror}") from None
        refused = refused_pattern(patterns)
        if refused:
            number, line = refused
            raise UsageError(
                f"{path} line {number}: the pattern {line.strip()!r} holds a control "
                "character, which docker's build fails on (a carriage return without "
                'a line feed, old Mac line endings: "PROTOCOL_ERROR"; a tab, on '
                'Docker 26 engines: "non-printable ASCII characters"); end lines '
                "with LF or CRLF, and write no tab inside a pattern"
            )
        try:
            self.matcher = make_matcher(patterns)
        except ValueError as err:
            raise UsageError(f"{path}: {err}") from None

    def exceptions(self) -> list[str]:
        """The cleaned ``!`` patterns, without their ``!``."""
        return [p[1:] for p in self.matcher.patterns if p.startswith("!")]

    @property
    def clients_differ(self) -> bool:
        """Whether the ignore file has an exception (``!`` pattern): only then may the two
        walks (``prefix_exceptions``) send different files."""
        return bool(self.exceptions())

    def excluded(self, rel: str) -> bool:
        """Whether the sender leaves out ``rel``. buildx: moby/patternmatcher's
        ``MatchesUsingParentResults`` (the port's ``matches``). The older CLI: its older matcher,
        where every pattern is tried on the path and on its leading directories (as many as the
        pattern has), the last that matches deciding (moby 20.10 pkg/fileutils ``Matches``)."""
        patterns = getattr(self.matcher, "_patterns", None)  # e2b's compiled patterns
        if not self.prefix_exceptions or patterns is None:
            return bool(self.matcher.matches(rel))
        parents = rel.split("/")[:-1]
        matched = False
        for pattern in patterns:
            match = pattern.match(rel)
            if not match and parents and len(pattern.dirs) <= len(parents):
                match = pattern.match("/".join(parents[: len(pattern.dirs)]))
            if match:
                matched = not pattern.exclusion
        return matched

    def descends(self, rel_dir: str) -> bool:
        """Whether the walk enters directory ``rel_dir``: it is not excluded, or a ``!`` pattern
        may bring back something below it (the sender's rule: ``prefix_exceptions``)."""
        if not self.excluded(rel_dir):
            return True
        if self.prefix_exceptions:
            return any((p + "/").startswith(rel_dir + "/") for p in self.exceptions())
        return self.matcher.may_match_under(rel_dir)

    def sends(self, rel: str) -> bool:
        """Whether docker sends the file at slash-separated ``rel`` (relative to the context)."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if not self.descends("/".join(parts[:depth])):
                return False
        return not self.excluded(rel)


def through_buildx(options: Options) -> bool:
    """Whether ``docker buildx build`` sends this build's context whatever the client: a
    --builder, several platforms, a cache export or import buildx does (``buildx_reasons``, as
    the plan's ``buildx``). Flags that do not parse count as buildx (the plan says why they are
    wrong). A single-platform --push is not among them: where the classic CLI's walk was
    predicted, the build stays ``docker build`` plus ``docker push`` (``plan.build_pushes``), so
    the prediction holds."""
    from ragbuild.buildx import buildx_reasons, check_builder, parse_cache, parse_platforms

    try:
        return bool(
            buildx_reasons(
                builder=check_builder(options.builder) if options.builder else None,
                platforms=parse_platforms(options.platform) if options.platform else (),
                cache_from=tuple(parse_cache(raw, "--cache-from") for raw in options.cache_from),
                cache_to=tuple(parse_cache(raw, "--cache-to") for raw in options.cache_to),
            )
        )
    except UsageError:
        return True


def sent_by_classic_cli(runner: Runner, options: Options) -> bool:
    """Whether the docker CLI's own ``docker build`` (a client before Docker 23) sends the
    context, not buildx: the build does not go through buildx (``through_buildx``) and
    ``docker version`` names a client before 23. A dry run, or a client that does not answer,
    takes buildx's walk, which sends the most."""
    from ragbuild.run.command import Command, Kind

    if through_buildx(options):
        return False
    done = runner.run(
        Command(
            ("docker", "version", "--format", "{{.Client.Version}}"),
            check=False,
            kind=Kind.PROBE,
            assume="",
            dry_note="a client before Docker 23 walks fewer excluded directories",
        )
    )
    major = done.stdout.strip().split(".")[0]
    return done.returncode == 0 and major.isdigit() and int(major) < 23


def context_rules(runner: Runner, options: Options) -> ContextRules:
    """The rules of the walk docker will use for this build (``-f``, ``--context``): the one
    choice between the two senders' walks, asked by the context step, the git facts' dirty
    check (gitfacts.sent_files) and doctor alike. The client is asked (``sent_by_classic_cli``)
    only when the answer changes the walk (``ContextRules.clients_differ``). UsageError: an
    unreadable or refused ignore file."""
    rules = ContextRules(options.context, options.file)
    if rules.clients_differ and sent_by_classic_cli(runner, options):
        rules.prefix_exceptions = True
    return rules


def walk_context(rules: ContextRules) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """``(rel, entry)`` for each file docker sends from ``rules.context`` (not directories):
    ``rel`` slash-separated relative to the context, in walk order; symlinks are sent as links,
    not followed. An unreadable directory: ``UsageError``."""
    stack = [("", rules.context)]
    while stack:
        prefix, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as err:
            raise UsageError(
                f"cannot read {directory} in the build context: {err.strerror}"
            ) from None
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if rules.descends(rel):
                    stack.append((rel + "/", entry.path))
                continue
            if not rules.excluded(rel):
                yield rel, entry


def scan_context(
    context: str, dockerfile: str = "Dockerfile", rules: Optional[ContextRules] = None
) -> ContextReport:
    """Walk ``context`` as docker would send it (``walk_context``; ``rules``: made from
    ``context`` and ``dockerfile`` when not given)."""
    rules = rules or ContextRules(context, dockerfile)
    report = ContextReport(
        root=context, ignore_file=rules.ignore_file, classic_walk=rules.prefix_exceptions
    )
    for rel, entry in walk_context(rules):
        size = entry.stat(follow_symlinks=False).st_size
        report.files += 1
        report.bytes += size
        top = rel.split("/", 1)
        key = top[0] + "/" if len(top) > 1 else top[0]
        totals = report.entries.setdefault(key, [0, 0])
        totals[0] += size
        totals[1] += 1
        why = secret_reason(rel, functools.partial(_read, entry.path))
        if why:
            report.secrets.append((rel, why))
    return report


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(1 << 20)
    except OSError:
        return ""
