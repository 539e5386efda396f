"""--metadata-file and $GITHUB_OUTPUT: the JSON's keys and values after a build, a push and a
failed step, GitHub's multi-line output syntax, step timing, redaction, and --dry-run writing
nothing. Processes are faked with pytest-subprocess (``strict_fp``)."""

from __future__ import annotations

import json

import pytest

from fakes import STAMP, docker_calls, REPO
from registry_fakes import DIGEST, serve  # DIGEST: the manifest the fake registry serves
from ragbuild import cli, metadata, steps
from ragbuild.metadata import KEYS, github_output_lines

REFS = [f"rag-worker:dev-{STAMP}", "rag-worker:dev", "rag-worker:git-a1b2c3d", "rag-worker:latest"]
IMAGE_ID = "sha256:" + "0e" * 32
LOCAL = "localhost:5000/rag-worker"
LABELS = {
    "org.opencontainers.image.version": "dev",
    "org.ragbuild.project": "rag-worker",
    "org.opencontainers.image.description": "RAG worker (FastAPI)",
}
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def register_build_and_inspect(fp, refs=REFS, build_rc=0, labels=LABELS):
    fp.register([fp.program("docker"), "build", "-f", fp.any()], returncode=build_rc)
    fp.register(
        [fp.program("docker"), "image", "inspect", fp.any()],
        stdout=f"{IMAGE_ID} 151234567 {json.dumps(refs, separators=(',', ':'))} "
        f"{json.dumps(labels, separators=(',', ':'))}\n",
    )


def register_push(fp, refs, fail_at=None):
    """The build, then a push per ref (the one at ``fail_at`` refused: the refs after the first
    are pushed at once, so the others still go), then the read-backs if nothing failed."""
    register_build_and_inspect(fp, refs)
    for i, ref in enumerate(refs):
        if i == fail_at:
            fp.register(
                [fp.program("docker"), "push", ref],
                returncode=1,
                stderr="denied: requested access to the resource is denied\n",
            )
            continue
        fp.register(
            [fp.program("docker"), "push", ref],
            stdout=f"{ref.rsplit(':', 1)[1]}: digest: {DIGEST} size: 528\n",
        )
    serve(refs[0])  # the GET after the first push: the registry serves this run's image
    if fail_at is not None:
        return
    for ref in refs:
        serve(ref)  # the read-back's GET of the manifest


def local_refs():
    return [ref.replace("rag-worker", LOCAL, 1) for ref in REFS]


@pytest.fixture
def gh_output(tmp_path, monkeypatch):
    path = tmp_path / "github_output"
    path.write_text("earlier=step\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(path))
    return path


@pytest.fixture(autouse=True)
def no_github_output(monkeypatch):
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)


def parse_github_output(text: str) -> dict:
    """Read $GITHUB_OUTPUT as the runner does: name=value, or name<<DELIM lines DELIM."""
    values, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            else:
                raise AssertionError(f"no closing {delimiter}")
            values[name] = "\n".join(body)
        else:
            name, value = line.split("=", 1)
            values[name] = value
    return values


# --- after a build -----------------------------------------------------------------------------


def test_metadata_of_a_build_without_push(project, strict_fp, capsys):
    register_build_and_inspect(strict_fp)
    code = cli.main(
        [
            "--env",
            "dev",
            "--metadata-file",
            "build.json",
            "--build-arg",
            "PIP_INDEX_URL=https://mirror.example/simple",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    doc = json.loads((project / "build.json").read_text())
    assert tuple(doc) == KEYS
    assert doc["status"] == "succeeded" and doc["failed_step"] is None and doc["error"] is None
    assert doc["image"] == "rag-worker" and doc["refs"] == REFS
    assert doc["image_id"] == IMAGE_ID and doc["size"] == 151234567
    assert doc["labels"] == LABELS
    assert doc["build_args"] == {
        "ENVIRONMENT": "dev",
        "GIT_COMMIT": "a1b2c3d",
        "BUILD_TIMESTAMP": STAMP,
        "PIP_INDEX_URL": "https://mirror.example/simple",
    }
    assert (doc["version"], doc["environment"], doc["git_commit"]) == (None, "dev", "a1b2c3d")
    assert doc["timestamp"] == STAMP and doc["created"] == "2023-12-03T14:30:22+00:00"
    assert doc["digests"] == {} and doc["digest"] is None and doc["pinned"] is None
    assert doc["pushed_refs"] == []
    assert list(doc["steps"]) == ["context", "build", "inspect"]
    assert all(isinstance(s, float) and s >= 0 for s in doc["steps"].values())
    assert "wrote the build metadata (succeeded) to build.json" in err
    assert docker_calls(strict_fp) == 2  # the labels came with the one inspect: no extra call


def test_metadata_of_a_push_has_each_digest_and_push_and_verify_timed_apart(
    project, strict_fp, capsys, gh_output
):
    refs = local_refs()
    register_push(strict_fp, refs)
    code = cli.main(["--env", "dev", "--registry", LOCAL, "--push", "--metadata-file", "m.json"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((project / "m.json").read_text())
    assert doc["digests"] == {ref: DIGEST for ref in refs} and doc["pushed_refs"] == refs
    assert doc["digest"] == DIGEST and doc["pinned"] == f"{LOCAL}@{DIGEST}"
    assert list(doc["steps"]) == ["context", "pre-flight", "build", "inspect", "push", "verify"]
    out = parse_github_output(gh_output.read_text())
    assert out == {
        "earlier": "step",
        "tags": "\n".join(refs),
        "digest": DIGEST,
        "image-id": IMAGE_ID,
    }


def test_github_output_without_push_has_the_refs_and_an_empty_digest(
    project, strict_fp, capsys, gh_output
):
    register_build_and_inspect(strict_fp)
    assert cli.main(["--env", "dev"]) == 0, capsys.readouterr().err
    text = gh_output.read_text()
    assert text.startswith("earlier=step\ntags<<ghadelimiter_")
    assert parse_github_output(text) == {
        "earlier": "step",
        "tags": "\n".join(REFS),
        "digest": "",
        "image-id": IMAGE_ID,
    }
    assert not (project / "build.json").exists()


def test_github_output_lines_use_the_multiline_syntax():
    assert github_output_lines(["r:a", "r:b"], "sha256:1", "sha256:2", delimiter="EOF_x") == (
        "tags<<EOF_x\nr:a\nr:b\nEOF_x\ndigest=sha256:1\nimage-id=sha256:2\n"
    )
    first, second = (github_output_lines(["r:a"], "", "") for _ in range(2))
    assert first.splitlines()[0] != second.splitlines()[0]  # a fresh delimiter each time


# --- when a step fails -------------------------------------------------------------------------


def test_a_failed_build_still_writes_the_metadata(project, strict_fp, capsys, gh_output):
    register_build_and_inspect(strict_fp, build_rc=1)
    strict_fp.register(
        [strict_fp.program("docker"), "version", "--format", strict_fp.any()], stdout="20.10.24\n"
    )
    code = cli.main(["--env", "dev", "--metadata-file", "build.json"])
    assert code == 1
    doc = json.loads((project / "build.json").read_text())
    assert doc["status"] == "failed" and doc["failed_step"] == "build"
    assert doc["error"] == "docker build failed (exit 1); its output is above"
    assert doc["image_id"] is None and doc["labels"] == {} and doc["refs"] == REFS
    assert list(doc["steps"]) == ["context", "build"]
    assert gh_output.read_text() == "earlier=step\n"  # $GITHUB_OUTPUT: after success only
    assert "wrote the build metadata (failed) to build.json" in capsys.readouterr().err


def test_a_failed_push_keeps_the_digests_of_the_refs_that_were_pushed(project, strict_fp, capsys):
    refs = local_refs()
    register_push(strict_fp, refs, fail_at=1)
    code = cli.main(["--env", "dev", "--registry", LOCAL, "--push", "--metadata-file", "m.json"])
    assert code == 1
    doc = json.loads((project / "m.json").read_text())
    assert doc["status"] == "failed" and doc["failed_step"] == "push"
    assert doc["digests"] == {ref: DIGEST for ref in refs if ref != refs[1]}
    assert doc["digest"] is None
    assert doc["image_id"] == IMAGE_ID
    assert list(doc["steps"]) == ["context", "pre-flight", "build", "inspect", "push"]


def test_a_refused_context_writes_the_metadata_with_exit_2(project, strict_fp, capsys):
    (project / ".env").write_text("X=1\n")
    assert cli.main(["--env", "dev", "--metadata-file", "m.json"]) == 2
    doc = json.loads((project / "m.json").read_text())
    assert doc["failed_step"] == "context" and doc["error"].startswith("the build context would")
    assert docker_calls(strict_fp) == 0


def test_an_interrupted_step_is_recorded_as_interrupted(project, strict_fp, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(steps.build, "build", interrupted)
    assert cli.main(["--env", "dev", "--metadata-file", "m.json"]) == 130
    doc = json.loads((project / "m.json").read_text())
    assert (doc["status"], doc["failed_step"], doc["error"]) == (
        "interrupted",
        "build",
        "interrupted",
    )


@pytest.mark.parametrize(
    "stdout, why",
    [
        ("garbage\n", "expected an id, a size and the tags"),
        (f"{IMAGE_ID} big [] null\n", "size 'big' is not a number"),
        (f'{IMAGE_ID} 12 ["rag-worker:dev" null\n', "Expecting ',' delimiter"),
        (f"{IMAGE_ID} 12 {{}} null\n", "the tags are not a list of strings"),
    ],
)
def test_unreadable_inspect_output_is_a_one_line_failure_recorded_in_the_metadata(
    project, strict_fp, capsys, stdout, why
):
    strict_fp.register([strict_fp.program("docker"), "build", "-f", strict_fp.any()])
    strict_fp.register(
        [strict_fp.program("docker"), "image", "inspect", strict_fp.any()], stdout=stdout
    )
    assert cli.main(["--env", "dev", "--metadata-file", "m.json"]) == 1
    err = capsys.readouterr().err
    assert f"error: cannot read docker image inspect output: {why}" in err
    assert "Traceback" not in err
    doc = json.loads((project / "m.json").read_text())
    assert (doc["status"], doc["failed_step"]) == ("failed", "inspect")
    assert doc["error"].startswith("cannot read docker image inspect output: ")


def test_an_unexpected_exception_in_a_step_is_recorded_too(project, strict_fp, capsys, monkeypatch):
    """A bug's exception in a step: the metadata says so, and the CLI exits 3 (not 1)."""
    from ragbuild import steps

    register_build_and_inspect(strict_fp)
    monkeypatch.setattr(steps.summary, "parse_inspect", lambda stdout: {}["id"])
    code = cli.main(["--env", "dev", "--metadata-file", "m.json"])
    assert code == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "this is a bug in ragbuild" in err
    doc = json.loads((project / "m.json").read_text())
    assert (doc["status"], doc["failed_step"], doc["error"]) == (
        "failed",
        "inspect",
        "KeyError: 'id'",
    )


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--scan-command", "no-such-scanner-4711 {image}"], "the scanner no-such-scanner-4711"),
        (["--builder", "remote"], "this build needs docker buildx"),
    ],
)
def test_a_failed_check_before_the_build_writes_the_metadata(
    project, strict_fp, capsys, argv, fragment
):
    """The scanner and buildx checks are part of the pre-flight step, so their failure is
    recorded like any step's."""
    strict_fp.register(
        [strict_fp.program("docker"), "buildx", "version"],
        returncode=1,
        stderr="docker: 'buildx' is not a docker command.\n",
    )
    assert cli.main(["--env", "dev", "--metadata-file", "m.json", *argv]) == 1
    doc = json.loads((project / "m.json").read_text())
    assert (doc["status"], doc["failed_step"]) == ("failed", "pre-flight")
    assert fragment in doc["error"]
    assert list(doc["steps"]) == ["context", "pre-flight"]


def test_a_metadata_file_in_a_missing_directory_is_refused_before_any_step(
    project, strict_fp, capsys
):
    assert cli.main(["--env", "dev", "--metadata-file", "no/such/dir/m.json"]) == 2
    assert "--metadata-file no/such/dir/m.json: directory" in capsys.readouterr().err
    assert docker_calls(strict_fp) == 0


@pytest.mark.parametrize(
    "where, why",
    [
        ("no/such/dir/out", "$GITHUB_OUTPUT no/such/dir/out: directory"),
        (".", "$GITHUB_OUTPUT . is a directory; name a file"),
    ],
)
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_github_output_that_cannot_be_appended_to_is_refused_before_any_step(
    project, strict_fp, capsys, monkeypatch, where, why, dry_run
):
    # as --metadata-file is: the build (and a push) must not run only to fail at the end
    monkeypatch.setenv("GITHUB_OUTPUT", where)
    assert cli.main(["--env", "dev", *dry_run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and why in err
    assert docker_calls(strict_fp) == 0


# --- dry run -----------------------------------------------------------------------------------


def test_dry_run_says_what_it_would_write_and_writes_nothing(project, strict_fp, capsys, gh_output):
    code = cli.main(["--env", "dev", "--dry-run", "--metadata-file", "build.json"])
    out, err = capsys.readouterr()
    assert code == 0
    assert not (project / "build.json").exists()
    assert gh_output.read_text() == "earlier=step\n"
    assert len(out.splitlines()) == 2  # stdout stays the build and the inspect
    assert (
        f"dry run: would write the build metadata to build.json (JSON: {', '.join(KEYS)})"
        in err.splitlines()
    )
    assert (
        f"dry run: would append tags, digest and image-id to $GITHUB_OUTPUT ({gh_output})"
        in err.splitlines()
    )


# --- pieces ------------------------------------------------------------------------------------


def test_secret_looking_build_args_and_url_credentials_are_redacted():
    assert metadata.redact(
        [
            ("NPM_TOKEN", "npm_abc"),
            ("PIP_INDEX_URL", "https://user:s3cret@pypi.example/simple"),
            ("PYTHON_IMAGE", "python:3.11-slim"),
        ]
    ) == {
        "NPM_TOKEN": "***",
        "PIP_INDEX_URL": "https://***@pypi.example/simple",
        "PYTHON_IMAGE": "python:3.11-slim",
    }


def test_metadata_of_a_multi_platform_push_has_the_index_digest_for_each_ref(
    project, strict_fp, capsys
):
    import hashlib

    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": DIGEST,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": arch},
                }
                for arch in ("amd64", "arm64")
            ],
        }
    )
    digest = "sha256:" + hashlib.sha256(index.encode()).hexdigest()
    fp = strict_fp
    fp.register([fp.program("docker"), "buildx", "version"], stdout="buildx v0.12\n")
    fp.register([fp.program("docker"), "buildx", "inspect"], stdout="Driver: docker-container\n")
    fp.register([fp.program("docker"), "buildx", "build", fp.any()])
    refs = local_refs()
    for ref in refs:
        serve(ref, body=index.encode(), media_type="application/vnd.oci.image.index.v1+json")
    code = cli.main(
        [
            "--env",
            "dev",
            "--registry",
            LOCAL,
            "--push",
            "--platform",
            "linux/amd64,linux/arm64",
            "--metadata-file",
            "m.json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    doc = json.loads((project / "m.json").read_text())
    assert doc["digests"] == {ref: digest for ref in refs} and doc["pushed_refs"] == refs
    assert doc["pinned"] == f"{LOCAL}@{digest}"
    assert list(doc["steps"]) == ["context", "pre-flight", "build", "inspect", "verify"]


def test_help_lists_metadata_file(capsys):
    assert cli.main(["--help"]) == 0
    assert "--metadata-file PATH" in capsys.readouterr().out


def test_the_metadata_doc_lists_every_key():
    schema = (REPO / "docs" / "metadata.md").read_text()
    assert all(f"`{key}`" in schema for key in KEYS)
