"""One job: build the backend, run the scenario, write the tidy results of the run directory.

The run directory holds results.csv and results.parquet (one row per measurement), the
resolved config.yaml and meta.json (environment, fingerprint, machine load). It is built in a
staging directory and swapped in whole (bench/jobdir.py), so it never mixes two runs.

Every row says what its number is worth (bench/schema.py STATUSES):
- the model is checked before it is measured: strict loading, and a probe whose logits and
  state must be finite (`invalid` otherwise); scenarios check their outputs as they go;
- a failure (exception, OOM, killed process, bad config, host memory guard) is a `failed` row
  with its reason;
- a timing taken while other processes used the CPU, or without the measurement lock, is
  `flagged` (bench/contention.py).
A finished job is skipped on rerun only if its config and code fingerprints are current.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import traceback
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import fields, is_dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bench import jobdir
from bench.jobdir import write_atomic
from bench.contention import LoadMeter, contention_reason, measurement_lock
from bench.environment import environment
from bench.fingerprint import fingerprint
from bench.scenarios import SCENARIOS
from bench.schema import COLUMNS, STATUSES

log = logging.getLogger(__name__)

RESULTS = "results.parquet"
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):
    """The harness received a signal; the job is marked and the process exits 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted: the harness received {signal.Signals(signum).name}")
        self.signum = signum


def run_job(cfg, run_dir: Path, overrides: list[str] | None = None, config_error: Exception | None = None
            ) -> pd.DataFrame | None:
    """cfg: the validated BenchConfig (or, with config_error, the raw config that failed
    validation: the job becomes a failure row). Returns the rows written, or None when skipped."""
    run_dir = Path(run_dir)
    fp = fingerprint(cfg) if config_error is None else None
    if cfg.skip_existing and fp and previous(run_dir, fp) == "current":
        log.info("skipping %s: current results already there (skip_existing=false reruns it)", run_dir)
        return None
    simulated_only = getattr(cfg.scenario, "measure", None) == "simulate"  # fake tensors: nothing timed
    lock = nullcontext(True) if config_error or simulated_only else measurement_lock(Path(cfg.results_dir), cfg.lock)
    # Staged before waiting for the lock: a job killed while it waits is reported as incomplete.
    staging = jobdir.start(run_dir, overrides or [])
    try:
        with _signals_raise(), lock as held:  # a signal while waiting for the lock stops cleanly too
            if cfg.skip_existing and fp and previous(run_dir, fp) == "current":  # another sweep just made it
                log.info("skipping %s: made while this job waited for the lock", run_dir)
                jobdir.discard(staging)
                return None
            with _job_log(staging / "job.log"):
                return _run_in(staging, cfg, run_dir, fp, held, config_error, overrides)
    except BaseException:
        jobdir.discard(staging)
        raise


def _run_in(staging: Path, cfg, run_dir: Path, fp, held: bool, config_error, overrides) -> pd.DataFrame:
    run_id = uuid.uuid4().hex[:12]
    started = time.time()
    interrupted = None
    with LoadMeter() as meter:  # its sampler stops whatever escapes
        try:
            if config_error is not None:
                raise config_error
            rows = _measure_guarded(cfg, staging)
        except Interrupted as e:
            interrupted, rows = e, [failure_row(e)]
        except Exception as e:  # noqa: BLE001 — any failure becomes a result row
            rows = [failure_row(e)]
        load = meter.read()
    table = to_table(rows, cfg, run_id, load, held)
    status = worst_status(table)
    if status == "failed":
        log.error("job failed: %s", table["reason"].dropna().iloc[0])
    meta = {"run_id": run_id, **environment(), "seed": cfg.seed, "start_time": started, "end_time": time.time(),
            # overrides: None when called from Python (no command line to recompose the config from)
            "status": status, "fingerprint": fp, "overrides": overrides, **load}
    _write(staging, cfg, meta, table)
    if status == "failed" and previous(run_dir) in ("current", "stale"):
        log.error("keeping the previous good results in %s; this attempt failed", run_dir)
        jobdir.note_failed_attempt(run_dir, table["reason"].dropna().iloc[0])
        jobdir.discard(staging)
    else:
        jobdir.commit(staging, run_dir)
    if interrupted is not None:
        raise interrupted
    return table


def _write(staging: Path, cfg, meta: dict, table: pd.DataFrame) -> None:
    config = OmegaConf.structured(cfg) if is_dataclass(cfg) else cfg
    write_atomic(staging / "config.yaml", OmegaConf.to_yaml(config).encode())
    write_atomic(staging / "meta.json", json.dumps(meta, indent=2, default=str).encode())
    write_atomic(staging / "results.csv", table.to_csv(index=False).encode())
    write_atomic(staging / RESULTS, table.to_parquet(index=False))


def previous(run_dir: Path, fp: dict | None = None) -> str:
    """'none' (no readable results), 'failed', 'stale' (another config or code than fp) or 'current'."""
    try:
        status = pd.read_parquet(Path(run_dir) / RESULTS, columns=["status"])["status"]
        meta = json.loads((Path(run_dir) / "meta.json").read_text())
    except Exception:  # noqa: BLE001 — unreadable results: run again
        return "none"
    if (status == "failed").any():
        return "failed"
    return "current" if fp is None or meta.get("fingerprint") == fp else "stale"


def is_finished(run_dir: Path) -> bool:
    return previous(run_dir) in ("current", "stale")


def _measure_guarded(cfg, out_dir: Path) -> list[dict]:
    from bench.memory.guard import check_host_memory

    check_host_memory(cfg)
    if not cfg.isolate:
        return measure(cfg, out_dir)
    from bench.isolation import ChildDied, measure_isolated

    try:
        return measure_isolated(cfg, out_dir, out_dir)
    except ChildDied as e:
        return [failure_row(e, oom=e.oom)]


def measure(cfg, out_dir: Path | None = None) -> list[dict]:
    """Build the backend, check it, and run the scenario in this process."""
    import torch

    from bench.backends import get_backend_class
    from bench.backends.base import InvalidOutput
    from bench.device import DTYPES, resolve_device

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.hardware.device)
    spec = SCENARIOS[cfg.scenario.name]
    scenario = spec.load()
    if spec.model == "none":
        try:
            return scenario.run(cfg, None, out_dir)
        except InvalidOutput as e:
            return [{"device": str(device), **invalid_row(e)}]
    backend_cls = get_backend_class(cfg.model.impl)
    # A decoding scenario gets the pairing's cache and decode path (each backend reads its own).
    options = backend_cls.run_options(cfg) if spec.decodes else {}
    backend = backend_cls(cfg.model, device, DTYPES[cfg.dtype], **options)
    # Under measure=simulate every scenario builds the model itself (fake tensors).
    loads_itself = spec.model == "scenario" or getattr(cfg.scenario, "measure", None) == "simulate"
    try:
        if not loads_itself:
            backend.load()
            for mismatch in backend.config_mismatches():
                log.warning("%s", mismatch)
            backend.probe()  # finite logits and state on a short prompt, before anything is timed
        # Compile / graph capture before the scenario: its time is a row of its own, never in a throughput.
        rows = backend.prepare_decode(getattr(cfg.scenario, "batch_size", 1)) \
            if spec.decodes and not loads_itself else []
        rows += scenario.run(cfg, backend, out_dir)
    except InvalidOutput as e:
        rows = [invalid_row(e)]
    described = {**backend.describe(), "device": str(device)}
    if backend.model is not None:
        described.update(backend.loaded_description())
    return [{**described, **row} for row in rows]


def failure_row(error: BaseException, oom: bool | None = None) -> dict:
    if oom is None:
        oom = "out of memory" in str(error).lower() or type(error).__name__ in ("OutOfMemoryError", "BudgetExceeded")
    return {"metric": "error", "value": float("nan"), "unit": None, "status": "failed", "source": "measured",
            "reason": f"{type(error).__name__}: {error}".splitlines()[0][:500], "oom": bool(oom),
            "traceback": "".join(traceback.format_exception(error))[-4000:]}


def invalid_row(error: BaseException) -> dict:
    return {"metric": "validity", "value": float("nan"), "unit": None, "status": "invalid", "source": "measured",
            "reason": str(error).splitlines()[0][:500], "oom": False}


def worst_status(table: pd.DataFrame) -> str:
    """The job's status: the worst of its rows' (failed > invalid > flagged > ok)."""
    present = set(table["status"])
    return next(s for s in reversed(STATUSES) if s in present) if present else "failed"


def settings(cfg) -> dict:
    """The run's scalar settings (scenario fields, seed, threads): columns the report groups by."""
    values = {"seed": cfg.seed, "threads": cfg.threads}
    scenario = cfg.scenario
    names = [f.name for f in fields(scenario)] if is_dataclass(scenario) else list(scenario.keys())
    for name in names:
        value = getattr(scenario, name, None)
        if name != "progress" and (value is None or isinstance(value, (str, int, float, bool))):
            values[name] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
            values[name] = ",".join(map(str, value))  # e.g. a leaderboard's chosen tasks: rows that differ stay apart
    values.pop("name", None)
    if cfg.model.arch == "ssm" and "kv_cache" in values:  # it keeps no KV cache: the pairing's setting is moot
        values["kv_cache"] = None
    return values


def to_table(rows: list[dict], cfg, run_id: str, load: dict | None = None, held_lock: bool = True) -> pd.DataFrame:
    """Rows -> a DataFrame with every schema column first, the run's own columns filled in."""
    run_columns = {"run_id": run_id, "scenario": cfg.scenario.name, "model": cfg.model.name,
                   "arch": cfg.model.arch, "impl": cfg.model.impl, "dtype": cfg.dtype,
                   "hardware": cfg.hardware.name, "batch_size": getattr(cfg.scenario, "batch_size", 1),
                   "vocab_size": cfg.model.vocab_size, "weights": cfg.model.weights, "experiment": cfg.experiment,
                   # A scenario without a language-model backend (vision) is not shaped by the pairing.
                   "pairing": cfg.pairing if SCENARIOS[cfg.scenario.name].model != "none" else None,
                   "tokenizer": getattr(cfg.model, "tokenizer", None),
                   "family": cfg.model.family, "match_vocab": cfg.model.match_vocab,
                   # The YAML's architecture describes random weights; a checkpoint brings its own (the
                   # rows' n_layers, d_model, params and checkpoint say what was loaded).
                   "architecture": ",".join(f"{k}={v}" for k, v in sorted(dict(cfg.model.architecture).items()))
                   if cfg.model.weights == "random" else None}
    run_columns.update({k: v for k, v in settings(cfg).items() if k not in run_columns})
    table = pd.DataFrame([{**run_columns, "status": "ok", "reason": None, **(load or {}), **row} for row in rows])
    _flag(table, cfg, load or {}, held_lock)
    for column in COLUMNS:
        if column not in table:
            table[column] = None
    extra = [c for c in table.columns if c not in COLUMNS]
    table = table[COLUMNS + extra]
    # Columns that mix numbers and None must not trip pyarrow.
    for column in table.columns:
        if table[column].dtype == object:
            values = table[column].dropna()
            if len(values) and not all(isinstance(v, str) for v in values):
                table[column] = table[column].map(lambda v: v if v is None or isinstance(v, str) else str(v)) \
                    if not all(isinstance(v, (int, float, bool)) for v in values) else pd.to_numeric(table[column])
    return table


def _flag(table: pd.DataFrame, cfg, load: dict, held_lock: bool) -> None:
    """Mark measured timings taken on a busy machine or without the lock as flagged."""
    if not SCENARIOS[cfg.scenario.name].timed:
        return
    reasons = [r for r in (contention_reason(load),
                           None if held_lock else "measured without the measurement lock (lock=false)") if r]
    if not reasons:
        return
    hit = (table["status"] == "ok") & (table.get("source", "measured") == "measured")
    table.loc[hit, "status"] = "flagged"
    table.loc[hit, "reason"] = "; ".join(reasons)


@contextmanager
def _job_log(path: Path):
    """The job's log lines, in its own directory."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


@contextmanager
def _signals_raise():
    """SIGTERM/SIGINT/SIGHUP become Interrupted in this (main) thread, so the job is marked
    and the measuring child killed on the way out."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    before = {s: signal.signal(s, handler) for s in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
