"""The labels ragbuild's build command adds: OCI's created time in RFC 3339 (the OCI spec's
format; BUILD_TIMESTAMP keeps bash's), and the repository its tags go on (what clean goes by)."""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fakes import EPOCH, STAMP, set_tz
from ragbuild import cli
from ragbuild.plan import Config, GitInfo, build_command, format_created, make_plan

REPO = Path(__file__).resolve().parents[2]
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")


def labels_of(argv) -> dict:
    return dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "--label")


def build_args_of(argv) -> dict:
    return dict(argv[i + 1].split("=", 1) for i, word in enumerate(argv) if word == "--build-arg")


def dry_run_build(capsys, *flags) -> list:
    assert cli.main(["--env", "dev", "--dry-run", *flags]) == 0
    return shlex.split(capsys.readouterr().out.splitlines()[0])


@pytest.mark.parametrize("tz, created", [  # SOURCE_DATE_EPOCH: UTC whatever TZ says
    ("UTC", "2023-12-03T14:30:22+00:00"),
    ("Asia/Kolkata", "2023-12-03T14:30:22+00:00"),
    ("America/New_York", "2023-12-03T14:30:22+00:00"),
])
def test_created_label_is_rfc3339_of_the_build_timestamps_instant(project, strict_fp, capsys,
                                                                 monkeypatch, tz, created):
    set_tz(monkeypatch, tz)
    argv = dry_run_build(capsys)
    label = labels_of(argv)["org.opencontainers.image.created"]
    assert label == created and RFC3339.fullmatch(label)
    stamp = build_args_of(argv)["BUILD_TIMESTAMP"]
    assert re.fullmatch(r"\d{8}-\d{6}", stamp)  # bash's format, unchanged (drop-in)
    moment = datetime.fromisoformat(label)
    assert moment.strftime("%Y%m%d-%H%M%S") == stamp  # the same wall-clock time ...
    assert moment.timestamp() == int(EPOCH)  # ... and the same instant
    assert [t for t in argv if t.startswith("rag-worker:dev-")] == [f"rag-worker:dev-{stamp}"]


def test_utc_build_timestamp_is_the_guides_stamp(project, strict_fp, capsys):
    argv = dry_run_build(capsys)
    assert build_args_of(argv)["BUILD_TIMESTAMP"] == STAMP


def test_format_created_keeps_an_aware_moments_offset():
    moment = datetime(2024, 2, 3, 4, 5, 6, 789, tzinfo=timezone(timedelta(hours=-3)))
    assert format_created(moment) == "2024-02-03T04:05:06-03:00"


@pytest.mark.parametrize("flags, repository", [
    ([], "rag-worker"),
    (["--image-name", "team/my-worker"], "team/my-worker"),
    (["--registry", "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"],
     "123456789012.dkr.ecr.us-east-1.amazonaws.com/rag-worker-dev"),
    (["--registry", "localhost:5000/a/b"], "localhost:5000/a/b"),
])
def test_repository_label_names_the_repository_of_the_tags(project, strict_fp, capsys, flags,
                                                           repository):
    argv = dry_run_build(capsys, *flags)
    assert labels_of(argv)["org.ragbuild.repository"] == repository
    assert {t.rsplit(":", 1)[0] for t in argv[argv.index("-t") + 1::2][:1]} == {repository}


def test_custom_image_name_from_setup_cfg_is_the_label(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nimage-name = my-worker\n")
    argv = dry_run_build(capsys)
    assert labels_of(argv)["org.ragbuild.repository"] == "my-worker"


def test_labels_follow_the_build_args_on_a_buildx_build_too():
    plan = make_plan(cli.parse_build(["--env", "dev", "--builder", "remote"]), Config(),
                     GitInfo(sha="a1b2c3d"), datetime(2023, 12, 3, 14, 30, 22))
    argv = list(build_command(plan).argv)
    assert argv[:3] == ["docker", "buildx", "build"]
    assert labels_of(argv) == {"org.opencontainers.image.created": plan.created,
                               "org.ragbuild.repository": "rag-worker"}


def test_the_dockerfile_leaves_created_to_ragbuild():
    """A LABEL created="${BUILD_TIMESTAMP}" would put bash's non-RFC 3339 stamp on plain builds."""
    dockerfile = (REPO / "Dockerfile").read_text()
    label = re.search(r"(?ms)^LABEL .*?[^\\]$", dockerfile).group(0)
    assert "org.opencontainers.image.created" not in label
    assert 'org.opencontainers.image.source="${SOURCE_URL}"' in label
