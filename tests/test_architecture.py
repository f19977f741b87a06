"""The house rules of the tree, checked on the code itself (ast, no imports run).

- Imports run one way: kernels <- theory <- deep <- benchmarks.
- No two modules import each other, directly or in a loop (type-only imports included).
- Type hints resolve (``typing.get_type_hints``) on the functions that cross modules.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("kernels", "theory", "deep", "benchmarks")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (also inside functions, TYPE_CHECKING)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in LAYERS}


MODULES = _modules()
GRAPH = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module):
    layer = LAYERS.index(module.split(".")[0])
    upward = sorted(i for i in GRAPH[module] if LAYERS.index(i.split(".")[0]) > layer)
    assert not upward, f"{module} imports from a higher layer: {upward}"


def test_no_import_cycles():
    seen: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(m: str, stack: list[str]) -> None:
        seen[m] = 1
        for n in sorted(GRAPH[m]):
            if n.endswith("__init__") or n in ("kernels", "theory", "deep", "benchmarks"):
                continue  # a package's face re-exports; its arrows are not a tangle
            if seen.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            if n not in seen:
                visit(n, stack + [n])
        seen[m] = 2

    for m in sorted(GRAPH):
        if m not in seen:
            visit(m, [m])


@pytest.mark.parametrize(
    "func",
    [
        "deep.records.evaluate",
        "deep.records.measure",
        "deep.records.frequency_setup",
        "deep.splits.make_split",
        "deep.train.train_epoch",
        "deep.train.train",
    ],
)
def test_type_hints_resolve(func):
    import importlib

    mod, name = func.rsplit(".", 1)
    typing.get_type_hints(getattr(importlib.import_module(mod), name))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_private_name_of_another(module):
    """A name that starts with ``_`` is its module's own: another module must not import it."""
    private = []
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in MODULES and node.module != module:
            private += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, f"{module} imports private names: {private}"


def test_readme_architecture_names_every_module():
    """The README's Architecture section names every module file (runs/*.py by its pattern)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Architecture") : readme.index("## Tests")]
    named = set(re.findall(r"(?<![\w.])(\w+\.py)\b", section))  # file names, not the tail of a longer one
    missing = [
        m
        for m, path in MODULES.items()
        if path.name not in ("__init__.py", "__main__.py") and ".runs." not in m and path.name not in named
    ]
    assert not missing, f"README's Architecture section does not name: {missing}"
    assert "runs/*.py" in section


def test_every_listed_equivalent_mutant_is_still_in_its_module():
    """tests/mutate_equivalent.txt matches by module and a piece of the line: an entry whose line
    moved to another module, or is gone, would silently stop applying."""
    from tests.mutate import load_equivalents

    stale = [(m, text) for m, _desc, text, _why in load_equivalents(ROOT / "tests" / "mutate_equivalent.txt")]
    stale = [(m, text) for m, text in stale if text not in (ROOT / m).read_text()]
    assert not stale, f"entries of tests/mutate_equivalent.txt no longer on a line of their module: {stale}"
