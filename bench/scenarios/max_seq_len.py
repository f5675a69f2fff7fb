"""max_seq_len: the longest prompt whose prefill plus the first generated token fits a memory budget.

Batch 1, one model and dtype per run, each prefill mode in turn (parallel; sequential in chunks
of chunk_size tokens). The budget is the hardware's memory minus a runtime overhead
(e.g. a10_24gb: 24 GiB - 1 GiB). One trial = a prefill of the prompt like a real engine would
run it (logits for the last `logits_to_keep` positions; 0 = all), then one decode step, from a
clean state, inside a memory tracker (bench/memory/trackers.py):

    measure=cuda      the GPU's allocator, capped to the budget; a real OOM is the verdict
    measure=cpu       live tensor bytes of the real run on this CPU
    measure=simulate  the same count under FakeTensorMode: full 7B/8B configs, no real memory

The search (bench/memory/search.py) grows the prompt geometrically, then bisects; it calls a
prompt length "unbounded" when the measured peak stops growing with length.

    python -m bench.scenarios.max_seq_len --paper     # the paper's a10_24gb table, simulated
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from bench import schema
from bench.memory.search import SearchResult, TrialResult, search_max_len
from bench.memory.trackers import TRACKERS, MemoryTracker, SimulateTracker, is_fake, make_tracker

log = logging.getLogger(__name__)

PREFILL_MODES = ("parallel", "sequential")
BYTES_PER_TOKEN = "bytes/token"


@dataclass
class MaxSeqLenConfig:
    name: str = "max_seq_len"
    measure: str = field(default="simulate", metadata={"help": f"peak memory from: one of {TRACKERS}"})
    modes: list[str] = field(default_factory=lambda: ["parallel", "sequential"],
                             metadata={"help": f"prefill modes to search, from {PREFILL_MODES}"})
    chunk_size: int = field(default=2048, metadata={"help": "tokens per forward in sequential prefill"})
    start_len: int = field(default=1024, metadata={"help": "first probe length (tokens)"})
    max_len: int = field(default=2**20, metadata={"help": "probe cap (tokens): no trial is longer"})
    growth: float = field(default=2.0, metadata={"help": "geometric factor between probes"})
    resolution: int = field(default=256, metadata={"help": "bisection stops when the bracket is this narrow"})
    logits_to_keep: int = field(default=1, metadata={"help": "prefill logits for the last k positions; 0 = all"})
    unbounded_slope_threshold: float = field(
        default=64.0, metadata={"help": "bytes/token: a flatter peak-vs-length slope means unbounded"})
    flat_steps: int = field(default=3, metadata={"help": "geometric steps the slope must stay flat over"})
    record_trials: bool = field(default=True, metadata={"help": "one row per trial (peak vs length)"})
    emulate: Any = field(default=None, metadata={
        "help": "hardware profile whose budget is searched (None: the job's own hardware)"})

    def __post_init__(self):
        if self.measure not in TRACKERS:
            raise ValueError(f"scenario.measure: {self.measure!r} is not one of {list(TRACKERS)}")
        self.modes = list(self.modes)
        if not self.modes or any(m not in PREFILL_MODES for m in self.modes):
            raise ValueError(f"scenario.modes: {self.modes!r} must be a non-empty list from {list(PREFILL_MODES)}")
        for name in ("chunk_size", "start_len", "max_len", "resolution", "flat_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"scenario.{name}: must be >= 1, got {getattr(self, name)}")
        if self.start_len > self.max_len:
            raise ValueError(f"scenario.start_len: {self.start_len} must not exceed max_len {self.max_len}")
        if self.growth <= 1:
            raise ValueError(f"scenario.growth: must be > 1, got {self.growth}")
        if self.logits_to_keep < 0:
            raise ValueError(f"scenario.logits_to_keep: must be >= 0 (0 = all positions), got {self.logits_to_keep}")
        if self.unbounded_slope_threshold < 0:
            raise ValueError(f"scenario.unbounded_slope_threshold: must be >= 0, got {self.unbounded_slope_threshold}")


def budget_bytes(hardware) -> int:
    """hardware.memory_gib - hardware.overhead_gib, in bytes (GiB = 2**30)."""
    return int((hardware.memory_gib - getattr(hardware, "overhead_gib", 0.0)) * 2**30)


def load_backend(backend, tracker: MemoryTracker) -> None:
    """Build the backend's model through the tracker (simulate: inside its FakeTensorMode) and
    count its weights as live. A simulated run needs an unloaded backend: loading a 7B model
    for real first would defeat the point."""
    if backend.model is None:
        if isinstance(tracker, SimulateTracker) and getattr(backend.cfg, "weights", None) == "pretrained":
            backend.cfg = random_twin(backend.cfg)  # fake tensors cannot read real weights
        tracker.build(backend.load)
    elif isinstance(tracker, SimulateTracker) and not is_fake(next(backend.model.parameters())):
        raise ValueError("scenario.measure: simulate builds the model under FakeTensorMode itself; "
                         "pass a backend that is not loaded yet")
    tracker.adopt(backend.model)


def random_twin(model_cfg):
    """The pretrained model's architecture with random weights: fake tensors cannot read a real
    checkpoint, and its memory depends on its shapes only."""
    import dataclasses

    if model_cfg.impl == "ssm_bench":
        from models.loading import read_config

        found = dataclasses.asdict(read_config(model_cfg.path))
    else:
        from transformers import AutoConfig

        found = AutoConfig.from_pretrained(model_cfg.path, local_files_only=True).to_dict()
    vocab = model_cfg.vocab_size if model_cfg.match_vocab else found["vocab_size"]
    meta = ("vocab_size", "model_type", "architectures", "transformers_version", "_name_or_path", "dtype", "torch_dtype")
    architecture = {k: v for k, v in found.items() if k not in meta}
    return dataclasses.replace(model_cfg, weights="random", path=None, vocab_size=vocab, architecture=architecture)


def make_trial(backend, tracker: MemoryTracker, budget: int, mode: str, chunk_size: int,
               logits_to_keep: int):
    """trial(length) -> TrialResult: prefill a random prompt (1, length), then one decode step."""
    vocab = backend.vocab_size()

    def trial(length: int) -> TrialResult:
        state_bytes, logits_bytes = math.nan, math.nan
        with tracker.track(limit_bytes=budget) as m:
            input_ids = torch.randint(vocab, (1, length), device=backend.device)  # inside: counted
            logits, state = backend.prefill(input_ids, mode=mode, chunk_size=chunk_size,
                                            logits_to_keep=logits_to_keep)
            logits = backend.step(logits.argmax(-1), state)  # the first generated token
            state_bytes = backend.state_nbytes(state)
            # The largest logits tensor of the prefill: kept positions of one forward x vocab.
            per_forward = length if mode == "parallel" else min(chunk_size, length)
            kept = per_forward if logits_to_keep == 0 else min(logits_to_keep, per_forward)
            logits_bytes = kept * vocab * logits.element_size()
            del input_ids, logits, state
        return TrialResult(peak_bytes=m.total_bytes, oom=m.oom,
                           state_bytes=math.nan if m.oom else state_bytes,
                           logits_bytes=math.nan if m.oom else logits_bytes)

    return trial


# The runner leaves loading to this scenario: under measure=simulate the model must be built
# inside FakeTensorMode, never for real.
LOADS_MODEL = True


def run(cfg, backend, out_dir=None) -> list[dict]:
    """The harness's entry: cfg is the whole BenchConfig."""
    budget_hardware = cfg.scenario.emulate or cfg.hardware
    rows = search(cfg.scenario, backend, budget_hardware)
    for row in rows:
        row["budget_hardware"] = budget_hardware.name
    return rows


def search(cfg: MaxSeqLenConfig, backend, hardware) -> list[dict]:
    """Search each prefill mode; return tidy rows (see bench/schema.py)."""
    budget = budget_bytes(hardware)
    host_cap = None
    if cfg.measure == "cpu":  # real tensors: never aim past what this host can give
        from bench.memory.guard import host_budget_bytes

        host_cap = host_budget_bytes()
        if host_cap < budget:
            log.warning("max_seq_len: the %s budget (%.1f GiB) exceeds this host's available memory; searching "
                        "up to %.1f GiB (the rows say budget_capped_by_host)", hardware.name, budget / 2**30,
                        host_cap / 2**30)
            budget = host_cap
    tracker = make_tracker(cfg.measure, device=backend.device, cap_bytes=budget,
                           kernels=getattr(hardware, "kernels", "cpu"))
    load_backend(backend, tracker)
    if not isinstance(tracker, SimulateTracker):  # real weights: finite outputs, or the run is invalid
        backend.probe()
    tracker.clean()
    weights = tracker.live_bytes()
    state_label = "kv_cache" if backend.arch == "transformer" else "ssm_state"
    rows = []
    for mode in cfg.modes:
        trial = make_trial(backend, tracker, budget, mode, cfg.chunk_size, cfg.logits_to_keep)
        result = search_max_len(trial, budget, weights, cfg.start_len, cfg.max_len, cfg.growth, cfg.resolution,
                                cfg.unbounded_slope_threshold, cfg.flat_steps, state_label)
        rows += result_rows(cfg, result, mode, tracker.SOURCE, budget)
    for row in rows:
        row["budget_capped_by_host"] = host_cap is not None and host_cap == budget
    return rows


def result_rows(cfg: MaxSeqLenConfig, result: SearchResult, mode: str, source: str, budget: int) -> list[dict]:
    common = {
        "prefill_mode": mode, "chunk_size": cfg.chunk_size if mode == "sequential" else None,
        "batch_size": 1, "source": source, "measure": cfg.measure, "budget_bytes": budget,
        "resolution": cfg.resolution, "logits_to_keep": cfg.logits_to_keep, "verdict": result.verdict,
        "slope": result.slope, "limiting_factor": result.limiting_factor, "n_trials": len(result.trials),
    }
    rows = [
        {**common, "metric": "max_prompt_len", "value": float(result.max_len), "unit": schema.TOKENS},
        {**common, "metric": "peak_bytes_at_limit", "value": result.peak_bytes_at_limit, "unit": schema.BYTES},
        {**common, "metric": "slope_bytes_per_token", "value": result.slope, "unit": BYTES_PER_TOKEN},
    ]
    for part, nbytes in result.components.items():  # weights, kv_cache/ssm_state, logits, activations
        rows.append({**common, "metric": f"{part}_bytes_at_limit", "value": float(nbytes), "unit": schema.BYTES})
    if cfg.record_trials:
        for t in result.trials:
            rows.append({**common, "metric": "trial_peak_bytes", "value": t.peak_bytes, "unit": schema.BYTES,
                         "prompt_len": t.length, "oom": t.oom})
    return rows


def main(argv: list[str] | None = None) -> Any:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.scenarios.max_seq_len", description=__doc__.split("\n")[0])
    parser.add_argument("--paper", action="store_true", help="the paper's table: 7B/8B models on a10_24gb, simulated")
    parser.add_argument("--overhead-gib", type=float, default=1.0, help="runtime overhead taken off the 24 GiB")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--models", default=None, help="comma-separated subset of the paper models")
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--out", default=None, help="write every row as CSV here")
    args = parser.parse_args(argv)
    if not args.paper:
        parser.error("only --paper is available standalone; other runs go through the harness (python -m bench)")
    from bench.memory import paper

    rows = paper.paper_table(overhead_gib=args.overhead_gib, dtypes=args.dtypes.split(","),
                             models=args.models.split(",") if args.models else None,
                             chunk_size=args.chunk_size, resolution=args.resolution)
    print(paper.format_table(rows))
    if args.out:
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.out, index=False)
    return rows


if __name__ == "__main__":
    main()
