"""Which tags ``clean`` removes, which it keeps and why, and which images go: ragbuild's plan
(ragbuild/cleanup.py ``plan_removal``, which ``clean`` follows) against what the leg's real
``docker image rm`` does on the same state, on generated cases (issue 23).

Each case is one image labelled as a ragbuild build of this project (or, sometimes, of
another), with 1-4 tags on this project's repository and others, containers (created, exited,
running) made from one of its tags or its ID, sometimes a child image committed from it (its
parent, on the classic store). All the cases of a leg are laid out at once and one ``clean``
(in this process, with a local run container of its own name) acts on them all: each image's
fate depends on its own tags and containers only. The images are made by ``docker commit`` of
one container of the base image (no build), so 50 cases take about a minute. Afterwards each image is
inspected: the tags it keeps and whether it is gone are compared with the plan; so is the
promise that no image of this project is left with part of its tags removed.

Seed ``RAGBUILD_CLEAN_SEED`` (default 23), ``RAGBUILD_CLEAN_CASES`` cases (default 50); a
failure prints the seed and each failing case with the plan and what docker did.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from .support import BASE_IMAGE, COMMAND_TIMEOUT

pytestmark = [pytest.mark.e2e, pytest.mark.every_leg]

SEED = int(os.environ.get("RAGBUILD_CLEAN_SEED", "23"))
COUNT = int(os.environ.get("RAGBUILD_CLEAN_CASES", "50"))
JOBS = int(os.environ.get("RAGBUILD_CLEAN_JOBS", "4"))
LABEL = "org.ragbuild.repository"


@dataclass
class Case:
    index: int
    label: str  # "ours" or "other": the repository the label names
    tags: list  # ("ours"|"other", tag)
    containers: list  # (state, "tag"|"id")
    child: bool = False
    local: bool = False  # the local run container runs it
    seed: int = SEED
    image_id: str = ""
    names: list = field(default_factory=list)  # its containers' names

    def describe(self) -> str:
        return (
            f"case {self.index} (RAGBUILD_CLEAN_SEED={self.seed}): label {self.label}, tags "
            f"{self.tags}, containers {self.containers}"
            f"{', a child image' if self.child else ''}"
            f"{', the local run container' if self.local else ''}"
        )


def generate(index: int, seed: int = SEED) -> Case:
    rng = random.Random(f"clean-{seed}-{index}")
    tags = [
        (rng.choice(["ours", "ours", "other"]), f"c{index}-{n}") for n in range(rng.randint(1, 4))
    ]
    containers = [
        (rng.choice(["created", "exited", "running"]), rng.choice(["tag", "id"]))
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2]))
    ]
    return Case(
        index,
        "ours" if rng.random() < 0.85 else "other",
        tags,
        containers,
        child=rng.random() < 0.15,
        seed=seed,
    )


def run(docker, *args, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [docker.binary, *map(str, args)],
        env=docker.runner.environ(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert done.returncode == 0 or not check, f"docker {' '.join(args)}: {done.stderr}"
    return done


def test_clean_removes_and_keeps_what_docker_image_rm_does(docker, leg, token, monkeypatch):
    from plumbum import local

    from ragbuild import cleanup
    from ragbuild.commands import clean as clean_command
    from ragbuild.run.runner import Runner

    ours, other = f"ragbuild-e2e-{token}-cleandiff", f"ragbuild-e2e-{token}-cleanother"
    repository = {"ours": ours, "other": other}
    local_name = f"ragbuild-e2e-{token}-local"
    cases = [generate(index) for index in range(COUNT)]
    with_local = [case for case in cases if case.label == "ours"]
    random.Random(f"clean-{SEED}-local").choice(with_local).local = True
    seed = f"ragbuild-e2e-{token}-seed"
    run(docker, "create", "--name", seed, BASE_IMAGE, "true")
    made = []  # image IDs, to remove at the end
    all_names = [seed]

    def lay_out(case: Case) -> None:
        committed = run(
            docker,
            "commit",
            "--change",
            f"LABEL {LABEL}={repository[case.label]}",
            "--change",
            f"LABEL org.ragbuild.e2e.case={token}-{case.index}",
            seed,
        )
        case.image_id = committed.stdout.strip()
        made.append(case.image_id)
        for where, tag in case.tags:
            run(docker, "tag", case.image_id, f"{repository[where]}:{tag}")
        ref = f"{repository[case.tags[0][0]]}:{case.tags[0][1]}"
        if case.child:
            name = f"ragbuild-e2e-{token}-parent-{case.index}"
            run(docker, "create", "--name", name, case.image_id, "true")
            child = run(docker, "commit", name, f"{other}:child-{case.index}").stdout.strip()
            made.append(child)
            run(docker, "rm", name)
        for n, (state, by) in enumerate(case.containers):
            name = f"ragbuild-e2e-{token}-c{case.index}-{n}"
            case.names.append(name)
            image = case.image_id if by == "id" else ref
            if state == "created":
                run(docker, "create", "--name", name, image, "true")
            elif state == "exited":
                run(docker, "run", "--name", name, image, "true")
            else:
                run(docker, "run", "-d", "--name", name, image, "sleep", "300")
        if case.local:
            case.names.append(local_name)
            run(docker, "run", "-d", "--name", local_name, ref, "sleep", "300")
        all_names.extend(case.names)

    try:
        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            list(pool.map(lay_out, cases))
        before = {
            image["Id"]: image
            for image in json.loads(run(docker, "image", "inspect", *made).stdout)
        }
        env = docker.runner.environ()
        monkeypatch.setenv("DOCKER", docker.binary)
        with local.env(**env):
            for key in ("DOCKER_HOST", "DOCKER_CONTEXT"):
                if key not in env:
                    local.env.pop(key, None)
            log = io.StringIO()
            runner = Runner(out=io.StringIO(), log=log)
            in_scope = [  # as clean finds them: every image labelled ours, the children too
                image for image in before.values() if image["Config"]["Labels"].get(LABEL) == ours
            ]
            plan = cleanup.plan_removal(in_scope, cleanup.containers(runner), local_name)
            clean_command.clean(
                runner, name=local_name, repositories=cleanup.project_repositories(ours, None)
            )
        said = log.getvalue()
        failures = []
        for case in cases:
            tags = set(before[case.image_id]["RepoTags"])
            after = run(docker, "image", "inspect", case.image_id, check=False)
            exists = after.returncode == 0
            kept = set(json.loads(after.stdout)[0]["RepoTags"]) if exists else set()
            expected = tags - set(plan.removing.get(case.image_id, []))
            gone = case.image_id in plan.deleted
            ours_before = {t for t in tags if t.startswith(f"{ours}:")}
            partial = ours_before and ours_before & kept and ours_before - kept
            used = case.image_id in plan.in_use
            wrong = []
            if kept != expected:
                wrong.append(f"tags after: {sorted(kept)}, the plan: {sorted(expected)}")
            if exists == gone:
                wrong.append(
                    f"the plan says {'deleted' if gone else 'kept'}, docker "
                    f"{'kept' if exists else 'deleted'} the image"
                )
            if partial and case.label == "ours":
                wrong.append(f"left with part of its tags: {sorted(kept)}")
            if used and f"image {case.image_id[:19]} is used by" not in said:
                wrong.append("kept in use, but clean did not say so")
            if wrong:
                failures.append(
                    f"{case.describe()}\n  " + "\n  ".join(wrong) + f"\n  in use: {used}"
                )
        # the reason clean gives for keeping an image in use, asked of docker: removing its
        # tags one by one untags while another tag is left and refuses the last
        for case in cases:
            if case.image_id not in plan.in_use:
                continue
            refs, _ = plan.in_use[case.image_id]
            others = set(before[case.image_id]["RepoTags"]) - set(refs)
            done = run(docker, "image", "rm", *refs, check=False)
            # "unable to remove repository reference "R"" (classic store), "unable to delete
            # R (must be forced)" (containerd store)
            conflicts = [line for line in done.stderr.splitlines() if "conflict" in line]
            refused = [ref for ref in refs if any(ref in line for line in conflicts)]
            untagged = [ref for ref in refs if f"Untagged: {ref}" in done.stdout]
            expected = ([], refs) if others else (refs[-1:], refs[:-1])
            if (refused, untagged) != expected:
                failures.append(
                    f"{case.describe()}\n  docker image rm {' '.join(refs)} refused "
                    f"{refused} and untagged {untagged}; clean's reason says "
                    f"{expected[0]} and {expected[1]}: {done.stderr.strip()!r}"
                )
        assert not failures, (
            f"{len(failures)} of {len(cases)} cases disagree (RAGBUILD_CLEAN_SEED={SEED}, leg "
            f"{leg.name}):\n" + "\n".join(failures) + f"\nclean said:\n{said}"
        )
    finally:
        run(docker, "rm", "-f", *all_names, check=False)
        run(docker, "image", "rm", "-f", *reversed(made), check=False)
