"""The paper's max-prompt-length table: Falcon Mamba 7B, Llama-3.1-8B and Mistral-7B-v0.1 on an
A10 (24 GiB), simulated under FakeTensorMode on this CPU, float32 and bfloat16, both prefill modes.

All three use vocab_size 65024 (Falcon Mamba's), so embeddings and LM heads match. Falcon Mamba
runs as the in-repo MambaLM (its chunked scan has an allocation twin for simulation);
transformers' FalconMamba slow path loops over tokens and would take hours under fake tensors.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The paper's models, by their config names in configs/model/ (the same YAML the Hydra app uses).
PAPER_MODELS = ("falcon_mamba_7b", "llama_3_1_8b", "mistral_7b")


def _config(group: str, name: str, schema):
    """configs/<group>/<name>.yaml as a validated schema object (its `defaults` entry names it)."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(CONFIGS / group / f"{name}.yaml"))
    values.pop("defaults", None)
    return schema(**values)


def model_config(name: str):
    from bench.config import ModelConfig
    from bench.pairing import natural_impl

    cfg = _config("model", name, ModelConfig)
    cfg.impl = natural_impl(cfg)  # no run, no pairing: the default one's (the in-repo Mamba)
    return cfg


def make_backend(model: str, dtype):
    """An unloaded backend of the harness's registry for one paper model (random weights)."""
    import torch

    from bench.backends import get_backend_class

    model_cfg = model_config(model)
    return get_backend_class(model_cfg.impl)(model_cfg, torch.device("cpu"), dtype)


def paper_table(overhead_gib: float = 1.0, dtypes=("float32", "bfloat16"), models=None,
                modes=("parallel", "sequential"), chunk_size: int = 2048, resolution: int = 1024,
                start_len: int = 1024, max_len: int = 2**20) -> list[dict]:
    """Rows of the max_seq_len scenario for every paper model x dtype, simulated."""
    import torch

    from bench.scenarios.max_seq_len import MaxSeqLenConfig, search

    from bench.config import HardwareConfig

    dtype_of = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    hardware = _config("hardware", "a10_24gb", HardwareConfig)
    hardware.overhead_gib = overhead_gib
    cfg = MaxSeqLenConfig(measure="simulate", modes=list(modes), chunk_size=chunk_size, resolution=resolution,
                          start_len=start_len, max_len=max_len)
    rows = []
    for model in models or PAPER_MODELS:
        for dtype in dtypes:
            backend = make_backend(model, dtype_of[dtype])
            start = time.perf_counter()
            run_rows = search(cfg, backend, hardware)
            seconds = time.perf_counter() - start
            print(f"[max_seq_len] {model} {dtype}: {seconds:.0f} s", file=sys.stderr, flush=True)
            for row in run_rows:
                row.update(model=model, arch=backend.arch, impl=backend.NAME, dtype=dtype, hardware=hardware.name,
                           scenario=cfg.name, wall_s=seconds)
            rows += run_rows
            backend.model = None  # drop the fake model before the next one
    return rows


def format_table(rows: list[dict]) -> str:
    """One line per model x dtype x mode: the verdict, the length, and what limits it."""
    gib = 2**30
    by_key: dict[tuple, dict] = {}
    for r in rows:
        by_key.setdefault((r["model"], r["dtype"], r["prefill_mode"]), {}).update(
            {r["metric"]: r["value"], **{k: r[k] for k in ("verdict", "limiting_factor", "chunk_size", "wall_s",
                                                             "n_trials", "budget_bytes")}})
    head = (f"{'model':<17} {'dtype':<9} {'prefill':<14} {'verdict':<22} {'max prompt':>11} "
            f"{'peak GiB':>9} {'weights GiB':>11} {'slope B/tok':>12} {'limited by':<12} {'trials':>6} {'s':>6}")
    lines = [f"budget {next(iter(by_key.values()))['budget_bytes'] / gib:.2f} GiB" if by_key else "", head,
             "-" * len(head)]
    for (model, dtype, mode), r in by_key.items():
        mode_s = mode if mode == "parallel" else f"sequential/{r['chunk_size']}"
        n = r["max_prompt_len"]
        n_s = "inf" if n == math.inf else ("-" if math.isnan(n) else f"{int(n):,}")
        peak = r.get("peak_bytes_at_limit", math.nan)
        lines.append(f"{model:<17} {dtype:<9} {mode_s:<14} {r['verdict']:<22} {n_s:>11} "
                     f"{peak / gib:>9.2f} {r['weights_bytes_at_limit'] / gib:>11.2f} "
                     f"{r['slope_bytes_per_token']:>12,.0f} {r['limiting_factor']:<12} {r['n_trials']:>6} "
                     f"{r['wall_s']:>6.0f}")
    return "\n".join(lines)
