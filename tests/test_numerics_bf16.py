"""Numerics of the bfloat16 path against a float64 reference, at Falcon Mamba 7B's mixer sizes
(d_inner 8192, dt_rank 256, d_state 16) on a few tokens.

- delta = softplus(dt_proj(dt)): the bias is added in float32, as mamba_ssm's kernels and
  transformers' CUDA path add it. Adding it in bfloat16 rounds the sum to the bias's magnitude.
- the mamba_ssm prefill path keeps delta in float32 (its kernel wants delta in u's dtype: u is
  brought up instead of delta down).
Run with -s to see the measured errors.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.ops import scan_backend
from models.ops.selective_scan import dt_proj_softplus, selective_scan_ref

D_INNER, DT_RANK, D_STATE = 8192, 256, 16  # Falcon Mamba 7B's mixer


def _dt_proj_inputs(tokens: int = 16, seed: int = 0):
    """bf16 dt rows (1, tokens, R), dt_proj weight (D, R) and bias (D,), drawn as MambaLM's init
    draws them: softplus(bias) log-uniform in [1e-3, 0.1], weight uniform in +-R**-0.5."""
    g = torch.Generator().manual_seed(seed)
    dt0 = torch.exp(torch.rand(D_INNER, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    bias = (dt0 + torch.log(-torch.expm1(-dt0))).bfloat16()
    weight = (torch.rand(D_INNER, DT_RANK, generator=g) * 2 - 1).mul(DT_RANK ** -0.5).bfloat16()
    rows = torch.randn(1, tokens, DT_RANK, generator=g).bfloat16()
    return rows, weight, bias


def _relative_error(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (x.double() - ref).abs() / ref.abs()


def test_dt_bias_is_added_in_float32():
    rows, weight, bias = _dt_proj_inputs()
    ref = F.softplus(rows.double() @ weight.double().T + bias.double())
    before = F.softplus(F.linear(rows, weight, bias).float())  # the bias added in bfloat16
    after = dt_proj_softplus(rows, weight, bias)
    assert after.dtype == torch.float32
    err_before, err_after = _relative_error(before, ref), _relative_error(after, ref)
    print(f"\ndelta relative error vs float64, d_inner {D_INNER}: bias in bf16 median {err_before.median():.2e} "
          f"max {err_before.max():.2e}; in fp32 median {err_after.median():.2e} max {err_after.max():.2e}")
    # What remains is the product's own rounding to bf16 (as cuBLAS returns it): ~2**-9 of it.
    assert err_after.median() < err_before.median() / 5
    assert err_after.max() < err_before.max() / 2
    assert err_after.median() < 1e-3


def _channel_major_kernel_stub(calls: list):
    """Stands in for mamba_ssm's selective_scan_fn: the same layout and the same dtype checks as
    its CUDA kernel (delta, B and C in u's dtype), computed by our reference scan."""
    def kernel(u, delta, A, B, C, D=None, z=None, return_last_state=False):
        if not (delta.dtype == u.dtype == B.dtype == C.dtype) or (z is not None and z.dtype != u.dtype):
            raise RuntimeError("selective_scan_fwd: delta, B, C and z must have u's dtype")
        calls.append(delta.dtype)
        y, h = selective_scan_ref(u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2),
                                  C.transpose(1, 2), D, None if z is None else z.transpose(1, 2))
        return y.transpose(1, 2), h
    return kernel


def _scan_float64(u, delta, A, B):
    h = torch.zeros(u.shape[0], u.shape[2], A.shape[1], dtype=torch.float64)
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None].double() * A.double()) * h \
            + (delta[:, t].double() * u[:, t].double())[..., None] * B[:, t, None, :].double()
    return h


def test_mamba_ssm_path_keeps_delta_float32():
    g = torch.Generator().manual_seed(1)
    bsz, length = 1, 16
    u = torch.randn(bsz, length, D_INNER, generator=g).bfloat16()
    z = torch.randn(bsz, length, D_INNER, generator=g).bfloat16()
    delta = F.softplus(torch.randn(bsz, length, D_INNER, generator=g) - 4)  # float32, ~0.02
    A = -torch.arange(1, D_STATE + 1, dtype=torch.float32).expand(D_INNER, D_STATE).contiguous()
    B, C = (torch.randn(bsz, length, D_STATE, generator=g).bfloat16() for _ in range(2))
    Dskip = torch.ones(D_INNER)
    ref = _scan_float64(u, delta, A, B)

    calls: list = []
    kernel = _channel_major_kernel_stub(calls)
    y, h_after = scan_backend.mamba_ssm_scan(u, delta, A, B, C, Dskip, z, kernel=kernel)
    assert calls == [torch.float32] and y.dtype == torch.bfloat16 and y.shape == u.shape
    # What the path did before: delta rounded to u's dtype for the kernel.
    _, h_before = kernel(*(t.transpose(1, 2) for t in (u, delta.to(u.dtype))), A, B.transpose(1, 2),
                         C.transpose(1, 2), Dskip, z.transpose(1, 2))

    def rel(h):
        return float((h.double() - ref).norm() / ref.norm())

    print(f"\nfinal-state relative error vs float64, d_inner {D_INNER}: delta in bf16 {rel(h_before):.2e}, "
          f"in fp32 {rel(h_after):.2e}")
    assert rel(h_after) < 1e-5 < rel(h_before) / 10
    # The same numbers as our own scan on the same inputs (which reads delta in float32 too).
    y_ours, h_ours = scan_backend.selective_scan(u, delta, A, B, C, Dskip, z)
    torch.testing.assert_close(h_after, h_ours, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, y_ours, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_dt_proj_softplus_matches_linear_where_nothing_is_rounded(dtype):
    # In float32 the bias was always added in float32: nothing changes there.
    rows, weight, bias = (t.to(dtype) for t in _dt_proj_inputs(tokens=2))
    got = dt_proj_softplus(rows, weight, bias)
    if dtype == torch.float32:
        torch.testing.assert_close(got, F.softplus(F.linear(rows, weight, bias)), rtol=1e-6, atol=1e-7)
    else:
        torch.testing.assert_close(got, F.softplus(F.linear(rows, weight).float() + bias.float()), rtol=0, atol=0)
    assert dt_proj_softplus(rows, weight, None).dtype == torch.float32
