"""Selective scan (the S6 recurrence of Mamba-1) in plain PyTorch.

For every batch b, channel d and state n, with discretisation by zero-order hold on A and
Euler on B (Mamba paper, section 3.5 and algorithm 2):

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t
    y_t = <h_t, C_t> + D * u_t,   then optionally gated: y_t * silu(z_t)

Three functions, one result:
- selective_scan_ref: one token at a time. The readable reference, and the oracle in tests.
- selective_scan_chunked: the prompt in chunks of T tokens. Inside a chunk, the discretised
  (T, d, n) tensors are built with a few large vectorised ops and the recurrence is one
  fused multiply-add per token, done in place. Extra memory is O(T * d * n), never O(L * d * n).
- selective_state_update: one decode step on a preallocated state, in place.

For decode, selective_step_ref is the whole mixer between x_proj and out_proj (dt_proj, the
Falcon Mamba norms, softplus, state update): the readable twin of the fused Triton kernel in
models/ops/triton_fused_step.py; rms_norm_ref is the block's pre-norm (models.mamba.RMSNorm),
the twin of the Triton norm there.

Layout is token-major, (batch, length, channels), so that one token's state is contiguous.
The state is always float32, whatever the dtype of the inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Sequential reference scan.

    u: (b, l, d)      input after conv and SiLU
    delta: (b, l, d)  step size, already through softplus
    A: (d, n)         negative real (A = -exp(A_log))
    B, C: (b, l, n)   input-dependent
    D: (d,)           skip connection
    z: (b, l, d)      gate, applied as y * silu(z)
    initial_state: (b, d, n) float32
    returns y: (b, l, d) in u's dtype, and the final state (b, d, n) float32
    """
    bsz, length, dim = u.shape
    h = u.new_zeros(bsz, dim, A.shape[1], dtype=torch.float32) if initial_state is None else initial_state.float()
    u32, delta32, A32, B32, C32 = u.float(), delta.float(), A.float(), B.float(), C.float()
    ys = []
    for t in range(length):
        dA = torch.exp(delta32[:, t, :, None] * A32)  # (b, d, n)
        dBu = (delta32[:, t] * u32[:, t])[:, :, None] * B32[:, t, None, :]  # (b, d, n)
        h = dA * h + dBu
        ys.append(torch.einsum("bdn,bn->bd", h, C32[:, t]))
    y = torch.stack(ys, dim=1) if ys else u32.new_zeros(bsz, 0, dim)
    return _skip_and_gate(y, u32, D, z).to(u.dtype), h


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    initial_state: Tensor | None = None,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Same contract as selective_scan_ref; memory O(chunk_size * d * n) beyond inputs and outputs."""
    assert chunk_size >= 1, f"chunk_size must be >= 1, got {chunk_size}"
    bsz, length, dim = u.shape
    h = u.new_zeros(bsz, dim, A.shape[1], dtype=torch.float32) if initial_state is None else initial_state.float()
    A32 = A.float()
    y = torch.empty(bsz, length, dim, dtype=torch.float32, device=u.device)
    for start in range(0, length, chunk_size):
        end = min(start + chunk_size, length)
        dt = delta[:, start:end].float()  # (b, T, d)
        # Discretise the whole chunk at once: two big vectorised ops instead of 2T small ones.
        dA = torch.exp(dt[..., None] * A32)  # (b, T, d, n)
        states = (dt * u[:, start:end].float())[..., None] * B[:, start:end, None, :].float()  # (b, T, d, n)
        # h_t = dA_t * h_{t-1} + dBu_t, written over dBu_t so `states` ends up holding every h_t.
        steps, decays = states.unbind(1), dA.unbind(1)
        steps[0].addcmul_(decays[0], h)
        for t in range(1, end - start):
            steps[t].addcmul_(decays[t], steps[t - 1])
        h = steps[-1].clone()
        # y_t = <h_t, C_t>, as one batched matmul: (b*T, d, n) @ (b*T, n, 1)
        y[:, start:end] = torch.matmul(states, C[:, start:end, :, None].float()).squeeze(-1)
    return _skip_and_gate(y, u.float(), D, z).to(u.dtype), h


def selective_state_update(
    state: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
) -> Tensor:
    """One decode step. Updates `state` (b, d, n) float32 in place.

    u, delta, z: (b, d); A: (d, n); B, C: (b, n); D: (d,). Returns y: (b, d) in u's dtype.
    """
    dt, u32 = fp32(delta), fp32(u)
    state.mul_(torch.exp(dt.unsqueeze(-1) * A))
    state.addcmul_((dt * u32).unsqueeze(-1), fp32(B).unsqueeze(1))
    y = torch.bmm(state, fp32(C).unsqueeze(-1)).squeeze(-1)  # (b, d)
    y = _skip_and_gate(y, u32, D, z)
    return y if y.dtype == u.dtype else y.to(u.dtype)


def dt_B_C(
    x_dbl: Tensor,
    dt_proj_weight: Tensor,
    dt_proj_bias: Tensor | None,
    dt_rank: int,
    d_state: int,
    rms_eps: float | None = None,
    normalize=None,
) -> tuple[Tensor, Tensor, Tensor]:
    """x_proj's output -> the SSM inputs: split, the Falcon Mamba norms, dt_proj and softplus. The
    mixer's prefill (MambaMixer._dt_B_C) and its decode step both compute them here.

    x_dbl: (..., R + 2N), the concatenation [dt | B | C]; dt_proj_weight: (D, R); dt_proj_bias: (D,).
    With rms_eps (Falcon Mamba), dt, B and C are each RMS-normalised first, without weights, by
    `normalize(x, eps)` (default: rms_normalize; the CPU decode path passes its C kernel).
    Returns dt (..., D) float32 after softplus; B, C (..., N) in x_dbl's dtype.
    """
    dt, B, C = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=-1)
    if rms_eps is not None:
        normalize = normalize or rms_normalize
        dt, B, C = (normalize(t, rms_eps) for t in (dt, B, C))
    return dt_proj_softplus(dt, dt_proj_weight, dt_proj_bias), B, C  # dt float32


def dt_proj_softplus(dt: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """delta = softplus(dt @ weight.T + bias), returned in float32.

    The product comes out in the weights' dtype (as F.linear and cuBLAS return it); the bias is
    added and the softplus taken in float32, as mamba_ssm's kernels and transformers' CUDA path
    do (delta_bias / dt_bias). Adding it in bfloat16 first would round the sum to the bias's
    magnitude (bias ~ -5: steps of 2**-5), an error softplus carries into delta.
    """
    if weight.dtype == torch.float32:  # one fused addmm: the bias is added in float32 anyway
        return F.softplus(F.linear(dt, weight, bias))
    dt = F.linear(dt, weight).float()
    return F.softplus(dt if bias is None else dt.add_(bias))


def selective_step_ref(
    state: Tensor,
    x: Tensor,
    z: Tensor | None,
    x_dbl: Tensor,
    dt_proj_weight: Tensor,
    dt_proj_bias: Tensor | None,
    A: Tensor,
    D: Tensor | None,
    dt_rank: int,
    d_state: int,
    rms_eps: float | None = None,
) -> Tensor:
    """One decode step of the mixer from x_proj's output to the gated y. Updates `state` (b, D, N)
    float32 in place.

    x, z: (b, D); x_dbl: (b, R + 2N); dt_proj_weight: (D, R); dt_proj_bias, D: (D,); A: (D, N).
    Returns y: (b, D) in x's dtype.
    """
    dt, B, C = dt_B_C(x_dbl, dt_proj_weight, dt_proj_bias, dt_rank, d_state, rms_eps)
    return selective_state_update(state, x, dt, A, B, C, D, z)


def rms_norm_ref(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """The block's pre-norm as MambaBlock applies it: RMSNorm(x.to(weight.dtype)).
    x: (..., H) (the float32 residual stream); weight: (H,). Returns (..., H) in weight's dtype."""
    return weight * rms_normalize(x.to(weight.dtype), eps)


def rms_normalize(x: Tensor, eps: float) -> Tensor:
    """x / rms(x) over the last dim, computed in float32, returned in x's dtype: models.mamba's
    RMSNorm without its weight, and Falcon Mamba's weightless norms of dt, B and C. (Written out:
    torch's CPU F.rms_norm costs ~60 us a call at decode sizes, five times these four ops.)"""
    x32 = fp32(x)
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _skip_and_gate(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    # y is always a fresh tensor here, so the skip and the gate can be applied in place.
    if D is not None:
        y = y.addcmul_(u, fp32(D))
    if z is not None:
        y = y.mul_(F.silu(fp32(z)))
    return y


def fp32(x: Tensor) -> Tensor:
    # .float() on a float32 tensor still costs a dispatch, which shows in the decode step.
    return x if x.dtype == torch.float32 else x.float()
