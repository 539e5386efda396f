"""run-local, logs and clean: the docker calls they make, and what clean leaves alone."""

from ragbuild import cli

DOCKER = "docker"
LS = [DOCKER, "image", "ls", "--quiet", "--no-trunc", "--filter",
      "label=org.ragbuild.project=rag-worker"]


def test_clean_removes_only_labelled_images(fp, capsys):
    fp.register([fp.program(DOCKER), *LS[1:]], stdout="sha256:aaa\nsha256:bbb\nsha256:aaa\n")
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"], returncode=1,
                stderr="Error: No such container: rag-worker-local\n")
    fp.register([fp.program(DOCKER), "image", "rm", "--force", "sha256:aaa", "sha256:bbb"])
    assert cli.main(["clean"]) == 0
    assert fp.call_count([fp.program(DOCKER), "image", "rm", "--force", "sha256:aaa",
                          "sha256:bbb"]) == 1
    assert "removed 2 image(s)" in capsys.readouterr().err


def test_clean_with_nothing_to_clean_is_not_an_error(fp, capsys):
    fp.register([fp.program(DOCKER), *LS[1:]], stdout="")
    assert cli.main(["clean"]) == 0
    assert "nothing to clean" in capsys.readouterr().err
    assert fp.call_count([fp.program(DOCKER), "image", "rm", fp.any()]) == 0


def test_clean_uses_image_name_from_setup_cfg(fp, tmp_path, monkeypatch):
    (tmp_path / "setup.cfg").write_text("[ragbuild]\nimage-name = my-worker\n")
    monkeypatch.chdir(tmp_path)
    fp.register([fp.program(DOCKER), "image", "ls", "--quiet", "--no-trunc", "--filter",
                 "label=org.ragbuild.project=my-worker"], stdout="")
    assert cli.main(["clean"]) == 0


def test_run_local_replaces_the_container(fp, capsys):
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register([fp.program(DOCKER), "run", "-d", "--name", "rag-worker-local", "-p", "9000:8080",
                 "rag-worker:dev"], stdout="abc\n")
    assert cli.main(["run", "--port", "9000"]) == 0
    assert "curl http://localhost:9000/health" in capsys.readouterr().err


def test_run_local_failure_exits_1(fp, capsys):
    fp.register([fp.program(DOCKER), "rm", "-f", "rag-worker-local"])
    fp.register([fp.program(DOCKER), "run", "-d", "--name", "rag-worker-local", "-p", "8080:8080",
                 "rag-worker:dev"], returncode=125,
                stderr="Bind for 0.0.0.0:8080 failed: port is already allocated\n")
    assert cli.main(["run"]) == 1
    assert "port is already allocated" in capsys.readouterr().err


def test_logs_follow(fp):
    fp.register([fp.program(DOCKER), "logs", "--tail", "200", "--follow", "rag-worker-local"])
    assert cli.main(["logs", "-f"]) == 0


def test_bad_subcommand_flag_is_usage_error(fp, capsys):
    assert cli.main(["run", "--port", "eighty"]) == 2
    assert capsys.readouterr().err.startswith("error: argument --port: invalid int value")
    assert len(fp.calls) == 0
