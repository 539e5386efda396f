"""The dirty verdict follows the walk the leg's docker makes (guard.context_rules, issue 23): with
a ``!`` pattern whose two walks differ (``node_modules`` + ``!**/keep*``), Debian's 20.10 classic
builder does not send ``node_modules/pkg/keep.js`` and buildx does. A file there that the
commit lacks makes the build dirty exactly where docker sends it; the image shows what it got."""

from __future__ import annotations

import pytest

from .support import client_has_buildx_plugin, git, pushed_refs

pytestmark = pytest.mark.e2e

IGNORE = ".git\nnode_modules\n!**/keep*\n"


@pytest.mark.legs("legacy", "modern")
@pytest.mark.parametrize("push", [False, True], ids=["local", "push"])
def test_the_dirty_verdict_follows_the_files_docker_sends(
    project, docker, images, unique, e2e_env, push
):
    """With --push too: where the classic walk was predicted the build stays ``docker build``
    then ``docker push`` (plan.build_pushes), even where the client has the buildx plugin."""
    svc = project.path / "svc"
    (svc / "src").mkdir(parents=True)
    (svc / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . /ctx\n")
    (svc / ".dockerignore").write_text(IGNORE)
    (svc / "src" / "keep.py").write_text("kept\n")
    git(project.path, "add", "svc")
    git(project.path, "commit", "-q", "-m", "svc")
    sha = git(project.path, "rev-parse", "--short", "HEAD")
    # not in the commit; only buildx's walk goes into node_modules for **/keep*
    (svc / "node_modules" / "pkg").mkdir(parents=True)
    (svc / "node_modules" / "pkg" / "keep.js").write_text("not committed\n")
    if push:
        name = images.track_repository(f"{e2e_env['E2E_REGISTRY']}/{unique('walkpush')}")
        where = ("--registry", name, "--push")
    else:
        name = images.track_repository(unique("walk"))
        where = ("--image-name", name)
    result = project.script(
        "--env", "dev", "-f", "svc/Dockerfile", "--context", "svc", *where
    ).assert_ok()
    images.track_result(result)
    if push:
        how, _ = pushed_refs(result)
        classic = docker.major() < 23 or not client_has_buildx_plugin()
        assert how == ("docker push" if classic else "build"), result.describe()
    listed = docker.quiet(
        "run", "--rm", "--entrypoint", "find", f"{name}:dev", "/ctx", "-type", "f"
    )
    assert listed.returncode == 0, listed.stderr
    sent = "/ctx/node_modules/pkg/keep.js" in listed.stdout.split()
    assert sent is (docker.major() >= 23), listed.stdout  # the two walks, as the clients make them
    # the verdict names the file exactly when docker sent it
    dirty = docker.image_id(f"{name}:git-{sha}-dirty") is not None
    assert dirty is sent, result.describe()
    assert (docker.image_id(f"{name}:git-{sha}") is not None) is not sent, result.describe()
    assert ("node_modules/pkg/keep.js" in result.stderr) is sent, result.describe()
