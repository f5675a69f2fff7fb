"""The CPU kernels, in C, compiled on first use: the fused selective scan, the causal conv's
decode step and the RMS norms of the decode step.

Why C: in PyTorch the scan is a chain of passes over (chunk, d, n) tensors (discretise, outer
product, one fused multiply-add per token, contraction with C), each streaming megabytes
through memory, plus a dispatch per token. Here each thread takes a block of 16 channels and
walks the sequence with their (16, n) state in L1 cache: inputs are read once, y written once,
exp() vectorised by the compiler. Nothing of size (L, d, n) or (chunk, d, n) is allocated.

A second function does the decode step of the causal conv (shift, insert, dot, SiLU) in one
call instead of six dispatches, and a third the RMS norms of the decode step (the block's
pre-norm, Falcon's weightless norms of dt, B and C, the final norm): one call instead of seven.

Threads: the channel blocks are split among torch.get_num_threads() Python threads (ctypes
drops the GIL); no OpenMP runtime is linked. The kernels are compiled with the system C
compiler (no torch headers, ~1 s) into a per-user cache keyed by the source's hash, and called
through ctypes on contiguous float32 tensors. Where no compiler is found, `available()` is False and callers use the PyTorch scan.
The scan has the contract of selective_scan.selective_scan_ref (token-major, float32 state).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* u, delta, z, y: (b, l, d); A: (d, n); B, C: (b, l, n); D: (d); h: (b, d, n), read then updated.
   D and z may be NULL. All float32 with a contiguous last dim; u, delta, z, B and C take batch and
   token strides (s*_b, s*_l, in elements), so slices of a larger tensor need no copy. y, h, A
   and D are contiguous. A job is (batch, block of 16 channels); this call runs jobs
   [job_begin, job_end), so that callers can share the jobs among threads. */
void selective_scan_fwd(const float* u, const float* delta, const float* A, const float* B,
                        const float* C, const float* D, const float* z, float* h, float* y,
                        int64_t bsz, int64_t len, int64_t dim, int64_t n, int64_t job_begin, int64_t job_end,
                        const int64_t* strides /* su_b, su_l, sdt_b, sdt_l, sz_b, sz_l, sB_b, sB_l, sC_b, sC_l */) {
    const int64_t block = 16, nblocks = (dim + block - 1) / block;
    if (job_end > bsz * nblocks) job_end = bsz * nblocks;
    for (int64_t job = job_begin; job < job_end; job++) {
        const int64_t b = job / nblocks, d0 = (job % nblocks) * block;
        const int64_t d1 = d0 + block < dim ? d0 + block : dim;
        for (int64_t t = 0; t < len; t++) {
            const float* ut = u + b * strides[0] + t * strides[1];
            const float* dtt = delta + b * strides[2] + t * strides[3];
            const float* zt = z ? z + b * strides[4] + t * strides[5] : 0;
            const float* Bt = B + b * strides[6] + t * strides[7];
            const float* Ct = C + b * strides[8] + t * strides[9];
            float* yt = y + (b * len + t) * dim;
            for (int64_t d = d0; d < d1; d++) {
                const float dt = dtt[d], du = dt * ut[d];
                const float* Ad = A + d * n;
                float* hd = h + (b * dim + d) * n;
                float acc = 0.0f;
                #pragma omp simd reduction(+:acc)
                for (int64_t k = 0; k < n; k++) {
                    const float hk = expf(dt * Ad[k]) * hd[k] + du * Bt[k];
                    hd[k] = hk;
                    acc += hk * Ct[k];
                }
                float out = acc + (D ? D[d] * ut[d] : 0.0f);
                if (zt) out *= zt[d] / (1.0f + expf(-zt[d]));  /* silu(z) gate */
                yt[d] = out;
            }
        }
    }
}

/* One decode step of the causal depthwise conv: conv_state (b, d, K) shifted left by one with x
   (b, d) appended, then y = silu(<conv_state, w> + bias) (b, d). w: (d, K); bias may be NULL. */
void conv_state_update(float* conv_state, const float* x, const float* w, const float* bias, float* y,
                       int64_t bsz, int64_t dim, int64_t K) {
    for (int64_t i = 0; i < bsz * dim; i++) {
        float* s = conv_state + i * K;
        const float* wd = w + (i % dim) * K;
        float acc = bias ? bias[i % dim] : 0.0f;
        for (int64_t k = 0; k < K - 1; k++) { s[k] = s[k + 1]; acc += s[k] * wd[k]; }
        s[K - 1] = x[i];
        acc += x[i] * wd[K - 1];
        y[i] = acc / (1.0f + expf(-acc));
    }
}

/* RMS norm of `rows` rows of `dim` floats: out = x / sqrt(mean(x^2) + eps) (* w). Row r of x starts
   at x + r * x_stride (a column slice of a wider tensor needs no copy); out is contiguous; w may
   be NULL (Falcon Mamba's weightless norms). */
void rms_norm(const float* x, int64_t x_stride, const float* w, float* out, int64_t rows, int64_t dim,
              float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float* xr = x + r * x_stride;
        float* o = out + r * dim;
        float sum = 0.0f;
        #pragma omp simd reduction(+:sum)
        for (int64_t i = 0; i < dim; i++) sum += xr[i] * xr[i];
        const float scale = 1.0f / sqrtf(sum / (float)dim + eps);
        if (w) {
            #pragma omp simd
            for (int64_t i = 0; i < dim; i++) o[i] = w[i] * (xr[i] * scale);
        } else {
            #pragma omp simd
            for (int64_t i = 0; i < dim; i++) o[i] = xr[i] * scale;
        }
    }
}
"""
# -fopenmp-simd: vectorise the state loop (with libmvec's expf) without an OpenMP runtime, whose
# spinning threads would fight torch's own pool for the cores. Threads come from Python instead.
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-shared", "-fPIC"]
JOB_CHANNELS = 16  # channels per job, as in the C source

_lib = None
_load_error: str | None = None


def _compile() -> ctypes.CDLL:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC)")
    key = hashlib.sha256((SOURCE + " ".join(CFLAGS) + compiler).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("SSM_BENCH_CACHE", Path.home() / ".cache" / "ssm-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    library = cache / f"cpu_kernels_{key}.so"
    if not library.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src = Path(tmp) / "cpu_kernels.c"
            src.write_text(SOURCE)
            out = Path(tmp) / library.name
            subprocess.run([compiler, *CFLAGS, str(src), "-o", str(out), "-lm"], check=True, capture_output=True,
                           timeout=120)
            os.replace(out, library)  # atomic: concurrent first uses never see half a library
    lib = ctypes.CDLL(str(library))
    lib.selective_scan_fwd.restype = None
    lib.selective_scan_fwd.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_int64] * 6 + [ctypes.c_void_p]
    lib.conv_state_update.restype = None
    lib.conv_state_update.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 3
    lib.rms_norm.restype = None
    lib.rms_norm.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_int64, ctypes.c_int64, ctypes.c_float]
    return lib


def available() -> bool:
    global _lib, _load_error
    if _lib is None and _load_error is None:
        try:
            _lib = _compile()
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _load_error = f"{type(e).__name__}: {e}"
    return _lib is not None


def selective_scan_cpu(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                       z: Tensor | None = None, initial_state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Same contract as selective_scan_ref; CPU tensors of any float dtype (computed in float32)."""
    assert available(), f"C scan unavailable: {_load_error}"
    assert not u.is_cuda, "selective_scan_cpu takes CPU tensors"
    bsz, length, dim = u.shape
    n = A.shape[1]
    u32, delta32, z32, B32, C32 = (_rows(t) for t in (u, delta, z, B, C))
    A32, D32 = (None if t is None else t.detach().to(torch.float32).contiguous() for t in (A, D))
    h = torch.zeros(bsz, dim, n) if initial_state is None else initial_state.detach().to(torch.float32).clone()
    y = torch.empty(bsz, length, dim)
    strides = _strides(u32, delta32, z32, B32, C32)
    pointers = [0 if t is None else t.data_ptr() for t in (u32, delta32, A32, B32, C32, D32, z32, h, y)]
    jobs = bsz * -(-dim // JOB_CHANNELS)
    workers = min(torch.get_num_threads(), jobs)
    if workers <= 1 or length * dim < 65536:  # small work: threads cost more than they save
        _lib.selective_scan_fwd(*pointers, bsz, length, dim, n, 0, jobs, strides.data_ptr())
    else:  # ctypes releases the GIL, so the calls run in parallel on disjoint channel blocks
        bounds = [jobs * i // workers for i in range(workers + 1)]
        list(_pool(workers).map(lambda i: _lib.selective_scan_fwd(*pointers, bsz, length, dim, n, bounds[i],
                                                                  bounds[i + 1], strides.data_ptr()),
                                range(workers)))
    return y.to(u.dtype), h


def _rows(t: Tensor | None) -> Tensor | None:
    """float32 with a contiguous last dim: slices (z, B and C are) pass as they are, no copy."""
    if t is None:
        return None
    t = t.detach().to(torch.float32)
    return t if t.stride(-1) == 1 else t.contiguous()


def _strides(*tensors) -> Tensor:
    """(batch, token) strides in elements of each (b, l, x) tensor, as the kernel reads them."""
    return torch.tensor([s for t in tensors for s in ((0, 0) if t is None else t.stride()[:2])], dtype=torch.int64)


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="cpu_kernels")
    return _pools[workers]


def selective_state_update_cpu(state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                               D: Tensor | None = None, z: Tensor | None = None) -> Tensor:
    """One token: the scan with l = 1, reading and updating `state` (b, d, n) float32 in place."""
    assert state.dtype == torch.float32 and state.is_contiguous()
    bsz, dim = u.shape
    y = torch.empty(bsz, 1, dim)
    # (b, x) rows seen as (b, 1, x): kept alive through the call
    u32, delta32, z32, B32, C32 = (None if t is None else _rows(t).unsqueeze(1) for t in (u, delta, z, B, C))
    A32, D32 = (None if t is None else (t if t.dtype == torch.float32 and t.is_contiguous() else t.float().contiguous())
                for t in (A, D))
    strides = _strides(u32, delta32, z32, B32, C32)
    _lib.selective_scan_fwd(*(0 if t is None else t.data_ptr() for t in (u32, delta32, A32, B32, C32, D32, z32)),
                            state.data_ptr(), y.data_ptr(), bsz, 1, dim, A.shape[1], 0, bsz * dim, strides.data_ptr())
    return y[:, 0].to(u.dtype)


def conv_state_update_cpu(conv_state: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Contract of causal_conv.conv_state_update with silu=True, for contiguous float32 CPU tensors."""
    assert conv_state.dtype == torch.float32 and conv_state.is_contiguous()
    bsz, dim, K = conv_state.shape
    x, weight = x.contiguous(), weight.contiguous()
    y = torch.empty(bsz, dim)
    _lib.conv_state_update(conv_state.data_ptr(), x.data_ptr(), weight.data_ptr(),
                           0 if bias is None else bias.data_ptr(), y.data_ptr(), bsz, dim, K)
    return y


def rms_norm_cpu(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """x (b, dim) float32 with a unit-stride last dim (a contiguous tensor, or a column slice of
    one) -> x / rms(x) (* weight), (b, dim) float32. weight: (dim,) float32 or None."""
    assert x.dtype == torch.float32 and x.dim() == 2 and x.stride(1) == 1
    assert weight is None or (weight.dtype == torch.float32 and weight.is_contiguous())
    out = torch.empty(x.shape)
    _lib.rms_norm(x.data_ptr(), x.stride(0), 0 if weight is None else weight.data_ptr(), out.data_ptr(),
                  x.shape[0], x.shape[1], eps)
    return out
