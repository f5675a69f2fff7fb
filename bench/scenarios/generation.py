"""Generation throughput and memory as the number of generated tokens grows.

Batch `batch_size`, a random prompt of `prompt_len` tokens, then `new_tokens` greedy tokens with
no early stop. The loop is the same for every backend: prefill, then backend.step per token.
Every `window` tokens it records the window's tokens/s and the memory so far (CUDA: peak
allocated and reserved; CPU: process RSS), plus the bytes held by the inference state (the
SSM cache, or the KV cache). Warm-up tokens run first and are discarded; each repeat then
reports time to first token and overall decode throughput, summarised as median/min/max.
The logits and the state are checked finite after the prefill and at every window (outside
the timed spans): a model that produces NaN is invalid, not fast.
"""

from __future__ import annotations

import statistics
import time

import torch
from tqdm import tqdm

from bench.device import memory_readings, reset_peak_memory, synchronize
from bench.schema import BYTES, SECONDS, TOKENS_PER_S


def run(cfg, backend, out_dir=None) -> list[dict]:
    sc = cfg.scenario
    prompt = random_prompt(backend, sc, cfg.seed)
    common = {"prefill_mode": sc.prefill_mode, "chunk_size": sc.chunk_size if sc.prefill_mode == "sequential" else None,
              "prompt_len": sc.prompt_len, "source": "measured", "kv_cache": sc.kv_cache}

    rows, ttfts, throughputs = [], [], []
    for repeat, (ttft, decode_tps, windows) in enumerate(measure_repeats(backend, prompt, sc, cfg.model.name)):
        ttfts.append(ttft)
        throughputs.append(decode_tps)
        for w in windows:
            step = w.pop("step")
            rows += [{**common, "repeat": repeat, "step": step, "metric": m, "value": v,
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
                windows.append({"step": produced, "window_throughput": tps, "state_bytes": backend.state_nbytes(state),
                                **memory_readings(device)})
                bar.update(tokens_in_window)
                bar.set_postfix(tok_s=f"{tps:.0f}")
                window_start = time.perf_counter()
                checking += window_start - now  # the check and the bookkeeping are not timed
    decode_s = time.perf_counter() - decode_start - checking
    decode_tps = (new_tokens - 1) * sc.batch_size / decode_s if new_tokens > 1 else float("nan")
    return first - start, decode_tps, windows
