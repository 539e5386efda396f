"""images.py: the one inspect call that reads a built image."""

from __future__ import annotations
from ragbuild.images import inspect_command


def test_inspect_command_asks_for_id_size_tags_and_labels_in_one_call():
    assert inspect_command("rag-worker:dev").argv == (
        "docker",
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Size}} {{json .RepoTags}} {{json .Config.Labels}}",
        "rag-worker:dev",
    )
