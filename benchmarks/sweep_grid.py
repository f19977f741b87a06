"""A sweep's grid: axes of ``deep.train`` settings, the settings every cell shares, and its cells.

A grid is read from repeated ``--grid key=v1,v2`` / ``--set key=value`` options or from a
small TOML or YAML file::

    # grid.toml
    [grid]                      # every combination is one cell
    method = ["ce", "self-distill", "sat"]
    seed = [0, 1, 2]
    noise = ["symmetric:0.2", "symmetric:0.4"]

    [fixed]                     # shared by every cell
    data = "data/cifar-10-python.tar.gz"
    epochs = 15
    subset = 5000
    model_options = { widths = [32, 64, 64] }

    [when."method=sat"]         # only in the cells with method = "sat"
    target_momentum = 0.9
    distill_start = 4

Keys are :class:`deep.config.TrainConfig` field names (``batch_size``, not ``--batch-size``);
``out``, ``resume`` and ``progress`` belong to the sweep and are refused. Option values are
read as Python literals where they parse (``0.1`` is a float, ``3`` an int, ``False`` a
bool) and as text otherwise (``ce``, ``symmetric:0.4``). Every cell's configuration is
built and validated before anything runs, so a bad value is reported at once, naming the
key and the cell.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Cell",
    "Grid",
    "SweepError",
    "value_text",
    "train_values",
    "grid_from_options",
    "load_grid_file",
    "make_grid",
    "RESERVED_KEYS",
]

# Fields the sweep sets itself: each cell's run folder, resuming and quiet workers.
RESERVED_KEYS = ("out", "resume", "progress")
_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


class SweepError(ValueError):
    """A bad grid or sweep option; the CLI prints it as one line."""


@dataclass(frozen=True)
class Cell:
    """One combination of the grid's values.

    Attributes
    ----------
    name : str
        Folder name, ``key=value`` pairs joined by ``__`` (characters outside
        ``[A-Za-z0-9._=-]`` become ``_``).
    values : dict
        The grid values of this cell, in axis order.
    config : dict
        ``TrainConfig`` fields of the cell: the fixed settings updated by ``values``.
    """

    name: str
    values: dict[str, Any]
    config: dict[str, Any]

    def label(self, keys: tuple[str, ...] | None = None) -> str:
        """``method=ce, seed=0``: the values (or those of ``keys``) as text."""
        return ", ".join(f"{k}={self.values[k]}" for k in (keys if keys is not None else tuple(self.values)))


@dataclass(frozen=True)
class Grid:
    """Axes (key -> values, in order) and the fixed settings; see the module docstring."""

    axes: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    when: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def cells(self) -> tuple[Cell, ...]:
        """Every combination, the last axis varying fastest."""
        keys = tuple(self.axes)
        out = []
        for combo in itertools.product(*(self.axes[k] for k in keys)):
            values = dict(zip(keys, combo))
            extra: dict[str, Any] = {}
            for condition, settings in self.when.items():
                key, _, text = condition.partition("=")
                if value_text(values[key]) == text:
                    extra.update(settings)
            out.append(Cell(name=_cell_name(values), values=values, config={**self.fixed, **extra, **values}))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"axes": {k: list(v) for k, v in self.axes.items()}, "fixed": dict(self.fixed), "when": dict(self.when)}


def _cell_name(values: dict[str, Any]) -> str:
    if not values:
        return "single"
    return "__".join(_SAFE.sub("_", f"{k}={value_text(v)}") for k, v in values.items())


def value_text(v: Any) -> str:
    """A value as it appears in names and tables: text as is, dicts and lists as compact JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return repr(v)


def _literal(text: str) -> Any:
    """``0.1`` -> 0.1, ``3`` -> 3, ``False`` -> False, ``(32,64)`` -> (32, 64); anything else stays text."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text.strip()


def _train_fields() -> tuple[str, ...]:
    from deep.config import TrainConfig

    return tuple(f.name for f in dataclasses.fields(TrainConfig))


def _check_key(key: Any, where: str) -> str:
    fields = _train_fields()
    if not isinstance(key, str) or key not in fields:
        close = [f for f in fields if isinstance(key, str) and f.replace("_", "-") == key.lstrip("-")]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SweepError(f"{where}: unknown setting {key!r}{hint}; use a deep.train TrainConfig field: {', '.join(fields)}")
    if key in RESERVED_KEYS:
        raise SweepError(f"{where}: {key!r} is set by the sweep for each cell; leave it out (use --out for the sweep's folder)")
    return key


def make_grid(
    axes: dict[str, Any], fixed: dict[str, Any] | None = None, when: dict[str, Any] | None = None, *, where: str = "sweep"
) -> Grid:
    """A :class:`Grid` with every key and every cell's configuration checked.

    Parameters
    ----------
    axes : mapping of key -> list of values
        ``TrainConfig`` fields to vary; each list non-empty and without repeats.
    fixed : mapping of key -> value
        ``TrainConfig`` fields shared by every cell (not also an axis).
    when : mapping of ``"axis=value"`` -> mapping of key -> value
        Settings only for the cells with that axis value, e.g. ``{"method=sat":
        {"target_momentum": 0.9, "distill_start": 5}}`` (a method's own parameters,
        which the other methods refuse).
    where : str
        Prefix of the error messages (``--grid``, the file name, ...).

    Raises
    ------
    SweepError
        One line naming the key (and the cell, for a value ``TrainConfig`` refuses).
    """
    fixed = dict(fixed or {})
    checked: dict[str, tuple[Any, ...]] = {}
    for key, values in axes.items():
        _check_key(key, where)
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            values = [values]
        if not values:
            raise SweepError(f"{where}: axis {key!r} has no values; give at least one")
        seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(seen)) != len(seen):
            raise SweepError(f"{where}: axis {key!r} repeats a value ({list(values)!r}); give each value once")
        checked[key] = tuple(values)
    for key in fixed:
        _check_key(key, where)
        if key in checked:
            raise SweepError(f"{where}: {key!r} is both an axis and a fixed setting; give it once")
    conditions: dict[str, dict[str, Any]] = {}
    for condition, settings in (when or {}).items():
        key, sep, text = str(condition).partition("=")
        if not sep or key not in checked:
            raise SweepError(
                f"{where}: condition {condition!r} must be AXIS=VALUE with an axis of the grid ({', '.join(checked) or 'none'})"
            )
        if text not in [value_text(v) for v in checked[key]]:
            raise SweepError(f"{where}: condition {condition!r}: {text!r} is not a value of axis {key!r} {list(checked[key])!r}")
        if not isinstance(settings, dict) or not settings:
            raise SweepError(f"{where}: condition {condition!r} needs a table of settings; got {settings!r}")
        for k in settings:
            _check_key(k, where)
            if k in checked:
                raise SweepError(f"{where}: condition {condition!r} sets axis {k!r}; an axis takes its values from the grid")
        conditions[f"{key}={text}"] = {**conditions.get(f"{key}={text}", {}), **settings}
    grid = Grid(axes=checked, fixed=fixed, when=conditions)
    names = [c.name for c in grid.cells]
    if len(set(names)) != len(names):
        raise SweepError(f"{where}: two cells get the same folder name; make the values differ in [A-Za-z0-9._=-]")
    for cell in grid.cells:
        _validate_cell(cell, where)
    return grid


def _validate_cell(cell: Cell, where: str) -> None:
    from deep.config import TrainConfig

    try:
        TrainConfig.from_dict({**train_values(cell.config), "out": "sweep-check", "progress": False})
    except (TypeError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SweepError(f"{where}: cell {cell.label() or 'single'}: {msg}") from None


def train_values(config: dict[str, Any]) -> dict[str, Any]:
    """JSON-shaped values (lists, dicts) in the shapes ``TrainConfig`` takes (tuples, pairs)."""
    out = dict(config)
    mo = out.get("model_options")
    if isinstance(mo, dict):
        out["model_options"] = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(mo.items()))
    if isinstance(out.get("freq_deltas"), list):
        out["freq_deltas"] = tuple(out["freq_deltas"])
    return out


def _pairs(items: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip() or not text.strip():
            raise SweepError(f"{flag} takes KEY=VALUE (e.g. {flag} method=ce,sat); got {item!r}")
        out.append((key.strip(), text))
    return out


def grid_from_options(grid: list[str], fixed: list[str], base: Grid | None = None, when: Sequence[str] = ()) -> Grid:
    """The grid of ``--grid key=v1,v2``, ``--set key=value`` and ``--when axis=value:key=value``
    options, over ``base`` (a file's grid).

    A ``--grid`` axis replaces the file's axis or setting of that key, ``--set`` the file's setting or
    axis; one key given to both ``--grid`` and ``--set`` is refused (which one was meant?);
    ``--when method=sat:distill_start=5`` sets ``distill_start`` only in the cells with method sat.
    """
    axes = dict(base.axes) if base else {}
    fixed_values = dict(base.fixed) if base else {}
    conditions: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (base.when if base else {}).items()}
    for item in when:
        condition, sep, setting = str(item).partition(":")
        key, eq, text = setting.partition("=")
        if not sep or not eq or "=" not in condition or not key.strip() or not text.strip():
            raise SweepError(f"--when takes AXIS=VALUE:KEY=VALUE (e.g. --when method=sat:distill_start=5); got {item!r}")
        conditions.setdefault(condition.strip(), {})[key.strip()] = _literal(text)
    seen: set[str] = set()
    for key, text in _pairs(grid, "--grid"):
        if key in seen:
            raise SweepError(f"--grid {key} is given twice; list all its values once: --grid {key}=v1,v2")
        seen.add(key)
        axes[key] = tuple(_literal(t) for t in text.split(","))
        fixed_values.pop(key, None)
    for key, text in _pairs(fixed, "--set"):
        if key in seen:
            raise SweepError(f"--grid {key} and --set {key}: give {key} once (--grid for several values, --set for one)")
        fixed_values[key] = _literal(text)
        axes.pop(key, None)
    return make_grid(axes, fixed_values, conditions, where="--grid/--set/--when")


def load_grid_file(path: Path) -> Grid:
    """The grid of a ``.toml`` or ``.yaml``/``.yml`` file with tables ``grid`` and ``fixed``."""
    path = Path(path)
    where = f"grid file {path}"
    if not path.is_file():
        raise SweepError(f"{where} does not exist; give a .toml or .yaml file with [grid] and [fixed] tables")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:  # pragma: no cover - pyyaml comes with the dask extra
                raise SweepError(
                    f"{where}: reading YAML needs pyyaml: pip install 'airkit[dask]', or write the grid as TOML"
                ) from None
            data = yaml.safe_load(text)
        else:
            raise SweepError(f"{where}: unknown format {path.suffix!r}; use .toml, .yaml or .yml")
    except SweepError:
        raise
    except Exception as exc:  # the parsers' own error types differ; each is one line here
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SweepError(f"{where} is not valid {path.suffix[1:].upper()}: {first}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{where}: expected tables 'grid' and 'fixed'; got {type(data).__name__}")
    unknown = sorted(set(data) - {"grid", "fixed", "when"})
    if unknown:
        raise SweepError(f"{where}: unknown table(s) {unknown}; only 'grid', 'fixed' and 'when' are read")
    for table in ("grid", "fixed", "when"):
        if not isinstance(data.get(table, {}), dict):
            raise SweepError(f"{where}: '{table}' must be a table of key = value; got {data[table]!r}")
    return make_grid(data.get("grid", {}), data.get("fixed", {}), data.get("when", {}), where=where)
