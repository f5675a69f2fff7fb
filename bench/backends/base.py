"""What every model backend offers the scenarios: one measurement path for both architectures.

A backend owns one model (the in-repo Mamba, or a transformers class) and exposes prefill and
a single-token step over an opaque inference state (the SSM cache, or a KV cache). The
scenarios never look inside the model, so both architectures go through the same code.

Trust: a number is only worth recording if the model is what it claims to be and computes
finite values. So backends load checkpoints strictly (models/loading.py's CheckpointError),
say what they loaded (`loaded_description`, `config_mismatches`), apply one vocabulary rule
(`match_vocab`), and check outputs (`probe` after loading, `check_outputs` during a scenario).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

log = logging.getLogger(__name__)

PROBE_TOKENS = 8  # probe(): a seeded random prompt of this length, batch 1


class InvalidOutput(RuntimeError):
    """The model ran but its logits or inference state hold NaN or inf: what it measured is not a
    valid result (the row is `invalid`, not `ok`)."""


class Backend(ABC):
    NAME: ClassVar[str]  # the `impl` recorded in every result row

    def __init__(self, model_cfg, device: torch.device, dtype: torch.dtype):
        self.cfg = model_cfg
        self.device = device
        self.dtype = dtype
        self.model: torch.nn.Module | None = None
        self.vocab_resized_from: int | None = None  # the checkpoint's vocabulary, when match_vocab resized it

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

    @classmethod
    def run_options(cls, cfg) -> dict:
        """Constructor arguments of a decoding scenario's run: what the pairing (bench/pairing.py)
        and the scenario ask of this backend. Backends with no choices take none."""
        return {}

    def prepare_decode(self, batch_size: int) -> list[dict]:
        """Get the decode path ready before anything is timed (compile, capture a graph) and return
        rows about it (compile_time, ...). Eager backends have nothing to prepare."""
        return []

    # ------------------------------------------------------------------ what was loaded

    def build_config(self):
        """The model config the YAML describes (random weights are built from it)."""
        raise NotImplementedError(f"the {self.NAME} backend builds no model config")

    def loaded_description(self) -> dict:
        """What the loaded model really is, whatever the YAML says: a checkpoint brings its own
        sizes. Cheap (config fields); works on fake tensors too. Call after load()."""
        assert self.model is not None, "loaded_description(): call load() first"
        config = self.model.config  # MambaConfig or a transformers config: the same field names
        return {"model_type": config.model_type, "vocab_size": self.vocab_size(),
                "n_layers": config.num_hidden_layers, "d_model": config.hidden_size, "params": self.num_params(),
                "checkpoint": self.cfg.path if self.cfg.weights == "pretrained" else None,
                "vocab_resized_from": self.vocab_resized_from}

    def config_mismatches(self) -> list[str]:
        """Each YAML field the loaded checkpoint contradicts, as "model.vocab_size: config says
        65024, checkpoint has 1024". [] for random weights, which are built from the YAML."""
        if self.cfg.weights != "pretrained":
            return []
        try:
            described = self.build_config()
        except (TypeError, ValueError) as e:
            return [f"model.architecture: not a valid {self.cfg.family} config ({e})"]
        said, default, have = (c.to_dict() for c in (described, type(described)(), self.model.config))
        # Compare the YAML's values as the config class stores them (transformers moves rope_theta
        # into rope_parameters): the fields it sets, or changes from the class's defaults.
        names = [k for k in said if k in self.cfg.architecture or said[k] != default.get(k)]
        yaml_name = {"vocab_size": "model.vocab_size", "model_type": "model.family"}
        return [f"{yaml_name.get(k, 'model.architecture.' + k)}: config says {said[k]!r}, checkpoint has {have.get(k)!r}"
                for k in names if said[k] != have.get(k)]

    def resize_vocab(self, vocab_size: int) -> None:
        """Give embeddings and LM head vocab_size rows (kept rows copied, new ones random)."""
        raise NotImplementedError(f"the {self.NAME} backend cannot resize its vocabulary")

    def match_vocab(self) -> None:
        """The vocabulary rule, the same for every backend, applied after loading a checkpoint.
        With model.match_vocab (the default) a vocabulary that differs from model.vocab_size is
        resized to it, so embeddings and head cost what the other models' do; the new rows are
        random, so use it for speed and memory, not for quality. With match_vocab false the
        checkpoint's vocabulary is kept and config_mismatches() names it."""
        have = self.vocab_size()
        if self.cfg.match_vocab and have != self.cfg.vocab_size:
            log.warning("%s: vocabulary resized from %d to %d (model.match_vocab)", self.cfg.path, have,
                        self.cfg.vocab_size)
            self.resize_vocab(self.cfg.vocab_size)
            self.vocab_resized_from = have

    # ------------------------------------------------------------------ validity

    def state_tensors(self, state: Any) -> list[Tensor]:
        """The tensors of an inference state (bench.memory.trackers.tensors_in walks any cache)."""
        from bench.memory.trackers import tensors_in

        return tensors_in(state)

    def check_outputs(self, logits: Tensor, state: Any = None, where: str = "forward") -> None:
        """Raise InvalidOutput if the logits or any tensor of the inference state hold NaN or inf.
        One isfinite pass per tensor and a single device sync; fake and meta tensors (a simulated
        run) hold no values and are skipped."""
        from bench.memory.trackers import is_fake

        checked = [("logits", logits)] + [("inference state", t) for t in self.state_tensors(state)]
        checked = [(what, t) for what, t in checked
                   if t.numel() and t.device.type != "meta" and not is_fake(t) and t.is_floating_point()]
        if not checked or bool(torch.stack([torch.isfinite(t).all() for _, t in checked]).all()):
            return
        what, bad = next((what, t) for what, t in checked if not bool(torch.isfinite(t).all()))
        share = (~torch.isfinite(bad)).float().mean().item()
        raise InvalidOutput(f"non-finite {what} after {where}: {_percent(share)} of values NaN/inf"
                            + ("" if what == "logits" else f" in a {tuple(bad.shape)} tensor"))

    def probe(self) -> None:
        """Prefill a short seeded random prompt (batch 1, PROBE_TOKENS tokens), then one step, and
        check both: NaN weights or a broken load show here, before anything is measured."""
        generator = torch.Generator().manual_seed(0)
        prompt = torch.randint(0, self.vocab_size(), (1, PROBE_TOKENS), generator=generator).to(self.device)
        logits, state = self.prefill(prompt)
        self.check_outputs(logits, state, where="prefill")
        logits = self.step(logits.argmax(-1), state)
        self.check_outputs(logits, state, where="step")

    def probe_tokens(self, token_ids: Tensor, chunk: int = 4096) -> None:
        """Feed these token ids once each (one sequence per chunk) and check the last logits and
        the state: a non-finite value anywhere in a sequence reaches both, so an embedding row
        that the short probe never read (a token an eval will feed) cannot hide."""
        for start in range(0, token_ids.numel(), chunk):
            ids = token_ids[start:start + chunk].reshape(1, -1).to(self.device)
            logits, state = self.prefill(ids)
            self.check_outputs(logits, state, where=f"a prefill of token ids {start}..{start + ids.shape[1] - 1}")


def _percent(share: float) -> str:
    return f"{share:.0%}" if share >= 0.01 else "<1%"
