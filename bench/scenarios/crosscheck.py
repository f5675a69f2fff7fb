"""crosscheck: our generation figures beside optimum-benchmark's, for the same model and settings.

optimum-benchmark measured the Falcon Mamba release's throughput and memory figures. This
scenario runs one model through both tools and says whether they agree:

1. `ssm-bench`: the generation scenario's loop (prefill, then backend.step per token), `repeats`
   times after `warmup_tokens` discarded tokens.
2. `ssm-bench:generate`: the same model driven by transformers' generate() (its transformers
   form, backend.as_transformers()) with optimum-benchmark's inputs and kwargs, timed its way:
   prefill ends when the first token's logits reach the logits processors.
3. `optimum-benchmark`: the same model (saved as a transformers checkpoint, so the very same
   random weights) through its inference scenario: pytorch backend, batch, prompt length,
   new tokens, dtype, device, threads and KV cache as above, `repeats` measured generate() calls
   (bench/optimum_runner.py), in a fresh process.

The tools take turns for `rounds` rounds, and the loop runs once more before the first: each
tool's figures span the same stretch of time, so a machine that drifts favours none of them.
The `loop_drift` row (the loop's last pass / its first) says how much the machine drifted: a
ratio outside the tolerance on a machine that drifted as much is not the tools' doing.

Both define decode throughput alike: (new_tokens - 1) * batch over the time from the first
generated token to the last, at the median repeat (the median over passes). Peak memory: on CUDA the allocator's
peak (torch.cuda.max_memory_allocated) on both sides; on CPU the peak process RSS. RSS also counts
a process's libraries, so ours imports optimum-benchmark's too before its model is loaded;
`baseline_rss` rows give each process's RSS at that point.

Rows carry `tool`. For each figure, a `<metric>_ratio` row (ours / optimum-benchmark's) has
`agrees` (|ratio - 1| <= tolerance). `decode_overhead` rows give the extra milliseconds per
generated token of each generate()-driven measurement over our loop: generate() does per-token
work the loop does not (logits processors, stopping criteria, growing the output sequence,
attention masks), which is where the tools part on small, fast models. When `ssm-bench:generate`
agrees with optimum-benchmark, the two tools measure alike and that overhead is the difference.

    make bench-crosscheck          # tiny models on this CPU
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from bench.device import memory_readings, synchronize
from bench.optimum_runner import OptimumSettings, import_optimum_benchmark, run_optimum_benchmark
from bench.scenarios.generation import measure_repeats, random_prompt
from bench.schema import BYTES, CROSSCHECK_TOOLS, RATIO, SECONDS, TOKENS_PER_S

LOOP, GENERATE, OPTIMUM = CROSSCHECK_TOOLS
# metric -> unit, for the figures compared (the CUDA allocator's on CUDA only)
COMPARED = {"decode_throughput": TOKENS_PER_S, "ttft": SECONDS, "peak_rss": BYTES,
            "peak_allocated": BYTES, "peak_reserved": BYTES}


def run(cfg, backend, out_dir=None) -> list[dict]:
    sc = cfg.scenario
    import_optimum_benchmark()  # the same libraries as optimum-benchmark's process: comparable RSS
    baseline_rss = memory_readings(torch.device("cpu"))["rss"]
    backend.load()
    prompt = random_prompt(backend, sc, cfg.seed)
    model = backend.as_transformers()
    # No EOS, as optimum-benchmark sets up a random-weights model: every run makes exactly
    # new_tokens tokens and generate() does no EOS bookkeeping (the loop does none either).
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = None
    static_cache = sc.kv_cache == "static" and backend.arch == "transformer"
    settings = OptimumSettings(
        model_type=model.config.model_type, device=backend.device.type, dtype=cfg.dtype,
        vocab_size=backend.vocab_size(), batch_size=sc.batch_size, prompt_len=sc.prompt_len,
        new_tokens=sc.new_tokens, iterations=sc.repeats, warmup_runs=sc.optimum_warmup_runs,
        threads=cfg.threads, kv_cache="static" if static_cache else "dynamic")
    # The tools take turns, `rounds` times, with the loop before the first turn and after each:
    # every tool's figures then span the same stretch of time, so a machine that drifts (shared
    # cores, clocks) biases none of them, and the loop's first/last ratio shows the drift.
    loop_passes = [_loop_figures(measure_repeats(backend, prompt, sc, cfg.model.name))]
    generate_passes, optimum_passes = [], []
    with tempfile.TemporaryDirectory(prefix="ssm-bench-crosscheck-") as checkpoint:
        model.save_pretrained(checkpoint)
        for _ in range(sc.rounds):
            generate_passes.append(_measure_generate(sc, model, backend.device, prompt, static_cache))
            optimum_passes.append(run_optimum_benchmark(checkpoint, settings))
            loop_passes.append(_loop_figures(measure_repeats(backend, prompt, sc, cfg.model.name)))
    measured = {LOOP: {**_combine(loop_passes), "baseline_rss": baseline_rss,
                       "drift": loop_passes[-1]["decode_throughput"] / loop_passes[0]["decode_throughput"]},
                GENERATE: _combine(generate_passes),
                OPTIMUM: {**_combine(optimum_passes), "baseline_rss": optimum_passes[0]["baseline_rss"]}}
    return _rows(sc, measured)


def _combine(passes: list[dict]) -> dict:
    """One tool's passes -> the median of their speed figures and the largest of their peaks."""
    combined = {}
    for metric in COMPARED:
        values = [p[metric] for p in passes if metric in p]
        if values:
            combined[metric] = max(values) if metric.startswith("peak") else statistics.median(values)
    return combined


def _loop_figures(repeats: list[tuple[float, float, list[dict]]]) -> dict:
    """Median decode throughput and TTFT over the loop's repeats, and its peak memory."""
    windows = [w for _, _, repeat_windows in repeats for w in repeat_windows]
    figures = {"ttft": statistics.median(r[0] for r in repeats),
               "decode_throughput": statistics.median(r[1] for r in repeats)}
    for reading in ("peak_allocated", "peak_reserved"):  # CUDA only
        if windows and reading in windows[0]:
            figures[reading] = max(w[reading] for w in windows)
    # CPU: the largest RSS sampled at window ends; CUDA: the host process's RSS after the run.
    rss = [w["rss"] for w in windows if "rss" in w] or [memory_readings(torch.device("cpu"))["rss"]]
    figures["peak_rss"] = max(rss)
    return figures


class _FirstTokenClock(LogitsProcessor):
    """Notes when generate() hands the first token's logits to the processors: the prefill's end."""

    def __init__(self, device):
        self.device, self.first = device, None

    def __call__(self, input_ids, scores):
        if self.first is None:
            synchronize(self.device)
            self.first = time.perf_counter()
        return scores


@torch.inference_mode()
def _measure_generate(sc, model, device, prompt, static_cache: bool) -> dict:
    """transformers' generate() on the same model: median decode throughput and TTFT."""
    kwargs = {"max_new_tokens": sc.new_tokens, "min_new_tokens": sc.new_tokens, "do_sample": False,
              "num_beams": 1, "use_cache": True,
              "attention_mask": torch.ones_like(prompt)}  # optimum-benchmark's inputs carry one too
    if static_cache:
        kwargs["cache_implementation"] = "static"
    model.generate(prompt, **kwargs)  # warm-up
    ttfts, throughputs = [], []
    for _ in range(sc.repeats):
        clock = _FirstTokenClock(device)
        synchronize(device)
        start = time.perf_counter()
        model.generate(prompt, logits_processor=LogitsProcessorList([clock]), **kwargs)
        synchronize(device)
        end = time.perf_counter()
        ttfts.append(clock.first - start)
        throughputs.append((sc.new_tokens - 1) * sc.batch_size / (end - clock.first))
    return {"decode_throughput": statistics.median(throughputs), "ttft": statistics.median(ttfts)}


def _rows(sc, measured: dict[str, dict]) -> list[dict]:
    common = {"prefill_mode": "parallel", "prompt_len": sc.prompt_len, "step": sc.new_tokens, "source": "measured",
              "repeats": sc.repeats, "rounds": sc.rounds}  # kv_cache: the run's setting (runner.settings)
    theirs = measured[OPTIMUM]
    rows = []
    for metric, unit in COMPARED.items():
        for tool, figures in measured.items():
            if metric in figures:
                rows.append({**common, "tool": tool, "metric": metric, "value": float(figures[metric]), "unit": unit})
            if tool != OPTIMUM and metric in figures and metric in theirs:
                ratio = figures[metric] / theirs[metric] if theirs[metric] else float("nan")
                rows.append({**common, "tool": f"{tool}/{OPTIMUM}", "metric": f"{metric}_ratio", "value": ratio,
                             "unit": RATIO, "agrees": bool(abs(ratio - 1) <= sc.tolerance),
                             "tolerance": sc.tolerance})
    for tool in (LOOP, OPTIMUM):
        rows.append({**common, "tool": tool, "metric": "baseline_rss", "value": float(measured[tool]["baseline_rss"]),
                     "unit": BYTES})
    rows.append({**common, "tool": LOOP, "metric": "loop_drift", "value": measured[LOOP]["drift"], "unit": RATIO})
    loop_ms = 1e3 * sc.batch_size / measured[LOOP]["decode_throughput"]
    for tool in (GENERATE, OPTIMUM):
        rows.append({**common, "tool": f"{tool}-{LOOP}", "metric": "decode_overhead", "unit": "ms/token",
                     "value": 1e3 * sc.batch_size / measured[tool]["decode_throughput"] - loop_ms})
    return rows
