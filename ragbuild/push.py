"""``--push``: log in to ECR, check the repository, push every tag, verify every digest.

``prepare`` runs before the build (so a missing repository or an immutable tag stops us before
the long build): it finds out whether ``docker build`` goes through buildx (then the build must
not attach attestations, which would turn the image into an index SageMaker refuses), logs in to
ECR and runs the ECR pre-flight. It returns a ``Pushing``: after the build, ``push`` pushes each
ref on its own, retrying transient failures, and ``verify`` checks on the registry that every
pushed tag names the one single-image manifest ``docker push`` reported (the CLI times the two
apart).

Like the other steps this module starts no process itself: it hands ``Command`` objects to the
runner, and a dry run prints them all, deciding nothing it could only learn from docker or aws
(the log says what a real run would decide). The functions at the top are pure (text in, answer
out) and are tested on their own. The ECR password only ever lives in a ``Secret`` fed to
``docker login`` on stdin.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ragbuild.builders import NOT_FOR_SAGEMAKER
from ragbuild.errors import CommandFailed, Interrupted, PushFailed, ToolMissing
from ragbuild.output import SUCCESS
from ragbuild.plan import BuildPlan, Command, Registry
from ragbuild.runner import Secret, ended, tail
from ragbuild.steps import (DAEMON_DOWN_MARKERS, daemon_unreachable, docker_config_path,
                            read_docker_config)

#: Attempts per ``docker push`` / ``docker manifest inspect`` when the failure looks transient.
ATTEMPTS = 3
#: Seconds to wait before the second attempt; doubled before each further one.
BACKOFF = 2.0

PASSWORD_PLACEHOLDER = "<password from aws ecr get-login-password>"
AWS_ENV_VARS = ("AWS_PROFILE", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL")
AWS_INSTALL_HINT = ("install the AWS CLI (`pip install awscli`, or AWS CLI v2: "
                    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
                    ", or set AWS_CLI to its path")

INDEX_TYPES = ("application/vnd.docker.distribution.manifest.list.v2+json",
               "application/vnd.oci.image.index.v1+json")

# docker push's last line: "<tag>: digest: sha256:<64 hex> size: <bytes>"
PUSH_DIGEST_RE = re.compile(r"digest: (?P<digest>sha256:[0-9a-f]{64}) size: \d+")

# Failure classes of a registry operation, most specific first (a denied push that also says
# EOF is an authentication failure, and is not retried).
IMMUTABLE = "immutable"
AUTH = "auth"
NOT_FOUND = "not-found"
DAEMON = "daemon"
UNREACHABLE = "unreachable"
TRANSIENT = "transient"
OTHER = "other"
_CLASSES = (
    (IMMUTABLE, re.compile(r"already exists in the|cannot be overwritten", re.I)),
    (AUTH, re.compile(r"unauthorized|no basic auth credentials|denied", re.I)),
    (NOT_FOUND, re.compile(r"name unknown|repository\b[^\n]*\bnot found"
                           r"|does not exist in the registry", re.I)),
    (DAEMON, re.compile("|".join(re.escape(marker) for marker in DAEMON_DOWN_MARKERS), re.I)),
    (UNREACHABLE, re.compile(r"connection refused|no such host|server misbehaving", re.I)),
    (TRANSIENT, re.compile(
        r"connection reset|broken pipe|i/o timeout|timeout|timed out|\bEOF\b"
        r"|toomanyrequests|too many requests"
        r"|HTTP(?: status)?:? *5\d\d\b|\b5\d\d (?:internal server error|bad gateway"
        r"|service unavailable|gateway time-?out)"
        r"|internal server error|bad gateway|service unavailable|gateway time-?out", re.I)),
)


# --- pure helpers ------------------------------------------------------------------------------


def classify_failure(output: str) -> str:
    """Which kind of failure a registry command's output describes (one of the classes above)."""
    for kind, pattern in _CLASSES:
        if pattern.search(output):
            return kind
    return OTHER


def parse_push_digest(output: str) -> Optional[str]:
    """The manifest digest ``docker push`` reported (the last one it printed), or None."""
    found = PUSH_DIGEST_RE.findall(output)
    return found[-1] if found else None


def parse_manifest_verbose(text: str) -> str:
    """The digest of the single image manifest ``docker manifest inspect --verbose`` shows: one
    JSON object whose ``Descriptor`` has the manifest's digest and media type. For an index it
    prints a JSON list of them (one per platform; the index's own digest is not shown). Raises
    IndexManifest for an index, ValueError for output that is neither."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {tail(text, 3)!r}") from None
    if isinstance(data, list):
        raise IndexManifest(f"an image index of {len(data)} manifests")
    if not isinstance(data, dict) or not isinstance(data.get("Descriptor"), dict):
        raise ValueError("no Descriptor in the output")
    descriptor = data["Descriptor"]
    media_type = descriptor.get("mediaType")
    if media_type in INDEX_TYPES:
        raise IndexManifest(f"an image index ({media_type})")
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ValueError(f"no digest in the Descriptor: {descriptor!r}")
    return digest


class IndexManifest(ValueError):
    """The registry holds an index (manifest list), not a single image manifest."""


@dataclass(frozen=True)
class Index:
    digest: str
    platforms: tuple  # "os/arch[/variant]" of each image in it (attestations left out)


def normalize_platform(platform: str) -> str:
    """containerd's spelling rules for comparison: arm64/v8 is arm64, arm is arm/v7, amd64/v1
    is amd64."""
    parts = platform.split("/")
    if parts[1:2] == ["arm64"] and parts[2:] == ["v8"] or parts[1:2] == ["amd64"] and parts[2:] == ["v1"]:
        parts = parts[:2]
    elif parts[1:] == ["arm"]:
        parts.append("v7")
    return "/".join(parts)


def parse_index_raw(text: str) -> Index:
    """Read ``docker buildx imagetools inspect --raw``: the registry's manifest bytes exactly
    (buildx prints them without a newline, so their sha256 is the digest). Raises ValueError
    unless it is an image index; ``unknown/unknown`` entries (attestations) are left out."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {tail(text, 3)!r}") from None
    if not isinstance(data, dict):
        raise ValueError("not a manifest")
    media_type = data.get("mediaType") or ""
    manifests = data.get("manifests")
    if media_type not in INDEX_TYPES and not (not media_type and isinstance(manifests, list)):
        raise ValueError(f"a single image manifest ({media_type or 'no media type'}), not an "
                         "image index of the platforms")
    if not isinstance(manifests, list) or not all(isinstance(entry, dict) for entry in manifests):
        raise ValueError("an index whose manifests are not a list of descriptors")
    platforms = []
    for entry in manifests:
        spec = entry.get("platform") or {}
        if not isinstance(spec, dict):
            raise ValueError(f"a platform that is not an object: {spec!r}")
        parts = (spec.get("os"), spec.get("architecture"), spec.get("variant"))
        name = "/".join(str(part) for part in parts if part)
        if name and name != "unknown/unknown":
            platforms.append(name)
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return Index(digest, tuple(platforms))


def wildcard_match(pattern: str, tag: str) -> bool:
    """ECR's WILDCARD tag filter: ``*`` matches any run of characters (none included); every
    other character (ECR allows ``[0-9a-zA-Z._-]``) matches itself; the whole tag must match."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, tag) is not None


@dataclass(frozen=True)
class RepositoryInfo:
    name: str
    mutability: str  # MUTABLE | IMMUTABLE | IMMUTABLE_WITH_EXCLUSION | MUTABLE_WITH_EXCLUSION
    filters: tuple = ()  # WILDCARD patterns of imageTagMutabilityExclusionFilters

    def is_immutable(self, tag: str) -> bool:
        """IMMUTABLE: every tag. IMMUTABLE_WITH_EXCLUSION: every tag but those matching a
        filter. MUTABLE_WITH_EXCLUSION: only tags matching a filter. MUTABLE: none."""
        excluded = any(wildcard_match(pattern, tag) for pattern in self.filters)
        if self.mutability == "IMMUTABLE":
            return True
        if self.mutability == "IMMUTABLE_WITH_EXCLUSION":
            return not excluded
        if self.mutability == "MUTABLE_WITH_EXCLUSION":
            return excluded
        return False

    def describe(self) -> str:
        if self.filters:
            return f"{self.mutability} (exclusion filters: {', '.join(self.filters)})"
        return self.mutability


def parse_describe_repositories(text: str) -> RepositoryInfo:
    """The first repository of ``aws ecr describe-repositories --output json``; ValueError when
    the output is not shaped like that."""
    data = json.loads(text)
    repos = data.get("repositories") if isinstance(data, dict) else None
    if not isinstance(repos, list) or not repos or not isinstance(repos[0], dict):
        raise ValueError("no repository in the output")
    repo = repos[0]
    mutability = repo.get("imageTagMutability") or "MUTABLE"
    entries = repo.get("imageTagMutabilityExclusionFilters") or []
    if not isinstance(mutability, str) or not isinstance(entries, list):
        raise ValueError("imageTagMutability or its exclusion filters are not what ECR returns")
    filters = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("filter", ""), str):
            raise ValueError(f"an exclusion filter that is not a WILDCARD string: {entry!r}")
        if entry.get("filterType", "WILDCARD") == "WILDCARD" and entry.get("filter"):
            filters.append(entry["filter"])
    name = repo.get("repositoryName", "")
    return RepositoryInfo(name if isinstance(name, str) else "", mutability, tuple(filters))


def parse_list_images(text: str) -> set:
    """The tags in ``aws ecr list-images --output json``; ValueError for another shape."""
    data = json.loads(text)
    ids = data.get("imageIds", ()) if isinstance(data, dict) else None
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, dict) for i in ids):
        raise ValueError("no imageIds list in the output")
    return {i["imageTag"] for i in ids if isinstance(i.get("imageTag"), str) and i["imageTag"]}


def cred_helper(helpers: dict, host: str) -> Optional[str]:
    """The credential helper that ``credHelpers`` of docker's config.json names for ``host``."""
    found = helpers.get(host) or helpers.get(f"https://{host}")
    return found if isinstance(found, str) and found else None


def aws_context(environ) -> str:
    """`` (AWS_PROFILE=ci, AWS_ENDPOINT_URL=...)`` for the AWS settings in effect, or ``""``."""
    parts = [f"{name}={environ[name]}" for name in AWS_ENV_VARS if environ.get(name)]
    return f" ({', '.join(parts)})" if parts else ""


def explain_aws_failure(stderr: str, registry: Registry, environ, needs: str) -> str:
    """Why an ``aws ecr`` call failed, and what to do about it; ``needs`` names the IAM action."""
    ctx = aws_context(environ)
    text = stderr
    if "Unable to locate credentials" in text or "NoCredentialsError" in text:
        return (f"no AWS credentials found{ctx}: run `aws configure` or `aws sso login`, set "
                "AWS_PROFILE, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if re.search(r"ExpiredToken|expired", text, re.I):
        profile = environ.get("AWS_PROFILE")
        refresh = f"`aws sso login --profile {profile}`" if profile else "`aws sso login`"
        return (f"the AWS credentials{ctx} have expired: refresh them ({refresh}, or new "
                "temporary keys) and run again")
    match = re.search(r"config profile \((?P<name>[^)]*)\) could not be found", text)
    if match:
        return (f"AWS profile {match['name']!r} is not configured: fix AWS_PROFILE or add the "
                "profile to ~/.aws/config")
    if re.search(r"Could not connect to the endpoint URL|EndpointConnectionError|UnknownEndpoint"
                 r"|Invalid endpoint|Provided region_name|Name or service not known", text):
        return (f"cannot reach the ECR API for region {registry.region} (from the registry host "
                f"{registry.host}){ctx}: check the region in --registry, AWS_ENDPOINT_URL / "
                "AWS_ENDPOINT_URL_ECR, and the network")
    if re.search(r"UnrecognizedClient|InvalidClientTokenId|InvalidSignature|security token "
                 r"included in the request is invalid|SignatureDoesNotMatch", text):
        return (f"AWS rejected the credentials{ctx}: check AWS_PROFILE or AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY")
    if "Invalid choice" in text:
        return ("this aws CLI is too old for this command: upgrade it (`pip install -U awscli`) "
                "or use AWS CLI v2")
    if re.search(r"AccessDenied|not authorized to perform", text):
        return f"the AWS identity{ctx} is not allowed to {needs}"
    return f"the aws CLI failed{ctx}"


# --- commands ----------------------------------------------------------------------------------


def attestation_probe_command() -> Command:
    """``docker build --help`` lists ``--provenance`` exactly when the build goes through buildx
    (docker >= 23 with the plugin), the one case where the flag is both needed and accepted."""
    return Command(("docker", "build", "--help"), check=False)


def _aws_env(registry: Registry) -> tuple:
    return (("AWS_USE_FIPS_ENDPOINT", "true"),) if registry.fips else ()


def get_login_password_command(registry: Registry) -> Command:
    return Command(("aws", "ecr", "get-login-password", "--region", registry.region),
                   env=_aws_env(registry), check=False)


def docker_login_command(host: str) -> Command:
    return Command(("docker", "login", "--username", "AWS", "--password-stdin", host),
                   stdin=PASSWORD_PLACEHOLDER, check=False)


def describe_repositories_command(registry: Registry) -> Command:
    return Command(("aws", "ecr", "describe-repositories", "--repository-names", registry.path,
                    "--region", registry.region, "--output", "json"),
                   env=_aws_env(registry), check=False)


def list_images_command(registry: Registry) -> Command:
    return Command(("aws", "ecr", "list-images", "--repository-name", registry.path, "--region",
                    registry.region, "--filter", "tagStatus=TAGGED", "--output", "json"),
                   env=_aws_env(registry), check=False)


def imagetools_inspect_command(ref: str) -> Command:
    """The raw manifest of ``ref`` as the registry serves it (multi-platform builds: buildx is
    there anyway, and ``docker manifest inspect`` does not show an index's own digest)."""
    return Command(("docker", "buildx", "imagetools", "inspect", "--raw", ref), check=False)


def push_command(ref: str) -> Command:
    return Command(("docker", "push", ref), mode="tee", check=False)


def is_loopback(host: str) -> bool:
    """localhost / 127.0.0.0/8 / ::1, with or without a port: the hosts dockerd treats as
    insecure (plain HTTP allowed) by default."""
    name = host[1:].split("]")[0] if host.startswith("[") else host.split(":")[0]
    return name == "localhost" or name == "::1" or name.startswith("127.")


def manifest_inspect_command(ref: str, host: str) -> Command:
    """One call that shows both the digest and the media type of what ``ref`` names.

    docker 20.10 hides ``docker manifest`` behind the experimental switch. Unlike the daemon,
    this client does not fall back to plain HTTP for a loopback registry unless ``--insecure``
    (it then says "no such manifest"); elsewhere ``--insecure`` would also skip TLS verification,
    so it is given for loopback hosts only."""
    argv = ["docker", "manifest", "inspect"]
    if is_loopback(host):
        argv.append("--insecure")
    argv += ["--verbose", ref]
    return Command(tuple(argv), env=(("DOCKER_CLI_EXPERIMENTAL", "enabled"),), check=False)


# --- steps ---------------------------------------------------------------------------------------


@dataclass
class Pushing:
    """What ``prepare`` found; after the build, ``push`` and then ``verify``."""

    plan: BuildPlan
    refs: tuple  # the refs to push, in the plan's order
    skipped: tuple = ()  # refs left out (tags the immutable repository would refuse)
    no_attestations: bool = False
    helper: Optional[str] = None  # the docker credential helper used for the host, if any
    environ: dict = field(default_factory=dict, repr=False)  # AWS_* and DOCKER_CONFIG, for messages
    sleep: Callable = field(default=time.sleep, repr=False)
    # ref -> the digest docker push reported (None: pushed, but it printed none), kept as it goes
    # so that a failure keeps those pushed; for a multi-platform build, the index verify read
    digests: dict = field(default_factory=dict, repr=False)

    def push(self, runner) -> None:
        """``docker push`` each ref on its own. On a failure or Ctrl-C the error lists what was
        pushed and what was not. A multi-platform build pushed its refs itself: nothing to do."""
        if self.plan.multi_platform:
            return
        try:
            for ref in self.refs:
                self._push(runner, ref)
        except PushFailed as failure:
            raise PushFailed(f"{failure}\n{self._progress()}") from None
        except (Interrupted, KeyboardInterrupt) as stop:
            text = str(stop) if isinstance(stop, Interrupted) else "interrupted"
            raise Interrupted(f"{text}\n{self._progress()}") from None

    def _progress(self) -> str:
        pushed = [ref if self.digests[ref] else f"{ref} (digest unknown)" for ref in self.digests]
        left = [ref for ref in self.refs if ref not in self.digests]
        return f"pushed: {', '.join(pushed) or 'nothing'}\nnot pushed: {', '.join(left) or 'nothing'}"

    def _push(self, runner, ref: str) -> None:
        result, kind = run_retrying(runner, push_command(ref), self.sleep, f"docker push {ref}")
        if result.dry:
            return
        output = result.stdout + result.stderr
        if not result.ok:
            raise PushFailed(f"{self._explain_push(ref, kind)}\n{tail(output)}")
        self.digests[ref] = parse_push_digest(output)
        if not self.digests[ref]:
            raise PushFailed(f"docker push {ref} succeeded but printed no digest, so it cannot be "
                             f"verified:\n{tail(output)}")

    def _explain_push(self, ref: str, kind: str) -> str:
        registry = self.plan.registry
        host, path = registry.host, registry.path
        if kind == IMMUTABLE:
            tag = ref.rsplit(":", 1)[1]
            fix = (f"`aws ecr put-image-tag-mutability --repository-name {path} --region "
                   f"{registry.region} ...`" if registry.is_ecr else "the registry's settings")
            return (f"{ref}: the tag {tag!r} already exists and the repository's tags are "
                    "immutable, so it cannot be overwritten; push only new tags "
                    "(--skip-existing-immutable leaves existing ones out, --no-latest drops "
                    f"'latest'), or allow overwriting with {fix}")
        if kind == AUTH:
            if registry.is_ecr and self.helper:
                return (f"{ref}: {host} refused the push; docker gets its credentials from "
                        f"docker-credential-{self.helper} (credHelpers in "
                        f"{docker_config_path(self.environ)}){aws_context(self.environ)}: check "
                        "the AWS credentials it uses and that they may push (ecr:PutImage, "
                        "ecr:InitiateLayerUpload, ...)")
            if registry.is_ecr:
                return (f"{ref}: {host} refused the push: the ECR token may have expired or the "
                        f"AWS identity{aws_context(self.environ)} may not push to {path} "
                        "(ecr:PutImage, ecr:InitiateLayerUpload, ...); run again to log in anew")
            return (f"{ref}: {host} refused the push: not logged in, or not allowed to push to "
                    f"{path}; run `docker login {host}` and try again")
        if kind == NOT_FOUND:
            if registry.is_ecr:
                return (f"{ref}: repository {path} does not exist in {host}; create it: "
                        f"aws ecr create-repository --repository-name {path} --region "
                        f"{registry.region}")
            return f"{ref}: {host} has no repository {path} (or does not let you see it)"
        if kind == DAEMON:
            return f"{ref}: {daemon_unreachable(self.plan.docker)}"
        if kind == UNREACHABLE:
            return (f"{ref}: cannot reach {host}: check the host and port in --registry and that "
                    "the registry is up")
        if kind == TRANSIENT:
            return f"{ref}: push failed {ATTEMPTS} times with a network or registry error"
        return f"docker push {ref} failed"

    def verify(self, runner) -> Optional[str]:
        """Read every pushed ref back from the registry; returns ``<repository>@<digest>``,
        also written to stdout, ready to pin (None in a dry run)."""
        if self.plan.multi_platform:
            return self._verify_index(runner)
        return self._verify(runner)

    def _verify(self, runner) -> Optional[str]:
        """Every ref names the single image manifest docker push reported, all one digest."""
        registry = self.plan.registry
        problems = []
        for ref in self.refs:
            result, _ = run_retrying(runner, manifest_inspect_command(ref, registry.host),
                                     self.sleep, f"docker manifest inspect {ref}")
            if result.dry:
                continue
            if not result.ok:
                said = result.stdout + result.stderr
                hint = ""
                if "no such manifest" in said and not registry.is_ecr:
                    hint = (f" (if {registry.host} is a plain-HTTP registry, `docker manifest` "
                            "cannot read it back)")
                problems.append(f"{ref}: cannot read its manifest back from the registry{hint}:\n"
                                f"{tail(said, 5)}")
                continue
            try:
                digest = parse_manifest_verbose(result.stdout)
            except IndexManifest as index:
                problems.append(f"{ref} is {index}, not a single image manifest: SageMaker "
                                "refuses image indexes; build without attestations "
                                "(--provenance=false --sbom=false) for a single platform")
                continue
            except ValueError as bad:
                problems.append(f"{ref}: cannot read `docker manifest inspect --verbose`: {bad}")
                continue
            if digest != self.digests.get(ref):
                problems.append(f"{ref} resolves to {digest} on the registry, but "
                                f"docker push reported {self.digests.get(ref)}")
        return self._conclude(runner, problems, "were pushed as different manifests", "{digest}")

    def _verify_index(self, runner) -> Optional[str]:
        """Every ref names one image index holding every requested platform."""
        wanted = [normalize_platform(p) for p in self.plan.platforms]
        problems = []
        for ref in self.refs:
            result, _ = run_retrying(runner, imagetools_inspect_command(ref), self.sleep,
                                     f"docker buildx imagetools inspect {ref}")
            if result.dry:
                continue
            if not result.ok:
                problems.append(f"{ref}: cannot read its manifest back from the registry:\n"
                                f"{tail(result.stdout + result.stderr, 5)}")
                continue
            try:
                index = parse_index_raw(result.stdout)
            except ValueError as bad:
                problems.append(f"{ref} is {bad}" if str(bad).startswith("a single")
                                else f"{ref}: cannot read `docker buildx imagetools inspect --raw`: {bad}")
                continue
            have = {normalize_platform(p) for p in index.platforms}
            missing = [p for p in wanted if p not in have]
            if missing:
                problems.append(f"{ref}: the index lacks {', '.join(missing)} (it has "
                                f"{', '.join(index.platforms) or 'no platform'})")
            self.digests[ref] = index.digest
        return self._conclude(runner, problems, "name different indexes",
                              "the image index {digest} of " + ", ".join(self.plan.platforms)
                              + f" ({NOT_FOR_SAGEMAKER})")

    def _conclude(self, runner, problems: list, differ: str, what: str) -> Optional[str]:
        """The shared ending of both verifications: one digest for all refs, or PushFailed
        listing every problem; then the log of what was pushed and the pinned line on stdout.
        ``what`` names the digest (``{digest}`` in it), ``differ`` says what differing means."""
        if runner.dry_run:
            return None
        digests = self.digests
        distinct = sorted(set(digests.values()))
        if len(distinct) > 1:
            problems.append(f"the tags of this build {differ}: "
                            + ", ".join(f"{ref} {d}" for ref, d in digests.items()))
        if problems:
            raise PushFailed("verification failed:\n" + "\n".join(f"  {p}" for p in problems))
        pinned = f"{self.plan.registry.uri}@{distinct[0]}"
        runner.log(f"pushed and verified {len(digests)} tags, all {what.format(digest=distinct[0])}:",
                   SUCCESS)
        for ref in digests:
            runner.log(f"  {ref}")
        if self.skipped:
            runner.log(f"left out (the repository keeps them immutable): {', '.join(self.skipped)}")
        runner.emit(pinned)  # stdout: the one line a script wants
        return pinned


def run_retrying(runner, cmd: Command, sleep: Callable, what: str):
    """Run ``cmd``; retry a transient failure with exponential backoff, ``ATTEMPTS`` in all.
    Returns the last result and its failure class (None when it succeeded or was not run)."""
    attempt = 1
    result = runner.run(cmd)
    while not (result.ok or result.dry):
        output = result.stdout + result.stderr
        kind = classify_failure(output)
        if kind != TRANSIENT or attempt == ATTEMPTS:
            return result, kind
        delay = BACKOFF * 2 ** (attempt - 1)
        runner.log(f"{what} failed ({tail(output, 1)}); retrying in {delay:g}s "
                   f"(attempt {attempt + 1} of {ATTEMPTS})")
        sleep(delay)
        attempt += 1
        result = runner.run(cmd)
    return result, None


def prepare(runner, plan: BuildPlan, *, environ=None, sleep: Callable = time.sleep) -> Pushing:
    """Before the build: the attestation probe, ECR login and pre-flight."""
    environ = os.environ if environ is None else environ
    registry = plan.registry
    if plan.buildx:
        no_attestations = True  # docker buildx build takes --provenance: nothing to probe
    else:
        probe = runner.run(attestation_probe_command())
        no_attestations = probe.ok and "--provenance" in probe.stdout
        if probe.dry:
            runner.log("dry run: a real run adds --provenance=false --sbom=false to the build "
                       "when `docker build --help` lists --provenance (docker build is buildx)")
    refs, skipped, helper = plan.refs, (), None
    if registry.is_ecr:
        helper = cred_helper(read_docker_config(environ).cred_helpers, registry.host)
        if helper:
            runner.log(f"not logging in to {registry.host}: docker gets its credentials from "
                       f"docker-credential-{helper} (credHelpers in {docker_config_path(environ)})")
            if not shutil.which(f"docker-credential-{helper}", path=environ.get("PATH")):
                # Known before the build: docker would push without credentials and fail.
                runner.stop_or_warn(PushFailed(
                    f"docker-credential-{helper}, which credHelpers in "
                    f"{docker_config_path(environ)} names for {registry.host}, is not on PATH, so "
                    "docker would push without credentials; install it "
                    "(amazon-ecr-credential-helper), or remove that entry so that this script logs "
                    "in with `aws ecr get-login-password`"))
        else:
            login(runner, registry, environ)
        repository = preflight(runner, registry, environ)
        if repository is not None:
            skip_tags = immutable_conflicts(runner, plan, repository, environ)
            skipped = tuple(f"{plan.base}:{tag}" for tag in skip_tags)
            refs = tuple(ref for ref in plan.refs if ref not in skipped)
    kept = {name: environ[name] for name in (*AWS_ENV_VARS, "DOCKER_CONFIG") if name in environ}
    return Pushing(plan, refs, skipped, no_attestations, helper, kept, sleep)


def _run_aws(runner, cmd: Command):
    try:
        return runner.run(cmd)
    except ToolMissing:
        raise ToolMissing(f"the aws CLI is needed to push to ECR: {AWS_INSTALL_HINT}") from None


def login(runner, registry: Registry, environ) -> None:
    """``aws ecr get-login-password`` on its own, its output fed to ``docker login`` on stdin."""
    password = _login_password(runner, registry, environ)
    result = runner.run(docker_login_command(registry.host), stdin=password)
    if result.dry:
        return
    if not result.ok:
        said = _scrub(result.stdout + result.stderr, password)
        raise CommandFailed(f"docker login to {registry.host} with the ECR password "
                            f"{ended(result.returncode)}{aws_context(environ)}:\n{tail(said)}",
                            returncode=result.returncode)
    runner.log(f"logged in to {registry.host} (ECR region {registry.region}){aws_context(environ)}")


def _login_password(runner, registry: Registry, environ) -> Secret:
    result = _run_aws(runner, get_login_password_command(registry))
    if result.dry:
        return Secret("")
    if not result.ok:
        hint = explain_aws_failure(result.stderr, registry, environ,
                                   "get an ECR token (ecr:GetAuthorizationToken)")
        raise CommandFailed(f"aws ecr get-login-password --region {registry.region} failed: "
                            f"{hint}\n{tail(result.stderr)}", returncode=result.returncode)
    password = Secret(result.stdout.strip())
    if not password.reveal():
        raise CommandFailed("aws ecr get-login-password printed no password")
    return password


def _scrub(text: str, secret: Secret) -> str:
    value = secret.reveal()
    return text.replace(value, "***") if value else text


def preflight(runner, registry: Registry, environ) -> Optional[RepositoryInfo]:
    """The repository must exist; returns its mutability settings (None in a dry run)."""
    result = _run_aws(runner, describe_repositories_command(registry))
    if result.dry:
        runner.log(f"dry run: a real run stops here if {registry.path} does not exist; if it keeps "
                   "tags immutable, it lists the repository's tags (aws ecr list-images) and stops "
                   "on the planned tags it would refuse (--skip-existing-immutable: leaves them "
                   "out of the push)")
        return None
    if not result.ok:
        if "RepositoryNotFoundException" in result.stderr:
            raise PushFailed(f"ECR repository {registry.path} does not exist in {registry.host}; "
                             f"create it: aws ecr create-repository --repository-name "
                             f"{registry.path} --region {registry.region}")
        hint = explain_aws_failure(result.stderr, registry, environ,
                                   "describe the repository (ecr:DescribeRepositories)")
        raise CommandFailed(f"checking ECR repository {registry.path} failed: {hint}\n"
                            f"{tail(result.stderr)}", returncode=result.returncode)
    try:
        return parse_describe_repositories(result.stdout)
    except ValueError as bad:
        raise CommandFailed(f"cannot read `aws ecr describe-repositories` output ({bad}):\n"
                            f"{tail(result.stdout, 5)}") from None


def moving_tags(plan: BuildPlan) -> set:
    """The tags a later build must overwrite: latest, the env tag and, with --semver-tags, the
    channels <major> and <major>.<minor>."""
    moving = {"latest", plan.env}
    if plan.options.semver_tags and plan.version:
        import semver

        version = semver.Version.parse(plan.version)
        moving |= {f"{version.major}", f"{version.major}.{version.minor}"}
    return moving


def immutable_conflicts(runner, plan: BuildPlan, repository: RepositoryInfo, environ) -> tuple:
    """Planned tags an immutable repository refuses: those already there, and the moving tags
    (``moving_tags``) that the next build must overwrite. Stops unless
    ``--skip-existing-immutable``; returns the tags to leave out of the push."""
    immutable = [tag for tag in plan.tags if repository.is_immutable(tag)]
    if not immutable:
        return ()
    registry = plan.registry
    result = _run_aws(runner, list_images_command(registry))
    if not result.ok:
        hint = explain_aws_failure(result.stderr, registry, environ,
                                   "list the repository's images (ecr:ListImages)")
        raise CommandFailed(f"listing the tags of ECR repository {registry.path} failed: {hint}\n"
                            f"{tail(result.stderr)}", returncode=result.returncode)
    try:
        existing = parse_list_images(result.stdout)
    except ValueError as bad:
        raise CommandFailed(f"cannot read `aws ecr list-images` output ({bad}):\n"
                            f"{tail(result.stdout, 5)}") from None
    # the moving tags exist to move from build to build; an immutable repository would freeze
    # them at their first push, so they count as conflicts even while still absent.
    moving = moving_tags(plan)
    conflicts = tuple(tag for tag in immutable if tag in existing or tag in moving)
    if not conflicts:
        return ()
    if plan.options.skip_existing_immutable:
        runner.log(f"skipping tags that {registry.path} keeps immutable "
                   f"({repository.describe()}): {', '.join(conflicts)}; the build still tags "
                   "them locally")
        if len(conflicts) == len(plan.tags):
            raise PushFailed(f"every planned tag is immutable in {registry.path}: nothing to push")
        return conflicts
    no_latest = ", --no-latest to drop 'latest'" if "latest" in conflicts else ""
    raise PushFailed(f"ECR repository {registry.path} is {repository.describe()}: the planned "
                     f"tags {', '.join(conflicts)} cannot be pushed (already there, or moving tags "
                     "that must be overwritten by the next build). "
                     f"Pass --skip-existing-immutable to push only the other tags{no_latest}, "
                     "or allow overwriting: aws ecr put-image-tag-mutability --repository-name "
                     f"{registry.path} --region {registry.region} --image-tag-mutability MUTABLE")
