"""The in-repo Mamba against transformers' (Falcon)MambaForCausalLM on identical weights.

One process, same weights, same loops: the reference model is built from the in-repo model's
config and takes its state dict (the parameter names are the checkpoints'). Measured:
- max_logit_diff: agreement of the logits on a short prompt;
- prefill_throughput: parallel prefill of prompt_len tokens computing every position's logits,
  as transformers' forward does;
- decode_throughput: decode_tokens single-token steps through each model's cache;
- prefill_peak_bytes: extra memory of a parallel prefill of memory_prompt_len tokens with
  last-position logits (CUDA: the allocator's peak; CPU: live tensor bytes tracked per op);
and the in-repo/transformers ratio of each ("speedup", "memory_ratio").
"""

from __future__ import annotations

import statistics

import torch
import transformers

from bench.backends.transformers import CLASSES, TransformersBackend
from bench.device import timed_calls
from bench.memory.trackers import make_tracker
from bench.schema import BYTES, RATIO, TOKENS_PER_S
from models.hf import transformers_config


def run(cfg, backend, out_dir=None) -> list[dict]:
    if backend.NAME != "ssm_bench":
        raise ValueError(f"scenario implementation compares the in-repo Mamba; model.impl is {backend.NAME!r}")
    sc = cfg.scenario
    reference = TransformersBackend(cfg.model, backend.device, backend.dtype)
    reference.model = reference_model(backend.model).to(backend.device).eval()
    generator = torch.Generator().manual_seed(cfg.seed)
    vocab = backend.vocab_size()
    prompt = torch.randint(0, vocab, (sc.batch_size, sc.prompt_len), generator=generator).to(backend.device)

    rows, results = [], {}
    diff_ids = prompt[:, :64]
    with torch.inference_mode():
        ours, theirs = backend.model(diff_ids), reference.model(diff_ids, use_cache=False).logits
    backend.check_outputs(ours, where="the in-repo model's agreement check")
    backend.check_outputs(theirs, where="transformers' agreement check")
    max_diff = (ours.float() - theirs.float()).abs().max().item()
    rows.append({"metric": "max_logit_diff", "value": max_diff, "unit": "logit", "impl": "ssm_bench",
                 "step": diff_ids.shape[1], "prompt_len": diff_ids.shape[1],
                 "logit_scale": theirs.float().abs().max().item()})

    for impl, which in (("ssm_bench", backend), ("transformers", reference)):
        logits, state = which.prefill(prompt)  # the timed prompt gives finite outputs (checked untimed)
        which.check_outputs(logits, state, where=f"{impl}'s prefill of the timed prompt")
        del logits, state
        prefill = _median_rate(lambda: which.prefill(prompt, logits_to_keep=0), sc.prompt_len * sc.batch_size,
                               sc.warmup, sc.repeats, backend.device)
        decode = _median_rate(lambda: _decode(which, prompt[:, :1], sc.decode_tokens), sc.decode_tokens * sc.batch_size,
                              sc.warmup, sc.repeats, backend.device)
        results[impl] = {"prefill_throughput": prefill, "decode_throughput": decode}
        results[impl]["prefill_peak_bytes"] = _prefill_peak_bytes(which, sc.memory_prompt_len, vocab)
        for metric, value in results[impl].items():
            rows.append({"metric": metric, "value": value, "impl": impl,
                         "unit": BYTES if metric.endswith("bytes") else TOKENS_PER_S,
                         "prompt_len": sc.memory_prompt_len if metric.endswith("bytes") else sc.prompt_len,
                         "prefill_mode": "parallel", "logits_to_keep": 1 if metric.endswith("bytes") else 0})
    for metric in results["ssm_bench"]:
        ratio = results["ssm_bench"][metric] / results["transformers"][metric]
        rows.append({"metric": "memory_ratio" if metric.endswith("bytes") else "speedup", "value": ratio,
                     "unit": RATIO, "impl": "ssm_bench", "of": metric})
    for row in rows:
        # Two implementations of one architecture, both decoding eagerly: no pairing of architectures.
        row.update(pairing=None, decode_path="eager")
        row.setdefault("source", "measured")
        row.setdefault("reference", f"transformers {transformers.__version__}")
    return rows


def reference_model(model) -> torch.nn.Module:
    """transformers' own implementation with the in-repo model's config and weights."""
    cfg = model.config
    config_cls, model_cls = (getattr(transformers, name) for name in CLASSES[cfg.model_type])
    config = transformers_config(cfg, config_cls)
    dtype = model.lm_head.weight.dtype
    with torch.device("meta"):
        reference = model_cls(config)
    reference.load_state_dict(model.state_dict(), strict=False, assign=True)
    reference.to(dtype)
    if cfg.tie_word_embeddings:
        reference.tie_weights()
    missing = [n for n, p in reference.named_parameters() if p.is_meta]
    assert not missing, f"reference model has unloaded parameters: {missing}"
    for name, buffer in reference.named_buffers():  # FalconMamba's unused norm weights
        if buffer.is_meta:
            *path, attr = name.split(".")
            reference.get_submodule(".".join(path)).register_buffer(attr, torch.ones(buffer.shape), persistent=False)
    return reference


def _decode(backend, first_token, n: int):
    logits, state = backend.prefill(first_token)
    token = logits.argmax(-1)
    for _ in range(n):
        token = backend.step(token, state).argmax(-1)


def _median_rate(fn, tokens: int, warmup: int, repeats: int, device) -> float:
    return statistics.median(tokens / s for s in timed_calls(fn, device, repeats, warmup))


def _prefill_peak_bytes(backend, length: int, vocab: int) -> int:
    """Peak bytes allocated above the starting point during a last-logit parallel prefill."""
    prompt = torch.randint(0, vocab, (1, length)).to(backend.device)
    tracker = make_tracker("cuda" if backend.device.type == "cuda" else "cpu", device=backend.device)
    with torch.inference_mode(), tracker.track() as measurement:
        backend.prefill(prompt, logits_to_keep=1)
    if measurement.oom:
        raise torch.OutOfMemoryError(f"prefill of {length} tokens: {measurement.error}")
    return measurement.peak_bytes
