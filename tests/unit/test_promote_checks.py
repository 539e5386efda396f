"""Issue 24's rules for push IMAGE and promote, against the fake registry and faked docker
calls (the gate's record: test_gate_record.py): the planned platform of push IMAGE's local image and of promote's SOURCE, push IMAGE run again over a
version tag that already names the image, and promote's ``source.found`` for a SOURCE the
registry does not have."""

import json

import fakes
import pytest

from ragbuild import cli

from registry_fakes import (
    DIGEST,
    DOCKER_MANIFEST,
    OTHER_DIGEST,
    PLAIN,
    FakeRegistry,
    digest_of,
    docker,
    register_push,
    serve,
)
from registry_fakes import clean_env  # noqa: F401 (autouse)

REPO = f"{PLAIN}/rag-worker"
TS = "20251111-101112"
ENV = ["PATH=/usr/bin", f"BUILD_TIMESTAMP={TS}", "GIT_COMMIT=abc1234"]


def config_blob(os_="linux", arch="amd64"):
    doc = {"config": {"Labels": {"org.opencontainers.image.revision": "abc1234"}, "Env": ENV}}
    if os_:
        doc.update(os=os_, architecture=arch)
    return json.dumps(doc).encode()


def source_manifest(blob):
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": digest_of(blob),
                "size": len(blob),
            },
            "layers": [],
        }
    ).encode()


def served_source(blob):
    """REPO:dev in the fake registry, an image whose config blob is ``blob``."""
    FakeRegistry.current.blobs[digest_of(blob)] = blob
    body = source_manifest(blob)
    serve(f"{REPO}:dev", body=body)
    return digest_of(body)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory without setup.cfg, for push and promote (no build, no checkout)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(fp, *argv):
    fakes.register_proxy_info(fp)
    fp.allow_unregistered(False)
    return cli.main(list(argv))


# --- the planned platform --------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob, flags, found",
    [
        (config_blob(arch="arm64"), (), "an image for linux/arm64, not the planned linux/amd64"),
        (config_blob(), ("--platform", "linux/arm64"), "linux/amd64, not the planned linux/arm64"),
        (config_blob(os_=None), (), "an image whose config names no platform"),
    ],
)
def test_promote_checks_the_sources_platform_before_any_write(
    workdir, fp, capsys, tmp_path, blob, flags, found
):
    served_source(blob)
    metadata = tmp_path / "m.json"
    code = run(
        fp, "promote", f"{REPO}:dev", "--env", "staging", "--metadata-file", str(metadata), *flags
    )
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert found in line and "nothing was written" in line and "the shape rule" in line
    assert FakeRegistry.current.writes == []
    assert json.loads(metadata.read_text())["failed_step"] == "pre-flight"


@pytest.mark.parametrize(
    "blob, flags",
    [
        (config_blob(arch="arm64"), ("--platform", "linux/arm64")),
        (config_blob(arch="arm64"), ("--not-for-sagemaker",)),  # no --platform: no rule
        (config_blob(arch="arm64", os_="linux"), ("--platform", "linux/arm64/v8")),
    ],
)
def test_promote_of_the_planned_platform_goes_on(workdir, fp, capsys, blob, flags):
    digest = served_source(blob)
    code = run(fp, "promote", f"{REPO}:dev", "--env", "staging", "--no-gate", "x", *flags)
    assert code == 0, capsys.readouterr().err
    assert FakeRegistry.current.writes and all(
        digest_of(body) == digest for _, body, _ in FakeRegistry.current.writes
    )


def test_platform_takes_one_platform(workdir, fp, capsys):
    code = run(
        fp, "promote", f"{REPO}:dev", "--env", "dev", "--platform", "linux/amd64,linux/arm64"
    )
    assert code == 2
    assert "ship one image, so one platform" in capsys.readouterr().err


IMAGE_ID = "sha256:" + "11" * 32  # the config digest of registry_fakes.MANIFEST


def register_image(fp, arch="amd64"):
    inspected = {
        "Id": IMAGE_ID,
        "Size": 123,
        "RepoTags": ["rag-worker:prod"],
        "Os": "linux",
        "Architecture": arch,
        "Config": {"Labels": {}, "Env": ENV},
    }
    docker(
        fp,
        "image",
        "inspect",
        "--format",
        "{{json .}}",
        "rag-worker:prod",
        stdout=json.dumps(inspected),
    )


def test_push_image_checks_the_local_images_platform_without_platform_flag(workdir, fp, capsys):
    register_image(fp, arch="arm64")
    code = run(
        fp, "push", "rag-worker:prod", "--registry", REPO, "--env", "prod", "--version", "1.2.3"
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "the local image rag-worker:prod is an image for linux/arm64, not the planned " in err
    assert "nothing was pushed" in err
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0
    assert fp.call_count([fp.program("docker"), "tag", fp.any()]) == 0


# --- push IMAGE again over its own version tag -----------------------------------------------


def push_again(fp, version_at):
    register_image(fp)
    refs = [
        f"{REPO}:{tag}"
        for tag in ("v1.2.3", "1.2.3", f"prod-{TS}", "prod", "git-abc1234", "latest")
    ]
    for ref in refs:
        docker(fp, "tag", IMAGE_ID, ref)
        register_push(fp, ref)
    for ref in refs[:2]:
        serve(ref, version_at)  # what the first run pushed before it failed
    for ref in refs[2:]:
        serve(ref)
        FakeRegistry.current.fail[ref] = [404]  # not pushed yet when the pre-flight asks
    return refs


def test_push_image_again_leaves_a_version_tag_that_already_names_the_image(workdir, fp, capsys):
    refs = push_again(fp, DIGEST)  # MANIFEST: its config digest is IMAGE_ID
    code = run(
        fp, "push", "rag-worker:prod", "--registry", REPO, "--env", "prod", "--version", "1.2.3"
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{refs[0]}, {refs[1]}: already this image in the registry" in err
    assert out.splitlines()[-1] == f"{REPO}@{DIGEST}"  # read back, every tag
    assert fp.call_count([fp.program("docker"), "push", refs[0]]) == 1


def test_push_image_again_still_stops_at_a_version_tag_of_another_image(workdir, fp, capsys):
    push_again(fp, OTHER_DIGEST)  # config digest 22...: another image
    code = run(
        fp, "push", "rag-worker:prod", "--registry", REPO, "--env", "prod", "--version", "1.2.3"
    )
    err = capsys.readouterr().err
    assert code == 1 and "the registry already has" in err and "already this image" not in err
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 0


# --- promote's source.found ------------------------------------------------------------------


def test_a_source_the_registry_does_not_have_is_recorded_as_not_found(
    workdir, fp, capsys, tmp_path
):
    metadata = tmp_path / "m.json"
    code = run(
        fp,
        "promote",
        f"{REPO}:git-abc1234",
        "--env",
        "prod",
        "--version",
        "1.2.3",
        "--metadata-file",
        str(metadata),
    )
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {REPO}:git-abc1234 is not in the registry: ")
    doc = json.loads(metadata.read_text())
    assert doc["source"] == {
        "ref": f"{REPO}:git-abc1234",
        "digest": None,
        "media_type": None,
        "found": False,
    }


def test_another_failure_to_read_the_source_leaves_found_unknown(workdir, fp, capsys, tmp_path):
    FakeRegistry.current.fail[f"{REPO}:git-abc1234"] = [403] * 10
    metadata = tmp_path / "m.json"
    code = run(
        fp, "promote", f"{REPO}:git-abc1234", "--env", "dev", "--metadata-file", str(metadata)
    )
    assert code == 1
    assert "is not in the registry" not in capsys.readouterr().err
    assert json.loads(metadata.read_text())["source"]["found"] is None
