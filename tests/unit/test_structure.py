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


def _imports_of(text: str) -> set:
    """The ragbuild modules a module imports anywhere: at the top, in a function, or for type
    checking only."""
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module == "ragbuild":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ragbuild."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("ragbuild.")}
    return found


def test_no_module_imports_one_that_imports_it_back():
    graph = {path.stem: _imports_of(path.read_text()) - {path.stem}
             for path in PACKAGE.glob("*.py")}
    circles = []

    def visit(module, path):
        for name in sorted(graph.get(module, ())):
            if name in path:
                circles.append(" -> ".join(path[path.index(name):] + [name]))
            elif name not in visited:
                visit(name, path + [name])
        visited.add(module)

    visited: set = set()
    for module in sorted(graph):
        visit(module, [module])
    assert circles == []


def test_the_runner_is_the_only_module_that_imports_plumbum():
    importers = sorted(path.name for path in PACKAGE.glob("*.py")
                       if re.search(r"^\s*(from|import) plumbum\b", path.read_text(), re.M))
    assert importers == ["runner.py"]
