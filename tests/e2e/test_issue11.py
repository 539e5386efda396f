"""Issue 11 against the real engine, git and registries: docker build options passed through
(--secret, --ssh, after --), git facts that decide tags, and the clock under SOURCE_DATE_EPOCH."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shlex

import pytest

from .support import free_port, git

pytestmark = pytest.mark.e2e


def build_args(dockerfile, image_name, *more):
    return [
        "--env",
        "dev",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--image-name",
        image_name,
        *more,
    ]


# --- (c) docker build options the port does not model ------------------------------------------


def test_a_buildkit_secret_reaches_the_run_step_and_no_layer_or_output(
    project, tiny_context, unique, docker, images
):
    """issue 11 (c) 7: --secret id=pip_token,env=PIP_TOKEN on the 20.10 engine; the token is in
    neither `docker history`, the image's config, nor anything ragbuild or docker printed."""
    token = f"pypi-{secrets.token_hex(16)}"
    dockerfile = tiny_context(
        "RUN --mount=type=secret,id=pip_token test -s /run/secrets/pip_token && "
        "sha256sum /run/secrets/pip_token | cut -d' ' -f1 > /token.sha256"
    )
    name = images.track_repository(unique("secret"))
    # --no-cache: BuildKit leaves secrets out of the cache key, so a cached step keeps the
    # hash of an earlier run's token
    result = project.script(
        *build_args(
            dockerfile,
            name,
            "--no-cache",
            "--secret",
            "id=pip_token,env=PIP_TOKEN",
            "--",
            "--progress=plain",
        ),
        env={"PIP_TOKEN": token},
    )
    result.assert_ok()
    images.track_result(result)
    assert "--secret id=pip_token,env=PIP_TOKEN" in result.stderr  # the logged build command
    assert "secret: pip_token from $PIP_TOKEN (value never printed" in result.stderr
    assert token not in result.text
    ref = f"{name}:dev"
    history = docker.quiet("history", "--no-trunc", ref)
    assert history.returncode == 0 and token not in history.stdout + history.stderr
    assert token not in str(docker.inspect(ref))
    # the step did read it: the image holds its hash, made inside the RUN step
    seen = docker.quiet("run", "--rm", "--entrypoint", "cat", ref, "/token.sha256")
    assert seen.stdout.strip() == hashlib.sha256(token.encode()).hexdigest(), seen.stderr


def test_the_same_token_as_a_build_arg_is_what_leaks(project, tiny_context, unique, docker, images):
    """The control: what ragbuild's secret-build-arg warning is about is real on this engine."""
    token = f"pypi-{secrets.token_hex(16)}"
    dockerfile = tiny_context("ARG PIP_TOKEN", 'RUN test -n "$PIP_TOKEN"')
    name = images.track_repository(unique("buildarg"))
    result = project.script(*build_args(dockerfile, name, "--build-arg", f"PIP_TOKEN={token}"))
    result.assert_ok()
    images.track_result(result)
    assert "warning: --build-arg PIP_TOKEN looks like a secret" in result.stderr
    own = [line for line in result.stderr.splitlines() if line.startswith(("+ ", "  PIP_TOKEN"))]
    assert own and all(token not in line for line in own)  # ragbuild's printouts show ***
    assert token in result.stderr  # docker's own progress output shows the expanded RUN line
    history = docker.quiet("history", "--no-trunc", f"{name}:dev")
    assert token in history.stdout  # and docker keeps it in the image's history


def test_ssh_forwarding_reaches_the_run_step(project, tiny_context, unique, images, tmp_path):
    """--ssh default forwards $SSH_AUTH_SOCK; the step only checks the forwarded socket is there,
    so a listening UNIX socket stands in for ssh-agent (no openssh-client needed)."""
    import socket

    path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as agent:
        agent.bind(str(path))
        agent.listen(4)
        dockerfile = tiny_context('RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK"')
        name = images.track_repository(unique("ssh"))
        result = project.script(
            *build_args(dockerfile, name, "--no-cache", "--ssh", "default"),
            env={"SSH_AUTH_SOCK": str(path)},
        )
    result.assert_ok()
    images.track_result(result)
    assert "--ssh default" in result.stderr
    assert "ssh: default (RUN --mount=type=ssh)" in result.stderr


def test_options_after_dashes_reach_the_engine(project, tiny_context, unique, docker, images):
    dockerfile = tiny_context("LABEL stage=runtime", "FROM runtime AS other", "LABEL stage=other")
    text = dockerfile.read_text().replace(
        "FROM python:3.11-slim\n", "FROM python:3.11-slim AS runtime\n", 1
    )
    dockerfile.write_text(text)
    name = images.track_repository(unique("target"))
    result = project.script(
        *build_args(
            dockerfile, name, "--", "--target", "runtime", "--add-host", "mirror.invalid:10.0.0.5"
        )
    )
    result.assert_ok()
    images.track_result(result)
    assert docker.inspect(f"{name}:dev")["Config"]["Labels"]["stage"] == "runtime"


def test_a_refused_option_stops_before_docker(project, tiny_context, unique, docker):
    name = unique("refused")
    result = project.script(
        *build_args(tiny_context(), name, "--", "--output", "type=local,dest=x")
    )
    assert result.returncode == 2, result.describe()
    assert result.stderr.splitlines()[-1].startswith("error: --output after -- is refused")
    assert docker.refs(name) == []


# --- (a) git facts -----------------------------------------------------------------------------


def test_an_untracked_file_in_the_context_marks_the_image_dirty(project, unique, docker, images):
    """issue 11 (a) 1 with a real engine: the tag and the image's GIT_COMMIT say -dirty, and
    the untracked file did reach the image."""
    context = project.path / "svc"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM python:3.11-slim\nARG GIT_COMMIT\nLABEL commit=$GIT_COMMIT\nCOPY . /app\n"
    )
    git(project.path, "add", "svc/Dockerfile")
    git(project.path, "commit", "-q", "-m", "svc")
    sha = git(project.path, "rev-parse", "--short", "HEAD")
    (context / "hotfix.py").write_text("print('in no commit')\n")
    name = images.track_repository(unique("dirty"))
    args = ["-f", "svc/Dockerfile", "--context", "svc", "--image-name", name]
    refused = project.script("--env", "prod", "--version", "1.0.0", *args)
    assert refused.returncode == 2, refused.describe()
    assert "svc/hotfix.py (not in the commit)" in refused.stderr.splitlines()[-1]
    result = project.script("--env", "dev", *args).assert_ok()
    images.track_result(result)
    assert docker.image_id(f"{name}:git-{sha}-dirty") and not docker.image_id(f"{name}:git-{sha}")
    assert docker.inspect(f"{name}:dev")["Config"]["Labels"]["commit"] == f"{sha}-dirty"
    ls = docker.quiet("run", "--rm", "--entrypoint", "ls", f"{name}:dev", "/app")
    assert "hotfix.py" in ls.stdout.split()


# --- (b) docker's configuration read as docker reads it; (e) a push that cannot go -------------


def pinned(result) -> str:
    lines = result.stdout.strip().splitlines()
    assert lines, result.describe()
    return lines[-1]


def test_a_loopback_name_registry_pushes_and_verifies(
    project, tiny_context, unique, images, e2e_env, plain_registry
):
    """issue 11 (b) 5: `vm` resolves to 127.0.0.1, so the daemon pushes to vm:<port> over plain
    HTTP; before, the read-back (no --insecure for a host not spelled as loopback) said "no such
    manifest" and the run exited 1 with no digest."""
    port = e2e_env["E2E_REGISTRY"].rsplit(":", 1)[1]
    name = unique("vm")
    uri = images.track_repository(f"vm:{port}/team/{name}")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(
        "--env",
        "dev",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--registry",
        uri,
        "--push",
        "--no-latest",
    )
    result.assert_ok()
    images.track_result(result)
    assert "docker manifest inspect" not in result.stderr  # read back in-process
    # loopback: insecure to every daemon, whose registry configuration is not asked (its proxy
    # settings are: the registry requests follow them)
    assert "RegistryConfig" not in result.stderr
    assert (
        f"registry vm:{port} answers (plain HTTP: an insecure registry of the daemon) and "
        "takes the push's credentials (none: no credHelpers"
    ) in result.stderr
    assert "pushed and verified " in result.stderr  # read back, not assumed
    digest = pinned(result).split("@", 1)[1]
    assert pinned(result) == f"{uri}@{digest}"
    manifest = plain_registry.manifest(f"team/{name}", "dev")
    assert manifest is not None and manifest.digest == digest


@pytest.mark.parametrize(
    "host",
    [
        "nohost.invalid:5000",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
        "127.0.0.1:{closed}",
    ],
)
def test_a_registry_that_cannot_be_reached_stops_before_the_build(
    project, tiny_context, unique, docker, host
):
    """issue 11 (e) 9: a host that does not resolve, a port nothing answers on; and the
    look-alike ECR host gets no ECR login (no aws call at all)."""
    host = host.format(closed=free_port())
    name = unique("noreg")
    uri = f"{host}/{name}"
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(
        "--env",
        "dev",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--registry",
        uri,
        "--push",
    )
    assert result.returncode == 1, result.describe()
    errors = result.error_lines()
    assert len(errors) == 1 and errors[0] == result.stderr.rstrip().splitlines()[-1]
    assert errors[0].startswith(f"error: cannot reach the registry {host} over HTTPS")
    assert "nothing was built or pushed" in errors[0]
    assert "docker build -f" not in result.stderr and docker.refs(uri) == []
    assert "+ aws " not in result.stderr and "+ docker login" not in result.stderr


def test_a_plain_http_registry_off_loopback_is_the_daemons_call(
    project, tiny_context, unique, docker, e2e_env
):
    """A registry on the docker bridge (not loopback) that speaks plain HTTP: verified HTTPS
    fails, so the pre-flight asks the real daemon (`docker info`), which does not list it as
    insecure: the run stops before the build, as docker push would fail. (A loopback registry
    never gets that question: see the vm case above.)"""
    import http.server
    import threading

    class V2(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # /v2/ as an open registry answers it
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = http.server.ThreadingHTTPServer((e2e_env["E2E_BRIDGE_IP"], 0), V2)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        host = f"{e2e_env['E2E_BRIDGE_IP']}:{httpd.server_address[1]}"
        name = unique("offloop")
        dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
        result = project.script(
            "--env",
            "dev",
            "-f",
            dockerfile,
            "--context",
            dockerfile.parent,
            "--registry",
            f"{host}/{name}",
            "--push",
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 1, result.describe()
    from ragbuild.push_preflight import REGISTRY_INFO_FORMAT

    assert f"+ docker info --format {shlex.quote(REGISTRY_INFO_FORMAT)}" in result.stderr
    errors = result.error_lines()
    assert len(errors) == 1 and errors[0].startswith(
        f"error: cannot reach the registry {host} over HTTPS: "
    ), result.describe()
    assert "insecure-registries" in errors[0]
    assert "docker build -f" not in result.stderr


@pytest.fixture
def stand_in_ecr_helper(tmp_path, runner, e2e_env):
    """``stand_in_ecr_helper(password)``: a ``docker-credential-ecr-login`` that answers ``get``
    with AWS and ``password`` (the real helper asks ECR for a token, which needs AWS) and, like
    the real one, refuses ``store``. Returns the PATH to run with."""

    def make(password: str) -> str:
        bin_dir = tmp_path / "helper-bin"
        bin_dir.mkdir(exist_ok=True)
        helper = bin_dir / "docker-credential-ecr-login"
        answer = json.dumps(
            {"ServerURL": e2e_env["E2E_ECR_HOST"], "Username": "AWS", "Secret": password}
        )
        helper.write_text(
            '#!/bin/sh\ncase "$1" in\n'
            f"  get) cat >/dev/null; echo '{answer}' ;;\n"
            "  store) echo 'not implemented' >&2; exit 1 ;;\n"
            "  *) exit 1 ;;\nesac\n"
        )
        helper.chmod(0o755)
        return f"{bin_dir}{os.pathsep}{runner.env['PATH']}"

    return make


def test_creds_store_ecr_login_pushes_to_ecr_without_a_login(
    project,
    tiny_context,
    images,
    docker_config,
    e2e_env,
    runner,
    unique,
    stand_in_ecr_helper,
    ecr_registry,
):
    """issue 11 (b) 4: `{"credsStore": "ecr-login"}`: no `aws ecr get-login-password`, no
    `docker login` (the helper would refuse to store it); docker push gets the credentials from
    the helper, and the run pushes and verifies."""
    host = e2e_env["E2E_ECR_HOST"]
    name = unique("credsstore")
    runner.run(["aws", "ecr", "create-repository", "--repository-name", name]).assert_ok()
    try:
        (docker_config / "config.json").write_text(json.dumps({"credsStore": "ecr-login"}))
        uri = images.track_repository(f"{host}/{name}")
        dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
        env = {
            "DOCKER_CONFIG": docker_config,
            "PATH": stand_in_ecr_helper(e2e_env["E2E_ECR_PASSWORD"]),
        }
        result = project.script(
            "--env",
            "dev",
            "-f",
            dockerfile,
            "--context",
            dockerfile.parent,
            "--registry",
            uri,
            "--push",
            "--no-latest",
            env=env,
        )
        result.assert_ok()
        images.track_result(result)
        assert "+ aws ecr get-login-password" not in result.stderr
        assert "+ docker login" not in result.stderr
        assert (
            f"not logging in to {host}: docker gets its credentials from "
            "docker-credential-ecr-login (credsStore in"
        ) in result.stderr
        assert e2e_env["E2E_ECR_PASSWORD"] not in result.text
        digest = pinned(result).split("@", 1)[1]
        assert ecr_registry.manifest(name, "dev").digest == digest
    finally:
        runner.run(["aws", "ecr", "delete-repository", "--repository-name", name, "--force"])


def test_credentials_the_registry_refuses_stop_before_the_build(
    project, tiny_context, unique, docker_config, e2e_env, runner, stand_in_ecr_helper, docker
):
    """issue 11 (e) 9: docker has credentials for the host, and the registry (htpasswd) says
    no to them: found with GET /v2/ before the build, nothing written."""
    host = e2e_env["E2E_ECR_HOST"]
    name = unique("refused")
    runner.run(["aws", "ecr", "create-repository", "--repository-name", name]).assert_ok()
    try:
        (docker_config / "config.json").write_text(json.dumps({"credHelpers": {host: "ecr-login"}}))
        wrong = f"wrong-{secrets.token_hex(8)}"
        dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
        result = project.script(
            "--env",
            "dev",
            "-f",
            dockerfile,
            "--context",
            dockerfile.parent,
            "--registry",
            f"{host}/{name}",
            "--push",
            env={"DOCKER_CONFIG": docker_config, "PATH": stand_in_ecr_helper(wrong)},
        )
        assert result.returncode == 1, result.describe()
        last = result.stderr.rstrip().splitlines()[-1]
        assert last.startswith(
            f"error: {host} refused docker's credentials for it (HTTP 401; "
            "from docker-credential-ecr-login (credHelpers in"
        )
        assert wrong not in result.text
        assert "docker build -f" not in result.stderr
    finally:
        runner.run(["aws", "ecr", "delete-repository", "--repository-name", name, "--force"])


def test_a_creds_store_helper_that_is_not_installed_stops_before_the_build(
    project, tiny_context, unique, e2e_env, docker_config
):
    """issue 11 (b) 4: a non-ECR host with `"credsStore": "desktop"` and no helper: before, the
    build ran, the push failed and the hint said `docker login`, which fails the same way."""
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "desktop"}))
    name = unique("desktop")
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    result = project.script(
        "--env",
        "dev",
        "-f",
        dockerfile,
        "--context",
        dockerfile.parent,
        "--registry",
        f"{e2e_env['E2E_REGISTRY']}/{name}",
        "--push",
        env={"DOCKER_CONFIG": docker_config},
    )
    assert result.returncode == 1, result.describe()
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("error: docker-credential-desktop, which credsStore in ")
    assert "is not installed" in last and "docker build -f" not in result.stderr


# --- (d) the clock -------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["IST-5:30", "Asia/Tokyo", "America/St_Johns", "UTC"])
def test_source_date_epoch_gives_the_same_tags_under_every_tz(
    project, tiny_context, unique, docker, images, tz
):
    """issue 11 (d) 8: SOURCE_DATE_EPOCH=1700000000 gave dev-20231115-071320 under Asia/Tokyo;
    now dev-20231114-221320 everywhere, and the image's created label says the same instant."""
    name = images.track_repository(unique("sde"))
    result = project.script(
        *build_args(tiny_context(), name), env={"SOURCE_DATE_EPOCH": "1700000000", "TZ": tz}
    ).assert_ok()
    images.track_result(result)
    assert docker.image_id(f"{name}:dev-20231114-221320")
    labels = docker.inspect(f"{name}:dev")["Config"]["Labels"]
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20+00:00"


def test_without_source_date_epoch_the_tag_is_local_time_as_bash(
    project, tiny_context, unique, docker, images
):
    from datetime import datetime, timedelta, timezone

    name = images.track_repository(unique("localtime"))
    before = datetime.now(timezone.utc)
    result = project.script(*build_args(tiny_context(), name), env={"TZ": "IST-5:30"}).assert_ok()
    images.track_result(result)
    stamp = result.timestamp()
    wall = datetime.strptime(stamp, "%Y%m%d-%H%M%S")
    expected = before.replace(tzinfo=None) + timedelta(hours=5, minutes=30)
    assert abs((wall - expected).total_seconds()) < 60, (stamp, expected)
    created = docker.inspect(f"{name}:dev")["Config"]["Labels"]["org.opencontainers.image.created"]
    assert created == f"{wall.isoformat()}+05:30"
