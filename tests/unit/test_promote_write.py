"""promote's writes that stop part way (promote.write_tags): the metadata records the tags
written before the failure, as the error says and as a failed push records what went
(PushFailed.pushed), not an empty ``digests``."""

import json

from ragbuild.errors import Interrupted

from registry_fakes import clean_env  # noqa: F401 (autouse)
from test_promote import (  # noqa: F401 (fixtures)
    REPO,
    SOURCE_DIGEST,
    project,
    registry,
    run_promote,
)


def test_a_refused_write_records_the_tags_written_before_it(registry, fp, capsys, tmp_path):  # noqa: F811
    refs = [f"{REPO}:staging-20251111-101112", f"{REPO}:staging", f"{REPO}:git-abc1234"]
    registry.fail[refs[2]] = [404, 403]  # the pre-flight reads it (new), then its PUT is refused
    metadata = tmp_path / "promote.json"
    code = run_promote(
        fp, f"{REPO}:dev", "--env", "staging", "--no-gate", "x", "--metadata-file", str(metadata)
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"written: {refs[0]}, {refs[1]}" in err
    doc = json.loads(metadata.read_text())
    assert doc["status"] == "failed" and doc["failed_step"] == "promote"
    assert doc["digests"] == {refs[0]: SOURCE_DIGEST, refs[1]: SOURCE_DIGEST}
    assert doc["pushed_refs"] == refs[:2]


def test_ctrl_c_during_the_writes_records_the_tags_written_before_it(
    registry,  # noqa: F811
    fp,
    capsys,
    tmp_path,
):
    refs = [f"{REPO}:staging-20251111-101112", f"{REPO}:staging", f"{REPO}:git-abc1234"]
    registry.fail[refs[1]] = [404, Interrupted()]  # Ctrl-C during its PUT
    metadata = tmp_path / "promote.json"
    code = run_promote(
        fp, f"{REPO}:dev", "--env", "staging", "--no-gate", "x", "--metadata-file", str(metadata)
    )
    err = capsys.readouterr().err
    assert code == 130, err
    assert f"written: {refs[0]}" in err
    doc = json.loads(metadata.read_text())
    assert doc["failed_step"] == "promote"
    assert doc["digests"] == {refs[0]: SOURCE_DIGEST}
