"""Which hosts are ECR registries, and which account, region and FIPS setting ragbuild reads from
one (reference.ECR_HOST_RE, ecr.account_of), against AWS's own rule: the host names the tests of
amazon-ecr-credential-helper hold for its ``ExtractRegistry`` (ecr-login/api/client_test.go,
https://github.com/awslabs/amazon-ecr-credential-helper), each given to ragbuild as a --registry
and as a ref with a port. The real aws CLI's view of the same is tests/e2e/test_ecr_differential.py.
"""

from __future__ import annotations

import pytest

from ragbuild import ecr
from ragbuild.reference import parse_source
from ragbuild.reference import parse_registry

#: host -> (account, region, FIPS), as the helper reads them
ECR_HOSTS = {
    "123456789012.dkr.ecr.us-east-1.amazonaws.com": ("123456789012", "us-east-1", False),
    "123456789012.dkr.ecr.us-west-2.amazonaws.com": ("123456789012", "us-west-2", False),
    "123456789012.dkr-ecr.us-west-2.on.aws": ("123456789012", "us-west-2", False),
    "123456789012.dkr-ecr-fips.us-west-2.on.aws": ("123456789012", "us-west-2", True),
    "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn": ("210987654321", "cn-north-1", False),
    "210987654321.dkr.ecr.cn-north-1.on.amazonwebservices.com.cn": (
        "210987654321",
        "cn-north-1",
        False,
    ),
    "210987654321.dkr.ecr.us-iso-east-1.c2s.ic.gov": ("210987654321", "us-iso-east-1", False),
    "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov": ("123456789012", "us-isob-east-1", False),
    "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk": ("123456789012", "eu-isoe-west-1", False),
    "123456789012.dkr.ecr.us-isof-east-1.csp.hci.ic.gov": ("123456789012", "us-isof-east-1", False),
    "123456789012.dkr-ecr.us-gov-east-1.on.aws": ("123456789012", "us-gov-east-1", False),
    "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com": (
        "123456789012",
        "us-gov-west-1",
        True,
    ),
    "123456789012.dkr-ecr-fips.us-gov-east-1.on.aws": ("123456789012", "us-gov-east-1", True),
    "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu": ("123456789012", "eusc-de-east-1", False),
    "000000000042.dkr.ecr.eu-west-1.amazonaws.com": ("000000000042", "eu-west-1", False),
}
#: hosts the helper refuses (or takes for ECR Public): no ECR calls, no --registry-id
NOT_ECR = [
    "not.ecr.io",
    "123456789012.dkr.ecr.us-west-2.amazonaws.com.fake.example.com",
    "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com.fake.example.com",
    "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn.fake.example.com.cn",
    "210987654321.dkr.ecr.cn-north-1.on.aws.com.cn",
    "public.ecr.aws",
    "ecr-public.aws.com",
    "public.ecr.aws.fake.example.com",
    "12345678901.dkr.ecr.us-east-1.amazonaws.com",  # 11 digits
    "1234567890123.dkr.ecr.us-east-1.amazonaws.com",  # 13 digits
    "123456789012.dkr.ecr.us-east-1.amazonaws.org",
]


@pytest.mark.parametrize("host", sorted(ECR_HOSTS))
@pytest.mark.parametrize("port", ["", ":443"])
def test_ragbuild_reads_an_ecr_host_as_the_credential_helper_does(host, port):
    account, region, fips = ECR_HOSTS[host]
    for registry in (
        parse_registry(f"{host}{port}/team/app"),
        parse_source(f"{host}{port}/team/app:v1").registry,
        parse_source("sha256:" + "a" * 64, f"{host}{port}/team/app").registry,
    ):
        assert (registry.region, registry.fips, registry.path) == (region, fips, "team/app")
        assert ecr.account_of(registry) == account
        for cmd in (ecr.describe_repositories_command(registry), ecr.list_images_command(registry)):
            argv = cmd.argv
            assert argv[argv.index("--registry-id") + 1] == account
            assert argv[argv.index("--region") + 1] == region
        login = ecr.get_login_password_command(registry)
        assert login.argv[login.argv.index("--region") + 1] == region
        for cmd in (login, ecr.describe_repositories_command(registry)):
            assert (("AWS_USE_FIPS_ENDPOINT", "true") in cmd.env) is fips


@pytest.mark.parametrize("host", NOT_ECR)
def test_a_host_the_credential_helper_refuses_is_not_ecr_for_ragbuild(host):
    registry = parse_registry(f"{host}/team/app")
    assert not registry.is_ecr and registry.region is None
    with pytest.raises(ValueError):
        ecr.account_of(registry)
