"""Loading a model is checked, so wrong numbers are never recorded as ok: strict checkpoints,
what was loaded (and where the YAML disagrees), one vocabulary rule, and finite outputs."""

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from bench.backends import get_backend_class
from bench.backends.base import InvalidOutput
from bench.config import ModelConfig
from bench.pairing import natural_impl
from models.hf import to_hf
from models.loading import CheckpointError
from models.mamba import MambaConfig, MambaLM

MODEL_CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "model"
CPU = torch.device("cpu")


def model_cfg(preset: str, **overrides) -> ModelConfig:
    """configs/model/<preset>.yaml as the validated ModelConfig, with `overrides` (no Hydra: fast)."""
    values = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(MODEL_CONFIGS / f"{preset}.yaml")).items()
              if k != "defaults"}
    cfg = ModelConfig(**{**values, **overrides})
    cfg.impl = natural_impl(cfg)  # no run, no pairing: the default pairing's backend
    return cfg


def backend_for(cfg: ModelConfig, load: bool = True):
    backend = get_backend_class(cfg.impl)(cfg, CPU, torch.float32)
    if load:
        backend.load()
    return backend


def pretrained(cfg: ModelConfig, path, **overrides):
    return backend_for(model_cfg_like(cfg, weights="pretrained", path=str(path), **overrides))


def model_cfg_like(cfg: ModelConfig, **overrides) -> ModelConfig:
    return ModelConfig(**{**vars(cfg), **overrides})


def save(backend, path) -> Path:
    """The backend's model in Hugging Face format (the in-repo Mamba through models/hf.py)."""
    backend.as_transformers().save_pretrained(path)
    return Path(path)


def edit_tensors(path: Path, edit):
    state = load_file(path / "model.safetensors")
    edit(state)
    save_file(state, path / "model.safetensors")


# Each family through each backend that runs it: (preset, impl).
PRESETS = [("tiny_llama", "transformers"), ("tiny_mistral", "transformers"), ("tiny_mamba", "ssm_bench"),
           ("tiny_mamba", "transformers")]
SMALL_VOCAB = 100  # the checkpoints' vocabulary; the YAML's is 65024


@pytest.fixture(params=PRESETS, ids=[f"{p}-{i}" for p, i in PRESETS])
def checkpoint(request, tmp_path):
    """(the preset's ModelConfig, a directory holding that model with a 100-token vocabulary)."""
    preset, impl = request.param
    torch.manual_seed(0)
    cfg = model_cfg(preset, impl=impl)
    save(backend_for(model_cfg_like(cfg, vocab_size=SMALL_VOCAB)), tmp_path)
    return cfg, tmp_path


# ------------------------------------------------------------------------- strict loading (1)


def test_transformers_refuses_a_checkpoint_of_another_family(tmp_path):
    save(backend_for(model_cfg("tiny_mamba", impl="transformers", vocab_size=SMALL_VOCAB)), tmp_path)
    with pytest.raises(CheckpointError) as error:
        pretrained(model_cfg("tiny_llama"), tmp_path)
    assert str(error.value) == f"{tmp_path}: config.json has model_type 'falcon_mamba', model.family=llama expects 'llama'"


def test_transformers_refuses_the_in_repo_format_with_a_hint(tmp_path):
    save(backend_for(model_cfg("tiny_mamba", vocab_size=SMALL_VOCAB)), tmp_path)
    with pytest.raises(CheckpointError, match="'ssm_bench_mamba'.*use model.impl=ssm_bench"):
        pretrained(model_cfg("tiny_mamba", impl="transformers"), tmp_path)


def test_transformers_names_missing_unexpected_and_mismatched_tensors(tmp_path):
    cfg = model_cfg("tiny_llama", vocab_size=SMALL_VOCAB)
    save(backend_for(cfg), tmp_path)

    def damage(state):
        del state["model.layers.0.mlp.up_proj.weight"]
        state["extra.weight"] = torch.zeros(2)
        state["model.norm.weight"] = torch.zeros(7)

    edit_tensors(tmp_path, damage)
    with pytest.raises(CheckpointError) as error:
        pretrained(cfg, tmp_path)
    assert str(error.value) == (f"{tmp_path}: 1 missing tensor(s): model.layers.0.mlp.up_proj.weight; "
                                "1 unexpected tensor(s): extra.weight; "
                                "1 mismatched tensor(s): model.norm.weight has shape (7,) (expected (128,))")


def test_many_missing_tensors_give_the_first_few_and_the_count(tmp_path):
    cfg = model_cfg("tiny_llama", vocab_size=SMALL_VOCAB)
    save(backend_for(cfg), tmp_path)
    edit_tensors(tmp_path, lambda state: [state.pop(k) for k in list(state) if ".layers.1." in k])
    with pytest.raises(CheckpointError, match=r"9 missing tensor\(s\): model\.layers\.1\.\S+, \S+, \S+ \.\.\.$"):
        pretrained(cfg, tmp_path)


@pytest.mark.parametrize("impl", ["transformers", "ssm_bench"])
def test_a_missing_directory_is_named(impl, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'nowhere'}: model directory not found"):
        pretrained(model_cfg("tiny_mamba", impl=impl), tmp_path / "nowhere")


def test_a_good_checkpoint_loads_with_its_own_weights(checkpoint):
    cfg, path = checkpoint
    original = pretrained(cfg, path, vocab_size=SMALL_VOCAB)  # nothing to resize
    again = pretrained(cfg, path, vocab_size=SMALL_VOCAB)
    ids = torch.randint(0, SMALL_VOCAB, (1, 7))
    torch.testing.assert_close(again.prefill(ids)[0], original.prefill(ids)[0], rtol=0, atol=0)
    assert again.config_mismatches() == []


# ---------------------------------------------------- what was loaded (2) and the vocabulary rule (4)


def test_description_and_mismatches_report_the_checkpoint_not_the_yaml(checkpoint):
    cfg, path = checkpoint
    backend = pretrained(cfg, path, match_vocab=False)
    config = backend.model.config
    assert backend.loaded_description() == {
        "model_type": {"tiny_llama": "llama", "tiny_mistral": "mistral"}.get(cfg.name, "falcon_mamba"),
        "vocab_size": SMALL_VOCAB, "n_layers": config.num_hidden_layers, "d_model": config.hidden_size,
        "params": backend.num_params(), "checkpoint": str(path), "vocab_resized_from": None}
    assert backend.config_mismatches() == ["model.vocab_size: config says 65024, checkpoint has 100"]


def test_match_vocab_resizes_every_family_the_same_way(checkpoint, caplog):
    cfg, path = checkpoint
    with caplog.at_level(logging.WARNING):
        backend = pretrained(cfg, path)  # match_vocab defaults to true
    assert f"{path}: vocabulary resized from 100 to 65024" in caplog.text
    description = backend.loaded_description()
    assert (description["vocab_size"], description["vocab_resized_from"]) == (65024, 100)
    assert backend.config_mismatches() == []
    logits, state = backend.prefill(torch.tensor([[1, 2, 65000]]))
    assert logits.shape == (1, 65024) and backend.step(logits.argmax(-1), state).shape == (1, 65024)


def test_in_repo_mamba_keeps_the_checkpoint_and_lists_every_disagreement(tmp_path):
    torch.manual_seed(0)
    to_hf(MambaLM(MambaConfig(model_type="mamba"))).save_pretrained(tmp_path)  # vocab 1024, d_model 64, 2 layers
    backend = pretrained(model_cfg("tiny_mamba"), tmp_path, match_vocab=False)
    description = backend.loaded_description()
    assert (description["vocab_size"], description["d_model"], description["n_layers"]) == (1024, 64, 2)
    assert description["params"] == backend.model.num_params()
    mismatches = backend.config_mismatches()
    for line in ["model.family: config says 'falcon_mamba', checkpoint has 'mamba'",
                 "model.vocab_size: config says 65024, checkpoint has 1024",
                 "model.architecture.hidden_size: config says 128, checkpoint has 64",
                 "model.architecture.num_hidden_layers: config says 4, checkpoint has 2",
                 "model.architecture.tie_word_embeddings: config says False, checkpoint has True"]:
        assert line in mismatches


@pytest.mark.parametrize("preset", ["tiny_mamba", "tiny_llama", "dummy"])
def test_random_weights_describe_the_yaml_and_have_no_mismatches(preset):
    backend = backend_for(model_cfg(preset, vocab_size=512))
    description = backend.loaded_description()
    assert description["vocab_size"] == 512 and description["checkpoint"] is None
    assert description["vocab_resized_from"] is None and description["params"] == backend.num_params()
    if preset != "dummy":
        assert description["d_model"] == 128
        assert description["n_layers"] == backend.cfg.architecture["num_hidden_layers"]
    assert backend.config_mismatches() == []


@pytest.mark.parametrize("tied", [True, False])
def test_resized_mamba_keeps_the_old_tokens_logits(tied):
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(vocab_size=50, tie_word_embeddings=tied)).eval()
    ids = torch.randint(0, 50, (2, 6))
    before = model(ids)
    model.resize_token_embeddings(80)
    after = model(ids)
    assert after.shape[-1] == 80 and model.config.vocab_size == 80
    torch.testing.assert_close(after[..., :50], before, rtol=0, atol=0)
    assert (model.lm_head.weight is model.backbone.embeddings.weight) == tied
    assert model.num_params() == sum(p.numel() for p in model.parameters())


# -------------------------------------------------------------- our own save_pretrained output (3)


@pytest.mark.parametrize("variant,tied", [("mamba", True), ("falcon_mamba", False)])
def test_own_save_pretrained_output_loads(variant, tied, tmp_path):
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(model_type=variant, vocab_size=97, tie_word_embeddings=tied)).eval()
    to_hf(model).save_pretrained(tmp_path)
    ids = torch.randint(0, 97, (1, 9))
    torch.testing.assert_close(MambaLM.from_pretrained(tmp_path)(ids), model(ids), rtol=0, atol=0)
    backend = pretrained(model_cfg("mamba_d64", family=variant, vocab_size=97), tmp_path)
    assert backend.loaded_description()["model_type"] == variant
    torch.testing.assert_close(backend.prefill(ids)[0], model.prefill(ids)[0])  # last bits: alignment


# ------------------------------------------------------------------ inference mode (5)


def test_mamba_built_and_called_inside_inference_mode():
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(model_type="falcon_mamba")).eval()
    ids = torch.randint(0, 1024, (1, 5))
    expected = model(ids)
    with torch.inference_mode():
        torch.manual_seed(0)
        built = MambaLM(MambaConfig(model_type="falcon_mamba")).eval()
        torch.testing.assert_close(built(ids), expected, rtol=0, atol=0)
        model.to(torch.float64)  # parameters converted here are inference tensors
        assert model.backbone.layers[0].mixer.A_log.is_inference()
        torch.testing.assert_close(model(ids).float(), expected, rtol=1e-5, atol=1e-5)


def test_mamba_loaded_inside_inference_mode(tmp_path):
    torch.manual_seed(0)
    model = MambaLM(MambaConfig()).eval()  # saved in transformers' Mamba format (tied head not stored)
    save_file({k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    ids = torch.randint(0, 1024, (1, 5))
    with torch.inference_mode():
        loaded = MambaLM.from_pretrained(tmp_path)
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
        logits, cache = loaded.prefill(ids)
        loaded.step(logits.argmax(-1), cache)


def test_A_cache_follows_in_place_changes_of_A_log():
    model = MambaLM(MambaConfig()).eval()
    mixer = model.backbone.layers[0].mixer
    first = mixer._A().clone()
    with torch.no_grad():
        mixer.A_log.add_(0.5)  # e.g. an optimizer step
    torch.testing.assert_close(mixer._A(), -torch.exp(mixer.A_log.float()))
    assert not torch.equal(mixer._A(), first)


# ------------------------------------------------------------------ finite outputs (6)


NAN_TENSOR = {"transformers": "model.norm.weight", "ssm_bench": "backbone.norm_f.weight"}


@pytest.mark.parametrize("impl,preset", [("transformers", "tiny_llama"), ("ssm_bench", "tiny_mamba")])
def test_probe_rejects_nan_weights_and_passes_a_normal_model(impl, preset, tmp_path):
    cfg = model_cfg(preset, vocab_size=SMALL_VOCAB)
    save(backend_for(cfg), tmp_path)
    pretrained(cfg, tmp_path).probe()  # a normal model passes

    def poison(state):
        state[NAN_TENSOR[impl]][0] = float("nan")

    edit_tensors(tmp_path, poison)
    with pytest.raises(InvalidOutput, match="^non-finite logits after prefill: 100% of values NaN/inf$"):
        pretrained(cfg, tmp_path).probe()


@pytest.mark.parametrize("preset,impl", [*PRESETS, ("dummy", "dummy")])
def test_a_non_finite_state_is_caught(preset, impl):
    backend = backend_for(model_cfg(preset, impl=impl, vocab_size=SMALL_VOCAB))
    logits, state = backend.prefill(torch.tensor([[1, 2, 3]]))
    backend.check_outputs(logits, state, where="prefill")
    tensors = [t for t in backend.state_tensors(state) if t.is_floating_point()]  # (KV, conv, SSM)
    assert tensors
    with torch.inference_mode():  # the transformers and dummy states are inference tensors
        tensors[-1].view(-1)[0] = float("inf")
    with pytest.raises(InvalidOutput, match=r"^non-finite inference state after token 3: <?\d+% of values NaN/inf in a \("):
        backend.check_outputs(logits, state, where="token 3")


def test_probe_fits_a_static_cache_sized_for_a_shorter_scenario():
    cfg = model_cfg("tiny_llama", vocab_size=SMALL_VOCAB)
    backend = get_backend_class(cfg.impl)(cfg, CPU, torch.float32, kv_cache="static", max_cache_len=4)
    backend.load()
    backend.probe()


def test_invalid_output_is_a_runtime_error():
    assert issubclass(InvalidOutput, RuntimeError) and issubclass(CheckpointError, ValueError)
