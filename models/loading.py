"""Load a local Hugging Face format directory into MambaLM, offline.

A directory holds config.json and either model.safetensors or model.safetensors.index.json with
its shards. transformers' MambaForCausalLM and FalconMambaForCausalLM checkpoints and models/hf.py's
save_pretrained output load as they are; original mamba_ssm checkpoints (`backbone.embedding`,
head tied) are renamed on the way in. Loading is strict: every tensor present, none left over.
The model is built on the meta device and takes the loaded tensors as its parameters, so a 7B
checkpoint is never allocated twice.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from models.mamba import MODEL_TYPES, MambaConfig

# config.json's model_type for models/hf.py's wrapper (its save_pretrained output); the flavour,
# one of MODEL_TYPES, is in its `variant` field.
WRAPPER_MODEL_TYPE = "ssm_bench_mamba"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Old names -> ours (ours follow transformers' checkpoints).
RENAMES = {"backbone.embedding.weight": "backbone.embeddings.weight"}
# transformers' FalconMamba keeps dummy weights for its norms on B, C and dt; they carry nothing.
IGNORED_SUFFIXES = ("dt_layernorm.weight", "b_layernorm.weight", "c_layernorm.weight")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file or tensor."""


def model_dir(path: str | Path) -> Path:
    """The directory, checked first: a missing one is named as such (transformers would call the
    path a malformed hub repo id)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: model directory not found; give a local Hugging Face format directory")
    return path


def read_config_json(path: str | Path) -> dict:
    config_file = model_dir(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: no config.json; expected a Hugging Face format model directory")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file}: not valid JSON ({e})") from None


def read_config(path: str | Path) -> MambaConfig:
    raw = read_config_json(path)
    try:
        return config_from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{Path(path) / 'config.json'}: {e}") from None


def config_from_dict(config: dict) -> MambaConfig:
    """From a config.json: transformers' Mamba/FalconMamba format, the original mamba_ssm one,
    or models/hf.py's wrapper (WRAPPER_MODEL_TYPE, the same fields as MambaConfig's)."""
    config = dict(config)
    if config.get("model_type") == WRAPPER_MODEL_TYPE:
        config["model_type"] = config.get("variant", "mamba")
    if "d_model" in config:  # mamba_ssm's MambaConfig: d_model, n_layer, ssm_cfg, ...
        ssm = config.get("ssm_cfg") or {}
        vocab, multiple = config["vocab_size"], config.get("pad_vocab_size_multiple", 8)
        config = dict(
            model_type="mamba",
            hidden_size=config["d_model"],
            num_hidden_layers=config["n_layer"],
            vocab_size=vocab + (-vocab % multiple),
            state_size=ssm.get("d_state", 16),
            conv_kernel=ssm.get("d_conv", 4),
            intermediate_size=ssm.get("expand", 2) * config["d_model"],
            time_step_rank=ssm.get("dt_rank", "auto"),
            use_bias=ssm.get("bias", False),
            use_conv_bias=ssm.get("conv_bias", True),
            tie_word_embeddings=config.get("tie_embeddings", True),
            residual_in_fp32=config.get("residual_in_fp32", True),
        )
    model_type = config.get("model_type", "mamba")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"config.json has model_type {model_type!r}; expected one of {MODEL_TYPES}")
    if config.get("intermediate_size") is None and "expand" in config:
        config["intermediate_size"] = config["expand"] * config["hidden_size"]
    known = {f.name for f in fields(MambaConfig)}
    kwargs = {k: v for k, v in config.items() if k in known}
    if model_type == "mamba":
        kwargs.pop("mixer_rms_eps", None)
    return MambaConfig(**kwargs)


def tensor_mismatch_error(path, missing=(), unexpected=(), mismatched=()) -> CheckpointError | None:
    """One line naming the tensors that do not fit (the first few of each kind, and how many), or
    None. missing / unexpected: names; mismatched: (name, checkpoint shape, expected shape)."""
    mismatched = [f"{name} has shape {tuple(got)} (expected {tuple(want)})" for name, got, want in mismatched]
    parts = []
    for kind, names in (("missing", missing), ("unexpected", unexpected), ("mismatched", mismatched)):
        names = sorted(names)
        if names:
            parts.append(f"{len(names)} {kind} tensor(s): {', '.join(names[:3])}" + (" ..." if len(names) > 3 else ""))
    return CheckpointError(f"{path}: " + "; ".join(parts)) if parts else None


def checkpoint_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE]
    index = path / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: not a safetensors index ({e!r})") from None
        files = [path / name for name in sorted(set(weight_map.values()))]
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"{file}: shard named in {INDEX_FILE} is missing")
        return files
    raise FileNotFoundError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE}; provide the weights in safetensors format")


def read_tensors(path: str | Path, device="cpu") -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint, renamed to our names."""
    tensors = {}
    for file in checkpoint_files(path):
        try:
            with safe_open(file, framework="pt", device=str(device)) as f:
                for key in f.keys():
                    tensors[RENAMES.get(key, key)] = f.get_tensor(key)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{file}: corrupt or unreadable safetensors file ({e})") from None
    return {k: v for k, v in tensors.items() if not k.endswith(IGNORED_SUFFIXES)}


@torch.inference_mode(False)  # ordinary parameters, even when loaded for inference
def load_pretrained(cls, path: str | Path, dtype=None, device=None):
    config = read_config(path)
    path = Path(path)
    device = torch.device(device) if device is not None else torch.device("cpu")
    tensors = read_tensors(path, device="cpu" if device.type == "meta" else device)
    if dtype is None:  # keep the checkpoint's dtype
        dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    model = cls(config, device="meta", dtype=dtype)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
        tensors.pop("lm_head.weight", None)  # some checkpoints store the tied copy too
    mismatched = [(key, tensors[key].shape, shape) for key, shape in expected.items()
                  if key in tensors and tensors[key].shape != shape]
    error = tensor_mismatch_error(path, expected.keys() - tensors.keys(), tensors.keys() - expected.keys(), mismatched)
    if error:
        raise error
    state = {k: v.to(device=device, dtype=dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.backbone.embeddings.weight
    return model
