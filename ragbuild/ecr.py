"""Amazon ECR before a push: log in, check the repository exists, and find the planned tags
its tag immutability would refuse.

The login is ``aws ecr get-login-password`` fed to ``docker login --password-stdin`` (AWS's own
recipe: https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html); the password
only ever lives in a ``Secret``. When the helper docker resolves for the host (``credHelpers``,
then ``credsStore``) is the ECR credential helper
(https://github.com/awslabs/amazon-ecr-credential-helper), docker gets its credentials from it
and there is no login. Every aws failure is explained by one function,
``explain_aws_failure``. Like the other steps this module starts no process itself: it hands
``Command`` objects to the runner.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Optional
from collections.abc import Mapping

from ragbuild.docker_config import ECR_HELPER, Credentials
from ragbuild.errors import CommandFailed, PushFailed, ToolMissing
from ragbuild.plan import BuildPlan
from ragbuild.reference import ECR_HOST_RE, Registry
from ragbuild.run.command import Command, Kind
from ragbuild.run.command import Result, Secret
from ragbuild.run.runner import Runner, ended, tail

PASSWORD_PLACEHOLDER = "<password from aws ecr get-login-password>"
AWS_ENV_VARS = ("AWS_PROFILE", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL")
AWS_INSTALL_HINT = (
    "install the AWS CLI (`pip install awscli`, or AWS CLI v2: "
    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html)"
    ", or set AWS_CLI to its path"
)


class Mutability(str, enum.Enum):
    """ECR's ``imageTagMutability`` values:
    https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Repository.html"""

    MUTABLE = "MUTABLE"
    IMMUTABLE = "IMMUTABLE"
    IMMUTABLE_WITH_EXCLUSION = "IMMUTABLE_WITH_EXCLUSION"
    MUTABLE_WITH_EXCLUSION = "MUTABLE_WITH_EXCLUSION"


def wildcard_match(pattern: str, tag: str) -> bool:
    """ECR's WILDCARD tag filter: ``*`` matches any run of characters (none included); every
    other character (ECR allows ``[0-9a-zA-Z._-]``) matches itself; the whole tag must match."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, tag) is not None


@dataclass(frozen=True)
class RepositoryInfo:
    name: str
    mutability: Mutability
    filters: tuple[str, ...] = ()  # WILDCARD patterns of imageTagMutabilityExclusionFilters
    #: False when describe-repositories was denied (``check_repository``): existence and
    #: mutability unknown, the push decides (``push.prepare`` orders the existing tags first)
    checked: bool = True

    def is_immutable(self, tag: str) -> bool:
        """IMMUTABLE: every tag. IMMUTABLE_WITH_EXCLUSION: every tag but those matching a
        filter. MUTABLE_WITH_EXCLUSION: only tags matching a filter. MUTABLE: none. Unchecked:
        none is known to be."""
        if not self.checked:
            return False
        excluded = any(wildcard_match(pattern, tag) for pattern in self.filters)
        if self.mutability == Mutability.IMMUTABLE:
            return True
        if self.mutability == Mutability.IMMUTABLE_WITH_EXCLUSION:
            return not excluded
        if self.mutability == Mutability.MUTABLE_WITH_EXCLUSION:
            return excluded
        return False

    def describe(self) -> str:
        if not self.checked:
            return "unknown (describe-repositories denied)"
        if self.filters:
            return f"{self.mutability.value} (exclusion filters: {', '.join(self.filters)})"
        return self.mutability.value


def parse_describe_repositories(text: str) -> RepositoryInfo:
    """The first repository of ``aws ecr describe-repositories --output json``; ValueError when
    the output is not shaped like that."""
    data = json.loads(text)
    repos = data.get("repositories") if isinstance(data, dict) else None
    if not isinstance(repos, list) or not repos or not isinstance(repos[0], dict):
        raise ValueError("no repository in the output")
    repo = repos[0]
    raw = repo.get("imageTagMutability") or "MUTABLE"
    entries = repo.get("imageTagMutabilityExclusionFilters") or []
    if not isinstance(raw, str) or not isinstance(entries, list):
        raise ValueError("imageTagMutability or its exclusion filters are not what ECR returns")
    try:
        mutability = Mutability(raw)
    except ValueError:
        raise ValueError(f"imageTagMutability {raw!r} is none of ECR's values") from None
    filters = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("filter", ""), str):
            raise ValueError(f"an exclusion filter that is not a WILDCARD string: {entry!r}")
        if entry.get("filterType", "WILDCARD") == "WILDCARD" and entry.get("filter"):
            filters.append(entry["filter"])
    name = repo.get("repositoryName", "")
    return RepositoryInfo(name if isinstance(name, str) else "", mutability, tuple(filters))


def parse_list_images(text: str) -> set[str]:
    """The tags in ``aws ecr list-images --output json``; ValueError for another shape."""
    data = json.loads(text)
    ids = data.get("imageIds", ()) if isinstance(data, dict) else None
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, dict) for i in ids):
        raise ValueError("no imageIds list in the output")
    return {i["imageTag"] for i in ids if isinstance(i.get("imageTag"), str) and i["imageTag"]}


def aws_context(environ: Mapping[str, str]) -> str:
    """`` (AWS_PROFILE=ci, AWS_ENDPOINT_URL=...)`` for the AWS settings in effect, or ``""``."""
    parts = [f"{name}={environ[name]}" for name in AWS_ENV_VARS if environ.get(name)]
    return f" ({', '.join(parts)})" if parts else ""


def explain_aws_failure(
    stderr: str, registry: Registry, environ: Mapping[str, str], needs: str
) -> str:
    """Why an ``aws ecr`` call failed, and what to do about it; ``needs`` names the IAM action."""
    ctx = aws_context(environ)
    text = stderr
    if "Unable to locate credentials" in text or "NoCredentialsError" in text:
        return (
            f"no AWS credentials found{ctx}: run `aws configure` or `aws sso login`, set "
            "AWS_PROFILE, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if re.search(r"ExpiredToken|expired", text, re.I):
        profile = environ.get("AWS_PROFILE")
        refresh = f"`aws sso login --profile {profile}`" if profile else "`aws sso login`"
        return (
            f"the AWS credentials{ctx} have expired: refresh them ({refresh}, or new "
            "temporary keys) and run again"
        )
    match = re.search(r"config profile \((?P<name>[^)]*)\) could not be found", text)
    if match:
        return (
            f"AWS profile {match['name']!r} is not configured: fix AWS_PROFILE or add the "
            "profile to ~/.aws/config"
        )
    if re.search(
        r"Could not connect to the endpoint URL|EndpointConnectionError|UnknownEndpoint"
        r"|Invalid endpoint|Provided region_name|Name or service not known",
        text,
    ):
        return (
            f"cannot reach the ECR API for region {registry.region} (from the registry host "
            f"{registry.host}){ctx}: check the region in --registry, AWS_ENDPOINT_URL / "
            "AWS_ENDPOINT_URL_ECR, and the network"
        )
    if re.search(
        r"UnrecognizedClient|InvalidClientTokenId|InvalidSignature|security token "
        r"included in the request is invalid|SignatureDoesNotMatch",
        text,
    ):
        return (
            f"AWS rejected the credentials{ctx}: check AWS_PROFILE or AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY"
        )
    if "Invalid choice" in text:
        return (
            "this aws CLI is too old for this command: upgrade it (`pip install -U awscli`) "
            "or use AWS CLI v2"
        )
    if re.search(r"AccessDenied|not authorized to perform", text):
        return f"the AWS identity{ctx} is not allowed to {needs}"
    return f"the aws CLI failed{ctx}"


# --- commands ----------------------------------------------------------------------------------


def account_of(registry: Registry) -> str:
    """The AWS account that owns an ECR registry: the 12 digits its host name starts with
    (``<account>.dkr.ecr.<region>.amazonaws.com``). Every ECR API call about the repository
    carries it as ``--registry-id``: without it AWS answers for the caller's own account
    (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeRepositories.html,
    ``registryId``: "If you do not specify a registry, the default registry is assumed"), which
    is another registry when CI's credentials push to a central account's."""
    match = ECR_HOST_RE.fullmatch(
        registry.host.rsplit(":", 1)[0] if registry.host.count(":") else registry.host
    )
    if match is None:
        raise ValueError(f"{registry.host} is not an ECR registry host")
    return match["account"]


def create_advice(registry: Registry) -> str:
    """How to create the repository: in the registry's account, by that account (an IAM
    identity of another account cannot create repositories there)."""
    return (
        f"create it there, with credentials of account {account_of(registry)}: aws ecr "
        f"create-repository --repository-name {registry.path} --region {registry.region} "
        f"--registry-id {account_of(registry)}"
    )


def _aws_env(registry: Registry) -> tuple[tuple[str, str], ...]:
    return (("AWS_USE_FIPS_ENDPOINT", "true"),) if registry.fips else ()


def get_login_password_command(registry: Registry) -> Command:
    """No ``--registry-id``: the command has none (``get-login-password`` takes only
    ``--region``); its token is the caller's and works for every registry of the region the
    caller is allowed to reach, another account's included."""
    assert registry.region is not None
    return Command(
        ("aws", "ecr", "get-login-password", "--region", registry.region),
        env=_aws_env(registry),
        check=False,
        kind=Kind.PROBE,
        assume="***",
    )


def docker_login_command(host: str) -> Command:
    return Command(
        ("docker", "login", "--username", "AWS", "--password-stdin", host),
        stdin=PASSWORD_PLACEHOLDER,
        check=False,
    )


def describe_repositories_command(registry: Registry) -> Command:
    assert registry.region is not None
    return Command(
        (
            "aws",
            "ecr",
            "describe-repositories",
            "--repository-names",
            registry.path,
            "--registry-id",
            account_of(registry),
            "--region",
            registry.region,
            "--output",
            "json",
        ),
        env=_aws_env(registry),
        check=False,
        kind=Kind.PROBE,
        assume=json.dumps(
            {"repositories": [{"repositoryName": registry.path, "imageTagMutability": "MUTABLE"}]}
        ),
        dry_note=f"a real run stops here if {registry.path} does not exist (if AWS "
        "denies the call: warns it cannot check, and the push decides); "
        "if it keeps "
        "tags immutable, it lists the repository's tags (aws ecr list-images) "
        "and stops on the planned tags it would refuse "
        "(--skip-existing-immutable: leaves them out of the push)",
    )


def list_images_command(registry: Registry) -> Command:
    assert registry.region is not None
    return Command(
        (
            "aws",
            "ecr",
            "list-images",
            "--repository-name",
            registry.path,
            "--registry-id",
            account_of(registry),
            "--region",
            registry.region,
            "--filter",
            "tagStatus=TAGGED",
            "--output",
            "json",
        ),
        env=_aws_env(registry),
        check=False,
        kind=Kind.PROBE,
    )


# --- steps ---------------------------------------------------------------------------------------


def _run_aws(runner: Runner, cmd: Command) -> Result:
    try:
        return runner.run(cmd)
    except ToolMissing:
        raise ToolMissing(f"the aws CLI is needed to push to ECR: {AWS_INSTALL_HINT}") from None


def authenticate(
    runner: Runner, registry: Registry, creds: Credentials, environ: Mapping[str, str]
) -> Optional[Secret]:
    """Make docker able to push to ``registry``: no login when the helper docker resolves for
    the host is ECR's own (it gets ECR tokens itself and cannot store a login: "not
    implemented"); else ``aws ecr get-login-password | docker login``, which docker stores where
    ``creds`` says (a ``credsStore`` helper, or ``auths``). A helper that is not installed has
    been refused before (``push_preflight.check_helper``). Returns the password it logged in with (what
    docker now sends to the registry), None without a login."""
    if creds.helper == ECR_HELPER:
        runner.log(
            f"not logging in to {registry.host}: docker gets its credentials from "
            f"{creds.describe()}"
        )
        return None
    return login(runner, registry, environ)


def login(runner: Runner, registry: Registry, environ: Mapping[str, str]) -> Secret:
    """``aws ecr get-login-password`` on its own, its output fed to ``docker login`` on stdin."""
    password = _login_password(runner, registry, environ)
    result = runner.run(docker_login_command(registry.host), stdin=password)
    if not result.ok:
        said = _scrub(result.stdout + result.stderr, password)
        raise CommandFailed(
            f"docker login to {registry.host} with the ECR password "
            f"{ended(result.returncode)}{aws_context(environ)}:\n{tail(said)}",
            returncode=result.returncode,
        )
    runner.report(
        f"logged in to {registry.host} (ECR region {registry.region}){aws_context(environ)}"
    )
    return password


def _login_password(runner: Runner, registry: Registry, environ: Mapping[str, str]) -> Secret:
    result = _run_aws(runner, get_login_password_command(registry))
    if not result.ok:
        raise _aws_failed(
            result,
            registry,
            environ,
            f"aws ecr get-login-password --region {registry.region} failed",
            "get an ECR token (ecr:GetAuthorizationToken)",
        )
    password = Secret(result.stdout.strip())
    if not password.reveal():
        raise CommandFailed("aws ecr get-login-password printed no password")
    return password


def _aws_failed(
    result: Result, registry: Registry, environ: Mapping[str, str], what: str, permission: str
) -> CommandFailed:
    """The error for a failed aws call: ``what`` failed, why (``explain_aws_failure``, naming
    ``permission``), and the tail of what aws said."""
    hint = explain_aws_failure(result.stderr, registry, environ, permission)
    return CommandFailed(f"{what}: {hint}\n{tail(result.stderr)}", returncode=result.returncode)


def _scrub(text: str, secret: Secret) -> str:
    value = secret.reveal()
    return text.replace(value, "***") if value else text


#: How AWS says an identity may not make a call: the error codes AccessDenied (IAM policies)
#: and AccessDeniedException (ECR's repository policies), or the text of either.
DENIED_RE = re.compile(r"AccessDenied(?:Exception)?\b|not authorized to perform")


def check_repository(
    runner: Runner, registry: Registry, environ: Mapping[str, str]
) -> RepositoryInfo:
    """The repository must exist in the registry's account (``account_of``); returns its
    mutability settings. Denied (cross-account policies often grant only push and pull): a
    one-line warning that it cannot check, and a ``RepositoryInfo`` with ``checked=False``:
    the push decides, and ``push.prepare`` reads the existing tags with the registry API."""
    result = _run_aws(runner, describe_repositories_command(registry))
    if not result.ok:
        if "RepositoryNotFoundException" in result.stderr:
            raise PushFailed(
                f"ECR repository {registry.path} does not exist in account "
                f"{account_of(registry)} ({registry.host}); "
                f"{create_advice(registry)}"
            )
        if DENIED_RE.search(result.stderr):
            runner.log(
                f"warning: cannot check ECR repository {registry.path} in account "
                f"{account_of(registry)}: AWS denied ecr:DescribeRepositories"
                f"{aws_context(environ)}; whether it exists and keeps tags immutable is "
                "unknown, the push decides (existing tags are read from the registry and "
                "pushed first)"
            )
            return RepositoryInfo(registry.path, Mutability.MUTABLE, checked=False)
        raise _aws_failed(
            result,
            registry,
            environ,
            f"checking ECR repository {registry.path} failed",
            "describe the repository (ecr:DescribeRepositories)",
        )
    try:
        return parse_describe_repositories(result.stdout)
    except ValueError as bad:
        raise CommandFailed(
            f"cannot read `aws ecr describe-repositories` output ({bad}):\n{tail(result.stdout, 5)}"
        ) from None


def immutable_conflicts(
    runner: Runner, plan: BuildPlan, repository: RepositoryInfo, environ: Mapping[str, str]
) -> tuple[str, ...]:
    """Planned tags an immutable repository refuses: those already there, and the moving tags
    (``plan.moving_tags``) that the next build must overwrite. Stops unless
    ``--skip-existing-immutable``; returns the tags to leave out of the push."""
    immutable = [tag for tag in plan.tags if repository.is_immutable(tag)]
    if not immutable:
        return ()
    registry = plan.registry
    assert registry is not None
    result = _run_aws(runner, list_images_command(registry))
    if not result.ok:
        raise _aws_failed(
            result,
            registry,
            environ,
            f"listing the tags of ECR repository {registry.path} failed",
            "list the repository's images (ecr:ListImages)",
        )
    try:
        existing = parse_list_images(result.stdout)
    except ValueError as bad:
        raise CommandFailed(
            f"cannot read `aws ecr list-images` output ({bad}):\n{tail(result.stdout, 5)}"
        ) from None
    # the moving tags exist to move from build to build; an immutable repository would freeze
    # them at their first push, so they count as conflicts even while still absent.
    conflicts = tuple(tag for tag in immutable if tag in existing or tag in plan.moving_tags)
    if not conflicts:
        return ()
    if plan.options.skip_existing_immutable:
        runner.log(
            f"skipping tags that {registry.path} keeps immutable "
            f"({repository.describe()}): {', '.join(conflicts)}; the build still tags "
            "them locally"
        )
        if len(conflicts) == len(plan.tags):
            raise PushFailed(f"every planned tag is immutable in {registry.path}: nothing to push")
        return conflicts
    no_latest = ", --no-latest to drop 'latest'" if "latest" in conflicts else ""
    raise PushFailed(
        f"ECR repository {registry.path} is {repository.describe()}: the planned "
        f"tags {', '.join(conflicts)} cannot be pushed (already there, or moving tags "
        "that must be overwritten by the next build). "
        f"Pass --skip-existing-immutable to push only the other tags{no_latest}, "
        "or allow overwriting: aws ecr put-image-tag-mutability --repository-name "
        f"{registry.path} --registry-id {account_of(registry)} --region "
        f"{registry.region} --image-tag-mutability MUTABLE"
    )
