"""The ssm_bench backend (model.impl=ssm_bench): the in-repo Mamba (models/mamba.py), prefill and
step over its constant-size cache.

A checkpoint (model.path) is loaded as what it is (models/loading.py, strict): its config.json
decides the sizes and the Mamba flavour, and config_mismatches() lists where the YAML disagrees.

decode="graph" (bench/pairing.py's best pairing) replays the whole decode step as one CUDA graph
(models/cuda_graph.py) on CUDA; the graph owns one cache, which every prefill of the captured
batch size resets and fills, so one sequence is live at a time. A CPU has no graphs: eager there.
"""

from __future__ import annotations

import time

from models.mamba import MambaCache, MambaConfig, MambaLM

from bench.backends.base import Backend
from bench.schema import SECONDS


class SsmBenchBackend(Backend):
    NAME = "ssm_bench"

    @classmethod
    def run_options(cls, cfg) -> dict:
        from bench import pairing

        return {"decode": pairing.decode(cfg)}

    def __init__(self, model_cfg, device, dtype, decode: str = "eager"):
        super().__init__(model_cfg, device, dtype)
        if decode not in ("eager", "graph"):
            raise ValueError(f"decode: {decode!r} is not one of ['eager', 'graph']")
        self.decode = decode
        self.decoder = None  # models.cuda_graph.GraphedDecoder, once captured

    @property
    def decode_path(self) -> str:
        return "cuda_graph" if self.decoder is not None else "eager"

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
        cache = None
        if self.decoder is not None and input_ids.shape[0] == self.decoder.batch_size:
            cache = self.decoder.cache  # the graph's: its addresses are what the graph reads
            cache.reset()
        return self.model.prefill(input_ids, mode=mode, chunk_size=chunk_size, logits_to_keep=logits_to_keep,
                                  cache=cache)

    def step(self, token_ids, state: MambaCache):
        if self.decoder is not None and state is self.decoder.cache:
            return self.decoder.step(token_ids).clone()  # the graph's output buffer is reused by the next replay
        return self.model.step(token_ids, state)

    def prepare_decode(self, batch_size: int) -> list[dict]:
        """decode="graph" on CUDA: capture the decode step (its time is the compile_time row)."""
        if self.decode != "graph" or self.device.type != "cuda":
            return []
        from models.cuda_graph import GraphedDecoder

        start = time.perf_counter()
        self.decoder = GraphedDecoder(self.model, batch_size=batch_size)
        return [{"metric": "compile_time", "value": time.perf_counter() - start, "unit": SECONDS, "source": "measured",
                 "decode_path": "cuda_graph", "batch_size": batch_size}]

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
        used = self.model.kernels.used if self.model is not None else ()
        return {**super().describe(), "kernels": ",".join(sorted(used)), "decode_path": self.decode_path}

    def vocab_size(self) -> int:
        return self.model.config.vocab_size
