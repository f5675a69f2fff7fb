"""Builds a results tree like the harness writes, for the report and notebook tests.

`make_results(root)` writes run directories under root/runs and root/multirun: generation runs
for a Mamba (flat throughput, constant state) and a Llama (throughput falling, KV cache growing),
a simulated generation run, a max_seq_len sweep with an unbounded and a weights_exceed_budget
row, an implementation run, a leaderboard run with published rows and one failed task, one run
with only results.csv, a corrupt run (garbage parquet) and a partial run (config.yaml only).
It also has a job of each kind that is not ok: a flagged generation run (contended machine), a
failed one (OOM, as the runner writes it now), a failed one as the runner wrote them before
(`error` column, empty source), an invalid one, a killed one (a staging directory holding
only job.json), and a kept run whose redo failed (meta.json last_attempt).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from bench.fingerprint import code_hash
from bench.schema import COLUMNS

STEPS = [64, 128, 256, 512, 1024, 2048, 4096]
GIB = 2 ** 30
MODELS = {  # name -> run columns
    "mamba-130m": {"arch": "ssm", "impl": "ssm_bench", "params": 129_135_360, "vocab_size": 50_280},
    "llama-160m": {"arch": "transformer", "impl": "transformers", "params": 162_322_944, "vocab_size": 32_000},
    "llama-70b": {"arch": "transformer", "impl": "transformers", "params": 70_553_706_496, "vocab_size": 128_256},
}
META = {"git_sha": "0123456789abcdef0123456789abcdef01234567", "git_dirty": False,
        "versions": {"torch": "2.13.0", "transformers": "4.57.1", "pandas": "3.1.1"},
        "cpu": "Intel Xeon (fixture)", "gpu": "NVIDIA H200 (fixture)", "torch_threads": 2, "seed": 0,
        "start_time": "2025-01-01T12:00:00", "end_time": "2025-01-01T12:03:00"}


def _row(run_id, scenario, model, **kw) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(run_id=run_id, scenario=scenario, model=model, dtype="float16", device="cuda", hardware="h200",
               batch_size=1, source="measured", status="ok", **MODELS.get(model, MODELS["llama-160m"]))
    row.update(kw)
    return row


def write_run(path: Path, rows: list[dict], config: dict, formats=("parquet", "csv"), **meta) -> Path:
    """A run directory as the runner writes it, made by the current code (its fingerprint);
    `meta` adds to (or replaces) META's keys."""
    path.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    if "parquet" in formats:
        df.to_parquet(path / "results.parquet", index=False)
    if "csv" in formats:
        df.to_csv(path / "results.csv", index=False)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    fingerprint = {"code": code_hash(), "config": "fixture"}  # no overrides: the config is not recomposed
    (path / "meta.json").write_text(json.dumps({**META, "fingerprint": fingerprint, **meta}))
    return path


def write_staging(parent: Path, name: str, pid=4_000_000, host="gpu-node-7", **job) -> Path:
    """What a killed job leaves: a hidden staging directory beside its run directory, holding job.json only."""
    path = parent / f".{name}.staging-3f9c2a"
    path.mkdir(parents=True)
    (path / "job.json").write_text(json.dumps({"pid": pid, "host": host, "start_time": "2025-01-01T12:05:00",
                                               "overrides": ["scenario=generation", "model=llama-160m"],
                                               "run_dir": str(parent / name), **job}))
    return path


def failure_row(run_id, scenario, model, reason, legacy=False, **kw) -> dict:
    """A failed job's one row. legacy: as the runner wrote it before (`error`, no source)."""
    why = {"error": reason, "source": None} if legacy else {"reason": reason}
    return _row(run_id, scenario, model, **{"metric": "error", "value": math.nan, "unit": None, "status": "failed",
                                            "oom": False, **why, **kw})


def _config(model: str, scenario: str, weights="random", hardware="h200", bandwidth=4800) -> dict:
    return {"model": {"name": model, "weights": weights}, "scenario": {"name": scenario},
            "hardware": {"name": hardware, "bandwidth_gbps": bandwidth}, "seed": 0}


def generation_rows(model: str, run_id: str, throughput, memory, source="measured", hardware="h200",
                    steps=STEPS, **columns) -> list[dict]:
    """Window rows (two repeats) plus ttft/decode_throughput summaries. throughput/memory: step -> value;
    columns: more columns for every row (settings, status, ...)."""
    common = dict(prefill_mode="parallel", prompt_len=128, source=source, hardware=hardware, **columns)
    weights_bytes = _row(run_id, "generation", model, **common)["params"] * 2
    rows = []
    for repeat in (0, 1):
        jitter = 1 + 0.02 * repeat
        for step in steps:
            rows.append(_row(run_id, "generation", model, step=step, metric="window_throughput",
                             value=throughput(step) * jitter, unit="tokens/s", repeat=repeat, **common))
            rows.append(_row(run_id, "generation", model, step=step, metric="peak_allocated",
                             value=memory(step), unit="bytes", repeat=repeat, **common))
            rows.append(_row(run_id, "generation", model, step=step, metric="state_bytes",
                             value=memory(step) - weights_bytes, unit="bytes", repeat=repeat, **common))
    for metric, unit, values in (("ttft", "s", [0.021, 0.020, 0.024]),
                                 ("decode_throughput", "tokens/s", [throughput(steps[-1] // 2), 0.98 * throughput(
                                     steps[-1] // 2), 1.01 * throughput(steps[-1] // 2)])):
        for stat, v in zip(("median", "min", "max"), values):
            rows.append(_row(run_id, "generation", model, step=steps[-1], metric=metric, value=v, unit=unit,
                             stat=stat, **common))
    return rows


def make_results(root: Path) -> dict[str, Path]:
    runs, multirun = root / "runs", root / "multirun" / "2025-01-01" / "12-00-00"
    paths = {}

    # Generation: Mamba flat (fixed-size state), Llama falling as the KV cache grows.
    mamba_state = 4 * 24 * 768 * 16 * 2
    paths["gen_mamba"] = write_run(runs / "gen_mamba", generation_rows(
        "mamba-130m", "gen_mamba", lambda s: 410.0, lambda s: 129_135_360 * 2 + mamba_state), _config("mamba-130m", "generation"))
    kv_per_token = 2 * 12 * 768 * 2
    llama_memory = lambda s: 162_322_944 * 2 + kv_per_token * (128 + s)  # noqa: E731
    paths["gen_llama"] = write_run(runs / "gen_llama", generation_rows(
        "llama-160m", "gen_llama", lambda s: 520.0 / (1 + s / 1500), llama_memory),
        _config("llama-160m", "generation", weights="pretrained"), formats=("csv",),  # csv only: the fallback
        last_attempt={"status": "failed", "reason": "RuntimeError: the measuring process died", "time": 1735736400})
    paths["gen_sim"] = write_run(runs / "gen_mamba_sim", generation_rows(
        "mamba-130m", "gen_sim", lambda s: 5200.0, lambda s: 129_135_360 * 2 + mamba_state, source="simulated",
        hardware="a100-sim"), _config("mamba-130m", "generation", hardware="a100-sim", bandwidth=2039))

    # Jobs that are not ok: contended, out of memory (new and old failure rows), non-finite, killed.
    paths["gen_flagged"] = write_run(runs / "gen_mamba_contended", generation_rows(
        "mamba-130m", "gen_flagged", lambda s: 250.0, lambda s: 129_135_360 * 2 + mamba_state, status="flagged",
        reason="contended: load1 7.9 on 4 cores", load1=7.9, other_cpu=180.0), _config("mamba-130m", "generation"))
    paths["gen_failed"] = write_run(runs / "gen_llama_oom", [failure_row(
        "gen_failed", "generation", "llama-160m", "OutOfMemoryError: CUDA out of memory", oom=True)],
        _config("llama-160m", "generation"))
    paths["gen_failed_legacy"] = write_run(runs / "gen_llama_died", [failure_row(
        "gen_failed_legacy", "generation", "llama-160m", "RuntimeError: the measuring process died", legacy=True)],
        _config("llama-160m", "generation"))
    paths["gen_invalid"] = write_run(runs / "gen_llama_nan", generation_rows(
        "llama-160m", "gen_invalid", lambda s: 999.0, llama_memory, status="invalid",
        reason="non-finite logits at step 64"), _config("llama-160m", "generation"))
    paths["killed"] = write_staging(runs, "gen_llama_killed")

    # max_seq_len sweep (a Hydra multirun: numbered job dirs, a hidden .hydra dir).
    budget = 24 * GIB
    msl = [
        ("mamba-130m", "parallel", "bounded", 524_288, "activations", 45_000.0),
        ("mamba-130m", "sequential", "unbounded", math.inf, "none", 0.0),
        ("llama-160m", "parallel", "bounded", 98_304, "kv_cache", 240_000.0),
        ("llama-160m", "sequential", "bounded", 131_072, "kv_cache", 180_000.0),
        ("llama-70b", "parallel", "weights_exceed_budget", 0, "weights", math.nan),
    ]
    rows = [_row("msl", "max_seq_len", m, prefill_mode=mode, chunk_size=256 if mode == "sequential" else None,
                 metric="max_prompt_len", value=v, unit="tokens", verdict=verdict, budget_bytes=budget,
                 limiting_factor=lf, slope=slope) for m, mode, verdict, v, lf, slope in msl]
    rows += [_row("msl", "max_seq_len", "mamba-130m", prefill_mode="parallel", metric=metric, value=v * GIB,
                  unit="bytes", verdict="bounded", budget_bytes=budget)
             for metric, v in (("peak_bytes_at_limit", 21.5), ("peak_reserved_at_limit", 23.75))]
    paths["msl"] = write_run(multirun / "0", rows, _config("mamba-130m", "max_seq_len"))
    (multirun / "0" / ".hydra").mkdir()
    (multirun / "0" / ".hydra" / "config.yaml").write_text("not: a run\n")
    (multirun / "multirun.yaml").write_text("hydra: {}\n")

    # Implementation: ours vs transformers on the same weights.
    rows = []
    for prompt_len, (ours_p, ref_p, ours_d, ref_d) in {512: (9000, 6000, 420, 150), 2048: (21000, 9000, 410, 140)}.items():
        for impl, pre, dec in (("ssm_bench", ours_p, ours_d), ("transformers", ref_p, ref_d)):
            kw = dict(impl=impl, prompt_len=prompt_len, prefill_mode="parallel")
            rows += [_row("impl", "implementation", "mamba-130m", metric="prefill_throughput", value=pre, unit="tokens/s", **kw),
                     _row("impl", "implementation", "mamba-130m", metric="decode_throughput", value=dec, unit="tokens/s", **kw),
                     _row("impl", "implementation", "mamba-130m", metric="peak_memory", value=3e8 if impl == "ssm_bench" else 4e8,
                          unit="bytes", **kw)]
        rows += [_row("impl", "implementation", "mamba-130m", prompt_len=prompt_len, metric="speedup",
                      value=ours_d / ref_d, unit="ratio"),
                 _row("impl", "implementation", "mamba-130m", prompt_len=prompt_len, metric="max_logit_diff",
                      value=3e-3, unit="ratio")]
    paths["impl"] = write_run(multirun / "1", rows, _config("mamba-130m", "implementation", weights="pretrained"))

    # Leaderboard: measured and published scores, one task with subtasks only, one failed task.
    rows = []
    scores = {"hellaswag": (0.35, 0.353), "arc_easy": (0.47, 0.48), "lambada_openai": (0.44, 0.443)}
    for model in ("mamba-130m", "llama-160m"):
        shift = 0.0 if model == "mamba-130m" else -0.03
        for task, (measured, published) in scores.items():
            rows.append(_row("lb", "leaderboard", model, metric=task, value=measured + shift, unit="score", task=task,
                             raw=measured + shift, normalized=measured + shift, n_samples=1000, stderr=0.01))
            rows.append(_row("lb", "leaderboard", model, metric=task, value=published + shift, unit="score", task=task,
                             raw=published + shift, normalized=published + shift, source="published"))
        for sub, v in (("abstract_algebra", 0.22), ("anatomy", 0.26)):
            rows.append(_row("lb", "leaderboard", model, metric="mmlu", value=v + shift, unit="score", task="mmlu",
                             subtask=sub, raw=v, normalized=v + shift, n_samples=100))
    rows.append(_row("lb", "leaderboard", "llama-160m", metric="error", value=math.nan, unit="", task="piqa",
                     status="failed", error="RuntimeError: dataset piqa not found offline"))
    paths["leaderboard"] = write_run(runs / "leaderboard", rows, _config("mamba-130m", "leaderboard", weights="pretrained"))

    # Bad runs: garbage parquet (no csv), and a config.yaml with nothing else.
    corrupt = runs / "corrupt"
    corrupt.mkdir(parents=True)
    (corrupt / "results.parquet").write_bytes(b"this is not parquet at all\x00\x01")
    (corrupt / "config.yaml").write_text(yaml.safe_dump(_config("mamba-130m", "generation")))
    (corrupt / "meta.json").write_text(json.dumps(META))
    partial = runs / "partial"
    partial.mkdir(parents=True)
    (partial / "config.yaml").write_text(yaml.safe_dump(_config("llama-160m", "generation")))
    paths.update(corrupt=corrupt, partial=partial)
    return paths
