"""A one-line change under src/ rebuilds only the source layer: the dependency install stays cached.

Read from BuildKit's plain progress output (BUILDKIT_PROGRESS=plain, set for the whole suite):
each step is announced as ``#10 [builder 4/4] RUN ...`` and ends as ``#10 CACHED`` or
``#10 DONE 3.6s``.
"""

from __future__ import annotations

import re
import secrets

import pytest

pytestmark = pytest.mark.e2e

STEP_RE = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$", re.M)
STATUS_RE = re.compile(r"^#(\d+) (CACHED|DONE|ERROR|CANCELED)\b", re.M)


def build_steps(output: str) -> dict:
    """Instruction (``RUN ...``, ``COPY ...``) -> set of its statuses, for the Dockerfile's steps."""
    titles = {num: title for num, title in STEP_RE.findall(output)}
    statuses = {}
    for num, status in STATUS_RE.findall(output):
        statuses.setdefault(num, set()).add(status)
    steps = {}
    for num, title in titles.items():
        if title.startswith("[internal]"):
            continue
        instruction = title.split("] ", 1)[1]
        steps.setdefault(instruction, set()).update(statuses.get(num, set()))
    return steps


def step(steps: dict, prefix: str) -> set:
    found = [statuses for instruction, statuses in steps.items() if instruction.startswith(prefix)]
    assert len(found) == 1, f"one step starting {prefix!r} expected among {sorted(steps)}"
    return found[0]


def test_a_change_under_src_rebuilds_only_the_source_layer(project, images, unique, pip_args):
    args = f"{pip_args} --image-name {unique('cache')}"
    first = project.make("build-dev", f"ARGS={args}").assert_ok()
    first_id = images.track_result(first)

    source = project.path / "src" / "rag_worker" / "inference.py"
    # a line no earlier run wrote: BuildKit caches by content, across runs
    source.write_text(source.read_text() + f"\n# a one-line change {secrets.token_hex(8)}\n")
    second = project.make("build-dev", f"ARGS={args}").assert_ok()
    second_id = images.track_result(second)
    assert second_id != first_id

    steps = build_steps(second.stderr)
    assert step(steps, "RUN /opt/venv/bin/pip install") == {"CACHED"}, second.describe()
    for cached in ("COPY src/rag_worker/requirements.txt", "RUN python -m venv",
                   "RUN groupadd", "WORKDIR /app", "COPY --from=builder"):
        assert step(steps, cached) == {"CACHED"}, cached
    assert step(steps, "COPY src/ /app/src/") == {"DONE"}, "the changed source was not copied anew"
    # nothing else ran: every other step of the Dockerfile came from the cache
    rebuilt = [i for i, s in steps.items() if s != {"CACHED"} and not i.startswith(("FROM", "COPY src/"))]
    assert rebuilt == []
