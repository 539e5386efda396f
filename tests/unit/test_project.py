"""The project itself, not one module: the package's shape (no unused code, no import circle,
one plumbum importer), the test configuration, and unit tests isolated from the machine."""

import ast
import re
from pathlib import Path
import os
from plumbum import local
from conftest import MACHINE_VARS
import subprocess
import sys
from typing import Optional
from fakes import REPO


PACKAGE = REPO / "ragbuild"


def modules() -> dict:
    """Every module of the package, subpackages too, by its dotted name below ``ragbuild``
    (``plan``, ``run.runner``; a package's ``__init__`` by the package's name, ``steps``), with
    its text."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)] = (
            path.read_text()
        )
    return found


def test_every_module_level_function_and_class_is_used_in_the_package():
    sources = modules()
    everything = "\n".join(sources.values())
    unused = [
        f"{name}: {node.name}"
        for name, text in sources.items()
        for node in ast.parse(text).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        and len(re.findall(rf"\b{node.name}\b", everything)) == 1
    ]
    assert unused == []


def _imports_of(text: str) -> set:
    """The ragbuild modules a module imports anywhere (at the top, in a function, or for type
    checking only), by dotted name: ``from ragbuild.run import signals`` is ``run.signals``."""
    known = set(modules())
    found = set()

    def name(dotted: str) -> str:
        return dotted[len("ragbuild.") :] if dotted.startswith("ragbuild.") else dotted

    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ragbuild":
            base = name(node.module or "")
            for alias in node.names:
                whole = f"{base}.{alias.name}" if base != "ragbuild" else alias.name
                found.add(whole if whole in known else base)
        elif isinstance(node, ast.Import):
            found |= {name(a.name) for a in node.names if a.name.startswith("ragbuild.")}
    return found - {"ragbuild"}


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: _imports_of(text) - {name} for name, text in modules().items()}
    circles = []

    def visit(module, path):
        for name in sorted(graph.get(module, ())):
            if name in path:
                circles.append(" -> ".join(path[path.index(name) :] + [name]))
            elif name not in visited:
                visit(name, path + [name])
        visited.add(module)

    visited: set = set()
    for module in sorted(graph):
        visit(module, [module])
    assert circles == []


def test_the_runner_is_the_only_module_that_imports_plumbum():
    importers = sorted(
        name
        for name, text in modules().items()
        if re.search(r"^\s*(from|import) plumbum\b", text, re.M)
    )
    assert importers == ["run.runner"]


def test_run_imports_nothing_above_it():
    """``run/`` (commands, the runner, the console, signals) knows no domain module: it may
    import itself and ``errors``, which sits below it."""
    above = {
        f"{name} imports {imported}"
        for name, text in modules().items()
        if name == "run" or name.startswith("run.")
        for imported in _imports_of(text)
        if not (imported == "run" or imported.startswith("run.") or imported == "errors")
    }
    assert above == set()


# --- The unit tests do not depend on the machine running them (conftest's autouse fixture) ---------


def test_docker_and_aws_resolve_to_the_stubs_on_both_paths():
    for name in ("docker", "aws"):
        stub = str(local.which(name))  # plumbum's own copy of PATH, as the runner resolves
        assert "machine-stubs" in stub, stub
        assert os.environ["PATH"].split(os.pathsep)[0] == os.path.dirname(stub)


def test_the_machines_variables_are_cleared_for_the_runner_and_plumbum():
    for name in MACHINE_VARS:
        if name == "PIP_CONFIG_FILE":  # set to /dev/null: pip's configuration files are not read
            assert os.environ[name] == local.env[name] == os.devnull
            continue
        assert name not in os.environ, name
        assert name not in local.env, name
    assert not [
        name for name in os.environ if name.startswith("PIP_") and name != "PIP_CONFIG_FILE"
    ]
    assert os.listdir(os.environ["DOCKER_CONFIG"]) == []  # no user's config.json


# --- The test configuration of setup.cfg [tool:pytest], as a user meets it: a bare ``pytest`` from the ---


def collected(*args: str) -> list:
    """The test ids ``pytest --collect-only -q`` lists from the repository root."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_a_bare_pytest_collects_unit_and_service_tests_but_no_e2e_test():
    ids = collected()
    folders = {test_id.split("/")[1] for test_id in ids}
    assert folders == {"unit", "service"}


def test_the_e2e_suite_is_collected_when_named():
    ids = collected("tests/e2e")
    assert ids and all(test_id.startswith("tests/e2e/") for test_id in ids)


def test_only_the_dry_runner_module_knows_a_dry_run_from_a_real_one():
    # steps get a runner and never ask which one (issue 10): DryRunner is named, and a dry run
    # tested, in run/dry.py only; the CLI picks the runner with make_runner
    asking = [
        f"{name}:{node.lineno}"
        for name, text in modules().items()
        if name != "run.dry"
        for node in ast.walk(ast.parse(text))
        if (isinstance(node, ast.Name) and node.id == "DryRunner")
        or (isinstance(node, ast.alias) and node.name == "DryRunner")
        or (isinstance(node, ast.Attribute) and node.attr == "DryRunner")
    ]
    assert asking == []


# --- the layout: where each kind of code lives (issue 21) -------------------------------------------


def _modules_where(predicate) -> set:
    """The modules with an AST node for which ``predicate(node)`` holds."""
    return {
        name
        for name, text in modules().items()
        if any(predicate(node) for node in ast.walk(ast.parse(text)))
    }


def _starts_argv(node, program: str) -> bool:
    """``Command(("program", ...), ...)``: a command of ``program`` made as data."""
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Command"
        and bool(node.args)
        and isinstance(node.args[0], ast.Tuple)
        and bool(node.args[0].elts)
        and isinstance(node.args[0].elts[0], ast.Constant)
        and node.args[0].elts[0].value == program
    )


def test_every_git_command_is_made_in_git_py():
    """Git's queries and their parsers live in git.py (gitfacts.py: the rules, no process)."""
    assert _modules_where(lambda node: _starts_argv(node, "git")) == {"git"}


def test_dockers_configuration_is_read_in_docker_config_py():
    """config.json, DOCKER_CONFIG, DOCKER_HOST and DOCKER_CONTEXT are read in one module."""
    names = ("config.json", "DOCKER_CONFIG", "DOCKER_CONTEXT")
    assert _modules_where(lambda node: isinstance(node, ast.Constant) and node.value in names) == {
        "docker_config"
    }


def test_only_the_registry_modules_speak_http_to_a_registry():
    """The registry API (registry.py: session, auth, the pre-flight; manifest.py: the read-back)
    is the only HTTP client of a registry; sagemaker.py's is the container's /ping, /health and
    /invocations (the SageMaker gate)."""

    def imports_http(node) -> bool:
        return isinstance(node, ast.Import) and any(
            alias.name in ("urllib.request", "http.client") for alias in node.names
        )

    assert _modules_where(imports_http) == {"registry", "manifest", "sagemaker"}
    assert _modules_where(
        lambda node: isinstance(node, ast.Constant) and node.value in ("/v2/", "Bearer")
    ) == {"registry", "manifest"}


def test_each_pipeline_step_runs_the_module_the_layout_names():
    """The table (steps/__init__.py) in its order, each step calling into its own module."""
    from ragbuild import steps

    where = {
        "context": "context",
        "pre-flight": "preflight",
        "build": "build",
        "inspect": "summary",
        "smoke": "sagemaker",
        "scan": "scan",
        "push": "push",
        "verify": "verify",
    }
    assert [step.name for step in steps.STEPS] == list(where)
    for step in steps.STEPS:
        assert where[step.name] in step.run.__code__.co_names, step.name
    for name in ("facts", "context", "preflight", "build", "summary"):
        assert f"steps.{name}" in modules()


def test_steps_never_import_each_others_internals():
    """Steps share what they make through the run state and public functions, never another
    module's ``_internals``."""
    private = [
        f"{name}: {node.module}.{alias.name}"
        for name, text in modules().items()
        if name == "steps" or name.startswith("steps.")
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ragbuild.")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []


def test_only_the_cli_maps_errors_to_exit_codes():
    """``RagbuildError.exit_code`` is read in cli.py alone (errors.py sets it); a subcommand
    returns its status or raises."""
    assert _modules_where(
        lambda node: isinstance(node, ast.Attribute) and node.attr == "exit_code"
    ) == {"cli", "errors"}


# --- The unit tests mirror ragbuild/ (issue 21) ------------------------------------------------
# ragbuild/X/name.py is tested by tests/unit/X/test_name.py. Two places have no one module:
# tests/unit/cli/ holds the flows through main() that cross modules (the build flow, git facts,
# push, the image identity, passthrough, the entry points), ragbuild/cli.py's own tests among
# them; a subcommand's tests, through main() or not, sit beside its module in commands/.


UNIT = Path(__file__).resolve().parent

#: Where a source module's tests are when it is not the plain mirror.
MIRROR_OVERRIDES = {
    "steps/__init__.py": "steps/test_pipeline.py",  # the pipeline table, RunState, the recorder
    "cli.py": "cli",  # the top-level parser, dispatch, the one error-to-exit map: every flow
}

#: Source modules with no test module of their own, each with why. A module leaves this list
#: when it gets one (test_the_exceptions_are_still_exceptions fails until then).
UNTESTED = {
    "__init__.py": "the version string only",
    "__main__.py": "calls cli.run; cli/test_entry_points.py starts python -m ragbuild",
    "run/__init__.py": "a docstring only",
    "commands/__init__.py": "a docstring only",
    "commands/args.py": "what every subcommand's parser shares: tested through those parsers "
    "(commands/test_build.py, commands/test_local.py, ...)",
    "commands/doctor_engine.py": "doctor's engine checks: commands/test_doctor.py, beside doctor",
    "commands/findings.py": "doctor's finding lines: commands/test_doctor.py, beside doctor",
    "commands/promote.py": "promote's and push's parsers: test_promote.py, test_push_image.py",
    "commands/smoke.py": "the smoke subcommand's parser: test_smoke.py, test_sagemaker.py",
    "deps.py": "the optional packages' versions: commands/test_doctor.py (doctor, its one user)",
    "errors.py": "the exception tree: its exit codes are asserted wherever main() exits",
    "run/answer.py": "the answer files: run/test_runner.py, steps/test_build.py (a build that "
    "pushes)",
    "run/terminal.py": "the watched build's pseudo-terminal: run/test_runner.py, "
    "run/test_signals.py",
    "shape.py": "SageMaker's image shape: test_sagemaker.py, test_verify.py",
    "steps/preflight.py": "the pre-flight step: its checks are test_push_preflight.py's, its "
    "place in a run cli/test_push.py's",
}

#: Test modules at a path with no source module: the project's own checks and data.
NOT_MIRRORED = {
    "test_project.py": "this file: the package's shape",
    "test_docs.py": "the docs' commands and links",
    "test_workflow.py": ".github/workflows/build-image.yml",
    "test_benchmarks.py": "benchmarks/",
    "test_lock_split.py": "the requirements lock split",
    "test_state_ownership.py": "the package's shape: only the step table writes RunState",
}

#: Shared helpers beside the tests, not tests.
HELPERS = {"conftest.py", "fakes.py", "registry_fakes.py", "__init__.py"}


def mirror_of(source: str) -> str:
    """The test module (or folder) that holds ``source``'s tests: ``run/runner.py`` ->
    ``run/test_runner.py``."""
    if source in MIRROR_OVERRIDES:
        return MIRROR_OVERRIDES[source]
    folder, _, name = source.rpartition("/")
    return f"{folder}/test_{name}" if folder else f"test_{name}"


def sources() -> list:
    """Every module of ragbuild/, as a path below it: ``plan.py``, ``run/runner.py``."""
    return sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py"))


def unit_test_modules() -> list:
    """Every Python file below tests/unit outside its data folders, as a path below it."""
    return sorted(
        str(path.relative_to(UNIT))
        for path in UNIT.rglob("*.py")
        if "build_failures" not in path.parts and "__pycache__" not in path.parts
    )


def test_every_source_module_has_its_test_module_or_a_reason():
    missing = [
        f"{source} -> tests/unit/{mirror_of(source)}"
        for source in sources()
        if source not in UNTESTED and not (UNIT / mirror_of(source)).exists()
    ]
    assert missing == []


def topic_of(path: str, mirrors: set) -> Optional[str]:
    """The module test file ``path`` is a topic file of (``test_ecr_hosts.py`` ->
    ``test_ecr.py``: one module's long topic, e.g. a differential or its mutation survivors),
    or None."""
    folder, _, name = path.rpartition("/")
    words = name[: -len(".py")].split("_")  # test, module words..., topic words...
    for cut in range(len(words) - 1, 1, -1):  # the longest module name first
        base = "_".join(words[:cut]) + ".py"
        mirror = f"{folder}/{base}" if folder else base
        if mirror in mirrors:
            return mirror
    return None


def test_every_test_module_sits_where_a_source_module_is():
    """Each test module is a source module's (``test_<module>.py``), or a topic file beside it
    (``test_<module>_<topic>.py``), a CLI flow (cli/), or a listed exception."""
    mirrors = {mirror_of(source) for source in sources()}
    astray = [
        path
        for path in unit_test_modules()
        if path.rpartition("/")[2] not in HELPERS
        and path not in NOT_MIRRORED
        and path not in mirrors
        and topic_of(path, mirrors) is None
        and not path.startswith("cli/")
    ]
    assert astray == []


def test_a_topic_file_names_the_module_it_belongs_to():
    mirrors = {"test_ecr.py", "run/test_runner.py", "test_pip_config.py"}
    assert topic_of("test_ecr_hosts.py", mirrors) == "test_ecr.py"
    assert topic_of("test_pip_config_list.py", mirrors) == "test_pip_config.py"
    assert topic_of("run/test_runner_threads.py", mirrors) == "run/test_runner.py"
    assert topic_of("test_walk_choice.py", mirrors) is None  # no module "walk"
    assert topic_of("test_ecr.py", mirrors) is None  # the module's own file, not a topic
    assert topic_of("test_runner_threads.py", mirrors) is None  # run/'s, not the top level's


def test_the_exceptions_are_still_exceptions():
    """A module that gains its test module leaves UNTESTED; a listed file still exists."""
    assert [s for s in UNTESTED if s not in sources() or (UNIT / mirror_of(s)).exists()] == []
    assert [path for path in NOT_MIRRORED if not (UNIT / path).exists()] == []
    assert [path for path in MIRROR_OVERRIDES if path not in sources()] == []
