"""Vision Mamba (models/vim.py), DeiT (models/deit.py) and the vision scenario.

- parameter counts against the Vim paper's table 1 (Vim-Ti 7M, Vim-S 26M, DeiT-Ti 6M, DeiT-S 22M);
- the bidirectional block equals an explicit naive computation (flip, token-by-token recurrence,
  flip back) on odd shapes, and the whole model a naive pipeline (patches, middle class token);
- the model's output does not depend on the scan path (reference, chunked, C, Triton interpreted);
- the scenario's rows at a tiny size, and simulated memory at 1248x1248 for both models.
"""

import importlib
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.config import ConfigError, register_configs
from models.deit import build_deit
from models.mamba import MambaConfig, MambaMixer
from models.ops import scan_backend
from models.ops import selective_scan as torch_scan
from models.vim import VIM_CONFIGS, BiMambaMixer, VimConfig, VisionMamba, directional_ssm, num_params

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
register_configs()
PUBLISHED_PARAMS = {"vim_ti": 7e6, "vim_s": 26e6, "deit_ti": 6e6, "deit_s": 22e6}  # arXiv 2401.09417, table 1
TINY_VIM = dict(img_size=48, patch_size=16, embed_dim=10, depth=2, d_state=5, expand=2, num_classes=7,
                scan_chunk_size=3)


def load(overrides=()):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


def model_architecture(name: str) -> dict:
    return dict(OmegaConf.load(CONFIGS / "model" / f"{name}.yaml")["architecture"])


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("name", ["vim_ti", "vim_s"])
def test_vim_parameter_count_matches_the_paper(name):
    config = VimConfig(**model_architecture(name))
    assert config.to_dict() | VIM_CONFIGS[name] == config.to_dict()  # the YAML is the paper's model
    model = VisionMamba(config, device="meta")
    counted = sum(p.numel() for p in model.parameters())
    assert counted == num_params(config)
    assert abs(counted / PUBLISHED_PARAMS[name] - 1) < 0.05, counted


@pytest.mark.parametrize("name", ["deit_ti", "deit_s"])
def test_deit_parameter_count_matches_the_paper(name):
    with torch.device("meta"):
        model = build_deit(model_architecture(name), "transformers", "sdpa")
    counted = sum(p.numel() for p in model.parameters())
    assert abs(counted / PUBLISHED_PARAMS[name] - 1) < 0.05, counted
    try:
        import timm  # noqa: F401  (needs a torchvision that loads beside this torch)
    except (ImportError, RuntimeError):
        return
    timm_model = build_deit(model_architecture(name), "timm", "sdpa", device="meta")
    assert sum(p.numel() for p in timm_model.parameters()) == counted  # the same architecture


# ----------------------------------------------------------------------------- exactness

def naive_direction(p, x, z):
    """One direction of the mixer, written out in float64: causal depthwise conv, SiLU, x_proj,
    dt_proj, softplus, then the recurrence one token at a time, D skip, SiLU(z) gate."""
    x, z = x.double(), z.double()
    bsz, length, d_inner = x.shape
    weight, bias = p.conv1d.weight.double()[:, 0], p.conv1d.bias.double()  # (D, K), (D,)
    K = weight.shape[1]
    padded = F.pad(x, (0, 0, K - 1, 0))  # zeros before the first token
    conv = torch.stack([(padded[:, t:t + K] * weight.T).sum(1) + bias for t in range(length)], dim=1)
    u = F.silu(conv)
    dt, B, C = torch.split(u @ p.x_proj.weight.double().T, [p.dt_rank, p.d_state, p.d_state], dim=-1)
    delta = F.softplus(dt @ p.dt_proj.weight.double().T + p.dt_proj.bias.double())
    A = -torch.exp(p.A_log.double())
    h = torch.zeros(bsz, d_inner, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + p.D.double() * u[:, t])
    return torch.stack(ys, dim=1) * F.silu(z)


@torch.no_grad()
def naive_bidirectional(mixer, hidden):
    x, z = (hidden.double() @ mixer.in_proj.weight.double().T).chunk(2, dim=-1)
    forward = naive_direction(mixer, x, z)
    backward = naive_direction(mixer.backward_ssm, x.flip(1), z.flip(1)).flip(1)
    y = forward + backward
    return (y / 2 if mixer.divide_out else y) @ mixer.out_proj.weight.double().T


def close(got, expected):
    """float32 against the float64 naive computation: within float32 rounding of the outputs' scale."""
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def tiny_mixer(divide_out=True, seed=0):
    torch.manual_seed(seed)
    config = MambaConfig(hidden_size=10, state_size=5, intermediate_size=22, conv_kernel=4, time_step_rank=3,
                         scan_chunk_size=4)
    mixer = BiMambaMixer(config, 0, divide_out)
    with torch.no_grad():
        for name, p in mixer.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "A_log" not in name else 0.3))
    return mixer


@pytest.mark.parametrize("divide_out", [True, False])
@pytest.mark.parametrize("bsz,length", [(3, 13), (1, 1), (2, 6)])
def test_bidirectional_block_equals_naive_flip_recurrence_flip_back(divide_out, bsz, length):
    mixer = tiny_mixer(divide_out, seed=length)
    hidden = torch.randn(bsz, length, 10)
    with torch.no_grad():
        got = mixer(hidden)
    close(got, naive_bidirectional(mixer, hidden))


def test_one_direction_is_the_mamba_mixer():
    """directional_ssm repeats the steps of MambaMixer.forward: they must stay the same."""
    mixer = tiny_mixer()
    hidden = torch.randn(2, 9, 10)
    with torch.no_grad():
        x, z = mixer.in_proj(hidden).chunk(2, dim=-1)
        torch.testing.assert_close(mixer.out_proj(directional_ssm(mixer, x, z)), MambaMixer.forward(mixer, hidden))


@torch.no_grad()
def naive_vim(model, images):
    """The whole model by hand: patches as flattened pixels, class token in the middle, naive blocks."""
    cfg, P = model.config, model.config.patch_size
    bsz, _, height, width = images.shape
    patches = images.double().unfold(2, P, P).unfold(3, P, P)  # (b, C, gh, gw, P, P)
    grid_h, grid_w = patches.shape[2:4]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(bsz, grid_h * grid_w, -1)
    tokens = patches @ model.patch_embed.weight.double().reshape(cfg.embed_dim, -1).T + model.patch_embed.bias.double()
    mid = grid_h * grid_w // 2
    cls = model.cls_token.double().expand(bsz, -1, -1)
    x = torch.cat([tokens[:, :mid], cls, tokens[:, mid:]], dim=1) + model.position_embeddings(grid_h, grid_w).double()
    for layer in model.layers:
        norm = layer.norm
        normed = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight.double()
        x = x + naive_bidirectional(layer.mixer, normed)
    x = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + model.norm_f.eps) * model.norm_f.weight.double()
    return x[:, mid] @ model.head.weight.double().T + model.head.bias.double()


@pytest.mark.parametrize("height,width", [(48, 48), (80, 48)], ids=["native", "resampled"])
def test_model_equals_naive_pipeline(height, width):
    torch.manual_seed(1)
    model = VisionMamba(VimConfig(**TINY_VIM))
    with torch.no_grad():
        model.pos_embed.normal_()
        model.cls_token.normal_()
    images = torch.randn(2, 3, height, width)
    close(model(images), naive_vim(model, images))


def test_class_token_sits_in_the_middle_and_position_embeddings_resample():
    model = VisionMamba(VimConfig(**TINY_VIM))  # 3x3 patches: class token at index 4 of 10
    with torch.no_grad():
        model.pos_embed.copy_(torch.arange(10.0)[None, :, None].expand_as(model.pos_embed))
    assert torch.equal(model.position_embeddings(3, 3), model.pos_embed)
    resampled = model.position_embeddings(5, 3)  # 15 patches: class token at index 7
    assert resampled.shape == (1, 16, 10) and torch.all(resampled[0, 7] == 4.0)


def _interpreted_triton_scan():
    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"  # read when a kernel is defined
    pytest.importorskip("triton")
    from models.ops import triton_selective_scan

    if not torch.cuda.is_available():
        triton_selective_scan = importlib.reload(triton_selective_scan)
    return triton_selective_scan.selective_scan_triton


def scan_paths():
    from models.ops import cpu_kernels

    def ref(u, delta, A, B, C, D=None, z=None, initial_state=None, chunk_size=64):
        return torch_scan.selective_scan_ref(u, delta, A, B, C, D, z, initial_state)

    def chunked(u, delta, A, B, C, D=None, z=None, initial_state=None, chunk_size=64):
        return torch_scan.selective_scan_chunked(u, delta, A, B, C, D, z, initial_state, chunk_size=3)

    def c_kernel(u, delta, A, B, C, D=None, z=None, initial_state=None, chunk_size=64):
        if not cpu_kernels.available():
            pytest.skip(f"no C compiler: {cpu_kernels._load_error}")
        return cpu_kernels.selective_scan_cpu(u, delta, A, B, C, D, z, initial_state=initial_state)

    def triton(u, delta, A, B, C, D=None, z=None, initial_state=None, chunk_size=64):
        return _interpreted_triton_scan()(u, delta, A, B, C, D, z, initial_state=initial_state)

    return {"reference": ref, "chunked": chunked, "c": c_kernel, "triton": triton}


def test_output_does_not_depend_on_the_scan_path(monkeypatch):
    torch.manual_seed(2)
    model = VisionMamba(VimConfig(**{**TINY_VIM, "depth": 1}))
    images = torch.randn(2, 3, 48, 64)  # 3x4 patches + class token: 13 tokens
    outputs = {}
    for name, scan in scan_paths().items():
        calls = []
        monkeypatch.setattr(scan_backend, "selective_scan",  # the path chosen here, not by `kernels`
                            lambda *a, _scan=scan, kernels=None, **k: calls.append(kernels) or _scan(*a, **k))
        outputs[name] = model(images)
        assert calls == [model.kernels] * 2  # one block: both directions through this path, with the model's choice
    for name, out in outputs.items():
        torch.testing.assert_close(out, outputs["reference"], rtol=1e-5, atol=1e-5, msg=name)


def test_the_models_kernels_choice_reaches_every_scan():
    """A Vim built with Kernels(cpu=False) runs the PyTorch scan in both directions of every
    block, and records it; the default choice takes the C scan where one compiles."""
    from models.ops import cpu_kernels
    from models.ops.scan_backend import Kernels

    torch.manual_seed(4)
    images = torch.randn(1, 3, 48, 48)
    plain = VisionMamba(VimConfig(**TINY_VIM), kernels=Kernels(cpu=False))
    assert all(m.kernels is plain.kernels for m in plain.modules() if isinstance(m, MambaMixer))
    out = plain(images)
    assert plain.kernels.used == {"torch_chunked"}
    if not cpu_kernels.available():
        pytest.skip(f"no C compiler: {cpu_kernels._load_error}")
    fast = VisionMamba(VimConfig(**TINY_VIM))
    fast.load_state_dict(plain.state_dict())
    torch.testing.assert_close(fast(images), out, rtol=1e-5, atol=1e-5)
    assert fast.kernels.used == {"cpu_c"}


def test_deit_attention_kinds_agree_at_any_size():
    torch.manual_seed(3)
    arch = dict(model_architecture("deit_ti"), hidden_size=24, num_hidden_layers=2, intermediate_size=48)
    sdpa = build_deit(arch, "transformers", "sdpa")
    eager = build_deit(arch, "transformers", "eager")
    eager.load_state_dict(sdpa.state_dict())
    images = torch.randn(2, 3, 80, 48)
    torch.testing.assert_close(sdpa(images), eager(images), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- scenario

def test_vision_settings_are_checked():
    with pytest.raises(ConfigError, match="scenario.attention"):
        load(["model=deit_ti", "scenario=vision", "scenario.attention=[flash]"])
    with pytest.raises(ConfigError, match="scenario.budgets"):
        load(["model=vim_ti", "scenario=vision", "scenario.budgets=[nope]"])
    with pytest.raises(ConfigError, match="model.family"):
        load(["model=vim_ti", "scenario=generation"])
    with pytest.raises(ConfigError, match="model.family"):
        load(["model=tiny_mamba", "scenario=vision"])
    with pytest.raises(ConfigError, match="model.impl"):
        load(["model=vim_ti", "scenario=vision", "model.impl=transformers"])


def tiny_run(model: str, **scenario):
    from bench.scenarios import vision

    arch = {"vim_ti": ["model.architecture.embed_dim=16", "model.architecture.depth=2"],
            "deit_ti": ["model.architecture.hidden_size=24", "model.architecture.num_hidden_layers=2",
                        "model.architecture.intermediate_size=48"]}[model]
    settings = {"resolutions": "[32,64]", "simulate_resolutions": "[48,64]", "repeats": 2, "warmup": 0,
                "progress": "false", "budgets": "[tiny_budget]", "batch_size": 2, **scenario}
    cfg = load([f"model={model}", "scenario=vision", *arch, *(f"scenario.{k}={v}" for k, v in settings.items())])
    return vision.run(cfg)


@pytest.mark.slow  # ~10 s alone, minutes on a busy machine: six model builds, timed forwards, fake trials
def test_scenario_rows_at_a_tiny_size():
    rows = tiny_run("deit_ti") + tiny_run("vim_ti", attention="[sdpa]")
    measured = [r for r in rows if r["source"] == "measured" and "image_size" in r]
    exponents = {(r["attention"], r["source"]) for r in rows if r["metric"] == "memory_exponent"}
    assert exponents == {(a, s) for a in ("sdpa", "eager", "none") for s in ("measured", "simulated")}
    kinds = {(r["model_type"], r["attention"]) for r in rows}
    assert kinds == {("deit", "sdpa"), ("deit", "eager"), ("vim", "none")}
    for r in measured:
        assert r["image_size"] in (32, 64) and r["tokens_per_image"] == (r["image_size"] // 16) ** 2 + 1
        assert r["value"] > 0 and math.isfinite(r["value"]) and r.get("status", "ok") == "ok"
    medians = [r for r in measured if r["metric"] == "throughput" and r.get("stat") == "median"]
    assert len(medians) == 6 and all(r["unit"] == "images/s" for r in medians)
    peaks = {(r["model_type"], r["attention"], r["image_size"]): r["value"] for r in measured
             if r["metric"] == "activation_memory"}
    assert all(peaks[k[:2] + (64,)] > peaks[k[:2] + (32,)] for k in peaks)  # more tokens, more memory
    simulated = [r for r in rows if r["source"] == "simulated"]
    fits = [r for r in simulated if r["metric"] == "max_batch"]
    assert len(fits) == 6 and all(r["value"] >= 1 and r["fit_check"].startswith("checked") for r in fits)


def test_max_batch_is_the_largest_that_fits():
    from bench.scenarios.vision import max_batch

    def peak(batch):  # weights 100 bytes, 7 per image, and a 5-byte bump from batch 40 on
        return 100 + 7 * batch + (5 if batch >= 40 else 0)

    for budget in (100, 107, 300, 385, 390):
        best, how = max_batch(peak, budget)
        assert (best == 0 and peak(1) > budget) or (peak(best) <= budget < peak(best + 1)), (budget, best, how)


def test_simulated_memory_at_1248_for_both_models():
    """Fake tensors, full-size Vim-Ti and DeiT-Ti at the paper's largest resolution: DeiT's eager
    attention holds (heads, N, N) scores, Vim's activations grow with N only."""
    from bench.scenarios.vision import FakeModel

    tokens = (1248 // 16) ** 2 + 1
    peaks = {}
    for model, attention in (("vim_ti", "none"), ("deit_ti", "eager"), ("deit_ti", "sdpa")):
        cfg = load([f"model={model}", "scenario=vision"])
        fake = FakeModel(cfg, attention, torch.float32, "cuda")
        weights = fake.tracker.live_bytes()
        peaks[model, attention] = fake.peak_bytes(1, 1248) - weights
    scores = 3 * tokens * tokens * 4  # one layer's float32 attention scores, DeiT-Ti's 3 heads
    assert peaks["deit_ti", "eager"] >= 2 * scores  # scores and their softmax are alive together
    assert peaks["deit_ti", "sdpa"] < scores
    assert peaks["vim_ti", "none"] < scores


# ----------------------------------------------------------------------------- report

def test_report_finds_crossovers_and_quadratic_terms():
    import pandas as pd

    from bench.report import vision as report

    def rows(model, arch, attention, metric, values, stat=None):
        return [{"scenario": "vision", "model": model, "arch": arch, "attention": attention, "metric": metric,
                 "stat": stat, "value": v, "image_size": size, "tokens_per_image": (size // 16) ** 2 + 1,
                 "source": "measured", "status": "ok", "device": "cpu", "dtype": "float32", "batch_size": 1,
                 "hardware": "cpu", "params": 1} for size, v in zip((224, 384, 512), values)]

    table = pd.DataFrame(rows("vim_ti", "ssm", "none", "throughput", [1, 1, 1], "median")
                         + rows("deit_ti", "transformer", "eager", "throughput", [3, 1.5, 0.5], "median")
                         + rows("vim_ti", "ssm", "none", "peak_memory", [10, 20, 30])
                         + rows("deit_ti", "transformer", "eager", "peak_memory", [5, 20, 60]))
    found = report.comparisons(table).set_index("what")
    crossover = [c for c in found.columns if c.startswith("crossover")][0]
    assert found.loc["throughput", crossover] == "between 384 and 512"
    assert found.loc["throughput", "at the largest size"] == "512: 2.00× the images/s"
    assert found.loc["memory", crossover] == "between 224 and 384"
    assert found.loc["memory", "at the largest size"] == "512: 50.0% less memory"
    claim = report.published_check(table)
    assert list(claim["source"][:2]) == ["published", "published"] and "2.8×" in claim["value"][0]


# ----------------------------------------------------------------------------- memory fits

def fit_rows(tokens, memory, source="measured"):
    from bench.scenarios import vision

    rows = [{"metric": "activation_memory", "tokens_per_image": n, "value": v, "source": source}
            for n, v in zip(tokens, memory)]
    return {r["metric"]: r for r in vision.memory_exponents(rows)}


@pytest.mark.parametrize("k", [0.5, 1.0, 1.5, 2.0, 2.5])
def test_fitted_exponent_recovers_a_known_power(k):
    tokens = [197, 577, 1025, 1601]
    fits = fit_rows(tokens, [3.0 * n ** k for n in tokens])
    assert fits["memory_exponent"]["value"] == pytest.approx(k, abs=1e-9)
    assert fits["memory_exponent_top"]["value"] == pytest.approx(k, abs=1e-9)
    assert fits["memory_exponent"]["tokens_fitted"] == "197..1601"


def test_quadratic_memory_has_a_quadratic_leading_term_and_a_log_log_slope_below_2():
    """Eager attention's shape: a + bN + cN^2. Its terms come back; its leading term at the largest
    size is the quadratic one, while the log-log exponent stays below 2 (the linear term)."""
    tokens = [197, 577, 1025, 1601, 2305]
    fits = fit_rows(tokens, [5e4 + 7680 * n + 24 * n * n for n in tokens])
    assert fits["memory_quadratic_term"]["value"] == pytest.approx(24)
    assert fits["memory_linear_term"]["value"] == pytest.approx(7680)
    assert fits["memory_constant_term"]["value"] == pytest.approx(5e4, rel=1e-4)
    lead = fits["memory_leading_order"]
    assert lead["value"] == 2 and lead["fit_r2"] == pytest.approx(1)
    assert lead["leading_share"] == pytest.approx(24 * 2305 ** 2 / (5e4 + 7680 * 2305 + 24 * 2305 ** 2))
    assert 1 < fits["memory_exponent"]["value"] < fits["memory_exponent_top"]["value"] < 2


@pytest.mark.parametrize("memory,order", [(lambda n: 17000 * n + 2e4, 1), (lambda n: 3e9 + 10 * n, 0)])
def test_linear_and_constant_memory_lead_with_their_own_order(memory, order):
    tokens = [197, 577, 1025, 1601]
    fits = fit_rows(tokens, [memory(n) for n in tokens])
    assert fits["memory_leading_order"]["value"] == order
    assert abs(fits["memory_quadratic_term"]["value"]) < 1e-6


def test_the_report_keeps_each_jobs_fit_apart():
    """Two jobs over different sizes (or impl) are two fits: the table shows both, not the last."""
    import pandas as pd

    from bench.report import vision as report

    def job(run_dir, tokens, impl="transformers"):
        base = {"scenario": "vision", "model": "deit_ti", "arch": "transformer", "attention": "eager",
                "device": "cpu", "dtype": "float32", "batch_size": 1, "status": "ok", "params": 1, "impl": impl,
                "run_dir": run_dir}
        return [{**base, **r} for r in fit_rows(tokens, [5e4 + 7680 * n + 24 * n * n for n in tokens]).values()]

    table = report.exponents(pd.DataFrame(job("a", [5, 10, 17, 26]) + job("b", [5, 17, 37, 65])
                                          + job("c", [5, 17, 37, 65], impl="timm")))
    assert len(table) == 3
    assert sorted(table["exponent k, all sizes"].str.extract(r"tokens (.*)\)")[0]) == ["5..26", "5..65", "5..65"]
    assert "run_dir" not in table and set(table["impl"]) == {"transformers", "timm"}


def test_three_sizes_give_exponents_but_no_polynomial_fit():
    fits = fit_rows([197, 577, 1025], [1.0, 2.0, 4.0])
    assert set(fits) == {"memory_exponent", "memory_exponent_top"}


def test_a_vims_cached_A_counts_as_the_models_memory_not_as_activations():
    """A warm Vim holds A = -exp(A_log) per mixer; the CPU peak counts it with the weights, so a
    forward's activations are what it adds, the same every time."""
    from bench.scenarios.vision import held_tensors, images, peak_memory

    model = VisionMamba(VimConfig(**TINY_VIM))
    model(images(1, 48, "cpu", torch.float32))  # warm-up: the mixers cache A
    weights = sum(p.untyped_storage().nbytes() for p in model.parameters())
    held = list(held_tensors(model).buffers())
    assert len(held) == 2 * TINY_VIM["depth"]  # each block's forward and backward direction
    first = peak_memory(model, torch.device("cpu"), torch.float32, 1, 48, seed=0)
    again = peak_memory(model, torch.device("cpu"), torch.float32, 1, 48, seed=0)
    assert first.start_bytes == weights + sum(t.untyped_storage().nbytes() for t in held)
    assert first.peak_bytes == again.peak_bytes > 0


def test_vision_rows_record_no_pairing():
    """The pairing (how a language model is run) does not shape an image classifier's rows."""
    from bench.runner import to_table

    row = [{"metric": "throughput", "value": 1.0, "unit": "images/s", "source": "measured"}]
    vision = to_table(row, load(["model=vim_ti", "scenario=vision"]), "run")
    assert vision["pairing"].isna().all()
    language = load(["model=tiny_mamba", "scenario=generation"])
    assert list(to_table(row, language, "run")["pairing"]) == [language.pairing]
