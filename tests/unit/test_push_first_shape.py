"""push.check_pushed: the first ref, read back after its push, must already have the shape the
read-back (verify.py) demands of a one-platform plan, so an image index (``push IMAGE`` of a
multi-platform image on the containerd store, whose ID is the index's digest) stops the run
before ``dev`` and ``latest`` move to it, not after every tag was pushed."""

import pytest

from ragbuild import push
from ragbuild.errors import PushFailed
from ragbuild.run.runner import Runner
from registry_fakes import (
    OCI_INDEX,
    PLAIN,
    build_plan,
    ctx_for,
    digest_of,
    index_body,
    register_push,
    serve,
)


def pushed_index(fp, **options):
    plan = build_plan(f"{PLAIN}/rag-worker", **options)
    first = plan.refs[0]
    body = index_body()
    index = digest_of(body)
    register_push(fp, first, digest=index)
    serve(first, index, body=body, media_type=OCI_INDEX)
    return plan, first, index


@pytest.mark.parametrize("not_for_sagemaker", [False, True])
def test_an_index_under_the_first_ref_stops_before_anything_more_is_pushed(fp, not_for_sagemaker):
    plan, first, index = pushed_index(fp, not_for_sagemaker=not_for_sagemaker)
    with pytest.raises(PushFailed) as stopped:
        push.push(Runner(), ctx_for(plan, {ref: "" for ref in plan.refs}, image_id=index))
    message = str(stopped.value)
    assert f"{first} is an image index ({OCI_INDEX})" in message
    assert f"pushed: {first}\nnot pushed: {', '.join(plan.refs[1:])}" in message
    assert fp.call_count([fp.program("docker"), "push", fp.any()]) == 1
    assert stopped.value.pushed == {first: index}
