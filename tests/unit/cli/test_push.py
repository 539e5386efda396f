"""--push through main(): a failed build or pre-flight never pushes, the password stays out of every
output, the version-tag check before the build."""

import json
import logging
import fakes
import pytest
from ragbuild import cli
from ragbuild.plan import format_created
import fakes
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


# --- through the CLI ---------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(MOMENT.timestamp())))
    return tmp_path


def register_git(fp):
    fakes.register_git(fp, stdout="abc1234\n")


def IIDFILE(fp):  # noqa: N802 (the words the build's --iidfile takes)
    return ["--iidfile", fp.any(min=1, max=1)]


def cli_build_argv(ref):
    return [
        "docker",
        "build",
        "-f",
        "Dockerfile",
        *sum((["-t", r] for r in ref), []),
        "--build-arg",
        "ENVIRONMENT=dev",
        "--build-arg",
        "GIT_COMMIT=abc1234",
        "--build-arg",
        f"BUILD_TIMESTAMP={TS}",
        "--label",
        f"org.opencontainers.image.created={format_created(MOMENT)}",
        "--label",
        f"org.ragbuild.repository={ref[0].rsplit(':', 1)[0]}",
    ]


def test_failed_build_never_pushes(fp, project, capsys):
    register_git(fp)
    register_preflight(fp)
    register_login(fp)
    register_describe(fp, stdout=repository_json())
    refs = refs_of(f"{ECR}/rag-worker")
    fp.register([fp.program("docker"), *cli_build_argv(refs)[1:], *IIDFILE(fp), "."], returncode=1)
    docker(fp, "version", "--format", "{{.Client.Version}}", stdout="20.10.24\n")
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    assert code == 1
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0
    # the pre-flight's read of each tag, and no read-back
    assert len(FakeRegistry.current.manifest_requests()) == len(refs)
    out, err = capsys.readouterr()
    assert "docker build failed" in err
    assert PASSWORD not in out + err


def test_failed_preflight_never_builds(fp, project, capsys):
    register_git(fp)
    register_preflight(fp)
    register_login(fp)
    register_describe(
        fp, returncode=254, stderr="An error occurred (RepositoryNotFoundException) ...\n"
    )
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    assert code == 1
    assert fp.call_count([fp.program("docker"), "build", "-f", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0
    assert "aws ecr create-repository" in capsys.readouterr().err


def test_full_ecr_push_through_the_cli_keeps_the_password_out_of_every_output(
    fp, project, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    register_git(fp)
    register_preflight(fp)
    seen = []
    register_login(fp, seen=seen)
    register_describe(fp, stdout=repository_json())
    refs = refs_of(f"{ECR}/rag-worker")
    fp.register([fp.program("docker"), *cli_build_argv(refs)[1:], *IIDFILE(fp), "."])
    tags = json.dumps(refs)
    docker(
        fp,
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Size}} {{json .RepoTags}} {{json .Config.Labels}}",
        fakes.FAKE_IMAGE_ID,
        stdout=f"sha256:{'ee' * 32} 123456 {tags}\n",
    )
    for ref in refs:
        register_push(fp, ref)
    for ref in refs:
        serve(ref)
    code = cli.main(["--env", "dev", "--registry", f"{ECR}/rag-worker", "--push"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seen == [PASSWORD.encode()]
    assert out.splitlines()[-1] == f"{ECR}/rag-worker@{DIGEST}"
    assert PASSWORD not in out + err + caplog.text
    # every push comes after the build (BUILDX_NO_DEFAULT_ATTESTATIONS=1: see above)
    calls = [list(c) for c in fp.calls]
    build_at = [i for i, c in enumerate(calls) if c[1] == "build"]
    pushes_at = [i for i, c in enumerate(calls) if c[1] == "push"]
    assert len(build_at) == 1 and len(pushes_at) == 4 and min(pushes_at) > build_at[0]


def test_the_version_check_through_the_cli_exits_1_before_the_build(project, fp, capsys):
    fakes.register_proxy_info(fp)
    fp.allow_unregistered(False)
    register_git(fp)
    serve(f"{PLAIN}/rag-worker:v1.2.3", OTHER_DIGEST)
    code = cli.main(
        ["--env", "prod", "--version", "1.2.3", "--registry", f"{PLAIN}/rag-worker", "--push"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines()[-1].startswith(
        f"error: the registry already has {PLAIN}/rag-worker:v1.2.3 (now {OTHER_DIGEST})"
    )
    assert fp.call_count([fp.program("docker"), "build", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "buildx", fp.any()]) == 0


def test_a_dry_run_shows_the_version_check(project, fp, capsys):
    register_git(fp)
    code = cli.main(
        [
            "--env",
            "prod",
            "--version",
            "1.2.3",
            "--registry",
            f"{PLAIN}/rag-worker",
            "--push",
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert (
        f"dry run: a real run would GET https://{PLAIN}/v2/rag-worker/manifests/v1.2.3 "
        "(HTTPS) to learn what the tag names before the push (an existing version tag "
        "stops the run unless --replace-version-tags)"
    ) in err
    assert FakeRegistry.current.manifest_requests() == []


def test_replace_version_tags_needs_a_push_of_a_version(project, fp, capsys):
    register_git(fp)
    code = cli.main(["--env", "dev", "--replace-version-tags"])
    assert code == 2
    assert "--replace-version-tags only lets --push move" in capsys.readouterr().err


def test_a_dry_run_of_a_push_with_buildx_shows_the_build_that_pushes_and_no_docker_push(
    project, fp, capsys, buildx_plugin
):
    register_git(fp)
    code = cli.main(
        ["--env", "dev", "--registry", "localhost:5000/rag-worker", "--push", "--dry-run"]
    )
    out = capsys.readouterr().out
    assert code == 0
    builds = [line for line in out.splitlines() if " build " in f" {line} "]
    assert len(builds) == 1 and builds[0].startswith("docker buildx build --builder default ")
    assert (
        "--push --provenance=false --sbom=false --output type=image,oci-mediatypes=false "
        "--metadata-file "
    ) in builds[0]
    assert "docker push" not in out


@pytest.mark.parametrize("flags", [["--smoke-test"], ["--builder", "other"]])
def test_a_dry_run_pushes_with_docker_push_when_something_comes_between(
    project, fp, capsys, buildx_plugin, flags
):
    """A smoke test must pass before anything is pushed; another builder keeps --load."""
    register_git(fp)
    assert (
        cli.main(
            [
                "--env",
                "dev",
                "--registry",
                "localhost:5000/rag-worker",
                "--push",
                "--dry-run",
                *flags,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "docker push localhost:5000/rag-worker:dev" in out
    assert not any("--push" in line for line in out.splitlines() if " build " in line)
