"""batch: generation throughput against batch size, up to the largest batch that fits a budget.

After the Mamba paper's throughput figure: a random prompt of `prompt_len` tokens (2048), then
`new_tokens` greedy tokens (128), for batch 1, 2, 4, ... and the largest batch that fits.

1. The largest batch is searched as max_seq_len searches lengths (bench/memory/search.py:
   geometric growth, then bisection to one sequence), over the batch instead of the length,
   with one of the memory trackers (bench/memory/trackers.py), against the budget of
   `emulate` (default: the job's hardware):
       measure=cuda      the GPU capped to the budget; a trial runs the whole generation
       measure=cpu       live tensor bytes of the whole generation, real tensors
       measure=simulate  fake tensors: the prefill, then the last decode step from a state of
                         prompt_len + new_tokens - 1 tokens (the state only grows, so the last
                         step is the decode's peak); memory only, 7B models on any machine
   A search on live tensor bytes (cpu, simulate) decodes eagerly: a compiled decode step runs
   kernels that no dispatch mode sees (torch.compile refuses to trace under one).
2. Each batch of the sweep is then generated for real (cuda/cpu only) and timed: tokens/s over
   the whole generation (prefill included, as the paper times it: `generation_throughput`) and
   over the decode alone (`decode_throughput`), and the peak memory of the run, per batch.
   Each batch gets its decode path first (on CUDA the pairing's graphs are captured for that
   batch: a `compile_time` row) and one untimed generation (a compiled step recompiles for a
   new batch there), then its repeats; `decode_path` is on every timed row.

Rows carry their batch in `batch_size`; `max_batch` is the search's answer (verdict as
max_seq_len's: bounded, weights_exceed_budget, exceeds_probe_cap).
"""

from __future__ import annotations

import math
import statistics
import contextlib
import time

import torch

from bench import schema
from bench.device import memory_readings, reset_peak_memory, synchronize
from bench.memory.search import TrialResult, search_max_len
from bench.memory.trackers import MemoryTracker, SimulateTracker, make_tracker

# The runner leaves loading to this scenario under measure=simulate (fake tensors); a measured
# search adopts the runner's loaded model.


def sweep(max_batch: int) -> list[int]:
    """1, 2, 4, ... below max_batch, then max_batch itself."""
    batches = [1 << k for k in range(max(0, int(max_batch).bit_length())) if 1 << k < max_batch]
    return batches + [int(max_batch)] if max_batch >= 1 else []


def make_trial(backend, tracker: MemoryTracker, budget: int, sc):
    """trial(batch) -> TrialResult: the generation's peak at this batch, from a clean state."""
    vocab, simulate = backend.vocab_size(), isinstance(tracker, SimulateTracker)

    def trial(batch: int) -> TrialResult:
        if not simulate:
            with torch.inference_mode(), tracker.track(limit_bytes=budget) as m:
                logits, state = _generate(backend, batch, sc)
                state_bytes = backend.state_nbytes(state)
                del logits, state
            return TrialResult(peak_bytes=m.total_bytes, oom=m.oom, state_bytes=math.nan if m.oom else state_bytes)
        # Fake tensors: the prefill's peak, then the last decode step's, from the longest state.
        with torch.inference_mode():
            with tracker.track(limit_bytes=budget) as prefill:
                ids = torch.randint(vocab, (batch, sc.prompt_len), device=backend.device)
                logits, state = backend.prefill(ids, mode=sc.prefill_mode, chunk_size=sc.chunk_size)
                del ids, logits, state
            if prefill.oom:
                return TrialResult(peak_bytes=prefill.total_bytes, oom=True)
            with tracker.track() as _:  # builds the last step's state; its own peak is not the run's
                ids = torch.randint(vocab, (batch, sc.prompt_len + sc.new_tokens - 1), device=backend.device)
                logits, state = backend.prefill(ids, mode=sc.prefill_mode, chunk_size=sc.chunk_size)
                token = logits.argmax(-1)
                del ids, logits
            with tracker.track(limit_bytes=budget) as last:
                backend.step(token, state)
            state_bytes = backend.state_nbytes(state)
            del state, token
        return TrialResult(peak_bytes=max(prefill.total_bytes, last.total_bytes), oom=last.oom,
                           state_bytes=math.nan if last.oom else state_bytes)

    return trial


@contextlib.contextmanager
def eager_decode(backend):
    """Decode eagerly inside the block (a compiled step under a counting dispatch mode fails)."""
    compiled = getattr(backend, "decode_path", None) == "compiled"
    if compiled:
        backend.decode_path = "eager"
    try:
        yield
    finally:
        if compiled:
            backend.decode_path = "compiled"


def _generate(backend, batch: int, sc, generator: torch.Generator | None = None):
    """Prefill (batch, prompt_len) random tokens, then new_tokens - 1 greedy steps."""
    ids = torch.randint(backend.vocab_size(), (batch, sc.prompt_len), generator=generator).to(backend.device)
    logits, state = backend.prefill(ids, mode=sc.prefill_mode, chunk_size=sc.chunk_size)
    for _ in range(sc.new_tokens - 1):
        logits = backend.step(logits.argmax(-1), state)
    return logits, state


@torch.inference_mode()
def time_batch(backend, batch: int, sc, seed: int) -> dict:
    """One timed generation at this batch: tokens/s with and without the prefill, peak memory."""
    device = backend.device
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(backend.vocab_size(), (batch, sc.prompt_len), generator=generator).to(device)
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    logits, state = backend.prefill(ids, mode=sc.prefill_mode, chunk_size=sc.chunk_size)
    token = logits.argmax(-1)
    synchronize(device)
    decode_start = time.perf_counter()
    for _ in range(sc.new_tokens - 1):
        logits = backend.step(token, state)
        token = logits.argmax(-1)
    synchronize(device)
    end = time.perf_counter()
    backend.check_outputs(logits, state, where=f"a generation at batch {batch}")
    out = {"generation_throughput": batch * sc.new_tokens / (end - start), "ttft": decode_start - start,
           "state_bytes": backend.state_nbytes(state), **memory_readings(device)}
    if sc.new_tokens > 1:
        out["decode_throughput"] = batch * (sc.new_tokens - 1) / (end - decode_start)
    return out


UNITS = {"generation_throughput": schema.TOKENS_PER_S, "decode_throughput": schema.TOKENS_PER_S, "ttft": schema.SECONDS}


def run(cfg, backend, out_dir=None) -> list[dict]:
    from bench.scenarios.max_seq_len import load_backend

    sc = cfg.scenario
    hardware = sc.emulate or cfg.hardware
    budget = hardware.budget_bytes
    host_cap = None
    if sc.measure == "cpu":  # real tensors: never aim past what this host can give
        from bench.memory.guard import host_budget_bytes

        host_cap = host_budget_bytes()
        budget = min(budget, host_cap)
    tracker = make_tracker(sc.measure, device=backend.device, cap_bytes=budget, kernels=hardware.kernels)
    load_backend(backend, tracker)
    tracker.clean()
    weights = tracker.live_bytes()
    state_label = "kv_cache" if backend.arch == "transformer" else "ssm_state"
    counted = sc.measure != "cuda"  # live bytes seen by a dispatch mode: eager decode only
    with eager_decode(backend) if counted else contextlib.nullcontext():
        result = search_max_len(make_trial(backend, tracker, budget, sc), budget, weights, 1, sc.max_batch, 2.0, 1,
                                0.0, 3, state_label)
    common = {"prefill_mode": sc.prefill_mode, "chunk_size": sc.chunk_size if sc.prefill_mode == "sequential" else None,
              "prompt_len": sc.prompt_len, "measure": sc.measure, "budget_bytes": budget,
              "budget_hardware": hardware.name, "budget_capped_by_host": host_cap is not None and host_cap == budget}
    search = {**common, "source": tracker.SOURCE, "verdict": result.verdict, "limiting_factor": result.limiting_factor,
              "batch_size": None}  # the search's answer is about every batch
    if counted and hasattr(backend, "decode_path"):
        search["decode_path"] = "eager"  # as the search stepped
    rows = [{**search, "metric": "max_batch", "value": float(result.max_len), "unit": "sequences"},
            {**search, "metric": "peak_bytes_at_limit", "value": result.peak_bytes_at_limit, "unit": schema.BYTES}]
    rows += [{**search, "batch_size": t.length, "metric": "trial_peak_bytes", "value": t.peak_bytes,
              "unit": schema.BYTES, "oom": t.oom} for t in result.trials]
    if isinstance(tracker, SimulateTracker) or not math.isfinite(result.max_len) or result.max_len < 1:
        return rows  # fake tensors time nothing; no batch fitted
    measured = {**common, "source": "measured"}
    batches = sweep(int(result.max_len))
    per_batch: dict[int, list[dict]] = {b: [] for b in batches}
    paths: dict[int, dict] = {}
    for batch in batches:
        if backend.device.type == "cuda" and batch > 1:  # graphs are captured per batch size
            rows += [{**row, "batch_size": batch} for row in backend.prepare_decode(batch)]
        time_batch(backend, batch, sc, cfg.seed)  # warm-up: lazy initialisation, recompilation
        path = paths[batch] = {"decode_path": backend.decode_path} if hasattr(backend, "decode_path") else {}
        for repeat in range(sc.repeats):
            readings = time_batch(backend, batch, sc, cfg.seed + repeat)
            per_batch[batch].append(readings)
            rows += [{**measured, **path, "batch_size": batch, "repeat": repeat, "metric": k, "value": v,
                      "unit": UNITS.get(k, schema.BYTES)} for k, v in readings.items()]
    for batch, readings in per_batch.items():
        for k in ("generation_throughput", "decode_throughput"):
            values = [r[k] for r in readings if k in r]
            if values:
                rows.append({**measured, **paths[batch], "batch_size": batch, "metric": k, "stat": "median",
                             "value": statistics.median(values), "unit": schema.TOKENS_PER_S})
    return rows
