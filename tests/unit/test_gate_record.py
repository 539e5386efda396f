"""The SageMaker gate's record in the metadata (issue 24: "the metadata records what was tested,
the figures and when"): ``sagemaker.recorded``, passed or failed, and a build's --smoke-test
writing it to ``gate`` (promote's is in test_promote.py), with the gate and docker faked."""

import json

import pytest

from fakes import FAKE_IMAGE_ID as IMAGE_ID, STAMP
from ragbuild import cli, gate_record, sagemaker
from ragbuild.metadata import KEYS

REFS = [f"rag-worker:dev-{STAMP}", "rag-worker:dev", "rag-worker:git-a1b2c3d", "rag-worker:latest"]


def register_build(fp):
    fp.register([fp.program("docker"), "build", "-f", fp.any()])
    fp.register(
        [fp.program("docker"), "image", "inspect", fp.any()],
        stdout=f"{IMAGE_ID} 1234 {json.dumps(REFS, separators=(',', ':'))} {{}}\n",
    )


def gate_result(image="img"):
    return sagemaker.GateResult(
        image, 0.01, 1.0, 200, 0.02, 0.5, 8090, 0.03, {"status": "ok"}, "2026-01-01T00:00:00Z"
    )


def test_recorded_keeps_what_was_tested_the_figures_and_when():
    result, record = gate_record.recorded("sha256:" + "1" * 64, gate_result)
    assert result.ping_seconds == 0.01
    assert record["image"] == "sha256:" + "1" * 64 and record["passed"] is True
    assert record["ran"] is True and record["test"] == "sagemaker" and record["pulled"] is False
    assert record["at"].endswith("Z") and record["seconds"] >= 0
    assert record["health"] == {"status": "ok"}
    assert record["figures"] == {
        "ping_seconds": 0.01,
        "ready_seconds": 1.0,
        "invocations_status": 200,
        "invocations_seconds": 0.02,
        "stop_seconds": 0.5,
        "moved_port": 8090,
        "moved_ping_seconds": 0.03,
        "tested_at": "2026-01-01T00:00:00Z",
    }


def test_a_failed_gate_is_recorded_with_its_rule_and_figure_and_raised_on():
    def failing():
        raise sagemaker.failure("img", "ping-2s", "/ping took 3.0 s")

    with pytest.raises(sagemaker.GateFailed) as raised:
        gate_record.recorded("img", failing)
    record = raised.value.record
    assert record["passed"] is False and record["rule"] == "ping-2s"
    assert record["figure"] == "/ping took 3.0 s" and "figures" not in record


def test_a_smoke_tested_build_records_the_gate_in_its_metadata(project, strict_fp, monkeypatch):
    tested = []

    def fake_run(runner, expect, timeout):
        tested.append(expect.image)
        return gate_result(expect.image)

    monkeypatch.setattr(sagemaker, "run", fake_run)
    register_build(strict_fp)
    code = cli.main(["--env", "dev", "--smoke-test", "--metadata-file", "build.json"])
    assert code == 0
    doc = json.loads((project / "build.json").read_text())
    assert tuple(doc) == KEYS
    gate = doc["gate"]
    assert tested == [gate["image"]] and gate["image"] == doc["image_id"]
    assert gate["passed"] is True and gate["figures"]["stop_seconds"] == 0.5
    assert gate["figures"]["moved_ping_seconds"] == 0.03 and gate["at"]


def test_a_build_whose_gate_failed_records_the_rule(project, strict_fp, monkeypatch):
    def fake_run(runner, expect, timeout):
        raise sagemaker.failure(expect.image, "sigterm-30s", "still running 30 s after SIGTERM")

    monkeypatch.setattr(sagemaker, "run", fake_run)
    register_build(strict_fp)
    assert cli.main(["--env", "dev", "--smoke-test", "--metadata-file", "build.json"]) == 1
    doc = json.loads((project / "build.json").read_text())
    assert doc["failed_step"] == "smoke"
    assert doc["gate"]["rule"] == "sigterm-30s" and doc["gate"]["passed"] is False


def test_a_build_without_smoke_test_records_no_gate(project, strict_fp):
    register_build(strict_fp)
    assert cli.main(["--env", "dev", "--metadata-file", "build.json"]) == 0
    assert json.loads((project / "build.json").read_text())["gate"] is None
