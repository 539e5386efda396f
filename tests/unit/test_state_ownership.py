"""Who writes the run state: only the step table (ragbuild/steps/__init__.py) assigns to or
mutates a ``RunState`` field; every other module's step returns what it made (``steps.Made``,
``Built``, push's digests, ``Verified``) or carries it on its error (``PushFailed.pushed``)."""

import ast
import dataclasses

from ragbuild.steps import RunState
from fakes import REPO

PACKAGE = REPO / "ragbuild"
OWNER = PACKAGE / "steps" / "__init__.py"
FIELDS = {f.name for f in dataclasses.fields(RunState)}
#: methods that change a list, dict or set in place
MUTATORS = {
    "append",
    "extend",
    "insert",
    "pop",
    "popitem",
    "clear",
    "update",
    "setdefault",
    "remove",
    "add",
    "discard",
    "sort",
    "reverse",
    "__setitem__",
}


def _state_names(tree: ast.AST) -> set:
    """``state``, and every parameter annotated as a RunState whatever its name."""
    names = {"state"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                if arg.annotation is not None and "RunState" in ast.unparse(arg.annotation):
                    names.add(arg.arg)
    return names


def _field_of(node: ast.AST, names: set):
    """The RunState field ``node`` is or lies in (``state.digests``, ``state.times[k]``,
    ``state.image.id``), else None."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        inner = node.value
        if (
            isinstance(node, ast.Attribute)
            and isinstance(inner, ast.Name)
            and inner.id in names
            and node.attr in FIELDS
        ):
            return node.attr
        node = inner
    return None


def _targets(node: ast.AST):
    if isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            yield from _targets(element)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


def writes(source: str) -> list:
    """``(line, field, how)`` of each write to a RunState field in ``source``."""
    tree = ast.parse(source)
    names = _state_names(tree)
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for target in (t for whole in targets for t in _targets(whole)):
            field = _field_of(target, names)
            if field is not None:
                found.append((node.lineno, field, "assigned"))
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in MUTATORS:
                field = _field_of(func.value, names)
                if field is not None:
                    found.append((node.lineno, field, f".{func.attr}()"))
            if (
                isinstance(func, ast.Name)
                and func.id in ("setattr", "delattr")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in names
            ):
                found.append((node.lineno, "?", func.id))
    return sorted(found)


def test_only_the_step_table_writes_the_run_state():
    outside = {
        f"{path.relative_to(PACKAGE.parent)}:{line}: {field} {how}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWNER
        for line, field, how in writes(path.read_text())
    }
    assert outside == set()


def test_the_step_table_does_write_it():
    """The check sees the writes where they are allowed: it would see them elsewhere."""
    fields = {field for _, field, _ in writes(OWNER.read_text())}
    assert {"digests", "pinned", "image_id", "times"} <= fields


def test_every_kind_of_write_is_seen():
    source = """
def step(runner, s: steps.RunState, state=None):
    state.pinned = "r@sha256:1"
    state.build_pushed, state.image_id = True, "sha256:2"
    state.times["push"] += 1.0
    s.digests.update({"r:dev": None})
    state.digests["r:dev"] = None
    del state.digests["r:dev"]
    setattr(state, "pinned", None)
    state.plan.refs  # a read
    runner.pinned = "not the state"
    state.unknown = 1  # not a RunState field
"""
    assert [(line, field, how) for line, field, how in writes(source)] == [
        (3, "pinned", "assigned"),
        (4, "build_pushed", "assigned"),
        (4, "image_id", "assigned"),
        (5, "times", "assigned"),
        (6, "digests", ".update()"),
        (7, "digests", "assigned"),
        (8, "digests", "assigned"),
        (9, "?", "setattr"),
    ]
