"""dry.py: the dry runner prints the plan's commands and runs only the read-only ones."""

from __future__ import annotations
import io
from ragbuild.run.command import Command
from ragbuild.run.dry import DryRunner


def test_a_dry_run_takes_the_build_to_name_image_id(tmp_path):
    result = DryRunner(out=io.StringIO(), log=io.StringIO()).run(
        Command(("docker", "build", "."), iid_file=str(tmp_path / "x.iid"))
    )
    assert result.image_id == "IMAGE_ID"
