"""The longest prompt that fits a memory budget: geometric growth, then bisection.

The search knows nothing about models. It calls `trial(length) -> TrialResult`, which runs one
prefill (plus the first generated token) from a clean state and reports its peak:

    1. weights alone over the budget: stop, verdict "weights_exceed_budget" (no trial runs);
    2. grow the length geometrically from start_len (x growth) until a trial does not fit,
       or the probe cap max_len is reached;
       after each fitting probe, fit the slope of peak bytes against length over the last
       flat_steps + 1 fitting probes: below slope_threshold bytes/token, memory has stopped
       growing with the prompt, and the verdict is "unbounded" (decided from measurements only);
    3. bisect between the last fitting and the first failing length down to `resolution` tokens:
       verdict "bounded", max_len = the longest length that fitted; "none_fits" (max_len 0) when not
       even the shortest length tried fitted.
    A prompt that still fits at max_len without a flat slope gets "exceeds_probe_cap".

At the limit, the peak is split into weights, inference state (KV cache or SSM state), logits
and the rest (activations); the largest part after the weights is the limiting factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

VERDICTS = ("bounded", "unbounded", "weights_exceed_budget", "exceeds_probe_cap", "none_fits")


@dataclass
class TrialResult:
    peak_bytes: float  # total at the peak: weights + state + logits + activations (+ anything live)
    oom: bool  # did not fit: a real OOM, or the peak passed the budget
    state_bytes: float = math.nan  # inference state after prefill + one step (nan if it OOMed)
    logits_bytes: float = math.nan  # the largest logits tensor the prefill made
    peak_reserved: float = math.nan  # the caching allocator's peak reserved bytes (nan: none, as on a CPU)
    length: int = 0  # filled in by the search


@dataclass
class SearchResult:
    verdict: str
    max_len: float  # tokens; inf when unbounded, nan when the weights alone exceed the budget
    peak_bytes_at_limit: float  # the peak of the trial at max_len (nan if none fitted)
    slope: float  # bytes per token: least squares over the largest fitting lengths (nan if < 2)
    limiting_factor: str  # "weights", the state label, "logits", "activations"; "none" if no limit found
    components: dict = field(default_factory=dict)  # bytes at the limit, by part
    trials: list[TrialResult] = field(default_factory=list)
    peak_reserved_at_limit: float = math.nan  # the caching allocator's, for the same trial as peak_bytes_at_limit


def fitted_slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of bytes against length, in bytes per token."""
    if len(points) < 2:
        return math.nan
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else math.nan


def search_max_len(
    trial: Callable[[int], TrialResult],
    budget_bytes: float,
    weights_bytes: float,
    start_len: int = 1024,
    max_len: int = 2**20,
    growth: float = 2.0,
    resolution: int = 256,
    slope_threshold: float = 64.0,
    flat_steps: int = 3,
    state_label: str = "state",
) -> SearchResult:
    assert 1 <= start_len <= max_len, f"need 1 <= start_len ({start_len}) <= max_len ({max_len})"
    assert growth > 1, f"growth must be > 1, got {growth}"
    trials: list[TrialResult] = []

    def run(length: int) -> TrialResult:
        result = trial(length)
        result.length = length
        trials.append(result)
        return result

    if weights_bytes > budget_bytes:
        return SearchResult("weights_exceed_budget", math.nan, math.nan, math.nan, "weights",
                            {"weights": weights_bytes}, trials)

    # 1. Geometric growth.
    fits: list[TrialResult] = []  # fitting probes, in order
    length, first_fail = start_len, None
    while True:
        result = run(length)
        if result.oom:
            first_fail = length
            break
        fits.append(result)
        window = [(r.length, r.peak_bytes) for r in fits[-(flat_steps + 1):]]
        if len(window) == flat_steps + 1 and fitted_slope(window) < slope_threshold:
            return _at_limit("unbounded", math.inf, result, fitted_slope(window), weights_bytes, state_label, trials)
        if length >= max_len:
            return _at_limit("exceeds_probe_cap", length, result, fitted_slope(window), weights_bytes,
                             state_label, trials)
        length = min(max_len, max(length + 1, math.ceil(length * growth)))

    # 2. Bisection between the longest fit (0: even start_len failed) and the first failure.
    lo, hi = (fits[-1].length if fits else 0), first_fail
    best = fits[-1] if fits else None
    while hi - lo > resolution and hi - lo > 1:
        mid = (lo + hi) // 2
        result = run(mid)
        if result.oom:
            hi = mid
        else:
            lo, best = mid, result
    fitting = sorted((r.length, r.peak_bytes) for r in trials if not r.oom)
    slope = fitted_slope(fitting[-(flat_steps + 1):])
    if best is None:  # not even the shortest probe fitted: no limit, and nothing measured to blame
        return SearchResult("none_fits", 0, math.nan, slope, "unmeasured", {"weights": weights_bytes}, trials)
    return _at_limit("bounded", lo, best, slope, weights_bytes, state_label, trials)


def _at_limit(verdict: str, max_len: float, at: TrialResult, slope: float, weights_bytes: float,
              state_label: str, trials: list[TrialResult]) -> SearchResult:
    """Split the peak of the trial at the limit into its parts and name the largest non-weight one."""
    state = 0.0 if math.isnan(at.state_bytes) else at.state_bytes
    logits = 0.0 if math.isnan(at.logits_bytes) else at.logits_bytes
    parts = {state_label: state, "logits": logits,
             "activations": max(0.0, at.peak_bytes - weights_bytes - state - logits)}
    factor = "none" if verdict in ("unbounded", "exceeds_probe_cap") else max(parts, key=parts.get)
    return SearchResult(verdict, max_len, at.peak_bytes, slope, factor, {"weights": weights_bytes, **parts}, trials,
                        peak_reserved_at_limit=at.peak_reserved)
