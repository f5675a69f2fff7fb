"""Picks the implementation of each selective-scan op for a call and records which one ran.

Prefill scan, on CUDA tensors:
- mamba_ssm's CUDA kernel when it is installed and no initial state is passed (its
  selective_scan_fn takes none), fed float32 inputs so that delta stays float32;
- else our Triton kernel (models/ops/triton_selective_scan.py), which takes an initial state,
  so chunked and sequential prefill stay on the GPU path;
- else our chunked PyTorch scan.
On CPU tensors: our C kernels (models/ops/cpu_kernels.py) when a C compiler is there, else PyTorch.
Decode (one token): the Triton conv update on CUDA (models/ops/triton_conv.py), the C one on CPU,
else PyTorch; then `selective_step` (x_proj's output to the gated y): one fused Triton kernel on
CUDA (models/ops/triton_fused_step.py), else the norms (C on CPU), dt_proj in PyTorch, and the
state update (C on CPU, else PyTorch). The decode step's other RMS norms, `rms_norm`: one
Triton kernel on CUDA (models/ops/triton_rms_norm.py), one C call on CPU, else PyTorch.

Every op takes `kernels`, a Kernels: which fast paths it may take, and where it records the
names of the paths it took, so that results can say which code was measured. A model holds one
(MambaLM.kernels) and passes it to every op; without one, an op may take every fast path and
records nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from models.ops import causal_conv, cpu_kernels
from models.ops import selective_scan as torch_ops

try:  # optional: the reference CUDA kernels
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_ssm_scan
except ImportError:
    _mamba_ssm_scan = None

try:  # optional: our Triton kernels (pip install triton; they run on CUDA tensors only)
    from models.ops.triton_selective_scan import selective_scan_triton as _triton_scan
    from models.ops.triton_conv import conv_state_update_triton as _triton_conv_update
    from models.ops.triton_fused_step import selective_step_fused_triton as _triton_fused_step
    from models.ops.triton_rms_norm import rms_norm_triton as _triton_rms_norm
    from models.ops.triton_state_update import selective_state_update_triton as _triton_state_update
except ImportError:
    _triton_scan = _triton_conv_update = _triton_state_update = _triton_fused_step = _triton_rms_norm = None


@dataclass
class Kernels:
    """The choice of code for a model's ops, and the record of what ran.

    triton: CUDA tensors go to our Triton kernels (False: to the PyTorch code, to time it against them).
    cpu: CPU tensors go to the C kernels (False: to the PyTorch code, the readable twin).
    used: the names of the paths taken, added to as the ops run.
    """

    triton: bool = True
    cpu: bool = True
    used: set[str] = field(default_factory=set)


def _choice(kernels: Kernels | None) -> Kernels:
    return Kernels() if kernels is None else kernels


def _cpu_fast(t: Tensor, kernels: Kernels) -> bool:
    """Real CPU storage: not CUDA, meta, fake (FakeTensorMode) or being traced by torch.compile."""
    return (kernels.cpu and t.device.type == "cpu" and not is_fake(t) and not torch.compiler.is_compiling()
            and cpu_kernels.available())


def _triton(kernel, t: Tensor, kernels: Kernels) -> bool:
    return kernel is not None and kernels.triton and t.is_cuda


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, initial_state: Tensor | None = None,
                   chunk_size: int = 64, kernels: Kernels | None = None) -> tuple[Tensor, Tensor]:
    """Token-major contract of selective_scan_chunked: u, delta, z (b, l, d); B, C (b, l, n)."""
    kernels = _choice(kernels)
    if _mamba_ssm_scan is not None and u.is_cuda and initial_state is None:
        kernels.used.add("mamba_ssm")
        return mamba_ssm_scan(u, delta, A, B, C, D, z)
    if _triton(_triton_scan, u, kernels):
        kernels.used.add("triton")
        return _triton_scan(u, delta, A, B, C, D, z, initial_state=initial_state)
    if _cpu_fast(u, kernels):
        kernels.used.add("cpu_c")
        return cpu_kernels.selective_scan_cpu(u, delta, A, B, C, D, z, initial_state=initial_state)
    kernels.used.add("torch_chunked")
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
                           D: Tensor | None = None, z: Tensor | None = None, kernels: Kernels | None = None) -> Tensor:
    """Contract of selective_scan.selective_state_update: state (b, d, n) float32, updated in place."""
    kernels = _choice(kernels)
    if _triton(_triton_state_update, state, kernels):
        kernels.used.add("triton_state_update")
        return _triton_state_update(state, u, delta, A, B, C, D, z)
    if _cpu_fast(state, kernels) and state.is_contiguous():
        kernels.used.add("cpu_c_state_update")
        return cpu_kernels.selective_state_update_cpu(state, u, delta, A, B, C, D, z)
    kernels.used.add("torch_state_update")
    return torch_ops.selective_state_update(state, u, delta, A, B, C, D, z)


def selective_step(state: Tensor, x: Tensor, z: Tensor | None, x_dbl: Tensor, dt_proj_weight: Tensor,
                   dt_proj_bias: Tensor | None, A: Tensor, D: Tensor | None, dt_rank: int, d_state: int,
                   rms_eps: float | None = None, kernels: Kernels | None = None) -> Tensor:
    """Contract of selective_scan.selective_step_ref: x_proj's output x_dbl (b, R + 2N) to y (b, D);
    state (b, D, N) float32, updated in place."""
    kernels = _choice(kernels)
    if _triton(_triton_fused_step, state, kernels):
        kernels.used.add("triton_fused_step")
        return _triton_fused_step(state, x, z, x_dbl, dt_proj_weight, dt_proj_bias, A, D, dt_rank, d_state,
                                  rms_eps)
    # The unfused sequence (selective_step_ref), with the norms and the state update dispatched.
    dt, B, C = torch_ops.dt_B_C(x_dbl, dt_proj_weight, dt_proj_bias, dt_rank, d_state, rms_eps,
                                normalize=lambda t, eps: rms_normalize(t, eps, kernels))
    return selective_state_update(state, x, dt, A, B, C, D, z, kernels)


def rms_norm(x: Tensor, weight: Tensor, eps: float, kernels: Kernels | None = None) -> Tensor:
    """Contract of selective_scan.rms_norm_ref: RMSNorm(x.to(weight.dtype)), x (b, H) -> (b, H)."""
    kernels = _choice(kernels)
    if _triton(_triton_rms_norm, x, kernels):
        kernels.used.add("triton_rms_norm")
        return _triton_rms_norm(x, weight, eps)
    if _cpu_norm(x, kernels) and weight.dtype == torch.float32:
        kernels.used.add("cpu_c_rms_norm")
        return cpu_kernels.rms_norm_cpu(x, weight, eps)
    return torch_ops.rms_norm_ref(x, weight, eps)


def rms_normalize(x: Tensor, eps: float, kernels: Kernels | None = None) -> Tensor:
    """Weightless RMS norm (Falcon Mamba's dt, B, C) of a decode step's (b, X) rows, in x's dtype."""
    kernels = _choice(kernels)
    if _cpu_norm(x, kernels):
        kernels.used.add("cpu_c_rms_norm")
        return cpu_kernels.rms_norm_cpu(x, None, eps)
    return torch_ops.rms_normalize(x, eps)


def _cpu_norm(x: Tensor, kernels: Kernels) -> bool:
    # The C norm takes float32 rows with a unit-stride last dim (decode-step sizes).
    return x.dtype == torch.float32 and x.dim() == 2 and x.stride(1) == 1 and _cpu_fast(x, kernels)


def conv_state_update(conv_state: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None = None,
                      silu: bool = True, kernels: Kernels | None = None) -> Tensor:
    """Contract of causal_conv.conv_state_update: conv_state (b, d, K) updated in place, returns (b, d)."""
    kernels = _choice(kernels)
    if _triton(_triton_conv_update, conv_state, kernels):
        kernels.used.add("triton_conv_update")
        return _triton_conv_update(conv_state, x, weight, bias, silu)
    if silu and _cpu_fast(conv_state, kernels) and conv_state.dtype == x.dtype == weight.dtype == torch.float32 \
            and conv_state.is_contiguous():
        kernels.used.add("cpu_c_conv_update")
        return cpu_kernels.conv_state_update_cpu(conv_state, x, weight, bias)
    kernels.used.add("torch_conv_update")
    return causal_conv.conv_state_update(conv_state, x, weight, bias, silu)
