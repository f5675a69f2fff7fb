"""Allocation twins of the models' Python loops, used only while simulating (FakeTensorMode).

Under fake tensors every op still costs a Python dispatch (~0.1-1 ms), so a loop over tokens
or over scan chunks makes a 7B simulation take hours. A twin does the same allocations as the
real function, in the same order, but runs only as many loop iterations as it takes to reach
the loop's steady-state peak. tests/test_max_seq_len.py checks simulated against measured peaks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.ops import cpu_kernels, scan_backend
from models.ops import selective_scan as real_scan


def selective_scan_chunked_twin(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                D: Tensor | None = None, z: Tensor | None = None,
                                initial_state: Tensor | None = None, chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Twin of models.ops.selective_scan.selective_scan_chunked (same contract and allocations).

    Each chunk of the real scan allocates the same temporaries (dt (b, T, d), dA and states
    (b, T, d, n), the matmul output (b, T, d)) and frees the previous chunk's when it rebinds the
    names. So the live set in chunk 2 (its new temporaries plus chunk 1's, until rebinding) is
    the same in every later chunk but the last, which may be partial and whose temporaries are
    still alive during the skip and gate at the end. Chunks 1, 2 and the last one reproduce
    every live set the real loop goes through. The per-token recurrence inside a chunk
    allocates nothing (unbind views, in-place addcmul_), so it is left out.
    """
    bsz, length, dim = u.shape
    h = u.new_zeros(bsz, dim, A.shape[1], dtype=torch.float32) if initial_state is None else initial_state.float()
    A32 = A.float()
    y = torch.empty(bsz, length, dim, dtype=torch.float32, device=u.device)
    starts = list(range(0, length, chunk_size))
    for start in sorted(set(starts[:2] + starts[-1:])):
        end = min(start + chunk_size, length)
        dt = delta[:, start:end].float()  # (b, T, d)
        dA = torch.exp(dt[..., None] * A32)  # (b, T, d, n)
        states = (dt * u[:, start:end].float())[..., None] * B[:, start:end, None, :].float()  # (b, T, d, n)
        h = states[:, -1].clone()
        y[:, start:end] = torch.matmul(states, C[:, start:end, :, None].float()).squeeze(-1)
    return real_scan._skip_and_gate(y, u.float(), D, z).to(u.dtype), h


def fused_scan_twin(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                    z: Tensor | None = None, initial_state: Tensor | None = None,
                    chunk_size: int = 64) -> tuple[Tensor, Tensor]:
    """Allocations of the fused scans: no (l, d, n) temporaries, only the float32 y and final state,
    and, as models.ops.cpu_kernels does, float32 copies of the inputs in other dtypes or with a
    strided last dim (u, the conv output seen token-major). Triton and mamba_ssm copy a little less."""
    inputs = [cpu_kernels._rows(t) for t in (u, delta, z, B, C)] + \
        [t.detach().to(torch.float32).contiguous() for t in (A, D) if t is not None]  # noqa: F841
    bsz, length, dim = u.shape
    h = torch.empty(bsz, dim, A.shape[1], dtype=torch.float32, device=u.device)
    y = torch.empty(bsz, length, dim, dtype=torch.float32, device=u.device)
    return y.to(u.dtype), h


def triton_scan_twin(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                     z: Tensor | None = None, initial_state: Tensor | None = None,
                     chunk_size: int = 64, kernels=None) -> tuple[Tensor, Tensor]:
    """Allocations of models.ops.triton_selective_scan.selective_scan_triton, the CUDA path: y in
    u's dtype and the float32 final state. It reads its inputs in place, whatever their dtype."""
    bsz, _, dim = u.shape
    return torch.empty_like(u), torch.empty(bsz, dim, A.shape[1], dtype=torch.float32, device=u.device)


def selective_scan_dispatch_twin(*args, kernels: scan_backend.Kernels | None = None, **kwargs):
    """Twin of models.ops.scan_backend.selective_scan on a CPU: the path a real tensor would take
    under the model's choice of `kernels`. Fake tensors always fall through to the PyTorch scan,
    so the choice is made here."""
    if (kernels is None or kernels.cpu) and cpu_kernels.available():
        return fused_scan_twin(*args, **kwargs)
    return selective_scan_chunked_twin(*args, **kwargs)


# hardware.kernels -> (module, attribute, twin) swapped in for the duration of a simulated trial.
TWINS = {
    "cpu": [(real_scan, "selective_scan_chunked", selective_scan_chunked_twin),
            (scan_backend, "selective_scan", selective_scan_dispatch_twin)],
    "cuda": [(real_scan, "selective_scan_chunked", selective_scan_chunked_twin),
             (scan_backend, "selective_scan", triton_scan_twin)],
}
