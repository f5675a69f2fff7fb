"""What every model backend offers the scenarios: one measurement path for both architectures.

A backend owns one model (the in-repo Mamba, or a transformers class) and exposes prefill and
a single-token step over an opaque inference state (the SSM cache, or a KV cache). The
scenarios never look inside the model, so both architectures go through the same code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor


class Backend(ABC):
    NAME: ClassVar[str]  # the `impl` recorded in every result row

    def __init__(self, model_cfg, device: torch.device, dtype: torch.dtype):
        self.cfg = model_cfg
        self.device = device
        self.dtype = dtype
        self.model: torch.nn.Module | None = None

    @property
    @abstractmethod
    def arch(self) -> str:
        """'ssm' or 'transformer'."""

    @abstractmethod
    def load(self) -> None:
        """Build (random weights) or read (pretrained, local path) the model onto self.device."""

    @abstractmethod
    def prefill(self, input_ids: Tensor, mode: str = "parallel", chunk_size: int = 1,
                logits_to_keep: int = 1) -> tuple[Tensor, Any]:
        """Run the prompt (b, l). Returns (logits of the last position (b, V), inference state).
        mode 'parallel' is the whole prompt at once; 'sequential' feeds chunk_size tokens at a time."""

    @abstractmethod
    def step(self, token_ids: Tensor, state: Any) -> Tensor:
        """One token per sequence (b,) -> logits (b, V); advances `state`."""

    @abstractmethod
    def state_nbytes(self, state: Any) -> int:
        """Bytes held by the inference state (SSM cache or KV cache)."""

    @abstractmethod
    def as_transformers(self):
        """The loaded model as a transformers PreTrainedModel sharing its weights: what outside
        tools drive (generate(), save_pretrained for AutoModelForCausalLM)."""

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0] if hasattr(self.model, "get_output_embeddings") \
            else self.model.lm_head.weight.shape[0]

    def describe(self) -> dict:
        """Settings recorded with every row of this backend's results."""
        return {"impl": self.NAME, "arch": self.arch}
