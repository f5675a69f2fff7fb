"""The in-repo Mamba (models/) as a backend: prefill and step over its constant-size cache.

A checkpoint (model.path) is loaded as what it is (models/loading.py, strict): its config.json
decides the sizes and the Mamba flavour, and config_mismatches() lists where the YAML disagrees.
"""

from __future__ import annotations

from models.mamba import MambaCache, MambaConfig, MambaLM
from models.ops import scan_backend

from bench.backends.base import Backend


class MambaBackend(Backend):
    NAME = "ssm_bench"

    @property
    def arch(self) -> str:
        return "ssm"

    def build_config(self) -> MambaConfig:
        return MambaConfig(model_type=self.cfg.family, vocab_size=self.cfg.vocab_size, **self.cfg.architecture)

    def load(self) -> None:
        if self.cfg.weights == "pretrained":
            self.model = MambaLM.from_pretrained(self.cfg.path, dtype=self.dtype, device=self.device)
            self.match_vocab()
        else:
            self.model = MambaLM(self.build_config(), device=self.device, dtype=self.dtype)
        self.model.eval()

    def prefill(self, input_ids, mode="parallel", chunk_size=1, logits_to_keep=1):
        return self.model.prefill(input_ids, mode=mode, chunk_size=chunk_size, logits_to_keep=logits_to_keep)

    def step(self, token_ids, state: MambaCache):
        return self.model.step(token_ids, state)

    def state_nbytes(self, state: MambaCache) -> int:
        return state.nbytes

    def state_tensors(self, state: MambaCache | None) -> list:
        return [] if state is None else [state.conv, state.ssm]

    def resize_vocab(self, vocab_size: int) -> None:
        self.model.resize_token_embeddings(vocab_size)

    def as_transformers(self):
        from models.hf import to_hf  # the in-repo Mamba's transformers registration

        return to_hf(self.model)

    def num_params(self) -> int:
        return self.model.num_params()

    def describe(self) -> dict:
        # Which scan/state-update code ran (mamba_ssm, triton, C, torch): called after the scenario.
        return {**super().describe(), "kernels": ",".join(sorted(scan_backend.used))}

    def vocab_size(self) -> int:
        return self.model.config.vocab_size
