"""Selective scan for prefill as one Triton kernel (the GPU twin of selective_scan_chunked).

One program owns one sequence and BLOCK_D channels, and keeps their state h (BLOCK_D, N) in
registers for the whole prompt. It walks the sequence CHUNK tokens at a time:

    load u, dt, z (CHUNK, BLOCK_D) and B, C (CHUNK, N)          one coalesced tile each
    dA  = exp(dt * A), dBu = dt * u * B                           (CHUNK, BLOCK_D, N), registers only
    (P_t, Q_t) = prefix scan of h -> dA_t * h + dBu_t              tl.associative_scan over the chunk
    h_t = P_t * h_prev + Q_t;  y_t = <h_t, C_t> + D * u_t;  y_t *= silu(z_t)
    h_prev = h_{last}

The discretised tensors exist only per chunk, in registers: nothing of size (b, d, l, n), or
even (b, d, CHUNK, n), is ever written to memory. Scanning a chunk in parallel, rather than one
token per loop trip, gives each program CHUNK tokens of independent loads to overlap, which is
what hides the memory latency of a sequential recurrence.

Contract (the same as models.ops.selective_scan.selective_scan_chunked, token-major):
u, delta, z (b, l, d); A (d, n); B, C (b, l, n); D (d,); initial_state (b, d, n) float32.
Returns y (b, l, d) in u's dtype and the final state (b, d, n) float32. Inputs may be
float32, float16 or bfloat16 and any strides; all arithmetic is float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _compose(a_prev, b_prev, a_next, b_next):
    # Two affine steps h -> a*h + b, applied `prev` first: h -> a_next*(a_prev*h + b_prev) + b_next.
    return a_prev * a_next, a_next * b_prev + b_next


@triton.jit
def _selective_scan_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, h0_ptr, y_ptr, hT_ptr,
    length, dim, dstate,
    s_u_b, s_u_l, s_u_d,
    s_dt_b, s_dt_l, s_dt_d,
    s_A_d, s_A_n,
    s_B_b, s_B_l, s_B_n,
    s_C_b, s_C_l, s_C_n,
    s_z_b, s_z_l, s_z_d,
    s_y_b, s_y_l, s_y_d,
    s_h0_b, s_h0_d, s_h0_n,
    s_hT_b, s_hT_d, s_hT_n,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_H0: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)  # 64-bit offsets: b * l * d passes 2**31 at long prompts
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    offs_n = tl.arange(0, BLOCK_N)  # (BLOCK_N,)
    offs_t = tl.arange(0, CHUNK)  # (CHUNK,)
    mask_d = offs_d < dim
    mask_n = offs_n < dstate
    mask_dn = mask_d[:, None] & mask_n[None, :]

    # Padded channels and states get A = 0 and B = C = 0: their state stays 0 and adds nothing to y.
    A = tl.load(A_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn, other=0.0).to(tl.float32)
    if HAS_H0:
        h = tl.load(h0_ptr + pid_b * s_h0_b + offs_d[:, None] * s_h0_d + offs_n[None, :] * s_h0_n,
                    mask=mask_dn, other=0.0).to(tl.float32)  # (BLOCK_D, BLOCK_N)
    else:
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    if HAS_D:
        Dskip = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)  # (BLOCK_D,)

    u_base = u_ptr + pid_b * s_u_b
    dt_base = dt_ptr + pid_b * s_dt_b
    B_base = B_ptr + pid_b * s_B_b
    C_base = C_ptr + pid_b * s_C_b
    y_base = y_ptr + pid_b * s_y_b
    z_base = z_ptr + pid_b * s_z_b
    is_last = (offs_t == CHUNK - 1)[:, None, None]  # (CHUNK, 1, 1): picks h at the chunk's end

    for start in range(0, length, CHUNK):
        t = (start + offs_t).to(tl.int64)  # (CHUNK,)
        mask_t = t < length
        mask_td = mask_t[:, None] & mask_d[None, :]  # (CHUNK, BLOCK_D)
        mask_tn = mask_t[:, None] & mask_n[None, :]  # (CHUNK, BLOCK_N)
        # Tokens past the end load dt = 0, so their step is h -> 1*h + 0: the chunk's last row is
        # then the state after the real last token, with no special case for a ragged tail.
        u = tl.load(u_base + t[:, None] * s_u_l + offs_d[None, :] * s_u_d, mask=mask_td, other=0.0).to(tl.float32)
        dt = tl.load(dt_base + t[:, None] * s_dt_l + offs_d[None, :] * s_dt_d, mask=mask_td, other=0.0).to(tl.float32)
        Bt = tl.load(B_base + t[:, None] * s_B_l + offs_n[None, :] * s_B_n, mask=mask_tn, other=0.0).to(tl.float32)
        Ct = tl.load(C_base + t[:, None] * s_C_l + offs_n[None, :] * s_C_n, mask=mask_tn, other=0.0).to(tl.float32)

        # Discretise (ZOH on A, Euler on B) for the whole chunk, in registers.
        dA = tl.exp(dt[:, :, None] * A[None, :, :])  # (CHUNK, BLOCK_D, BLOCK_N)
        dBu = (dt * u)[:, :, None] * Bt[:, None, :]  # (CHUNK, BLOCK_D, BLOCK_N)
        if CHUNK == 1:  # one token per trip: the plain recurrence
            hs = dA * h[None, :, :] + dBu  # (1, BLOCK_D, BLOCK_N)
        else:
            # P_t = dA_t * ... * dA_0 and Q_t = the state at t when starting from zero.
            P, Q = tl.associative_scan((dA, dBu), axis=0, combine_fn=_compose)
            hs = P * h[None, :, :] + Q  # (CHUNK, BLOCK_D, BLOCK_N): h_t for every t of the chunk
        y = tl.sum(hs * Ct[:, None, :], axis=2)  # (CHUNK, BLOCK_D)
        h = tl.sum(tl.where(is_last, hs, 0.0), axis=0)  # (BLOCK_D, BLOCK_N)

        if HAS_D:
            y += u * Dskip[None, :]
        if HAS_Z:
            z = tl.load(z_base + t[:, None] * s_z_l + offs_d[None, :] * s_z_d, mask=mask_td, other=0.0).to(tl.float32)
            y *= z * tl.sigmoid(z)  # y * silu(z)
        tl.store(y_base + t[:, None] * s_y_l + offs_d[None, :] * s_y_d, y.to(y_ptr.dtype.element_ty), mask=mask_td)

    tl.store(hT_ptr + pid_b * s_hT_b + offs_d[:, None] * s_hT_d + offs_n[None, :] * s_hT_n, h, mask=mask_dn)


def selective_scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
    *,
    block_d: int | None = None,
    chunk: int = 16,
    num_warps: int = 4,
) -> tuple[Tensor, Tensor]:
    """Same contract as selective_scan_chunked. chunk_size is accepted for that contract and ignored:
    memory here is O(b * l * d) for y, nothing more. block_d, chunk and num_warps tune the kernel
    (block_d * chunk * n float32 values per program live in registers)."""
    bsz, length, dim = u.shape
    dstate = A.shape[1]
    assert delta.shape == u.shape, f"delta {tuple(delta.shape)} must match u {tuple(u.shape)}"
    assert A.shape == (dim, dstate), f"A must be (d, n) = {(dim, dstate)}, got {tuple(A.shape)}"
    assert B.shape == C.shape == (bsz, length, dstate), \
        f"B, C must be (b, l, n) = {(bsz, length, dstate)}, got {tuple(B.shape)}, {tuple(C.shape)}"
    assert z is None or z.shape == u.shape, f"z {tuple(z.shape)} must match u {tuple(u.shape)}"
    assert chunk >= 1 and (chunk & (chunk - 1)) == 0, f"chunk must be a power of 2, got {chunk}"

    y = torch.empty_like(u)
    final_state = torch.empty(bsz, dim, dstate, device=u.device, dtype=torch.float32)
    block_n = triton.next_power_of_2(dstate)
    if block_d is None:
        # chunk * block_d * block_n near 4k floats per program: at n=16, chunk=16 that is block_d=16,
        # the fastest of the configurations tried on an H200 at l=8192, d=8192 (the kernels check, configs/check/kernels.yaml).
        block_d = max(1, min(triton.next_power_of_2(dim), 4096 // (chunk * block_n)))
    h0 = initial_state if initial_state is not None else final_state  # unused pointer when absent
    if initial_state is not None:
        assert initial_state.shape == (bsz, dim, dstate), \
            f"initial_state must be (b, d, n) = {(bsz, dim, dstate)}, got {tuple(initial_state.shape)}"
    Dp = D if D is not None else A  # placeholders: never read when the flag is off
    zp = z if z is not None else u

    grid = (bsz, triton.cdiv(dim, block_d))
    _selective_scan_kernel[grid](
        u, delta, A, B, C, Dp, zp, h0, y, final_state,
        length, dim, dstate,
        *u.stride(), *delta.stride(), *A.stride(), *B.stride(), *C.stride(), *zp.stride(), *y.stride(),
        *h0.stride(), *final_state.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, HAS_H0=initial_state is not None,
        BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk, num_warps=num_warps,
    )
    return y, final_state
