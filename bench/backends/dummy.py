"""A dummy backend: the harness with no real model, for tests and for trying a setup in a second.

The model is a bigram LM: an embedding whose transpose is the output head, so the next token
depends on the last one only. Its inference state imitates the architecture the config claims:
`arch: ssm` keeps `hidden_size` floats per sequence however long it gets; `arch: transformer`
appends `hidden_size` floats per token, like a one-layer cache. Scenarios then show the flat or
growing memory they would for a real model, in milliseconds. Like lm-eval's DummyLM, it measures
the harness, not a model: rows say impl=dummy.

    python -m bench hydra.mode=RUN model=dummy                # the generation scenario, ~1 s
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from bench.backends.base import Backend


@dataclass
class DummyState:
    """What the dummy keeps between steps: one row per kept token (b, hidden) in `rows`."""

    rows: list[Tensor] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(row.nbytes for row in self.rows)


class DummyBackend(Backend):
    NAME = "dummy"

    @property
    def arch(self) -> str:
        return self.cfg.arch

    def load(self) -> None:
        hidden = self.cfg.architecture.get("hidden_size", 16)
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(self.cfg.vocab_size, hidden, generator=generator) / hidden**0.5
        self.model = torch.nn.Embedding.from_pretrained(weight.to(self.device, self.dtype))

    @torch.inference_mode()
    def prefill(self, input_ids: Tensor, mode="parallel", chunk_size=1, logits_to_keep=1):
        # A bigram model has nothing to parallelise: every mode feeds the prompt token by token.
        state = DummyState()
        for t in range(input_ids.shape[1]):
            logits = self.step(input_ids[:, t], state)
        return logits, state

    @torch.inference_mode()
    def step(self, token_ids: Tensor, state: DummyState) -> Tensor:
        hidden = self.model(token_ids.reshape(-1))  # (b, hidden)
        if self.arch == "transformer" or not state.rows:
            state.rows.append(hidden.clone())  # a cache grows by one row per token
        else:
            state.rows[0].copy_(hidden)  # a fixed-size state is overwritten in place
        return hidden @ self.model.weight.T  # (b, V)

    def state_nbytes(self, state: DummyState) -> int:
        return state.nbytes

    def state_tensors(self, state: DummyState) -> list[Tensor]:
        return state.rows

    def loaded_description(self) -> dict:
        """The bigram model: no layers, no checkpoint (it never reads one)."""
        return {"model_type": "dummy", "vocab_size": self.vocab_size(), "n_layers": 0,
                "d_model": self.model.embedding_dim, "params": self.num_params(), "checkpoint": None,
                "vocab_resized_from": None}

    def config_mismatches(self) -> list[str]:
        return []  # built from the YAML, always

    def as_transformers(self):
        raise NotImplementedError("the dummy backend has no transformers form: the crosscheck and the evals "
                                  "need a real model (model=tiny_mamba, tiny_llama, ...)")

    def vocab_size(self) -> int:
        return self.cfg.vocab_size
