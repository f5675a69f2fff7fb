"""The max_seq_len scenario: trackers, search, verdicts, and simulated against measured peaks.

Tiny models only (d 64, 2 layers, vocab 1024) with budgets of a few MiB, so the searches run
in seconds on a CPU; the 7B paper table is exercised only where the weights alone decide it.
"""

import math
import os

import pytest
import torch

from bench.backends.base import Backend
from bench.memory.search import TrialResult, fitted_slope, search_max_len
from bench.memory.trackers import BudgetExceeded, CpuTracker, SimulateTracker, storage_nbytes
from bench.config import HardwareConfig, MaxSeqLenConfig
from bench.scenarios.max_seq_len import load_backend, make_trial, search
from models.mamba import MambaConfig, MambaLM

MiB = 2**20


# ----------------------------------------------------------------------------- tiny backends

class TinyMamba(Backend):
    """The in-repo MambaLM, d 64, 2 layers, vocab 1024."""

    NAME = "test_mamba"
    arch = "ssm"

    def load(self):
        self.model = MambaLM(MambaConfig(vocab_size=1024, hidden_size=64, num_hidden_layers=2),
                             device=self.device, dtype=self.dtype)

    def prefill(self, input_ids, mode="parallel", chunk_size=1, logits_to_keep=1):
        return self.model.prefill(input_ids, mode=mode, chunk_size=chunk_size)

    def step(self, token_ids, state):
        return self.model.step(token_ids, state)

    def state_nbytes(self, state):
        return state.nbytes

    def as_transformers(self):
        from models.hf import to_hf

        return to_hf(self.model)

    def vocab_size(self):
        return 1024


class TinyLlama(Backend):
    """transformers' LlamaForCausalLM, random weights: hidden 64, 2 layers, 4 heads (and KV heads) of 32."""

    NAME = "test_llama"
    arch = "transformer"
    LAYERS, KV_HEADS, HEAD_DIM = 2, 4, 32

    def load(self):
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=self.LAYERS,
                             num_attention_heads=4, num_key_value_heads=self.KV_HEADS, head_dim=self.HEAD_DIM,
                             max_position_embeddings=1 << 16)
        with torch.device(self.device):
            self.model = LlamaForCausalLM._from_config(config, dtype=self.dtype).eval()

    @torch.no_grad()
    def prefill(self, input_ids, mode="parallel", chunk_size=1, logits_to_keep=1):
        cache, step = None, input_ids.shape[1] if mode == "parallel" else chunk_size
        for start in range(0, input_ids.shape[1], step):  # sequential: chunks through the KV cache
            out = self.model(input_ids[:, start:start + step], cache=cache, use_cache=True,
                             logits_to_keep=logits_to_keep)
            cache = out.cache
        return out.logits[:, -1], cache

    @torch.no_grad()
    def step(self, token_ids, state):
        return self.model(token_ids.reshape(-1, 1), cache=state, use_cache=True).logits[:, -1]

    def state_nbytes(self, state):
        return storage_nbytes(state)

    def as_transformers(self):
        return self.model

    def vocab_size(self):
        return 1024


def loaded(cls, dtype=torch.float32):
    backend = cls(None, torch.device("cpu"), dtype)
    backend.load()
    return backend


def hardware_for(backend, headroom_bytes):
    """A budget of the weights plus `headroom_bytes`."""
    weights = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    return HardwareConfig(name="tiny", memory_gib=(weights + headroom_bytes) / 2**30, overhead_gib=0.0,
                          device="cpu", bandwidth_gbps=1.0, peak_tflops=1.0)


def metric(rows, name, mode):
    return next(r for r in rows if r["metric"] == name and r["prefill_mode"] == mode)


# ----------------------------------------------------------------------------- config and search

def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match=r"scenario.measure.*'cuda', 'cpu', 'simulate'"):
        MaxSeqLenConfig(measure="gpu")
    with pytest.raises(ValueError, match=r"scenario.modes"):
        MaxSeqLenConfig(modes=["chunked"])
    with pytest.raises(ValueError, match=r"scenario.logits_to_keep"):
        MaxSeqLenConfig(logits_to_keep=-1)


def test_search_brackets_a_linear_peak_and_measures_its_slope():
    weights, per_token, budget = 1000.0, 300.0, 1000.0 + 300.0 * 5000
    trial = lambda n: TrialResult(weights + per_token * n, weights + per_token * n > budget, 100.0 * n, 50.0)
    result = search_max_len(trial, budget, weights, start_len=64, resolution=16)
    assert result.verdict == "bounded"
    assert 5000 - 16 <= result.max_len <= 5000
    assert result.slope == pytest.approx(per_token)
    assert result.limiting_factor == "activations"  # 150/token of the 300, state 100, logits fixed


def test_weights_over_budget_are_a_verdict_without_trials():
    result = search_max_len(lambda n: pytest.fail("no trial should run"), budget_bytes=10, weights_bytes=11)
    assert (result.verdict, result.limiting_factor, result.trials) == ("weights_exceed_budget", "weights", [])
    assert math.isnan(result.max_len)


def test_fitted_slope():
    assert fitted_slope([(1, 5.0), (2, 7.0), (4, 11.0)]) == pytest.approx(2.0)
    assert math.isnan(fitted_slope([(1, 5.0)]))


# ----------------------------------------------------------------------------- trackers and OOM

def test_budget_crossing_and_real_oom_become_results():
    tracker = CpuTracker()
    with tracker.track(limit_bytes=1 * MiB) as m:
        torch.empty(2 * MiB, dtype=torch.uint8)
        pytest.fail("the budget check should stop the block")
    assert m.oom and m.peak_bytes >= 2 * MiB and "budget" in m.error
    with tracker.track() as m:
        raise torch.OutOfMemoryError("CUDA out of memory (raised by the test)")
    assert m.oom and "out of memory" in m.error
    with pytest.raises(ValueError):  # anything else is a bug, not a verdict
        with tracker.track():
            raise ValueError("not an OOM")
    assert issubclass(BudgetExceeded, torch.OutOfMemoryError)


def test_trial_over_budget_is_an_oom_trial():
    backend = loaded(TinyMamba)
    tracker = CpuTracker()
    load_backend(backend, tracker)
    budget = tracker.live_bytes() + 64 * 1024  # far too little for 4k tokens in parallel
    result = make_trial(backend, tracker, budget, "parallel", 1, 1)(4096)
    assert result.oom and math.isnan(result.state_bytes)


def _rss():
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss


def test_cpu_tracker_agrees_with_rss_growth():
    """A large, held allocation pattern (an MLP's activations at a big batch): the live bytes the
    tracker counts and the process's RSS growth agree loosely (allocator and page effects)."""
    pytest.importorskip("psutil")
    mlp = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
    tracker = CpuTracker()
    tracker.clean()
    before = _rss()
    with torch.no_grad(), tracker.track() as m:
        x = torch.randn(32768, 256)  # 32 MiB
        held = [x]
        for layer in mlp:  # keep every activation: 32 + 128 + 128 + 32 MiB
            held.append(layer(held[-1]))
        grown = _rss() - before
    assert 0.5 <= grown / m.peak_bytes <= 2, (grown, m.peak_bytes)
    del held, x


# ----------------------------------------------------------------------------- verdicts

def test_ssm_sequential_prefill_is_unbounded_and_parallel_bounded():
    backend = loaded(TinyMamba)
    cfg = MaxSeqLenConfig(measure="cpu", chunk_size=64, start_len=64, max_len=2**14, resolution=64)
    rows = search(cfg, backend, hardware_for(backend, 8 * MiB))
    seq, par = metric(rows, "max_prompt_len", "sequential"), metric(rows, "max_prompt_len", "parallel")
    assert seq["verdict"] == "unbounded" and seq["value"] == math.inf
    assert seq["slope"] < cfg.unbounded_slope_threshold and seq["limiting_factor"] == "none"
    assert par["verdict"] == "bounded" and 64 <= par["value"] < 2**14
    assert par["limiting_factor"] == "activations" and par["source"] == "measured"


def test_transformer_is_bounded_in_both_modes_by_its_kv_cache_growth():
    backend = loaded(TinyLlama)
    cfg = MaxSeqLenConfig(measure="cpu", chunk_size=64, start_len=128, max_len=2**15, resolution=64)
    rows = search(cfg, backend, hardware_for(backend, 4 * MiB))
    kv_per_token = 2 * TinyLlama.LAYERS * TinyLlama.KV_HEADS * TinyLlama.HEAD_DIM * 4
    for mode in ("parallel", "sequential"):
        row = metric(rows, "max_prompt_len", mode)
        assert row["verdict"] == "bounded" and 0 < row["value"] < 2**15
        assert row["slope"] >= kv_per_token  # the cache alone grows this fast
    seq = metric(rows, "max_prompt_len", "sequential")
    assert seq["limiting_factor"] == "kv_cache"  # chunks keep activations small; the cache grows


# ----------------------------------------------------------------------------- fidelity

@pytest.mark.parametrize("cls,fused_scan", [(TinyMamba, True), (TinyMamba, False), (TinyLlama, True)])
def test_simulated_peak_matches_measured(cls, fused_scan):
    """The same trial, real on this CPU and under FakeTensorMode: peaks above the weights within 10%.

    Fake tensors cannot run the compiled scans, so simulation swaps in allocation twins of the path
    a real tensor takes: the fused kernel (C here, Triton on a GPU) or the PyTorch chunked scan.
    """
    from models.ops import cpu_kernels

    if fused_scan and not cpu_kernels.available():
        pytest.skip("no C compiler for the fused CPU scan")
    real = loaded(cls)
    cpu = CpuTracker()
    load_backend(real, cpu)
    fake = cls(None, torch.device("cpu"), torch.float32)
    sim = SimulateTracker()
    load_backend(fake, sim)
    for backend in (real, fake):
        if hasattr(backend.model, "kernels"):  # the Mamba's choice, which the simulation's twin follows
            backend.model.kernels.cpu = fused_scan
    assert sim.live_bytes() == cpu.live_bytes()  # the same weights, counted the same
    for mode, lengths in (("parallel", (200, 1000, 3000)), ("sequential", (1000, 3000))):
        real_trial = make_trial(real, cpu, None, mode, 256, 1)
        fake_trial = make_trial(fake, sim, None, mode, 256, 1)
        for n in lengths:
            measured, simulated = real_trial(n), fake_trial(n)
            above = lambda r: r.peak_bytes - cpu.live_bytes()
            assert simulated.state_bytes == measured.state_bytes
            assert above(simulated) == pytest.approx(above(measured), rel=0.10), (mode, n)


def test_kv_cache_part_matches_its_formula():
    """2 x layers x kv_heads x head_dim x tokens x bytes: from the cache, and from the peaks."""
    backend = loaded(TinyLlama)
    tracker = CpuTracker()
    load_backend(backend, tracker)
    per_token = 2 * TinyLlama.LAYERS * TinyLlama.KV_HEADS * TinyLlama.HEAD_DIM * 4  # float32
    trial = make_trial(backend, tracker, None, "sequential", 64, 1)
    for n in (256, 1024):
        assert trial(n).state_bytes == per_token * (n + 1)  # the prompt and the first generated token
    # Sequential prefill in chunks of 64: the per-chunk activations do not grow with the prompt,
    # so the peak grows by the cache (plus the 8-byte int64 prompt ids and the chunk's causal mask).
    slope = (trial(2048).peak_bytes - trial(1024).peak_bytes) / 1024
    assert per_token <= slope <= per_token * 1.5


def test_paper_fp32_7b_weights_exceed_the_a10_budget():
    """Falcon Mamba 7B and Llama-3.1-8B in float32 (29-32 GB) cannot load on 23 GiB: no search runs.
    The configs are `make bench-paper`'s (experiment=falcon_mamba_paper, simulated)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bench.backends import get_backend_class
    from bench.config import CONFIG_DIR, register_configs
    from bench.scenarios import max_seq_len

    register_configs()
    for model in ("falcon_mamba_7b", "llama_3_1_8b"):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = OmegaConf.to_object(compose("config", overrides=[
                "experiment=falcon_mamba_paper", "scenario=max_seq_len", "scenario.measure=simulate",
                f"model={model}", "dtype=float32", "scenario.modes=[parallel]"]))
        backend = get_backend_class(cfg.model.impl)(cfg.model, torch.device("cpu"), torch.float32)
        rows = max_seq_len.run(cfg, backend)
        row = next(r for r in rows if r["metric"] == "max_prompt_len")
        assert row["verdict"] == "weights_exceed_budget" and row["limiting_factor"] == "weights"
        assert row["budget_hardware"] == "a10_24gb" and row["budget_bytes"] == 23 * 2**30
        weights = next(r for r in rows if r["metric"] == "weights_bytes_at_limit")
        assert weights["value"] > 28e9 and row["source"] == "simulated"


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="runs the Triton scan in Triton's interpreter")
def test_cuda_twin_allocates_what_the_triton_scan_allocates():
    """Emulating a GPU, simulation follows the Triton scan, here run by Triton's interpreter: the
    same outputs' shapes and dtypes, and the same bytes allocated once the interpreter's own host
    copies of the tensor arguments (which a GPU does not make) are set aside."""
    pytest.importorskip("triton")
    from bench.memory.fake_kernels import TWINS, triton_scan_twin
    from models.ops import scan_backend
    from models.ops.triton_selective_scan import selective_scan_triton
    from tests.scan_inputs import random_scan_inputs

    u, delta, A, B, C, D, z, _ = random_scan_inputs(0, 1, 24, 16, 4, with_state=False)
    u, delta, B, C, z = (t.bfloat16() for t in (u, delta, B, C, z))
    interpreter_copies = sum(t.nbytes for t in (u, delta, A, B, C, D, z))
    allocated = {}
    for name, scan in (("triton", selective_scan_triton), ("twin", triton_scan_twin)):
        tracker = CpuTracker()
        with tracker.track() as m:
            y, h = scan(u, delta, A, B, C, D, z)
        allocated[name] = (m.peak_bytes, y.shape, y.dtype, h.shape, h.dtype)
    triton_peak, *triton_outputs = allocated["triton"]
    twin_peak, *twin_outputs = allocated["twin"]
    assert twin_outputs == triton_outputs and triton_peak - interpreter_copies == twin_peak
    assert (scan_backend, "selective_scan", triton_scan_twin) in TWINS["cuda"]


def test_a_measured_search_never_aims_past_the_hosts_free_memory(monkeypatch):
    """measure=cpu emulating a budget bigger than the host has free searches up to what is free."""
    import bench.memory.guard as guard

    backend = loaded(TinyMamba)
    free = sum(p.numel() * p.element_size() for p in backend.model.parameters()) + 8 * MiB
    monkeypatch.setattr(guard, "host_budget_bytes", lambda: free)
    cfg = MaxSeqLenConfig(measure="cpu", modes=["parallel"], chunk_size=64, start_len=64, max_len=2**14,
                          resolution=64)
    rows = search(cfg, backend, HardwareConfig(name="a10_24gb", memory_gib=23.0, overhead_gib=0.0, device="cpu",
                                               bandwidth_gbps=600, peak_tflops=125))
    par = metric(rows, "max_prompt_len", "parallel")
    assert par["budget_bytes"] == free and par["budget_capped_by_host"] and par["verdict"] == "bounded"


def test_the_hosts_refusal_is_an_oom_trial_not_a_lost_search():
    """When the machine refuses an allocation before the budget is reached, that trial is the
    verdict (oom) and the trials before it stand."""
    from bench.memory.trackers import CpuTracker

    tracker = CpuTracker()
    with tracker.track(limit_bytes=None) as m:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 2147483648 bytes")
    assert m.oom and "can't allocate memory" in m.error
    with pytest.raises(RuntimeError, match="unrelated"):
        with tracker.track(limit_bytes=None):
            raise RuntimeError("unrelated")


def test_a_measured_search_on_nan_weights_is_invalid_not_a_length():
    from bench.backends.base import InvalidOutput

    backend = loaded(TinyMamba)
    with torch.no_grad():
        backend.model.backbone.embeddings.weight.fill_(float("nan"))
    cfg = MaxSeqLenConfig(measure="cpu", modes=["parallel"], start_len=64, max_len=256, resolution=64)
    with pytest.raises(InvalidOutput, match="non-finite logits"):
        search(cfg, backend, hardware_for(backend, 8 * MiB))


def test_when_not_even_the_shortest_length_fits_the_verdict_says_so():
    """No fitting trial: no limit to attribute, so not 'bounded, limited by activations'."""
    result = search_max_len(lambda n: TrialResult(peak_bytes=1e9, oom=True), budget_bytes=100, weights_bytes=10,
                            start_len=64, max_len=1024, resolution=16)
    assert (result.verdict, result.max_len, result.limiting_factor) == ("none_fits", 0, "unmeasured")
    assert all(t.oom for t in result.trials) and result.trials
