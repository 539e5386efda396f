"""The Markdown report of a run: the machine and load, the timed rows (median, min, max), image
sizes, process counts, derived figures against their targets, import times, notes."""

from __future__ import annotations

import datetime as dt
import platform
import re
import shlex
import sys

from benchmarks.common import DOCKER28, Bench, fmt_size, fmt_time
from benchmarks.wrapper import COUNTED


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_and_os() -> str:
    """``24 GB, Debian 12.11, `` or "" where /proc/meminfo or /etc/debian_version is unread."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
        with open("/etc/debian_version", encoding="utf-8") as f:
            debian = f"Debian {f.read().strip()}"
    except (OSError, ValueError, IndexError):
        return ""
    return f"{kb / 2**20:.0f} GB, {debian}, "


def facts(bench: Bench) -> list[str]:
    """The date, the machine and the command, one line each."""
    versions = bench.sh.out(
        [bench.docker, "version", "--format", "{{.Client.Version}} / {{.Server.Version}}"]
    )
    nproc = bench.sh.out(["nproc"])
    other = ""
    if bench.ran_unchanged:
        client = bench.sh.out([DOCKER28, "version", "--format", "{{.Client.Version}}"], check=False)
        other = f"; section 7: docker client {client} ({DOCKER28}) with the buildx plugin"
    return [
        f"date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"machine: {nproc} cores ({cpu_model()}), {memory_and_os()}Linux {platform.release()}, "
        f"docker client / server {versions} ({bench.docker}){other}, "
        f"Python {platform.python_version()}",
        f"command: `make bench` (ran `{shlex.join(['benchmarks/run.py', *sys.argv[1:]])}`)",
    ]


def load_line(samples: list[dict]) -> str:
    first, last = samples[0], samples[-1]
    peak_load = max(s["load1"] for s in samples)
    peak_others = max(s["others"] for s in samples)
    return (
        f"- load average (1 min): {first['load1']:.2f} at the start, {last['load1']:.2f} "
        f"at the end, at most {peak_load:.2f} between sections; processes of others "
        f"(pytest, build-image.py, docker build/push) seen at section boundaries: "
        f"at most {peak_others}"
        + (" (concurrent load: figures are noisier)" if peak_others or peak_load > 1.5 else "")
    )


def timings(bench: Bench) -> list[str]:
    out = [
        "",
        "Wall-clock time of the whole command; median of the runs, min and max beside it.",
        "",
        "| benchmark | runs | median | min | max | notes |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    section = None
    for row in bench.rows:
        if row.section != section:
            section = row.section
            out.append(f"| **{section}** | | | | | |")
        out.append(
            f"| {row.name} | {len(row.samples)} | {fmt_time(row.median)} | "
            f"{fmt_time(min(row.samples))} | {fmt_time(max(row.samples))} | {row.note} |"
        )
    return out


def sizes_and_counts(bench: Bench) -> list[str]:
    out = []
    if bench.sizes:
        out += ["", "| 3. image size | bytes | size | notes |", "| --- | ---: | ---: | --- |"]
        out += [
            f"| {name} | {size} | {fmt_size(size)} | {note} |" for name, size, note in bench.sizes
        ]
    if bench.counts:
        out += [
            "",
            "Processes started by one run (counted in one extra run of each through a "
            f"PATH shim of {', '.join(f'`{c}`' for c in COUNTED)}; the timed runs did not "
            "go through the shim):",
            "",
            "| 1. wrapper overhead | " + " | ".join(COUNTED) + " |",
            "| --- |" + " ---: |" * len(COUNTED),
        ]
        out += ["| " + " | ".join(map(str, row)) + " |" for row in bench.counts]
    return out


def importtimes(bench: Bench) -> list[str]:
    out = []
    for label, entries in bench.importtime.items():
        out += [
            "",
            f"`python -X importtime build-image.py {label}` (one run): "
            f"{entries['total']:.1f} ms of imports in all; the top-level imports of 1 ms or "
            "more by cumulative time:",
            "",
            "| top-level import | cumulative | heaviest import it pulls in |",
            "| --- | ---: | --- |",
        ]
        out += [
            f"| {name} | {cum:.1f} ms | "
            + (f"{heavy[0]} {heavy[1]:.1f} ms" if heavy else "")
            + " |"
            for name, cum, heavy in entries["top"]
        ]
    return out


def derived_notes(bench: Bench) -> list[str]:
    """Notes that follow from what was found: plumbum and the editable finder among the
    imports, rounds retried."""
    notes = []
    names = {
        name
        for entries in bench.importtime.values()
        for name, _, heavy in entries["top"]
        for name in (name, heavy[0] if heavy else "")
    }
    if "plumbum" in names:
        notes.append(
            "plumbum is imported on the `--dry-run` path (and every build) because "
            "the runner starts the read-only `git describe` through it; its import "
            "pulls in urllib.request (http.client, ssl, email) and runs `uname -p` "
            "(see the process table)"
        )
    if any(name.startswith("__editable__") for name in names):
        notes.append(
            "`site`'s `__editable___ragbuild_*_finder` comes from the venv's "
            "`pip install -e .` (make venv); a regular install has no such finder"
        )
    if bench.retries:
        notes.append(
            f"{len(bench.retries)} round(s) failed part-way and were run again "
            "from their start once the harness answered (a concurrent e2e run "
            "stopped the registry or replaced the base image); only complete "
            "rounds count: "
            + "; ".join(sorted(set(re.sub(r"^error: ", "", r) for r in bench.retries)))
        )
    return notes


def render(bench: Bench, lines: list[str]) -> str:
    """The whole report; ``lines``: ``facts(bench)``."""
    out = ["### Results", "", *(f"- {line}" for line in lines), load_line(bench.samples)]
    out += timings(bench) + sizes_and_counts(bench)
    out += ["", "| derived figure | value | target | |", "| --- | ---: | ---: | --- |"]
    out += [
        f"| {name} | {value} | {limit} | {verdict} |"
        for name, value, limit, verdict in bench.ratios
    ]
    out += importtimes(bench)
    out += ["", "Notes:", ""]
    out += [f"- {note}" for note in bench.notes + derived_notes(bench)]
    return "\n".join(out) + "\n"
