"""CPU time (user + system, of the child) of `scripts/build-image.py --help` and
`--env dev --dry-run` in two checkouts, interleaved A/B so that the machine's load drifts
over both alike (wall-clock figures on a shared machine vary by 2x run to run).

    python benchmarks/startup_cpu.py BEFORE_TREE AFTER_TREE [RUNS]

Run it from a project directory (a Dockerfile, a git repository): the dry run plans a build.
"""

import resource
import statistics
import subprocess
import sys

from plumbum import local

CASES = {"--help": ["--help"], "--env dev --dry-run": ["--env", "dev", "--dry-run"]}


def main() -> None:
    trees = {"before": sys.argv[1], "after": sys.argv[2]}
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    found: dict[tuple[str, str], list[float]] = {
        (tree, case): [] for tree in trees for case in CASES
    }
    for i in range(runs):
        order = list(trees.items()) if i % 2 else list(reversed(trees.items()))
        for case, args in CASES.items():
            for tree, root in order:
                start = resource.getrusage(resource.RUSAGE_CHILDREN)
                local[sys.executable][(f"{root}/scripts/build-image.py", *args)].popen(
                    stdin=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                ).wait()
                end = resource.getrusage(resource.RUSAGE_CHILDREN)
                found[(tree, case)].append(
                    1000 * (end.ru_utime - start.ru_utime + end.ru_stime - start.ru_stime)
                )
    for (tree, case), values in found.items():
        print(
            f"{tree:6} {case:22} CPU ms median {statistics.median(values):6.1f}  "
            f"min {min(values):6.1f}  (n={len(values)})"
        )


if __name__ == "__main__":
    main()
