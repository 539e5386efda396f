"""docker build options the port does not model (issue 11 (c)): --secret and --ssh by name,
everything else after --; each shown in the plan, the dry run and the metadata, secret values
never; options that would break ragbuild's guarantees refused with one line."""

from __future__ import annotations

import json
import shlex

import pytest

from fakes import docker_calls, register_git
from ragbuild import cli
from ragbuild.commands import build as build_cli

TOKEN = "pypi-AgEIcHlwaS5vcmcCJDk1ZTk3NDRkLTI4"  # a value that must never be printed


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def build_words(out):
    return shlex.split(out.splitlines()[0])


def test_secret_ssh_and_options_after_dashes_reach_the_build_in_order(
    project, strict_fp, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("PIP_TOKEN", TOKEN)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/agent.sock")
    npmrc = tmp_path / ".npmrc"  # docker's client reads it: it must exist
    npmrc.write_text("//registry.example/:_authToken=x\n")
    code, out, err = run(
        capsys,
        "--env",
        "dev",
        "--dry-run",
        "--secret",
        "id=pip_token,env=PIP_TOKEN",
        "--secret",
        f"id=npmrc,src={npmrc}",
        "--ssh",
        "default",
        "--",
        "--network",
        "host",
        "--target=runtime",
        "--add-host",
        "mirror:10.0.0.5",
    )
    assert code == 0, err
    words = build_words(out)
    assert words[words.index("--secret") :] == [
        "--secret",
        "id=pip_token,env=PIP_TOKEN",
        "--secret",
        f"id=npmrc,src={npmrc}",
        "--ssh",
        "default",
        "--network",
        "host",
        "--target=runtime",
        "--add-host",
        "mirror:10.0.0.5",
        ".",
    ]
    plan = err.splitlines()
    assert (
        "secret: pip_token from $PIP_TOKEN (value never printed; mount it with "
        "RUN --mount=type=secret)"
    ) in plan
    assert any(line.startswith(f"secret: npmrc from file {npmrc}") for line in plan)
    assert "ssh: default (RUN --mount=type=ssh)" in plan
    assert (
        "docker build options (after --): --network host --target=runtime --add-host "
        "mirror:10.0.0.5"
    ) in plan
    assert TOKEN not in out + err


def test_a_real_run_passes_them_and_the_metadata_records_them(
    project, strict_fp, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("PIP_TOKEN", TOKEN)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/agent.sock")
    build = strict_fp.register([strict_fp.program("docker"), "build", strict_fp.any()])
    listed = json.dumps(
        [f"rag-worker:{t}" for t in ("dev-20231203-143022", "dev", "git-a1b2c3d", "latest")]
    )
    strict_fp.register(
        [strict_fp.program("docker"), "image", "inspect", strict_fp.any()],
        stdout=f"sha256:0123 151234567 {listed} null\n",
    )
    meta = tmp_path / "build.json"
    code, out, err = run(
        capsys,
        "--env",
        "dev",
        "--metadata-file",
        str(meta),
        "--secret",
        "id=pip_token,env=PIP_TOKEN",
        "--ssh",
        "default",
        "--",
        "--network=host",
    )
    assert code == 0, err
    argv = list(build.calls[0].args)
    assert argv[-6:] == [
        "--secret",
        "id=pip_token,env=PIP_TOKEN",
        "--ssh",
        "default",
        "--network=host",
        ".",
    ]
    doc = json.loads(meta.read_text())
    assert doc["build_options"] == [
        "--secret",
        "id=pip_token,env=PIP_TOKEN",
        "--ssh",
        "default",
        "--network=host",
    ]
    assert TOKEN not in out + err + meta.read_text()
    # the push hint keeps docker's options after -- and --push before it
    hint = [line for line in err.splitlines() if line.startswith("push it: ")][0]
    assert hint.endswith("--registry '<registry>/<repository>' --push -- --network=host")


def test_url_credentials_in_a_passed_option_are_hidden(project, strict_fp, capsys):
    code, out, err = run(
        capsys,
        "--env",
        "dev",
        "--dry-run",
        "--",
        "--build-context",
        "src=https://bot:ghp_secret@git.example/x.git",
    )
    assert code == 0, err
    assert "ghp_secret" not in out + err
    assert "src=https://***@git.example/x.git" in out


@pytest.mark.parametrize(
    "words, shown",
    [
        (["-t", "other:tag"], "-t after -- is refused: ragbuild sets the tags"),
        (["-tother:tag"], "-t after -- is refused"),
        (["--tag=x:y"], "--tag after -- is refused"),
        (["--push"], "--push after -- is refused: ragbuild pushes and verifies"),
        (["-o", "type=local,dest=out"], "-o after -- is refused: the image must land"),
        (["--output=type=tar,dest=x.tar"], "--output after -- is refused"),
        (["--load"], "--load after -- is refused"),
        (["-f", "Other.Dockerfile"], "-f after -- is refused: ragbuild's -f names the Dockerfile"),
        (["--file=Other"], "--file after -- is refused"),
        (
            ["--platform", "linux/arm64"],
            "--platform after -- is refused: ragbuild models it: use "
            "its own --platform (before --)",
        ),
        (["--no-cache"], "--no-cache after -- is refused: ragbuild models it"),
        (
            ["--provenance=true"],
            "--provenance after -- is refused: ragbuild turns attestations off",
        ),
        (["--attest", "type=sbom"], "--attest after -- is refused"),
        (
            ["--label", "org.ragbuild.repository=x"],
            "--label org.ragbuild.repository after -- is refused: ragbuild sets that label itself",
        ),
        (["--network", "host", "--", "-t", "x"], "a second -- after --"),
        (["."], "a word after -- that is no option's value is refused"),
        (["--target", "runtime", "other-context"], "a word after -- that is no option's value"),
        (["--network=host", "extra"], "a word after -- that is no option's value"),
        (["--rm", "."], "a word after -- that is no option's value"),
        (["--squash", "https://github.com/x/y.git"], "a word after -- that is no option's value"),
        (
            ["--iidfile", "id.txt"],
            "--iidfile after -- is refused: ragbuild writes the image ID file",
        ),
        (["--quiet"], "--quiet after -- is refused"),
        (["-q"], "-q after -- is refused"),
    ],
)
def test_options_that_would_break_ragbuilds_guarantees_are_refused(
    project, strict_fp, capsys, words, shown
):
    code, out, err = run(capsys, "--env", "dev", "--", *words)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert shown in err
    assert docker_calls(strict_fp) == 0


def test_a_refused_build_arg_after_dashes_does_not_echo_its_value(project, strict_fp, capsys):
    code, out, err = run(capsys, "--env", "dev", "--", "--build-arg", f"PIP_TOKEN={TOKEN}")
    assert code == 2 and TOKEN not in out + err
    assert "--build-arg after -- is refused: use ragbuild's --build-arg" in err


@pytest.mark.parametrize(
    "spec, message",
    [
        (f"id=pip,value={TOKEN}", "--secret: unknown field 'value'"),
        (TOKEN, "--secret: unknown field"),
        ("id=pip,type=inline", "--secret: type must be env or file"),
        ("type=env", "--secret needs id=NAME"),
    ],
)
def test_bad_secret_specs_are_refused_without_echoing_them(
    project, strict_fp, capsys, spec, message
):
    code, out, err = run(capsys, "--env", "dev", "--dry-run", "--secret", spec)
    assert code == 2 and out == ""
    assert message in err and TOKEN not in err


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--secret", "id=pip,src=no/such/file"],
            "--secret id=pip: src no/such/file does not exist",
        ),
        (["--secret", "id=pip,source=no/such/file"], "--secret id=pip: src no/such/file does not"),
        # docker reads the fields' names in any case: so does the check of what they name
        (["--secret", "ID=pip,SRC=no/such/file"], "--secret id=pip: src no/such/file does not"),
        (["--secret", "id=pip, Source=no/such/file"], "--secret id=pip: src no/such/file does not"),
        (["--ssh", "default"], "--ssh default: SSH_AUTH_SOCK is not set"),
        (["--ssh", "github"], "--ssh github: SSH_AUTH_SOCK is not set"),
        (["--ssh", "default=no/such.sock"], "--ssh default: no/such.sock does not exist"),
        (["--ssh", "gh=Dockerfile,no/key"], "--ssh gh: no/key does not exist"),
    ],
)
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_what_docker_would_refuse_to_read_is_refused_before_anything_runs(
    project, strict_fp, capsys, monkeypatch, flags, message, dry_run
):
    # docker's client refused these only once the build started (after git, the context check
    # and a push's pre-flight): "failed to stat", "invalid empty ssh agent socket"
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    code, out, err = run(capsys, "--env", "dev", *dry_run, *flags)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {message}")
    assert docker_calls(strict_fp) == 0


def test_secret_and_ssh_inputs_that_exist_pass(project, strict_fp, capsys, monkeypatch):
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/agent.sock")  # docker checks the agent, not us
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)  # docker builds without it: so do we
    register_git(strict_fp)
    code, out, err = run(
        capsys,
        "--env",
        "dev",
        "--dry-run",
        "--secret",
        "id=a,src=Dockerfile",
        "--secret",
        "id=b,env=NOT_SET_TOKEN",
        "--ssh",
        "default",
        "--ssh",
        "key=Dockerfile",
    )
    assert code == 0, err
    assert (
        "--secret id=a,src=Dockerfile --secret id=b,env=NOT_SET_TOKEN --ssh default --ssh "
        "key=Dockerfile" in out
    )


def test_a_stray_word_is_still_an_unrecognized_argument(project, strict_fp, capsys):
    code, _, err = run(capsys, "--env", "dev", "network")
    assert code == 2 and "unrecognized arguments: network" in err and "after --" in err


def test_without_passed_options_the_build_command_is_unchanged(project, strict_fp, capsys):
    code, out, _ = run(capsys, "--env", "dev", "--dry-run")
    words = build_words(out)
    assert code == 0 and words[-4:-2] == ["org.ragbuild.repository=rag-worker", "--iidfile"]
    assert words[-1] == "."


def test_help_lists_secret_ssh_and_dashes(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--secret SPEC" in out and "--ssh SPEC" in out and "DOCKER-BUILD-OPTION" in out
    assert "given after --: every word after --" in out
    assert "id=pip_token,env=PIP_TOKEN" in out


def test_the_secret_build_arg_warning_names_ragbuilds_own_secret_flag(project, strict_fp, capsys):
    code, _, err = run(capsys, "--env", "dev", "--dry-run", "--build-arg", "PIP_TOKEN=x")
    assert code == 0
    assert "pass it with --secret id=NAME,env=VARIABLE" in err


@pytest.mark.parametrize(
    "words",
    [
        ["--dry-run"],
        ["--network", "host", "--dry-run"],
        ["--metadata-file", "m.json"],
        ["--metadata-file=m.json"],
        ["--smoke-test"],
        ["--registry=localhost:5000/x"],
        ["-e", "prod"],
        ["-v", "1.0.0"],
        ["--allow-dirty"],
        ["--replace-version-tags"],
        ["--help"],
    ],
)
def test_a_ragbuild_option_after_dashes_is_refused_before_anything_runs(
    project, strict_fp, capsys, words
):
    """Issue 22 case 5: ``-- --dry-run`` would have started a real build."""
    code, out, err = run(capsys, "--env", "dev", "--", *words)
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    flag = next(w for w in words if w.startswith("-") and w not in ("--network",))
    shown = flag.split("=", 1)[0]
    assert err == (
        f"error: {shown} after -- is refused: it is ragbuild's own option, and every "
        "word after -- goes to docker build; give it before --\n"
    )
    assert len(strict_fp.calls) == 0  # not even git


def test_shared_option_names_keep_their_specific_refusal(project, strict_fp, capsys):
    """--platform is docker's and ragbuild's: its own message, not the generic one."""
    code, _, err = run(capsys, "--env", "dev", "--", "--platform=linux/arm64")
    assert code == 2 and "ragbuild models it: use its own --platform" in err


def test_every_option_of_the_build_parser_is_refused_after_dashes():
    """Derived from the parser, so a new flag is covered without a list to update."""
    from ragbuild import passthrough

    own = build_cli.own_options(build_cli.build_parser())
    assert {"--dry-run", "--metadata-file", "-q", "--quiet"} <= own
    for option in own:
        with pytest.raises(Exception) as refused:
            passthrough.check_extra([option], own)
        assert "after -- is refused" in str(refused.value)
