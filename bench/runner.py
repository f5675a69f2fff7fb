"""One job: build the backend, run the scenario, write the tidy results of the run directory.

The run directory holds results.csv and results.parquet (one row per measurement), the
resolved config.yaml and meta.json. Every file is written to a temporary name and renamed,
so a killed run leaves no half-written table. A job whose results exist without a failure
row is skipped, so a sweep can be resumed. A job that fails (an exception, an OOM, or a
measuring process that dies) leaves a failure row with the reason instead of results.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bench.environment import environment
from bench.schema import COLUMNS

log = logging.getLogger(__name__)

RESULTS = "results.parquet"
SCENARIOS = {  # scenario name -> module with run(cfg, backend) -> rows
    "generation": "bench.scenarios.generation",
    "crosscheck": "bench.scenarios.crosscheck",
    "implementation": "bench.scenarios.implementation",
    "leaderboard": "bench.scenarios.leaderboard",
    "max_seq_len": "bench.scenarios.max_seq_len",
}


def run_job(cfg, run_dir: Path) -> pd.DataFrame | None:
    """cfg: the validated BenchConfig object. Returns the rows written, or None when skipped."""
    run_dir = Path(run_dir)
    if cfg.skip_existing and is_finished(run_dir):
        log.info("skipping %s: results already there (skip_existing=false reruns it)", run_dir)
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:12]
    started = time.time()
    try:
        rows = _measure_isolated(cfg) if cfg.isolate else measure(cfg)
    except Exception as e:  # noqa: BLE001 — any failure becomes a result row
        log.error("run failed: %s", e)
        rows = [failure_row(e)]
    table = to_table(rows, cfg, run_id)
    meta = {"run_id": run_id, **environment(), "seed": cfg.seed, "start_time": started, "end_time": time.time(),
            "status": "failed" if (table["status"] == "failed").any() else "ok"}
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)).encode())
    write_atomic(run_dir / "meta.json", json.dumps(meta, indent=2, default=str).encode())
    write_atomic(run_dir / "results.csv", table.to_csv(index=False).encode())
    write_atomic(run_dir / RESULTS, table.to_parquet(index=False))  # written last: marks the run finished
    return table


def is_finished(run_dir: Path) -> bool:
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return False
    try:
        return not (pd.read_parquet(path, columns=["status"])["status"] == "failed").any()
    except Exception:  # noqa: BLE001 — unreadable results: run again
        return False


def measure(cfg) -> list[dict]:
    """Build the backend and run the scenario in this process."""
    import torch

    from bench.backends import get_backend_class
    from bench.device import DTYPES, resolve_device

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.hardware.device)
    backend_cls = get_backend_class(cfg.model.impl)
    kwargs = {}
    if cfg.model.impl == "transformers" and hasattr(cfg.scenario, "kv_cache"):
        kwargs = {"kv_cache": cfg.scenario.kv_cache,
                  "max_cache_len": cfg.scenario.prompt_len + cfg.scenario.new_tokens + 1}
    backend = backend_cls(cfg.model, device, DTYPES[cfg.dtype], **kwargs)
    scenario = importlib.import_module(SCENARIOS[cfg.scenario.name])
    if not getattr(scenario, "LOADS_MODEL", False):  # max_seq_len builds it itself (fake tensors)
        backend.load()
    rows = scenario.run(cfg, backend)
    described = {**backend.describe(), "params": backend.num_params(), "vocab_size": backend.vocab_size(),
                 "device": str(device)}
    return [{**described, **row} for row in rows]


def _measure_isolated(cfg) -> list[dict]:
    """measure() in a fresh spawned process: no allocator or cache state leaks between jobs,
    and a crash of the measuring process (killed, out of memory) becomes a failure row."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            return pool.submit(measure, cfg).result()
        except BrokenProcessPool:
            raise RuntimeError("the measuring process died (killed or out of memory)") from None


def failure_row(error: BaseException) -> dict:
    oom = "out of memory" in str(error).lower() or type(error).__name__ == "OutOfMemoryError"
    return {"metric": "error", "value": float("nan"), "unit": None, "status": "failed",
            "error": f"{type(error).__name__}: {error}".splitlines()[0][:500], "oom": oom,
            "traceback": "".join(traceback.format_exception(error))[-4000:]}


def to_table(rows: list[dict], cfg, run_id: str) -> pd.DataFrame:
    """Rows -> a DataFrame with every schema column first, the run's own columns filled in."""
    run_columns = {"run_id": run_id, "scenario": cfg.scenario.name, "model": cfg.model.name,
                   "arch": cfg.model.arch, "impl": cfg.model.impl, "dtype": cfg.dtype,
                   "hardware": cfg.hardware.name, "batch_size": getattr(cfg.scenario, "batch_size", 1),
                   "vocab_size": cfg.model.vocab_size, "weights": cfg.model.weights, "experiment": cfg.experiment}
    table = pd.DataFrame([{**run_columns, "status": "ok", **row} for row in rows])
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


def write_atomic(path: Path, data: bytes):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
