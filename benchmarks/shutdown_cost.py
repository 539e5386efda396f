"""How long the interpreter's shutdown takes after a real run of `scripts/build-image.py`, with
and without the `gc.freeze()` that `ragbuild.cli.run()` makes before exiting, interleaved.

    python benchmarks/shutdown_cost.py [--runs N] -- ARGS...

Each run is the script's own `main()` with ARGS, in the directory it is started in (a project:
a Dockerfile, a git repository), followed by what `cli.run()` does, with or without the freeze;
the time is from the moment `main()` returned (written to stderr by the child) to the parent's
`wait()` returning: the interpreter's finalization and the process's exit. Milliseconds,
median and range of N runs (default 16) of each.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from plumbum import local

SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "build-image.py"
)

#: The child: the script's module code up to its last line (which is `run()`), then main(), the
#: stamp, and the entry point's ending with the freeze or without it.
CHILD = """
import gc, sys, time
sys.argv = [{script!r}, *{args!r}]
code = open({script!r}).read()
assert code.rstrip().endswith("run()"), "scripts/build-image.py no longer ends with run()"
namespace = {{"__name__": "build_image", "__file__": {script!r}}}
exec(compile(code.rstrip()[:-len("run()")], {script!r}, "exec"), namespace)
from ragbuild.cli import main
status = main()
sys.stderr.write(f"\\nSTAMP {{time.time():.6f}}\\n")
if {freeze!r}:
    gc.freeze()
sys.exit(status)
"""


def once(args: list, freeze: bool) -> float:
    code = CHILD.format(script=SCRIPT, args=args, freeze=freeze)
    child = local[sys.executable]["-c", code].popen(
        stdin=None, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    err = child.communicate()[1]  # to the child's exit
    ended = time.time()
    if "\nSTAMP " not in err:
        raise SystemExit(f"error: the run wrote no stamp (exit {child.returncode}):\n{err[-2000:]}")
    return 1000 * (ended - float(err.rsplit("\nSTAMP ", 1)[1].split()[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("args", nargs="+", help="build-image.py's arguments (after --)")
    options = parser.parse_args()
    found: dict = {False: [], True: []}
    for i in range(options.runs):
        for freeze in (False, True) if i % 2 else (True, False):
            found[freeze].append(once(options.args, freeze))
    for freeze, values in found.items():
        print(
            f"{'with gc.freeze()' if freeze else 'without':17} shutdown ms median "
            f"{statistics.median(values):5.1f}  min {min(values):5.1f}  max {max(values):5.1f}"
            f"  (n={len(values)})"
        )


if __name__ == "__main__":
    main()
