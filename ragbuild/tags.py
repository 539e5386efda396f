"""The image's tags: the version (``parse_version``), the tags a build gets (``plan_tags``) and
those beyond bash's: semver channels (``<major>``, ``<major>.<minor>``), the ``latest`` policy
and CI build numbers. Pure: the git tags and the environment are facts handed in.

Where the tags go (bash's own tags keep bash's order)::

    v<version>, <version>, <major>.<minor>, <major>, <env>-<timestamp>, <env>,
    git-<sha>, build-<N>, each --tag, latest

``--latest-policy auto`` moves a moving tag only when the version is a release (no prerelease)
and is not lower than the highest stable ``v*`` git tag of that tag's channel: ``latest``
compares with every ``v*`` tag, ``<major>`` with the ``v<major>.*`` tags and
``<major>.<minor>`` with the ``v<major>.<minor>.*`` tags, so a patch release of an older line
(1.4.1 after v2.0.0) still moves ``1`` and ``1.4`` but not ``latest``. Prerelease git tags do
not count: they never move anything themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional
from collections.abc import Mapping

from ragbuild.config import LatestPolicy
from ragbuild.errors import UsageError
from ragbuild.git import GitInfo
from ragbuild.reference import TAG_RE, check_tag

if TYPE_CHECKING:  # semver is imported where a version needs it
    import semver

#: Where --ci-tags looks for the build number, first set wins: Jenkins, GitHub Actions, GitLab CI.
CI_BUILD_NUMBER_VARS = ("BUILD_NUMBER", "GITHUB_RUN_NUMBER", "CI_PIPELINE_IID")
BUILD_NUMBER_RE = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class BuildNumber:
    """The ``build-<N>`` tag's number and where it came from (the flag or a CI variable)."""

    value: str
    source: str


@dataclass(frozen=True)
class Channels:
    tags: tuple[str, ...] = ()  # ("1.2", "1"): right after <version>
    latest: bool = True
    notes: tuple[str, ...] = ()  # one line per moving tag: why it was kept or left out


def channel_tags(parsed: semver.Version) -> tuple[str, str]:
    """``(<major>.<minor>, <major>)`` of a ``semver.Version``: the semver channel tags, derived
    here only."""
    return f"{parsed.major}.{parsed.minor}", f"{parsed.major}"


def moving_tags(
    parsed: Optional[semver.Version], env: Optional[str], semver_tags: bool
) -> frozenset[str]:
    """The tags a later build must overwrite: ``latest``, the env tag and, with --semver-tags,
    the channel tags."""
    moving = {"latest"} | ({env} if env else set())
    if semver_tags and parsed is not None:
        moving |= set(channel_tags(parsed))
    return frozenset(moving)


def needs_known_tags(parsed: Optional[semver.Version], policy: LatestPolicy) -> bool:
    """Whether ``version_channels`` consults the ``v*`` git tags: only under ``auto``, and only
    for a release; without a version or for a prerelease every moving tag is left out whatever
    the tags say, so a run that cannot read them (none fetched, a shallow clone) loses nothing."""
    return policy == LatestPolicy.AUTO and parsed is not None and not parsed.prerelease


def _highest(
    known: tuple[tuple[str, semver.Version], ...],
    match: Callable[[semver.Version], bool] = lambda v: True,
) -> Optional[tuple[str, semver.Version]]:
    stable = [(name, v) for name, v in known if not v.prerelease and match(v)]
    return max(stable, key=lambda item: item[1]) if stable else None


def version_channels(
    parsed: Optional[semver.Version],
    *,
    semver_tags: bool,
    policy: LatestPolicy,
    known: Optional[tuple[tuple[str, semver.Version], ...]] = None,
) -> Channels:
    """The channel tags and whether ``latest`` moves, with a note for each decision.

    ``parsed`` is the ``semver.Version`` of ``plan.parse_version`` (or None: no --version);
    ``policy`` is a ``LatestPolicy``. ``known`` is
    ``parse_version_tags``' answer; it is only consulted for ``policy == "auto"``.
    Notes are written only when there is a choice to explain (``--semver-tags`` or ``auto``)."""
    if semver_tags and parsed is None:
        raise UsageError("--semver-tags needs --version (it adds <major> and <major>.<minor>)")
    explain = semver_tags or policy == LatestPolicy.AUTO
    version = str(parsed) if parsed is not None else None
    known = known or ()
    notes, tags = [], []

    def decide(tag: str, match: Callable[[semver.Version], bool], scope: str) -> bool:
        """For a moving tag under --latest-policy auto: keep it, or say why not."""
        if parsed is None:
            notes.append(
                f"{tag}: left out: no --version (with --latest-policy auto only a "
                "released version moves it)"
            )
            return False
        if parsed.prerelease:
            notes.append(f"{tag}: left out: {version} is a prerelease")
            return False
        highest = _highest(known, match)
        if highest is None:
            notes.append(f"{tag}: kept: {version} is a release and there is no {scope} tag")
            return True
        name, top = highest
        if parsed.compare(top) < 0:
            notes.append(f"{tag}: left out: {version} < {name}, the highest {scope} tag")
            return False
        notes.append(f"{tag}: kept: {version} >= {name}, the highest {scope} tag")
        return True

    if semver_tags:
        assert parsed is not None  # refused above without a version
        minor, major = channel_tags(parsed)
        for tag, match, scope in (
            (minor, lambda v: (v.major, v.minor) == (parsed.major, parsed.minor), f"v{minor}.*"),
            (major, lambda v: v.major == parsed.major, f"v{major}.*"),
        ):
            if policy == LatestPolicy.AUTO:
                if decide(tag, match, scope):
                    tags.append(tag)
            elif parsed.prerelease:
                notes.append(f"{tag}: left out: {version} is a prerelease")
            else:
                shown = LatestPolicy(policy).value  # f"{member}" of a str Enum is its name
                notes.append(
                    f"{tag}: kept: {version} is a release (--latest-policy {shown}: "
                    "git tags are not compared)"
                )
                tags.append(tag)
    if policy == LatestPolicy.ALWAYS:
        latest = True
        if explain:
            notes.append("latest: kept: --latest-policy always (the default, as bash)")
    elif policy == LatestPolicy.NEVER:
        latest = False
        if explain:
            notes.append("latest: left out: --latest-policy never (--no-latest)")
    else:
        latest = decide("latest", lambda v: True, "version")
    return Channels(tuple(tags), latest, tuple(notes))


def build_number(
    flag: Optional[str], ci_tags: bool, environ: Mapping[str, str]
) -> Optional[BuildNumber]:
    """The number of the ``build-<N>`` tag, or None.

    ``--build-number`` wins over ``--ci-tags``; with ``--ci-tags`` alone the first of
    ``CI_BUILD_NUMBER_VARS`` that is set (and not empty) gives N."""
    if flag is not None:
        return BuildNumber(_check_build_number(flag, "--build-number"), "--build-number")
    if not ci_tags:
        return None
    for name in CI_BUILD_NUMBER_VARS:
        value = environ.get(name)
        if value:
            return BuildNumber(_check_build_number(value, name), name)
    raise UsageError(
        f"--ci-tags needs a build number: none of {', '.join(CI_BUILD_NUMBER_VARS)} "
        "is set (or pass --build-number N)"
    )


def _check_build_number(raw: str, source: str) -> str:
    text = raw.strip()
    if not BUILD_NUMBER_RE.fullmatch(text) or int(text) == 0:
        given = (
            f"{source} {raw!r}"
            if source.startswith("--")
            else f"{source}={raw!r} (read by --ci-tags)"
        )
        raise UsageError(f"{given} is not a positive integer (the build-<N> tag needs one)")
    return str(int(text))


def parse_version(raw: str) -> semver.Version:
    """Strip one leading ``v`` and check the rest is semver (bash only stripped the ``v``).

    Returns the ``semver.Version``, parsed once here: ``str()`` of it is the text as given (semver
    has one spelling), and the channel tags read its parts."""
    import semver

    version = raw[1:] if raw.startswith("v") else raw
    if not version:
        raise UsageError(
            f"--version {raw!r} is empty; give a semantic version such as 1.2.3 "
            "(with make: VERSION=1.2.3)"
        )
    try:
        return semver.Version.parse(version)
    except ValueError:
        raise UsageError(
            f"--version {raw!r} is not a semantic version: use MAJOR.MINOR.PATCH with "
            "an optional -prerelease and +build, e.g. 1.2.3 or 1.3.0-rc.1"
        ) from None


def plan_tags(
    version: Optional[str],
    env: Optional[str],
    timestamp: str,
    git: GitInfo,
    number: Optional[BuildNumber],
    custom: tuple[str, ...],
    channel: Channels,
) -> tuple[str, ...]:
    """The tags, in bash's order with the opt-in ones slotted in (this module's docstring shows where);
    ``custom`` are the --tag values (``_check_custom_tags``); one equal to a generated tag is
    given once."""
    tags = []
    if version is not None:
        tag_version = version.replace("+", "_")
        # <version> is a valid tag whenever v<version> is: a semantic version starts with a digit
        tags += [check_tag(f"v{tag_version}", "--version"), tag_version]
        tags += channel.tags  # <major>.<minor>, <major> (--semver-tags)
    if env is not None:
        tags += [_generated(f"{env}-{timestamp}", f"--env {env!r}"), env]
    if git.tag:
        tags.append(_generated(git.tag, "git's commit id"))
    if number:
        tags.append(_generated(f"build-{number.value}", f"the build number from {number.source}"))
    tags += custom
    if channel.latest:
        tags.append("latest")
    return tuple(dict.fromkeys(tags))


def _generated(tag: str, origin: str) -> str:
    """A tag ragbuild makes from a value that passed its own check must still be a tag docker
    takes (``build-<200 digits>``, ``<long env>-<timestamp>``), or the build would fail late."""
    if not TAG_RE.fullmatch(tag):
        shown = tag if len(tag) <= 60 else f"{tag[:40]}...{tag[-12:]}"
        raise UsageError(
            f"{origin} makes the tag {shown!r} ({len(tag)} characters), which is not "
            "a valid Docker tag: up to 128 letters, digits, '_', '.' or '-', not "
            "starting with '.' or '-'"
        )
    return tag
