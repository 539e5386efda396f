"""``cleanup.plan_removal``: what ``clean`` removes and keeps, as docker's ``image rm`` decides
it (tested against docker by tests/e2e/test_clean_differential.py)."""

from __future__ import annotations

from ragbuild.cleanup import Container, plan_removal

LABEL = "org.ragbuild.repository"


def image(image_id: str, tags: list, label: str = "app", parent: str = "") -> dict:
    return {
        "Id": image_id,
        "RepoTags": tags,
        "Parent": parent,
        "Config": {"Labels": {LABEL: label}},
    }


def test_an_image_whose_every_tag_goes_is_deleted():
    plan = plan_removal([image("sha256:a", ["app:dev", "app:latest"])], [], "local")
    assert plan.removing == {"sha256:a": ["app:dev", "app:latest"]}
    assert plan.deleted == {"sha256:a"} and not plan.parents


def test_a_parent_of_another_image_is_untagged_not_deleted():
    """docker untags an image a child names its Parent and keeps it (found on every leg)."""
    images = [
        image("sha256:a", ["app:dev"]),
        image("sha256:child", ["fork:1"], parent="sha256:a"),
    ]
    plan = plan_removal(images, [], "local")
    assert plan.removing["sha256:a"] == ["app:dev"]
    assert plan.deleted == frozenset() and plan.parents == {"sha256:a"}
    assert plan.removing["sha256:child"] == []  # its tag is not on the label's repository


def test_a_parent_of_another_projects_image_is_untagged_not_deleted():
    """A child out of this project's scope (its label names another repository) still keeps
    its parent: the other images listed count for ``Parent`` (breaker's report)."""
    child = image("sha256:child", ["other:1"], label="other", parent="sha256:a")
    plan = plan_removal([image("sha256:a", ["app:dev"])], [], "local", others=[child])
    assert plan.deleted == frozenset() and plan.parents == {"sha256:a"}
    assert "sha256:child" not in plan.removing
    assert plan_removal([image("sha256:a", ["app:dev"])], [], "local").deleted == {"sha256:a"}


def test_an_image_a_container_uses_keeps_every_tag():
    used = Container("c1", "job", "sha256:a", "exited")
    plan = plan_removal([image("sha256:a", ["app:dev", "app:1"])], [used], "local")
    assert plan.removing == {"sha256:a": []}
    assert plan.in_use == {"sha256:a": (["app:dev", "app:1"], [used])}
    assert not plan.deleted


def test_the_local_container_goes_with_an_image_whose_every_tag_goes():
    local = Container("c1", "local", "sha256:a", "running")
    plan = plan_removal([image("sha256:a", ["app:dev"])], [local], "local")
    assert plan.local == local and plan.deleted == {"sha256:a"}


def test_the_local_container_keeps_an_image_that_keeps_a_tag():
    local = Container("c1", "local", "sha256:a", "running")
    plan = plan_removal([image("sha256:a", ["app:dev", "mine:1"])], [local], "local")
    assert plan.local is None and plan.in_use == {"sha256:a": (["app:dev"], [local])}
