"""The in-repo Triton kernels against the PyTorch ops, and the prefill scan's speed.

Agreement: the selective scan (float32 and bfloat16, with and without an initial state and a
gate), the single-token state update and the conv-state update, each against the PyTorch op on
the same inputs; a relative error above the tolerance makes the row invalid. Speed: the scan
alone at (batch, scan_len, d_inner, d_state), Triton against the torch chunked scan (and
mamba_ssm's selective_scan_fn where it is installed), the median of `repeats`. On CUDA also the
device-to-device copy bandwidth, a decode roofline's ceiling.

The kernels need CUDA, or Triton's interpreter on a CPU (TRITON_INTERPRET=1 before the process
starts: slow, numpy, for checking the code paths only; its times are no speed).
The backend's model is not used: the job's model only names the run.
"""

from __future__ import annotations

import os
import statistics

import torch

from bench.device import timed_calls
from bench.schema import RATIO, SECONDS



def run(cfg, backend, out_dir=None) -> list[dict]:
    from models.ops import scan_backend

    device = backend.device
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if scan_backend._triton_scan is None:
        raise RuntimeError("the Triton kernels are not importable (pip install triton)")
    if device.type != "cuda" and not interpreted:
        raise RuntimeError("the Triton kernels need CUDA; on a CPU run with TRITON_INTERPRET=1 (code paths only)")
    sc = cfg.scenario
    common = {"source": "measured", "interpreted": interpreted}
    rows = [{**common, **r} for r in _agreement(device, sc)]
    rows += [{**common, **r} for r in _scan_speed(device, sc, scan_backend)]
    if device.type == "cuda":
        rows.append({**common, **_copy_bandwidth(device, sc.copy_mib)})
    return rows


def _inputs(b, l, d, n, dtype, device, seed=0, with_state=False):
    """Model-like scan inputs: u, z, B, C in the model dtype; delta float32 (the softplus output)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device)

    u, delta = randn(b, l, d).to(dtype), torch.nn.functional.softplus(randn(b, l, d) - 4)  # delta ~0.02
    A = -torch.arange(1, n + 1, device=device, dtype=torch.float32).repeat(d, 1)  # S4D-real init
    B, C, z = randn(b, l, n).to(dtype), randn(b, l, n).to(dtype), randn(b, l, d).to(dtype)
    D = torch.ones(d, device=device, dtype=dtype)
    return u, delta, A, B, C, D, z, (randn(b, d, n) if with_state else None)


def _rel_err(x, ref) -> float:
    return ((x.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-6)).item()


def _check(name: str, err: float, tol: float, **extra) -> dict:
    row = {"metric": f"{name}_max_rel_err", "value": err, "unit": RATIO, "tolerance": tol, "impl": "triton", **extra}
    if not err <= tol:
        row.update(status="invalid", reason=f"Triton {name} differs from PyTorch: max rel err {err:.2e} > {tol:.0e}")
    return row


def _agreement(device, sc) -> list[dict]:
    from models.ops.causal_conv import conv_state_update
    from models.ops.selective_scan import selective_scan_chunked, selective_state_update
    from models.ops.triton_conv import conv_state_update_triton
    from models.ops.triton_selective_scan import selective_scan_triton
    from models.ops.triton_state_update import selective_state_update_triton

    rows = []
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 2e-2)):
        name = str(dtype).removeprefix("torch.")
        for with_state in (False, True):
            for gated in (True, False):
                u, delta, A, B, C, D, z, h0 = _inputs(2, sc.check_len, sc.check_d, 16, dtype, device,
                                                      with_state=with_state)
                z = z if gated else None
                y_ref, h_ref = selective_scan_chunked(u, delta, A, B, C, D, z, initial_state=h0)
                y, h = selective_scan_triton(u, delta, A, B, C, D, z, initial_state=h0)
                tag = f"scan_{name}_{'h0' if with_state else 'zero'}_{'gated' if gated else 'ungated'}"
                rows += [_check(tag + "_y", _rel_err(y, y_ref), tol, kernel_dtype=name),
                         _check(tag + "_state", _rel_err(h, h_ref), 1e-4, kernel_dtype=name)]
        b, d, K = 3, sc.check_d, 4
        u, delta, A, B, C, D, z, h0 = _inputs(b, 1, d, 16, dtype, device, seed=1, with_state=True)
        ref_state, state = h0.clone(), h0.clone()
        y_ref = selective_state_update(ref_state, u[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D, z[:, 0])
        y = selective_state_update_triton(state, u[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D, z[:, 0])
        rows += [_check(f"state_update_{name}_y", _rel_err(y, y_ref), tol, kernel_dtype=name),
                 _check(f"state_update_{name}_state", _rel_err(state, ref_state), 1e-5, kernel_dtype=name)]
        g = torch.Generator().manual_seed(2)
        conv = torch.randn(b, d, K, generator=g).to(device, dtype)
        weight, bias = (torch.randn(d, K, generator=g).to(device, dtype), torch.randn(d, generator=g).to(device, dtype))
        ref_conv, out_conv = conv.clone(), conv.clone()
        for x in torch.randn(K + 1, b, d, generator=g).to(device, dtype):
            o_ref = conv_state_update(ref_conv, x, weight, bias)
            o = conv_state_update_triton(out_conv, x, weight, bias)
        rows += [_check(f"conv_update_{name}_out", _rel_err(o, o_ref), tol, kernel_dtype=name),
                 _check(f"conv_update_{name}_state", _rel_err(out_conv, ref_conv), 0.0, kernel_dtype=name)]
    return rows


def _median_seconds(fn, device, repeats: int) -> float:
    return statistics.median(timed_calls(fn, device, repeats))


def _scan_speed(device, sc, scan_backend) -> list[dict]:
    from models.ops.selective_scan import selective_scan_chunked
    from models.ops.triton_selective_scan import selective_scan_triton

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    u, delta, A, B, C, D, z, _ = _inputs(1, sc.scan_len, sc.scan_d, 16, dtype, device)
    shape = {"prompt_len": sc.scan_len, "d_inner": sc.scan_d, "d_state": 16, "kernel_dtype": str(dtype)[6:]}
    paths = {"torch_chunked": lambda: selective_scan_chunked(u, delta, A, B, C, D, z),
             "triton": lambda: selective_scan_triton(u, delta, A, B, C, D, z)}
    if scan_backend._mamba_ssm_scan is not None and device.type == "cuda":
        paths["mamba_ssm"] = lambda: scan_backend._mamba_ssm_scan(
            u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D.float(),
            z.transpose(1, 2), return_last_state=True)
    seconds = {impl: _median_seconds(fn, device, sc.repeats) for impl, fn in paths.items()}
    rows = [{"metric": "scan_time", "value": s, "unit": SECONDS, "impl": impl, **shape} for impl, s in seconds.items()]
    return rows + [{"metric": "scan_speedup", "value": seconds[other] / seconds["triton"], "unit": RATIO,
                    "impl": "triton", "of": other, **shape} for other in seconds if other != "triton"]


def _copy_bandwidth(device, mib: int) -> dict:
    """Device-to-device copy: bytes read plus bytes written per second, as a decode step moves weights."""
    nbytes = mib << 20
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    seconds = _median_seconds(lambda: dst.copy_(src), device, 20)
    return {"metric": "copy_bandwidth", "value": 2 * nbytes / seconds, "unit": "bytes/s", "step": nbytes}
