"""
DeiT-Ti and DeiT-S (Touvron et al., 2021: a ViT trained data-efficiently), the Transformer side
of the Vision Mamba comparison, from the field's libraries:

- impl `timm`: timm's `deit_tiny_patch16_224` / `deit_small_patch16_224` (shaped by the same
  architecture fields), with `dynamic_img_size=True` (position embeddings resampled to any grid)
  and each attention block's `fused_attn` switch (SDPA or the explicit softmax(QK^T)V). timm
  imports torchvision unconditionally, so it needs a torchvision that loads beside this torch:
  .venv-timm (`make timm-env`: torch 2.14.1, torchvision 0.29.1, timm 1.0.31).
- impl `transformers`: transformers' ViTForImageClassification with the same architecture (DeiT
  without the distillation token is a ViT: patch 16, class token first, pre-norm blocks with
  LayerNorm eps 1e-6, GELU MLP, qkv bias, final LayerNorm, linear head on the class token), with
  `interpolate_pos_encoding=True` and `attn_implementation` "sdpa" or "eager".

Attention kinds (ATTENTIONS): "sdpa" is torch's scaled_dot_product_attention (fused: flash or
memory-efficient kernels, no (N, N) score matrix kept), "eager" builds the (heads, N, N) scores
and their softmax, so its memory grows with the square of the tokens.

Both take images (b, 3, H, W), H and W multiples of 16, and return logits (b, num_classes). With the
same weights they give the same logits at 224 pixels (tests/test_deit_timm.py, `make test-timm`).
At other sizes they resample the position embeddings differently: both bicubic, but timm with
antialias=True (PIL's cubic kernel) and transformers without (as DeiT's own fine-tuning code), so
their logits differ slightly there (measured on random weights: 1.4e-3 of logits up to 3 at 384^2);
with timm's resampling set to antialias=False they agree again.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
from torch import Tensor

ATTENTIONS = ("sdpa", "eager")
DEIT_IMPLS = ("timm", "transformers")


class DeiT(nn.Module):
    """One DeiT, whichever library built it: forward(images) -> logits at any image size.
    `config` answers the harness's description fields (model_type, hidden_size, num_hidden_layers)."""

    def __init__(self, model: nn.Module, impl: str, attention: str, hidden_size: int, num_hidden_layers: int):
        super().__init__()
        self.model, self.impl, self.attention = model, impl, attention
        self.config = type("DeiTDescription", (), {"model_type": "deit", "hidden_size": hidden_size,
                                                   "num_hidden_layers": num_hidden_layers})()

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        images = images.to(next(self.model.parameters()).dtype)
        if self.impl == "timm":
            return self.model(images)
        return self.model(pixel_values=images, interpolate_pos_encoding=True).logits


def build_deit(architecture: dict, impl: str, attention: str, device=None, dtype=None,
               init_weights: bool = True) -> DeiT:
    """architecture: ViT hyperparameters as transformers names them (hidden_size,
    num_hidden_layers, num_attention_heads, intermediate_size, image_size, patch_size,
    layer_norm_eps, num_labels) and `timm_model`, timm's name for the same model.
    init_weights=False leaves the weights uninitialised (fake tensors: truncated-normal init
    reads values, which they do not have)."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    arch = dict(architecture)
    timm_name = arch.pop("timm_model", None)
    if impl == "timm":
        model = _timm_deit(timm_name, arch, attention, device, dtype, init_weights)
    elif impl == "transformers":
        with torch.device(device if device is not None else torch.get_default_device()):
            model = _transformers_deit(arch, attention, dtype, init_weights)
    else:
        raise ValueError(f"DeiT impl must be one of {DEIT_IMPLS}, got {impl!r}")
    model.eval()
    return DeiT(model, impl, attention, arch["hidden_size"], arch["num_hidden_layers"])


def _transformers_deit(arch: dict, attention: str, dtype=None, init_weights: bool = True) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification
    from transformers.initialization import no_init_weights

    config = ViTConfig(qkv_bias=True, hidden_act="gelu", **arch)
    config._attn_implementation = attention  # "sdpa" | "eager": transformers' own switch
    if init_weights:
        return ViTForImageClassification._from_config(config, dtype=dtype)
    with no_init_weights():
        return ViTForImageClassification._from_config(config, dtype=dtype)


def _timm_deit(name: str | None, arch: dict, attention: str, device=None, dtype=None,
               init_weights: bool = True) -> nn.Module:
    if not name:
        raise ValueError("model.architecture.timm_model: needed with model.impl=timm (e.g. deit_tiny_patch16_224)")
    try:
        import timm
    except (ImportError, RuntimeError) as e:  # a torchvision that does not load raises RuntimeError
        raise ImportError(f"model.impl=timm: timm does not import here ({type(e).__name__}: {e}); timm needs "
                          f"a torchvision built for this torch. Use model.impl=transformers (same architecture)") from e
    # The model config's architecture overrides timm's defaults for `name` (the same numbers for the
    # shipped configs), so that both impls build what model.architecture describes.
    hidden = arch["hidden_size"]
    shape = dict(img_size=arch.get("image_size", 224), patch_size=arch.get("patch_size", 16), embed_dim=hidden,
                 depth=arch["num_hidden_layers"], num_heads=arch["num_attention_heads"],
                 mlp_ratio=arch.get("intermediate_size", 4 * hidden) / hidden, num_classes=arch.get("num_labels", 1000),
                 norm_layer=functools.partial(nn.LayerNorm, eps=arch.get("layer_norm_eps", 1e-6)))
    if init_weights:
        model = timm.create_model(name, pretrained=False, dynamic_img_size=True, **shape).to(device=device, dtype=dtype)
    else:
        # timm's constructor reads values (its drop-path rates: linspace(...).item()), which fake
        # tensors do not have: built on the meta device outside the fake mode, then given empty
        # storage where build_deit is called (fake tensors inside a FakeTensorMode), at the device
        # and dtype asked for (Module.to cannot swap a fake parameter that a tracker holds a weakref to).
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        with unset_fake_temporarily(), torch.device("meta"):
            model = timm.create_model(name, pretrained=False, dynamic_img_size=True, **shape)
        _empty_storage(model, device, dtype)
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = attention == "sdpa"
    return model


def _empty_storage(model: nn.Module, device=None, dtype=None) -> None:
    """Give a meta-device model's parameters and buffers new uninitialised tensors on `device`
    (floating ones in `dtype`), made where this is called (to_empty's empty_like would hand the
    meta tensors to a FakeTensorMode)."""
    device = device if device is not None else torch.get_default_device()

    def empty(t: Tensor) -> Tensor:
        return torch.empty(t.shape, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype,
                           device=device)

    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = nn.Parameter(empty(p), requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = empty(b)
