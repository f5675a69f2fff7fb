"""Real tokenizers: llama.cpp's vocab-only GGUF files converted to Hugging Face tokenizers.

data/tokenizers/ holds the GGUF files (tokens, merges, token types, special ids) with llama.cpp's
golden tokenizations; this module turns each into a `tokenizer.json` for the `tokenizers` library
and a transformers tokenizer, offline. Every shipped vocabulary is a byte-level BPE:

| name        | tokens  | whose                                   | adds BOS |
| ----------- | ------- | --------------------------------------- | -------- |
| `falcon`    | 65,024  | Falcon / Falcon Mamba 7B                | no       |
| `gpt-neox`  | 50,277  | GPT-NeoX-20B, Mamba-130m..2.8B          | no       |
| `mpt`       | 50,277  | MPT (the GPT-NeoX-20B tokenizer again)  | no       |
| `llama-bpe` | 128,256 | Llama 3                                 | yes      |
| `gpt-2`     | 50,257  | GPT-2                                   | no       |

The conversion follows llama.cpp (src/llama-vocab.cpp): the pre-tokenizer is a sequence of regex
splits chosen by `tokenizer.ggml.pre`, then byte-level encoding; control tokens become special
added tokens and user-defined ones plain added tokens (matched before pre-tokenization, as in
llama.cpp and `tokenizers`); BOS is prepended when `tokenizer.ggml.add_bos_token` says so, or by
llama.cpp's default for the pre-tokenizer when the file does not say. The `[PAD<i>]` entries that
llama.cpp's converter appends to fill an embedding matrix are not tokens and are dropped.

Use:

    python -m bench.tokenizers                  # writes data/tokenizers/<name>/ for every name
    tok = load_tokenizer("falcon")              # a transformers PreTrainedTokenizerFast
    tok = load_tokenizer("/path/to/checkpoint")  # a local tokenizer directory, offline
    tok = tokenizer_for_model(cfg.model)        # model.tokenizer, checked against model.vocab_size

`tokenizer_for_model(cfg.model)` is what a scenario calls to tokenize real text for a model (the
v1/v2 leaderboard suites; suite=local keeps its own 512-token tokenizer,
bench/evals/tasks/tokenizer.json): None when `model.tokenizer` is null. Reading a GGUF file is slow
(gguf's reader: 2-15 s a file on a busy 2-core machine), so a conversion is done once and kept in
data/tokenizers/<name>/, redone only when the GGUF bytes or CONVERTER_VERSION change; loading a
converted tokenizer takes well under a second.

`prompt_ids(tokenizer, n_tokens, text_path)` gives a prompt of exactly n_tokens ids of real text,
e.g. `prompt_ids(tok, cfg.scenario.prompt_len, "data/mmlu_pro/test.jsonl")` (12,032 questions,
millions of tokens: a 130k-token prompt never repeats).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

from bench.config import ConfigError

log = logging.getLogger("bench")
CONVERTER_VERSION = 2  # bump when convert() changes: converted directories are redone
REPO = Path(__file__).resolve().parents[1]
GGUF_DIR = REPO / "data" / "tokenizers"  # the shipped GGUF files and golden tokenizations
# name -> len(tokenizer) (tests/test_tokenizers.py checks it): a config that will tokenize real text
# can be checked against model.vocab_size before anything loads (check_tokenizer_field)
LENGTHS = {"falcon": 65024, "gpt-neox": 50277, "mpt": 50277, "llama-bpe": 128256, "gpt-2": 50257}
NAMES = tuple(LENGTHS)
# gpt-neox's GGUF predates `tokenizer.ggml.pre`; its Hugging Face tokenizer (GPT-NeoX-20B, which
# MPT reuses) pre-tokenizes with GPT-2's regex, as mpt's does (llama.cpp's fallback would not).
PRE_OVERRIDES = {"gpt-neox": "mpt"}

# Hugging Face's own regexes (the golden ids were produced by Hugging Face tokenizers); llama.cpp
# spells out Llama 3's case-insensitive group for its own regex engine.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> (regex splits applied in turn, ignore_merges, llama.cpp's add_bos default)
PRE_TOKENIZERS = {
    "falcon": ([r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]"], False, False),
    "gpt-2": ([_GPT2], False, False),
    "mpt": ([_GPT2], False, False),
    "llama-bpe": ([_LLAMA3], True, True),
}
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4  # tokenizer.ggml.token_type values


def gguf_path(name: str) -> Path:
    return GGUF_DIR / f"ggml-vocab-{name}.gguf"


def read_gguf(path: str | Path) -> dict:
    """The tokenizer fields of a GGUF file: tokens, token_types, merges and the scalar keys."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file (the shipped ones are in {GGUF_DIR})")
    reader = gguf.GGUFReader(path)
    out: dict = {}
    for key, f in reader.fields.items():
        if not key.startswith("tokenizer.ggml."):
            continue
        short = key[len("tokenizer.ggml."):]
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            if f.types[-1] == gguf.GGUFValueType.STRING:
                out[short] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                out[short] = [int(f.parts[i][0]) for i in f.data]
        elif f.types[0] == gguf.GGUFValueType.STRING:
            out[short] = bytes(f.parts[f.data[0]]).decode("utf-8")
        else:
            out[short] = f.parts[f.data[0]][0].item()
    if out.get("model") != "gpt2":
        raise ValueError(f"{path}: tokenizer.ggml.model is {out.get('model')!r}; only byte-level BPE ('gpt2') "
                         "vocabularies are converted")
    return out


def convert(path: str | Path, pre: str | None = None):
    """A GGUF vocabulary -> (tokenizers.Tokenizer, the special-token settings for transformers).

    pre: the pre-tokenizer type when the file has no `tokenizer.ggml.pre` (or to override it)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    v = read_gguf(path)
    pre = pre or v.get("pre")
    if pre not in PRE_TOKENIZERS:
        raise ValueError(f"{path}: pre-tokenizer {pre!r} is not one of {list(PRE_TOKENIZERS)}")
    regexes, ignore_merges, add_bos_default = PRE_TOKENIZERS[pre]
    tokens, types = v["tokens"], v.get("token_type") or [TOKEN_NORMAL] * len(v["tokens"])
    n = len(tokens)
    while n and tokens[n - 1] == f"[PAD{n - 1}]":  # embedding padding, not a token
        n -= 1
    vocab = {tok: i for i, tok in enumerate(tokens[:n])}
    if len(vocab) != n:
        raise ValueError(f"{path}: duplicate token strings")
    merges = [tuple(m.split(" ")) for m in v["merges"]]
    if any(len(m) != 2 for m in merges):
        raise ValueError(f"{path}: a merge is not two space-separated tokens")

    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i in range(n) if types[i] == TOKEN_CONTROL])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=True)
                    for i in range(n) if types[i] == TOKEN_USER_DEFINED])
    assert tok.get_vocab_size(with_added_tokens=True) == n, "an added token got a new id"

    def special(key):
        i = v.get(f"{key}_token_id")
        return None if i is None or i >= n else tokens[i]

    bos, eos = special("bos"), special("eos")
    add_bos = bool(v.get("add_bos_token", add_bos_default)) and bos is not None
    add_eos = bool(v.get("add_eos_token", False)) and eos is not None
    single = " ".join([f"{bos}:0"] * add_bos + ["$A:0"] + [f"{eos}:0"] * add_eos)
    pair = " ".join([single] + [f"{bos}:1"] * add_bos + ["$B:1"] + [f"{eos}:1"] * add_eos)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=single, pair=pair,
                                      special_tokens=[(t, vocab[t]) for t in {bos, eos} if t is not None]),
    ])
    # BOS/EOS insertion lives in the post-processor only: transformers 5 ignores add_bos_token in
    # tokenizer_config.json when a tokenizer.json is present.
    config = {"bos_token": bos, "eos_token": eos, "unk_token": special("unknown"),
              "pad_token": special("padding"),
              "clean_up_tokenization_spaces": False, "model_max_length": int(1e30)}
    return tok, {k: val for k, val in config.items() if val is not None}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # atomic: a reader never sees half a file


def convert_to_dir(name: str, out_dir: Path) -> Path:
    """data/tokenizers/<name>/ with tokenizer.json and tokenizer_config.json; kept when made from
    the same GGUF bytes by the same converter version."""
    src = gguf_path(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = out_dir / "tokenizer_config.json"
    stamp = {"source": src.name, "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
             "converter_version": CONVERTER_VERSION}
    if done.is_file() and (out_dir / "tokenizer.json").is_file() \
            and all(json.loads(done.read_text()).get(k) == val for k, val in stamp.items()):
        return out_dir
    log.info("converting %s into %s (seconds; once)", src.name, out_dir)
    tok, config = convert(src, PRE_OVERRIDES.get(name))
    _write(out_dir / "tokenizer.json", tok.to_str())
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **config, **stamp}
    _write(done, json.dumps(config, indent=2) + "\n")  # last: its presence marks a finished conversion
    return out_dir


def prepare(data_dir: Path) -> list[Path]:
    """Convert every shipped vocabulary into data_dir/tokenizers/<name>/ (idempotent)."""
    return [convert_to_dir(name, Path(data_dir) / "tokenizers" / name) for name in NAMES]


def _data_dir() -> Path:
    return Path(os.environ.get("SSM_BENCH_DATA_DIR") or REPO / "data")


def load_tokenizer(name_or_path: str, data_dir: Path | None = None):
    """A shipped tokenizer by name (converted on first use, then read from data/tokenizers/<name>/),
    or a local tokenizer directory (a checkpoint's), offline -> a transformers tokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name_or_path in NAMES:
        out = convert_to_dir(name_or_path, Path(data_dir or _data_dir()) / "tokenizers" / name_or_path)
        return PreTrainedTokenizerFast.from_pretrained(str(out), local_files_only=True)
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ConfigError(f"model.tokenizer: {name_or_path!r} is neither one of {list(NAMES)} "
                          "nor a local tokenizer directory")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def check_tokenizer_field(value: str | None, vocab_size: int | None = None) -> None:
    """model.tokenizer: null, a shipped name, or an existing directory. With vocab_size, a shipped
    tokenizer must also fit it (a directory is checked when loaded). Cheap: nothing is read.

    ModelConfig checks only the name: runs that never tokenize real text (generation on synthetic
    ids, memory searches) may shrink model.vocab_size below the named tokenizer's length. A scenario
    that tokenizes real text calls tokenizer_for_model, or this with vocab_size in its config check."""
    if value is None:
        return
    if value not in NAMES and not Path(value).expanduser().is_dir():
        raise ConfigError(f"model.tokenizer: {value!r} is neither one of {list(NAMES)} "
                          "nor a local tokenizer directory")
    if value in LENGTHS and vocab_size is not None:
        _check_fits(value, LENGTHS[value], vocab_size)


def _check_fits(name: str, length: int, vocab_size: int) -> None:
    if vocab_size < length:
        raise ConfigError(f"model.vocab_size: {vocab_size} is smaller than model.tokenizer {name!r}'s "
                          f"{length} tokens (every id needs an embedding row)")


def tokenizer_for_model(model_cfg, data_dir: Path | None = None):
    """The tokenizer of a ModelConfig (None when model.tokenizer is null). Every id it can emit
    must have a row in the model's embedding: model.vocab_size >= len(tokenizer)."""
    if getattr(model_cfg, "tokenizer", None) is None:
        return None
    tok = load_tokenizer(model_cfg.tokenizer, data_dir)
    _check_fits(model_cfg.tokenizer, len(tok), model_cfg.vocab_size)
    return tok


def prompt_ids(tokenizer, n_tokens: int, source_text_path: str | Path) -> list[int]:
    """Exactly n_tokens ids of real text: BOS first when the tokenizer adds one, then the file's
    text tokenized from its start (repeated from the start if it is too short), cut at n_tokens.

    source_text_path: a text file, or a .jsonl/.json data file whose string fields, in order,
    are the text (e.g. data/mmlu_pro/test.jsonl: questions, options, explanations)."""
    if n_tokens < 1:
        raise ValueError(f"n_tokens: must be >= 1, got {n_tokens}")
    path = Path(source_text_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file for the prompt")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":  # split on newlines only: JSON strings may hold U+2028 and the like
        text = "\n\n".join(_strings(json.loads(line) for line in text.split("\n") if line.strip()))
    elif path.suffix == ".json":
        text = "\n\n".join(_strings([json.loads(text)]))
    ids = tokenizer.encode("", add_special_tokens=True)  # BOS (or nothing), as the tokenizer adds it
    need = n_tokens - len(ids)
    # Tokenize a prefix that surely holds `need` tokens (plus a margin, so the cut word at the
    # prefix's end is never among them), not the whole file.
    chars = 8 * need + 256
    while True:
        body = tokenizer.encode(text[:chars], add_special_tokens=False)
        if len(body) >= need + 16 or chars >= len(text):
            break
        chars *= 2
    if not body:
        raise ValueError(f"{path}: no text to make a prompt from")
    while len(ids) < n_tokens:
        ids.extend(body[: n_tokens - len(ids)])
    return ids


def _strings(records) -> list[str]:
    out: list[str] = []

    def walk(x):
        if isinstance(x, str):
            if x.strip():
                out.append(x)
        elif isinstance(x, dict):
            for val in x.values():
                walk(val)
        elif isinstance(x, list):
            for val in x:
                walk(val)

    for r in records:
        walk(r)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.tokenizers", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=_data_dir(), help="writes <data-dir>/tokenizers/<name>/")
    args = p.parse_args(argv)
    for out in prepare(args.data_dir):
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
