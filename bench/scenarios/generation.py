"""Generation throughput and memory as the number of generated tokens grows.

Batch `batch_size`, a random prompt of `prompt_len` tokens, then `new_tokens` greedy tokens with
no early stop. The loop is the same for every backend: prefill, then backend.step per token.
Every `window` tokens it records the window's tokens/s and the memory so far (CUDA: peak
allocated and reserved; CPU: process RSS), plus the bytes held by the inference state (the
SSM cache, or the KV cache). Warm-up tokens run first and are discarded; each repeat then
reports time to first token and overall decode throughput, summarised as median/min/max.
The logits and the state are checked finite after the prefill and at every window (outside
the timed spans): a model that produces NaN is invalid, not fast.

Two modes (`scenario.mode`, a setting of every row):
- full: the release's literal procedure above, every token generated.
- sampled: the per-token cost at a position depends only on the state there, so for each L in
  `contexts` the state at L is built by a prefill (parallel, or sequential in chunks), and one
  decode window of `window` tokens is timed from it (after `warmup_tokens` untimed steps that are
  part of the L). Rows carry the metric names of the full mode, at the step of the full-mode
  window that starts from the same state (step = L + window + 1 - prompt_len), so both draw on the
  same axes; `context_len` is the state's length when the window starts (both modes). Memory is
  the window's: peaks are reset after the state is built (the prefill's peak is
  `prefill_peak_allocated`). `measure=simulate` runs the sampled mode on fake tensors
  (bench/memory/trackers.py): memory only, no timing, 7B models on any machine, allocating as
  `hardware.kernels` would; one decode step per L.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from tqdm import tqdm

from bench.device import memory_readings, reset_peak_memory, synchronize
from bench.schema import BYTES, SECONDS, TOKENS_PER_S


def longest_sequence(sc) -> int:
    """Tokens the inference state holds at the end of the longest sequence the job runs."""
    if getattr(sc, "mode", "full") == "sampled":
        return max(sc.contexts) + sc.window
    return sc.prompt_len + sc.new_tokens


def window_step(sc, context_len: int) -> int:
    """The step (tokens generated) at the end of the full-mode window that starts from a state
    of context_len tokens: there the state holds prompt_len + step - window - 1 tokens."""
    return context_len + sc.window + 1 - sc.prompt_len


def run(cfg, backend, out_dir=None) -> list[dict]:
    sc = cfg.scenario
    if getattr(sc, "mode", "full") == "sampled":
        return run_sampled(cfg, backend)
    prompt = random_prompt(backend, sc, cfg.seed)
    common = {"prefill_mode": sc.prefill_mode, "chunk_size": sc.chunk_size if sc.prefill_mode == "sequential" else None,
              "prompt_len": sc.prompt_len, "source": "measured"}

    rows, ttfts, throughputs = [], [], []
    for repeat, (ttft, decode_tps, windows) in enumerate(measure_repeats(backend, prompt, sc, cfg.model.name)):
        ttfts.append(ttft)
        throughputs.append(decode_tps)
        for w in windows:
            step, context_len = w.pop("step"), w.pop("context_len")
            rows += [{**common, "repeat": repeat, "step": step, "context_len": context_len, "metric": m, "value": v,
                      "unit": TOKENS_PER_S if m == "window_throughput" else BYTES} for m, v in w.items()]
        rows.append({**common, "repeat": repeat, "step": sc.new_tokens, "metric": "ttft", "value": ttft, "unit": SECONDS})
        if sc.new_tokens > 1:  # one token is the prefill's: no decode was timed, so no figure
            rows.append({**common, "repeat": repeat, "step": sc.new_tokens, "metric": "decode_throughput",
                         "value": decode_tps, "unit": TOKENS_PER_S})
    timed = [("ttft", ttfts, SECONDS)] + ([("decode_throughput", throughputs, TOKENS_PER_S)] if sc.new_tokens > 1 else [])
    for metric, values, unit in timed:
        for stat, fn in (("median", statistics.median), ("min", min), ("max", max)):
            rows.append({**common, "step": sc.new_tokens, "metric": metric, "stat": stat, "value": fn(values),
                         "unit": unit})
    return rows


def random_prompt(backend, sc, seed: int) -> torch.Tensor:
    """(batch_size, prompt_len) token ids, the same for every backend given the seed."""
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, backend.vocab_size(), (sc.batch_size, sc.prompt_len), generator=generator)
    return prompt.to(backend.device)


def measure_repeats(backend, prompt, sc, name: str) -> list[tuple[float, float, list[dict]]]:
    """Warm-up tokens, then sc.repeats generations: (ttft s, decode tokens/s, window records) each."""
    if sc.warmup_tokens:
        _generate(backend, prompt, sc, sc.warmup_tokens, window=sc.warmup_tokens, progress=False)
    return [_generate(backend, prompt, sc, sc.new_tokens, sc.window, sc.progress, desc=f"{name} {r + 1}/{sc.repeats}")
            for r in range(sc.repeats)]


@torch.inference_mode()
def _generate(backend, prompt, sc, new_tokens: int, window: int, progress: bool, desc: str = ""):
    """Greedy generation of new_tokens tokens; returns (ttft s, decode tokens/s, window records)."""
    device = backend.device
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    logits, state = backend.prefill(prompt, mode=sc.prefill_mode, chunk_size=sc.chunk_size)
    token = logits.argmax(dim=-1)
    synchronize(device)
    first = time.perf_counter()
    backend.check_outputs(logits, state, where="prefill")  # a NaN model must not be timed as ok
    decode_start = time.perf_counter()
    checking = 0.0  # seconds of checks and bookkeeping during decode: left out of every timing
    windows, window_start, produced, window_from = [], decode_start, 1, 1  # the prefill produced the first token
    with tqdm(total=new_tokens, desc=desc, disable=not progress, unit="tok", leave=False) as bar:
        bar.update(1)
        while produced < new_tokens:
            logits = backend.step(token, state)
            token = logits.argmax(dim=-1)
            produced += 1
            if produced % window == 0 or produced == new_tokens:
                synchronize(device)
                now = time.perf_counter()
                tokens_in_window, window_from = produced - window_from, produced
                tps = tokens_in_window * sc.batch_size / (now - window_start)
                backend.check_outputs(logits, state, where=f"token {produced}")  # once a window: cheap
                windows.append({"step": produced, "context_len": sc.prompt_len + produced - tokens_in_window - 1,
                                "window_throughput": tps, "state_bytes": backend.state_nbytes(state),
                                **memory_readings(device)})
                bar.update(tokens_in_window)
                bar.set_postfix(tok_s=f"{tps:.0f}")
                window_start = time.perf_counter()
                checking += window_start - now  # the check and the bookkeeping are not timed
    decode_s = time.perf_counter() - decode_start - checking
    decode_tps = (new_tokens - 1) * sc.batch_size / decode_s if new_tokens > 1 else float("nan")
    return first - start, decode_tps, windows


# --- sampled contexts ---------------------------------------------------------------------

def run_sampled(cfg, backend) -> list[dict]:
    """For each repeat, each L of sc.contexts in turn: build the state at L, time a window there."""
    sc = cfg.scenario
    simulate = getattr(sc, "measure", "device") == "simulate"
    common = {"prefill_mode": sc.prefill_mode, "chunk_size": sc.chunk_size if sc.prefill_mode == "sequential" else None,
              "prompt_len": sc.prompt_len, "source": "simulated" if simulate else "measured"}
    rows = []
    if simulate:
        for context_len, readings in simulate_contexts(cfg, backend):
            rows += _context_rows(common, sc, 0, context_len, readings)
        return rows
    generator = torch.Generator().manual_seed(cfg.seed)
    with tqdm(total=sc.repeats * len(sc.contexts), desc=f"{cfg.model.name} contexts", disable=not sc.progress,
              leave=False) as bar:
        for repeat in range(sc.repeats):
            for context_len in sc.contexts:
                prompt = torch.randint(0, backend.vocab_size(), (sc.batch_size, context_len), generator=generator)
                readings = _window_at(backend, prompt.to(backend.device), sc)
                rows += _context_rows(common, sc, repeat, context_len, readings)
                bar.update(1)
                bar.set_postfix(L=context_len, tok_s=f"{readings['window_throughput']:.0f}")
    return rows


def _context_rows(common: dict, sc, repeat: int, context_len: int, readings: dict) -> list[dict]:
    return [{**common, "repeat": repeat, "step": window_step(sc, context_len), "context_len": context_len,
             "metric": m, "value": v, "unit": TOKENS_PER_S if m == "window_throughput" else BYTES}
            for m, v in readings.items()]


@torch.inference_mode()
def _window_at(backend, prompt: torch.Tensor, sc) -> dict:
    """Prefill all but the warm-up tokens of the context, decode the warm-up tokens untimed (the
    state then holds exactly L), then time sc.window decode steps. Returns the window's readings."""
    device, context_len = backend.device, prompt.shape[1]
    warm = min(sc.warmup_tokens, context_len - 1)
    reset_peak_memory(device)
    logits, state = backend.prefill(prompt[:, :context_len - warm], mode=sc.prefill_mode, chunk_size=sc.chunk_size)
    backend.check_outputs(logits, state, where=f"prefill of {context_len - warm} tokens")
    token = logits.argmax(dim=-1)
    for _ in range(warm):
        token = backend.step(token, state).argmax(dim=-1)
    synchronize(device)
    prefill_peak = memory_readings(device).get("peak_allocated")
    reset_peak_memory(device)
    start = time.perf_counter()
    for _ in range(sc.window):
        logits = backend.step(token, state)
        token = logits.argmax(dim=-1)
    synchronize(device)
    elapsed = time.perf_counter() - start
    backend.check_outputs(logits, state, where=f"a window at context {context_len}")
    readings = {"window_throughput": sc.window * sc.batch_size / elapsed, "state_bytes": backend.state_nbytes(state),
                **memory_readings(device)}
    if prefill_peak is not None:
        readings["prefill_peak_allocated"] = prefill_peak
    return readings


def simulate_contexts(cfg, backend):
    """(L, readings) per context on fake tensors. The window's last step is the one simulated
    (the state grows, or stays, through a window, so it holds the window's peak): a prefill of
    L + window - 1 tokens, then one decode step. Readings: the state's bytes after it (as the
    measured window's end), the peak live bytes of that step (`peak_allocated`: what CUDA's
    max_memory_allocated counts) and of the prefill. Allocations follow hardware.kernels
    (bench.memory.fake_kernels); for a GPU profile they are replayed through the model of CUDA's
    caching allocator (bench/memory/allocator.py), whose peak reserved bytes are `peak_reserved`."""
    from bench.scenarios.max_seq_len import load_backend
    from bench.memory.trackers import SimulateTracker

    sc = cfg.scenario
    tracker = SimulateTracker(cfg.hardware.kernels)
    load_backend(backend, tracker)
    for context_len in sc.contexts:
        with torch.inference_mode():
            with tracker.track() as built:
                prompt = torch.randint(backend.vocab_size(), (sc.batch_size, context_len + sc.window - 1),
                                       device=backend.device)
                logits, state = backend.prefill(prompt, mode=sc.prefill_mode, chunk_size=sc.chunk_size)
                token = logits.argmax(dim=-1)
                del prompt, logits
            with tracker.track() as step:
                backend.step(token, state)  # the window's last token
            state_bytes = backend.state_nbytes(state)
            del state, token
        readings = {"state_bytes": state_bytes, "peak_allocated": step.total_bytes,
                    "prefill_peak_allocated": built.total_bytes}
        if tracker.allocator is not None:
            readings["peak_reserved"] = tracker.allocator.peak_reserved
        yield context_len, readings


# --- agreement of the two modes ---------------------------------------------------------------

def agreement(backend, window: int, windows: int, rounds: int, warmup_tokens: int = 16, seed: int = 0) -> list[dict]:
    """Per-window tokens/s of the full mode and of the sampled mode at the same states, over
    `rounds` interleaved rounds (full, sampled, sampled, full, ...: drift hits both alike).
    Windows 2..windows of a generation of windows * window tokens after a 1-token prompt; the
    first window is left out (it has window - 1 tokens and runs straight after the prefill).
    Returns one dict per window: step, context_len, the medians and their ratio (sampled / full),
    the ratio of the best rounds (`best_ratio`: on a busy machine the fastest round is the one
    least slowed by others, as timeit keeps the minimum time), and `load`, the worst of each
    bench.contention reading over the rounds (other processes' CPU use, on average and in their
    busiest second: a contended comparison is flagged, not passed)."""
    from types import SimpleNamespace

    from bench.contention import LoadMeter

    sc = SimpleNamespace(prompt_len=1, new_tokens=windows * window, window=window, batch_size=1,
                         prefill_mode="parallel", chunk_size=1, warmup_tokens=warmup_tokens, progress=False)
    contexts = [k * window for k in range(1, windows)]  # the states the full mode's windows 2.. start from
    prompt = random_prompt(backend, sc, seed)
    generator = torch.Generator().manual_seed(seed)
    full: dict[int, list[float]] = {}
    sampled: dict[int, list[float]] = {}
    _generate(backend, prompt, sc, warmup_tokens + 1, window=warmup_tokens + 1, progress=False)  # warm-up
    loads = []
    for r in range(rounds):
        for mode in (("full", "sampled") if r % 2 == 0 else ("sampled", "full")):
            with LoadMeter() as meter:
                if mode == "full":
                    for w in _generate(backend, prompt, sc, sc.new_tokens, window, progress=False)[2][1:]:
                        full.setdefault(w["step"], []).append(w["window_throughput"])
                else:
                    for context_len in contexts:
                        ids = torch.randint(0, backend.vocab_size(), (1, context_len), generator=generator)
                        tps = _window_at(backend, ids.to(backend.device), sc)["window_throughput"]
                        sampled.setdefault(window_step(sc, context_len), []).append(tps)
                loads.append(meter.read())
    # The worst of each reading over the rounds; NaN (a round too short to read) only if all are.
    busiest = {column: max((load[column] for load in loads if not math.isnan(load[column])), default=math.nan)
               for column in loads[0]}
    out = []
    for step in sorted(full):
        f, s = statistics.median(full[step]), statistics.median(sampled[step])
        out.append({"step": step, "context_len": step - window, "full": f, "sampled": s, "ratio": s / f,
                    "best_ratio": max(sampled[step]) / max(full[step]),
                    "full_spread": (min(full[step]), max(full[step])),
                    "sampled_spread": (min(sampled[step]), max(sampled[step])), "load": busiest})
    return out


def agreement_verdict(results: dict[str, tuple[float, dict]], tolerance: float) -> str:
    """results: model -> (largest |sampled/full - 1| over its windows, its busiest round's load).
    'agree' only when every model ran on a machine measured quiet, within tolerance. A quiet model
    outside it is a disagreement whatever the others say; a contended model's ratios measure the
    neighbours as much as the two modes, and an unmeasured load vouches for nothing: FLAGGED,
    never passed."""
    from bench.contention import MIN_READ_S, contention_reason

    flagged = {name: contention_reason(load) or (f"load unmeasured (rounds under {MIN_READ_S:g} s)"
                                                 if math.isnan(load["other_cpu"]) else None)
               for name, (_, load) in results.items()}
    outside = [name for name, (worst, _) in results.items() if flagged[name] is None and worst > tolerance]
    flags = "; ".join(f"{name}: {reason}" for name, reason in flagged.items() if reason is not None)
    if outside:
        return f"outside tolerance ({', '.join(outside)})" + (f"; FLAGGED, {flags}" if flags else "")
    return f"FLAGGED, {flags}" if flags else "agree"


def main(argv: list[str] | None = None) -> int:
    """python -m bench.scenarios.generation --models tiny_mamba,tiny_llama: full vs sampled per
    window on this machine's CPU (or --device cuda), printed as measured with a verdict (exit 0
    whatever it says)."""
    import argparse

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bench.backends import get_backend_class
    from bench.config import CONFIG_DIR, ConfigError, register_configs
    from bench.device import DTYPES

    parser = argparse.ArgumentParser(prog="python -m bench.scenarios.generation", description=main.__doc__)
    parser.add_argument("--models", default="tiny_mamba,tiny_llama", help="configs/model/ names, comma-separated")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--windows", type=int, default=8, help="windows per full generation")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU's moderate-scale check)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    args = parser.parse_args(argv)
    if args.windows < 2 or args.rounds < 1 or args.window < 1:  # nothing to compare is no agreement
        parser.error(f"--windows must be >= 2 (the first window is left out), --rounds and --window >= 1; "
                     f"got {args.windows}, {args.rounds}, {args.window}")
    if args.threads < 1 or not (math.isfinite(args.tolerance) and args.tolerance > 0):
        parser.error(f"--threads must be >= 1 and --tolerance a number > 0; got {args.threads}, {args.tolerance}")
    names = args.models.split(",")
    known = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
    if unknown := [n for n in names if n not in known]:
        parser.error(f"--models: no configs/model/{unknown[0]}.yaml; one of {', '.join(known)}")
    if args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        parser.error(f"--device: {args.device!r} is not cpu, or cuda on a machine that has one")
    device = torch.device(args.device)
    register_configs()
    model_cfgs = {}
    for name in names:  # every model checked before any is timed (an image classifier generates nothing)
        try:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                model_cfgs[name] = OmegaConf.to_object(compose("config", overrides=[f"model={name}"])).model
        except ConfigError as e:
            parser.error(f"--models: {name}: {e}")
    torch.set_num_threads(args.threads)
    results = {}
    for name, model_cfg in model_cfgs.items():
        backend = get_backend_class(model_cfg.impl)(model_cfg, device, DTYPES[args.dtype])
        backend.load()
        backend.probe()
        print(f"\n{name} ({args.dtype}, {device.type}): tokens/s per {args.window}-token window, "
              f"median of {args.rounds} interleaved rounds")
        print(f"{'step':>6} {'context':>8} {'full':>9} {'sampled':>9} {'ratio':>6} {'best':>6}  "
              "full [min-max]   sampled [min-max]")
        rows = agreement(backend, args.window, args.windows, args.rounds)
        for row in rows:
            (f_lo, f_hi), (s_lo, s_hi) = row["full_spread"], row["sampled_spread"]
            print(f"{row['step']:>6} {row['context_len']:>8} {row['full']:>9.1f} {row['sampled']:>9.1f} "
                  f"{row['ratio']:>6.3f} {row['best_ratio']:>6.3f}  {f_lo:.1f}-{f_hi:.1f}   {s_lo:.1f}-{s_hi:.1f}"
                  + ("" if abs(row["ratio"] - 1) <= args.tolerance else "  outside tolerance"))
        worst = max(abs(row["ratio"] - 1) for row in rows)
        load = rows[0]["load"]
        print(f"largest |sampled/full - 1| over windows: medians {worst:.3f}, best rounds "
              f"{max(abs(row['best_ratio'] - 1) for row in rows):.3f} (tolerance {args.tolerance}); busiest round: "
              f"other processes used {load['other_cpu']:.2f} cores, {load.get('other_cpu_peak', math.nan):.2f} in "
              f"their busiest second (load average {load['load1']:.1f}; nan: a round too short to read)")
        results[name] = (worst, load)
    print(f"\nverdict: {agreement_verdict(results, args.tolerance)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
