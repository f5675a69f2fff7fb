"""CUDA-graph decode for the in-repo Mamba: the whole single-token step, replayed as one graph.

A Mamba decode step is some 20 small kernels per layer (over 1,000 for a 64-layer model) on
tensors of a few KB: launched one by one from Python, the GPU waits on the CPU. Its shapes never
change, though, and the cache is updated in place, so the whole `model.step` over all layers can
be captured once and replayed per token with a single launch:

    decoder = GraphedDecoder(model, batch_size=1)
    logits = decoder.prefill(prompt_ids)            # (b, V); fills decoder.cache
    for _ in range(n):
        logits = decoder.step(logits.argmax(-1))    # (b, V), a view of a static buffer

What the graph reads and writes lives at fixed addresses: the token buffer `tokens` (b,),
the cache `cache` (conv and SSM states of every layer) and the output `logits` (b, V).
MambaCache.seqlen_offset is a Python int, so it is advanced in Python after each replay.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.mamba import MambaCache, MambaLM


class GraphedDecoder:
    """model.step(token_ids, cache) over all layers, captured once as a CUDA graph."""

    def __init__(self, model: MambaLM, batch_size: int, warmup_steps: int = 3):
        if not torch.cuda.is_available():
            raise RuntimeError("GraphedDecoder needs a CUDA device (torch.cuda.is_available() is False); "
                               "on CPU use model.step, or model.generate")
        device = model.lm_head.weight.device
        if device.type != "cuda":
            raise RuntimeError(f"GraphedDecoder needs the model on a CUDA device, found it on {device}")
        assert batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"
        self.model = model
        self.batch_size = batch_size
        self.cache: MambaCache = model.allocate_inference_cache(batch_size)
        self.tokens = torch.zeros(batch_size, dtype=torch.long, device=device)  # (b,) graph input

        # Warm up on a side stream before capture, as torch.cuda.graphs requires: this compiles
        # the Triton kernels, sets up cuBLAS workspaces and fills MambaMixer's cached A.
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(warmup_steps):
                model.step(self.tokens, self.cache)
        torch.cuda.current_stream(device).wait_stream(stream)

        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits: Tensor = model.step(self.tokens, self.cache)  # (b, V), graph output
        self.cache.reset()  # the warm-up and capture advanced the state and the offset

    @torch.inference_mode()
    def prefill(self, input_ids: Tensor, mode: str = "parallel", chunk_size: int = 1) -> Tensor:
        """Start a new sequence: run the prompt (b, l) into the static cache. Returns last logits (b, V)."""
        assert input_ids.shape[0] == self.batch_size, \
            f"the graph was captured for batch {self.batch_size}, got {input_ids.shape[0]}"
        self.cache.reset()
        logits, _ = self.model.prefill(input_ids, mode=mode, chunk_size=chunk_size, cache=self.cache)
        return logits

    def step(self, token_ids: Tensor) -> Tensor:
        """One token per sequence (b,) or (b, 1) -> logits (b, V). The result is the graph's output
        buffer, overwritten by the next step: clone it to keep it."""
        self.tokens.copy_(token_ids.reshape(-1))
        self.graph.replay()
        self.cache.seqlen_offset += 1
        return self.logits

    def reset(self):
        """Forget the sequence: zero the cache (its addresses, which the graph holds, stay)."""
        self.cache.reset()
