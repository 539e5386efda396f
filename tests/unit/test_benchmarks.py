"""benchmarks/: the pure pieces (figures, verdicts, parsers, rounds) and the process helper's
timing, without the harness."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from plumbum import local

from benchmarks import cli, common, push, realistic, report, size
from benchmarks.common import Row, fmt_size, fmt_time, interleave, met, ratio, target
from benchmarks.shell import CommandError, Shell


def test_a_rows_median_is_of_its_samples():
    row = Row("s", "r")
    row.samples += [0.3, 0.1, 0.2, 9.0]
    assert row.median == pytest.approx(0.25)


@pytest.mark.parametrize(
    "seconds, text", [(0.1234, "123 ms"), (0.9994, "999 ms"), (1.0, "1.00 s"), (12.345, "12.35 s")]
)
def test_times_under_a_second_are_in_ms_else_in_s(seconds, text):
    assert fmt_time(seconds) == text


def test_sizes_are_in_decimal_megabytes_as_docker_prints_them():
    assert fmt_size(202_345_678) == "202.3 MB"


def test_a_target_is_met_at_its_limit_and_not_above():
    assert met(0.8, 0.8) == "met"
    assert met(0.8001, 0.8) == "**not met**"


def test_a_target_row_names_the_figure_its_value_and_verdict():
    limit, what = common.TARGETS["wrapper"]
    assert target("wrapper", 0.5764) == (what, "0.576", f"<= {limit}", "met")
    assert target("unchanged", 1.51)[2:] == ("<= 1.5", "**not met**")
    assert ratio("for comparison", 2.0) == ("for comparison", "2.000", "-", "-")


def test_the_issues_targets_keep_their_limits():
    limits = {key: limit for key, (limit, _) in common.TARGETS.items()}
    assert {
        k: limits[k] for k in ("real-size", "real-bump", "real-cold", "wrapper", "unchanged")
    } == {"real-size": 0.6, "real-bump": 0.35, "real-cold": 0.8, "wrapper": 0.8, "unchanged": 1.5}


class FakeBench:
    def __init__(self):
        self.retries = []

    def retried(self, failure):
        self.retries.append(str(failure))


def test_rounds_rotate_the_order_and_a_failed_round_counts_only_when_run_again():
    bench, order, failing = FakeBench(), [], {1}
    a, b = Row("s", "a"), Row("s", "b")

    def fn(row, value):
        def run(i):
            order.append((i, row.name))
            if row is b and i in failing:
                failing.discard(i)
                raise CommandError("error: boom")
            return value + i

        return run

    interleave(bench, [(a, fn(a, 10)), (b, fn(b, 20))], 2)
    assert order == [(0, "a"), (0, "b"), (1, "b"), (1, "b"), (1, "a")]
    assert (a.samples, b.samples) == ([10, 11], [20, 21])
    assert bench.retries == ["error: boom"]


def test_a_round_that_keeps_failing_stops_the_run():
    row = Row("s", "a")

    def fail(i):
        raise CommandError("error: boom")

    with pytest.raises(CommandError):
        interleave(FakeBench(), [(row, fail)], 1)
    assert row.samples == []


def test_a_round_may_time_several_rows_at_once():
    a, b = Row("s", "a"), Row("s", "b")
    interleave(FakeBench(), [(a, lambda i: {a: 1.0, b: 2.0})], 2)
    assert (a.samples, b.samples) == ([1.0, 1.0], [2.0, 2.0])


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:       400 |        500 | io
import time:       300 |        300 |     ragbuild.x
import time:      1500 |       1500 |     json
import time:       200 |       2000 |   ragbuild.plan
import time:       100 |       2100 | ragbuild
"""


def test_importtime_keeps_top_level_imports_of_a_ms_or_more_with_their_heaviest_foreign_child():
    found = cli.parse_importtime(IMPORTTIME)
    assert found["total"] == pytest.approx(2.6)
    assert found["top"] == [("ragbuild", 2.1, ("json", 1.5))]  # io: under 1 ms


def test_layer_counts_read_dockers_push_output():
    text = "a1: Pushed\nb2: Mounted from other/repo\nc3: Layer already exists\nd4: Pushed \n"
    assert push.layer_counts(text) == (2, 1, 1)


def test_a_log_without_six_verified_tags_fails_the_round(tmp_path):
    log = tmp_path / "r.log"
    log.write_text("pushed and verified 2 tags\n")
    with pytest.raises(CommandError, match="did not push and verify 6 tags"):
        push.check_pushed(log)


def test_the_cache_note_counts_steps_after_from_and_those_cached(tmp_path):
    (tmp_path / "cold-0.log").write_text("#1 [1/3] FROM python\n")
    (tmp_path / "cold-1.log").write_text(
        "#4 [builder 1/3] FROM python\n#5 [builder 2/3] RUN x\n#5 CACHED\n"
        "#6 [stage-1 3/3] COPY a b\n"
    )
    assert common.cache_note(tmp_path, "cold") == "1 of 2 Dockerfile steps (after FROM) cached"


def test_a_cold_dockerfile_gets_cache_mounts_of_its_own_and_the_marker_in_each_step():
    text = (
        "RUN --mount=type=cache,id=ragbuild-uv,target=/c set -e; \\\n  uv sync\n"
        "RUN --mount=type=cache,id=ragbuild-uv,target=/c set -e; \\\n  uv pip\n"
    )
    cold = realistic.cold_dockerfile(text, "bench-1")
    assert cold.count("id=bench-1-uv,") == 2 and "ragbuild-uv" not in cold
    assert cold.count("set -e; : bench-1; \\\n") == 2


def test_a_dockerfile_without_the_cache_mount_stops_the_benchmark():
    with pytest.raises(SystemExit, match="CACHE_IDS"):
        realistic.cold_dockerfile("RUN true\n", "m")


def test_every_cli_case_names_a_command():
    bench = SimpleNamespace(py="python", ragbuild=lambda *flags: ["python", "b.py", *flags])
    cases = [case(bench) for case in cli.CASES]
    assert [case.argv[-1] for case in cases] == ["pass", "--help", "--dry-run"]
    assert all(case.name.startswith("`") for case in cases)


def test_the_report_shows_each_section_once_and_each_row_with_its_figures():
    rows = [Row("1. a", "x", "note"), Row("1. a", "y"), Row("2. b", "z")]
    for row, samples in zip(rows, ([0.2, 0.1, 0.3], [1.5], [0.05])):
        row.samples += samples
    bench = SimpleNamespace(
        rows=rows,
        samples=[{"load1": 0.5, "others": 0}],
        sizes=[],
        counts=[],
        ratios=[target("size", 0.48)],
        importtime={},
        notes=["n1"],
        retries=[],
    )
    text = report.render(bench, ["date: d"])
    assert "| **1. a** | | | | | |\n| x | 3 | 200 ms | 100 ms | 300 ms | note |\n" in text
    assert "| y | 1 | 1.50 s | 1.50 s | 1.50 s |  |\n| **2. b** |" in text
    assert f"| {common.TARGETS['size'][1]} | 0.480 | <= 0.6 | met |" in text
    assert text.endswith("Notes:\n\n- n1\n")
    assert "noisier" not in text


def test_timed_measures_the_childs_run_and_a_failure_names_the_log(tmp_path: Path):
    with local.env():  # the helper makes plumbum's environment the one it is given
        sh = Shell({"PATH": "/usr/bin:/bin"}, tmp_path / "bench.log", hint=lambda: "\nhint")
        start = time.perf_counter()
        elapsed = sh.timed(["sleep", "0.2"], cwd=tmp_path, output=tmp_path / "out.log")
        assert 0.2 <= elapsed <= time.perf_counter() - start
        assert sh.out(
            ["sh", "-c", "echo $FOO; pwd"], cwd=tmp_path, extra_env={"FOO": "bar"}
        ).split() == ["bar", str(tmp_path)]
        with pytest.raises(CommandError, match=r"`false` failed \(exit 1\); see .*bench.log\nhint"):
            sh.timed(["false"])
        sh.close()


def test_the_repositorys_dockerfile_and_realistic_pins_suit_the_cold_builds():
    text = (common.REPO / "Dockerfile").read_text()
    cold = realistic.cold_dockerfile(text, "bench-x")
    assert "id=ragbuild-uv," not in cold and cold.count(": bench-x;") >= 1
    bump, bumped = realistic.bumped_pins(realistic.REALISTIC.read_text())
    assert bump in bumped.splitlines() and bump not in realistic.REALISTIC.read_text()


class FakeShell:
    """Answers a family's commands as the harness would, without running them: every timed
    command takes 2 s (the bumped builds 0.5 s), every image 100 bytes (single-stage 400)."""

    def __init__(self):
        self.argvs = []

    def timed(self, argv, *, cwd=None, extra_env=None, output=None):
        self.argvs.append([str(a) for a in argv])
        if output:
            output.write_text("#5 [2/3] RUN x\n#5 CACHED\n#6 [3/3] COPY a b\n")
        return 0.5 if any(":bump" in str(a) for a in argv) else 2.0

    def run(self, argv, **kw):
        self.argvs.append([str(a) for a in argv])

    def out(self, argv, **kw):
        words = [str(a) for a in argv]
        self.argvs.append(words)
        if words[1:3] == ["image", "inspect"]:
            return "400" if "single" in words[-1] else "100"
        if words[1] == "run":
            return ("2.54.0" if words[3].endswith(":bump") else "2.53.0") + " 120"
        return "[]"


def fake_bench(tmp_path, **args):
    with local.env():
        bench = common.Bench(
            SimpleNamespace(**args),
            {"E2E_REGISTRY": "localhost:5000", "PATH": "/usr/bin:/bin"},
            tmp_path,
        )
        bench.sh.close()
    bench.sh = FakeShell()
    return bench


def test_the_realistic_family_times_three_layouts_and_checks_the_bump(tmp_path):
    bench = fake_bench(tmp_path, realistic_runs=1)
    realistic.run(bench)
    assert [len(row.samples) for row in bench.rows] == [1] * 9
    limits = {what: (value, verdict) for what, value, _, verdict in bench.ratios}
    assert limits[common.TARGETS["real-size"][1]] == ("0.250", "met")
    assert limits[common.TARGETS["real-bump"][1]] == ("0.250", "met")
    assert limits[common.TARGETS["real-cold"][1]] == ("1.000", "**not met**")
    assert "openai 2.53.0 -> 2.54.0 in the image" in bench.rows[2].note
    assert bench.markers == [f"bench-{bench.rid}-multi-0", f"bench-{bench.rid}-pyc-0"]


def test_the_size_family_compares_the_worker_image_with_the_single_stage_one(tmp_path):
    bench = fake_bench(tmp_path)
    size.run(bench, tmp_path)
    assert bench.ratios == [target("size", 0.25)]
    assert [name.split(" ")[0] for name, _, _ in bench.sizes] == ["multi-stage", "single-stage"]
