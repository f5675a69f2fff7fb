"""Transformer (and transformers' own Mamba) baselines: the real classes of the transformers library.

The architecture comes from our YAML (no hub), the vocabulary is set to the run's vocab_size,
and the KV cache is transformers' DynamicCache, or a preallocated StaticCache on request.
Decode runs eager, or (decode="compile", bench/pairing.py's best pairing) as the model under
torch.compile over the StaticCache: mode="reduce-overhead" (CUDA graphs) on CUDA; on a CPU,
where no graphs exist, the fastest of CPU_PATHS (eager over either cache, compiled over the
static one), measured before the scenario starts: the rows record the cache and path that ran.
One StaticCache is kept and reset for each new sequence, as transformers' generate() does, so
the compiled step (and its graphs) always sees the same tensors: one live sequence at a time.
A local checkpoint (model.path) loads strictly: its config.json must name model.family's
model_type, and every tensor must fit, or the load fails (transformers itself would only print
the misfits and run the rest on random weights).
"""

from __future__ import annotations

import logging
import time

import torch
import transformers
from torch import Tensor

from bench.backends.base import Backend
from bench.device import synchronize
from bench.schema import SECONDS, TOKENS_PER_S
from models.loading import WRAPPER_MODEL_TYPE, CheckpointError, read_config_json, tensor_mismatch_error

# family -> (config class, causal-LM class)
CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "falcon_mamba": ("FalconMambaConfig", "FalconMambaForCausalLM"),
    "mamba": ("MambaConfig", "MambaForCausalLM"),
}


class TransformersBackend(Backend):
    NAME = "transformers"

    @classmethod
    def run_options(cls, cfg) -> dict:
        from bench import pairing
        from bench.scenarios.generation import longest_sequence

        return {"kv_cache": cfg.scenario.kv_cache, "max_cache_len": longest_sequence(cfg.scenario) + 1,
                "decode": pairing.decode(cfg)}

    def __init__(self, model_cfg, device, dtype, kv_cache: str = "dynamic", max_cache_len: int | None = None,
                 decode: str = "eager"):
        super().__init__(model_cfg, device, dtype)
        if decode not in DECODES:
            raise ValueError(f"decode: {decode!r} is not one of {list(DECODES)}")
        if decode == "compile" and kv_cache != "static":
            raise ValueError("decode: compile needs the static KV cache (fixed shapes); got kv_cache=" + kv_cache)
        self.kv_cache = kv_cache
        self.max_cache_len = max_cache_len
        self.decode = decode
        self.decode_path = "eager"  # what step() runs: eager | compiled (set by prepare_decode)
        self._compiled = None
        self._static = None  # the StaticCache reused by every sequence
        if device.type == "cpu":  # "install causal_conv1d": a CUDA-only package, nothing to do on a CPU
            transformers.logging.get_logger("transformers.integrations.hub_kernels").setLevel(logging.ERROR)

    @property
    def arch(self) -> str:
        return "ssm" if self.cfg.family in ("mamba", "falcon_mamba") else "transformer"

    def build_config(self):
        config_cls = getattr(transformers, CLASSES[self.cfg.family][0])
        return config_cls(vocab_size=self.cfg.vocab_size, **self.cfg.architecture)

    def load(self) -> None:
        model_cls = getattr(transformers, CLASSES[self.cfg.family][1])
        if self.cfg.weights == "pretrained":
            self.model = self._from_pretrained(model_cls)
            self.match_vocab()
            self.model.to(self.device)
        else:
            with torch.device(self.device):
                self.model = model_cls._from_config(self.build_config(), dtype=self.dtype)
        self.model.eval()

    def _from_pretrained(self, model_cls):
        path, expected = self.cfg.path, model_cls.config_class.model_type
        found = read_config_json(path).get("model_type")  # also: a missing directory, by name
        if found != expected:
            hint = "; it is the in-repo Mamba's format: use model.impl=ssm_bench" if found == WRAPPER_MODEL_TYPE else ""
            raise CheckpointError(f"{path}: config.json has model_type {found!r}, "
                                  f"model.family={self.cfg.family} expects {expected!r}{hint}")
        model, info = model_cls.from_pretrained(path, dtype=self.dtype, local_files_only=True,
                                                output_loading_info=True, ignore_mismatched_sizes=True)
        error = tensor_mismatch_error(path, info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"])
        if error or info["error_msgs"]:
            raise error or CheckpointError(f"{path}: {info['error_msgs'][0]}".splitlines()[0])
        return model

    def resize_vocab(self, vocab_size: int) -> None:
        self.model.resize_token_embeddings(vocab_size)

    def _new_cache(self, batch_size: int, prompt_len: int):
        if self.kv_cache != "static" or self.arch != "transformer":
            return None  # transformers creates a DynamicCache (or its Mamba's cache)
        # Room for the prompt and a step, at least: probe()'s prompt may be longer than the scenario's,
        # and prepare_decode()'s timed decode on a CPU runs CALIBRATION_STEPS after its own prompt.
        length = max(self.max_cache_len or 0, prompt_len + 1, CALIBRATION_PROMPT + CALIBRATION_STEPS + 1)
        cache = self._static
        layer = cache.layers[0] if cache is not None else None
        if layer is not None and layer.max_cache_len >= length and getattr(layer, "batch_size", batch_size) == batch_size:
            cache.reset()  # same tensors, same addresses: the compiled step's graphs stay valid
            return cache
        self._static = transformers.StaticCache(config=self.model.config, max_cache_len=length)
        return self._static

    @torch.inference_mode()
    def prefill(self, input_ids: Tensor, mode="parallel", chunk_size=1, logits_to_keep=1):
        cache = self._new_cache(*input_ids.shape)
        chunk = input_ids.shape[1] if mode == "parallel" else chunk_size
        for start in range(0, input_ids.shape[1], chunk):
            out = self.model(input_ids[:, start:start + chunk], use_cache=True, logits_to_keep=logits_to_keep,
                             cache=cache)
            cache = _cache_of(out)
        return out.logits[:, -1], cache

    @torch.inference_mode()
    def step(self, token_ids: Tensor, state):
        if self.decode_path == "compiled":
            return self._compiled_step(token_ids, state)
        out = self.model(token_ids.reshape(-1, 1), use_cache=True, cache=state)
        return out.logits[:, -1]

    def _compiled_step(self, token_ids: Tensor, state) -> Tensor:
        if self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs may be overwritten
        out = self._compiled(token_ids.reshape(-1, 1), use_cache=True, cache=state)
        return out.logits[:, -1].clone()  # a graph's output buffer is reused by the next replay

    def prepare_decode(self, batch_size: int) -> list[dict]:
        """decode="compile": compile the decode step (its time is the compile_time row); on CUDA keep
        it, on a CPU time each of CPU_PATHS and keep the fastest (every figure is a row)."""
        if self.decode != "compile":
            return []
        cuda = self.device.type == "cuda"
        mode = "reduce-overhead" if cuda else "default"  # reduce-overhead means CUDA graphs: none on a CPU
        self._compiled = torch.compile(self.model, mode=mode, fullgraph=True)
        common = {"source": "measured", "compile_mode": mode, "batch_size": batch_size}
        start = time.perf_counter()
        self._decode_tokens(batch_size, COMPILE_WARMUP_STEPS, compiled=True)  # traces, compiles, records graphs
        rows = [{**common, "metric": "compile_time", "value": time.perf_counter() - start, "unit": SECONDS,
                 "decode_path": "compiled", "kv_cache": "static", "step": COMPILE_WARMUP_STEPS}]
        if cuda:
            self.decode_path = "compiled"
            return rows
        rates = {}
        for path, cache in CPU_PATHS:
            self.kv_cache = cache
            rates[path, cache] = self._decode_tokens(batch_size, CALIBRATION_STEPS, compiled=path == "compiled")
        chosen = max(rates, key=rates.get)
        self.decode_path, self.kv_cache = chosen
        if self.kv_cache != "static":  # the losers' cache must not stay allocated into the measurements
            self._static = None
        return rows + [{**common, "metric": "decode_path_throughput", "value": rate, "unit": TOKENS_PER_S,
                        "decode_path": path, "kv_cache": cache, "step": CALIBRATION_STEPS,
                        "chosen": (path, cache) == chosen} for (path, cache), rate in rates.items()]

    @torch.inference_mode()
    def _decode_tokens(self, batch_size: int, steps: int, compiled: bool) -> float:
        """tokens/s of `steps` greedy decode steps after a short seeded prompt (best of 3 runs)."""
        generator = torch.Generator().manual_seed(0)
        prompt = torch.randint(0, self.vocab_size(), (batch_size, CALIBRATION_PROMPT), generator=generator)
        best = 0.0
        for _ in range(1 if steps == COMPILE_WARMUP_STEPS else 3):
            logits, cache = self.prefill(prompt.to(self.device))
            token = logits.argmax(-1)
            synchronize(self.device)
            start = time.perf_counter()
            for _ in range(steps):
                logits = self._compiled_step(token, cache) if compiled else \
                    self.model(token.reshape(-1, 1), use_cache=True, cache=cache).logits[:, -1]
                token = logits.argmax(-1)
            synchronize(self.device)
            best = max(best, steps * batch_size / (time.perf_counter() - start))
        self.check_outputs(logits, cache, where="the decode-path check")
        return best

    def describe(self) -> dict:
        described = {**super().describe(), "decode_path": self.decode_path}
        if self.arch == "transformer":
            described["kv_cache"] = self.kv_cache  # what ran: a CPU's best may have chosen the dynamic one
        if self.model is not None:
            described["attn_implementation"] = self.model.config._attn_implementation
        return described

    def as_transformers(self):
        return self.model

    def state_nbytes(self, state) -> int:
        from bench.memory.trackers import storage_nbytes

        return storage_nbytes(state)  # works on fake tensors too (max_seq_len simulate)


DECODES = ("eager", "compile")
COMPILE_WARMUP_STEPS = 3  # compiled steps run while compiling (dynamo, inductor, graph recording)
CALIBRATION_STEPS = 32  # decode steps timed per path on a CPU
# (decode path, KV cache) tried on a CPU under decode="compile". Without graphs the compiled step
# saves only Python overhead, and the static cache attends over its whole length at every step,
# so eager over the dynamic cache (release's path) can be the fastest: best must include it.
CPU_PATHS = (("eager", "dynamic"), ("eager", "static"), ("compiled", "static"))
CALIBRATION_PROMPT = 8


def _cache_of(output):
    # transformers 5 names the returned cache `cache` (older outputs: `past_key_values`).
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
