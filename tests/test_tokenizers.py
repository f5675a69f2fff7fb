"""The GGUF -> Hugging Face converter against llama.cpp's golden tokenizations, every id exact.

Converted tokenizers are cached in data/tokenizers/<name>/ (the first run in a fresh clone converts
them: tens of seconds on 2 cores; `make data` does it ahead).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import yaml

from bench.config import ConfigError, ModelConfig
from bench.tokenizers import (GGUF_DIR, LENGTHS, NAMES, check_tokenizer_field, gguf_path, load_tokenizer, prepare,
                              prompt_ids, read_gguf, tokenizer_for_model)

SEP = "\n__ggml_vocab_test__\n"  # llama.cpp's tests/test-tokenizer-0.cpp
REPO = Path(__file__).resolve().parents[1]
# converted name -> the golden file it must reproduce (gpt-neox has none: it is mpt's tokenizer)
GOLDEN = {"falcon": "falcon", "gpt-2": "gpt-2", "llama-bpe": "llama-bpe", "mpt": "mpt", "gpt-neox": "mpt"}

tokenizer = functools.lru_cache(maxsize=None)(load_tokenizer)  # one load per session


def golden_cases(name: str) -> list[tuple[str, list[int]]]:
    """(text, ids) pairs: .inp cases split on the marker line; .out one line of ids per case."""
    inp = (GGUF_DIR / f"ggml-vocab-{name}.gguf.inp").read_bytes().decode("utf-8")
    out = (GGUF_DIR / f"ggml-vocab-{name}.gguf.out").read_bytes().decode("utf-8").split("\n")
    texts = inp.split(SEP)
    if texts[-1] == "":  # the file ends with a marker
        texts.pop()
    if out[-1] == "":
        out.pop()
    assert len(texts) == len(out), f"{name}: {len(texts)} inputs, {len(out)} outputs"
    return [(text, [int(x) for x in line.split()]) for text, line in zip(texts, out)]


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_ids_exact(name):
    tok = tokenizer(name)
    cases = golden_cases(GOLDEN[name])
    assert len(cases) == 46 and sum(len(ids) for _, ids in cases) > 300
    wrong = [(text, want, got) for text, want in cases
             if (got := tok.encode(text, add_special_tokens=False)) != want]
    assert not wrong, f"{name}: {len(wrong)} of {len(cases)} cases differ, e.g. {wrong[0]!r}"


def test_gpt_neox_is_mpt():
    """gpt-neox is checked with mpt's golden file: the converted vocabularies must be the same."""
    neox, mpt = (json.loads(tokenizer(n).backend_tokenizer.to_str()) for n in ("gpt-neox", "mpt"))
    assert len(neox["model"]["vocab"]) == 50277 and len(neox["model"]["merges"]) == 50009
    for key in ("model", "added_tokens", "pre_tokenizer", "post_processor", "decoder"):
        assert neox[key] == mpt[key], key


@pytest.mark.slow  # reading the two GGUF files takes ~5 s (gguf's reader)
def test_gpt_neox_is_mpt_in_the_gguf_files():
    neox, mpt = read_gguf(gguf_path("gpt-neox")), read_gguf(gguf_path("mpt"))
    assert len(neox["tokens"]) == 50432 and len(neox["merges"]) == 50009
    for key in ("tokens", "merges", "token_type", "bos_token_id", "eos_token_id"):
        assert neox[key] == mpt[key], key
    assert "pre" not in neox and mpt["pre"] == "mpt"  # hence PRE_OVERRIDES


@pytest.mark.parametrize("name,length,bos,eos,adds_bos", [
    ("falcon", 65024, 11, 11, False),
    ("gpt-neox", 50277, 0, 0, False),
    ("llama-bpe", 128256, 128000, 128001, True),
    ("gpt-2", 50257, 50256, 50256, False),
])
def test_specials_and_length(name, length, bos, eos, adds_bos):
    tok = tokenizer(name)
    assert len(tok) == length == LENGTHS[name]
    assert (tok.bos_token_id, tok.eos_token_id) == (bos, eos)
    ids = tok("Hello world")["input_ids"]
    assert (ids[0] == bos) is adds_bos
    assert ids[int(adds_bos):] == tok.encode("Hello world", add_special_tokens=False)
    # a special token written in the text is that token, as in Hugging Face tokenizers
    text = f"a{tok.eos_token}b"
    assert eos in tok.encode(text, add_special_tokens=False)


@pytest.mark.parametrize("name", ["falcon", "llama-bpe"])
def test_decode_round_trip(name):
    tok = tokenizer(name)
    for text, ids in golden_cases(name):
        assert tok.decode(ids) == text, repr(text)  # byte-level BPE loses nothing


def test_user_defined_tokens_match_before_pre_tokenization():
    """gpt-neox's runs of spaces are added tokens (ids 50254..50276), matched whole."""
    tok = tokenizer("gpt-neox")
    assert tok.encode(" " * 24 + "x", add_special_tokens=False)[0] == 50254


def test_model_config_tokenizer_field(tmp_path):
    assert tokenizer_for_model(ModelConfig(name="m", arch="ssm", family="falcon_mamba")) is None
    ModelConfig(name="m", arch="ssm", family="falcon_mamba", tokenizer="falcon")  # 65024 fits 65024
    # too small a vocabulary is refused where the tokenizer is used, not when the config is composed
    # (runs on synthetic ids shrink model.vocab_size freely)
    ModelConfig(name="m", arch="ssm", family="falcon_mamba", tokenizer="falcon", vocab_size=512)
    with pytest.raises(ConfigError, match=r"^model\.vocab_size: 65024 .* model\.tokenizer 'llama-bpe'"):
        check_tokenizer_field("llama-bpe", 65024)
    check_tokenizer_field("llama-bpe", 128256)
    exact = ModelConfig(name="m", arch="transformer", family="llama", impl="transformers", tokenizer="gpt-2",
                        vocab_size=50257)
    assert len(tokenizer_for_model(exact)) == 50257
    exact.vocab_size = 50256  # changed after validation: loading checks again
    with pytest.raises(ConfigError, match=r"^model\.vocab_size: 50256 .* model\.tokenizer 'gpt-2'"):
        tokenizer_for_model(exact)
    with pytest.raises(ConfigError, match=r"^model\.tokenizer: 'nope'"):
        ModelConfig(name="m", arch="ssm", family="falcon_mamba", tokenizer="nope")
    # a local directory (a checkpoint's tokenizer) is read offline
    tokenizer("gpt-2").save_pretrained(tmp_path)
    check_tokenizer_field(str(tmp_path))
    assert load_tokenizer(str(tmp_path)).encode("Hello world") == tokenizer("gpt-2").encode("Hello world")


def test_model_yamls_fit_their_tokenizer():
    """Every configs/model/*.yaml naming a tokenizer has an embedding row for each of its ids."""
    seen = 0
    for path in sorted((REPO / "configs" / "model").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if cfg.get("tokenizer") is None:
            continue
        seen += 1
        vocab = cfg.get("vocab_size", ModelConfig.vocab_size)
        assert vocab >= len(tokenizer(cfg["tokenizer"])), path.name
    assert seen >= 2


def test_prepare_is_idempotent():
    first = prepare(REPO / "data")
    stamps = [(d / "tokenizer.json").stat().st_mtime_ns for d in first]
    again = prepare(REPO / "data")
    assert again == first and [(d / "tokenizer.json").stat().st_mtime_ns for d in again] == stamps
    assert [d.name for d in first] == list(NAMES)


def test_prompt_ids_real_text(tmp_path):
    src = REPO / "data" / "mmlu_pro" / "test.jsonl"
    if not src.is_file():
        src = tmp_path / "t.txt"
        src.write_text("The quick brown fox jumps over the lazy dog. " * 3)
    for name in ("falcon", "llama-bpe"):
        tok = tokenizer(name)
        ids = prompt_ids(tok, 700, src)
        assert len(ids) == 700
        assert (ids[0] == tok.bos_token_id) is (name == "llama-bpe")  # BOS when the tokenizer adds it
        words = tok.decode(ids, skip_special_tokens=True).split()
        assert len(words) > 100 and sum(w.isalpha() for w in words) > len(words) / 2  # real words
    with pytest.raises(ValueError, match="n_tokens"):
        prompt_ids(tok, 0, src)
