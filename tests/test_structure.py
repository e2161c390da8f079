"""The shape of the code: no file over 450 lines and no function over 120 in golden/, hdl/,
gen/ and sim/; dependencies point one way (golden <- hdl <- gen; sim on golden only); no
import cycle between the project's modules (lazy imports inside functions included)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("golden", "hdl", "gen", "sim")
#: What each package may import of the project's packages besides itself.
ALLOWED = {"golden": set(), "hdl": {"golden"}, "gen": {"golden", "hdl", "sim"},
           "sim": {"golden"}}
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 120


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


MODULES = _modules()
TREES = {name: ast.parse(f.read_text(), str(f)) for name, f in MODULES.items()}


def _imports(name: str) -> set[str]:
    """The project modules that module ``name`` imports, anywhere in its body."""
    package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]
                            + ([node.module] if node.module else [])) if node.level \
                else node.module
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n for n in names if n in MODULES and n != name}
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def test_no_long_files_or_functions():
    long_files = [f"{f.relative_to(ROOT)}: {n} lines" for f in MODULES.values()
                  if (n := f.read_text().count("\n")) > MAX_FILE_LINES]
    long_functions = [
        f"{MODULES[name].relative_to(ROOT)}:{node.lineno} {node.name}: "
        f"{node.end_lineno - node.lineno + 1} lines"
        for name, tree in TREES.items() for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long_files + long_functions


@pytest.mark.parametrize("package", PACKAGES)
def test_dependencies_point_one_way(package):
    wrong = sorted(f"{a} imports {b}" for a, bs in GRAPH.items() if a.split(".")[0] == package
                   for b in bs
                   if b.split(".")[0] != package and b.split(".")[0] not in ALLOWED[package])
    assert not wrong


def test_no_import_cycles():
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for b in GRAPH[todo.pop()] - seen:
                seen.add(b)
                todo.append(b)
        return seen

    cycles = sorted({tuple(sorted((a, b))) for a in GRAPH for b in GRAPH[a] if a in reach(b)})
    assert not cycles
