"""verify.py: the read-back after a push (every tag serves the pushed manifest, of the shape
SageMaker takes), against a fake registry."""

from ragbuild import verify
from registry_fakes import OTHER_DIGEST, OTHER_IMAGE, PLAIN, build_plan, ctx_for, serve

import hashlib
import json
import re
import pytest
from ragbuild.errors import PushFailed
from ragbuild.run.runner import Runner
from registry_fakes import *  # noqa: F401,F403 (the shared fakes, clean_env included)
from registry_fakes import clean_env  # noqa: F401 (autouse)


# --- verification ------------------------------------------------------------------------------


def test_registry_digest_must_match_what_push_reported(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
    serve(plan.refs[0])
    serve(plan.refs[1], digest=OTHER_DIGEST)
    serve(plan.refs[2])
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert f"{plan.refs[1]} resolves to {OTHER_DIGEST}" in message
    assert plan.refs[0] + " resolves" not in message


def test_tags_of_one_build_must_share_one_digest(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    register_push(fp, plan.refs[0])
    register_push(fp, plan.refs[1], digest=OTHER_DIGEST)
    register_push(fp, plan.refs[2])
    serve(plan.refs[0])
    serve(plan.refs[1], digest=OTHER_DIGEST)
    serve(plan.refs[2])
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert "pushed as different manifests" in str(err.value)


@pytest.mark.parametrize(
    "media_type", [OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"]
)
def test_index_manifest_is_refused_naming_sagemaker(fp, media_type):
    """A single-platform push must name one image manifest: buildx's default attestations make
    an index of the image and an unknown/unknown entry, which SageMaker refuses."""
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never", env="staging")
    for ref in plan.refs:
        register_push(fp, ref)
    serve_index(plan.refs[0], ("linux/amd64",), media_type=media_type, attestations=1)
    for ref in plan.refs[1:]:
        serve(ref)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert (
        f"{plan.refs[0]} is an image index ({media_type}), not a single image manifest: "
        "SageMaker refuses image indexes" in message
    )
    assert "--provenance=false" in message
    assert message.count("is an image index") == 1


def test_a_single_oci_manifest_fails_sagemakers_shape_unless_not_for_sagemaker(fp):
    """SageMaker takes a Docker v2 schema 2 manifest only; an engine with the containerd image
    store can push an OCI one. --not-for-sagemaker accepts it."""
    oci = "application/vnd.oci.image.manifest.v1+json"
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": oci,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + "33" * 32,
                "size": 1,
            },
            "layers": [],
        }
    ).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref, digest=digest)
        serve(ref, body=body, media_type=oci)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    message = str(err.value)
    assert (
        f"{plan.refs[0]} is a single {oci} manifest, not a Docker v2 schema 2 manifest "
        "(application/vnd.docker.distribution.manifest.v2+json): SageMaker refuses it" in message
    )
    assert "oci-mediatypes=false" in message and "--not-for-sagemaker" in message
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never", not_for_sagemaker=True)
    for ref in plan.refs:
        register_push(fp, ref, digest=digest)
    assert push_and_verify(prepared(plan), Runner()) == f"{PLAIN}/rag-worker@{digest}"


def test_the_read_back_asks_for_every_manifest_type_with_one_request_per_tag(fp):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    push_and_verify(prepared(plan), Runner())
    requests = FakeRegistry.current.manifest_requests()
    assert len(requests) == len(plan.refs)
    for _, headers in requests:
        assert headers["Accept"].split(", ") == [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
        ]


def test_a_transient_503_is_retried_then_passes(fp, capsys):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    FakeRegistry.current.fail[plan.refs[1]] = [
        503,
        ConnectionResetError(104, "Connection reset by peer"),
    ]
    sleep = FakeSleep()
    assert push_and_verify(prepared(plan, sleep), Runner()) == f"{PLAIN}/rag-worker@{DIGEST}"
    assert sleep.delays == [2.0, 4.0]
    err = capsys.readouterr().err
    tag = plan.refs[1].rsplit(":", 1)[1]
    assert (
        f"GET https://{PLAIN}/v2/rag-worker/manifests/{tag} failed (HTTP 503 Service "
        "Unavailable); retrying in 2s (attempt 2 of 3)" in err
    )
    assert "pushed and verified 3 tags" in err


@pytest.mark.parametrize(
    "failures, retried",
    [([503] * 3, 3), ([429] * 3, 3), ([404], 1), ([401, 401], 1), ([500, 404], 2)],
)
def test_a_read_back_that_keeps_failing_fails_verification(fp, failures, retried):
    """Transient answers (5xx, 429) are retried up to --push-attempts; a missing manifest or
    refused credentials are not."""
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref)
    FakeRegistry.current.fail[plan.refs[0]] = list(failures)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    assert f"{plan.refs[0]}: cannot read its manifest back from the registry" in str(err.value)
    tag = plan.refs[0].rsplit(":", 1)[1]
    asked = [url for url, _ in FakeRegistry.current.manifest_requests() if url.endswith(tag)]
    assert len(asked) == retried + (1 if failures[-1] == 401 else 0)  # a 401 is answered once


# --- odd registry answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, said, problem",
    [
        (b"not json", None, "served no manifest: not JSON: 'not json'"),
        (b"[1]", None, "served no manifest: not a manifest"),
        (
            MANIFEST,
            OTHER_DIGEST,
            f"served no manifest: the registry says {OTHER_DIGEST} but the "
            f"body's sha256 is {DIGEST}",
        ),
    ],
)
def test_a_body_that_is_no_manifest_is_a_verification_problem(fp, body, said, problem):
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref, body=body, said=said)
    with pytest.raises(PushFailed) as err:
        push_and_verify(prepared(plan), Runner())
    tag = plan.refs[0].rsplit(":", 1)[1]
    assert f"{plan.refs[0]}: https://{PLAIN}/v2/rag-worker/manifests/{tag} {problem}" in str(
        err.value
    )


def test_the_media_type_comes_from_the_content_type_when_the_body_has_none(fp):
    """Schema 2 manifests carry mediaType; an OCI manifest may leave it to the Content-Type."""
    plan = build_plan(f"{PLAIN}/rag-worker", latest_policy="never")
    body = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    for ref in plan.refs:
        register_push(fp, ref)
        serve(ref, body=body, media_type=OCI_INDEX)
    with pytest.raises(PushFailed, match=re.escape(f"is an image index ({OCI_INDEX})")):
        push_and_verify(prepared(plan), Runner())


def test_the_read_back_refuses_a_manifest_of_another_image(fp):
    """A build that pushed itself (or a push the registry mixed up): verify names it."""
    plan = build_plan(f"{PLAIN}/rag-worker")
    for ref in plan.refs:
        serve(ref, OTHER_DIGEST)
    ctx = ctx_for(plan, before={ref: "" for ref in plan.refs})
    with pytest.raises(PushFailed) as stopped:
        verify.verify(Runner(), ctx, {ref: OTHER_DIGEST for ref in plan.refs})
    message = str(stopped.value)
    assert f"{plan.refs[0]} serves the image {OTHER_IMAGE}, not this run's image" in message
    assert "did not exist before this run" in message
