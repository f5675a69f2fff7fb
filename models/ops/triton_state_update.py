"""The SSM state update of one decode token, in Triton.

In PyTorch it is a handful of tiny kernels (mul, exp, addcmul, bmm, ...); here it is one, which
updates the state in place and touches it once, so it can be captured in a CUDA graph.

selective_state_update_triton: the GPU twin of models.ops.selective_scan.selective_state_update.
    state (b, d, n) float32, in place: state = exp(dt * A) * state + dt * u * B
    y = <state, C> + D * u, then y * silu(z)
_state_step, its body, is shared with the fused decode step (models/ops/triton_fused_step.py).

One program owns one sequence and BLOCK_D channels; all arithmetic is float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _state_update_kernel(
    state_ptr, u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, y_ptr,
    dim, dstate,
    s_s_b, s_s_d, s_s_n,
    s_u_b, s_u_d,
    s_dt_b, s_dt_d,
    s_A_d, s_A_n,
    s_B_b, s_B_n,
    s_C_b, s_C_n,
    s_z_b, s_z_d,
    s_y_b, s_y_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    offs_n = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    mask_dn = mask_d[:, None] & mask_n[None, :]

    state_ptrs = state_ptr + pid_b * s_s_b + offs_d[:, None] * s_s_d + offs_n[None, :] * s_s_n
    u = tl.load(u_ptr + pid_b * s_u_b + offs_d * s_u_d, mask=mask_d, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + pid_b * s_dt_b + offs_d * s_dt_d, mask=mask_d, other=0.0).to(tl.float32)
    A = tl.load(A_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn, other=0.0).to(tl.float32)
    Bv = tl.load(B_ptr + pid_b * s_B_b + offs_n * s_B_n, mask=mask_n, other=0.0).to(tl.float32)  # (BLOCK_N,)
    Cv = tl.load(C_ptr + pid_b * s_C_b + offs_n * s_C_n, mask=mask_n, other=0.0).to(tl.float32)
    _state_step(state_ptrs, mask_dn, A, dt, u, Bv, Cv, D_ptr, z_ptr, y_ptr, pid_b, offs_d, mask_d,
                s_z_b, s_z_d, s_y_b, s_y_d, HAS_D, HAS_Z)


@triton.jit
def _state_step(state_ptrs, mask_dn, A, dt, u, Bv, Cv, D_ptr, z_ptr, y_ptr, pid_b, offs_d, mask_d,
                s_z_b, s_z_d, s_y_b, s_y_d, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """The state update and the gated output of one token, for BLOCK_D channels (shared with
    triton_fused_step): state = exp(dt * A) * state + dt * u * B in place (float32), then
    y = (<state, C> + D * u) * silu(z), stored in y's dtype. A (BLOCK_D, BLOCK_N); dt, u (BLOCK_D,);
    Bv, Cv (BLOCK_N,); all float32."""
    h = tl.load(state_ptrs, mask=mask_dn, other=0.0).to(tl.float32)  # (BLOCK_D, BLOCK_N)
    h = tl.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bv[None, :]
    tl.store(state_ptrs, h, mask=mask_dn)

    y = tl.sum(h * Cv[None, :], axis=1)  # (BLOCK_D,)
    if HAS_D:
        y += u * tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * s_z_b + offs_d * s_z_d, mask=mask_d, other=0.0).to(tl.float32)
        y *= z * tl.sigmoid(z)  # y * silu(z)
    tl.store(y_ptr + pid_b * s_y_b + offs_d * s_y_d, y.to(y_ptr.dtype.element_ty), mask=mask_d)


def selective_state_update_triton(state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                  D: Tensor | None = None, z: Tensor | None = None,
                                  *, block_d: int | None = None, num_warps: int = 4) -> Tensor:
    """One decode step; updates `state` (b, d, n) float32 in place.

    u, delta, z: (b, d); A: (d, n); B, C: (b, n); D: (d,). Returns y: (b, d) in u's dtype.
    """
    bsz, dim, dstate = state.shape
    assert state.dtype == torch.float32, f"the SSM state must be float32, got {state.dtype}"
    assert u.shape == delta.shape == (bsz, dim), f"u, delta must be (b, d) = {(bsz, dim)}"
    assert A.shape == (dim, dstate) and B.shape == C.shape == (bsz, dstate), "A must be (d, n), B and C (b, n)"
    y = torch.empty_like(u)
    block_n = triton.next_power_of_2(dstate)
    if block_d is None:  # about 2k state values per program: enough programs even at batch 1
        block_d = max(1, min(triton.next_power_of_2(dim), 2048 // block_n))
    Dp = D if D is not None else A  # placeholders: never read when the flag is off
    zp = z if z is not None else u
    grid = (bsz, triton.cdiv(dim, block_d))
    _state_update_kernel[grid](
        state, u, delta, A, B, C, Dp, zp, y,
        dim, dstate,
        *state.stride(), *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(),
        *zp.stride(), *y.stride(),
        HAS_D=D is not None, HAS_Z=z is not None,
        BLOCK_D=block_d, BLOCK_N=block_n, num_warps=num_warps,
    )
    return y
