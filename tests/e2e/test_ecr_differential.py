"""Which ECR account and region ragbuild's ECR calls address: ragbuild's reading of a registry host
(reference.ECR_HOST_RE, the pattern of amazon-ecr-credential-helper; ecr.account_of) against
what the real aws CLI sends, on generated hosts and refs (issue 23).

Each case is an ECR registry host built the way AWS names them: a 12-digit account (leading
zeros too), ``dkr.ecr`` or the dual-stack ``dkr-ecr``, FIPS (``-fips``) where AWS has FIPS
endpoints, and each partition's region and domain (amazonaws.com, amazonaws.com.cn,
on.aws, on.amazonwebservices.com.cn, amazonaws.eu, the ISO partitions), sometimes with a port;
a repository path with namespaces; given as ragbuild takes it (``--registry``, or a promote
SOURCE with a tag or a digest). ragbuild parses it, makes its ECR commands
(``describe-repositories``, ``list-images``, ``get-login-password``) and its runner runs the
real aws CLI on them, twice:

* against ``aws_recorder.Recorder`` (``AWS_ENDPOINT_URL``): each request's ``registryId`` must
  be the host's account and its repository the path, and the region the request is signed for
  the host's region;
* through ``aws_recorder.EndpointRecorder`` (``HTTPS_PROXY``, no endpoint override): the
  endpoint the CLI resolves must name the host's region, be a FIPS endpoint exactly when the
  host is, and lie in the host's partition (its DNS suffix).

The expected values come from the generator (what the host was built from), not from ragbuild.
The seed is ``RAGBUILD_ECR_SEED`` (default 23), the count ``RAGBUILD_ECR_CASES`` (default 50);
a failure prints the seed and each failing case. Runs once (not per leg): no docker engine is
involved.
"""

from __future__ import annotations

import io
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest

from ragbuild import ecr
from ragbuild.reference import parse_source
from ragbuild.reference import parse_registry
from ragbuild.run.runner import Runner

from .aws_recorder import EndpointRecorder, Recorder

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("RAGBUILD_ECR_SEED", "23"))
COUNT = int(os.environ.get("RAGBUILD_ECR_CASES", "50"))
JOBS = int(os.environ.get("RAGBUILD_ECR_JOBS", "2"))  # aws processes at a time (~0.5 s of CPU each)
#: every LOGIN_EVERY-th case also resolves get-login-password's endpoint (its region and FIPS
#: setting come from the same Registry as describe's; the sample keeps the suite's time)
LOGIN_EVERY = 3

#: The partitions: regions (AWS's own names, and names of their families AWS has not opened),
#: the registry host domains, and the DNS suffix of the partition's API endpoints
#: (https://docs.aws.amazon.com/general/latest/gr/ecr.html).
PARTITIONS = [
    (
        [
            "us-east-1",
            "us-east-2",
            "us-west-1",
            "us-west-2",
            "eu-central-1",
            "eu-west-3",
            "eu-south-2",
            "ap-southeast-3",
            "ap-northeast-1",
            "sa-east-1",
            "me-central-1",
            "il-central-1",
            "ca-central-1",
            "ca-west-1",
            "af-south-1",
            "mx-central-1",
        ],
        ["amazonaws.com", "on.aws"],
        "amazonaws.com",
    ),
    (["us-gov-west-1", "us-gov-east-1"], ["amazonaws.com", "on.aws"], "amazonaws.com"),
    (
        ["cn-north-1", "cn-northwest-1"],
        ["amazonaws.com.cn", "on.amazonwebservices.com.cn"],
        "amazonaws.com.cn",
    ),
    (["us-iso-east-1", "us-iso-west-1"], ["c2s.ic.gov"], "c2s.ic.gov"),
    (["us-isob-east-1"], ["sc2s.sgov.gov"], "sc2s.sgov.gov"),
    (["eu-isoe-west-1"], ["cloud.adc-e.uk"], "cloud.adc-e.uk"),
    (["us-isof-south-1", "us-isof-east-1"], ["csp.hci.ic.gov"], "csp.hci.ic.gov"),
    (["eusc-de-east-1"], ["amazonaws.eu"], "amazonaws.eu"),
]
WEIGHTS = [9, 3, 3, 1, 1, 1, 1, 1]  # the commercial partition most often
#: Regions with ECR FIPS endpoints (https://aws.amazon.com/compliance/fips/).
FIPS = {
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "ca-west-1",
    "us-gov-west-1",
    "us-gov-east-1",
}
COMPONENTS = ["rag-worker", "team", "ml", "a.b", "x__y", "svc-1", "platform", "deep", "app"]
TAGS = ["latest", "dev", "v1.2.3", "1.0", "git-abc1234", "prod-20261207-101010", "x_y"]


@dataclass(frozen=True)
class Case:
    number: int
    account: str
    region: str
    fips: bool
    suffix: str  # the partition's API DNS suffix
    host: str
    path: str
    given: str  # how ragbuild is given it
    text: str  # what ragbuild is given
    registry_flag: str = ""  # --registry beside a bare tag or digest

    def __str__(self) -> str:
        extra = f" --registry {self.registry_flag}" if self.registry_flag else ""
        return f"case {self.number}: {self.given} {self.text!r}{extra}"


def make_case(rng: random.Random, number: int) -> Case:
    regions, domains, suffix = rng.choices(PARTITIONS, WEIGHTS)[0]
    region = rng.choice(regions)
    domain = rng.choice(domains)
    fips = region in FIPS and rng.random() < 0.4
    roll = rng.random()
    if roll < 0.15:
        account = "0" * rng.randint(1, 6) + "".join(rng.choice("0123456789") for _ in range(6))
        account = account[-12:].rjust(12, "0")
    else:
        account = f"{rng.randrange(10**11, 10**12)}"
    dkr = "dkr-ecr" if domain.startswith("on.") else "dkr.ecr"  # dual-stack hosts: dkr-ecr
    host = f"{account}.{dkr}{'-fips' if fips else ''}.{region}.{domain}"
    if rng.random() < 0.15:
        host += ":443"
    parts = [rng.choice(COMPONENTS) for _ in range(rng.randint(1, 3))]
    parts[-1] += f"-c{number}"  # one repository per case: the recorder's requests name it
    path = "/".join(parts)
    uri = f"{host}/{path}"
    digest = "sha256:" + "".join(rng.choice("0123456789abcdef") for _ in range(64))
    form = rng.choice(["registry", "tag", "digest", "bare"])
    if form == "registry":
        return Case(number, account, region, fips, suffix, host, path, "--registry", uri)
    if form == "tag":
        text = f"{uri}:{rng.choice(TAGS)}"
    elif form == "digest":
        text = f"{uri}@{digest}"
    else:
        bare = rng.choice([rng.choice(TAGS), digest])
        return Case(number, account, region, fips, suffix, host, path, "SOURCE", bare, uri)
    return Case(number, account, region, fips, suffix, host, path, "SOURCE", text)


def parsed(case: Case):
    if case.given == "--registry":
        return parse_registry(case.text)
    return parse_source(case.text, case.registry_flag or None).registry


def with_env(cmd, **env):
    return replace(cmd, env=cmd.env + tuple(env.items()))


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """The aws CLI's environment: fake keys, no profile, region, endpoint or proxy of its own,
    one attempt per call."""
    for name in (
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_PROFILE", "AWS_DEFAULT_REGION",
        "AWS_REGION", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "HTTP_PROXY",
        "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "AWS_CA_BUNDLE",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "aws-config").write_text("")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-config"),
    }.items():
        monkeypatch.setenv(name, value)


def endpoint_problem(case: Case, target: str) -> str:
    """Why ``target`` (host:port the CLI connected to) is not the host's region's endpoint in
    its partition, or ""."""
    host = target.rsplit(":", 1)[0]
    labels = host.split(".")
    if case.region not in labels:
        return f"endpoint {host} is not in region {case.region}"
    if ("fips" in host) != case.fips:
        return f"endpoint {host} {'is not' if case.fips else 'is'} a FIPS endpoint"
    if not host.endswith("." + case.suffix):
        return f"endpoint {host} is not in the partition of {case.suffix}"
    return ""


def test_ecr_calls_address_the_hosts_account_and_region(e2e_env, aws_env):
    rng = random.Random(SEED)
    cases = [make_case(rng, number) for number in range(COUNT)]
    runner = Runner(log=io.StringIO(), out=io.StringIO())
    problems = []
    registries = {}
    for case in cases:
        registry = parsed(case)
        registries[case.number] = registry
        seen = (registry.region, registry.fips, registry.path)
        if not registry.is_ecr or seen != (case.region, case.fips, case.path):
            problems.append(f"{case}: ragbuild reads region, FIPS, path {seen}")
        elif ecr.account_of(registry) != case.account:
            problems.append(f"{case}: ragbuild reads account {ecr.account_of(registry)}")
    assert not problems, f"RAGBUILD_ECR_SEED={SEED}:\n" + "\n".join(problems)

    with Recorder(e2e_env["AWS_ENDPOINT_URL"]) as aws:

        def recorded(case: Case) -> None:
            registry = registries[case.number]
            for make in (ecr.describe_repositories_command, ecr.list_images_command):
                runner.run(with_env(make(registry), AWS_ENDPOINT_URL=aws.url))

        list(ThreadPoolExecutor(JOBS).map(recorded, cases))
    by_repository: dict = {}
    for operation, body, region in aws.signed:
        name = body.get("repositoryName") or (body.get("repositoryNames") or [None])[0]
        by_repository.setdefault(name, []).append((operation, body.get("registryId"), region))
    for case in cases:
        got = sorted(by_repository.get(case.path, []))
        want = [
            ("DescribeRepositories", case.account, case.region),
            ("ListImages", case.account, case.region),
        ]
        if got != want:
            problems.append(f"{case}: the CLI sent (operation, registryId, region) {got}")

    def resolved(case: Case) -> list:
        registry = registries[case.number]
        makes = [ecr.describe_repositories_command]
        if case.number % LOGIN_EVERY == 0:
            makes.append(ecr.get_login_password_command)
        with EndpointRecorder() as proxy:
            for make in makes:
                runner.run(with_env(make(registry), HTTPS_PROXY=proxy.url))
        return proxy.targets

    for case, targets in zip(cases, ThreadPoolExecutor(JOBS).map(resolved, cases)):
        if len(targets) != (2 if case.number % LOGIN_EVERY == 0 else 1):
            problems.append(f"{case}: the CLI connected to {targets}, not one endpoint per call")
        problems += [
            f"{case}: {why}" for why in map(lambda t: endpoint_problem(case, t), targets) if why
        ]
    assert not problems, f"RAGBUILD_ECR_SEED={SEED}, {len(problems)} disagreements:\n" + "\n".join(
        problems[:20]
    )
    # the generator reached what it is for
    assert sum(c.fips for c in cases) >= 3 and len({c.suffix for c in cases}) >= 5
    assert {c.given for c in cases} == {"--registry", "SOURCE"}
