"""setup.cfg [ragbuild]: defaults, overrides and refusals."""

import pytest

from ragbuild.config import load_config
from ragbuild.errors import UsageError
from ragbuild.config import DEFAULT_ENVIRONMENTS

from ragbuild.config import Config
from fakes import REPO


def write(tmp_path, text):
    (tmp_path / "setup.cfg").write_text(text)
    return str(tmp_path)


def test_no_setup_cfg_gives_defaults(tmp_path):
    config = load_config(str(tmp_path))
    assert config.image_name == "rag-worker" and config.environments == DEFAULT_ENVIRONMENTS


def test_section_overrides(tmp_path):
    config = load_config(
        write(tmp_path, "[ragbuild]\nimage-name = my-worker\nenvironments = dev, qa,prod\n")
    )
    assert config.image_name == "my-worker" and config.environments == ("dev", "qa", "prod")


def test_unknown_setting_is_refused(tmp_path):
    with pytest.raises(UsageError, match="unknown setting 'enviroments'"):
        load_config(write(tmp_path, "[ragbuild]\nenviroments = dev\n"))


def test_environment_that_is_no_tag_is_refused(tmp_path):
    with pytest.raises(UsageError, match="environments: '-qa' is not a valid Docker tag"):
        load_config(write(tmp_path, "[ragbuild]\nenvironments = dev -qa\n"))


def test_unreadable_config_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot be read as a config file"):
        load_config(write(tmp_path, "not a section header\n"))


# --- a setup.cfg that cannot be used is refused in one line, never ignored or a traceback -----


def test_non_utf8_setup_cfg_is_a_usage_error(tmp_path):
    (tmp_path / "setup.cfg").write_bytes(b"[ragbuild]\nimage-name = caf\xe9\n")
    with pytest.raises(UsageError, match=r"setup.cfg: not UTF-8 text \(byte 0xe9 at offset 27\)"):
        load_config(str(tmp_path))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[ragbuild]\nenvironments = dev 100%\n", "environments: '100%' is not a valid Docker tag"),
        ("[ragbuild]\nimage-name = %(x)s\n", "image-name '%(x)s' is not a lowercase image name"),
    ],
)
def test_percent_is_literal_not_interpolation(tmp_path, text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(write(tmp_path, text))


def test_percent_in_scan_command_is_kept(tmp_path):
    config = load_config(write(tmp_path, "[ragbuild]\nscan-command = grype {image} --x 100%\n"))
    assert config.scan_command == "grype {image} --x 100%"


def test_setup_cfg_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "setup.cfg").mkdir()
    with pytest.raises(UsageError, match=r"setup.cfg is a directory, not a config file$"):
        load_config(str(tmp_path))


def test_unreadable_setup_cfg_is_refused(tmp_path, monkeypatch):
    import builtins

    from ragbuild import config

    write(tmp_path, "[ragbuild]\n")
    real_open = builtins.open

    def denied(path, *args, **kwargs):  # tests may run as root, who reads any mode
        if str(path).endswith("setup.cfg"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(config, "open", denied, raising=False)
    with pytest.raises(UsageError, match=r"setup.cfg: cannot be read: Permission denied$"):
        load_config(str(tmp_path))


@pytest.mark.parametrize("key", ["image-name", "environments", "scan-command"])
def test_empty_setting_is_refused(tmp_path, key):
    with pytest.raises(UsageError, match=f"\\[ragbuild\\] {key} is empty"):
        load_config(write(tmp_path, f"[ragbuild]\n{key} =\n"))


def test_image_name_from_setup_cfg_names_setup_cfg(tmp_path):
    with pytest.raises(UsageError, match=r"setup.cfg \[ragbuild\] image-name 'Acme' is not"):
        load_config(write(tmp_path, "[ragbuild]\nimage-name = Acme\n"))


@pytest.mark.parametrize("make", ["latin-1", "percent", "directory"])
def test_a_bad_setup_cfg_stops_the_build_in_one_line(make, project, strict_fp, capsys):
    from fakes import docker_calls
    from ragbuild import cli

    cfg = project / "setup.cfg"
    if make == "latin-1":
        cfg.write_bytes(b"[ragbuild]\nenvironments = d\xe9v\n")
    elif make == "percent":
        cfg.write_text("[ragbuild]\nenvironments = dev 100%\n")
    else:
        cfg.mkdir()
    assert cli.main(["--env", "dev", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ./setup.cfg") and err.count("\n") == 1, err
    assert docker_calls(strict_fp) == 0


def test_the_projects_own_setup_cfg():
    """The checkout's own [ragbuild] section is valid and loads as written: a value load_config
    refuses or reads otherwise fails here (reading other values is tested above)."""
    import configparser

    section = configparser.ConfigParser(interpolation=None)
    section.read(REPO / "setup.cfg")
    written = section["ragbuild"]
    loaded = load_config(str(REPO))
    assert loaded.image_name == written["image-name"] == "rag-worker"
    assert loaded.environments == tuple(e.strip() for e in written["environments"].split(","))
    assert loaded == Config(image_name="rag-worker", environments=("dev", "staging", "prod"))


def test_no_setup_cfg_means_defaults(tmp_path):
    assert load_config(str(tmp_path)) == Config()
