"""``doctor`` against the harness: healthy (engine, plain registry, moto's ECR and the TLS
registry), then one fault at a time: no daemon, no buildx for a build that needs it, a registry
that does not answer, a missing ECR repository. Each fault is one ``problem`` line with its fix
and exit 1; a healthy machine exits 0."""

from __future__ import annotations

import re

import pytest

from .support import BASE_IMAGE, free_port

from .test_builders import docker_without_buildx  # noqa: F401 (fixture)
from .test_host_network import fetched, mirror  # noqa: F401 (fixture)
from .test_push import aws_with_login_password, ecr_host, ecr_repository  # noqa: F401

pytestmark = pytest.mark.e2e


def lines_of(result):
    return [
        line
        for line in result.stdout.splitlines()
        if line.split(None, 1)[0] in ("ok", "warning", "problem")
    ]


def problems(result):
    return [line for line in lines_of(result) if line.startswith("problem ")]


def test_make_doctor_on_the_healthy_harness(project):
    result = project.make("doctor")
    assert result.returncode == 0, result.describe()
    found = lines_of(result)
    assert [line.split(None, 1)[1].split(":")[0] for line in found] == [
        "python",
        "docker client",
        "docker daemon",
        "buildkit",
        "buildx builders",
        "git",
        "git tags",
        "plan",
        "dockerfile and context",
        "registry",
        "dockerfile frontend",
        "base image",
        "package index",
    ]
    assert problems(result) == []
    assert "ok       dockerfile frontend: the engine's own (no `# syntax=` line)" in found
    assert "ok       base image: python:3.11-slim is available to the engine (local)" in found
    assert result.stdout.splitlines()[-2] == "a build would work"


def test_doctor_with_the_plain_registry(project, e2e_env):
    registry = e2e_env["E2E_REGISTRY"]
    result = project.script("doctor", "--registry", f"{registry}/doctor-check")
    assert result.returncode == 0, result.describe()
    # localhost: an insecure registry of every daemon (127.0.0.0/8), reached over plain HTTP
    # without asking the daemon's registry configuration (docker info for its proxies only)
    assert (
        f"ok       registry: {registry} answers (plain HTTP: an insecure registry "
        "of the daemon) and accepts docker's credentials"
    ) in result.stdout
    assert (
        "ok       registry credentials: none: no credHelpers, credsStore or auths" in result.stdout
    )
    assert result.stdout.splitlines()[-1] == "a build and push would work"


def test_doctor_with_an_ecr_repository(project, ecr_repository, ecr_host, docker_config):
    name = ecr_repository("doctor", "--image-tag-mutability", "IMMUTABLE")
    result = project.script(
        "doctor", "--registry", f"{ecr_host}/{name}", env={"DOCKER_CONFIG": docker_config}
    )
    assert result.returncode == 0, result.describe()
    out = result.stdout
    assert re.search(
        rf"^ok       registry: {re.escape(ecr_host)} answers \(.*\) and accepts "
        "docker's credentials$",
        out,
        re.M,
    )
    assert f"ok       ECR credentials: valid for region us-east-1 (from the host {ecr_host})" in out
    assert f"ok       ECR repository: {name} exists, " in out and "IMMUTABLE" in out
    # issue 23: after the login, the credentials line names what docker login stored
    assert (
        f"ok       registry credentials: auths['{ecr_host}'] in {docker_config}/config.json "
        "(the ECR login just stored them)"
    ) in out, out
    assert "none: no credHelpers" not in out, out


def test_doctor_with_a_missing_ecr_repository(project, unique, ecr_host, docker_config):
    name = unique("doctor-missing")
    result = project.script(
        "doctor", "--registry", f"{ecr_host}/{name}", env={"DOCKER_CONFIG": docker_config}
    )
    assert result.returncode == 1
    assert problems(result) == [
        f"problem  ECR repository: ECR repository {name} does not exist in account 123456789012 "
        f"({ecr_host}); create it there, with credentials of account 123456789012: "
        f"aws ecr create-repository --repository-name {name} --region us-east-1 "
        "--registry-id 123456789012"
    ]


def test_doctor_with_a_registry_that_does_not_answer(project):
    host = f"localhost:{free_port()}"
    result = project.script("doctor", "--registry", f"{host}/rag-worker")
    assert result.returncode == 1
    found = problems(result)
    assert len(found) == 1 and found[0].startswith(
        f"problem  registry: cannot reach the registry {host} over HTTPS"
    )
    assert "check the host and port in --registry" in found[0]


def test_doctor_without_a_daemon(project, tmp_path):
    sock = tmp_path / "stopped.sock"
    result = project.script("doctor", env={"DOCKER_HOST": f"unix://{sock}"})
    assert result.returncode == 1
    found = problems(result)
    assert found[0].startswith(
        f"problem  docker daemon: cannot reach the Docker daemon at unix://{sock}: start it"
    )
    assert "`make engine` as root on Debian or Ubuntu" in found[0]
    assert found[-3:] == [
        f"problem  {check}: not checked: no docker daemon"
        for check in ("dockerfile frontend", "base image", "package index")
    ]


def test_doctor_without_buildx(project, docker, docker_without_buildx):
    plain = project.script("doctor", env={"DOCKER": docker_without_buildx})
    if docker.major() < 23:
        assert plain.returncode == 0, plain.describe()  # docker 20.10 builds with its own BuildKit
        assert "ok       buildkit: built into docker 20.10" in plain.stdout
    else:  # 23+ (Debian 13's 26): `docker build` is buildx; without the plugin, the legacy builder
        assert plain.returncode == 1, plain.describe()
        assert problems(plain)[0].startswith(
            f"problem  buildkit: docker {docker.version()} builds with BuildKit only through the "
            "buildx plugin, which is missing; fix: install the buildx plugin"
        )
    needs = project.script("doctor", "--builder", "remote", env={"DOCKER": docker_without_buildx})
    assert needs.returncode == 1
    assert problems(needs)[0].startswith(
        "problem  buildkit: this build needs docker buildx (for --builder remote), and this docker "
        "client has no buildx: install the buildx plugin"
    )


def test_doctor_names_the_safe_directory_fix(project):
    """A checkout owned by another user (a CI volume, a container's bind mount): git refuses it
    and the build stops; doctor says which command trusts it."""
    import os
    import pwd
    import subprocess

    nobody = pwd.getpwnam("nobody").pw_uid
    subprocess.run(["chown", "-R", str(nobody), str(project.path)], check=True)
    try:
        result = project.script("doctor", env={"HOME": str(project.path.parent)})
    finally:
        subprocess.run(["chown", "-R", str(os.getuid()), str(project.path)], check=True)
    assert result.returncode == 1  # the build stops before docker rather than tag without git
    assert problems(result) == [
        f"problem  git: git cannot say which commit this build is made from: fatal: detected "
        f"dubious ownership in repository at '{project.path}' To add an exception for this "
        f"directory, call: git config --global --add safe.directory {project.path}; the run "
        "stops before docker rather than tag the image without it; fix: git config --global "
        f"--add safe.directory {project.path}",
        "problem  plan: not made: git failed (above)",
    ]


def test_doctor_with_an_expired_ecr_token(
    project, ecr_repository, ecr_host, docker_config, tmp_path
):
    """An ECR token the registry no longer accepts (they last 12 hours): the aws CLI hands one
    out, docker login is refused; one problem line, the token never printed."""
    stale = "expired-ecr-token-0123456789"
    fake = aws_with_login_password(tmp_path, stale)
    name = ecr_repository("doctor-expired")
    result = project.script(
        "doctor",
        "--registry",
        f"{ecr_host}/{name}",
        env={"DOCKER_CONFIG": docker_config, "AWS_CLI": fake},
    )
    assert result.returncode == 1
    found = problems(result)
    assert len(found) == 1, result.describe()
    assert found[0].startswith(
        f"problem  ECR credentials: docker login to {ecr_host} with the ECR password failed"
    )
    assert stale not in result.stdout + result.stderr


# --- what the build fetches, asked of the engine (probe builds) ---------------------------------


def engine_trusts_pypi(docker) -> tuple:
    """``(answers, said)``: whether a container of the engine (``docker run``, the default
    bridge network a build's RUN steps use too) verifies PyPI's certificate with the base
    image's own CAs, a question asked another way than doctor's probe build."""
    code = (
        "import urllib.request\n"
        "try:\n urllib.request.urlopen('https://pypi.org/simple/pip/', timeout=20)\n"
        "except Exception as e: print(repr(e)); raise SystemExit(1)\n"
    )
    result = docker("run", "--rm", BASE_IMAGE, "python", "-c", code)
    return result.returncode == 0, result.stdout + result.stderr


@pytest.mark.every_leg
def test_doctor_asks_the_engine_whether_pypi_needs_the_hosts_ca(project, docker):
    """This machine's network inspects TLS: PyPI answers a build only with the host's CA, which
    ragbuild passes, so doctor passes and says so; where the engine's containers reach PyPI
    without it, or not at all (the harness's second engines have no working DNS), doctor says
    that. The expectation comes from the engine itself, asked another way (engine_trusts_pypi)."""
    plain, said = engine_trusts_pypi(docker)
    result = project.script("doctor")
    line = next(line for line in lines_of(result) if " package index: " in line)
    if plain:
        assert line == f"ok       package index: PyPI answers from the engine (pip on {BASE_IMAGE})"
    elif "CERTIFICATE_VERIFY_FAILED" in said:  # the machine this test was made for
        assert re.fullmatch(
            r"ok       package index: PyPI answers only with the host's CA: "
            r"ragbuild passes it \(\S+, from \S.*; --no-host-ca turns it off\)",
            line,
        ), line
    else:
        assert line.startswith("problem  package index: PyPI unreachable from the engine: "), line
        assert result.returncode == 1 and problems(result) == [line], result.describe()
        return
    assert result.returncode == 0, result.describe()
    assert result.stdout.splitlines()[-1] == "a build would work"


def test_doctor_says_when_no_host_ca_stands_in_the_way(project, docker):
    """Where PyPI answers the engine only with the host's CA (this machine), --no-host-ca is
    the problem and the line names it; where it answers without, the flag changes nothing."""
    plain, said = engine_trusts_pypi(docker)
    result = project.script("doctor", "--no-host-ca")
    if plain:
        assert result.returncode == 0, result.describe()
        return
    assert "CERTIFICATE_VERIFY_FAILED" in said, said  # else: unreachable, the case above
    assert result.returncode == 1, result.describe()
    assert len(problems(result)) == 1, result.describe()
    assert re.fullmatch(
        r"problem  package index: PyPI answers only with the host's CA \(\S+, "
        r"from .+\), which --no-host-ca keeps from the build: "
        r"CERTIFICATE_VERIFY_FAILED: .+; fix: drop --no-host-ca",
        problems(result)[0],
    ), problems(result)[0]


@pytest.mark.every_leg
def test_doctor_probes_the_index_of_the_builds_build_args(project, e2e_env):
    """The wheel mirror of the harness, given as the build gets it: plain HTTP, no CA needed."""
    mirror = e2e_env["E2E_WHEEL_MIRROR"]
    result = project.script("doctor", *e2e_env["E2E_PIP_BUILD_ARGS"].split())
    assert result.returncode == 0, result.describe()
    assert (
        f"ok       package index: {mirror} answers from the engine (pip on {BASE_IMAGE})"
        in lines_of(result)
    )


def test_doctor_with_an_index_the_engine_cannot_reach(project):
    """127.0.0.1 inside the probe's container is the container: nothing listens there."""
    result = project.script(
        "doctor", "--build-arg", "PIP_INDEX_URL=http://u:s3cr3t@127.0.0.1:9/simple"
    )
    assert result.returncode == 1, result.describe()
    assert problems(result) == [
        "problem  package index: http://***@127.0.0.1:9/simple unreachable from the engine: "
        "Failed to establish a new connection: [Errno 111] Connection refused; fix: the proxy the "
        "build's RUN steps use (proxies in ~/.docker/config.json, or --build-arg "
        "HTTPS_PROXY=...), a reachable index (--build-arg PIP_INDEX_URL=..., --host-index); see "
        "docs/troubleshooting.md"
    ]
    assert "s3cr3t" not in result.stdout + result.stderr


@pytest.mark.every_leg
def test_doctor_fails_a_syntax_line_the_engine_cannot_pull(project):
    """No registry answers on this machine: a build of a Dockerfile that starts with
    ``# syntax=docker/dockerfile:1.7`` fails at once; doctor says so, with the fix."""
    dockerfile = project.path / "Dockerfile"
    dockerfile.write_text("# syntax=docker/dockerfile:1.7\n" + dockerfile.read_text())
    result = project.script("doctor", "--allow-dirty")
    assert result.returncode == 1, result.describe()
    found = [line for line in problems(result) if " package index: " not in line]  # (the engine's)
    assert len(found) == 1, result.describe()
    assert re.fullmatch(
        r"problem  dockerfile frontend: the engine cannot get "
        r"(docker\.io/)?docker/dockerfile:1\.7, the frontend the `# syntax=` line "
        r"names \(.+\); fix: remove the `# syntax=` line \(the engine's built-in "
        r"frontend then reads the Dockerfile, RUN --mount included\), or docker "
        r"pull/load (docker\.io/)?docker/dockerfile:1\.7 on the engine",
        found[0],
    ), found[0]
    build = project.script("--env", "dev", "--allow-dirty")  # the build fails as doctor said
    assert build.returncode != 0 and "dockerfile:1.7" in build.stdout + build.stderr


@pytest.mark.parametrize(
    "head",
    [
        "#!/bin/sh\n# syntax=absent/frontend:1\n",
        "# syntax=absent/one:1\n# syntax=absent/two:1\n",
        "\n# syntax=absent/frontend:1\n",
        "# a comment\n# syntax=absent/frontend:1\n",
        "#Syntax = absent/frontend:1 \n",
        "// syntax=absent/frontend:1\n",
    ],
)
@pytest.mark.every_leg
def test_doctor_asks_the_engine_which_directives_it_reads(project, head):
    """Engines differ on which header lines are parser directives (BuildKit 0.8 and 0.13:
    probe.DIRECTIVE_RE): doctor's probe is the Dockerfile's own header, so doctor fails the
    frontend exactly when the engine's build tries to resolve one. The build runs with a base
    image no one has, so it stops at once either way: at that image when the header is fine,
    before it (a frontend it cannot resolve; ``//`` on an engine that reads no such comment)
    when it is not."""
    dockerfile = project.path / "Dockerfile"
    dockerfile.write_text(head + dockerfile.read_text())
    result = project.script("doctor", "--allow-dirty")
    build = project.script(
        "--env", "dev", "--allow-dirty", "--build-arg", "PYTHON_IMAGE=ragbuild-e2e-none:0"
    )
    assert build.returncode != 0, build.describe()
    header_failed = (
        "load metadata for docker.io/library/ragbuild-e2e-none" not in build.stdout + build.stderr
    )
    frontend = [line for line in problems(result) if "dockerfile frontend:" in line]
    assert bool(frontend) == header_failed, result.describe() + build.describe()
    assert result.returncode == 1 or not header_failed, result.describe()
    if "resolve image config for" in build.stdout + build.stderr:  # the frontend it named
        assert "absent/" in frontend[0] and "fix: remove the `# syntax=` line" in frontend[0]


@pytest.mark.every_leg
def test_doctor_fails_a_base_image_the_engine_lacks(project, unique):
    image = f"{unique('absent')}:1"
    result = project.script("doctor", "--build-arg", f"PYTHON_IMAGE={image}")
    assert result.returncode == 1, result.describe()
    assert [line.split(":", 1)[0] for line in problems(result)] == [
        "problem  base image",
        "problem  package index",
    ]
    line = problems(result)[0]
    assert line.startswith(
        f"problem  base image: the engine does not have {image} and cannot pull it ("
    )
    assert line.endswith(
        f"); fix: docker pull {image} (or docker load it) on the engine, or "
        "--build-arg PYTHON_IMAGE=<an image the engine has>"
    )
    assert problems(result)[1] == (
        f"problem  package index: not checked: the engine cannot get the base image {image} (above)"
    )


# --- hermetic: the harness's https mirror, whose CA only the host knows -------------------------

#: No CA from the machine: the mirror's test CA is the only one the host names, or none.
NO_HOST_CA = {
    "PIP_CERT": None,
    "REQUESTS_CA_BUNDLE": None,
    "SSL_CERT_FILE": None,
    "PIP_CONFIG_FILE": "/dev/null",
}


@pytest.mark.every_leg
def test_doctor_against_a_mirror_only_the_hosts_ca_verifies(project, mirror):
    """The index answers the engine only with the host's CA: with the CA in PIP_CERT doctor
    passes and says ragbuild passes it; with --no-host-ca it names the flag; with no CA named,
    it names --host-ca. The answers come from the mirror's own log: the probe reached it."""
    args = ("--build-arg", f"PIP_FIND_LINKS={mirror.url}", "--build-arg", "PIP_NO_INDEX=1")
    ca_env = {**NO_HOST_CA, "PIP_CERT": str(mirror.ca)}
    before = mirror.log_size()
    passes = project.script("doctor", *args, env=ca_env)
    assert passes.returncode == 0, passes.describe()
    assert (
        f"ok       package index: {mirror.url} answers only with the host's CA: ragbuild "
        f"passes it ({mirror.ca}, from PIP_CERT; --no-host-ca turns it off)"
    ) in lines_of(passes)
    assert fetched(mirror.requests_since(before), prefix="/pip-", agent="pip/"), (
        "the probe with the CA downloaded no pip wheel from the mirror"
    )

    off = project.script("doctor", *args, "--no-host-ca", env=ca_env)
    assert off.returncode == 1, off.describe()
    assert problems(off) == [
        f"problem  package index: {mirror.url} answers only with the host's CA ({mirror.ca}, "
        "from PIP_CERT), which --no-host-ca keeps from the build: CERTIFICATE_VERIFY_FAILED: "
        "certificate verify failed: unable to get local issuer certificate; fix: drop --no-host-ca"
    ]

    none = project.script("doctor", *args, env=NO_HOST_CA)
    assert none.returncode == 1, none.describe()
    assert problems(none) == [
        f"problem  package index: {mirror.url}'s certificate is not trusted in the build, and the "
        "host names no CA bundle (PIP_CERT, pip's cert, REQUESTS_CA_BUNDLE, SSL_CERT_FILE): "
        "CERTIFICATE_VERIFY_FAILED: certificate verify failed: unable to get local issuer "
        "certificate; a TLS-inspecting proxy? fix: --host-ca <its CA bundle>; see "
        "docs/troubleshooting.md"
    ]


@pytest.mark.every_leg
def test_doctor_with_a_private_index_token_in_a_build_arg(project, mirror):
    """An index build arg with a token reaches the probe as the build gets it (the index
    secret): the mirror's log shows the probe authenticated as the user; no output shows the
    token."""
    before = mirror.log_size()
    result = project.script(
        "doctor",
        "--build-arg",
        f"PIP_FIND_LINKS={mirror.private_url()}",
        "--build-arg",
        "PIP_NO_INDEX=1",
        env={**NO_HOST_CA, "PIP_CERT": str(mirror.ca)},
    )
    assert result.returncode == 0, result.describe()
    shown = mirror.url.replace("://", "://***@") + "private/"
    assert (
        f"ok       package index: {shown} answers only with the host's CA: ragbuild passes it "
        f"({mirror.ca}, from PIP_CERT; --no-host-ca turns it off)"
    ) in lines_of(result)
    assert fetched(
        mirror.requests_since(before), prefix="/private/pip-", agent="pip/", user=mirror.user
    )
    assert mirror.token not in result.stdout + result.stderr
