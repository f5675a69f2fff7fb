"""The mixer's decode step from x_proj's output to the gated y, as one Triton kernel.

Between the x_proj and out_proj GEMMs, a decode step does only small things: split x_proj's
output into (dt, B, C), RMS-normalise each (Falcon Mamba), dt_proj (a (D, R) GEMV), softplus,
then the state update. In PyTorch that is some 25 kernels of a few KB each per layer, so at
decode the GPU mostly waits between launches. Here it is one launch.

selective_step_fused_triton is the GPU twin of models.ops.selective_scan.selective_step_ref:

    dt, B, C = split(x_dbl, [R, N, N])          # (b, R), (b, N), (b, N)
    dt, B, C = rms_normalize(dt), ...           # Falcon Mamba only; float32, back in x_dbl's dtype
    dt = softplus(dt @ W.T + bias)              # (b, D); dt @ W.T rounded to x_dbl's dtype, + bias in fp32
    state = exp(dt * A) * state + dt * x * B    # (b, D, N) float32, in place
    y = (<state, C> + D * x) * silu(z)          # (b, D) in x's dtype

One program owns one sequence and BLOCK_D channels. Each program
reads the whole row of x_dbl (R + 2N values, a few hundred bytes, served from L2 after the first
program) and recomputes the norms, so that no program waits on another; it reads only its own
BLOCK_D rows of W.
All arithmetic is float32; values are rounded to the model's dtype wherever the PyTorch path
rounds them (the norms' and dt_proj's outputs), so that in bfloat16 the two paths differ only by
summation order. (Triton's CPU interpreter rounds float32 -> bfloat16 toward zero, the GPU to
nearest as torch does.)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from models.ops.triton_state_update import _state_step


@triton.jit
def _softplus(x):
    # torch's softplus: log1p(exp(x)), and x itself above 20. Triton has no log1p, and log(1 + e)
    # loses precision for the small dt Mamba uses (relative error ~1e-4 at e ~ 1e-3, all of it
    # below 6e-8), so use Goldberg's form log1p(e) = log(u) * e / (u - 1), u = 1 + e: a few ulps
    # (and e itself when u == 1).
    e = tl.exp(tl.minimum(x, 20.0))
    u = 1.0 + e
    log1p = tl.where(u == 1.0, e, tl.log(u) * (e / tl.where(u == 1.0, 1.0, u - 1.0)))
    return tl.where(x > 20.0, x, log1p)


@triton.jit
def _fused_step_kernel(
    state_ptr, x_ptr, z_ptr, xdbl_ptr, w_ptr, bias_ptr, A_ptr, D_ptr, y_ptr,
    dim, dstate, dt_rank, rms_eps,
    s_s_b, s_s_d, s_s_n,
    s_x_b, s_x_d,
    s_z_b, s_z_d,
    s_xd_b, s_xd_k,
    s_w_d, s_w_r,
    s_A_d, s_A_n,
    s_y_b, s_y_d,
    HAS_NORM: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    offs_n = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    mask_dn = mask_d[:, None] & mask_n[None, :]
    row = xdbl_ptr + pid_b * s_xd_b  # x_dbl[b] = [dt (R) | B (N) | C (N)]
    io_dtype = xdbl_ptr.dtype.element_ty  # where PyTorch rounds: the norms' and dt_proj's outputs

    # B and C (BLOCK_N,), normalised as rms_normalize does: in float32, then back to io_dtype.
    Bv = tl.load(row + (dt_rank + offs_n) * s_xd_k, mask=mask_n, other=0.0).to(tl.float32)
    Cv = tl.load(row + (dt_rank + dstate + offs_n) * s_xd_k, mask=mask_n, other=0.0).to(tl.float32)
    if HAS_NORM:  # masked lanes are 0: they add nothing to the sums of squares
        Bv = (Bv * tl.rsqrt(tl.sum(Bv * Bv, axis=0) / dstate + rms_eps)).to(io_dtype).to(tl.float32)
        Cv = (Cv * tl.rsqrt(tl.sum(Cv * Cv, axis=0) / dstate + rms_eps)).to(io_dtype).to(tl.float32)

    # dt's norm needs all R values before any is used: a first pass for the sum of squares.
    if HAS_NORM:
        sq = tl.zeros([BLOCK_R], dtype=tl.float32)
        for r0 in range(0, dt_rank, BLOCK_R):
            offs_r = r0 + tl.arange(0, BLOCK_R)
            v = tl.load(row + offs_r * s_xd_k, mask=offs_r < dt_rank, other=0.0).to(tl.float32)
            sq += v * v
        inv_rms = tl.rsqrt(tl.sum(sq, axis=0) / dt_rank + rms_eps)

    # dt_proj for this program's channels: (BLOCK_D, R) @ (R,), BLOCK_R columns of W at a time.
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for r0 in range(0, dt_rank, BLOCK_R):
        offs_r = r0 + tl.arange(0, BLOCK_R)  # (BLOCK_R,)
        mask_r = offs_r < dt_rank
        v = tl.load(row + offs_r * s_xd_k, mask=mask_r, other=0.0).to(tl.float32)
        if HAS_NORM:
            v = (v * inv_rms).to(io_dtype).to(tl.float32)
        w = tl.load(w_ptr + offs_d[:, None] * s_w_d + offs_r[None, :] * s_w_r,
                    mask=mask_d[:, None] & mask_r[None, :], other=0.0).to(tl.float32)  # (BLOCK_D, BLOCK_R)
        acc += tl.sum(w * v[None, :], axis=1)
    acc = acc.to(io_dtype).to(tl.float32)  # the product rounded as F.linear returns it
    if HAS_BIAS:  # the bias added in float32, as selective_scan.dt_proj_softplus does
        acc += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    dt = _softplus(acc)  # (BLOCK_D,)

    # The state update and gated output, the same code as the unfused kernel's.
    state_ptrs = state_ptr + pid_b * s_s_b + offs_d[:, None] * s_s_d + offs_n[None, :] * s_s_n
    x = tl.load(x_ptr + pid_b * s_x_b + offs_d * s_x_d, mask=mask_d, other=0.0).to(tl.float32)
    A = tl.load(A_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn, other=0.0).to(tl.float32)
    _state_step(state_ptrs, mask_dn, A, dt, x, Bv, Cv, D_ptr, z_ptr, y_ptr, pid_b, offs_d, mask_d,
                s_z_b, s_z_d, s_y_b, s_y_d, HAS_D, HAS_Z)


def selective_step_fused_triton(state: Tensor, x: Tensor, z: Tensor | None, x_dbl: Tensor,
                                dt_proj_weight: Tensor, dt_proj_bias: Tensor | None, A: Tensor,
                                D: Tensor | None, dt_rank: int, d_state: int, rms_eps: float | None = None,
                                *, block_d: int = 32, block_r: int = 64, num_warps: int = 4) -> Tensor:
    """One decode step from x_proj's output; updates `state` (b, D, N) float32 in place.

    x, z: (b, D); x_dbl: (b, R + 2N); dt_proj_weight: (D, R); dt_proj_bias, D: (D,); A: (D, N).
    rms_eps: Falcon Mamba's norm epsilon, None for plain Mamba. Returns y: (b, D) in x's dtype.
    block_d: channels per program (32: 256 programs for Falcon Mamba 7B's D = 8192 at batch 1).
    """
    bsz, dim, dstate = state.shape
    assert state.dtype == torch.float32, f"the SSM state must be float32, got {state.dtype}"
    assert dstate == d_state, f"state is (b, D, {dstate}) but d_state is {d_state}"
    assert x.shape == (bsz, dim) and (z is None or z.shape == (bsz, dim)), f"x, z must be (b, D) = {(bsz, dim)}"
    assert x_dbl.shape == (bsz, dt_rank + 2 * d_state), \
        f"x_dbl must be (b, R + 2N) = {(bsz, dt_rank + 2 * d_state)}, got {tuple(x_dbl.shape)}"
    assert dt_proj_weight.shape == (dim, dt_rank), f"dt_proj_weight must be (D, R) = {(dim, dt_rank)}"
    assert dt_proj_weight.dtype == x_dbl.dtype, "dt_proj_weight and x_dbl must share a dtype, as F.linear needs"
    assert A.shape == (dim, dstate), f"A must be (D, N) = {(dim, dstate)}"
    y = torch.empty_like(x)
    block_d = min(block_d, triton.next_power_of_2(dim))
    block_r = min(block_r, triton.next_power_of_2(dt_rank))
    zp = z if z is not None else x  # placeholders: never read when the flag is off
    grid = (bsz, triton.cdiv(dim, block_d))
    _fused_step_kernel[grid](
        state, x, zp, x_dbl, dt_proj_weight,
        dt_proj_bias if dt_proj_bias is not None else dt_proj_weight, A, D if D is not None else A, y,
        dim, dstate, dt_rank, rms_eps if rms_eps is not None else 0.0,
        *state.stride(), *x.stride(), *zp.stride(), *x_dbl.stride(), *dt_proj_weight.stride(),
        *A.stride(), *y.stride(),
        HAS_NORM=rms_eps is not None, HAS_BIAS=dt_proj_bias is not None, HAS_D=D is not None,
        HAS_Z=z is not None,
        BLOCK_D=block_d, BLOCK_N=triton.next_power_of_2(dstate), BLOCK_R=block_r, num_warps=num_warps,
    )
    return y
