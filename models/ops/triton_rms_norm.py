"""The block's RMS pre-norm of a decode step in Triton: one kernel instead of some 9 in PyTorch
(cast, pow, mean, add, rsqrt, mul, cast, scale).

rms_norm_triton is the twin of models.ops.selective_scan.rms_norm_ref: RMSNorm(x.to(weight.dtype)),
rounded to the weight's dtype wherever the PyTorch path rounds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _rms_norm_kernel(
    x_ptr, w_ptr, out_ptr,
    hidden, eps,
    s_x_b, s_x_h, s_o_b, s_o_h,
    BLOCK_H: tl.constexpr,
):
    # One program per row; two passes over it (sum of squares, then scale), BLOCK_H at a time.
    x_row = x_ptr + tl.program_id(0).to(tl.int64) * s_x_b
    out_row = out_ptr + tl.program_id(0).to(tl.int64) * s_o_b
    io_dtype = out_ptr.dtype.element_ty  # the weight's dtype: x is cast to it first, as in the block
    sq = tl.zeros([BLOCK_H], dtype=tl.float32)
    for h0 in range(0, hidden, BLOCK_H):
        offs = h0 + tl.arange(0, BLOCK_H)
        v = tl.load(x_row + offs * s_x_h, mask=offs < hidden, other=0.0).to(io_dtype).to(tl.float32)
        sq += v * v
    inv_rms = tl.rsqrt(tl.sum(sq, axis=0) / hidden + eps)
    for h0 in range(0, hidden, BLOCK_H):
        offs = h0 + tl.arange(0, BLOCK_H)
        mask = offs < hidden
        v = tl.load(x_row + offs * s_x_h, mask=mask, other=0.0).to(io_dtype).to(tl.float32)
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        normed = (v * inv_rms).to(io_dtype).to(tl.float32)  # rms_normalize returns io_dtype
        tl.store(out_row + offs * s_o_h, (w * normed).to(io_dtype), mask=mask)


def rms_norm_triton(x: Tensor, weight: Tensor, eps: float, *, block_h: int = 8192) -> Tensor:
    """weight * rms_normalize(x.to(weight.dtype)) over the last dim. x: (b, H); weight: (H,).
    Returns (b, H) in weight's dtype. block_h: the default holds a whole row up to H = 8192 (7B:
    4096), so that each pass over it is one load; the second pass reads it again from cache."""
    assert x.dim() == 2 and weight.shape == (x.shape[1],), \
        f"x must be (b, H) and weight (H,), got {tuple(x.shape)} and {tuple(weight.shape)}"
    out = torch.empty(x.shape, device=x.device, dtype=weight.dtype)
    block_h = min(block_h, triton.next_power_of_2(x.shape[1]))
    _rms_norm_kernel[(x.shape[0],)](
        x, weight, out, x.shape[1], eps, *x.stride(), *out.stride(),
        BLOCK_H=block_h, num_warps=max(1, min(16, block_h // 256)),  # ~8 values per thread
    )
    return out
