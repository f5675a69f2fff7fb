"""The in-repo Mamba as a transformers Auto model (models/hf.py)."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from models.hf import SsmBenchMambaConfig, SsmBenchMambaForCausalLM, load_mamba, to_hf
from models.mamba import MambaConfig, MambaLM


@pytest.fixture(params=["falcon_untied", "mamba_tied"])
def mamba(request):
    torch.manual_seed(0)
    if request.param == "falcon_untied":
        config = MambaConfig(model_type="falcon_mamba", vocab_size=97, hidden_size=32, tie_word_embeddings=False)
    else:
        config = MambaConfig(vocab_size=97, hidden_size=32)
    return MambaLM(config).eval()


def test_state_dict_keys_are_checkpoint_names(mamba):
    wrapper = to_hf(mamba)
    assert set(wrapper.state_dict()) == set(mamba.state_dict())
    assert wrapper.backbone.embeddings.weight is mamba.backbone.embeddings.weight  # shared, not copied


def test_save_and_auto_load_round_trip(mamba, tmp_path):
    x = torch.randint(0, 97, (2, 9))
    to_hf(mamba).save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, SsmBenchMambaConfig) and config.variant == mamba.config.model_type
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, SsmBenchMambaForCausalLM)
    out = loaded(x)
    assert out.logits.dtype == torch.float32
    torch.testing.assert_close(out.logits, mamba(x), rtol=0, atol=0)
    torch.testing.assert_close(load_mamba(tmp_path)(x), mamba(x), rtol=0, atol=0)


def test_generate_matches_mamba_generate(mamba):
    x = torch.randint(0, 97, (2, 5))
    out = to_hf(mamba).generate(x, max_new_tokens=6, do_sample=False)
    assert torch.equal(out, mamba.generate(x, max_new_tokens=6))


def test_generate_carries_the_ssm_state(mamba):
    """After the prompt, each generate() step feeds one token through MambaLM.step: O(1) per token."""
    x = torch.randint(0, 97, (2, 5))
    wrapper, forwards = to_hf(mamba), []
    wrapper.register_forward_pre_hook(lambda _, args, kwargs: forwards.append(kwargs["input_ids"].shape),
                                      with_kwargs=True)
    out = wrapper.generate(x, max_new_tokens=7, min_new_tokens=7, do_sample=False)
    assert forwards == [(2, 5)] + [(2, 1)] * 6
    assert torch.equal(out, mamba.generate(x, max_new_tokens=7))


def test_left_padded_generate_recomputes_each_row_on_its_tokens(mamba):
    """With padding the state is not used: every step runs the kept tokens of each row."""
    x = torch.randint(0, 97, (2, 6))
    mask = torch.ones_like(x)
    mask[0, :2] = 0
    out = to_hf(mamba).generate(x, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(out[0, 6:], mamba.generate(x[:1, 2:], max_new_tokens=4)[0, 4:])
    assert torch.equal(out[1], mamba.generate(x[1:], max_new_tokens=4)[0])


def test_left_padding_is_ignored(mamba):
    """Rows with padding run on their kept tokens only: pads never enter the SSM state."""
    x = torch.randint(0, 97, (2, 8))
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    logits = to_hf(mamba)(x, attention_mask=mask).logits
    torch.testing.assert_close(logits[0, 3:], mamba(x[:1, 3:])[0])
    torch.testing.assert_close(logits[1], mamba(x[1:])[0])


def test_left_padding_with_logits_to_keep(mamba):
    """logits_to_keep with padding: the last k positions' logits, computed on the kept tokens only
    (pads zero), equal to the full forward's last k."""
    x = torch.randint(0, 97, (3, 8))
    mask = torch.ones_like(x)
    mask[0, :3] = 0
    mask[2, :7] = 0  # one kept token, fewer than k
    hf = to_hf(mamba)
    full = hf(x, attention_mask=mask).logits
    for k in (1, 3, 8):
        last = hf(x, attention_mask=mask, logits_to_keep=k).logits
        assert last.shape == (3, k, 97)
        torch.testing.assert_close(last, full[:, -k:])


def test_loss_with_labels(mamba):
    x = torch.randint(0, 97, (1, 6))
    out = to_hf(mamba)(x, labels=x)
    logits = mamba(x)
    expected = torch.nn.functional.cross_entropy(logits[0, :-1], x[0, 1:])
    torch.testing.assert_close(out.loss, expected)


def test_wrapper_config_has_every_mamba_config_field_with_its_default():
    """SsmBenchMambaConfig's fields are generated from MambaConfig's (model_type as `variant`)."""
    import dataclasses

    wrapper = {f.name: f.default for f in dataclasses.fields(SsmBenchMambaConfig)}
    for f in dataclasses.fields(MambaConfig):
        assert wrapper["variant" if f.name == "model_type" else f.name] == f.default
    config = MambaConfig(model_type="falcon_mamba", hidden_size=48, state_size=8, scan_chunk_size=16)
    assert SsmBenchMambaConfig.from_mamba_config(config).to_mamba_config() == config
    with pytest.raises(ValueError, match="hidden_size"):
        SsmBenchMambaConfig(hidden_size=0)
