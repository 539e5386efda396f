"""Issue 11 against the real engine, git and registries: docker build options passed through
(--secret, --ssh, after --), git facts that decide tags, and the clock under SOURCE_DATE_EPOCH."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess

import pytest

from .support import git

pytestmark = pytest.mark.e2e


def build_args(dockerfile, image_name, *more):
    return ["--env", "dev", "-f", dockerfile, "--context", dockerfile.parent,
            "--image-name", image_name, *more]


# --- (c) docker build options the port does not model ------------------------------------------


def test_a_buildkit_secret_reaches_the_run_step_and_no_layer_or_output(project, tiny_context,
                                                                       unique, docker, images):
    """issue 11 (c) 7: --secret id=pip_token,env=PIP_TOKEN on the 20.10 engine; the token is in
    neither `docker history`, the image's config, nor anything ragbuild or docker printed."""
    token = f"pypi-{secrets.token_hex(16)}"
    dockerfile = tiny_context(
        "RUN --mount=type=secret,id=pip_token test -s /run/secrets/pip_token && "
        "sha256sum /run/secrets/pip_token | cut -d' ' -f1 > /token.sha256")
    name = images.track_repository(unique("secret"))
    # --no-cache: BuildKit leaves secrets out of the cache key, so a cached step keeps the
    # hash of an earlier run's token
    result = project.script(*build_args(dockerfile, name, "--no-cache", "--secret",
                                        "id=pip_token,env=PIP_TOKEN",
                                        "--", "--progress=plain"),
                            env={"PIP_TOKEN": token})
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
    dockerfile = tiny_context("ARG PIP_TOKEN", "RUN test -n \"$PIP_TOKEN\"")
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


@pytest.mark.skipif(shutil.which("ssh-agent") is None and os.environ.get("CI") != "true",
                    reason="needs ssh-agent (openssh-client)")
def test_ssh_forwarding_reaches_the_run_step(project, tiny_context, unique, images, tmp_path):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.1"])
        dockerfile = tiny_context("RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\"")
        name = images.track_repository(unique("ssh"))
        result = project.script(*build_args(dockerfile, name, "--ssh", "default"),
                                env={"SSH_AUTH_SOCK": str(sock)})
        result.assert_ok()
        images.track_result(result)
        assert "--ssh default" in result.stderr
    finally:
        agent.terminate()
        agent.wait()


def test_options_after_dashes_reach_the_engine(project, tiny_context, unique, docker, images):
    dockerfile = tiny_context("LABEL stage=runtime", "FROM runtime AS other", "LABEL stage=other")
    text = dockerfile.read_text().replace("FROM python:3.11-slim\n", "FROM python:3.11-slim AS runtime\n", 1)
    dockerfile.write_text(text)
    name = images.track_repository(unique("target"))
    result = project.script(*build_args(dockerfile, name, "--", "--target", "runtime",
                                        "--add-host", "mirror.invalid:10.0.0.5"))
    result.assert_ok()
    images.track_result(result)
    assert docker.inspect(f"{name}:dev")["Config"]["Labels"]["stage"] == "runtime"


def test_a_refused_option_stops_before_docker(project, tiny_context, unique, docker):
    name = unique("refused")
    result = project.script(*build_args(tiny_context(), name, "--", "--output", "type=local,dest=x"))
    assert result.returncode == 2, result.describe()
    assert result.stderr.splitlines()[-1].startswith("error: --output after -- is refused")
    assert docker.refs(name) == []


# --- (a) git facts -----------------------------------------------------------------------------


def test_an_untracked_file_in_the_context_marks_the_image_dirty(project, unique, docker, images):
    """issue 11 (a) 1 with a real engine: the tag and the image's GIT_COMMIT say -dirty, and
    the untracked file did reach the image."""
    context = project.path / "svc"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM python:3.11-slim\nARG GIT_COMMIT\n"
                                        "LABEL commit=$GIT_COMMIT\nCOPY . /app\n")
    git(project.path, "add", "svc/Dockerfile")
    git(project.path, "commit", "-q", "-m", "svc")
    sha = git(project.path, "rev-parse", "--short", "HEAD")
    (context / "hotfix.py").write_text("print('in no commit')\n")
    name = images.track_repository(unique("dirty"))
    args = ["-f", "svc/Dockerfile", "--context", "svc", "--image-name", name]
    refused = project.script("--env", "prod", "--version", "1.0.0", *args)
    assert refused.returncode == 2, refused.describe()
    assert "hotfix.py (untracked)" in refused.stderr.splitlines()[-1]
    result = project.script("--env", "dev", *args).assert_ok()
    images.track_result(result)
    assert docker.image_id(f"{name}:git-{sha}-dirty") and not docker.image_id(f"{name}:git-{sha}")
    assert docker.inspect(f"{name}:dev")["Config"]["Labels"]["commit"] == f"{sha}-dirty"
    ls = docker.quiet("run", "--rm", "--entrypoint", "ls", f"{name}:dev", "/app")
    assert "hotfix.py" in ls.stdout.split()
