"""Transformer (and transformers' own Mamba) baselines: the real classes of the transformers library.

The architecture comes from our YAML (no hub), the vocabulary is set to the run's vocab_size,
and the KV cache is transformers' DynamicCache, or a preallocated StaticCache on request.
A local checkpoint (model.path) loads strictly: its config.json must name model.family's
model_type, and every tensor must fit, or the load fails (transformers itself would only print
the misfits and run the rest on random weights).
"""

from __future__ import annotations

import logging

import torch
import transformers
from torch import Tensor

from bench.backends.base import Backend
from models.loading import CheckpointError, read_config_json, tensor_mismatch_error
from models.mamba import WRAPPER_MODEL_TYPE

# family -> (config class, causal-LM class)
CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "falcon_mamba": ("FalconMambaConfig", "FalconMambaForCausalLM"),
    "mamba": ("MambaConfig", "MambaForCausalLM"),
}


class TransformersBackend(Backend):
    NAME = "transformers"

    def __init__(self, model_cfg, device, dtype, kv_cache: str = "dynamic", max_cache_len: int | None = None):
        super().__init__(model_cfg, device, dtype)
        self.kv_cache = kv_cache
        self.max_cache_len = max_cache_len
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

    def _new_cache(self, prompt_len: int):
        if self.kv_cache == "static" and self.arch == "transformer":
            # Room for the prompt and a step, at least: probe()'s prompt may be longer than the scenario's.
            return transformers.StaticCache(config=self.model.config,
                                            max_cache_len=max(self.max_cache_len or 0, prompt_len + 1))
        return None  # transformers creates a DynamicCache

    @torch.inference_mode()
    def prefill(self, input_ids: Tensor, mode="parallel", chunk_size=1, logits_to_keep=1):
        cache = self._new_cache(input_ids.shape[1])
        chunk = input_ids.shape[1] if mode == "parallel" else chunk_size
        for start in range(0, input_ids.shape[1], chunk):
            out = self.model(input_ids[:, start:start + chunk], use_cache=True, logits_to_keep=logits_to_keep,
                             cache=cache)
            cache = _cache_of(out)
        return out.logits[:, -1], cache

    @torch.inference_mode()
    def step(self, token_ids: Tensor, state):
        out = self.model(token_ids.reshape(-1, 1), use_cache=True, cache=state)
        return out.logits[:, -1]

    def as_transformers(self):
        return self.model

    def state_nbytes(self, state) -> int:
        from bench.memory.trackers import storage_nbytes

        return storage_nbytes(state)  # works on fake tensors too (max_seq_len simulate)


def _cache_of(output):
    # transformers 5 names the returned cache `cache` (older outputs: `past_key_values`).
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
