"""--scan: choosing the scanner (flag, setup.cfg, trivy on PATH, none), the gate's place between
the smoke test and the push, and what a failing scan stops. Processes are faked with
pytest-subprocess; the scanners are stub files on PATH (the runner resolves programs there)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from plumbum import local

from fakes import FAKE_IMAGE_ID, GIT_QUERIES, STAMP, docker_calls
from registry_fakes import DIGEST, serve  # DIGEST: the manifest the fake registry serves
from ragbuild import cli, scan
from ragbuild.commands import build as build_cli
from ragbuild.config import load_config, parse_scan_command
from ragbuild.errors import ToolMissing, UsageError
from ragbuild.run.command import Mode

PRIMARY = f"rag-worker:dev-{STAMP}"
REFS = [PRIMARY, "rag-worker:dev", "rag-worker:git-a1b2c3d", "rag-worker:latest"]
TRIVY = [
    "trivy",
    "image",
    "--exit-code",
    "1",
    "--severity",
    "HIGH,CRITICAL",
    FAKE_IMAGE_ID,
]  # by the ID the build wrote
LOCAL = "localhost:5000/rag-worker"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def stub(bin_dir: Path, name: str) -> Path:
    """An executable that must never really run: fp answers for it."""
    path = bin_dir / name
    path.write_text("#!/bin/sh\necho 'the stub really ran' >&2\nexit 97\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def register_build_and_inspect(fp, refs=REFS):
    fp.register([fp.program("docker"), "build", "-f", fp.any()])
    fp.register(
        [fp.program("docker"), "image", "inspect", fp.any()],
        stdout=f"sha256:0123456789ab 151234567 {json.dumps(refs, separators=(',', ':'))}\n",
    )


def names(fp) -> list:
    """Each call as program and first argument: ['git rev-parse', 'docker build', ...]."""
    return [" ".join([Path(c[0]).name, *list(c)[1:2]]) for c in fp.calls]


@pytest.fixture
def only_stubs(tmp_path, monkeypatch, stub_bin):
    """PATH holds only the stub bin (docker) plus a git stub: no trivy anywhere."""
    stub(stub_bin, "git")
    monkeypatch.setenv("PATH", str(stub_bin))
    with local.env(PATH=str(stub_bin)):
        yield stub_bin


# --- the scan command --------------------------------------------------------------------------


def test_scan_command_is_split_like_a_shell_and_gets_the_image():
    words = parse_scan_command("grype {image} --fail-on high -o 'table json'", "--scan-command")
    command = scan.scan_command(scan.Scanner(words, "x"), "rag-worker:dev")
    assert command.argv == ("grype", "rag-worker:dev", "--fail-on", "high", "-o", "table json")
    assert command.mode is Mode.STREAM and command.check is False  # findings stream to the terminal


def test_image_placeholder_inside_a_word_and_other_braces_are_left_alone():
    words = parse_scan_command("scanner --target=docker:{image} --format '{{json .}}'", "f")
    assert scan.scan_command(scan.Scanner(words, "f"), "r:1").argv == (
        "scanner",
        "--target=docker:r:1",
        "--format",
        "{{json .}}",
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("trivy image", "does not say where the image goes: put {image} in it"),
        ("", "is empty"),
        ("grype '{image}", "cannot be split into words"),
    ],
)
def test_bad_scan_commands_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_scan_command(text, "--scan-command")


def which_of(*found):
    return lambda name, path=None: f"/bin/{name}" if name in found else None


def test_the_flag_wins_over_setup_cfg_which_wins_over_trivy():
    which = which_of("trivy", "grype", "snyk")
    assert (
        scan.resolve("snyk container test {image}", "grype {image}", which=which).argv[0] == "snyk"
    )
    configured = scan.resolve(None, "grype {image}", which=which)
    assert configured.argv == ("grype", "{image}")
    assert configured.source == "setup.cfg [ragbuild] scan-command"
    default = scan.resolve(None, None, which=which)
    assert default.argv == (
        "trivy",
        "image",
        "--exit-code",
        "1",
        "--severity",
        "HIGH,CRITICAL",
        "{image}",
    )


def test_no_scanner_is_an_error_not_a_pass():
    with pytest.raises(ToolMissing, match="--scan found no scanner: install trivy"):
        scan.resolve(None, None, which=which_of())


def test_a_named_scanner_that_is_not_installed_is_an_error():
    with pytest.raises(ToolMissing, match=r"the scanner grype \(--scan-command\) is not installed"):
        scan.resolve("grype {image}", None, which=which_of("trivy"))


def test_a_multi_platform_build_has_no_local_image_to_scan():
    class Plan:
        multi_platform = True

    with pytest.raises(UsageError, match="multi-platform build leaves none"):
        scan.prepare(Plan(), None)


# --- setup.cfg ---------------------------------------------------------------------------------


def test_setup_cfg_scan_command_is_read_raw(tmp_path):
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nscan-command = scanner --fmt %%s {image}\n")
    assert load_config(str(tmp_path)).scan_command == "scanner --fmt %%s {image}"


def test_setup_cfg_scan_command_without_image_is_refused(project, strict_fp, capsys):
    (project / "setup.cfg").write_text("[ragbuild]\nscan-command = trivy image\n")
    assert cli.main(["--env", "dev"]) == 2
    assert (
        "setup.cfg [ragbuild] scan-command 'trivy image' does not say where the image goes"
        in capsys.readouterr().err
    )
    assert docker_calls(strict_fp) == 0


# --- in the build ------------------------------------------------------------------------------


def test_scan_runs_trivy_after_the_summary_and_passes(project, strict_fp, stub_bin, capsys):
    stub(stub_bin, "trivy")
    register_build_and_inspect(strict_fp)
    scanner = strict_fp.register([strict_fp.program("trivy"), *TRIVY[1:]])
    code = cli.main(["--env", "dev", "--scan"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert names(strict_fp)[GIT_QUERIES:] == ["docker build", "docker image", "trivy image"]
    kwargs = scanner.calls[0].kwargs
    assert kwargs["stdout"] is None and kwargs["stderr"] is None  # the findings stream through
    assert f"+ {' '.join(TRIVY)}" in err.splitlines()
    assert f"vulnerability scan passed: {FAKE_IMAGE_ID}" in err.splitlines()


def test_scan_comes_after_the_smoke_test(project, strict_fp, stub_bin, capsys, monkeypatch):
    stub(stub_bin, "trivy")
    register_build_and_inspect(strict_fp)
    order = []
    import types

    from ragbuild import sagemaker

    monkeypatch.setattr(
        sagemaker,
        "check",
        lambda runner, plan, image_id: (
            order.append("smoke") or types.SimpleNamespace(health={}, figures=dict)
        ),
    )
    strict_fp.register(
        [strict_fp.program("trivy"), *TRIVY[1:]], callback=lambda process: order.append("scan")
    )
    assert cli.main(["--env", "dev", "--smoke-test", "--scan"]) == 0, capsys.readouterr().err
    assert order == ["smoke", "scan"]


def test_a_failing_scan_stops_the_push(project, strict_fp, stub_bin, capsys):
    stub(stub_bin, "grype")
    refs = [ref.replace("rag-worker", LOCAL, 1) for ref in REFS]
    strict_fp.register(
        [strict_fp.program("docker"), "build", "--help"], stdout="Usage: docker build\n"
    )
    register_build_and_inspect(strict_fp, refs)
    strict_fp.register(
        [strict_fp.program("grype"), FAKE_IMAGE_ID, "--fail-on", "high"],
        returncode=1,
        stdout="CVE-2024-0001  High  openssl\n",
    )
    code = cli.main(
        [
            "--env",
            "dev",
            "--registry",
            LOCAL,
            "--push",
            "--scan-command",
            "grype {image} --fail-on high",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: the vulnerability scan of {FAKE_IMAGE_ID} failed (exit 1; "
        "its findings are above); nothing was pushed"
    )
    assert strict_fp.call_count([strict_fp.program("docker"), "push", strict_fp.any()]) == 0
    assert names(strict_fp)[-1] == "grype " + FAKE_IMAGE_ID  # the image, by the build's ID


def test_a_passing_scan_lets_the_push_follow(project, strict_fp, stub_bin, capsys):
    stub(stub_bin, "trivy")
    refs = [ref.replace("rag-worker", LOCAL, 1) for ref in REFS]
    strict_fp.register(
        [strict_fp.program("docker"), "build", "--help"], stdout="Usage: docker build\n"
    )
    register_build_and_inspect(strict_fp, refs)
    strict_fp.register([strict_fp.program("trivy"), *TRIVY[1:]])  # the image by its ID
    for ref in refs:
        strict_fp.register(
            [strict_fp.program("docker"), "push", ref],
            stdout=f"{ref.rsplit(':', 1)[1]}: digest: {DIGEST} size: 528\n",
        )
    for ref in refs:
        serve(ref)  # the read-back's GET of the manifest
    code = cli.main(["--env", "dev", "--registry", LOCAL, "--push", "--scan"])
    out, err = capsys.readouterr()
    assert code == 0, err
    order = names(strict_fp)
    assert order.index("trivy image") > order.index("docker image")
    assert order.index("trivy image") < order.index("docker push")
    assert out.splitlines()[-1] == f"{LOCAL}@{DIGEST}"


def test_no_scanner_stops_the_run_before_the_build(project, strict_fp, only_stubs, capsys):
    code = cli.main(["--env", "dev", "--scan"])
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: --scan found no scanner")
    assert docker_calls(strict_fp) == 0


def test_scan_command_without_image_is_a_usage_error_before_the_build(project, strict_fp, capsys):
    code = cli.main(["--env", "dev", "--scan-command", "trivy image"])
    assert code == 2
    assert (
        "--scan-command 'trivy image' does not say where the image goes" in capsys.readouterr().err
    )
    assert docker_calls(strict_fp) == 0


def test_scan_command_implies_scan():
    assert build_cli.parse_build(["--env", "dev", "--scan-command", "grype {image}"]).scan is True
    assert build_cli.parse_build(["--env", "dev"]).scan is False


def test_dry_run_prints_the_scan_between_inspect_and_push(project, strict_fp, stub_bin, capsys):
    stub(stub_bin, "grype")
    code = cli.main(["--env", "dev", "--dry-run", "--scan-command", "grype {image} --fail-on high"])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].startswith("docker image inspect ")
    assert lines[2] == "grype IMAGE_ID --fail-on high"  # the ID the build writes
    assert docker_calls(strict_fp) == 0


def test_help_lists_the_scan_flags(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--scan " in out and "--scan-command CMD" in out
