"""The package stays readable: no module grows past 450 lines, every module
imports on its own (so there is no import cycle that only a lucky import order
hides), and no module-level function is defined in two places."""
import ast
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for p in (ROOT / "avil").rglob("*.py"))
MAX_LINES = 450
# The interface every suite in avil/tasks/ offers under the same names.
SUITE_INTERFACE = {"make_encoder", "make_tasks", "make_run"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(ROOT)): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_imports_on_its_own():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # One fresh interpreter per module, a few at a time: each import starts from nothing.
    processes = {}
    failures = {}
    names = [module_name(p) for p in MODULES if p.name != "__main__.py"]
    for start in range(0, len(names), 4):
        batch = names[start:start + 4]
        processes = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], env=env, cwd=ROOT,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for name in batch}
        for name, process in processes.items():
            _, err = process.communicate(timeout=300)
            if process.returncode:
                failures[name] = err.strip().splitlines()[-1]
    assert not failures, failures


def test_no_module_level_function_is_defined_twice():
    where = defaultdict(list)
    for path in MODULES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where[node.name].append(module_name(path))
    twice = {name: modules for name, modules in where.items() if len(modules) > 1
             and not (name in SUITE_INTERFACE and all(m.startswith("avil.tasks.") for m in modules))}
    assert not twice, f"defined in more than one module: {twice}"


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_package_modules_import_the_package_relatively(path):
    """One import style inside the package: relative imports (``from .x import y``)."""
    absolute = [f"line {node.lineno}" for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "avil"
                or isinstance(node, ast.Import) and any(a.name.split(".")[0] == "avil" for a in node.names)]
    assert not absolute, f"{path.relative_to(ROOT)} imports avil absolutely at {absolute}"
