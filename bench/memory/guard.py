"""Protect the host: refuse a CPU job whose memory would exceed what the machine has free.

The estimate is the simulate tracker's (fake tensors: nothing is allocated): the model's
weights, then a prefill plus one step at three short lengths, fitted with a quadratic (a
KV cache and attention scores may grow that fast) and evaluated at the job's longest
sequence, times its batch. A job over `available - margin` becomes a failure row that says
both figures, before anything is loaded for real.
"""

from __future__ import annotations

import gc
import logging

import psutil

from bench.memory.trackers import SimulateTracker

log = logging.getLogger(__name__)

GIB = 2**30
RUNTIME_BYTES = GIB // 2  # Python, torch and the libraries, before any tensor
PROBE_LENGTHS = (256, 512, 1024)


class HostMemoryExceeded(MemoryError):
    """The job's estimated peak does not fit the host's available memory."""


def margin_bytes(total: int) -> int:
    return max(GIB, total // 20)


def host_budget_bytes() -> int:
    """What a job may use: available memory less a margin for the rest of the machine."""
    vm = psutil.virtual_memory()
    return max(0, vm.available - margin_bytes(vm.total))


def longest_sequence(sc) -> int | None:
    if sc.name in ("generation", "crosscheck"):
        from bench.scenarios.generation import longest_sequence as generated

        return None if sc.measure == "simulate" else generated(sc)  # fake tensors cost the host nothing
    if sc.name == "implementation":
        return max(sc.prompt_len, sc.memory_prompt_len) + sc.decode_tokens
    return None  # max_seq_len caps its own trials; leaderboard prompts are short


def check_host_memory(cfg) -> None:
    """Raise HostMemoryExceeded when a CPU job would not fit; a no-op elsewhere."""
    if not cfg.memory_guard or cfg.hardware.device == "cuda":
        return
    length = longest_sequence(cfg.scenario)
    if length is None:
        return
    import torch

    if cfg.hardware.device == "auto" and torch.cuda.is_available():
        return  # the GPU's allocator reports its own OOM
    try:
        estimate = estimate_peak_bytes(cfg, length)
    except Exception as e:  # noqa: BLE001 — an estimate that fails must not stop a job
        log.warning("memory guard: no estimate (%s: %s); running unguarded", type(e).__name__, e)
        return
    budget = host_budget_bytes()
    if estimate > budget:
        raise HostMemoryExceeded(
            f"host memory guard: the job's estimated peak {estimate / GIB:.1f} GiB (sequence {length} x batch "
            f"{getattr(cfg.scenario, 'batch_size', 1)}) exceeds the {budget / GIB:.1f} GiB this host has available "
            f"less a margin; use a smaller prompt_len/new_tokens or memory_guard=false")


def estimate_peak_bytes(cfg, length: int) -> int:
    import torch

    from bench.backends import get_backend_class
    from bench.device import DTYPES
    from bench.scenarios.max_seq_len import load_backend, make_trial

    sc = cfg.scenario
    backend = get_backend_class(cfg.model.impl)(cfg.model, torch.device("cpu"), DTYPES[cfg.dtype])
    tracker = YoungGcTracker("cpu")
    load_backend(backend, tracker)
    tracker.clean()
    weights = tracker.live_bytes()
    mode = getattr(sc, "prefill_mode", "parallel")
    trial = make_trial(backend, tracker, None, mode, getattr(sc, "chunk_size", 1), 1)
    # Sequential prefill runs length/chunk forwards: probe in chunks, so the probe stays short.
    probes = PROBE_LENGTHS if mode == "parallel" else tuple(k * sc.chunk_size for k in (2, 4, 8))
    lengths = [n for n in probes if n < length] + [length] if length <= probes[-1] else list(probes)
    points = [(n, trial(n).peak_bytes - weights) for n in lengths[-3:]]
    return weights + RUNTIME_BYTES + getattr(sc, "batch_size", 1) * int(_extrapolate(points, length))


class YoungGcTracker(SimulateTracker):
    """The simulate tracker, collecting only the young generations between trials: a trial's
    garbage is young, so the estimate is the same (tiny_mamba, tiny_llama: identical bytes), and a
    full collection in a process holding transformers' objects costs ~0.9 s each (4 per job)."""

    def clean(self) -> None:
        gc.collect(1)


def _extrapolate(points: list[tuple[int, float]], x: int) -> float:
    """The quadratic through the last three points (no negative curvature), at x."""
    if len(points) < 3 or points[-1][0] == x:
        return max(p[1] for p in points)
    import numpy as np

    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    c2, c1, c0 = np.polyfit(xs, ys, 2)
    if c2 < 0:
        c1, c0 = np.polyfit(xs, ys, 1)
        c2 = 0.0
    return max(ys.max(), c2 * x * x + c1 * x + c0)
