"""The house rules the README's map states: the layer contract (pyproject.toml, run by `make lint`
through import-linter), small modules and functions, imports at the top of a module, no
re-exports."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from conftest import REPO

PACKAGE = REPO / "jaxpcam"
COMMANDS = ("main", "evaluate", "predict", "export", "report", "sweep", "audit")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_layer_contract_names_every_package_in_the_readme_order():
    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    layers = [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]
    assert layers[0] == [f"jaxpcam.{c}" for c in COMMANDS] and layers[1] == ["jaxpcam.cli"]
    assert layers[2:] == [
        ["jaxpcam.training", "jaxpcam.evaluation", "jaxpcam.sweeps"],
        ["jaxpcam.run"],
        ["jaxpcam.config"],
        ["jaxpcam.data", "jaxpcam.models"],
        ["jaxpcam.core"],
    ]
    named = {name for layer in layers for name in layer}
    on_disk = {f"jaxpcam.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    on_disk |= {f"jaxpcam.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert on_disk == named  # a new package or command needs its place in the contract


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)


def test_lint_imports_keeps_the_contract_and_breaks_on_an_upward_import(tmp_path):
    kept = _lint_imports(REPO)
    assert kept.returncode == 0 and "1 kept, 0 broken" in kept.stdout, kept.stdout + kept.stderr
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "pyproject.toml", copy)
    shutil.copytree(PACKAGE, copy / "jaxpcam", ignore=shutil.ignore_patterns("__pycache__"))
    steps = copy / "jaxpcam" / "training" / "steps.py"
    steps.write_text(steps.read_text() + "\nfrom jaxpcam.evaluation import loading  # noqa\n")
    broken = _lint_imports(copy)
    assert broken.returncode == 1 and "jaxpcam.training.steps -> jaxpcam.evaluation.loading" in broken.stdout


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES, f"{node.name} at line {node.lineno}"


def _local_jaxpcam_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("jaxpcam"):
                    found.append(f"{node.name}: {inner.module}")
                elif isinstance(inner, ast.Import):
                    found += [f"{node.name}: {a.name}" for a in inner.names if a.name.startswith("jaxpcam")]
    return found


def test_only_commands_import_the_library_inside_a_function():
    """Commands import what imports JAX after their flags parse, so --help and a flag mistake
    answer at once (docs/configuration.md, jaxpcam/cli.py: about 0.2 s against 3.6-5 s); the library imports at
    the top of each module."""
    local = {_module_name(p): _local_jaxpcam_imports(p) for p in _modules()}
    assert {m for m, found in local.items() if found} <= {f"jaxpcam.{c}" for c in COMMANDS}


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def _source(module: str) -> Path:
    path = REPO.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def test_every_name_is_imported_from_the_module_that_defines_it():
    """No re-exports: ``from jaxpcam.x import name`` finds ``name`` defined in jaxpcam.x (or a
    submodule of that name), in the library, the tests and the benchmarks."""
    wrong = []
    for path in [*_modules(), *(REPO / "tests").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxpcam"):
                for alias in node.names:
                    is_module = _source(f"{node.module}.{alias.name}").is_file()
                    if not is_module and alias.name not in _top_level_names(_source(node.module)):
                        wrong.append(f"{path.relative_to(REPO)}:{node.lineno} {node.module}.{alias.name}")
    assert wrong == []
