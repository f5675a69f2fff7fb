"""The in-repo Mamba as a transformers model: AutoConfig / AutoModelForCausalLM on import.

Evaluation harnesses (lm-eval's HFLM, lighteval's transformers backend) expect a
`PreTrainedModel`. This module wraps `models.mamba.MambaLM` in the thinnest one that works:

- `SsmBenchMambaConfig` (model_type "ssm_bench_mamba") stores the `MambaConfig` fields; the
  Mamba flavour goes in `variant` ("mamba" or "falcon_mamba"), since `model_type` names the class.
- `SsmBenchMambaForCausalLM` registers the MambaLM's `backbone` and `lm_head` as its own
  submodules, so its state-dict keys are the checkpoint names (backbone.*, lm_head.*) and
  `save_pretrained` output loads with `MambaLM.from_pretrained` (and back). The MambaLM itself is
  kept as an unregistered attribute and does the forward pass.

Generation carries the constant-size SSM state (a `MambaCache`) through transformers' `generate`:
the first forward (use_cache=True) is a parallel prefill that returns the state in `cache`, and
every later forward feeds only the newest token through `MambaLM.step`. So a tool that drives
the model through `generate` (optimum-benchmark, lighteval) measures the same O(1)-per-token
decode as our own loop. With left padding the cache is not used (see Padding).

Padding: Mamba has no attention mask. Right padding (lm-eval's loglikelihood batches) cannot
change earlier positions of a causal model, but left padding (batched generation) would run the
pad tokens through the state. So rows of a batch whose attention_mask has zeros are run one by
one on their unpadded tokens; their padded positions get logits of 0.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from models.loading import WRAPPER_MODEL_TYPE
from models.mamba import MambaCache, MambaConfig, MambaLM

MODEL_TYPE = WRAPPER_MODEL_TYPE


@dataclass
class CausalLMOutput(ModelOutput):
    """transformers' CausalLMOutput plus the `cache` that generate() hands back to the next step."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    cache: MambaCache | None = None


class _SsmBenchMambaConfigMethods:
    """SsmBenchMambaConfig's methods (its fields are made below, from MambaConfig's)."""

    def __post_init__(self, **kwargs):
        # Validate and fill the derived sizes once, through MambaConfig's own rules.
        resolved = self.to_mamba_config()
        self.intermediate_size = resolved.intermediate_size
        self.time_step_rank = resolved.time_step_rank
        self.mixer_rms_eps = resolved.mixer_rms_eps
        super().__post_init__(**kwargs)

    def to_mamba_config(self) -> MambaConfig:
        return MambaConfig(**{name: getattr(self, _wrapper_name(name)) for name in _MAMBA_FIELDS})

    @classmethod
    def from_mamba_config(cls, config: MambaConfig, **kwargs) -> "SsmBenchMambaConfig":
        return cls(**{_wrapper_name(name): value for name, value in config.to_dict().items()}, **kwargs)


_MAMBA_FIELDS = [f.name for f in fields(MambaConfig)]
# The wrapper's own fields, after MambaConfig's: generate() carries the SSM state (module docstring);
# the special tokens a tokenizer may set.
_WRAPPER_FIELDS = {"use_cache": ("bool", True), "pad_token_id": ("int | None", None),
                   "bos_token_id": ("int | None", None), "eos_token_id": ("int | list[int] | None", None)}


def _wrapper_name(name: str) -> str:
    # model_type names the config class in transformers; MambaConfig's goes in `variant`.
    return "variant" if name == "model_type" else name


def _config_body(namespace: dict) -> None:
    """SsmBenchMambaConfig's class body: MambaConfig's fields, each an annotated class attribute
    with its default, as transformers 5 wants them (it makes every config class a dataclass of
    its annotated attributes, in PreTrainedConfig.__init_subclass__). Generated, so the two
    cannot drift apart."""
    annotations = {}
    for f in fields(MambaConfig):
        annotations[_wrapper_name(f.name)], namespace[_wrapper_name(f.name)] = f.type, f.default
    for name, (annotation, default) in _WRAPPER_FIELDS.items():
        annotations[name], namespace[name] = annotation, default
    namespace.update(__annotations__=annotations, __module__=__name__, __qualname__="SsmBenchMambaConfig",
                     __doc__="MambaConfig's fields (model_type as `variant`) as a transformers config.",
                     model_type=MODEL_TYPE)


SsmBenchMambaConfig = types.new_class("SsmBenchMambaConfig", (_SsmBenchMambaConfigMethods, PreTrainedConfig),
                                      exec_body=_config_body)


class SsmBenchMambaForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = SsmBenchMambaConfig
    config: SsmBenchMambaConfig
    base_model_prefix = "backbone"
    _no_split_modules = ["MambaBlock"]
    _is_stateful = True  # tells generate() not to expect a KV cache
    _tied_weights_keys = {"lm_head.weight": "backbone.embeddings.weight"}

    def __init__(self, config: SsmBenchMambaConfig, mamba: MambaLM | None = None):
        super().__init__(config)
        if mamba is None:
            # Under from_pretrained this runs inside a meta-device context: MambaLM then stays on
            # meta and transformers assigns the checkpoint's tensors.
            mamba = MambaLM(config.to_mamba_config())
        object.__setattr__(self, "mamba", mamba)  # not a submodule: keeps keys as backbone.*
        self.backbone = mamba.backbone
        self.lm_head = mamba.lm_head
        self.post_init()

    def _init_weights(self, module):
        """No-op: MambaLM initialises itself (fast, vectorised) or receives loaded weights."""

    def get_input_embeddings(self):
        return self.backbone.embeddings

    def set_input_embeddings(self, value):
        self.backbone.embeddings = value

    def get_output_embeddings(self):
        return self.lm_head

    def _sync(self):
        """The MambaLM reads self.backbone / self.lm_head: after transformers swaps a submodule or
        re-ties the head (from_pretrained, tie_weights), point the MambaLM at the current ones."""
        if self.mamba.backbone is not self.backbone:
            self.mamba.backbone = self.backbone
        if self.mamba.lm_head is not self.lm_head:
            self.mamba.lm_head = self.lm_head

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, labels: Tensor | None = None,
                logits_to_keep: int = 0, cache: MambaCache | None = None, use_cache: bool | None = None,
                **kwargs) -> CausalLMOutput:
        """input_ids (b, l) -> CausalLMOutput(logits (b, l or k, V) float32, loss if labels).

        With a `cache` (a MambaCache from an earlier call) the tokens continue that state one at a
        time; with use_cache=True and no cache, the output carries a new one. Other keyword
        arguments from generate() (return_dict, ...) are ignored."""
        self._sync()
        if isinstance(cache, MambaCache):  # decoding: the state holds the prefix
            logits = torch.stack([self.mamba.step(input_ids[:, t], cache) for t in range(input_ids.shape[1])], 1)
            return CausalLMOutput(logits=logits.float(), cache=cache)
        padded = _has_padding(attention_mask)
        if use_cache and not padded:  # the prompt: parallel prefill, keep the state
            cache = self.mamba.allocate_inference_cache(input_ids.shape[0])
            logits = self.mamba(input_ids, cache, logits_to_keep=logits_to_keep)
            return CausalLMOutput(logits=logits.float(), cache=cache)
        if padded:
            logits = self._forward_padded(input_ids, attention_mask, logits_to_keep)
        else:
            # MambaLM.forward is inference-only (no autograd through the in-place scan).
            logits = self.mamba(input_ids, logits_to_keep=logits_to_keep)
        logits = logits.float()
        loss = None
        if labels is not None:  # next-token loss, as transformers' causal LMs: shift by one
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def _forward_padded(self, input_ids: Tensor, attention_mask: Tensor, logits_to_keep: int = 0) -> Tensor:
        """Each row on its own kept tokens (mask 1), so pad tokens never enter the SSM state.
        logits_to_keep=k: logits of the last k positions only, (b, k, V), pad positions zero; the
        head then runs on those positions alone (generate() with left padding runs the whole
        sequence every step: a 65k-token head over every position made that the cost)."""
        b, length = input_ids.shape
        start = length - logits_to_keep if 0 < logits_to_keep < length else 0
        out = torch.zeros(b, length - start, self.lm_head.weight.shape[0], device=input_ids.device)
        for i in range(b):
            keep = attention_mask[i].bool()
            wanted = keep[start:]  # kept positions whose logits are returned: the row's last n kept tokens
            n = int(wanted.sum())
            if n:
                out[i, wanted] = self.mamba(input_ids[i, keep][None], logits_to_keep=n)[0].to(out.dtype)  # (n, V)
        return out

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the model makes its own MambaCache on the first forward (not a KV cache)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, cache=None, use_cache=None,
                                      logits_to_keep=None, **kwargs):
        if isinstance(cache, MambaCache):  # the state holds everything but the newest token
            return {"input_ids": input_ids[:, -1:], "cache": cache}
        # The prompt; with left padding the cache is off and every step sees the whole sequence.
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "use_cache": bool(use_cache) and not _has_padding(attention_mask),
                "logits_to_keep": logits_to_keep or 0}


def _has_padding(attention_mask: Tensor | None) -> bool:
    return attention_mask is not None and not bool(attention_mask.all())


def to_hf(model: MambaLM) -> SsmBenchMambaForCausalLM:
    """Wrap a MambaLM without copying: the wrapper shares its parameters."""
    config = SsmBenchMambaConfig.from_mamba_config(model.config)
    return SsmBenchMambaForCausalLM(config, mamba=model).eval()


# MambaConfig's fields that transformers' MambaConfig / FalconMambaConfig have no counterpart for.
NOT_IN_TRANSFORMERS = ("model_type", "scan_chunk_size")


def transformers_config(config: MambaConfig, config_cls) -> PreTrainedConfig:
    """transformers' own config (config_cls: its MambaConfig or FalconMambaConfig, per
    config.model_type) with `config`'s architecture, so that its model takes our state dict. The
    field names are the same by design; theirs derive intermediate_size from `expand` unless it is
    given, and ours always is. Unset ones (mixer_rms_eps of plain Mamba) keep their defaults."""
    return config_cls(**{name: value for name, value in config.to_dict().items()
                         if name not in NOT_IN_TRANSFORMERS and value is not None})


AutoConfig.register(MODEL_TYPE, SsmBenchMambaConfig, exist_ok=True)
AutoModelForCausalLM.register(SsmBenchMambaConfig, SsmBenchMambaForCausalLM, exist_ok=True)


def load_mamba(path, dtype=None) -> MambaLM:
    """A MambaLM from a local directory in any of our formats: ssm_bench_mamba (save_pretrained of
    the wrapper), transformers' Mamba / FalconMamba, or mamba_ssm's (MambaLM.from_pretrained reads
    all of them, strictly)."""
    return MambaLM.from_pretrained(path, dtype=dtype).eval()
