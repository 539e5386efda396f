"""setup.cfg [ragbuild]: defaults, overrides and refusals."""

import pytest

from ragbuild.config import load_config
from ragbuild.errors import UsageError
from ragbuild.plan import DEFAULT_ENVIRONMENTS


def write(tmp_path, text):
    (tmp_path / "setup.cfg").write_text(text)
    return str(tmp_path)


def test_no_setup_cfg_gives_defaults(tmp_path):
    config = load_config(str(tmp_path))
    assert config.image_name == "rag-worker" and config.environments == DEFAULT_ENVIRONMENTS


def test_section_overrides(tmp_path):
    config = load_config(write(tmp_path, "[ragbuild]\nimage-name = my-worker\n"
                                         "environments = dev, qa,prod\n"))
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
