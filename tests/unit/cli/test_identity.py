"""Issue 22, "the image pushed is the image tested": from the build on, the run follows the image
by the ID the build wrote (``--iidfile``), never by a tag looked up again; each ref is tagged
from that ID just before its push, and the registry must then serve that image. Here through
main(); each part is tested beside its module (test_push, test_verify, steps/test_summary, ...)."""

from __future__ import annotations

import json


import fakes
from fakes import FAKE_IMAGE_ID
from ragbuild import cli
from registry_fakes import (
    PLAIN,
    FakeRegistry,
)


# --- the build's ID, then everything by it -----------------------------------------------------


def test_a_build_that_writes_no_id_stops_the_run(project, strict_fp, capsys):
    strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()], iid=None)
    assert cli.main(["--env", "dev"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "error: the build succeeded but wrote no image ID to its --iidfile, so what follows "
        "cannot tell this run's image from another build's with the same tags; nothing was "
        "pushed by ragbuild"
    )
    assert fakes.docker_calls(strict_fp) == 1  # no inspect of a tag instead


def test_the_summary_and_smoke_test_follow_the_id_not_a_tag(
    project, strict_fp, capsys, monkeypatch
):
    from ragbuild import sagemaker, smoke

    monkeypatch.setattr(smoke, "container_name", lambda: "ragbuild-smoke-0")
    health = json.dumps({"status": "ok", "environment": "dev", "git_commit": fakes.SHA}).encode()
    monkeypatch.setattr(
        sagemaker,
        "http_request",
        lambda port, method, path, *rest: sagemaker.Outcome(200, 0.01, True, health),
    )
    docker = strict_fp.program("docker")
    strict_fp.register([docker, "build", strict_fp.any()])
    refs = [
        f"rag-worker:dev-{fakes.STAMP}",
        "rag-worker:dev",
        f"rag-worker:git-{fakes.SHA}",
        "rag-worker:latest",
    ]
    strict_fp.register(
        [docker, "image", "inspect", "--format", strict_fp.any(min=1, max=1), FAKE_IMAGE_ID],
        stdout=f"{FAKE_IMAGE_ID} 1 {json.dumps(refs)} {{}}\n",
    )
    strict_fp.register(
        [
            docker,
            "run",
            "-d",
            "--name",
            "ragbuild-smoke-0",
            "--tmpfs",
            "/opt/ml/model:ro",
            "-p",
            "127.0.0.1::8080",
            "--label",
            "org.ragbuild.smoke=1",
            FAKE_IMAGE_ID,
            "serve",
        ],
        stdout="ragbuild-smoke-0\n",
    )
    strict_fp.register([docker, "port", "ragbuild-smoke-0", "8080/tcp"], stdout="127.0.0.1:5\n")
    strict_fp.register([docker, "kill", "--signal", "TERM", "ragbuild-smoke-0"])
    strict_fp.register(
        [
            docker,
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.ExitCode}}",
            "ragbuild-smoke-0",
        ],
        stdout="false 0\n",
    )
    strict_fp.register([docker, "rm", "-f", "ragbuild-smoke-0"])
    strict_fp.register(
        [
            docker,
            "run",
            "-d",
            "--name",
            "ragbuild-smoke-0",
            "--tmpfs",
            "/opt/ml/model:ro",
            "-p",
            "127.0.0.1::8090",
            "-p",
            "127.0.0.1::8080",
            "-e",
            "SAGEMAKER_BIND_TO_PORT=8090",
            "--label",
            "org.ragbuild.smoke=1",
            FAKE_IMAGE_ID,
            "serve",
        ],
        stdout="ragbuild-smoke-0\n",
    )
    strict_fp.register([docker, "port", "ragbuild-smoke-0", "8090/tcp"], stdout="127.0.0.1:6\n")
    strict_fp.register([docker, "port", "ragbuild-smoke-0", "8080/tcp"], stdout="127.0.0.1:7\n")
    strict_fp.register([docker, "rm", "-f", "ragbuild-smoke-0"])
    code = cli.main(["--env", "dev", "--smoke-test"])
    assert code == 0, capsys.readouterr().err


def test_a_dry_run_push_shows_the_tags_from_the_id(project, strict_fp, capsys):
    code = cli.main(["--env", "dev", "--registry", f"{PLAIN}/rag-worker", "--push", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    first = f"{PLAIN}/rag-worker:dev-{fakes.STAMP}"
    assert lines.index(f"docker tag IMAGE_ID {first}") + 1 == lines.index(f"docker push {first}")
    assert (
        "dry run: a real run would GET https://registry.example.com:5000/v2/rag-worker/"
        f"manifests/dev-{fakes.STAMP} and expect the manifest of this run's image IMAGE_ID"
    ) in err
    assert FakeRegistry.current.requests == []
