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

    make bench-paper     # the paper's a10_24gb table, simulated (experiment=falcon_mamba_paper)
"""

from __future__ import annotations

import dataclasses
import logging
import math

import torch

from bench import schema
from bench.memory.search import SearchResult, TrialResult, search_max_len
from bench.memory.trackers import CudaTracker, MemoryTracker, SimulateTracker, is_fake, make_tracker

log = logging.getLogger(__name__)

BYTES_PER_TOKEN = "bytes/token"


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
                           logits_bytes=math.nan if m.oom else logits_bytes,
                           peak_reserved=math.nan if m.peak_reserved is None else m.peak_reserved)

    return trial



def run(cfg, backend, out_dir=None) -> list[dict]:
    """The harness's entry: cfg is the whole BenchConfig."""
    budget_hardware = cfg.scenario.emulate or cfg.hardware
    rows = search(cfg.scenario, backend, budget_hardware)
    for row in rows:
        row["budget_hardware"] = budget_hardware.name
    return rows


def search(cfg, backend, hardware) -> list[dict]:
    """Search each prefill mode; return tidy rows (see bench/schema.py)."""
    budget = hardware.budget_bytes
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
                           kernels=getattr(hardware, "kernels", "cpu"), segment_addresses=cfg.segment_addresses)
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
    # Where new segments go: an input of the allocator model (a simulation's setting), and what a
    # GPU did (measured here), so that a simulation can be run as the GPU behaved.
    addresses = (tracker.segment_addresses() if isinstance(tracker, CudaTracker)
                 else cfg.segment_addresses if isinstance(tracker, SimulateTracker) and tracker.allocator is not None
                 else None)
    for row in rows:
        row["budget_capped_by_host"] = host_cap is not None and host_cap == budget
        row["segment_addresses"] = addresses  # None where no caching allocator had any (over the config's)
    return rows


def result_rows(cfg, result: SearchResult, mode: str, source: str, budget: int) -> list[dict]:
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
    # Reserved bytes (cuda, or simulated through the allocator model): what a capped GPU runs out
    # of; beside the allocated peak they show what fragmentation costs at the limit.
    if not math.isnan(result.peak_reserved_at_limit):  # the same trial as peak_bytes_at_limit's
        rows.append({**common, "metric": "peak_reserved_at_limit", "value": float(result.peak_reserved_at_limit),
                     "unit": schema.BYTES})
    if cfg.record_trials:
        for t in result.trials:
            rows.append({**common, "metric": "trial_peak_bytes", "value": t.peak_bytes, "unit": schema.BYTES,
                         "prompt_len": t.length, "oom": t.oom, "peak_reserved": t.peak_reserved})
    return rows
