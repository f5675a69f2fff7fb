"""One-command GPU check of the in-repo Mamba's fast paths, sized for a few minutes on an H100/H200.

    python -m bench.devicecheck --out results/devicecheck            # the full check, CUDA
    python -m bench.devicecheck --out /tmp/dc --quick                 # tiny models: plumbing, CPU too

Sections, in order (each one in its own try/except, so a failure loses only its own rows):
  env        GPU, library versions, and the device-to-device copy bandwidth (the roofline's ceiling)
  kernels    the Triton kernels against the PyTorch ops on CUDA (scan, state update, conv update)
  scan       the prefill scan alone at L=8192, d_inner=8192: Triton vs torch chunked (vs mamba_ssm)
  decode     Falcon Mamba 7B (random bf16 weights), one token: eager, eager torch-only, CUDA graph,
             as a fraction of the roofline (bytes read per token / copy bandwidth)
  prefill    the same model, parallel prefill at 8k and 32k tokens (Triton scan), and at 8k on torch
  gen        long greedy generation in windows of 1k tokens, tokens/s and peak memory per window:
             Mamba through the CUDA graph, Llama-3.1-8B shape (random bf16) through a DynamicCache
  maxprompt  the longest prompt that fits a 24 GiB budget (set_per_process_memory_fraction),
             parallel prefill with last-position logits only, by bisection, for both models

Writes into --out: results.csv (tidy rows, bench/schema.py columns first), results.json (rows,
environment, checks, section status), summary.md and, with matplotlib, generation.png. They are
rewritten after every section, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub access, ever: before transformers is imported
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# transformers >= 5.24 renames past_key_values to cache; the old name still works on the GPU image's 5.17.
warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message="Warning: Profiler clears events")  # one profiled step: harmless

from bench import schema  # noqa: E402
from models.mamba import MambaConfig, MambaLM  # noqa: E402
from models.ops import scan_backend  # noqa: E402
from models.ops.selective_scan import selective_scan_chunked, selective_state_update  # noqa: E402

GIB = 1 << 30
SECTIONS = ("env", "kernels", "scan", "decode", "prefill", "gen", "maxprompt")
# Targets from issue 7: (check name, comparison, target).
TARGETS = {
    "decode_graph_fraction_of_roofline": (">=", 0.70),
    "decode_graph_speedup_vs_eager": (">=", 5.0),
    "mamba_gen_last_over_first_window": (">=", 0.95),
    "scan_triton_speedup_vs_torch_chunked": (">=", 5.0),
    "scan_triton_time_over_mamba_ssm": ("<=", 1.5),
}

# Falcon Mamba 7B and Llama-3.1-8B, at the shared vocabulary of 65024; --quick swaps in tiny ones.
MAMBA_7B = dict(model_type="falcon_mamba", hidden_size=4096, num_hidden_layers=64, state_size=16, conv_kernel=4,
                intermediate_size=8192, time_step_rank=256, vocab_size=65024, tie_word_embeddings=False)
MAMBA_QUICK = dict(model_type="falcon_mamba", hidden_size=64, num_hidden_layers=2, state_size=16, conv_kernel=4,
                   intermediate_size=128, time_step_rank=8, vocab_size=1024, tie_word_embeddings=False)
LLAMA_8B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                intermediate_size=14336, vocab_size=65024, max_position_embeddings=131072, rope_theta=500000.0,
                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192},
                tie_word_embeddings=False)
LLAMA_QUICK = dict(LLAMA_8B, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, vocab_size=1024)


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- results


class Results:
    """Tidy rows plus per-section status; written to --out after every section."""

    def __init__(self, out: Path, device: torch.device, env: dict):
        self.out, self.device, self.env = out, device, env
        self.rows: list[dict] = []
        self.sections: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        self.out.mkdir(parents=True, exist_ok=True)

    def add(self, scenario: str, metric: str, value, unit: str, **extra):
        row = {c: None for c in schema.COLUMNS}
        row.update(run_id=self.env["run_id"], scenario=scenario, device=self.device.type,
                   hardware=self.env.get("gpu") or self.env.get("cpu"), metric=metric, unit=unit,
                   value=None if value is None else float(value), source="measured")
        row.update(extra)
        self.rows.append(row)

    def check(self, name: str, value: float | None, note: str = ""):
        op, target = TARGETS[name]
        ok = None if value is None or not math.isfinite(value) else (value >= target if op == ">=" else value <= target)
        self.checks[name] = dict(value=value, target=f"{op} {target}", passed=ok, note=note)

    @contextmanager
    def section(self, name: str, enabled: bool = True, needs_cuda: bool = False):
        """Run one section: time it, log it, keep its exception (with traceback) instead of raising."""
        if not enabled:
            self.sections[name] = dict(status="skipped: not selected")
            yield False
            return
        if needs_cuda and self.device.type != "cuda":
            log(f"== {name}: skipped: no CUDA")
            self.sections[name] = dict(status="skipped: no CUDA")
            yield False
            return
        log(f"== {name}")
        start = time.perf_counter()
        self.sections[name] = dict(status="interrupted")
        try:
            yield True
            self.sections[name] = dict(status="ok")
        except Exception as e:  # one section's failure must not lose the others
            log(f"!! {name} failed: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stdout)
            self.sections[name] = dict(status="failed", error=f"{type(e).__name__}: {e}",
                                       traceback=traceback.format_exc(limit=8))
        finally:
            self.sections[name]["seconds"] = round(time.perf_counter() - start, 1)
            log(f"   {name}: {self.sections[name]['status']} in {self.sections[name]['seconds']} s")
            _free_memory()
            self.save()

    def save(self):
        columns = list(schema.COLUMNS) + sorted({k for r in self.rows for k in r} - set(schema.COLUMNS))
        with open(self.out / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        with open(self.out / "results.json", "w") as f:
            json.dump(dict(environment=self.env, checks=self.checks, sections=self.sections, rows=self.rows),
                      f, indent=1, default=str)
        (self.out / "summary.md").write_text(self.summary_markdown())

    def value(self, scenario: str, metric: str, **match):
        """The last row's value for (scenario, metric[, column=value...]), or None."""
        for r in reversed(self.rows):
            if r["scenario"] == scenario and r["metric"] == metric and all(r.get(k) == v for k, v in match.items()):
                return r["value"]
        return None

    def summary_markdown(self) -> str:
        env = self.env
        lines = [f"# Device check {env['run_id']}", "",
                 f"{env.get('gpu') or 'no GPU'}; torch {env['torch']}, triton {env.get('triton')}, "
                 f"transformers {env.get('transformers')}, mamba_ssm {env.get('mamba_ssm')}; "
                 f"quick={env['quick']}", "",
                 "## Checks against the issue's targets", "", "| check | value | target | pass |", "|---|---|---|---|"]
        for name, c in self.checks.items():
            v = "n/a" if c["value"] is None else f"{c['value']:.3f}"
            lines.append(f"| {name} | {v} | {c['target']} | {_mark(c['passed'])} |")
        lines += ["", "## Sections", "", "| section | status | seconds |", "|---|---|---|"]
        for name, s in self.sections.items():
            status = s["status"] + (f" ({s['error']})" if "error" in s else "")
            lines.append(f"| {name} | {status} | {s.get('seconds', '')} |")
        lines += ["", "## Measurements", "", "| scenario | model | impl | prompt_len | step | metric | value | unit |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            v = r["value"]
            v = "" if v is None else (f"{v:.4g}" if abs(v) < 1e6 else f"{v:.4e}")
            lines.append(f"| {r['scenario']} | {r.get('model') or ''} | {r.get('impl') or ''} | "
                         f"{r.get('prompt_len') or ''} | {'' if r.get('step') is None else r['step']} | "
                         f"{r['metric']} | {v} | {r['unit']} |")
        return "\n".join(lines) + "\n"


def _mark(passed):
    return "n/a" if passed is None else ("yes" if passed else "NO")


def _free_memory():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- timing


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int = 1, reps: int = 3) -> float:
    """Median wall seconds of fn() over reps, after warmup calls, synchronised around each call."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def peak_memory(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def reset_peak(device: torch.device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- sections


def environment(args, device: torch.device) -> dict:
    import importlib.metadata as md

    def version(name):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    env = dict(run_id=time.strftime("%Y%m%d-%H%M%S"), quick=args.quick, python=platform.python_version(),
               torch=torch.__version__, cuda=torch.version.cuda, cpu=platform.processor() or platform.machine(),
               gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
               argv=sys.argv[1:])
    for name in ("triton", "transformers", "mamba_ssm", "matplotlib"):
        env[name] = version(name)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu_memory_bytes=props.total_memory, sm_count=props.multi_processor_count)
    env["triton_kernels_importable"] = scan_backend._triton_scan is not None
    env["mamba_ssm_importable"] = scan_backend._mamba_ssm_scan is not None
    return env


def section_env(res: Results, args, device):
    for k in ("gpu", "torch", "triton", "transformers", "mamba_ssm", "triton_kernels_importable"):
        log(f"   {k}: {res.env.get(k)}")
    if device.type != "cuda":
        log("   bandwidth: skipped: no CUDA")
        return
    # Copy bandwidth counts bytes read plus bytes written, as a decode step's weight reads do.
    nbytes = (256 << 20) if args.quick else (4 * GIB)
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, warmup=3, reps=20)
    res.env["copy_bandwidth_bytes_per_s"] = bw = 2 * nbytes / seconds
    res.add("env", "copy_bandwidth", bw, "bytes/s", step=nbytes)
    log(f"   device-to-device copy: {bw / 1e12:.2f} TB/s (read + write, {nbytes / GIB:.2f} GiB buffers)")


def _scan_inputs(b, l, d, n, dtype, device, seed=0, with_state=False):
    """Model-like scan inputs: u, z, B, C in the model dtype; dt float32 (the softplus output)."""
    g = torch.Generator(device=device).manual_seed(seed)
    u = torch.randn(b, l, d, device=device, generator=g).to(dtype)
    delta = torch.nn.functional.softplus(torch.randn(b, l, d, device=device, generator=g) - 4)  # ~0.02
    A = -torch.arange(1, n + 1, device=device, dtype=torch.float32).repeat(d, 1)  # S4D-real init
    B = torch.randn(b, l, n, device=device, generator=g).to(dtype)
    C = torch.randn(b, l, n, device=device, generator=g).to(dtype)
    D = torch.ones(d, device=device, dtype=dtype)
    z = torch.randn(b, l, d, device=device, generator=g).to(dtype)
    h0 = torch.randn(b, d, n, device=device, generator=g) if with_state else None
    return u, delta, A, B, C, D, z, h0


def _rel_err(x, ref) -> float:
    return ((x.float() - ref.float()).abs().max() / ref.float().abs().max().clamp_min(1e-6)).item()


def section_kernels(res: Results, args, device):
    from models.ops import triton_state_update
    from models.ops.causal_conv import conv_state_update
    from models.ops.triton_selective_scan import selective_scan_triton

    failures = []

    def record(name, err, tol, **extra):
        ok = err <= tol
        res.add("kernels", f"{name}_max_rel_err", err, schema.RATIO, impl="triton", passed=ok, tolerance=tol, **extra)
        log(f"   {name}: max rel err {err:.2e} (tol {tol:.0e}) {'ok' if ok else 'MISMATCH'}")
        if not ok:
            failures.append(name)

    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 2e-2)):
        for with_state in (False, True):
            for gated in (True, False):
                u, delta, A, B, C, D, z, h0 = _scan_inputs(2, 300, 256, 16, dtype, device, with_state=with_state)
                z = z if gated else None
                y_ref, h_ref = selective_scan_chunked(u, delta, A, B, C, D, z, initial_state=h0)
                y, h = selective_scan_triton(u, delta, A, B, C, D, z, initial_state=h0)
                tag = f"scan_{str(dtype)[6:]}_{'h0' if with_state else 'zero'}_{'gated' if gated else 'ungated'}"
                record(tag + "_y", _rel_err(y, y_ref), tol, dtype=str(dtype)[6:])
                record(tag + "_state", _rel_err(h, h_ref), 1e-4, dtype=str(dtype)[6:])

    b, d, n, K = 3, 1000, 16, 4
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        u, delta, A, B, C, D, z, h0 = _scan_inputs(b, 1, d, n, dtype, device, seed=1, with_state=True)
        ref_state, state = h0.clone(), h0.clone()
        y_ref = selective_state_update(ref_state, u[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D, z[:, 0])
        y = triton_state_update.selective_state_update_triton(state, u[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D,
                                                              z[:, 0])
        record(f"state_update_{str(dtype)[6:]}_y", _rel_err(y, y_ref), tol)
        record(f"state_update_{str(dtype)[6:]}_state", _rel_err(state, ref_state), 1e-5)
        conv = torch.randn(b, d, K, device=device).to(dtype)
        weight, bias = torch.randn(d, K, device=device).to(dtype), torch.randn(d, device=device).to(dtype)
        ref_conv, out_conv = conv.clone(), conv.clone()
        for x in torch.randn(K + 1, b, d, device=device).to(dtype):
            o_ref = conv_state_update(ref_conv, x, weight, bias)
            o = triton_state_update.conv_state_update_triton(out_conv, x, weight, bias)
        record(f"conv_update_{str(dtype)[6:]}_out", _rel_err(o, o_ref), tol)
        record(f"conv_update_{str(dtype)[6:]}_state", _rel_err(out_conv, ref_conv), 0.0)
    if failures:
        raise AssertionError(f"Triton kernels differ from PyTorch: {failures}")


# Configurations of the Triton scan tried at the benchmark shape: (block_d, chunk, num_warps).
# chunk 1 is the token-by-token variant (no tl.associative_scan).
SCAN_SWEEP = [(16, 16, 4), (32, 16, 4), (32, 16, 8), (32, 8, 4), (64, 8, 8), (16, 32, 4), (64, 1, 4)]


def section_scan(res: Results, args, device):
    from models.ops.triton_selective_scan import selective_scan_triton

    b, l, d, n = (1, 512, 256, 16) if args.quick else (1, 8192, 8192, 16)
    dtype = args.dtype
    u, delta, A, B, C, D, z, _ = _scan_inputs(b, l, d, n, dtype, device)
    shape = dict(batch_size=b, prompt_len=l, d_inner=d, d_state=n, dtype=str(dtype)[6:])
    y_ref, _ = selective_scan_chunked(u, delta, A, B, C, D, z)
    # One torch rep costs ~l small launches: a few are enough for a median.
    t_torch = timed(lambda: selective_scan_chunked(u, delta, A, B, C, D, z), device, warmup=1, reps=3)
    res.add("scan", "time", t_torch, schema.SECONDS, impl="torch_chunked", **shape)
    log(f"   torch chunked (chunk 64): {t_torch * 1e3:.2f} ms at b={b} l={l} d={d} n={n}")

    best = None
    for block_d, chunk, warps in SCAN_SWEEP if not args.quick else SCAN_SWEEP[:2]:
        cfg = dict(block_d=block_d, chunk=chunk, num_warps=warps)
        try:
            y, _ = selective_scan_triton(u, delta, A, B, C, D, z, **cfg)
            err = _rel_err(y, y_ref)
            t = timed(lambda: selective_scan_triton(u, delta, A, B, C, D, z, **cfg), device, warmup=2, reps=7)
        except Exception as e:  # e.g. out of registers or shared memory for one configuration
            log(f"   triton {cfg}: failed: {type(e).__name__}: {str(e)[:200]}")
            continue
        res.add("scan", "time", t, schema.SECONDS, impl="triton", max_rel_err=err, config=json.dumps(cfg), **shape)
        log(f"   triton {cfg}: {t * 1e3:.3f} ms, max rel err {err:.1e}")
        if err < 5e-2 and (best is None or t < best[0]):
            best = (t, cfg)
    t_default = timed(lambda: selective_scan_triton(u, delta, A, B, C, D, z), device, warmup=1, reps=7)
    res.add("scan", "time", t_default, schema.SECONDS, impl="triton_default", **shape)
    log(f"   triton default config: {t_default * 1e3:.3f} ms; best {best}")
    speedup = t_torch / t_default
    res.add("scan", "speedup_vs_torch_chunked", speedup, schema.RATIO, impl="triton_default", **shape)
    res.check("scan_triton_speedup_vs_torch_chunked", speedup,
              note=f"l={l} d={d}; best sweep config {best[1] if best else None}: "
                   f"{t_torch / best[0] if best else float('nan'):.1f}x")

    if scan_backend._mamba_ssm_scan is not None:
        def mamba_ssm():
            scan_backend._mamba_ssm_scan(u.transpose(1, 2), delta.transpose(1, 2).to(dtype), A, B.transpose(1, 2),
                                         C.transpose(1, 2), D.float(), z.transpose(1, 2), return_last_state=True)

        t_ms = timed(mamba_ssm, device, warmup=2, reps=7)
        res.add("scan", "time", t_ms, schema.SECONDS, impl="mamba_ssm", **shape)
        res.check("scan_triton_time_over_mamba_ssm", t_default / t_ms)
        log(f"   mamba_ssm selective_scan_fn: {t_ms * 1e3:.3f} ms")
    else:
        res.check("scan_triton_time_over_mamba_ssm", None, note="mamba_ssm not importable")
        log("   mamba_ssm: not importable, no comparison")


def build_mamba(args, device) -> MambaLM:
    cfg = MambaConfig(**(MAMBA_QUICK if args.quick else MAMBA_7B))
    torch.manual_seed(0)
    start = time.perf_counter()
    model = MambaLM(cfg, device=device, dtype=args.dtype).eval()
    sync(device)
    log(f"   built Falcon Mamba {'(quick)' if args.quick else '7B'}: {model.num_params() / 1e9:.2f} B params, "
        f"{args.dtype}, {time.perf_counter() - start:.1f} s")
    return model


def mamba_bytes_per_token(model: MambaLM, batch_size: int = 1) -> tuple[int, int]:
    """(weight bytes, state bytes) that one decode step must move: every weight once, except the
    embedding table (one row per token), plus the SSM and conv states read and written."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.backbone.embeddings.weight
    if emb is not model.lm_head.weight:  # a tied table is read whole by the head anyway
        weights -= emb.numel() * emb.element_size() - batch_size * emb.shape[1] * emb.element_size()
    cache = model.allocate_inference_cache(batch_size)
    return weights, 2 * cache.nbytes


def kernels_per_step(model: MambaLM, prompt, device) -> int | None:
    """GPU kernels (and copies) launched by one model.step, counted with the profiler; None off CUDA."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    logits, cache = model.prefill(prompt)
    token = logits.argmax(-1)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        model.step(token, cache)
        sync(device)
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def section_decode(res: Results, args, device, model: MambaLM):
    from models.cuda_graph import GraphedDecoder

    tag = dict(model="falcon_mamba_7b" if not args.quick else "falcon_mamba_quick", arch="ssm",
               dtype=str(args.dtype)[6:], batch_size=1, params=model.num_params())
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), device=device)
    weights, state = mamba_bytes_per_token(model)
    res.add("decode", "bytes_per_token", weights + state, schema.BYTES, weight_bytes=weights, state_bytes=state, **tag)
    bw = res.env.get("copy_bandwidth_bytes_per_s")
    roofline = bw / (weights + state) if bw else None
    if roofline:
        res.add("decode", "roofline_throughput", roofline, schema.TOKENS_PER_S, **tag)
        log(f"   roofline: {(weights + state) / 1e9:.2f} GB per token -> {roofline:.1f} tokens/s")

    def eager_rate(n_steps, label):
        logits, cache = model.prefill(prompt)
        token = logits.argmax(-1)

        def run():
            nonlocal token
            for _ in range(n_steps):
                token = model.step(token, cache).argmax(-1)

        t = timed(run, device, warmup=1, reps=3)
        rate = n_steps / t
        res.add("decode", "throughput", rate, schema.TOKENS_PER_S, impl=label, **tag)
        log(f"   {label}: {rate:.1f} tokens/s ({t / n_steps * 1e3:.2f} ms/token)")
        return rate

    with torch.inference_mode():
        n_eager = 8 if args.quick else 24
        eager = eager_rate(n_eager, "eager")
        kernels = kernels_per_step(model, prompt, device)
        if kernels:
            # Even replayed from a graph, each kernel costs a few microseconds of GPU time.
            res.add("decode", "kernels_per_token", kernels, "kernels", impl="eager", **tag)
            log(f"   {kernels} GPU kernels per decode step ({kernels / model.config.num_hidden_layers:.1f} per layer)")
        scan_backend.use_triton = False
        try:
            eager_rate(n_eager // 2, "eager_torch_ops")
        finally:
            scan_backend.use_triton = True

    if device.type != "cuda":
        log("   CUDA graph: skipped: no CUDA")
        return
    start = time.perf_counter()
    decoder = GraphedDecoder(model, batch_size=1)
    log(f"   captured the decode graph in {time.perf_counter() - start:.1f} s")
    with torch.inference_mode():
        token = decoder.prefill(prompt).argmax(-1)
        n_graph = 32 if args.quick else 256

        def run():
            nonlocal token
            for _ in range(n_graph):
                token = decoder.step(token).argmax(-1)

        t = timed(run, device, warmup=1, reps=3)
    graph = n_graph / t
    res.add("decode", "throughput", graph, schema.TOKENS_PER_S, impl="cuda_graph", **tag)
    log(f"   cuda_graph: {graph:.1f} tokens/s ({t / n_graph * 1e3:.3f} ms/token)")
    res.check("decode_graph_speedup_vs_eager", graph / eager)
    if roofline:
        res.add("decode", "fraction_of_roofline", graph / roofline, schema.RATIO, impl="cuda_graph", **tag)
        res.add("decode", "fraction_of_roofline", eager / roofline, schema.RATIO, impl="eager", **tag)
        res.check("decode_graph_fraction_of_roofline", graph / roofline)
    log(f"   paths used: {sorted(scan_backend.used)}")


def section_prefill(res: Results, args, device, model: MambaLM):
    tag = dict(model="falcon_mamba_7b" if not args.quick else "falcon_mamba_quick", arch="ssm",
               dtype=str(args.dtype)[6:], batch_size=1, prefill_mode="parallel")
    vocab = model.config.vocab_size
    with torch.inference_mode():
        model.prefill(torch.randint(0, vocab, (1, 256), device=device))  # compile, warm the allocator
        for impl, lengths, reps in (("triton", args.prefill_lens, 2), ("torch_chunked", args.prefill_lens[:1], 1)):
            if impl == "triton" and device.type != "cuda":
                log("   triton prefill: skipped: no CUDA")
                continue
            scan_backend.use_triton = impl == "triton"
            scan_backend.used.clear()
            try:
                for length in lengths:
                    ids = torch.randint(0, vocab, (1, length), device=device)
                    reset_peak(device)
                    t = timed(lambda: model.prefill(ids), device, warmup=0, reps=reps)
                    rate = length / t
                    res.add("prefill", "throughput", rate, schema.TOKENS_PER_S, impl=impl, prompt_len=length,
                            peak_allocated=peak_memory(device), scan_path=",".join(sorted(scan_backend.used)), **tag)
                    log(f"   {impl} ({sorted(scan_backend.used)}) L={length}: {rate:,.0f} tokens/s ({t:.3f} s)")
            finally:
                scan_backend.use_triton = True
    first = args.prefill_lens[0]
    fast = res.value("prefill", "throughput", impl="triton", prompt_len=first)
    slow = res.value("prefill", "throughput", impl="torch_chunked", prompt_len=first)
    if fast and slow:
        res.add("prefill", "speedup_vs_torch_chunked", fast / slow, schema.RATIO, impl="triton", prompt_len=first,
                **tag)
        log(f"   model prefill at L={first}: Triton scan {fast / slow:.1f}x the torch chunked scan")


def _generate_in_windows(res: Results, args, device, tag: dict, step_fn, first_token, window: int):
    """Greedy decode of up to args.gen_tokens tokens in windows of `window` tokens, for at most
    args.gen_budget_s seconds (a window cut short by the budget is recorded with its own length).
    step_fn(token (b,)) -> logits (b, V). Records tokens/s and peak allocated memory per window."""
    token, generated, rates = first_token, 0, []
    deadline = time.perf_counter() + args.gen_budget_s
    while generated < args.gen_tokens and time.perf_counter() < deadline:
        n = min(window, args.gen_tokens - generated)
        reset_peak(device)
        sync(device)
        t0 = time.perf_counter()
        for i in range(n):
            token = step_fn(token).argmax(-1)
            if time.perf_counter() > deadline:  # checked on the host: no sync, the GPU runs ahead
                n = i + 1
                break
        sync(device)
        seconds = time.perf_counter() - t0
        generated += n
        rates.append((n, n / seconds))
        res.add("gen", "throughput", n / seconds, schema.TOKENS_PER_S, step=generated,
                peak_allocated=peak_memory(device), window=n, **tag)
        if len(rates) == 1 or len(rates) % 4 == 0:
            log(f"   {tag['model']}: {generated} tokens, window {len(rates)}: {rates[-1][1]:.1f} tokens/s, "
                f"peak {(peak_memory(device) or 0) / GIB:.2f} GiB")
    if generated < args.gen_tokens:
        log(f"   {tag['model']}: stopped at {generated} of {args.gen_tokens} tokens "
            f"(time budget {args.gen_budget_s} s)")
    res.add("gen", "tokens_generated", generated, schema.TOKENS, **tag)
    log(f"   {tag['model']}: {generated} tokens; first window {rates[0][1]:.1f}, last {rates[-1][1]:.1f} tokens/s")
    return rates


def section_gen_mamba(res: Results, args, device, model: MambaLM):
    tag = dict(model="falcon_mamba_7b" if not args.quick else "falcon_mamba_quick", arch="ssm",
               dtype=str(args.dtype)[6:], batch_size=1)
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), device=device)
    with torch.inference_mode():
        if device.type == "cuda":
            from models.cuda_graph import GraphedDecoder

            decoder = GraphedDecoder(model, batch_size=1)
            first, step_fn, impl = decoder.prefill(prompt).argmax(-1), decoder.step, "cuda_graph"
        else:
            logits, cache = model.prefill(prompt)
            first, step_fn, impl = logits.argmax(-1), (lambda tok: model.step(tok, cache)), "eager"
        rates = _generate_in_windows(res, args, device, dict(tag, impl=impl), step_fn, first, args.window)
    full = [rate for n, rate in rates if n == args.window]  # the budget may cut the last window short
    if len(full) >= 2:
        res.check("mamba_gen_last_over_first_window", full[-1] / full[0],
                  note=f"{len(full)} windows of {args.window} tokens")


def build_llama(args, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**(LLAMA_QUICK if args.quick else LLAMA_8B))
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device(device):  # random init straight on the GPU: seconds, not minutes
        model = LlamaForCausalLM._from_config(config, dtype=args.dtype).eval()
    sync(device)
    n = sum(p.numel() for p in model.parameters())
    log(f"   built Llama-3.1-8B shape {'(quick)' if args.quick else ''}: {n / 1e9:.2f} B params, "
        f"{args.dtype}, attention {model.config._attn_implementation}, {time.perf_counter() - start:.1f} s")
    return model


def section_gen_llama(res: Results, args, device, model):
    from transformers import DynamicCache

    tag = dict(model="llama_3_1_8b_shape" if not args.quick else "llama_quick", arch="transformer",
               dtype=str(args.dtype)[6:], batch_size=1, impl="transformers_dynamic_cache")
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), device=device)
    with torch.inference_mode():
        cache = DynamicCache()
        out = model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)

        def step_fn(token):
            return model(input_ids=token[:, None], past_key_values=cache, use_cache=True).logits[:, -1]

        _generate_in_windows(res, args, device, tag, step_fn, out.logits[:, -1].argmax(-1), args.window_llama)


def max_prompt_len(probe, start: int, cap: int, resolution: int) -> tuple[int, int | None, int]:
    """Largest L with probe(L) True, by doubling from `start` then bisecting to `resolution`.
    Returns (largest that fit, smallest that failed or None, number of probes)."""
    fit, fail, probes, length = 0, None, 0, start
    while fail is None:
        probes += 1
        if probe(length):
            fit = length
            if length >= cap:
                break
            length = min(2 * length, cap)
        else:
            fail = length
    while fail is not None and fail - fit > resolution:
        mid = (fit + fail) // 2 // 256 * 256 or (fit + fail) // 2
        probes += 1
        if probe(mid):
            fit = mid
        else:
            fail = mid
    return fit, fail, probes


def section_maxprompt(res: Results, args, device, model, prefill_fn, tag: dict):
    """prefill_fn(ids) runs one parallel prefill keeping the last logits only (and the state / KV cache)."""
    total = torch.cuda.get_device_properties(device).total_memory
    budget = args.budget_gib * GIB
    _free_memory()
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total), index)
    vocab = model.config.vocab_size

    def probe(length: int) -> bool:
        ok = True
        try:
            with torch.inference_mode():
                result = prefill_fn(torch.randint(0, vocab, (1, length), device=device))
                sync(device)
                del result
        except torch.cuda.OutOfMemoryError:
            ok = False
        _free_memory()
        log(f"   {tag['model']}: L={length}: {'fits' if ok else 'out of memory'}")
        return ok

    try:
        weights = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        fit, fail, probes = max_prompt_len(probe, args.maxprompt_start, args.maxprompt_cap, args.maxprompt_resolution)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
    res.add("maxprompt", "max_prompt_len", fit, schema.TOKENS, budget_bytes=budget, first_failure=fail,
            probes=probes, resident_bytes=weights, prefill_mode="parallel", **tag)
    log(f"   {tag['model']}: max prompt {fit} tokens under {args.budget_gib} GiB (first failure {fail}), "
        f"{probes} probes in {time.perf_counter() - start:.0f} s; weights etc. {weights / GIB:.1f} GiB")


# ----------------------------------------------------------------------------- report


def plot(res: Results):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("   no matplotlib: no plots")
        return
    rows = [r for r in res.rows if r["scenario"] == "gen" and r["metric"] == "throughput"]
    if not rows:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        label = f"{model} ({mine[0]['impl']})"
        ax1.plot([r["step"] for r in mine], [r["value"] for r in mine], marker="o", ms=3, label=label)
        if mine[0].get("peak_allocated") is not None:
            ax2.plot([r["step"] for r in mine], [r["peak_allocated"] / GIB for r in mine], marker="o", ms=3,
                     label=label)
    ax1.set(xlabel="tokens generated", ylabel="tokens/s (per window)", title="Decode throughput", ylim=(0, None))
    ax2.set(xlabel="tokens generated", ylabel="GiB", title="Peak allocated memory per window", ylim=(0, None))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(res.out / "generation.png", dpi=120)
    plt.close(fig)


def print_summary(res: Results):
    print("\n==== devicecheck summary ====", flush=True)
    for name, s in res.sections.items():
        print(f"  {name:10s} {s['status']}" + (f": {s['error'][:160]}" if "error" in s else ""), flush=True)
    print("  -- targets --", flush=True)
    for name, c in res.checks.items():
        v = "n/a" if c["value"] is None else f"{c['value']:.3f}"
        note = f"  ({c['note']})" if c["note"] else ""
        print(f"  {name:40s} {v:>9s}  target {c['target']:7s}  pass={_mark(c['passed'])}{note}", flush=True)
    print(f"  results in {res.out}", flush=True)


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--quick", action="store_true", help="tiny models and lengths: a smoke test (runs on CPU)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--gen-tokens", type=int, default=None, help="tokens per generation run (default 32768)")
    p.add_argument("--gen-budget-s", type=float, default=None,
                   help="wall-clock cap per model for the generation runs (default 60 s)")
    p.add_argument("--window", type=int, default=None, help="tokens per throughput window (default 1024)")
    p.add_argument("--window-llama", type=int, default=None,
                   help="window for the Llama run (default 256: its eager decode runs ~15 tokens/s on an H200)")
    p.add_argument("--prefill-lens", default=None, help="comma-separated prompt lengths (default 8192,32768)")
    p.add_argument("--budget-gib", type=float, default=24.0, help="memory budget emulated for maxprompt")
    p.add_argument("--maxprompt-start", type=int, default=None, help="first probe length (default 8192)")
    p.add_argument("--maxprompt-cap", type=int, default=1 << 20, help="longest prompt probed")
    p.add_argument("--maxprompt-resolution", type=int, default=None, help="bisection stop (default 1024 tokens)")
    p.add_argument("--dtype", default=None, choices=("bfloat16", "float16", "float32"),
                   help="model dtype (default bfloat16 on CUDA, float32 on CPU)")
    args = p.parse_args(argv)
    quick = args.quick
    args.gen_tokens = args.gen_tokens or (256 if quick else 32768)
    args.gen_budget_s = args.gen_budget_s or (20.0 if quick else 60.0)
    args.window = args.window or (64 if quick else 1024)
    args.window_llama = args.window_llama or (64 if quick else 256)
    args.prefill_lens = [int(x) for x in (args.prefill_lens or ("128,256" if quick else "8192,32768")).split(",")]
    args.maxprompt_start = args.maxprompt_start or (256 if quick else 8192)
    args.maxprompt_resolution = args.maxprompt_resolution or (64 if quick else 1024)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    args.dtype = getattr(torch, dtype_name)
    if device.type != "cuda":
        log("no CUDA: CUDA-only parts are skipped (Triton kernels, CUDA graphs, bandwidth, memory budget)")
    res = Results(args.out, device, environment(args, device))
    want = set(args.sections)
    has_triton = device.type == "cuda" and scan_backend._triton_scan is not None
    if device.type == "cuda" and not has_triton:
        log("!! triton kernels are not importable: the Triton sections will fail (pip install triton)")

    with res.section("env", "env" in want):
        section_env(res, args, device)
    with res.section("kernels", "kernels" in want, needs_cuda=True) as run:
        if run:
            section_kernels(res, args, device)
    with res.section("scan", "scan" in want, needs_cuda=True) as run:
        if run:
            section_scan(res, args, device)

    model = None
    if want & {"decode", "prefill", "gen", "maxprompt"}:
        with res.section("build_mamba") as run:
            model = build_mamba(args, device)
    if model is not None:
        with res.section("decode", "decode" in want) as run:
            if run:
                section_decode(res, args, device, model)
        with res.section("prefill", "prefill" in want) as run:
            if run:
                section_prefill(res, args, device, model)
        with res.section("gen_mamba", "gen" in want) as run:
            if run:
                section_gen_mamba(res, args, device, model)
        with res.section("maxprompt_mamba", "maxprompt" in want, needs_cuda=True) as run:
            if run:
                tag = dict(model="falcon_mamba_7b" if not args.quick else "falcon_mamba_quick", arch="ssm",
                           dtype=str(args.dtype)[6:], batch_size=1)
                section_maxprompt(res, args, device, model, lambda ids: model.prefill(ids), tag)
        del model
        _free_memory()

    if want & {"gen", "maxprompt"}:
        llama = None
        with res.section("build_llama") as run:
            llama = build_llama(args, device)
        if llama is not None:
            with res.section("gen_llama", "gen" in want) as run:
                if run:
                    section_gen_llama(res, args, device, llama)
            with res.section("maxprompt_llama", "maxprompt" in want, needs_cuda=True) as run:
                if run:
                    from transformers import DynamicCache

                    tag = dict(model="llama_3_1_8b_shape" if not args.quick else "llama_quick", arch="transformer",
                               dtype=str(args.dtype)[6:], batch_size=1)
                    section_maxprompt(res, args, device, llama,
                                      lambda ids: llama(input_ids=ids, past_key_values=DynamicCache(), use_cache=True,
                                                        logits_to_keep=1), tag)
            del llama
            _free_memory()

    with res.section("report") as run:
        plot(res)
    print_summary(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
