"""The in-repo Mamba against transformers' implementations, and its three paths against each other."""

import json

import pytest
import torch
from transformers import FalconMambaConfig, FalconMambaForCausalLM, MambaConfig as HFMambaConfig, MambaForCausalLM

from models.loading import CheckpointError
from models.mamba import MambaConfig, MambaLM, num_params

torch.manual_seed(0)


def _randomise(model: torch.nn.Module):
    """transformers' init gives identical A rows, unit D and unit norms: perturb every tensor so
    that a mix-up of any two of them shows in the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.rand_like(p) * 2)
            elif name.endswith(("D", "norm.weight", "norm_f.weight")):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))


HF_CASES = [
    # (transformers class, config class, config kwargs)
    (FalconMambaForCausalLM, FalconMambaConfig,
     dict(vocab_size=101, hidden_size=48, state_size=8, num_hidden_layers=3, expand=2, conv_kernel=4,
          time_step_rank=5, tie_word_embeddings=False, use_conv_bias=True)),
    (FalconMambaForCausalLM, FalconMambaConfig,
     dict(vocab_size=64, hidden_size=32, state_size=16, num_hidden_layers=2, expand=3, conv_kernel=3,
          tie_word_embeddings=True, use_bias=True)),
    (MambaForCausalLM, HFMambaConfig,
     dict(vocab_size=77, hidden_size=40, state_size=6, num_hidden_layers=2, expand=2, conv_kernel=4,
          time_step_rank=7, tie_word_embeddings=True)),
]


@pytest.fixture(params=range(len(HF_CASES)), ids=["falcon_untied", "falcon_tied_bias", "mamba"])
def hf_pair(request, tmp_path):
    """A random transformers model, saved and reloaded through our loader."""
    hf_cls, cfg_cls, kwargs = HF_CASES[request.param]
    torch.manual_seed(request.param)
    hf = hf_cls(cfg_cls(**kwargs)).eval()
    _randomise(hf)
    hf.save_pretrained(tmp_path)
    ours = MambaLM.from_pretrained(tmp_path).eval()
    return hf, ours


@pytest.mark.parametrize("batch,length", [(1, 1), (2, 37), (3, 130)])
def test_logits_match_transformers(hf_pair, batch, length):
    hf, ours = hf_pair
    ids = torch.randint(0, hf.config.vocab_size, (batch, length))
    with torch.no_grad():
        expected = hf(ids, use_cache=False).logits
        got = ours(ids)
    assert got.shape == expected.shape
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-4 * scale, f"max diff {(got - expected).abs().max()} at scale {scale}"


def test_hf_config_fields_map(hf_pair):
    hf, ours = hf_pair
    assert ours.config.intermediate_size == hf.config.intermediate_size
    assert ours.config.time_step_rank == hf.config.time_step_rank
    assert ours.config.model_type == hf.config.model_type
    assert ours.num_params() == sum(p.numel() for p in ours.parameters())


@pytest.mark.parametrize("model_type,config_cls", [("mamba", HFMambaConfig), ("falcon_mamba", FalconMambaConfig)])
def test_transformers_config_names_only_their_fields(model_type, config_cls):
    """Every field transformers_config passes is one of theirs (intermediate_size: their override of
    expand * hidden_size), so a renamed or dropped field fails here rather than becoming a stray
    attribute; every other MambaConfig field is named in NOT_IN_TRANSFORMERS."""
    import dataclasses

    from models.hf import NOT_IN_TRANSFORMERS, transformers_config

    ours = MambaConfig(model_type=model_type, hidden_size=40, intermediate_size=120, time_step_rank=7)
    theirs = transformers_config(ours, config_cls)
    their_fields = {f.name for f in dataclasses.fields(config_cls)} | {"intermediate_size"}
    passed = {k for k, v in ours.to_dict().items() if k not in NOT_IN_TRANSFORMERS and v is not None}
    assert passed <= their_fields, f"not fields of {config_cls.__name__}: {sorted(passed - their_fields)}"
    assert {k: getattr(theirs, k) for k in passed} == {k: getattr(ours, k) for k in passed}


@pytest.mark.parametrize("model_type,tied", [("mamba", True), ("falcon_mamba", False)])
def test_reference_model_takes_our_weights_and_agrees(model_type, tied):
    """The implementation scenario's transformers twin: same config (models.hf.transformers_config),
    our state dict, the same logits."""
    from bench.scenarios.implementation import reference_model

    model = _small(model_type, tie_word_embeddings=tied, intermediate_size=48, time_step_rank=3)
    ids = torch.randint(0, 97, (2, 19))
    with torch.no_grad():
        expected, got = model(ids), reference_model(model)(ids, use_cache=False).logits
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def _small(model_type="falcon_mamba", **kw) -> MambaLM:
    torch.manual_seed(1)
    cfg = MambaConfig(model_type=model_type, vocab_size=97, hidden_size=32, num_hidden_layers=2,
                      state_size=5, scan_chunk_size=8, **kw)
    model = MambaLM(cfg).eval()
    _randomise(model)
    return model


@pytest.mark.parametrize("model_type", ["mamba", "falcon_mamba"])
def test_parallel_equals_sequential_equals_decode(model_type):
    model = _small(model_type)
    ids = torch.randint(0, 97, (2, 29))
    with torch.no_grad():
        full = model(ids)  # (b, l, V)
        for keep in (1, 0):  # last-position logits only, or all of them: same answer
            parallel, _ = model.prefill(ids, mode="parallel", logits_to_keep=keep)
            torch.testing.assert_close(parallel, full[:, -1], rtol=1e-5, atol=1e-5)
            sequential, _ = model.prefill(ids, mode="sequential", chunk_size=5, logits_to_keep=keep)
            torch.testing.assert_close(sequential, full[:, -1], rtol=1e-5, atol=1e-5)
        for chunk in (1, 2, 3, 8, 13, 29, 64):
            sequential, _ = model.prefill(ids, mode="sequential", chunk_size=chunk)
            torch.testing.assert_close(sequential, full[:, -1], rtol=1e-5, atol=1e-5, msg=f"chunk {chunk}")
        # token by token through step(), every position
        cache = model.allocate_inference_cache(2)
        for t in range(ids.shape[1]):
            torch.testing.assert_close(model.step(ids[:, t], cache), full[:, t], rtol=1e-5, atol=1e-5)
        assert cache.seqlen_offset == ids.shape[1]


def test_decode_after_prefill_continues_the_sequence():
    model = _small()
    ids = torch.randint(0, 97, (1, 20))
    with torch.no_grad():
        full = model(ids)
        logits, cache = model.prefill(ids[:, :11], mode="parallel")
        for t in range(11, 20):
            logits = model.step(ids[:, t], cache)
            torch.testing.assert_close(logits, full[:, t], rtol=1e-5, atol=1e-5)


def test_cache_is_constant_size_and_updated_in_place():
    model = _small()
    cache = model.allocate_inference_cache(1)
    conv_ptr, ssm_ptr, nbytes = cache.conv.data_ptr(), cache.ssm.data_ptr(), cache.nbytes
    assert cache.ssm.dtype == torch.float32
    with torch.no_grad():
        for t in range(50):
            model.step(torch.tensor([t % 97]), cache)
    assert (cache.conv.data_ptr(), cache.ssm.data_ptr(), cache.nbytes) == (conv_ptr, ssm_ptr, nbytes)
    assert cache.ssm.abs().sum() > 0


def test_bf16_weights_keep_fp32_state():
    model = _small().to(torch.bfloat16)
    ids = torch.randint(0, 97, (1, 12))
    with torch.no_grad():
        logits, cache = model.prefill(ids, mode="sequential", chunk_size=5)
        full = model.float()(ids)[:, -1]
    assert cache.ssm.dtype == torch.float32 and cache.conv.dtype == torch.bfloat16
    assert torch.isfinite(logits).all()
    assert (logits.float() - full).abs().max() < 0.1 * full.abs().max()


def test_greedy_generate_matches_argmax_of_full_forward():
    model = _small()
    prompt = torch.randint(0, 97, (2, 7))
    out = model.generate(prompt, max_new_tokens=9)
    assert out.shape == (2, 16)
    with torch.no_grad():
        for t in range(7, 16):
            assert torch.equal(model(out[:, :t])[:, -1].argmax(-1), out[:, t])


def test_sampled_generate_is_reproducible_and_in_vocab():
    model = _small()
    prompt = torch.randint(0, 97, (1, 3))
    a = model.generate(prompt, 20, do_sample=True, top_k=10, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 20, do_sample=True, top_k=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.max() < 97
    greedy = model.generate(prompt, 20)
    assert not torch.equal(a, greedy)


def test_generate_stops_at_eos_only_when_asked():
    model = _small()
    prompt = torch.randint(0, 97, (1, 4))
    greedy = model.generate(prompt, 10)
    eos = int(greedy[0, 6])
    first = 4 + int((greedy[0, 4:] == eos).nonzero()[0])  # eos may come earlier than position 6
    stopped = model.generate(prompt, 10, eos_token_id=eos)
    assert greedy.shape[1] == 14
    assert torch.equal(stopped, greedy[:, :first + 1])


def test_prefill_rejects_unknown_mode():
    with pytest.raises(ValueError, match="parallel"):
        _small().prefill(torch.zeros(1, 3, dtype=torch.long), mode="bogus")


def test_config_validation_and_defaults():
    cfg = MambaConfig()
    assert cfg.intermediate_size == 2 * cfg.hidden_size and cfg.time_step_rank == 4
    assert MambaConfig(model_type="falcon_mamba").mixer_rms_eps == 1e-6
    with pytest.raises(ValueError, match="model_type"):
        MambaConfig(model_type="mamba2")
    with pytest.raises(ValueError, match="hidden_size"):
        MambaConfig(hidden_size=0)
    with pytest.raises(ValueError, match="falcon_mamba"):
        MambaConfig(model_type="mamba", mixer_rms_eps=1e-6)


def test_falcon_mamba_7b_shape_on_meta_and_fake_tensors():
    """The real 7B builds without allocating anything: on meta, and under FakeTensorMode."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg = MambaConfig(model_type="falcon_mamba", vocab_size=65024, hidden_size=4096, num_hidden_layers=64,
                      state_size=16, conv_kernel=4, intermediate_size=8192, time_step_rank=256,
                      tie_word_embeddings=False)
    meta = MambaLM(cfg, device="meta", dtype=torch.bfloat16)
    assert meta.lm_head.weight.is_meta
    assert abs(num_params(cfg) - 7.27e9) < 0.01e9
    assert sum(p.numel() for p in meta.parameters()) == num_params(cfg)
    with FakeTensorMode():
        fake = MambaLM(cfg, device="cpu", dtype=torch.bfloat16)
        logits, cache = fake.prefill(torch.zeros(1, 8, dtype=torch.long), mode="parallel")
        assert logits.shape == (1, 65024)
        assert cache.ssm.shape == (64, 1, 8192, 16)


def test_random_init_is_seeded_and_untied_head_differs():
    cfg = MambaConfig(tie_word_embeddings=False)
    a, b = MambaLM(cfg), MambaLM(cfg)
    a.reset_parameters(seed=5)
    b.reset_parameters(seed=5)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.lm_head.weight, a.backbone.embeddings.weight)
    tied = MambaLM(MambaConfig())
    assert tied.lm_head.weight is tied.backbone.embeddings.weight


# ------------------------------------------------------------------------------------ loading


def test_sharded_checkpoint_loads(tmp_path):
    hf = FalconMambaForCausalLM(FalconMambaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                  tie_word_embeddings=False)).eval()
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    ours = MambaLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 50, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, rtol=1e-4, atol=1e-4)


def test_original_mamba_ssm_checkpoint_loads(tmp_path):
    """mamba_ssm's format: d_model/n_layer config, `backbone.embedding`, head tied and not stored."""
    from safetensors.torch import save_file

    model = _small("mamba")
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["backbone.embedding.weight"] = state.pop("backbone.embeddings.weight")
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(
        {"d_model": 32, "n_layer": 2, "vocab_size": 97, "pad_vocab_size_multiple": 1,
         "ssm_cfg": {"d_state": 5}, "tie_embeddings": True}))
    loaded = MambaLM.from_pretrained(tmp_path)
    ids = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))


@pytest.fixture
def saved_small(tmp_path):
    hf = FalconMambaForCausalLM(FalconMambaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2))
    hf.save_pretrained(tmp_path)
    return tmp_path


def _rewrite(path, drop=None, reshape=None, add=None):
    from safetensors.torch import load_file, save_file

    state = load_file(path / "model.safetensors")
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = torch.zeros(3, 3)
    if add:
        state[add] = torch.zeros(1)
    save_file(state, path / "model.safetensors")


@pytest.mark.parametrize("change,message", [
    (dict(drop="backbone.layers.1.mixer.x_proj.weight"), "missing tensor.*layers.1.mixer.x_proj.weight"),
    (dict(reshape="backbone.layers.0.mixer.D"), r"backbone.layers.0.mixer.D has shape \(3, 3\)"),
    (dict(add="backbone.layers.0.mixer.extra"), "unexpected tensor.*mixer.extra"),
])
def test_bad_checkpoints_name_the_tensor(saved_small, change, message):
    _rewrite(saved_small, **change)
    with pytest.raises(CheckpointError, match=message):
        MambaLM.from_pretrained(saved_small)


def test_corrupt_file_and_missing_paths_are_clear(saved_small, tmp_path_factory):
    (saved_small / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt"):
        MambaLM.from_pretrained(saved_small)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="config.json"):
        MambaLM.from_pretrained(empty)
    with pytest.raises(FileNotFoundError, match="not found"):
        MambaLM.from_pretrained(empty / "nope")


def test_cpu_kernels_and_pytorch_twins_give_the_same_model_outputs():
    from models.ops import cpu_kernels
    from models.ops.scan_backend import Kernels

    if not cpu_kernels.available():
        pytest.skip(f"no C compiler: {cpu_kernels._load_error}")
    model = _small()
    ids = torch.randint(0, 97, (2, 23))
    outputs = {}
    for fast in (True, False):
        model.kernels.cpu = fast  # every layer's choice: one object
        model.kernels.used.clear()
        with torch.no_grad():
            full = model(ids)
            last, cache = model.prefill(ids[:, :15], mode="sequential", chunk_size=4)
            steps = [model.step(ids[:, t], cache) for t in range(15, 23)]
        outputs[fast] = (full, last, torch.stack(steps))
        used = model.kernels.used
        assert ("cpu_c" in used) == fast and ("torch_chunked" in used) != fast
    assert model.kernels == Kernels(cpu=False, used=used) and all(
        layer.mixer.kernels is model.kernels for layer in model.backbone.layers)
    for fast_out, torch_out in zip(outputs[True], outputs[False]):
        torch.testing.assert_close(fast_out, torch_out, rtol=1e-5, atol=1e-5)
