"""Load a local Hugging Face format directory into MambaLM, offline.

A directory holds config.json and either model.safetensors or model.safetensors.index.json with
its shards. transformers' MambaForCausalLM and FalconMambaForCausalLM checkpoints load as they
are; original mamba_ssm checkpoints (`backbone.embedding`, head tied) are renamed on the way in.
The model is built on the meta device and takes the loaded tensors as its parameters, so a 7B
checkpoint is never allocated twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from models.mamba import MambaConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Old names -> ours (ours follow transformers' checkpoints).
RENAMES = {"backbone.embedding.weight": "backbone.embeddings.weight"}
# transformers' FalconMamba keeps dummy weights for its norms on B, C and dt; they carry nothing.
IGNORED_SUFFIXES = ("dt_layernorm.weight", "b_layernorm.weight", "c_layernorm.weight")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the file or tensor."""


def read_config(path: str | Path) -> MambaConfig:
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: no config.json; expected a Hugging Face format model directory")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file}: not valid JSON ({e})") from None
    try:
        return MambaConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{config_file}: {e}") from None


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


def load_pretrained(cls, path: str | Path, dtype=None, device=None):
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: model directory not found; give a local Hugging Face format directory")
    config = read_config(path)
    device = torch.device(device) if device is not None else torch.device("cpu")
    tensors = read_tensors(path, device="cpu" if device.type == "meta" else device)
    if dtype is None:  # keep the checkpoint's dtype
        dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    model = cls(config, device="meta", dtype=dtype)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight")
        tensors.pop("lm_head.weight", None)  # some checkpoints store the tied copy too
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    if missing:
        raise CheckpointError(f"{path}: missing tensor(s) {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensor(s) {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
    for key, shape in expected.items():
        if tensors[key].shape != shape:
            raise CheckpointError(f"{path}: tensor {key} has shape {tuple(tensors[key].shape)}, expected {tuple(shape)}")
    state = {k: v.to(device=device, dtype=dtype) for k, v in tensors.items()}
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.backbone.embeddings.weight
    return model
