"""vision: images/s and peak memory of an image classifier's forward pass against image resolution.

Vision Mamba (models/vim.py, arch ssm) against DeiT (models/deit.py, arch transformer), as in
Figure 1 of the Vim paper (arXiv 2401.09417): a batch of `batch_size` random square images at
each resolution R (tokens per image: (R // 16)^2 patches + the class token), one forward pass
to the class logits, inference only.

Measured, for each resolution (ascending), on the job's device:
- throughput: `warmup` forwards discarded, then `repeats` timed forwards (images/s each, and
  their median, min and max);
- peak memory of one forward (its input batch included): the CUDA allocator's
  max_memory_allocated on a GPU, after the timed forwards; on a CPU the live tensor storage
  bytes the forward creates (bench/memory/trackers.py's cpu tracker), in the first warm-up
  forward. `peak_memory` is the total (weights + inputs + activations), `activation_memory`
  what the forward adds above what the model holds between forwards (weights, cached A);
- fits of activation memory against tokens (memory_exponents: log-log exponents, and the
  leading term of a + bN + cN^2).
DeiT runs once per attention kind in `attention` (sdpa: fused, eager: explicit (N, N) scores);
Vim has no attention (`attention` = "none").

Simulated (FakeTensorMode: shapes only, nothing allocated), for each resolution in
`simulate_resolutions` and each GPU profile in `budgets` (configs/hardware/*.yaml, the profile's
memory less its overhead), allocating as that profile's kernels do: the peak at `batch_size`,
and the largest batch that fits (an affine fit of peak against batch from batches 1 and 2,
checked by simulating that batch, which must fit, and one more, which must not). With
`resolutions=[]` a job is simulated only, so a GPU preset's memory answers on any machine.

Before a resolution is measured on a CPU, its simulated peak (CPU kernels) is checked against
the host's available memory: a resolution that would not fit becomes a failed row, not a
swapping machine.

The model is built here from the model config (no language-model backend): the runner calls
run(cfg, None, out_dir) for it (bench/scenarios/__init__.py: model="none").
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from bench.backends.base import InvalidOutput
from bench.device import DTYPES, resolve_device, synchronize
from bench.memory.guard import YoungGcTracker
from bench.memory.trackers import CpuTracker, CudaTracker, is_allocation_failure
from bench.schema import BYTES, RATIO

log = logging.getLogger(__name__)

IMAGES_PER_S = "images/s"
IMAGES = "images"
BYTES_PER_TOKEN, BYTES_PER_TOKEN2 = "bytes/token", "bytes/token^2"  # a memory fit's linear and quadratic terms
ORDER = "order"  # of a polynomial term: 0 constant, 1 linear, 2 quadratic
NO_ATTENTION = "none"  # the attention column of an SSM's rows
HARDWARE_DIR = Path(__file__).resolve().parents[2] / "configs" / "hardware"
MAX_BATCH_STEPS = 8  # corrections allowed when the affine estimate of the largest batch is off


def build_model(model_cfg, attention: str, device, dtype, init_weights: bool = True) -> torch.nn.Module:
    """The model config's classifier: family vim (impl ssm_bench) or deit (impl timm | transformers).
    init_weights=False: uninitialised weights (fake tensors hold no values to initialise)."""
    arch = dict(model_cfg.architecture)
    if model_cfg.family == "vim":
        from models.vim import VimConfig, VisionMamba

        return VisionMamba(VimConfig(**arch), device=device, dtype=dtype, init_weights=init_weights).eval()
    if model_cfg.family == "deit":
        from models.deit import build_deit

        return build_deit(arch, model_cfg.impl, attention, device=device, dtype=dtype, init_weights=init_weights)
    raise ValueError(f"model.family: the vision scenario runs vim or deit models, not {model_cfg.family!r}")


def tokens_per_image(resolution: int, patch_size: int) -> int:
    """Patches of a square image (the patch convolution drops a remainder) plus the class token."""
    return (resolution // patch_size) ** 2 + 1


def run(cfg, backend=None, out_dir=None) -> list[dict]:
    sc, model_cfg = cfg.scenario, cfg.model
    device, dtype = resolve_device(cfg.hardware.device), DTYPES[cfg.dtype]
    attentions = list(sc.attention) if model_cfg.arch == "transformer" else [NO_ATTENTION]
    patch = int(dict(model_cfg.architecture).get("patch_size", 16))
    rows = []
    for attention in attentions:
        model = build_model(model_cfg, attention, device, dtype)
        described = describe(model, device, attention)
        probe(model, device, dtype, min(sc.resolutions, default=224))
        guarded = device.type == "cpu" and cfg.memory_guard and sc.resolutions
        guard = FakeModel(cfg, attention, dtype, "cpu") if guarded else None
        measured = []
        for resolution in tqdm(sorted(sc.resolutions), desc=f"{model_cfg.name} {attention}", disable=not sc.progress):
            common = {**described, "image_size": resolution, "tokens_per_image": tokens_per_image(resolution, patch),
                      "source": "measured", **scan_paths(model)}
            measured += [{**common, **row} for row in measure_resolution(model, cfg, device, dtype, resolution, guard)]
        del model
        simulated = simulate(cfg, attention, dtype, patch)
        rows += measured + [{**described, **row} for row in simulated + memory_exponents(measured + simulated)]
    return rows


def describe(model, device, attention: str) -> dict:
    return {"device": str(device), "attention": attention, "params": sum(p.numel() for p in model.parameters()),
            "model_type": model.config.model_type, "n_layers": model.config.num_hidden_layers,
            "d_model": model.config.hidden_size, "vocab_size": None, "checkpoint": None}


def scan_paths(model) -> dict:
    """Which scan code a model's forwards ran (Vim: models.ops.scan_backend.Kernels.used), for its rows."""
    kernels = getattr(model, "kernels", None)
    return {} if kernels is None else {"kernels": ",".join(sorted(kernels.used))}


def images(batch: int, resolution: int, device, dtype, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, resolution, resolution, generator=generator).to(device, dtype)


def probe(model, device, dtype, resolution: int) -> None:
    """A model that computes NaN or inf is invalid, not fast: checked before anything is timed."""
    logits = model(images(1, resolution, device, dtype))
    if not bool(torch.isfinite(logits).all()):
        raise InvalidOutput(f"non-finite logits at {resolution}x{resolution}: "
                            f"{(~torch.isfinite(logits)).float().mean().item():.0%} of values NaN/inf")


def measure_resolution(model, cfg, device, dtype, resolution: int, guard: "FakeModel | None" = None) -> list[dict]:
    sc = cfg.scenario
    if guard is not None:
        too_big = host_memory_refusal(guard, sc.batch_size, resolution)
        if too_big:
            return [{"metric": "error", "value": float("nan"), "unit": None, "status": "failed", "reason": too_big,
                     "oom": True}]
    # On a CPU the tracked forward is the first warm-up forward (a forward saved per size): the
    # storage bytes it counts do not depend on warm-up, and the probe already made the model's
    # lazy caches. A GPU measures after warm-up (kernel autotuning, cuBLAS's workspace).
    first = device.type == "cpu"
    try:
        memory = peak_memory(model, device, dtype, sc.batch_size, resolution, cfg.seed) if first else None
        if memory is not None and memory.oom:
            return [oom_row(RuntimeError(memory.error))]
        batch = images(sc.batch_size, resolution, device, dtype, cfg.seed)
        for _ in range(max(sc.warmup - first, 0)):
            model(batch)
        seconds = []
        for _ in range(sc.repeats):
            synchronize(device)
            start = time.perf_counter()
            logits = model(batch)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
        if not bool(torch.isfinite(logits).all()):
            raise InvalidOutput(f"non-finite logits at {resolution}x{resolution}")
        del batch, logits
        if memory is None:
            memory = peak_memory(model, device, dtype, sc.batch_size, resolution, cfg.seed)
    except (torch.OutOfMemoryError, MemoryError) as e:
        return [oom_row(e)]
    except RuntimeError as e:
        if not is_allocation_failure(e):
            raise
        return [oom_row(e)]
    throughputs = [sc.batch_size / s for s in seconds]
    rows = [{"metric": "throughput", "repeat": r, "value": v, "unit": IMAGES_PER_S} for r, v in enumerate(throughputs)]
    for stat, fn in (("median", statistics.median), ("min", min), ("max", max)):
        rows.append({"metric": "throughput", "stat": stat, "value": fn(throughputs), "unit": IMAGES_PER_S})
    if memory.oom:
        return rows + [oom_row(RuntimeError(memory.error))]
    return rows + [{"metric": "peak_memory", "value": memory.total_bytes, "unit": BYTES, "memory": memory_kind(device)},
                   {"metric": "activation_memory", "value": memory.peak_bytes, "unit": BYTES,
                    "memory": memory_kind(device)}]


def memory_kind(device) -> str:
    return "cuda_allocator" if device.type == "cuda" else "tensor_storage"


def peak_memory(model, device, dtype, batch: int, resolution: int, seed: int):
    """One forward inside the device's tracker; the input batch is made inside it, so it counts."""
    if device.type == "cuda":
        tracker = CudaTracker(device)
    else:
        tracker = CpuTracker()
        tracker.adopt(model)
        tracker.adopt(held_tensors(model))
    with tracker.track() as m:
        model(images(batch, resolution, device, dtype, seed))
    return m


def held_tensors(model) -> torch.nn.Module:
    """What the model keeps between forwards besides its parameters and buffers (the Mamba mixers'
    cached A = -exp(A_log), made by the first forward), as the buffers of a holder module.
    Adopted with the weights, it counts as the model's memory, as the CUDA allocator counts it
    (allocated before the measured forward). Not adopted, the CPU tracker would first see it in
    the measured forward and count it as that forward's activations (Vim-Ti: 48 tensors of
    24 KiB, a constant 1.2 MB that bent its memory-vs-tokens exponent below 1)."""
    holder = torch.nn.Module()
    held = [v for m in model.modules() for v in vars(m).values() if isinstance(v, torch.Tensor)]
    for i, t in enumerate(held):
        holder.register_buffer(f"held{i}", t, persistent=False)
    return holder


def oom_row(e: BaseException) -> dict:
    return {"metric": "error", "value": float("nan"), "unit": None, "status": "failed", "oom": True,
            "reason": f"{type(e).__name__}: {e}".splitlines()[0][:500]}


def fitted_exponent(tokens, memory) -> float:
    """k in memory ~ tokens^k: the least-squares slope on log-log."""
    import numpy as np

    return float(np.polyfit(np.log(np.asarray(tokens, float)), np.log(np.asarray(memory, float)), 1)[0])


def fitted_terms(tokens, memory) -> tuple[float, float, float, float]:
    """Least-squares memory = a + b * tokens + c * tokens^2: (a bytes, b bytes/token, c bytes/token^2, R^2).
    Eager attention's c is what its (heads, N, N) tensors cost; an SSM's is ~0."""
    import numpy as np

    n, y = np.asarray(tokens, float), np.asarray(memory, float)
    c, b, a = np.polyfit(n, y, 2)
    residual = y - (a + b * n + c * n * n)
    r2 = 1 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    return float(a), float(b), float(c), r2


def leading_order(a: float, b: float, c: float, tokens: float) -> tuple[int, float]:
    """The order (0, 1, 2) of the largest of a, b*N, c*N^2 at N = tokens, and its share of their sum."""
    terms = [abs(a), abs(b) * tokens, abs(c) * tokens ** 2]
    order = max(range(3), key=terms.__getitem__)
    return order, terms[order] / sum(terms)


def memory_exponents(rows: list[dict]) -> list[dict]:
    """How activation memory grows with tokens, per source (measured; simulated for one budget):
    - `memory_exponent`: k in memory ~ tokens^k over every size (log-log least squares), and
      `memory_exponent_top` between the two largest. Memory a + bN + cN^2 with a, b, c >= 0 has a
      log-log slope below 2 at any N, nearing 2 only where cN^2 dwarfs bN: eager attention's k
      stays under 2 at sizes where its linear activations still count.
    - with 4 sizes or more (one left over to judge the fit by): the terms of a + bN + cN^2
      (`memory_constant_term`, `memory_linear_term`, `memory_quadratic_term`) and
      `memory_leading_order`, the order of the largest term at the largest size, with its share
      and the fit's R^2: 2 is memory that grows quadratically, 1 linearly."""
    out = []
    for source in ("measured", "simulated"):
        points = sorted({(r["tokens_per_image"], r["value"]) for r in rows
                         if r.get("metric") == "activation_memory" and r.get("source") == source
                         and r.get("status", "ok") == "ok" and r.get("budget_hardware") in (None, _first_budget(rows))})
        if len(points) < 2 or any(v <= 0 for _, v in points):
            continue
        tokens, memory = [p[0] for p in points], [p[1] for p in points]
        common = {"source": source, "tokens_fitted": f"{tokens[0]}..{tokens[-1]}"}
        out += [{**common, "metric": "memory_exponent", "value": fitted_exponent(tokens, memory), "unit": RATIO,
                 "fit": "log-log least squares"},
                {**common, "metric": "memory_exponent_top", "value": fitted_exponent(tokens[-2:], memory[-2:]),
                 "unit": RATIO, "fit": "log-log, two largest sizes", "tokens_fitted": f"{tokens[-2]}..{tokens[-1]}"}]
        if len(points) < 4:
            continue
        a, b, c, r2 = fitted_terms(tokens, memory)
        order, share = leading_order(a, b, c, tokens[-1])
        fit = {**common, "fit": "least squares a + bN + cN^2", "fit_r2": r2}
        out += [{**fit, "metric": "memory_constant_term", "value": a, "unit": BYTES},
                {**fit, "metric": "memory_linear_term", "value": b, "unit": BYTES_PER_TOKEN},
                {**fit, "metric": "memory_quadratic_term", "value": c, "unit": BYTES_PER_TOKEN2},
                {**fit, "metric": "memory_leading_order", "value": order, "unit": ORDER, "leading_share": share}]
    return out


def _first_budget(rows: list[dict]):
    return next((r["budget_hardware"] for r in rows if r.get("budget_hardware")), None)


# ----------------------------------------------------------------------------- simulated

class FakeModel:
    """The model built under a SimulateTracker's FakeTensorMode, with its weights counted live."""

    def __init__(self, cfg, attention: str, dtype, kernels: str):
        self.tracker = YoungGcTracker(kernels)  # a full gc between fake trials costs ~1 s, finds nothing more
        self.model = self.tracker.build(lambda: build_model(cfg.model, attention, torch.device("cpu"), dtype, False))
        self.tracker.adopt(self.model)
        # Bytes live between forwards: the weights, then also what the first forward left for good
        # (the mixers' cached A; on a GPU profile, cuBLAS's workspace). A peak less these is the
        # activations, as a device's tracker counts them after warm-up.
        self.resident_bytes = self.tracker.live_bytes()
        self.dtype = dtype
        self._peaks: dict[tuple[int, int], int] = {}

    def peak_bytes(self, batch: int, resolution: int) -> int:
        """Total live bytes at the peak of one forward: weights, the input batch, activations."""
        if (batch, resolution) not in self._peaks:
            with self.tracker.track() as m:
                self.model(torch.empty(batch, 3, resolution, resolution, dtype=self.dtype))
            if m.oom:
                raise RuntimeError(f"simulated forward ran out of memory: {m.error}")
            self._peaks[batch, resolution] = m.total_bytes
            self.resident_bytes = self.tracker.live_bytes()
        return self._peaks[batch, resolution]


def load_hardware(name: str):
    """A hardware profile from configs/hardware/<name>.yaml, validated by its schema."""
    from bench.config import HardwareConfig

    path = HARDWARE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"scenario.budgets: no hardware profile {path}")
    data = OmegaConf.to_container(OmegaConf.load(path))
    data.pop("defaults", None)
    return HardwareConfig(**data)


def max_batch(peak, budget: int) -> tuple[int, str]:
    """The largest batch whose simulated peak fits `budget`, and how it was found. peak(b) is
    affine in b (weights, then per-image inputs and activations): solved from b = 1 and 2, then
    checked by simulating the answer and the next batch, corrected step by step if needed."""
    one, two = peak(1), peak(2)
    if one > budget:
        return 0, "batch 1 does not fit"
    per_image = max(two - one, 1)
    best = max(1, int((budget - (one - per_image)) // per_image))
    for _ in range(MAX_BATCH_STEPS):
        if peak(best) > budget:
            best -= 1
        elif peak(best + 1) <= budget:
            best += 1
        else:
            return best, "checked: it fits, one more does not"
    return best, f"not settled after {MAX_BATCH_STEPS} corrections (peak not affine in batch)"


def simulate(cfg, attention: str, dtype, patch: int) -> list[dict]:
    """Simulated peak at batch_size and the largest batch that fits, per budget and resolution."""
    sc = cfg.scenario
    rows = []
    profiles = [load_hardware(name) for name in sc.budgets]
    by_kernels: dict[str, FakeModel] = {}
    for hardware in profiles:
        fake = by_kernels.get(hardware.kernels) or by_kernels.setdefault(
            hardware.kernels, FakeModel(cfg, attention, dtype, hardware.kernels))
        for resolution in tqdm(sorted(sc.simulate_resolutions), disable=not sc.progress,
                               desc=f"{cfg.model.name} {attention} simulated for {hardware.name}"):
            def peak(batch: int, resolution=resolution) -> int:
                return fake.peak_bytes(batch, resolution)

            common = {"image_size": resolution, "tokens_per_image": tokens_per_image(resolution, patch),
                      "source": "simulated", "budget_hardware": hardware.name, "budget_bytes": hardware.budget_bytes,
                      "kernels": hardware.kernels, "memory": "fake_tensor_storage"}
            best, how = max_batch(peak, hardware.budget_bytes)
            rows += [{**common, "metric": "peak_memory", "value": peak(sc.batch_size), "unit": BYTES},
                     {**common, "metric": "activation_memory", "value": peak(sc.batch_size) - fake.resident_bytes,
                      "unit": BYTES},
                     {**common, "metric": "max_batch", "value": best, "unit": IMAGES, "fit_check": how}]
    return rows


def host_memory_refusal(fake: FakeModel, batch: int, resolution: int) -> str | None:
    """Why a CPU forward at this resolution should not run (its simulated peak, CPU kernels,
    exceeds what the host has available less a margin), or None."""
    from bench.memory.guard import GIB, RUNTIME_BYTES, host_budget_bytes

    estimate = fake.peak_bytes(batch, resolution) + RUNTIME_BYTES
    budget = host_budget_bytes()
    if estimate <= budget:
        return None
    return (f"host memory guard: the estimated peak {estimate / GIB:.1f} GiB ({resolution}x{resolution}, batch "
            f"{batch}) exceeds the {budget / GIB:.1f} GiB this host has available less a margin (memory_guard=false "
            "runs it anyway)")
