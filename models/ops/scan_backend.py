"""Picks the implementation of each selective-scan op for a call and records which one ran.

Prefill scan, on CUDA tensors:
- mamba_ssm's CUDA kernel when it is installed and no initial state is passed (its
  selective_scan_fn takes none), fed float32 inputs so that delta stays float32;
- else our Triton kernel (models/ops/triton_selective_scan.py), which takes an initial state,
  so chunked and sequential prefill stay on the GPU path;
- else our chunked PyTorch scan.
On CPU tensors: our C kernels (models/ops/cpu_scan.py) when a C compiler is there, else PyTorch.
Decode (one token): the Triton conv update on CUDA, the C one on CPU, else PyTorch; then
`selective_step` (x_proj's output to the gated y): one fused Triton kernel on CUDA
(models/ops/triton_fused_step.py), else the norms (C on CPU), dt_proj in PyTorch, and the
state update (C on CPU, else PyTorch). The decode step's other RMS norms, `rms_norm`: one
Triton kernel on CUDA, one C call on CPU, else PyTorch.

`used` collects the names of the paths taken, so that results can say which code was measured.
`use_triton = False` sends CUDA tensors to the PyTorch code (to time it against the kernels).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from models.ops import causal_conv, cpu_scan
from models.ops import selective_scan as torch_ops

try:  # optional: the reference CUDA kernels
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_ssm_scan
except ImportError:
    _mamba_ssm_scan = None

try:  # optional: our Triton kernels (pip install triton; they run on CUDA tensors only)
    from models.ops.triton_selective_scan import selective_scan_triton as _triton_scan
    from models.ops.triton_state_update import conv_state_update_triton as _triton_conv_update
    from models.ops.triton_state_update import selective_state_update_triton as _triton_state_update
    from models.ops.triton_fused_step import rms_norm_triton as _triton_rms_norm
    from models.ops.triton_fused_step import selective_step_fused_triton as _triton_fused_step
except ImportError:
    _triton_scan = _triton_conv_update = _triton_state_update = _triton_fused_step = _triton_rms_norm = None

used: set[str] = set()
use_triton: bool = True
use_cpu_kernels: bool = True  # False sends CPU tensors to the PyTorch code (the readable twin)


def _cpu_fast(t: Tensor) -> bool:
    """Real CPU storage: not CUDA, meta, fake (FakeTensorMode) or being traced by torch.compile."""
    return (use_cpu_kernels and t.device.type == "cpu" and not is_fake(t) and not torch.compiler.is_compiling()
            and cpu_scan.available())


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, initial_state: Tensor | None = None,
                   chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Token-major contract of selective_scan_chunked: u, delta, z (b, l, d); B, C (b, l, n)."""
    if _mamba_ssm_scan is not None and u.is_cuda and initial_state is None:
        used.add("mamba_ssm")
        return mamba_ssm_scan(u, delta, A, B, C, D, z)
    if _triton_scan is not None and use_triton and u.is_cuda:
        used.add("triton")
        return _triton_scan(u, delta, A, B, C, D, z, initial_state=initial_state)
    if _cpu_fast(u):
        used.add("cpu_c")
        return cpu_scan.selective_scan_cpu(u, delta, A, B, C, D, z, initial_state=initial_state)
    used.add("torch_chunked")
    return torch_ops.selective_scan_chunked(u, delta, A, B, C, D, z, initial_state=initial_state,
                                            chunk_size=chunk_size)


def mamba_ssm_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, kernel=None) -> tuple[Tensor, Tensor]:
    """mamba_ssm's selective_scan_fn (channel-major) under our token-major contract, no initial state.

    Its kernel takes delta, B, C and z in u's dtype. delta arrives in float32 after softplus;
    rounding it to bfloat16 costs ~1e-3 relative error in the final state, so the inputs are
    brought up to delta's dtype instead (the kernel computes in float32 either way), at the cost
    of float32 copies of u and z. y comes back in u's dtype. kernel: selective_scan_fn's stand-in.
    """
    kernel = kernel or _mamba_ssm_scan
    io = torch.promote_types(u.dtype, delta.dtype)

    def channel_major(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.transpose(1, 2).to(io)

    y, last_state = kernel(channel_major(u), channel_major(delta), A, channel_major(B), channel_major(C),
                           D.float() if D is not None else None, channel_major(z), return_last_state=True)
    return y.transpose(1, 2).to(u.dtype), last_state.float()


def selective_state_update(state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Tensor | None = None, z: Tensor | None = None) -> Tensor:
    """Contract of selective_scan.selective_state_update: state (b, d, n) float32, updated in place."""
    if _triton_state_update is not None and use_triton and state.is_cuda:
        used.add("triton_state_update")
        return _triton_state_update(state, u, delta, A, B, C, D, z)
    if _cpu_fast(state) and state.is_contiguous():
        used.add("cpu_c_state_update")
        return cpu_scan.selective_state_update_cpu(state, u, delta, A, B, C, D, z)
    used.add("torch_state_update")
    return torch_ops.selective_state_update(state, u, delta, A, B, C, D, z)


def selective_step(state: Tensor, x: Tensor, z: Tensor | None, x_dbl: Tensor, dt_proj_weight: Tensor,
                   dt_proj_bias: Tensor | None, A: Tensor, D: Tensor | None, dt_rank: int, d_state: int,
                   rms_eps: float | None = None) -> Tensor:
    """Contract of selective_scan.selective_step_ref: x_proj's output x_dbl (b, R + 2N) to y (b, D);
    state (b, D, N) float32, updated in place."""
    if _triton_fused_step is not None and use_triton and state.is_cuda:
        used.add("triton_fused_step")
        return _triton_fused_step(state, x, z, x_dbl, dt_proj_weight, dt_proj_bias, A, D, dt_rank, d_state,
                                  rms_eps)
    # The unfused sequence (selective_step_ref), with the norms and the state update dispatched.
    dt, B, C = torch_ops.dt_B_C(x_dbl, dt_proj_weight, dt_proj_bias, dt_rank, d_state, rms_eps,
                                normalize=rms_normalize)
    return selective_state_update(state, x, dt, A, B, C, D, z)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Contract of selective_scan.rms_norm_ref: RMSNorm(x.to(weight.dtype)), x (b, H) -> (b, H)."""
    if _triton_rms_norm is not None and use_triton and x.is_cuda:
        used.add("triton_rms_norm")
        return _triton_rms_norm(x, weight, eps)
    if _cpu_norm(x) and weight.dtype == torch.float32:
        used.add("cpu_c_rms_norm")
        return cpu_scan.rms_norm_cpu(x, weight, eps)
    return torch_ops.rms_norm_ref(x, weight, eps)


def rms_normalize(x: Tensor, eps: float) -> Tensor:
    """Weightless RMS norm (Falcon Mamba's dt, B, C) of a decode step's (b, X) rows, in x's dtype."""
    if _cpu_norm(x):
        used.add("cpu_c_rms_norm")
        return cpu_scan.rms_norm_cpu(x, None, eps)
    return torch_ops.rms_normalize(x, eps)


def _cpu_norm(x: Tensor) -> bool:
    # The C norm takes float32 rows with a unit-stride last dim (decode-step sizes).
    return x.dtype == torch.float32 and x.dim() == 2 and x.stride(1) == 1 and _cpu_fast(x)


def conv_state_update(conv_state: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None = None,
                      silu: bool = True) -> Tensor:
    """Contract of causal_conv.conv_state_update: conv_state (b, d, K) updated in place, returns (b, d)."""
    if _triton_conv_update is not None and use_triton and conv_state.is_cuda:
        used.add("triton_conv_update")
        return _triton_conv_update(conv_state, x, weight, bias, silu)
    if silu and _cpu_fast(conv_state) and conv_state.dtype == x.dtype == weight.dtype == torch.float32 \
            and conv_state.is_contiguous():
        used.add("cpu_c_conv_update")
        return cpu_scan.conv_state_update_cpu(conv_state, x, weight, bias)
    used.add("torch_conv_update")
    return causal_conv.conv_state_update(conv_state, x, weight, bias, silu)
