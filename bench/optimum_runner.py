"""optimum-benchmark, the tool behind the Falcon Mamba release's figures, run on one of our models.

`run_optimum_benchmark` hands a local HF-format checkpoint to optimum-benchmark's inference
scenario (pytorch backend, latency and memory tracking, greedy generate of exactly new_tokens
tokens) in a fresh spawned process, and returns its figures in our units. The in-repo Mamba goes
through its transformers registration (models/hf.py); the Transformers through their own classes.

Three adaptations, all kept here:
- optimum-benchmark's `no_weights` (random weights) downloads config.json from the hub, which a
  local directory cannot satisfy offline. The caller therefore saves the randomly initialised
  model it built and optimum-benchmark loads that: random weights, and the same ones on both sides.
- optimum-benchmark 0.6.0 imports `transformers.SpecialTokensMixin`, which transformers 5 removed;
  it is only a type alias there, so PreTrainedTokenizerBase stands in (optimum-benchmark PR #338).
- its memory monitor is a multiprocessing.Process, started with fork here (see _measure).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context

MB = 1e6  # optimum-benchmark reports memory in MB


@dataclass(frozen=True)
class OptimumSettings:
    model_type: str  # the checkpoint's config model_type (ssm_bench_mamba, llama, mistral, ...)
    device: str  # cpu | cuda
    dtype: str  # float32 | bfloat16 | float16
    vocab_size: int
    batch_size: int
    prompt_len: int
    new_tokens: int
    iterations: int  # measured generate() calls
    warmup_runs: int
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    kv_cache: str = "dynamic"  # Transformers: dynamic | static (transformers' StaticCache)


def run_optimum_benchmark(model_dir: str, settings: OptimumSettings) -> dict:
    """optimum-benchmark's figures for the checkpoint in model_dir, measured in a fresh process.

    Returns decode_throughput (tokens/s, from the median decode latency), ttft (s, median prefill
    latency), peak_rss (bytes, decode phase), peak_allocated / peak_reserved (bytes, CUDA only),
    baseline_rss (bytes: the process after its imports, before loading the model).
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            return pool.submit(_measure, model_dir, asdict(settings)).result()
        except BrokenProcessPool:
            raise RuntimeError("optimum-benchmark's process died (killed or out of memory)") from None


def import_optimum_benchmark():
    """optimum-benchmark's API with everything a pytorch inference run imports, so that a process
    that compares its memory with one (crosscheck) can carry the same libraries."""
    _patch_transformers()
    try:
        import optimum_benchmark
        import optimum_benchmark.backends.pytorch.backend  # noqa: F401 — imported lazily by launch()
        import optimum_benchmark.scenarios.inference.scenario  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"the crosscheck scenario needs optimum-benchmark: pip install -e '.[crosscheck]' ({e})")
    return optimum_benchmark


def _measure(model_dir: str, settings: dict) -> dict:
    s = OptimumSettings(**settings)
    import torch

    import models.hf  # noqa: F401 — registers ssm_bench_mamba with AutoConfig / AutoModelForCausalLM
    from bench.device import memory_readings

    ob = import_optimum_benchmark()
    # Its memory monitor is a multiprocessing.Process. This process was spawned, so by default the
    # monitor would be too, re-importing torch and transformers (seconds) at every tracked phase;
    # forked, it starts at once. It only polls psutil (or NVML), never torch.
    multiprocessing.set_start_method("fork", force=True)
    if s.threads:
        torch.set_num_threads(s.threads)
    baseline_rss = memory_readings(torch.device("cpu"))["rss"]
    scenario = ob.InferenceConfig(
        latency=True, memory=True, iterations=s.iterations, duration=0, warmup_runs=s.warmup_runs,
        input_shapes={"batch_size": s.batch_size, "sequence_length": s.prompt_len},
        generate_kwargs={"max_new_tokens": s.new_tokens, "min_new_tokens": s.new_tokens})
    backend = ob.PyTorchConfig(
        model=model_dir, device=s.device, device_ids=_cuda_device_ids() if s.device == "cuda" else None,
        no_weights=False, library="transformers", task="text-generation", model_type=s.model_type,
        torch_dtype=s.dtype, model_kwargs={"vocab_size": s.vocab_size},
        cache_implementation="static" if s.kv_cache == "static" else None)
    # Inline: this spawned process is already the benchmark's own process, so the launcher's
    # "only recommended for debugging ... not for benchmarking" warning does not apply here.
    logging.getLogger(ob.InlineConfig.name).setLevel(logging.ERROR)
    config = ob.BenchmarkConfig(name="ssm-bench-crosscheck", launcher=ob.InlineConfig(), scenario=scenario,
                                backend=backend, log_report=False, print_report=False)
    report = ob.Benchmark.launch(config).to_dict()

    decode_s, prefill_s = report["decode"]["latency"]["values"], report["prefill"]["latency"]["values"]
    decode_memory = report["decode"]["memory"]
    figures = {
        "decode_throughput": s.batch_size * (s.new_tokens - 1) / statistics.median(decode_s),
        "ttft": statistics.median(prefill_s),
        "peak_rss": decode_memory["max_ram"] * MB,
        "baseline_rss": baseline_rss,
    }
    if decode_memory.get("max_allocated") is not None:
        figures["peak_allocated"] = decode_memory["max_allocated"] * MB
        figures["peak_reserved"] = decode_memory["max_reserved"] * MB
    return figures


def _patch_transformers():
    """transformers 5 dropped SpecialTokensMixin, which optimum-benchmark 0.6.0 imports for a type
    alias. Importing transformers.trainer re-creates the lazy `transformers` module, so the alias
    is set on the module that is current afterwards."""
    import sys

    import transformers.trainer  # noqa: F401
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    module = sys.modules["transformers"]
    if "SpecialTokensMixin" not in vars(module):
        module.SpecialTokensMixin = PreTrainedTokenizerBase


def _cuda_device_ids() -> str:
    # optimum-benchmark sets CUDA_VISIBLE_DEVICES to these ids: keep the device this job was given.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[0] if visible else "0"
