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
