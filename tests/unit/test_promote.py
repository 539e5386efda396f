"""promote SOURCE (promote.py, manifest.py): the manifest copied byte for byte, the version-tag
rule, the gate hook, dry run and metadata, against the fake registry and faked docker calls.
push IMAGE (push_image.py) is test_push_image.py."""

import json

import fakes
import pytest

from ragbuild import cli, sagemaker

from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)

REPO = f"{PLAIN}/rag-worker"
SOURCE_TS = "20251111-101112"
CONFIG_BLOB = json.dumps(
    {
        "os": "linux",
        "architecture": "amd64",
        "config": {
            "Labels": {
                "org.opencontainers.image.revision": "abc1234",
                "org.opencontainers.image.created": "2025-11-11T10:11:12+00:00",
            },
            "Env": [
                "PATH=/usr/bin",
                f"BUILD_TIMESTAMP={SOURCE_TS}",
                "GIT_COMMIT=abc1234",
                "ENVIRONMENT=dev",
                "VERSION=unknown",
            ],
        },
    }
).encode()
CONFIG_DIGEST = digest_of(CONFIG_BLOB)


def source_manifest(config_digest=CONFIG_DIGEST):
    # odd spacing on purpose: a re-encoding (json.dumps) would change the digest
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config_digest,
                "size": len(CONFIG_BLOB),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": "sha256:" + "ab" * 32,
                    "size": 1000,
                }
            ],
        },
        indent=5,
    ).encode()


SOURCE = source_manifest()
SOURCE_DIGEST = digest_of(SOURCE)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The working directory: no setup.cfg (the default environments)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def registry(project):
    """The fake registry with a dev build at REPO:dev and its config blob."""
    fake = FakeRegistry.current
    fake.blobs[CONFIG_DIGEST] = CONFIG_BLOB
    serve(f"{REPO}:dev", body=SOURCE)
    return fake


def staging_refs(version="1.0.0-rc.1"):
    return [
        f"{REPO}:{tag}"
        for tag in (
            f"v{version}",
            version,
            f"staging-{SOURCE_TS}",
            "staging",
            "git-abc1234",
            "latest",
        )
    ]


# --- the source and the image's facts ---------------------------------------------------------


# --- promote through the CLI ------------------------------------------------------------------


def run_promote(fp, *args):
    fakes.register_proxy_info(fp)
    fp.allow_unregistered(False)  # no docker build, no docker push, no docker anything else
    return cli.main(["promote", *args])


def test_promote_writes_the_source_manifest_byte_for_byte_under_each_tag(
    registry, fp, capsys, tmp_path
):
    metadata = tmp_path / "promote.json"
    code = run_promote(
        fp,
        f"{REPO}:dev",
        "--env",
        "staging",
        "--version",
        "1.0.0-rc.1",
        "--no-gate",
        "tested in dev",
        "--metadata-file",
        str(metadata),
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    refs = staging_refs()
    assert [ref for ref, _, _ in registry.writes] == refs
    for _ref, body, headers in registry.writes:
        assert body == SOURCE  # the bytes, not a re-encoding
        assert headers["Content-Type"] == DOCKER_MANIFEST
    assert out.splitlines()[-1] == f"{REPO}@{SOURCE_DIGEST}"
    doc = json.loads(metadata.read_text())
    assert doc["status"] == "succeeded"
    assert doc["source"] == {
        "ref": f"{REPO}:dev",
        "digest": SOURCE_DIGEST,
        "media_type": DOCKER_MANIFEST,
        "found": True,
    }
    assert doc["gate"]["ran"] is False and doc["gate"]["reason"] == "tested in dev"
    assert doc["digests"] == {ref: SOURCE_DIGEST for ref in refs}
    assert doc["image_id"] == CONFIG_DIGEST and doc["git_commit"] == "abc1234"
    assert list(doc["steps"]) == ["pre-flight", "gate", "promote", "verify"]
    # the dev build reports ENVIRONMENT=dev: said, with how a deployment sets it
    assert "note: the image reports ENVIRONMENT=dev, VERSION=unknown on /health" in err


def test_promoting_by_digest_reads_the_manifest_by_digest(registry, fp, capsys):
    code = run_promote(fp, f"{REPO}@{SOURCE_DIGEST}", "--env", "staging", "--no-gate", "x")
    assert code == 0, capsys.readouterr().err
    assert [ref for ref, _, _ in registry.writes] == [
        f"{REPO}:staging-{SOURCE_TS}",
        f"{REPO}:staging",
        f"{REPO}:git-abc1234",
        f"{REPO}:latest",
    ]


def test_a_version_tag_already_at_the_digest_is_left_alone(registry, fp, capsys):
    for ref in staging_refs()[:2]:
        serve(ref, body=SOURCE)
    code = run_promote(
        fp, f"{REPO}:dev", "--env", "staging", "--version", "1.0.0-rc.1", "--no-gate", "x"
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [ref for ref, _, _ in registry.writes] == staging_refs()[2:]
    assert "left as they are" in err
    # run again: nothing left to write
    registry.writes.clear()
    assert (
        run_promote(
            fp, f"{REPO}:dev", "--env", "staging", "--version", "1.0.0-rc.1", "--no-gate", "x"
        )
        == 0
    )
    assert registry.writes == []


def test_a_version_tag_at_another_digest_stops_before_any_write(registry, fp, capsys):
    serve(f"{REPO}:v1.2.3", OTHER_DIGEST)
    code = run_promote(fp, f"{REPO}:dev", "--env", "prod", "--version", "1.2.3", "--no-gate", "x")
    err = capsys.readouterr().err
    assert code == 1
    assert registry.writes == []
    assert err.splitlines()[-1].startswith(
        f"error: the registry already has {REPO}:v1.2.3 (now {OTHER_DIGEST})"
    )
    code = run_promote(
        fp,
        f"{REPO}:dev",
        "--env",
        "prod",
        "--version",
        "1.2.3",
        "--no-gate",
        "x",
        "--replace-version-tags",
    )
    assert code == 0
    assert f"{REPO}:v1.2.3" in [ref for ref, _, _ in registry.writes]
    assert "warning: --replace-version-tags: this promotion moves" in capsys.readouterr().err


def test_a_registry_that_stores_other_bytes_fails_the_promotion(registry, fp, capsys):
    registry.store_as = json.dumps(json.loads(SOURCE)).encode()  # re-encoded: another digest
    code = run_promote(fp, f"{REPO}:dev", "--env", "staging", "--no-gate", "x")
    assert code == 1
    assert "it changed the bytes" in capsys.readouterr().err


def test_a_dirty_source_needs_allow_dirty_for_prod(registry, fp, capsys):
    dirty = CONFIG_BLOB.replace(b"GIT_COMMIT=abc1234", b"GIT_COMMIT=abc1234-dirty")
    registry.blobs[digest_of(dirty)] = dirty
    serve(f"{REPO}:dirty", body=source_manifest(digest_of(dirty)))
    code = run_promote(fp, f"{REPO}:dirty", "--env", "prod", "--version", "1.2.3", "--no-gate", "x")
    assert code == 2
    assert "pass --allow-dirty" in capsys.readouterr().err
    assert registry.writes == []
    assert (
        run_promote(
            fp,
            f"{REPO}:dirty",
            "--env",
            "prod",
            "--version",
            "1.2.3",
            "--no-gate",
            "x",
            "--allow-dirty",
        )
        == 0
    )
    assert f"{REPO}:git-abc1234-dirty" in [ref for ref, _, _ in registry.writes]


def test_a_dry_run_sends_nothing_and_writes_nothing(registry, fp, capsys):
    code = cli.main(["promote", f"{REPO}:dev", "--env", "prod", "--version", "1.2.3", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert registry.requests == [] and registry.writes == []
    assert f"dry run: would PUT https://{PLAIN}/v2/rag-worker/manifests/v1.2.3" in err
    # the gate's commands, printed
    assert "docker run -d --name ragbuild-smoke-" in out


def test_no_gate_needs_a_reason(registry, fp, capsys):
    assert cli.main(["promote", f"{REPO}:dev", "--env", "staging", "--no-gate", " "]) == 2
    assert "--no-gate needs a reason" in capsys.readouterr().err


def test_the_gate_tests_the_source_digest_before_any_tag_is_written(
    registry, fp, capsys, monkeypatch, tmp_path
):
    tested = []

    def fake_gate(runner, expect, timeout):
        tested.append((expect, list(registry.writes)))
        return sagemaker.GateResult(
            expect.image,
            0.01,
            1.0,
            200,
            0.02,
            0.5,
            8090,
            0.01,
            {"status": "ok", "git_commit": "abc1234"},
            "now",
        )

    monkeypatch.setattr(sagemaker, "run", fake_gate)
    pinned = f"{REPO}@{SOURCE_DIGEST}"
    docker(
        fp,
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        pinned,
        returncode=1,
        stderr="Error: No such image",
    )
    docker(fp, "pull", pinned, stdout="pulled\n")
    metadata = tmp_path / "m.json"
    code = run_promote(fp, f"{REPO}:dev", "--env", "staging", "--metadata-file", str(metadata))
    assert code == 0, capsys.readouterr().err
    ((expect, written_before),) = tested
    assert expect.image == pinned and expect.git_commit == "abc1234"
    assert expect.version is None and expect.environment is None  # the source's own
    assert written_before == []
    gate = json.loads(metadata.read_text())["gate"]
    assert gate["ran"] and gate["pulled"] and gate["image"] == pinned
    assert gate["test"] == "sagemaker" and gate["figures"]["ping_seconds"] == 0.01
    assert gate["figures"]["stop_seconds"] == 0.5 and gate["health"]["git_commit"] == "abc1234"


def test_a_failed_gate_writes_no_tag(registry, fp, capsys, monkeypatch):
    from ragbuild.errors import SmokeTestFailed

    def failing(runner, expect, timeout):
        raise SmokeTestFailed("/ping did not answer 200 within 60s")

    monkeypatch.setattr(sagemaker, "run", failing)
    docker(
        fp,
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        f"{REPO}@{SOURCE_DIGEST}",
        stdout="sha256:x\n",
    )
    assert run_promote(fp, f"{REPO}:dev", "--env", "staging") == 1
    assert registry.writes == []


def test_a_single_oci_manifest_source_is_refused_before_the_gate_unless_not_for_sagemaker(
    registry, fp, capsys, monkeypatch
):
    """SageMaker pulls a Docker v2 schema 2 manifest only: promote checks SOURCE's shape before
    it tests or writes anything; --not-for-sagemaker promotes it as it is."""
    oci = "application/vnd.oci.image.manifest.v1+json"
    body = SOURCE.replace(DOCKER_MANIFEST.encode(), oci.encode())
    serve(f"{REPO}:oci", body=body, media_type=oci)
    tested = []
    monkeypatch.setattr(sagemaker, "run", lambda runner, expect, timeout: tested.append(expect))
    assert run_promote(fp, f"{REPO}:oci", "--env", "staging") == 1
    err = capsys.readouterr().err
    assert f"{REPO}:oci is a single {oci} manifest, not a Docker v2 schema 2 manifest" in err
    assert "--not-for-sagemaker" in err and "nothing was written" in err
    assert tested == [] and registry.writes == []
    assert (
        run_promote(
            fp,
            f"{REPO}:oci",
            "--env",
            "staging",
            "--not-for-sagemaker",
            "--no-gate",
            "not for SageMaker",
        )
        == 0
    )
    assert registry.writes and all(data == body for _, data, _ in registry.writes)


# --- ECR: its token, immutable tags; GITHUB_OUTPUT ---------------------------------------------


def ecr_source(registry):
    """The dev build at ECR's rag-worker:dev."""
    serve(f"{ECR}/rag-worker:dev", body=SOURCE)
    return f"{ECR}/rag-worker:dev"


def test_promote_in_ecr_logs_in_with_the_token_and_reads_with_it(registry, fp, capsys):
    seen = []
    register_login(fp, seen=seen)
    register_describe(fp, stdout=repository_json())
    code = run_promote(fp, ecr_source(registry), "--env", "staging", "--no-gate", "x")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seen == [PASSWORD.encode()]
    assert PASSWORD not in out + err
    assert out.splitlines()[-1] == f"{ECR}/rag-worker@{SOURCE_DIGEST}"


def test_an_immutable_ecr_repository_stops_or_skips_the_tags_it_would_refuse(registry, fp, capsys):
    source = ecr_source(registry)
    for skip in (False, True):
        register_login(fp)
        register_describe(fp, stdout=repository_json(mutability="IMMUTABLE"))
        register_list_images(fp, ["dev", "latest"])
        flags = ["--skip-existing-immutable"] if skip else []
        code = run_promote(fp, source, "--env", "staging", "--no-latest", "--no-gate", "x", *flags)
        err = capsys.readouterr().err
        if not skip:
            # staging moves from build to build: an immutable repository would freeze it
            assert code == 1 and "IMMUTABLE" in err and registry.writes == []
        else:
            assert code == 0, err
            assert [ref for ref, _, _ in registry.writes] == [
                f"{ECR}/rag-worker:staging-{SOURCE_TS}",
                f"{ECR}/rag-worker:git-abc1234",
            ]
            assert (
                f"left out (the repository keeps them immutable): {ECR}/rag-worker:staging" in err
            )


def test_github_output_gets_the_promoted_tags_and_digest(
    registry, fp, capsys, tmp_path, monkeypatch
):
    output = tmp_path / "github_output"
    output.write_text("")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert run_promote(fp, f"{REPO}:dev", "--env", "staging", "--no-gate", "x") == 0
    text = output.read_text()
    for ref in staging_refs()[2:]:
        assert f"\n{ref}\n" in text
    assert f"digest={SOURCE_DIGEST}\n" in text and f"image-id={CONFIG_DIGEST}\n" in text


@pytest.mark.parametrize(
    "flags, said",
    [
        ((), "give --version and/or --env"),
        (("--env", "prod"), "--env prod needs --version"),
        (("--env", "prd"), "did you mean 'prod'?"),
        (("--env", "dev", "--tag=.x"), "not a valid Docker tag"),
    ],
)
def test_bad_flags_exit_2_before_docker_or_the_registry_is_asked(registry, fp, capsys, flags, said):
    fp.allow_unregistered(False)
    for command in (["promote", f"{REPO}:dev"], ["push", "rag-worker:prod", "--registry", REPO]):
        assert cli.main([*command, *flags]) == 2
        assert said in capsys.readouterr().err
    assert registry.requests == [] and len(fp.calls) == 0


def test_an_index_is_copied_as_it_is_and_its_first_platforms_config_read(registry, fp, capsys):
    """A multi-platform image: the index's bytes go under each tag (its digest kept); the
    timestamp and commit come from the config of its first platform's image."""
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + "ee" * 32,
                    "size": 1,
                    "platform": {"os": "unknown", "architecture": "unknown"},
                },
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": SOURCE_DIGEST,
                    "size": len(SOURCE),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    ).encode()
    serve(f"{REPO}:multi", body=index, media_type=OCI_INDEX)
    code = run_promote(fp, f"{REPO}:multi", "--env", "staging", "--no-gate", "x")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[-1] == f"{REPO}@{digest_of(index)}"
    assert {(body, headers["Content-Type"]) for _, body, headers in registry.writes} == {
        (index, OCI_INDEX)
    }
    assert f"{REPO}:staging-{SOURCE_TS}" in [ref for ref, _, _ in registry.writes]


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_promote_prints_only_the_result_line(registry, fp, capsys, quiet):
    """-q/--quiet, as docker's: the pinned repository@digest on stdout, nothing on stderr."""
    flags = ["-q"] if quiet else []
    code = run_promote(fp, f"{REPO}:dev", "--env", "staging", "--no-gate", "x", *flags)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines() == [f"{REPO}@{SOURCE_DIGEST}"]
    assert (err == "") == quiet, err


def test_a_dry_run_names_the_source_among_the_metadata_keys_and_asks_nothing(
    registry, fp, capsys, tmp_path
):
    """The dry run's metadata line lists the document's keys, ``source`` included."""
    path = tmp_path / "m.json"
    argv = ["promote", f"{REPO}:dev", "--env", "prod", "--version", "1.2.3"]
    assert cli.main([*argv, "--dry-run", "--metadata-file", str(path)]) == 0
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "write the build metadata" in line]
    assert line.rstrip(")").endswith(", steps, source") and not path.exists()
    assert registry.requests == []
