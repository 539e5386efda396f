"""steps/facts.py: the facts a run starts from (the clock, the created label)."""

from __future__ import annotations
import dataclasses
from ragbuild import steps

from datetime import datetime, timedelta, timezone
from fakes import set_tz


def test_the_created_label_is_this_runs_alone_without_source_date_epoch():
    from datetime import datetime

    plain = steps.facts.Facts(
        git=None, moment=steps.facts.clock({}), docker_config=None, docker=None
    )
    fixed = dataclasses.replace(
        plain, moment=steps.facts.clock({"SOURCE_DATE_EPOCH": "1700000000"})
    )
    assert isinstance(plain.moment, datetime)
    assert plain.unique_created and not fixed.unique_created


def test_without_source_date_epoch_the_clock_is_now_in_tz(monkeypatch):
    set_tz(monkeypatch, "XXX+5")  # POSIX: five hours west of UTC
    expected = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=5)
    moment = steps.facts.clock({})
    assert abs((moment - expected).total_seconds()) < 5
    assert steps.facts.clock({"SOURCE_DATE_EPOCH": ""}) is not None  # empty: now, as unset
