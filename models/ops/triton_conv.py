"""The causal depthwise conv's decode step in Triton (one kernel instead of PyTorch's roll, copy,
dot, add and SiLU).

conv_state_update_triton: the GPU twin of models.ops.causal_conv.conv_state_update.
    conv_state (b, d, K), in place: drop the oldest column, append x
    out = silu(sum_k conv_state[:, :, k] * weight[:, k] + bias)

It updates the cache in place and touches it once, so it can be captured in a CUDA graph. One
program owns one sequence and BLOCK_D channels; all arithmetic is float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _conv_state_update_kernel(
    conv_ptr, x_ptr, w_ptr, bias_ptr, out_ptr,
    dim, width,
    s_c_b, s_c_d, s_c_k,
    s_x_b, s_x_d,
    s_w_d, s_w_k,
    s_o_b, s_o_d,
    HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    offs_k = tl.arange(0, BLOCK_K)  # (BLOCK_K,)
    mask_d = offs_d < dim
    mask_dk = mask_d[:, None] & (offs_k < width)[None, :]
    row = conv_ptr + pid_b * s_c_b + offs_d[:, None] * s_c_d  # (BLOCK_D, 1)

    # The new window: column k takes the old column k + 1, and the last column takes x.
    older = tl.load(row + (offs_k[None, :] + 1) * s_c_k, mask=mask_d[:, None] & (offs_k + 1 < width)[None, :],
                    other=0.0)  # (BLOCK_D, BLOCK_K)
    x = tl.load(x_ptr + pid_b * s_x_b + offs_d * s_x_d, mask=mask_d, other=0.0)  # (BLOCK_D,)
    window = tl.where((offs_k == width - 1)[None, :], x[:, None].to(older.dtype), older)
    # Another thread may own column k + 1 of the same row: every read of the old window must
    # happen before any write of the new one.
    tl.debug_barrier()
    tl.store(row + offs_k[None, :] * s_c_k, window, mask=mask_dk)

    w = tl.load(w_ptr + offs_d[:, None] * s_w_d + offs_k[None, :] * s_w_k, mask=mask_dk, other=0.0)
    out = tl.sum(window.to(tl.float32) * w.to(tl.float32), axis=1)  # (BLOCK_D,): depthwise dot
    if HAS_BIAS:
        out += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if SILU:
        out = out * tl.sigmoid(out)
    tl.store(out_ptr + pid_b * s_o_b + offs_d * s_o_d, out.to(out_ptr.dtype.element_ty), mask=mask_d)


def conv_state_update_triton(conv_state: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None = None,
                             silu: bool = True, *, block_d: int = 256, num_warps: int = 4) -> Tensor:
    """One decode step of the causal depthwise conv; updates `conv_state` (b, d, K) in place.

    x: (b, d) the new input; weight: (d, K); bias: (d,). Returns silu(conv) (b, d) in x's dtype.
    """
    bsz, dim, width = conv_state.shape
    assert x.shape == (bsz, dim), f"x must be (b, d) = {(bsz, dim)}, got {tuple(x.shape)}"
    assert weight.shape == (dim, width), f"weight must be (d, K) = {(dim, width)}, got {tuple(weight.shape)}"
    out = torch.empty_like(x)
    block_d = min(block_d, triton.next_power_of_2(dim))
    grid = (bsz, triton.cdiv(dim, block_d))
    _conv_state_update_kernel[grid](
        conv_state, x, weight, bias if bias is not None else weight, out,
        dim, width,
        *conv_state.stride(), *x.stride(), *weight.stride(), *out.stride(),
        HAS_BIAS=bias is not None, SILU=silu,
        BLOCK_D=block_d, BLOCK_K=triton.next_power_of_2(width), num_warps=num_warps,
    )
    return out
