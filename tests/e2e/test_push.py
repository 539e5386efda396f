"""``--push`` through what users type (``make push-dev``, ``make push-prod``, the script), checked
against the registries' own HTTP API rather than against what ragbuild says it did.

Two registries of the harness: a plain-HTTP one (``E2E_REGISTRY``, no login) and an ECR-shaped TLS
one (``E2E_ECR_HOST``, htpasswd user AWS) whose ECR API (login token, describe-repositories,
list-images) is moto. Every ECR case starts from an empty ``DOCKER_CONFIG`` (logged out); the
moto repositories a case creates are deleted again, the registry repositories have unique names.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import time
import urllib.request

import pytest

from .support import client_has_buildx_plugin, free_port, planned_refs, pushed_refs, tags_of

pytestmark = pytest.mark.e2e

SAGEMAKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# a build that pushes: BUILDX_NO_DEFAULT_ATTESTATIONS=1 for a `docker build` that may be buildx
BUILD_LINE = "+ DOCKER_BUILDKIT=1 BUILDX_NO_DEFAULT_ATTESTATIONS=1 docker build "
ANY_BUILD_RE = re.compile(r"^\+ (?:\S+=\S* )*docker (?:buildx )?build ", re.M)  # any build started
PINNED_RE = re.compile(r"@sha256:[0-9a-f]{64}$", re.M)
MAKE_DIRECTORY_RE = re.compile(r"make(\[\d+\])?: (Entering|Leaving) directory ")


# --- helpers -----------------------------------------------------------------------------------


def pinned_line(result) -> str:
    """The last line the script printed on stdout (``make -C`` adds its own directory lines)."""
    lines = [
        line for line in result.stdout.strip().splitlines() if not MAKE_DIRECTORY_RE.match(line)
    ]
    assert lines, f"nothing on stdout: {result.describe()}"
    return lines[-1]


def make_exit(result, target: str) -> int:
    """The script's exit status, as make reports it for ``target``."""
    match = re.search(rf"\[Makefile:\d+: {target}\] Error (\d+)$", result.stderr, re.M)
    assert match, f"make did not report the recipe's failure: {result.describe()}"
    return int(match[1])


def assert_registry_holds(registry, repository: str, tags, pinned: str) -> str:
    """``repository`` lists exactly ``tags``; each names one single-image manifest whose digest
    is the one in ``pinned`` (``<registry>/<repository>@sha256:...``)."""
    assert registry.tags(repository) == sorted(tags)
    manifests = {tag: registry.manifest(repository, tag) for tag in tags}
    digests = {tag: m.digest for tag, m in manifests.items()}
    assert len(set(digests.values())) == 1, f"the tags name different manifests: {digests}"
    digest = next(iter(digests.values()))
    assert pinned == f"{registry.host}/{repository}@{digest}"
    for tag, manifest in manifests.items():
        # a push for SageMaker (no --not-for-sagemaker): the one shape SageMaker pulls
        assert manifest.media_type == SAGEMAKER_MANIFEST, (tag, manifest.media_type)
        assert "manifests" not in manifest.body and manifest.body.get("layers"), (
            tag,
            manifest.body,
        )
    return digest


def assert_not_built(result, docker, repository_ref: str) -> None:
    assert not ANY_BUILD_RE.search(result.stderr), f"docker build ran: {result.describe()}"
    assert docker.refs(repository_ref) == []


def no_success_claimed(result) -> None:
    assert not PINNED_RE.search(result.stdout), f"a pinned digest was printed: {result.describe()}"
    assert "pushed and verified" not in result.text


def config_json(directory) -> dict:
    path = directory / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def secret_forms(password: str) -> tuple:
    """The password as it could leak: plain, and as the base64 ``user:password`` docker stores."""
    return (password, base64.b64encode(f"AWS:{password}".encode()).decode())


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def ecr_repository(runner, unique):
    """``ecr_repository(label, *flags)``: ``aws ecr create-repository`` of a unique name on moto
    (deleted at teardown); returns the name."""
    created = []

    def create(label: str, *flags) -> str:
        name = unique(label)
        runner.run(
            ["aws", "ecr", "create-repository", "--repository-name", name, *flags]
        ).assert_ok()
        created.append(name)
        return name

    yield create
    for name in created:
        runner.run(["aws", "ecr", "delete-repository", "--repository-name", name, "--force"])


def aws_with_login_password(directory, password: str):
    """An ``aws`` (for AWS_CLI) whose ``ecr get-login-password`` prints ``password``; every
    other call is the real aws CLI's."""
    fake = directory / "aws"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$2" = get-login-password ]; then echo {password}; exit 0; fi\n'
        'exec aws "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


@pytest.fixture
def ecr_host(e2e_env) -> str:
    return e2e_env["E2E_ECR_HOST"]


def tiny_args(dockerfile, *flags) -> list:
    return ["-f", dockerfile, "--context", dockerfile.parent, *flags]


# --- the plain registry ------------------------------------------------------------------------


@pytest.mark.every_leg
def test_push_dev_to_a_plain_registry_pushes_exactly_the_planned_tags(
    project, docker, images, tiny_context, unique, e2e_env, pip_args, plain_registry
):
    registry = e2e_env["E2E_REGISTRY"]
    name = unique("plain")
    uri = images.track_repository(f"{registry}/{name}")
    # a stale tag of an older build, in the same local repository: never pushed
    stale = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}-stale"')
    built = docker("build", "--quiet", "--tag", f"{uri}:stale", stale.parent).assert_ok()
    stale_id = images.track(built.stdout.strip())

    result = project.make("push-dev", f"ECR_URI={uri}", f"ARGS={pip_args}").assert_ok()
    images.track_result(result)
    refs = planned_refs(result)
    ts, sha = result.timestamp(), project.sha
    assert tags_of(refs) == [f"dev-{ts}", "dev", f"git-{sha}", "latest"]
    assert all(ref.startswith(f"{uri}:") for ref in refs)

    # exactly the planned refs, never --all-tags: by the build where the client has buildx
    # (plan.build_pushes), else one docker push per ref
    how = "build" if client_has_buildx_plugin() else "docker push"
    assert pushed_refs(result) == (how, refs)
    pinned = pinned_line(result)
    assert_registry_holds(plain_registry, name, tags_of(refs), pinned)
    assert name in plain_registry.catalog()
    assert "stale" not in plain_registry.tags(name)
    assert docker.image_id(f"{uri}:stale") == stale_id  # the stale tag was left alone locally


# --- ECR ---------------------------------------------------------------------------------------


@pytest.mark.every_leg
def test_push_prod_to_ecr_logs_in_checks_the_repository_and_verifies(
    project,
    docker,
    images,
    ecr_repository,
    ecr_host,
    docker_config,
    e2e_env,
    pip_args,
    ecr_registry,
):
    name = ecr_repository("ecr")
    uri = images.track_repository(f"{ecr_host}/{name}")
    assert config_json(docker_config) == {}  # logged out of everything

    result = project.make(
        "push-prod",
        f"ECR_URI={uri}",
        "VERSION=1.0.0",
        f"ARGS={pip_args}",
        env={"DOCKER_CONFIG": docker_config},
    ).assert_ok()
    images.track_result(result)

    # login (password on stdin only), pre-flight, then the build, smoke test and push, in order
    lines = result.stderr.splitlines()
    steps = [
        "+ aws ecr get-login-password --region us-east-1",
        f"+ docker login --username AWS --password-stdin {ecr_host} < "
        "<password from aws ecr get-login-password>",
        f"logged in to {ecr_host} (ECR region us-east-1)",
        f"+ aws ecr describe-repositories --repository-names {name} --registry-id "
        "123456789012 --region us-east-1",
        BUILD_LINE,
        "smoke test passed",
        "+ docker push ",
    ]
    found = [
        next((i for i, line in enumerate(lines) if line.startswith(step)), None) for step in steps
    ]
    assert None not in found and found == sorted(found), (
        dict(zip(steps, found)),
        result.describe(),
    )
    for leaked in secret_forms(e2e_env["E2E_ECR_PASSWORD"]):
        assert leaked not in result.text, "the ECR password was printed"

    refs = planned_refs(result)
    ts, sha = result.timestamp(), project.sha
    assert tags_of(refs) == ["v1.0.0", "1.0.0", f"prod-{ts}", "prod", f"git-{sha}", "latest"]
    assert_registry_holds(ecr_registry, name, tags_of(refs), pinned_line(result))
    # the login really happened, into the DOCKER_CONFIG given
    assert ecr_host in config_json(docker_config).get("auths", {})


def test_missing_ecr_repository_stops_before_the_build(
    project, docker, unique, ecr_host, docker_config, pip_args, ecr_registry
):
    name = unique("missing")  # never created
    uri = f"{ecr_host}/{name}"
    result = project.make(
        "push-dev", f"ECR_URI={uri}", f"ARGS={pip_args}", env={"DOCKER_CONFIG": docker_config}
    )
    assert make_exit(result, "push-dev") == 1
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert f"aws ecr create-repository --repository-name {name} --region us-east-1" in errors[0]
    assert_not_built(result, docker, uri)
    assert ecr_registry.tags(name) == []


def test_immutable_ecr_repository_stops_or_skips_the_moving_tags(
    project, docker, images, ecr_repository, ecr_host, tiny_context, docker_config, ecr_registry
):
    name = ecr_repository("immutable", "--image-tag-mutability", "IMMUTABLE")
    uri = images.track_repository(f"{ecr_host}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    flags = tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push")
    env = {"DOCKER_CONFIG": docker_config}

    stopped = project.script(*flags, env=env)
    assert stopped.returncode == 1, stopped.describe()
    errors = stopped.error_lines()
    assert len(errors) == 1, stopped.describe()
    named = re.search(r"the planned tags (.+?) cannot be pushed", errors[0])
    assert named and set(named[1].split(", ")) == {"dev", "latest"}, errors[0]
    assert "--skip-existing-immutable" in errors[0]
    assert_not_built(stopped, docker, uri)

    skipped = project.script(*flags, "--skip-existing-immutable", env=env).assert_ok()
    images.track_result(skipped)
    refs = planned_refs(skipped)
    ts = skipped.timestamp()
    assert tags_of(refs) == [f"dev-{ts}", "dev", f"git-{project.sha}", "latest"]
    pushed = [f"dev-{ts}", f"git-{project.sha}"]
    assert_registry_holds(ecr_registry, name, pushed, pinned_line(skipped))
    # the build still made every tag locally
    assert docker.refs(uri) == sorted(refs)
    left_out = [line for line in skipped.stderr.splitlines() if line.startswith("left out")]
    assert len(left_out) == 1 and f"{uri}:dev" in left_out[0] and f"{uri}:latest" in left_out[0]
    # nothing was in the repository: the log must not claim the tags already were
    assert "already" not in left_out[0], left_out[0]


def test_cred_helper_for_the_host_skips_the_login(
    project,
    docker,
    images,
    ecr_repository,
    ecr_host,
    tiny_context,
    docker_config,
    runner,
    ecr_registry,
):
    assert shutil.which("docker-credential-ecr-login", path=runner.env["PATH"]) is None, (
        "this case needs a machine without docker-credential-ecr-login"
    )
    config = {"credHelpers": {ecr_host: "ecr-login"}}
    (docker_config / "config.json").write_text(json.dumps(config))
    name = ecr_repository("helper")
    uri = images.track_repository(f"{ecr_host}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')

    result = project.script(
        *tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push"),
        env={"DOCKER_CONFIG": docker_config},
    )
    assert result.returncode == 1, result.describe()
    assert "+ aws ecr get-login-password" not in result.stderr
    assert "+ docker login" not in result.stderr
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    # the error names the cause: the helper docker would run is not installed
    assert "docker-credential-ecr-login" in errors[0]
    assert re.search(r"not (on PATH|installed|found)", errors[0]), errors[0]
    assert not ANY_BUILD_RE.search(result.stderr)  # stopped before the build
    no_success_claimed(result)
    assert ecr_registry.tags(name) == []
    assert config_json(docker_config) == config  # no login wrote to it


def test_the_tls_ecr_registry_is_verified_through_certs_d_and_read_back_with_basic(
    project, docker, images, ecr_repository, ecr_host, tiny_context, docker_config, e2e_env
):
    """The read-back's HTTP, TLS and auth against the real TLS registry: after a push through
    the script, a session that treats the host as a non-loopback one (the harness maps it to
    127.0.0.1) reaches it over verified HTTPS with the CA of /etc/docker/certs.d/<host>/ only,
    never asking the daemon, takes the htpasswd Basic challenge with the ECR password, and reads
    each tag back with the digest the run pinned."""
    from ragbuild import credentials, manifest, registry
    from ragbuild.docker_config import DockerConfig
    from ragbuild.reference import parse_registry
    from ragbuild.run.command import Secret

    name = ecr_repository("tlsread")
    uri = images.track_repository(f"{ecr_host}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(
        *tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push", "--no-latest"),
        env={"DOCKER_CONFIG": docker_config},
    ).assert_ok()
    images.track_result(result)
    digest = pinned_line(result).split("@", 1)[1]
    assert "docker manifest inspect" not in result.stderr
    assert "RegistryConfig" not in result.stderr  # (docker info for the proxy settings only)

    target = parse_registry(uri)
    login = credentials.Login(e2e_env["E2E_ECR_USER"], Secret(e2e_env["E2E_ECR_PASSWORD"]))
    session = registry.Session(target, DockerConfig().credentials(ecr_host), login, insecure=False)

    def never():
        raise AssertionError("the daemon was asked")

    assert registry.probe(session, never) is None
    assert session.base == f"https://{ecr_host}" and not session.insecure
    for ref in planned_refs(result):
        found = manifest.read_manifest(session, ref.rsplit(":", 1)[1])
        assert (found.digest, found.is_index) == (digest, False)
    wrong = registry.Session(
        target,
        DockerConfig().credentials(ecr_host),
        credentials.Login("AWS", Secret("wrong")),
        insecure=False,
    )
    assert "refused docker's credentials" in registry.probe(wrong, never)


# --- faults ------------------------------------------------------------------------------------


def test_unreachable_registry_stops_before_the_build(project, docker, tiny_context, unique):
    """A registry nothing answers for is found by the pre-flight (registry.py), not by every push
    after a whole build (issue 11 (e)); what a push that fails midway lists is unit-tested
    (test_failed_push_lists_what_was_and_was_not_pushed). A closed port of our own stands in
    for a stopped registry, so the shared harness registry keeps running for everyone."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        registry = f"127.0.0.1:{sock.getsockname()[1]}"
    name = unique("down")
    uri = f"{registry}/{name}"
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(*tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push"))
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert f"cannot reach the registry {registry}" in errors[0]
    assert "DOCKER_BUILDKIT=1 docker build" not in result.stderr
    assert docker.refs(uri) == []
    no_success_claimed(result)
    assert "Traceback" not in result.text


def test_wrong_ecr_password_fails_the_login_without_showing_it(
    project, docker, ecr_repository, ecr_host, tiny_context, docker_config, tmp_path
):
    wrong = f"wrong-password-{secrets.token_hex(8)}"
    fake = aws_with_login_password(tmp_path, wrong)
    name = ecr_repository("wrongpw")
    uri = f"{ecr_host}/{name}"
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')

    result = project.script(
        *tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push"),
        env={"DOCKER_CONFIG": docker_config, "AWS_CLI": fake},
    )
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1, result.describe()
    assert f"docker login to {ecr_host}" in errors[0] and "failed" in errors[0]
    for leaked in secret_forms(wrong):
        assert leaked not in result.text, "the wrong password was printed"
    said = result.stderr.lower()
    # the registry's refusal; docker 23+ engines (Debian 13's 26) then try the next endpoint of a
    # registry they treat as insecure (the harness's ECR host is loopback, in 127.0.0.0/8; a real
    # ECR host never is) and report that one's error instead: plain HTTP on port 80, which the
    # harness's ECR does not serve
    assert (
        "401" in said
        or "unauthorized" in said
        or (docker.major("Server") >= 23 and f'get "http://{ecr_host}/v2/"' in said)
    ), result.describe()
    assert_not_built(result, docker, uri)
    assert ecr_host not in config_json(docker_config).get("auths", {})


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_push_to_ecr_prints_the_commands_and_runs_none(
    project, docker, unique, ecr_host, tiny_context, docker_config, e2e_env
):
    name = unique("dry")  # no repository: a pre-flight that really ran would fail
    uri = f"{ecr_host}/{name}"
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(
        *tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push", "--dry-run"),
        env={"DOCKER_CONFIG": docker_config},
    ).assert_ok()
    refs = planned_refs(result)
    printed = result.stdout.splitlines()
    # the login and the pre-flight (no probe of the client: see the build's variable)
    login = [
        "aws ecr get-login-password --region us-east-1",
        f"docker login --username AWS --password-stdin {ecr_host} < "
        "<password from aws ecr get-login-password>",
    ]
    assert printed[:2] == login, result.describe()
    assert printed[2].startswith(f"aws ecr describe-repositories --repository-names {name} ")
    buildx = client_has_buildx_plugin({"DOCKER_CONFIG": str(docker_config)})
    start = (
        "docker buildx build --builder default "
        if buildx
        else "DOCKER_BUILDKIT=1 BUILDX_NO_DEFAULT_ATTESTATIONS=1 docker build "
    )
    builds = [i for i, line in enumerate(printed) if line.startswith(start)]
    assert len(builds) == 1 and builds[0] > 2, result.describe()
    # what it cannot know without docker and aws, it says
    assert f"dry run: a real run stops here if {name} does not exist" in result.stderr
    # the refs go with the build (the client has buildx), or each with a docker push after it
    pushes = [line for line in printed if line.startswith("docker push ")]
    assert pushes == ([] if buildx else [f"docker push {ref}" for ref in refs])
    assert (" --push " in printed[builds[0]]) is buildx
    # the harness maps the ECR host to 127.0.0.1: loopback, insecure to every daemon, so no
    # `docker info` for its registry configuration, one for its proxy settings; the read-back
    # is HTTP in-process, said on stderr, after the pushes
    assert not any(
        " docker manifest inspect " in f" {line}" or "RegistryConfig" in line for line in printed
    )
    assert len([line for line in printed if "docker info" in line]) == 1
    before = [line for line in result.stderr.splitlines() if "before the push" in line]
    assert len(before) == len(refs)  # the pre-flight's look at each tag (version tags: issue 22)
    reads = [
        line
        for line in result.stderr.splitlines()
        if "/manifests/" in line and " and expect the single" in line
    ]
    assert reads == [
        f"dry run: a real run would GET https://{ecr_host}/v2/{name}/manifests/"
        f"{ref.rsplit(':', 1)[1]} (HTTPS, unverified: an insecure registry of the "
        "daemon; a pull token, the Docker and OCI manifest and index types accepted) "
        "and expect the single image manifest the push reported"
        for ref in refs
    ]
    assert e2e_env["E2E_ECR_PASSWORD"] not in result.text

    # nothing ran: no command logged as executed, no login, no image
    assert [line for line in result.stderr.splitlines() if line.startswith("+ ")] == []
    assert [p.name for p in docker_config.iterdir()] in ([], ["contexts"])  # the leg's, if any
    assert docker.refs(uri) == []


# --- a build that pushes, when it fails ----------------------------------------------------------


def test_a_failing_build_that_pushes_fails_once_and_pushes_nothing(
    project, docker, unique, tiny_context, e2e_env, plain_registry
):
    """The build itself fails: one build (no second run to tell it from a failed push), one
    error line, nothing on the registry."""
    assert client_has_buildx_plugin(), "the harness installs the buildx plugin system-wide"
    name = unique("buildfails")
    uri = f"{e2e_env['E2E_REGISTRY']}/{name}"
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"', "RUN echo failing && false")
    result = project.script(*tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push"))
    assert result.returncode == 1, result.describe()
    assert result.error_lines() == [
        "error: docker buildx build failed (exit 1); its output is above (the build failed: no "
        "image of this run carries the tags, nothing was pushed)"
    ], result.describe()
    assert len(ANY_BUILD_RE.findall(result.stderr)) == 1, result.describe()
    assert "+ docker push" not in result.stderr
    assert name not in plain_registry.catalog()


def test_a_push_that_fails_in_the_build_goes_again_with_docker_push(
    project, docker, images, unique, tiny_context, tmp_path
):
    """A registry in read-only mode (distribution's maintenance setting) answers GET /v2/, so
    the pre-flight passes, and refuses every upload: the build's push fails after the image was
    built and tagged, the tags go with docker push, which fails the same way and says so."""
    assert client_has_buildx_plugin(), "the harness installs the buildx plugin system-wide"
    registry_bin = shutil.which("docker-registry")
    assert registry_bin, "the harness installs docker-registry"
    port = free_port()
    config = tmp_path / "readonly.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
        "  maintenance:\n    readonly:\n      enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    server = subprocess.Popen(
        [registry_bin, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        name = unique("readonly")
        uri = images.track_repository(f"127.0.0.1:{port}/{name}")
        dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
        result = project.script(
            *tiny_args(
                dockerfile, "--env", "dev", "--registry", uri, "--push", "--push-attempts", "1"
            )
        )
        images.track_result(result)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.returncode == 1, result.describe()
    refs = planned_refs(result)
    assert "after it built and tagged the image (this run's created label)" in result.stderr
    assert "the push failed, so each tag goes with docker push" in result.stderr
    assert len(ANY_BUILD_RE.findall(result.stderr)) == 1, result.describe()  # built once
    assert f"+ docker push {refs[0]}" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == f"not pushed: {', '.join(refs)}"


# --- a build that pushes: where buildx writes what it pushed -------------------------------------


def test_a_build_that_pushes_answers_in_a_directory_of_the_users_own(
    project, docker, images, unique, tiny_context, e2e_env, plain_registry, tmp_path
):
    """buildx writes its --metadata-file in <TMPDIR>/ragbuild-<uid>, made with mode 0700 and
    left empty; when that directory is open to others the run stops before the build with one
    line, and nothing reaches the registry."""
    assert client_has_buildx_plugin(), "the harness installs the buildx plugin system-wide"
    temp = tmp_path / "tmp"
    temp.mkdir()
    answers = temp / f"ragbuild-{os.getuid()}"
    name = unique("answerdir")
    uri = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(
        *tiny_args(dockerfile, "--env", "dev", "--registry", uri, "--push"),
        env={"TMPDIR": str(temp)},
    ).assert_ok()
    images.track_result(result)
    assert f"--metadata-file {answers}/" in result.stderr, result.describe()
    assert stat.S_IMODE(os.lstat(answers).st_mode) == 0o700 and not list(answers.iterdir())
    assert sorted(plain_registry.tags(name)) == sorted(tags_of(planned_refs(result)))

    answers.chmod(0o777)
    other = unique("answerdir-open")
    result = project.script(
        *tiny_args(
            dockerfile, "--env", "dev", "--registry", f"{e2e_env['E2E_REGISTRY']}/{other}", "--push"
        ),
        env={"TMPDIR": str(temp)},
    )
    assert result.returncode == 1, result.describe()
    assert result.error_lines() == [
        f"error: {answers}, where docker writes what it pushed, is not a directory of yours "
        "that only you can use (mode 0700): remove it, or set TMPDIR to a directory of yours"
    ]
    assert not ANY_BUILD_RE.search(result.stderr)
    assert other not in plain_registry.catalog()
