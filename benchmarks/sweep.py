"""``airkit sweep``: every cell of a grid of ``deep.train`` runs as one Dask task.

Each cell trains in its own folder ``<out>/cells/<cell>/``::

    config.json   the cell's TrainConfig fields (written before it runs; a rerun checks it)
    run/          deep.train's run folder: checkpoint.pt after every epoch, records.jsonl, summary.json
    cell.json     the cell's numbers, written atomically once the run has finished
    error.txt     the traceback of the last failure (removed when the cell later succeeds)

so a rerun of the same command skips finished cells, resumes interrupted ones from their
last epoch and retries failed ones; a failed cell is reported with its error and does not
stop the others. The sweep then writes ``report.md``, ``result.json`` and figures (mean ±
std over seeds, :mod:`benchmarks.sweep_report`) into ``<out>``.

Where the cells run:

- default: a ``dask.distributed.LocalCluster`` on this machine, one worker per GPU, or on
  CPU one worker per group of ``threads_per_worker`` cores;
- ``scheduler="tcp://host:8786"``: an existing Dask cluster (``dask scheduler`` on one host,
  ``dask worker tcp://host:8786 --nthreads 4`` on each machine, or dask-jobqueue on SLURM;
  see the README). Workers need airkit installed and must see ``out`` and the data at the
  same paths (a shared filesystem);
- ``client=``: a ``dask.distributed.Client`` you made;
- ``inline=True``: in this process, one cell after another, without Dask (what the
  ``confirm`` run does unless given a scheduler or workers).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.progress import duration
from benchmarks.run_files import atomic_write_json, atomic_write_text, environment
from benchmarks.sweep_grid import Cell, Grid, SweepError
from deep.files import CHECKPOINT_FILE

__all__ = ["SweepResult", "sweep", "run_cells", "train_cell", "CELLS_DIR", "cell_status", "default_workers"]

CELLS_DIR = "cells"


@dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` returns.

    Attributes
    ----------
    out : Path
        The sweep's folder.
    grid : Grid
    results : dict
        Cell name -> the cell's numbers (``cell.json``), for every finished cell.
    failed : dict
        Cell name -> the first line of its error, for the cells that failed this time.
    skipped : tuple of str
        Cells finished by an earlier session (read back, not run).
    report : Path or None
        ``report.md`` (None when no cell has finished).
    """

    out: Path
    grid: Grid
    results: dict[str, dict[str, Any]]
    failed: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and len(self.results) == len(self.grid.cells)


# ----------------------------------------------------------------------------- one cell (runs on a worker)


def _device_for_worker(device: str) -> str:
    """``auto``/``cuda`` on a worker of a multi-GPU machine -> ``cuda:<worker index mod GPUs>``."""
    import torch

    if device not in ("auto", "cuda") or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    # str hashes are salted per process: a digest gives every process the same answer for a worker name
    index = int(name) if isinstance(name, int) or str(name).isdigit() else zlib.crc32(str(name).encode())
    return f"cuda:{index % torch.cuda.device_count()}"


# deep.train seeds torch's process-wide RNG and sets its thread count: two cells in threads of one
# worker process would share both, so the cells of one process take turns (use one thread per worker).
_ONE_CELL_PER_PROCESS = threading.Lock()


def train_cell(cell_dir: str, config: dict[str, Any], threads: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Train (or resume) one cell in ``cell_dir/run``; write ``cell.json`` when it has finished.

    Runs in a Dask worker (or inline). ``threads``: torch's intra-op threads for this cell
    (Dask workers start with one); ``progress``: deep.train's bars and epoch lines (inline runs).
    Returns the cell's numbers: :meth:`deep.train.TrainResult.headline` (its curves and the
    per-epoch ``alpha`` and ``target_momentum``) plus ``finished``, ``epochs_done``, ``resumed_from`` and ``device``.
    """
    import torch

    with _ONE_CELL_PER_PROCESS:
        before = torch.get_num_threads()
        try:
            return _train_cell(cell_dir, config, threads, progress)
        finally:
            torch.set_num_threads(before)


def _train_cell(cell_dir: str, config: dict[str, Any], threads: int | None, progress: bool) -> dict[str, Any]:
    import torch

    from benchmarks.sweep_grid import train_values
    from deep.config import TrainConfig
    from deep.train import train

    if threads:
        torch.set_num_threads(int(threads))
    run_dir = Path(cell_dir) / "run"
    values = train_values(config)
    values["device"] = _device_for_worker(str(values.get("device", "auto")))
    cfg = TrainConfig.from_dict(
        {**values, "out": str(run_dir), "resume": (run_dir / CHECKPOINT_FILE).exists(), "progress": progress}
    )
    res = train(cfg)
    numbers = {
        **res.headline((*res.CURVE_FIELDS, "alpha", "target_momentum")),
        "finished": res.finished,
        "epochs_done": len(res.records),
        "resumed_from": res.resumed_from,
        "device": str(cfg.device),
    }
    if res.finished:
        atomic_write_json(Path(cell_dir) / "cell.json", numbers)
    return numbers


def cell_status(out: Path, cell: Cell) -> str:
    """``finished``, ``interrupted`` (a checkpoint, no cell.json), ``failed`` (error.txt) or ``new``."""
    d = Path(out) / CELLS_DIR / cell.name
    if (d / "cell.json").exists():
        return "finished"
    if (d / "run" / CHECKPOINT_FILE).exists():
        return "interrupted"
    if (d / "error.txt").exists():
        return "failed"
    return "new"


def _check_cell_config(out: Path, cell: Cell) -> None:
    """Write the cell's config.json, or check that an earlier session ran the same configuration.

    The fields a training run may change on resume (``deep.config.RESUME_FREE_FIELDS``: device,
    data path, stop_after, ...) may differ; the file then records the new values."""
    from deep.config import RESUME_FREE_FIELDS

    path = Path(out) / CELLS_DIR / cell.name / "config.json"
    want = json.loads(json.dumps(cell.config, default=list))
    if path.exists():
        have = json.loads(path.read_text())
        diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k) and k not in RESUME_FREE_FIELDS)
        if diff:
            raise SweepError(
                f"cell {cell.name} in {out} was run with other settings ({', '.join(diff)} differ); "
                f"use another --out, or delete {path.parent} to rerun it"
            )
        if have == want:
            return
    atomic_write_json(path, want)


# ----------------------------------------------------------------------------- progress


class _GridLog:
    """One stderr line per finished or failed cell: counts, elapsed time, estimate of what is left."""

    def __init__(self, total: int, done_before: int, enabled: bool) -> None:
        self.total, self.done, self.failed, self.enabled = total, done_before, 0, enabled
        self.done_before = done_before
        self.start = time.perf_counter()

    def line(self, text: str) -> None:
        if self.enabled:
            print(f"[sweep] {text}", file=sys.stderr, flush=True)

    def counts(self, running: int) -> str:
        elapsed = time.perf_counter() - self.start
        ran = self.done + self.failed - self.done_before
        queued = max(0, self.total - self.done - self.failed - running)
        left = self.total - self.done - self.failed
        est = "" if ran == 0 or left == 0 else f", about {duration(elapsed / ran * left)} left"
        return (
            f"{self.done}/{self.total} done, {running} running, {queued} queued, {self.failed} failed; "
            f"elapsed {duration(elapsed)}{est}"
        )


# ----------------------------------------------------------------------------- executors


def default_workers(threads_per_worker: int | None = None) -> tuple[int, int]:
    """``(workers, threads_per_worker)`` of the default LocalCluster: one worker per GPU
    (its share of the cores as threads), else one worker per group of ``threads_per_worker``
    cores (default: 4, or all cores when fewer)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus:
        return gpus, threads_per_worker or max(1, cores // gpus)
    threads = threads_per_worker or min(4, cores)
    return max(1, cores // threads), threads


def _distributed() -> ModuleType:
    try:
        import distributed
    except ImportError:
        raise SweepError("sweep needs dask.distributed: pip install 'airkit[dask]' (or run cells inline: --inline)") from None
    return distributed


def _scheduler_client(scheduler: str) -> Any:
    """A client of an existing Dask scheduler, or a one-line error saying how to start one."""
    try:
        return _distributed().Client(scheduler, timeout="20s")
    except OSError as exc:
        raise SweepError(
            f"--scheduler {scheduler}: no Dask scheduler answered ({exc}); start one with `dask scheduler` and "
            "`dask worker <address>`, or leave out --scheduler for a local cluster"
        ) from None


def _local_cluster(n_workers: int) -> Any:
    """A LocalCluster of ``n_workers`` processes, one Dask thread each (a cell owns its process)."""
    try:
        return _distributed().LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        )
    except (RuntimeError, OSError) as exc:
        raise SweepError(f"could not start a local Dask cluster ({exc}); run the cells in this process with --inline") from None


Job = tuple[Cell, str, dict[str, Any]]  # cell, its folder, its config
HEARTBEAT_S = 60.0  # a progress line at least this often while cells run on Dask


def _record_failure(cell_dir: str, error: BaseException, tb: str) -> str:
    first = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    atomic_write_text(Path(cell_dir) / "error.txt", tb or first)
    return first


def _run_inline(
    jobs: Sequence[Job], threads: int | None, on_done: Callable[[Cell, dict | None, str | None], None], progress: bool
) -> None:
    for cell, cell_dir, config in jobs:
        try:
            res = train_cell(cell_dir, config, threads, progress)
        except Exception as exc:  # a failed cell is reported and the others go on
            on_done(cell, None, _record_failure(cell_dir, exc, traceback.format_exc()))
        else:
            on_done(cell, res, None)


def _run_dask(
    client: Any, jobs: Sequence[Job], threads: int | None, on_done: Callable[[Cell, dict | None, str | None], None], log: _GridLog
) -> None:
    from distributed import wait

    futures = {
        client.submit(train_cell, cell_dir, config, threads, pure=False, key=f"airkit-cell-{cell.name}-{time.time_ns()}"): (
            cell,
            cell_dir,
        )
        for cell, cell_dir, config in jobs
    }
    pending = set(futures)
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=HEARTBEAT_S, return_when="FIRST_COMPLETED")
            except TimeoutError:  # no cell finished within the heartbeat: say where the grid stands
                log.line(log.counts(_running(client, pending)))
                continue
            for fut in done:
                cell, cell_dir = futures[fut]
                if fut.status == "finished":
                    on_done(cell, fut.result(), None)
                else:
                    exc = fut.exception()
                    tb = "".join(traceback.format_exception(type(exc), exc, fut.traceback()))
                    on_done(cell, None, _record_failure(cell_dir, exc, tb))
    finally:
        for fut in pending:
            fut.cancel()


def _running(client: Any, pending: set) -> int:
    """Cells being computed now: the pending ones a worker is processing, at most one per worker thread
    (a worker also lists the tasks queued on it as processing)."""
    try:
        keys = {f.key for f in pending}
        listed = sum(1 for ks in client.processing().values() for k in ks if k in keys)
        return min(listed, sum(client.nthreads().values()))
    except Exception:  # pragma: no cover - an old or remote scheduler without processing()
        return 0


def check_placement(where: Mapping[str, Any]) -> None:
    """Refuse contradictory or out-of-range ``run_cells`` placement keywords, each in one line naming it."""
    for name in ("workers", "threads_per_worker"):
        value = where.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SweepError(f"{name} must be an integer >= 1; got {value!r}")
    if where.get("scheduler") is not None and (where.get("workers") is not None or where.get("inline")):
        raise SweepError("--workers and --inline make a local cluster or none; a --scheduler cluster has its own workers")
    if sum(where.get(k) not in (None, False) for k in ("client", "scheduler", "inline")) > 1:
        raise SweepError("give at most one of client, scheduler (--scheduler) and inline (--inline)")


def _collect_cells(cells: Sequence[Cell], out: Path) -> tuple[dict[str, dict], list[str], list[Job]]:
    """Split ``cells`` into finished ones (numbers read back from cell.json, names) and the jobs left to run."""
    results: dict[str, dict] = {}
    skipped = []
    jobs: list[Job] = []
    for cell in cells:
        cell_dir = out / CELLS_DIR / cell.name
        if (cell_dir / "cell.json").exists():
            results[cell.name] = json.loads((cell_dir / "cell.json").read_text())
            skipped.append(cell.name)
        else:
            jobs.append((cell, str(cell_dir), cell.config))
    return results, skipped, jobs


class _OnDone:
    """The per-cell completion callback: records a cell's numbers or error and logs a progress line."""

    def __init__(self, out: Path, n_jobs: int, results: dict[str, dict], failed: dict[str, str], log: _GridLog) -> None:
        self.out, self.n_jobs, self.results, self.failed, self.log = out, n_jobs, results, failed, log
        self.slots = 1  # cells that can run at once (worker threads), for the "running" count

    def __call__(self, cell: Cell, res: dict | None, error: str | None) -> None:
        log, cell_dir = self.log, self.out / CELLS_DIR / cell.name
        if error is not None:
            self.failed[cell.name] = error
            log.failed += 1
            log.line(f"FAILED {cell.label()}: {error} (traceback in {cell_dir / 'error.txt'})")
        elif res is not None and res.get("finished"):
            self.results[cell.name] = res
            (cell_dir / "error.txt").unlink(missing_ok=True)
            log.done += 1
            acc = res.get("test_acc_at_best_val")
            log.line(f"done {cell.label()}" + (f": early-stopped test acc {acc:.3f}" if acc is not None else ""))
        else:  # stop_after ended it early: resumable, neither done nor failed
            log.line(f"stopped {cell.label()} after {res and res.get('epochs_done')} epochs (stop_after); rerun to resume")
        left = self.n_jobs - (log.done + log.failed - log.done_before)
        log.line(log.counts(min(max(0, left), self.slots)))


@contextmanager
def _dask_client(
    client: Any, scheduler: str | None, workers: int | None, threads_per_worker: int | None
) -> Iterator[tuple[Any, Any, int | None]]:
    """``(client, cluster or None, torch threads per cell)``: the given client, or one made here and closed on exit."""
    made = client is None
    cluster = None
    threads = threads_per_worker
    if client is None and scheduler:
        client = _scheduler_client(scheduler)
    elif client is None:
        n_default, threads_default = default_workers(threads_per_worker)
        cluster = _local_cluster(workers or n_default)
        try:
            client, threads = _distributed().Client(cluster), threads_default
        except BaseException:  # the cluster was made here: never leave its worker processes behind
            cluster.close()
            raise
    try:
        yield client, cluster, threads
    finally:
        if made:
            try:
                client.close()
            finally:
                if cluster is not None:
                    cluster.close()


def _run_on_client(
    client: Any, local: bool, scheduler: str | None, jobs: Sequence[Job], threads: int | None, on_done: _OnDone, log: _GridLog
) -> None:
    """Log where the cells run (``local``: on a LocalCluster made here), then run them on ``client``'s workers."""
    info = client.scheduler_info()
    nthreads = {w: d.get("nthreads", 1) for w, d in info.get("workers", {}).items()}
    on_done.slots = max(1, sum(nthreads.values()))
    where = "a local cluster" if local else f"scheduler {info.get('address', scheduler)} (dashboard: {client.dashboard_link})"
    log.line(f"{len(jobs)} cells on {where} with {len(nthreads)} worker(s), {threads or 'default'} torch thread(s) per cell")
    _run_dask(client, jobs, threads, on_done, log)


def run_cells(
    cells: Sequence[Cell],
    out: Path,
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    inline: bool = False,
    progress: bool = True,
) -> tuple[dict[str, dict], dict[str, str], tuple[str, ...]]:
    """Run every unfinished cell; return ``(results, failed, skipped)`` keyed by cell name.

    ``results`` holds the numbers of every finished cell (this session's and earlier ones');
    ``failed`` the first line of each error; ``skipped`` the cells an earlier session finished.
    Where the cells run: see the module docstring.
    """
    out = Path(out)
    check_placement(
        dict(client=client, scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker, inline=inline)
    )
    for cell in cells:
        _check_cell_config(out, cell)
    results, skipped, jobs = _collect_cells(cells, out)
    failed: dict[str, str] = {}
    log = _GridLog(len(cells), len(skipped), progress)
    if skipped:
        log.line(f"{len(skipped)} of {len(cells)} cells finished in an earlier session; running the other {len(jobs)}")
    if not jobs:
        return results, failed, tuple(skipped)
    on_done = _OnDone(out, len(jobs), results, failed, log)
    if inline:
        log.line(f"{len(jobs)} cells to run in this process, one after another")
        _run_inline(jobs, threads_per_worker, on_done, progress)
    else:
        with _dask_client(client, scheduler, workers, threads_per_worker) as (dask_client, cluster, threads):
            _run_on_client(dask_client, cluster is not None, scheduler, jobs, threads, on_done, log)
    return results, failed, tuple(skipped)


def sweep(
    grid: Grid,
    out: Path | str,
    *,
    over: Sequence[str] | None = None,
    **where: Any,
) -> SweepResult:
    """Run every cell of ``grid`` (see the module docstring) and write the sweep's report.

    Parameters
    ----------
    grid : Grid
        From :func:`benchmarks.sweep_grid.make_grid`, :func:`~benchmarks.sweep_grid.grid_from_options`
        or :func:`~benchmarks.sweep_grid.load_grid_file`.
    out : path
        The sweep's folder (created); rerunning with the same folder resumes.
    over : sequence of str
        Axes averaged over in the report (mean ± std); None: ``seed`` when it is an axis, else none.
    **where
        The keywords of :func:`run_cells`: ``client``, ``scheduler``, ``workers``
        (LocalCluster workers), ``threads_per_worker`` (torch threads per cell), ``inline``,
        ``progress``; where the cells run is in the module docstring.

    Returns
    -------
    SweepResult
    """
    from benchmarks.sweep_report import write_report

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} is a file; give a folder for the sweep")
    known = [p.name for p in inspect.signature(run_cells).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(where) - set(known))
    if unknown:
        raise TypeError(f"sweep: unknown keyword(s) {', '.join(unknown)}; where the cells run: {', '.join(known)}")
    check_placement(where)
    if over is None:
        over = ("seed",) if "seed" in grid.axes else ()
    unknown = [k for k in over if k not in grid.axes]
    if unknown:
        raise SweepError(f"--over {','.join(unknown)}: not an axis of the grid; axes: {', '.join(grid.axes) or 'none'}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep.json", {"grid": grid.to_dict(), "environment": environment()})
    t0 = time.perf_counter()
    results, failed, skipped = run_cells(grid.cells, out, **where)
    report = write_report(out, grid, results, failed, over=tuple(over), seconds=time.perf_counter() - t0)
    return SweepResult(out=out, grid=grid, results=results, failed=failed, skipped=skipped, report=report)
