"""The package's shape: no module-level function or class that nothing in the package uses."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ragbuild"


def test_every_module_level_function_and_class_is_used_in_the_package():
    sources = {path.name: path.read_text() for path in sorted(PACKAGE.glob("*.py"))}
    everything = "\n".join(sources.values())
    unused = [f"{name}: {node.name}"
              for name, text in sources.items() for node in ast.parse(text).body
              if isinstance(node, (ast.FunctionDef, ast.ClassDef))
              and len(re.findall(rf"\b{node.name}\b", everything)) == 1]
    assert unused == []


def test_only_the_runner_module_knows_a_dry_run_from_a_real_one():
    # steps get a runner and never ask which one (issue 10): DryRunner is named, and a dry run
    # tested, in runner.py only; the CLI picks the runner with make_runner
    asking = [f"{path.name}:{node.lineno}"
              for path in sorted(PACKAGE.glob("*.py")) if path.name != "runner.py"
              for node in ast.walk(ast.parse(path.read_text()))
              if (isinstance(node, ast.Name) and node.id == "DryRunner")
              or (isinstance(node, ast.alias) and node.name == "DryRunner")
              or (isinstance(node, ast.Attribute) and node.attr == "DryRunner")]
    assert asking == []
