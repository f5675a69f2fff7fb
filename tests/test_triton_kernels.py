"""The Triton kernels against their PyTorch twins; the CUDA-graph decoder against eager steps.

Without CUDA the kernels run in Triton's interpreter (TRITON_INTERPRET=1, numpy on the CPU):
slow, hence the tiny shapes. With CUDA the same tests run the compiled kernels on the GPU.
The whole module is skipped when triton is not installed.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scan_inputs import random_scan_inputs

CUDA = torch.cuda.is_available()
if not CUDA:
    # Read by @triton.jit when a kernel is defined: must be set before the kernel modules run.
    os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton")

from models.mamba import MambaConfig, MambaLM, RMSNorm  # noqa: E402
from models.ops import (causal_conv, cpu_kernels, triton_conv, triton_fused_step, triton_rms_norm,  # noqa: E402
                        triton_selective_scan, triton_state_update)
from models.ops.selective_scan import (rms_norm_ref, selective_scan_ref, selective_state_update,  # noqa: E402
                                       selective_step_ref)

if not CUDA:
    # Importing models.mamba (here or in an earlier test module) may have defined the kernels
    # before the flag was set: define them again, interpreted. scan_backend keeps the compiled
    # ones, which it only calls on CUDA tensors.
    triton_selective_scan = importlib.reload(triton_selective_scan)
    triton_state_update = importlib.reload(triton_state_update)
    triton_fused_step = importlib.reload(triton_fused_step)  # after the state update: it imports its body
    triton_conv = importlib.reload(triton_conv)
    triton_rms_norm = importlib.reload(triton_rms_norm)

DEVICE = "cuda" if CUDA else "cpu"
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.bfloat16: dict(rtol=2e-2, atol=2e-2),
       torch.float16: dict(rtol=5e-3, atol=5e-3)}


def _scan_inputs(seed, b, l, d, n, with_state=True, gated=True, dtype=torch.float32):
    u, delta, A, B, C, D, z, h0 = random_scan_inputs(seed, b, l, d, n, with_state)
    cast = (lambda t: t.to(DEVICE, dtype)) if dtype != torch.float32 else (lambda t: t.to(DEVICE))
    return (cast(u), delta.to(DEVICE), A.to(DEVICE), cast(B), cast(C), D.to(DEVICE),
            cast(z) if gated else None, None if h0 is None else h0.to(DEVICE))


# (b, l, d, n, block_d, chunk): ragged last chunk, ragged last d-block, n not a power of 2, l = 1
# chunk 1 is the kernel's token-by-token variant.
SCAN_CASES = [(2, 20, 6, 4, 4, 8), (1, 11, 5, 3, 8, 4), (1, 1, 4, 16, 4, 4), (2, 9, 3, 2, 2, 16), (1, 5, 4, 4, 4, 1)]


@pytest.mark.parametrize("with_state", [True, False], ids=["h0", "zero_h0"])
@pytest.mark.parametrize("gated", [True, False], ids=["gated", "ungated"])
@pytest.mark.parametrize("case", SCAN_CASES, ids=lambda c: "b{}l{}d{}n{}".format(*c[:4]))
def test_scan_matches_reference(case, with_state, gated):
    b, l, d, n, block_d, chunk = case
    u, delta, A, B, C, D, z, h0 = _scan_inputs(sum(case), b, l, d, n, with_state, gated)
    y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, z, initial_state=h0)
    y, h = triton_selective_scan.selective_scan_triton(u, delta, A, B, C, D, z, initial_state=h0,
                                                       block_d=block_d, chunk=chunk)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    torch.testing.assert_close(h, h_ref, **TOL[torch.float32])


def test_scan_without_skip_and_on_strided_views():
    # As in the model: u and z are the two halves of one projection, so neither is contiguous.
    u, delta, A, B, C, _, z, h0 = _scan_inputs(1, 2, 7, 4, 3)
    uz = torch.cat([u, z], dim=-1)
    u, z = uz.chunk(2, dim=-1)
    y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, None, z, initial_state=h0)
    y, h = triton_selective_scan.selective_scan_triton(u, delta, A, B, C, None, z, initial_state=h0, chunk=4)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    torch.testing.assert_close(h, h_ref, **TOL[torch.float32])


def test_scan_in_two_pieces_equals_one_pass():
    # Chunked prefill: the final state of the first piece is the initial state of the second.
    u, delta, A, B, C, D, z, _ = _scan_inputs(2, 1, 12, 4, 4, with_state=False)
    scan = triton_selective_scan.selective_scan_triton
    y_full, h_full = scan(u, delta, A, B, C, D, z, chunk=8)
    y1, h1 = scan(u[:, :5], delta[:, :5], A, B[:, :5], C[:, :5], D, z[:, :5], chunk=8)
    y2, h2 = scan(u[:, 5:], delta[:, 5:], A, B[:, 5:], C[:, 5:], D, z[:, 5:], initial_state=h1, chunk=8)
    torch.testing.assert_close(torch.cat([y1, y2], dim=1), y_full, **TOL[torch.float32])
    torch.testing.assert_close(h2, h_full, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_scan_low_precision_inputs(dtype):
    u, delta, A, B, C, D, z, h0 = _scan_inputs(3, 1, 6, 4, 4, dtype=dtype)
    y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, z, initial_state=h0)
    y, h = triton_selective_scan.selective_scan_triton(u, delta, A, B, C, D, z, initial_state=h0, chunk=8)
    assert y.dtype == dtype and h.dtype == torch.float32
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    torch.testing.assert_close(h, h_ref, **TOL[torch.float32])  # both accumulate in float32


@pytest.mark.parametrize("gated", [True, False], ids=["gated", "ungated"])
def test_state_update_steps_match_reference(gated):
    b, l, d, n = 2, 3, 6, 5
    u, delta, A, B, C, D, z, h0 = _scan_inputs(4, b, l, d, n, gated=gated)
    ref_state, state = h0.clone(), h0.clone()
    for t in range(l):
        zt = None if z is None else z[:, t]
        y_ref = selective_state_update(ref_state, u[:, t], delta[:, t], A, B[:, t], C[:, t], D, zt)
        y = triton_state_update.selective_state_update_triton(state, u[:, t], delta[:, t], A, B[:, t], C[:, t],
                                                              D, zt, block_d=4)
        torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
        torch.testing.assert_close(state, ref_state, **TOL[torch.float32])


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_conv_update_steps_match_reference(with_bias):
    b, d, K = 2, 5, 4
    g = torch.Generator().manual_seed(5)
    xs = torch.randn(K + 2, b, d, generator=g).to(DEVICE)
    weight = torch.randn(d, K, generator=g).to(DEVICE)
    bias = torch.randn(d, generator=g).to(DEVICE) if with_bias else None
    ref_state = torch.randn(b, d, K, generator=g).to(DEVICE)
    state = ref_state.clone()
    for x in xs:  # more steps than taps: every column gets shifted out
        out_ref = causal_conv.conv_state_update(ref_state, x, weight, bias)
        out = triton_conv.conv_state_update_triton(state, x, weight, bias, block_d=4)
        torch.testing.assert_close(out, out_ref, **TOL[torch.float32])
        torch.testing.assert_close(state, ref_state, rtol=0, atol=0)


def _mixer_and_step_inputs(model_type, dtype=torch.float32, seed=0, wide_dt=True):
    """A small mixer with random A (and, with wide_dt, dt biases wide enough to reach both branches
    of softplus: x > 20 is passed through), x, z (strided halves of one projection, as in step),
    and a state."""
    torch.manual_seed(seed)
    # D = 40: ragged last block at block_d 16; N = 5: not a power of 2; R = 10: ragged at block_r 4
    cfg = MambaConfig(model_type=model_type, hidden_size=20, intermediate_size=40, state_size=5,
                      time_step_rank=10, num_hidden_layers=1)
    mixer = MambaLM(cfg, device=DEVICE, dtype=dtype).backbone.layers[0].mixer
    with torch.no_grad():
        mixer.A_log.uniform_(-1, 2)
        if wide_dt:
            mixer.dt_proj.bias.copy_(torch.linspace(-12, 24, 40))
        mixer.D.normal_()
        mixer.x_proj.weight.normal_(0, 0.3)
    x, z = torch.randn(2, 80, device=DEVICE, dtype=dtype).chunk(2, dim=-1)  # (b, D) each, strided
    state = torch.randn(2, 40, 5, device=DEVICE)
    return mixer, x, z, state


def _step_args(mixer, x, z):
    return (x, z, mixer.x_proj(x), mixer.dt_proj.weight, mixer.dt_proj.bias, mixer._A(), mixer.D,
            mixer.dt_rank, mixer.d_state, mixer.mixer_rms_eps)


@pytest.mark.parametrize("model_type", ["falcon_mamba", "mamba"])
@torch.no_grad()
def test_fused_step_matches_reference_and_unfused_mixer(model_type):
    mixer, x, z, h0 = _mixer_and_step_inputs(model_type)
    states = {"unfused": h0.clone(), "ref": h0.clone(), "fused": h0.clone()}
    for t in range(2):  # two steps: the second starts from the state the first left
        xt, zt = x * (t + 1), z - t
        dt, B, C = mixer._dt_B_C(xt)  # the mixer's own (unfused) sequence, as forward runs it
        ys = {"unfused": selective_state_update(states["unfused"], xt, dt, mixer._A(), B, C, mixer.D, zt),
              "ref": selective_step_ref(states["ref"], *_step_args(mixer, xt, zt)),
              "fused": triton_fused_step.selective_step_fused_triton(states["fused"], *_step_args(mixer, xt, zt),
                                                                     block_d=16, block_r=4)}
        for name in ("ref", "fused"):
            torch.testing.assert_close(ys[name], ys["unfused"], **TOL[torch.float32], msg=name)
            torch.testing.assert_close(states[name], states["unfused"], **TOL[torch.float32], msg=name)


@torch.no_grad()
def test_fused_step_without_gate_skip_or_bias():
    mixer, x, _, h0 = _mixer_and_step_inputs("falcon_mamba", seed=1)
    args = list(_step_args(mixer, x, None))
    args[4] = args[6] = None  # no dt_proj bias, no D
    ref_state, state = h0.clone(), h0.clone()
    y_ref = selective_step_ref(ref_state, *args)
    y = triton_fused_step.selective_step_fused_triton(state, *args, block_d=16, block_r=4)
    torch.testing.assert_close(y, y_ref, **TOL[torch.float32])
    torch.testing.assert_close(state, ref_state, **TOL[torch.float32])


@torch.no_grad()
def test_fused_step_bfloat16_rounds_where_pytorch_does():
    # The norms' and dt_proj's outputs are rounded to bfloat16 on the PyTorch path, and so in the
    # kernel. (Triton's interpreter rounds float32 -> bfloat16 toward zero, the GPU to nearest as
    # torch does: hence the tolerances, and dt in the model's usual range, where one ulp of a
    # rounded dt moves the state little.)
    mixer, x, z, h0 = _mixer_and_step_inputs("falcon_mamba", dtype=torch.bfloat16, seed=2, wide_dt=False)
    ref_state, state = h0.clone(), h0.clone()
    y_ref = selective_step_ref(ref_state, *_step_args(mixer, x, z))
    y = triton_fused_step.selective_step_fused_triton(state, *_step_args(mixer, x, z), block_d=16, block_r=4)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, y_ref, **TOL[torch.bfloat16])
    torch.testing.assert_close(state, ref_state, **TOL[torch.bfloat16])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@torch.no_grad()
def test_rms_norm_matches_reference_and_model_norm(dtype):
    # The block's pre-norm on the float32 residual stream; H = 37 over blocks of 16: ragged.
    norm = RMSNorm(37, eps=1e-5, device=DEVICE, dtype=dtype)
    norm.weight.normal_()
    x = torch.randn(3, 37, device=DEVICE) * 4
    expected = norm(x.to(dtype))  # as MambaBlock.forward applies it
    torch.testing.assert_close(rms_norm_ref(x, norm.weight, norm.eps), expected, rtol=0, atol=0)
    out = triton_rms_norm.rms_norm_triton(x, norm.weight, norm.eps, block_h=16)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, **TOL[dtype])


@pytest.mark.skipif(CUDA, reason="checks the CPU fallback")
def test_cpu_tensors_never_take_the_triton_paths():
    model = MambaLM(MambaConfig(model_type="falcon_mamba", num_hidden_layers=1))
    for cpu, expected in ((False, {"torch_chunked", "torch_state_update", "torch_conv_update"}),
                          (True, {"cpu_c", "cpu_c_state_update", "cpu_c_conv_update", "cpu_c_rms_norm"})):
        if cpu and not cpu_kernels.available():
            continue
        model.kernels.cpu = cpu
        model.kernels.used.clear()
        cache = model.allocate_inference_cache(1)
        model.prefill(torch.tensor([[1, 2, 3]]), cache=cache)
        model.step(torch.tensor([4]), cache)
        assert model.kernels.used == expected


def test_models_import_without_triton():
    # sys.modules["triton"] = None makes `import triton` raise ImportError, as when it is not installed.
    # (Decoding then takes the paths that CPU tensors take, tested above.)
    code = ("import sys; sys.modules['triton'] = None\n"
            "import models.cuda_graph, models.mamba\n"
            "from models.ops import scan_backend\n"
            "assert scan_backend._triton_fused_step is None and scan_backend._triton_rms_norm is None\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).parents[1])


@pytest.mark.skipif(CUDA, reason="checks the error raised without CUDA")
def test_graphed_decoder_needs_cuda():
    from models.cuda_graph import GraphedDecoder

    with pytest.raises(RuntimeError, match="CUDA"):
        GraphedDecoder(MambaLM(MambaConfig(num_hidden_layers=1)), batch_size=1)


def _small_cuda_model():
    torch.manual_seed(0)
    cfg = MambaConfig(model_type="falcon_mamba", vocab_size=97, hidden_size=64, num_hidden_layers=2,
                      tie_word_embeddings=False)
    model = MambaLM(cfg, device="cuda", dtype=torch.float32)
    with torch.no_grad():  # random A and biases so that a mix-up shows
        for layer in model.backbone.layers:
            layer.mixer.A_log.copy_(torch.rand_like(layer.mixer.A_log) * 2)
            layer.mixer.conv1d.bias.normal_(0, 0.1)
    return model


@pytest.mark.gpu
def test_cuda_model_paths_agree_and_use_triton(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the parallel conv1d goes through cuDNN
    model = _small_cuda_model()
    ids = torch.randint(0, 97, (2, 24), device="cuda")
    full = model(ids)  # (b, l, V): parallel prefill
    logits, cache = model.prefill(ids[:, :10], mode="sequential", chunk_size=4)  # Triton scan with h0
    steps = [logits] + [model.step(ids[:, t], cache) for t in range(10, 24)]
    torch.testing.assert_close(torch.stack(steps[:-1], 1), full[:, 9:23], rtol=1e-3, atol=1e-3)
    assert {"triton_rms_norm", "triton_conv_update", "triton_fused_step"} <= model.kernels.used
    assert "triton" in model.kernels.used or "mamba_ssm" in model.kernels.used


@pytest.mark.gpu
def test_graphed_decoder_matches_eager_steps():
    from models.cuda_graph import GraphedDecoder

    model = _small_cuda_model()
    ids = torch.randint(0, 97, (2, 8), device="cuda")
    decoder = GraphedDecoder(model, batch_size=2)
    eager_logits, cache = model.prefill(ids)
    graph_logits = decoder.prefill(ids)
    torch.testing.assert_close(graph_logits, eager_logits)
    for t in range(6):
        token = eager_logits.argmax(-1)
        eager_logits = model.step(token, cache)
        graph_logits = decoder.step(token)
        torch.testing.assert_close(graph_logits, eager_logits, rtol=1e-4, atol=1e-4)
    assert decoder.cache.seqlen_offset == cache.seqlen_offset == 14
    torch.testing.assert_close(decoder.cache.ssm, cache.ssm, rtol=1e-4, atol=1e-4)
