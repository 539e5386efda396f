"""The same tags as scripts/build-image.sh for the same flags, from real builds.

Each row is a command line of the bash script and the tags bash produces for it, written out in
bash's order (its ``TAGS`` array: ``v<version>``, ``<version>``, ``<env>-<timestamp>``, ``<env>``,
``git-<sha>``, the custom tag, ``latest``), on BASE = the registry URI if given, else the project
name. ``SOURCE_DATE_EPOCH`` and ``TZ`` are fixed, so ``<timestamp>`` is known; ``<sha>`` is
``git rev-parse --short HEAD`` of the copy, as bash computes it.

Each row builds a tiny Dockerfile (``-f``/``--context``) in a project copy whose
``[ragbuild] image-name`` is a name of its own (bash's ``PROJECT_NAME="rag-worker"``; a name per
row keeps the rows' images apart), then compares with what the engine holds:
``docker image ls --filter reference=<base>`` and the image's RepoTags.

The one intended difference: bash kept only the LAST ``--tag``; the port keeps every one.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e

EPOCH = "1700000000"  # 2023-11-14 22:13:20 UTC
TS = "20231114-221320"

# (id, flags, extra environment, bash's tags in bash's order, the port's tags if they differ)
# {ts}, {sha}: the timestamp and the short sha; {base}: the registry URI of the row.
CASES = [
    ("env-dev", ["--env", "dev"], {}, ["dev-{ts}", "dev", "git-{sha}", "latest"], None),
    ("version-only", ["--version", "1.0.0"], {}, ["v1.0.0", "1.0.0", "git-{sha}", "latest"], None),
    (
        "version-v-staging-tag-no-latest",
        ["--version", "v1.2.3", "--env", "staging", "--tag", "x", "--no-latest"],
        {},
        ["v1.2.3", "1.2.3", "staging-{ts}", "staging", "git-{sha}", "x"],
        None,
    ),
    (
        "short-flags-prod",
        ["-v", "1.0.0", "-e", "prod"],
        {},
        ["v1.0.0", "1.0.0", "prod-{ts}", "prod", "git-{sha}", "latest"],
        None,
    ),
    (
        "prerelease",
        ["--version", "2.0.0-rc.1", "--env", "staging"],
        {},
        ["v2.0.0-rc.1", "2.0.0-rc.1", "staging-{ts}", "staging", "git-{sha}", "latest"],
        None,
    ),
    (
        "registry",
        ["--env", "dev", "--registry", "{base}"],
        {},
        ["dev-{ts}", "dev", "git-{sha}", "latest"],
        None,
    ),
    (
        "registry-from-env",
        ["--version", "1.0.0"],
        {"ECR_REGISTRY_URI": "{base}"},
        ["v1.0.0", "1.0.0", "git-{sha}", "latest"],
        None,
    ),
    (
        "no-latest-then-latest",
        ["--env", "dev", "--no-latest", "--latest"],
        {},
        ["dev-{ts}", "dev", "git-{sha}", "latest"],
        None,
    ),
    # bash's `date` honoured TZ; so does the port without SOURCE_DATE_EPOCH, and with it the port
    # writes UTC whatever TZ says (issue 11 (d)): both in test_issue11.py
    # a custom tag equal to a generated one: bash tags it twice (same set), the port passes it once
    (
        "tag-equals-latest",
        ["--env", "dev", "--tag", "latest"],
        {},
        ["dev-{ts}", "dev", "git-{sha}", "latest", "latest"],
        ["dev-{ts}", "dev", "git-{sha}", "latest"],
    ),
    # THE intended difference: bash kept only the last --tag
    (
        "two-tags",
        ["--env", "dev", "--tag", "a", "--tag", "b"],
        {},
        ["dev-{ts}", "dev", "git-{sha}", "b", "latest"],
        ["dev-{ts}", "dev", "git-{sha}", "a", "b", "latest"],
    ),
]


@pytest.mark.every_leg
@pytest.mark.parametrize(
    "flags, extra_env, bash_tags, port_tags",
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_same_tags_as_bash(
    flags, extra_env, bash_tags, port_tags, new_project, tiny_context, unique, docker, images
):
    name = unique("tags")
    registry_base = f"localhost:5000/{name}"  # never contacted: tags only, no push
    uses_registry = any("{base}" in v for v in [*flags, *extra_env.values()])
    base = registry_base if uses_registry else name
    images.track_repository(base)
    project = new_project("tags", image_name=name)
    fill = lambda text: text.format(ts=TS, sha=project.sha, base=registry_base)  # noqa: E731
    dockerfile = tiny_context(f'LABEL org.ragbuild.e2e.case="{name}"')
    env = {"SOURCE_DATE_EPOCH": EPOCH, "TZ": "UTC", **{k: fill(v) for k, v in extra_env.items()}}

    result = project.script(
        *map(fill, flags), "-f", dockerfile, "--context", dockerfile.parent, env=env
    ).assert_ok()
    image_id = images.track_result(result)

    bash = [f"{base}:{fill(tag)}" for tag in bash_tags]
    port = [f"{base}:{fill(tag)}" for tag in port_tags] if port_tags else bash
    assert set(bash) <= set(port)  # the port never drops a tag bash made
    # what the engine holds under BASE: exactly these tags, all on the one image just built
    assert docker.refs(base) == sorted(set(port))
    assert docker.ids(base) == {image_id}
    assert sorted(docker.inspect(image_id)["RepoTags"]) == sorted(set(port))
    # and in bash's order: the plan lists them so, and the first is the one to run
    assert re.findall(r"^  - (\S+)$", result.stderr, re.M) == port
    assert f"run it: docker run -p 8080:8080 {port[0]}" in result.stderr
    assert port[0] == bash[0]
