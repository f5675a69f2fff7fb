"""Picks the selective-scan implementation for a call and records which one ran.

mamba_ssm's CUDA kernel is used when it is installed, the tensors are on CUDA and no initial
state is passed (its selective_scan_fn takes none); otherwise our chunked PyTorch scan runs.
`used` collects the names of the paths taken, so that results can say which code was measured.
"""

from __future__ import annotations

from torch import Tensor

from models.ops.selective_scan import selective_scan_chunked

try:  # optional: the reference CUDA kernels
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_ssm_scan
except ImportError:
    _mamba_ssm_scan = None

used: set[str] = set()


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, initial_state: Tensor | None = None,
                   chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Token-major contract of selective_scan_chunked: u, delta, z (b, l, d); B, C (b, l, n)."""
    if _mamba_ssm_scan is not None and u.is_cuda and initial_state is None:
        used.add("mamba_ssm")
        y, last_state = _mamba_ssm_scan(
            u.transpose(1, 2), delta.transpose(1, 2).to(u.dtype), A, B.transpose(1, 2), C.transpose(1, 2),
            D.float() if D is not None else None, z.transpose(1, 2) if z is not None else None,
            return_last_state=True,
        )
        return y.transpose(1, 2), last_state.float()
    used.add("torch_chunked")
    return selective_scan_chunked(u, delta, A, B, C, D, z, initial_state=initial_state, chunk_size=chunk_size)
