"""The SageMaker gate's record: what the metadata's ``gate`` key holds for a build's
``--smoke-test`` and for a promote (docs/metadata.md): what was tested, the figures and when,
or why the gate did not run (``--no-gate REASON``)."""

from __future__ import annotations

import time
from typing import Any, Callable

from ragbuild.sagemaker import GateFailed, GateResult, utc_now


def recorded(
    image: str, gate: Callable[[], GateResult], pulled: bool = False
) -> tuple[GateResult, dict[str, Any]]:
    """``gate()`` and its record, what the metadata's ``gate`` holds, the same for a build's
    ``--smoke-test`` and a promote; a failure is raised on with its record as
    ``GateFailed.record``. ``image``: what was tested (an image ID, or ``repository@digest``);
    ``at``: when it started (UTC); ``seconds``: the gate's wall time; ``figures``:
    ``GateResult``'s (``tested_at``: when it ended), or the ``rule`` broken and its ``figure``."""
    at, started = utc_now(), time.monotonic()
    record = {"ran": True, "test": "sagemaker", "image": image, "pulled": pulled, "at": at}
    try:
        result = gate()
    except GateFailed as failed:
        failed.record = {
            **record,
            "passed": False,
            "seconds": round(time.monotonic() - started, 3),
            "rule": failed.rule,
            "figure": failed.figure,
        }
        raise
    figures = {k: v for k, v in result.figures().items() if k not in ("image", "health")}
    return result, {
        **record,
        "passed": True,
        "seconds": round(time.monotonic() - started, 3),
        "health": result.health,
        "figures": figures,
    }


def not_run(reason: str) -> dict[str, Any]:
    """The record of a promote whose gate was skipped: the reason given, and when."""
    return {"ran": False, "reason": reason, "at": utc_now()}
