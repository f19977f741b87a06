"""Mutation testing for airkit's formula modules: does the test suite notice a small plausible bug?

Run ``make mutate`` (or ``python tests/mutate.py --help``). For each module under test, the harness

1. lists every AST-level mutation of the kinds below (one small bug each),
2. draws a deterministic sample of at most ``--max-per-module`` of them (``--seed``),
3. applies them ONE at a time to a private copy of the repository in a temporary directory (the
   repository itself is never written, apart from the report under ``results/mutate/<stamp>/``),
4. runs only the tests that use that module (test files that name one of its public names or the module,
   most-referencing file first, plus the module's own docstring examples) with ``-x -p no:randomly`` and a
   timeout of ``--timeout-factor`` x the clean run's time,
5. counts a mutant as *killed* when the run fails (or errors, or times out) and as *survived* when it passes.

Mutations (the usual small bugs in numerical code):

* arithmetic: ``+`` <-> ``-``, ``*`` <-> ``/``, ``//`` -> ``/``, ``**`` -> ``*`` (also in ``+=`` etc.);
  ``1 - x`` -> ``x``; unary minus and ``not`` dropped;
* comparisons moved by one boundary: ``<`` <-> ``<=``, ``>`` <-> ``>=``; ``==`` <-> ``!=``, ``is`` <-> ``is not``,
  ``in`` <-> ``not in``;
* ``and`` <-> ``or``; ``True`` <-> ``False``;
* constants: ``0`` <-> ``1``, other integers ``n`` -> ``n + 1``, ``0.0`` <-> ``1.0``, tolerances
  (``0 < |x| < 1e-2``) 100x looser, other floats ``x`` -> ``x + 1``;
* off by one: ``a[i]`` -> ``a[i + 1]`` and slice bounds ``+ 1`` for computed indices, ``range(.., n)`` -> ``range(.., n - 1)``;
* ``min`` <-> ``max`` (also ``minimum``/``maximum``, ``argmin``/``argmax``, ``amin``/``amax``), ``floor`` <-> ``ceil``,
  ``any`` <-> ``all``.

Not mutated: docstrings, annotations, decorators, f-strings, ``assert``, the arguments of ``raise``, of
``warnings.warn`` and of other message or printing calls (``print``, ``format``, ``np.array2string``, logging,
tqdm), and lines carrying ``# pragma: no mutate``.

The children are forked from a process that has already imported numpy, scipy, torch, hypothesis and pytest
(but none of airkit), so a mutant costs its tests, not the interpreter's start-up. Bytecode caching is off, so a
mutant never runs a stale ``.pyc`` of another one.
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as _dt
import fnmatch
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The modules that hold the closed forms: the default target.
FORMULA_MODULES = [
    "theory/distillation.py",
    "theory/distillation_study.py",
    "theory/air.py",
    "theory/dynamics.py",
    "theory/mobahi.py",
    "theory/noise.py",
    "theory/frequency.py",
    "kernels/functions.py",
    "kernels/relu.py",
    "kernels/spectrum.py",
    "kernels/ridge.py",
    "kernels/cnn.py",
    "kernels/large_spectrum.py",
    "kernels/cg_ridge.py",
]

BINOP_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Pow: ast.Mult,
}
OP_TEXT = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Pow: "**",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.And: "and",
    ast.Or: "or",
}
CMP_SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
SKIP_CALLS = {
    "warn",
    "print",
    "format",
    "array2string",
    "array_repr",
    "array_str",
    "debug",
    "info",
    "warning",
    "error",
    "exception",
    "tqdm",
    "set_postfix",
    "set_description",
}
NAME_SWAP = {
    "min": "max",
    "max": "min",
    "minimum": "maximum",
    "maximum": "minimum",
    "argmin": "argmax",
    "argmax": "argmin",
    "amin": "amax",
    "amax": "amin",
    "floor": "ceil",
    "ceil": "floor",
    "any": "all",
    "all": "any",
}


@dataclass
class Mutant:
    module: str  # path relative to the repository, e.g. "theory/air.py"
    lineno: int
    col: int
    end_lineno: int
    end_col: int
    replacement: str  # source text that replaces the node's segment
    description: str  # e.g. "'+' -> '-'"
    line_text: str = ""  # the original source line (stripped), for the report
    status: str = ""  # killed | timeout | error | survived
    seconds: float = 0.0
    failed_test: str = ""

    @property
    def where(self) -> str:
        return f"{self.module}:{self.lineno}"


# --------------------------------------------------------------------------------------------- generation


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _constant_mutations(value):
    """Alternative values for a numeric or boolean constant."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [1] if value == 0 else [0] if value == 1 else [value + 1]
    if isinstance(value, float):
        if value == 0.0:
            return [1.0]
        if value == 1.0:
            return [0.0]
        if 0.0 < abs(value) < 1e-2:
            return [value * 100.0]
        return [value + 1.0]
    return []


class _Collector(ast.NodeVisitor):
    """Walks a module and records (node, replacement node, description, is_statement) for every mutation site."""

    def __init__(self):
        self.sites: list[tuple[ast.AST, ast.AST, str, bool]] = []
        self._skip_depth = 0

    # -- regions that are never mutated
    def _skip(self, node):
        self._skip_depth += 1
        self.generic_visit(node)
        self._skip_depth -= 1

    def visit_JoinedStr(self, node):  # f-strings: messages
        return None

    def visit_Raise(self, node):  # exception messages (the condition around a raise *is* mutated)
        return None

    def visit_Assert(self, node):
        return None

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_arg(self, node):  # annotations of parameters
        return None

    def visit_ClassDef(self, node):  # decorators (dataclass options) are not mutated
        for stmt in node.body:
            self.visit(stmt)

    def visit_FunctionDef(self, node):  # neither decorators nor the docstring
        self.visit(node.args)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
            body = body[1:]  # the docstring
        for stmt in body:
            self.visit(stmt)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name in SKIP_CALLS:  # messages and printing: not mutated
            return None
        if name in NAME_SWAP and self._skip_depth == 0:
            new = (
                ast.Attribute(value=func.value, attr=NAME_SWAP[name], ctx=ast.Load())
                if isinstance(func, ast.Attribute)
                else ast.Name(id=NAME_SWAP[name], ctx=ast.Load())
            )
            self.sites.append((func, new, f"{name} -> {NAME_SWAP[name]}", False))
        if name == "range" and isinstance(func, ast.Name) and node.args and self._skip_depth == 0:
            stop = node.args[0] if len(node.args) == 1 else node.args[1]
            if not isinstance(stop, ast.Constant):
                new = ast.BinOp(left=stop, op=ast.Sub(), right=ast.Constant(1))
                self.sites.append((stop, new, "range stop - 1", False))
        self.generic_visit(node)

    def visit_Subscript(self, node):
        sl = node.slice
        if self._skip_depth == 0:
            if isinstance(sl, ast.Slice):
                for part in ("lower", "upper"):
                    b = getattr(sl, part)
                    if b is not None and not isinstance(b, ast.Constant) and not _is_neg_const(b):
                        new = ast.BinOp(left=b, op=ast.Add(), right=ast.Constant(1))
                        self.sites.append((b, new, f"slice {part} + 1", False))
            elif isinstance(sl, (ast.Name, ast.BinOp, ast.Attribute)) and not _looks_like_key(node):
                new = ast.BinOp(left=sl, op=ast.Add(), right=ast.Constant(1))
                self.sites.append((sl, new, "index + 1", False))
        self.generic_visit(node)

    # -- the mutations
    def _swap_arithmetic(self, node, is_stmt: bool) -> bool:
        """Records the swapped arithmetic operator of ``a + b`` (a BinOp) or ``a += b`` (an AugAssign,
        a statement); tells whether the operator is one that swaps."""
        op = type(node.op)
        if self._skip_depth != 0 or op not in BINOP_SWAP:
            return False
        new = copy.copy(node)  # the same operands (or target and value), the other operator
        new.op = BINOP_SWAP[op]()
        eq = "=" if is_stmt else ""
        self.sites.append((node, new, f"'{OP_TEXT[op]}{eq}' -> '{OP_TEXT[BINOP_SWAP[op]]}{eq}'", is_stmt))
        return True

    def visit_BinOp(self, node):
        if self._swap_arithmetic(node, is_stmt=False):
            if isinstance(node.op, ast.Sub) and isinstance(node.left, ast.Constant) and node.left.value == 1:
                self.sites.append((node, node.right, "'1 - x' -> 'x'", False))
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._swap_arithmetic(node, is_stmt=True)
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if self._skip_depth == 0 and isinstance(node.op, (ast.USub, ast.Not)):
            if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
                pass  # -1 etc.: the constant's own mutation covers it
            else:
                what = "unary '-'" if isinstance(node.op, ast.USub) else "'not'"
                self.sites.append((node, node.operand, f"{what} dropped", False))
        self.generic_visit(node)

    def visit_Compare(self, node):
        if self._skip_depth == 0:
            for i, op in enumerate(node.ops):
                if type(op) in CMP_SWAP:
                    ops = list(node.ops)
                    ops[i] = CMP_SWAP[type(op)]()
                    new = ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
                    self.sites.append((node, new, f"'{OP_TEXT[type(op)]}' -> '{OP_TEXT[type(ops[i])]}'", False))
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        if self._skip_depth == 0:
            other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            new = ast.BoolOp(op=other, values=node.values)
            self.sites.append((node, new, f"'{OP_TEXT[type(node.op)]}' -> '{OP_TEXT[type(other)]}'", False))
        self.generic_visit(node)

    def visit_Constant(self, node):
        if self._skip_depth == 0 and (isinstance(node.value, bool) or _num(node.value)):
            for v in _constant_mutations(node.value):
                self.sites.append((node, ast.Constant(v), f"{node.value!r} -> {v!r}", False))


def _is_neg_const(node) -> bool:
    return isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant)


def _looks_like_key(node: ast.Subscript) -> bool:
    """``d[name]`` on something that is probably a mapping (a dict of results, os.environ, ...)."""
    v = node.value
    name = v.id if isinstance(v, ast.Name) else v.attr if isinstance(v, ast.Attribute) else ""
    return name in {"environ", "KERNELS", "TARGET_RULES", "NOISE_KINDS", "_FUNCS", "globals"} or name.isupper()


def _segment_bounds(lines: list[str], node) -> tuple[int, int]:
    """Character offsets (start, end) of a node in the joined source."""
    offs = [0]
    for ln in lines:
        offs.append(offs[-1] + len(ln))

    def off(lineno, col):  # col_offset is in UTF-8 bytes
        line = lines[lineno - 1]
        return offs[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))

    return off(node.lineno, node.col_offset), off(node.end_lineno, node.end_col_offset)


def generate(module: str, source: str) -> list[Mutant]:
    """Every mutant of one module, in source order; each one checked to parse and to differ from the original."""
    tree = ast.parse(source)
    coll = _Collector()
    coll.visit(tree)
    lines = source.splitlines(keepends=True)
    original_dump = ast.dump(tree)
    out: list[Mutant] = []
    seen: set[tuple] = set()
    for node, new, desc, is_stmt in coll.sites:
        line_text = lines[node.lineno - 1]
        if "pragma: no mutate" in line_text:
            continue
        text = ast.unparse(new)
        replacement = text if is_stmt else f"({text})"
        key = (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, replacement)
        if key in seen:
            continue
        seen.add(key)
        m = Mutant(
            module, node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, replacement, desc, line_text.strip()
        )
        try:
            mutated = ast.parse(apply(source, m))
        except SyntaxError:
            continue
        if ast.dump(mutated) == original_dump:
            continue
        out.append(m)
    out.sort(key=lambda m: (m.lineno, m.col, m.description))
    return out


def apply(source: str, m: Mutant) -> str:
    lines = source.splitlines(keepends=True)

    class _N:  # a stand-in carrying the positions
        lineno, col_offset, end_lineno, end_col_offset = m.lineno, m.col, m.end_lineno, m.end_col

    a, b = _segment_bounds(lines, _N)
    joined = "".join(lines)
    return joined[:a] + m.replacement + joined[b:]


def sample(mutants: list[Mutant], k: int | None, seed: int, module: str) -> list[Mutant]:
    if k is None or len(mutants) <= k:
        return list(mutants)
    rng = random.Random(f"{seed}:{module}")
    idx = sorted(rng.sample(range(len(mutants)), k))
    return [mutants[i] for i in idx]


# --------------------------------------------------------------------------------------------- test selection


def public_names(source: str) -> set[str]:
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names.add(t.id)
    return {n for n in names if not n.startswith("_")}


def _imports_of(test_source: str, package: str, dotted: str, names: set[str]) -> int:
    """How strongly a test file uses a module: names it imports from the module or its package (x5), plus
    ``package.name`` / ``module.name`` attribute uses."""
    score = 0
    tree = ast.parse(test_source)
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in (package, dotted):
            score += 5 * sum(a.name in names or node.module == dotted for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in (package, dotted):
                    aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == dotted:
                score += 5
    if aliases:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in names:
                base = ast.unparse(node.value)
                if base in aliases or base == dotted:
                    score += 1
    return score


def select_tests(module: str, source: str, root: Path) -> list[str]:
    """Test files that import the module (one of its public names, from it or from its package), most first,
    after the module's own docstring examples."""
    dotted = module[:-3].replace("/", ".")
    package = dotted.rsplit(".", 1)[0]
    names = public_names(source)
    scored = []
    for f in sorted((root / "tests").glob("test_*.py")):
        hits = _imports_of(f.read_text(encoding="utf-8"), package, dotted, names)
        if hits:
            scored.append((-(hits + 1000 * (Path(module).stem in f.stem)), f.name))  # test_<module>.py first
    scored.sort()
    return [module] + [f"tests/{name}" for _, name in scored]


# --------------------------------------------------------------------------------------------- running


def copy_tree(src: Path, dst: Path, from_head: bool, ignore_tests: str | None = None) -> None:
    """A private copy of the repository: HEAD (``git archive``) or the working tree (tracked + untracked, not ignored)."""
    dst.mkdir(parents=True, exist_ok=True)
    if from_head:
        data = subprocess.run(["git", "-C", str(src), "archive", "HEAD"], check=True, capture_output=True).stdout
        import io

        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            tf.extractall(dst, filter="data")
        if ignore_tests:
            for f in (dst / "tests").glob(ignore_tests):
                f.unlink()
        return
    files = (
        subprocess.run(["git", "-C", str(src), "ls-files", "-co", "--exclude-standard", "-z"], check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for rel in files:
        if not rel or rel.startswith("results/"):
            continue
        if ignore_tests and rel.startswith("tests/") and fnmatch.fnmatch(rel[len("tests/") :], ignore_tests):
            continue
        s = src / rel
        if not s.is_file():
            continue  # deleted in the working tree
        d = dst / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s, d)


def _preload() -> None:
    """Import the heavy third-party packages once, in the parent (never airkit itself)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in (
        "numpy",
        "scipy",
        "scipy.linalg",
        "scipy.sparse.linalg",
        "scipy.special",
        "scipy.integrate",
        "sklearn",
        "sklearn.kernel_ridge",
        "sklearn.metrics.pairwise",
        "matplotlib",
        "matplotlib.pyplot",
        "torch",
        "hypothesis",
        "hypothesis.extra.numpy",
        "pytest",
        "_pytest.doctest",
    ):
        try:
            __import__(name)
        except Exception:  # an optional one is missing: the child imports what it needs
            pass
    for name in list(sys.modules):
        if name.split(".")[0] in {"kernels", "theory", "deep", "benchmarks"}:
            raise RuntimeError(f"the harness must not import airkit ({name}) before forking")


def start(workdir: Path, args: list[str], log: Path) -> int:
    """Fork a child that runs ``pytest.main(args)`` in ``workdir``; returns its pid (own process group)."""
    pid = os.fork()
    if pid:
        return pid
    rc = 99
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(workdir)
        src = str(REPO)
        mine = {"", ".", src, os.path.join(src, "tests")}  # the repository's own folders: the copy replaces them
        sys.path[:] = [str(workdir)] + [p for p in sys.path if p not in mine]
        import pytest

        rc = int(pytest.main(args))
        for pkg in ("kernels", "theory"):
            mod = sys.modules.get(pkg)
            if mod is not None and not str(getattr(mod, "__file__", "")).startswith(str(workdir)):
                print(f"mutate.py: {pkg} was imported from {mod.__file__}, not from the copy", flush=True)
                rc = 98
    except BaseException as exc:  # noqa: BLE001 - report anything, never return into the parent's loop
        try:
            print(f"mutate.py child: {exc!r}", flush=True)
        except Exception:
            pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def wait(pid: int, timeout: float) -> tuple[int | None, float]:
    """Wait for a child; kill its process group past ``timeout``. Returns (exit code or None on timeout, seconds)."""
    t0 = time.monotonic()
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                break
            time.sleep(0.05)
    except BaseException:  # Ctrl-C or SIGTERM in the parent: take the child down with it
        _kill(pid)
        raise
    _kill(pid)
    return None, time.monotonic() - t0


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


PYTEST_ARGS = [
    "-x",
    "-q",
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
    "-p",
    "no:xdist",
    "--no-header",
]


def first_failure(log: Path) -> str:
    try:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(("FAILED ", "ERROR ")):
                return line.split(" - ")[0]
    except OSError:
        pass
    return ""


# --------------------------------------------------------------------------------------------- report


def load_equivalents(path: Path | None) -> list[tuple[str, str, str, str]]:
    """``module | mutation | text on the line | why`` rows (``#`` comments): survivors known not to change
    any result (performance knobs, messages), left out of the score and listed apart."""
    rows = []
    if path is None or not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3:
            rows.append((parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else ""))
    return rows


def equivalent_reason(m: Mutant, equivalents) -> str | None:
    for module, desc, text, why in equivalents:
        if m.module == module and (desc in ("*", m.description)) and text in m.line_text:
            return why or "equivalent"
    return None


def write_report(out: Path, results: dict, meta: dict, equivalents=()) -> str:
    rows, survivors, equiv = [], [], []
    tk = tt = 0
    for module, r in results.items():
        if r.get("clean_failed"):
            rows.append(f"| {module} | {r['candidates']} | - | - | - | - | clean run failed | {r['clean_s']:.1f} | - |")
            continue
        ms = r["mutants"]
        killed = sum(m.status != "survived" for m in ms)
        eq = [(m, why) for m in ms if m.status == "survived" and (why := equivalent_reason(m, equivalents))]
        total = len(ms) - len(eq)
        tk += killed
        tt += total
        score = f"{100 * killed / total:.0f}%" if total else "-"
        rows.append(
            f"| {module} | {r['candidates']} | {len(ms)} | {len(eq)} | {killed} | {total - killed} | {score} | "
            f"{r['clean_s']:.1f} | {r['seconds']:.0f} |"
        )
        eq_ids = {id(m) for m, _ in eq}
        survivors += [m for m in ms if m.status == "survived" and id(m) not in eq_ids]
        equiv += eq
    total_score = f"{100 * tk / tt:.1f}%" if tt else "-"
    lines = [
        "# Mutation test report",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- source: {meta['source']}; seed {meta['seed']}; at most {meta['max_per_module']} mutants per module; "
        f"timeout {meta['timeout_factor']}x the clean run",
        f"- total: **{tk}/{tt} killed ({total_score})** in {meta['seconds'] / 60:.1f} min (score = killed / (run - equivalent))",
        "",
        "| module | candidates | run | equivalent | killed | survived | score | clean run (s) | time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "## Survivors",
        "",
    ]
    if not survivors:
        lines.append("None.")
    for m in survivors:
        lines.append(f"- `{m.where}` {m.description}: `{m.line_text}`  ->  `{m.replacement}`")
    if equiv:
        lines += ["", "## Equivalent (survive by design; not in the score)", ""]
        for m, why in equiv:
            lines.append(f"- `{m.where}` {m.description}: `{m.line_text}` ({why})")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "modules": {
                    k: {**{kk: vv for kk, vv in v.items() if kk != "mutants"}, "mutants": [asdict(m) for m in v["mutants"]]}
                    for k, v in results.items()
                },
            },
            indent=1,
        )
    )
    return text


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "modules",
        nargs="*",
        help=f"module files to mutate (default: the {len(FORMULA_MODULES)} "
        "formula modules of kernels/ and theory/); 'all' = every module of kernels/ and theory/",
    )
    p.add_argument("--max-per-module", type=int, default=20, help="sample at most N mutants per module (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-module sample")
    p.add_argument("--timeout-factor", type=float, default=3.0, help="per-mutant timeout, x the clean run")
    p.add_argument("--min-timeout", type=float, default=30.0, help="lower bound of the per-mutant timeout (s)")
    p.add_argument("--from-head", action="store_true", help="mutate `git archive HEAD` instead of the working tree")
    p.add_argument("--out", type=Path, default=None, help="report folder (default results/mutate/<stamp>)")
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="only write the report of an earlier run again (e.g. after editing the equivalents file)",
    )
    p.add_argument("--list", action="store_true", help="only list the sampled mutants; run nothing")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy")
    p.add_argument(
        "--equivalents",
        type=Path,
        default=REPO / "tests" / "mutate_equivalent.txt",
        help="known equivalent mutants, left out of the score (default tests/mutate_equivalent.txt)",
    )
    p.add_argument(
        "--ignore-tests",
        default=None,
        metavar="GLOB",
        help="leave these test files out of the copy (e.g. 'test_mutants_*': the score without them)",
    )
    p.add_argument(
        "--rerun",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="run again only the survivors of an earlier run (its results.json; its kills stay kills): "
        "after adding tests, this measures the new score without re-running every mutant",
    )
    args = p.parse_args(argv)

    if args.modules == ["all"]:
        modules = sorted(
            str(f.relative_to(REPO)) for d in ("kernels", "theory") for f in (REPO / d).glob("*.py") if f.name != "__init__.py"
        )
    else:
        modules = args.modules or FORMULA_MODULES
    k = args.max_per_module or None
    if args.report is not None:
        data = json.loads(args.report.read_text())
        results = {mod: {**r, "mutants": [Mutant(**m) for m in r["mutants"]]} for mod, r in data["modules"].items()}
        print(write_report(args.out or args.report.parent, results, data["meta"], load_equivalents(args.equivalents)))
        return 0
    previous = json.loads(args.rerun.read_text()) if args.rerun else None
    if previous is not None and not args.modules:
        modules = list(previous["modules"])
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or REPO / "results" / "mutate" / stamp

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` removes the copy
    tmp = Path(tempfile.mkdtemp(prefix="airkit-mutate-"))
    work = tmp / "repo"
    logs = tmp / "logs"
    logs.mkdir()
    try:
        copy_tree(REPO, work, args.from_head, args.ignore_tests)
        plan = {}
        for module in modules:
            source = (work / module).read_text(encoding="utf-8")
            allm = generate(module, source)
            chosen = sample(allm, k, args.seed, module)
            kept: list[Mutant] = []
            if previous is not None:  # the earlier run's survivors, found again by line text and mutation
                old = [Mutant(**m) for m in previous["modules"].get(module, {}).get("mutants", [])]
                kept = [m for m in old if m.status != "survived"]
                index = {(m.line_text, m.description, m.replacement): m for m in allm}
                chosen = []
                for m in old:
                    if m.status == "survived":
                        new = index.get((m.line_text, m.description, m.replacement))
                        if new is None:
                            print(f"  {m.where} {m.description}: no longer in the source (the line changed); dropped")
                        else:
                            chosen.append(new)
            plan[module] = (source, len(allm), chosen, select_tests(module, source, work), kept)
            print(
                f"{module}: {len(allm)} mutants, {len(plan[module][2])} sampled; tests: {' '.join(plan[module][3])}", flush=True
            )
        if args.list:
            for module, (_, _, ms, _, _) in plan.items():
                for m in ms:
                    print(f"  {m.where}: {m.description}: {m.line_text}  ->  {m.replacement}")
            return 0

        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        os.environ.setdefault("MPLBACKEND", "Agg")
        sys.dont_write_bytecode = True
        _preload()
        t_start = time.monotonic()
        results = {}
        for module, (source, n_all, ms, tests, kept) in plan.items():
            target = work / module
            pyargs = PYTEST_ARGS + tests
            t_mod = time.monotonic()
            log = logs / f"{module.replace('/', '_')}.clean.log"
            rc, clean_s = wait(start(work, pyargs, log), 3600)
            if rc != 0:
                print(
                    f"{module}: the clean run fails (rc={rc}), so no mutant of it can be judged; skipped. The end of its output:",
                    flush=True,
                )
                print(log.read_text(errors="replace")[-3000:])
                results[module] = {
                    "candidates": n_all,
                    "mutants": [],
                    "clean_s": clean_s,
                    "seconds": 0.0,
                    "tests": tests,
                    "clean_failed": True,
                }
                continue
            timeout = max(args.timeout_factor * clean_s, args.min_timeout)
            print(f"{module}: clean run {clean_s:.1f}s, timeout {timeout:.0f}s, {len(ms)} mutants", flush=True)
            try:
                for i, m in enumerate(ms, 1):
                    target.write_text(apply(source, m), encoding="utf-8")
                    log = logs / f"{module.replace('/', '_')}.{i}.log"
                    rc, m.seconds = wait(start(work, pyargs, log), timeout)
                    if rc is None:
                        m.status = "timeout"
                    elif rc == 0:
                        m.status = "survived"
                    elif rc == 1:
                        m.status = "killed"
                        m.failed_test = first_failure(log)
                    else:
                        m.status = "error"  # collection/import error: the mutant broke the module
                        if rc == 98:
                            raise RuntimeError(log.read_text())
                    mark = "survived" if m.status == "survived" else m.status
                    print(
                        f"  [{i}/{len(ms)}] {m.where} {m.description}: {mark} ({m.seconds:.1f}s)"
                        + (f"  `{m.line_text}`" if m.status == "survived" else ""),
                        flush=True,
                    )
            finally:
                target.write_text(source, encoding="utf-8")
            results[module] = {
                "candidates": n_all,
                "mutants": kept + ms,
                "clean_s": clean_s,
                "seconds": time.monotonic() - t_mod,
                "tests": tests,
            }
        meta = {
            "date": _dt.date.today().isoformat(),
            "machine": f"{os.cpu_count()}-core CPU ({os.uname().machine}, {os.uname().sysname})",
            "source": ("git HEAD" if args.from_head else "working tree")
            + (f"; survivors of {args.rerun} run again" if args.rerun else "")
            + (f"; without tests/{args.ignore_tests}" if args.ignore_tests else ""),
            "seed": args.seed,
            "max_per_module": k or "all",
            "timeout_factor": args.timeout_factor,
            "seconds": time.monotonic() - t_start,
            "modules": modules,
        }
        print()
        print(write_report(out, results, meta, load_equivalents(args.equivalents)))
        print(f"report: {out / 'report.md'}")
        if any(r.get("clean_failed") for r in results.values()):
            return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
