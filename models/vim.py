"""
Vision Mamba (Vim) in plain PyTorch, built on the in-repo Mamba mixer and its scans.

Reference: L. Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with
Bidirectional State Space Model", ICML 2024, arXiv 2401.09417 (section 3.3, algorithm 1),
and the authors' code (hustvl/Vim: models_mamba.py, mamba_simple.py's bimamba "v2").

The file reads top to bottom: config, one direction of the SSM, the bidirectional mixer, the
block, the model.

- Patch embedding: a 16x16 convolution with stride 16 (non-overlapping patches), flattened.
- A class token inserted in the middle of the patch sequence (position M // 2 of M patches),
  then absolute position embeddings (one per patch and one for the class token). At another
  resolution than `img_size` the patch embeddings are resampled bicubically to the new grid, as
  timm and transformers do for ViT/DeiT (`dynamic_img_size`, `interpolate_pos_encoding`).
- `depth` pre-norm residual blocks: RMSNorm, then the bidirectional mixer; the residual stream
  is kept in float32 (residual_in_fp32, as in Vim's configs).
- Bidirectional mixer ("v2"): one in_proj gives x and the gate z; the forward direction runs
  conv1d -> x_proj -> dt_proj -> selective scan (A, D) on the sequence, the backward direction
  runs its own conv1d_b, x_proj_b, dt_proj_b, A_b, D_b on the flipped sequence (x and z both
  flipped) and its output is flipped back; the two gated outputs are summed, halved
  (`if_divide_out=True` in Vim's configs) and go through the one shared out_proj.
- Final RMSNorm, the class token's features, a linear head.

Parameter names: the forward direction's are the Mamba mixer's (in_proj, conv1d, x_proj, dt_proj,
A_log, D, out_proj); the backward direction's live under `mixer.backward_ssm` (conv1d, x_proj,
dt_proj, A_log, D there are Vim's conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b).

Inference only (no drop path, no autograd): the scans update in place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.mamba import MambaBlock, MambaConfig, MambaMixer, RMSNorm, _materialize
from models.ops import scan_backend
from models.ops.scan_backend import Kernels

@dataclass
class VimConfig:
    """Hyperparameters, named as in Vim's VisionMamba. Defaults: Vim-Ti."""

    img_size: int = 224  # the resolution the position embeddings are made for
    patch_size: int = 16  # also the stride (Vim's released models: non-overlapping patches)
    in_chans: int = 3
    embed_dim: int = 192
    depth: int = 24
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int | str = "auto"  # ceil(embed_dim / 16)
    num_classes: int = 1000
    norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    divide_out: bool = True  # the two directions' sum is halved before out_proj (if_divide_out)
    initializer_range: float = 0.02
    scan_chunk_size: int = 64

    def __post_init__(self):
        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "d_state", "expand", "d_conv",
                     "num_classes", "scan_chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")

    # The field names every model description in the harness reads.
    model_type = "vim"

    @property
    def hidden_size(self) -> int:
        return self.embed_dim

    @property
    def num_hidden_layers(self) -> int:
        return self.depth

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    def mamba_config(self) -> MambaConfig:
        """The mixer's config (one direction): a plain Mamba-1 mixer of width embed_dim."""
        return MambaConfig(model_type="mamba", vocab_size=1, hidden_size=self.embed_dim, num_hidden_layers=self.depth,
                           state_size=self.d_state, conv_kernel=self.d_conv,
                           intermediate_size=self.expand * self.embed_dim, time_step_rank=self.dt_rank,
                           layer_norm_epsilon=self.norm_eps, residual_in_fp32=self.residual_in_fp32,
                           initializer_range=self.initializer_range, scan_chunk_size=self.scan_chunk_size)

    def to_dict(self) -> dict:
        return asdict(self)


def num_params(config: VimConfig) -> int:
    """Parameter count from the config alone."""
    m = config.mamba_config()
    H, D, N, R, K = m.hidden_size, m.intermediate_size, m.state_size, m.time_step_rank, m.conv_kernel
    direction = D * K + D + D * (R + 2 * N) + R * D + D + D * N + D  # conv1d, x_proj, dt_proj, A_log, D
    block = H * 2 * D + 2 * direction + D * H + H  # in_proj, two directions, out_proj, norm
    patch = config.in_chans * config.patch_size ** 2 * H + H
    return (config.depth * block + patch + (config.num_patches + 1) * H + H  # pos_embed, cls_token
            + H + H * config.num_classes + config.num_classes)  # norm_f, head


def directional_ssm(mixer: MambaMixer, x: Tensor, z: Tensor) -> Tensor:
    """One direction of the mixer between in_proj and out_proj, with `mixer`'s conv1d, x_proj,
    dt_proj, A and D: causal conv + SiLU, dt/B/C, the selective scan gated by SiLU(z).
    x, z: (b, l, D) -> y (b, l, D). The same steps as MambaMixer.forward (tests check they agree)."""
    x = mixer._conv(x.transpose(1, 2), None).transpose(1, 2)
    dt, B, C = mixer._dt_B_C(x)
    y, _ = scan_backend.selective_scan(x, dt, mixer._A(), B, C, mixer.D, z, chunk_size=mixer.scan_chunk_size,
                                       kernels=mixer.kernels)
    return y


class BiMambaMixer(MambaMixer):
    """Vim's bidirectional mixer ("v2"): the inherited parameters are the forward direction (and
    the shared in_proj and out_proj); `backward_ssm` holds the backward direction's own."""

    def __init__(self, config: MambaConfig, layer_idx: int, divide_out: bool = True, device=None, dtype=None,
                 kernels: Kernels | None = None):
        super().__init__(config, layer_idx, device=device, dtype=dtype, kernels=kernels)
        self.divide_out = divide_out
        backward = MambaMixer(config, layer_idx, device=device, dtype=dtype, kernels=self.kernels)
        del backward.in_proj, backward.out_proj  # shared with the forward direction
        self.backward_ssm = backward

    def forward(self, hidden_states: Tensor, state=None) -> Tensor:
        """hidden_states: (b, l, H) -> (b, l, H). Both directions see the whole sequence, so there
        is no incremental (chunked or per-token) form."""
        if state is not None:
            raise ValueError("the bidirectional mixer has no incremental state: pass the whole sequence")
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # (b, l, D) each
        y = directional_ssm(self, x, z)
        y = y + directional_ssm(self.backward_ssm, x.flip(1), z.flip(1)).flip(1)
        return self.out_proj(y / 2 if self.divide_out else y)

    def step(self, hidden_states, state):
        raise NotImplementedError("the bidirectional mixer has no per-token step")


class VimBlock(MambaBlock):
    """Pre-norm residual block, residual + mixer(norm(residual)), with the bidirectional mixer."""

    def __init__(self, config: MambaConfig, layer_idx: int, divide_out: bool = True, device=None, dtype=None,
                 kernels: Kernels | None = None):
        super().__init__(config, layer_idx, device=device, dtype=dtype, kernels=kernels)
        self.mixer = BiMambaMixer(config, layer_idx, divide_out, device=device, dtype=dtype, kernels=self.kernels)
        self.kernels = self.mixer.kernels


class VisionMamba(nn.Module):
    """Images (b, C, H, W) -> class logits (b, num_classes). H and W: multiples of patch_size.

    kernels: which fast scan paths every mixer may take (models.ops.scan_backend.Kernels; default
    all), and the record of the paths taken, shared by every layer as in MambaLM:
    `Kernels(cpu=False)` sends the scans to the PyTorch code, `model.kernels.used` says what ran."""

    def __init__(self, config: VimConfig, device=None, dtype=None, init_weights: bool = True,
                 kernels: Kernels | None = None):
        super().__init__()
        self.config = config
        self.kernels = Kernels() if kernels is None else kernels
        m, H, P = config.mamba_config(), config.embed_dim, config.patch_size
        # Built on the meta device, then allocated once (as MambaLM): works under FakeTensorMode.
        with torch.device("meta"):
            self.patch_embed = nn.Conv2d(config.in_chans, H, kernel_size=P, stride=P, dtype=dtype)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, H, dtype=dtype))
            self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, H, dtype=dtype))
            self.layers = nn.ModuleList(VimBlock(m, i, config.divide_out, dtype=dtype, kernels=self.kernels)
                                        for i in range(config.depth))
            self.norm_f = RMSNorm(H, config.norm_eps, dtype=dtype)
            self.head = nn.Linear(H, config.num_classes, dtype=dtype)
        device = torch.device(device) if device is not None else torch.get_default_device()
        if device.type != "meta":
            with torch.inference_mode(False):
                _materialize(self, device)
                if init_weights:
                    self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None):
        """Random init in the spirit of Vim's (truncated-normal weights, S4D-real A, dt log-uniform
        in [1e-3, 1e-1]): what matters here is a model that computes finite, typical values."""
        cfg, m = self.config, self.config.mamba_config()
        generator = None if seed is None else torch.Generator(device=self.head.weight.device).manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("A_log"):  # A[:, n] = -(n + 1)
                p.copy_(torch.log(torch.arange(1, p.shape[1] + 1, dtype=torch.float32)).expand_as(p))
            elif name.endswith(".D") or "norm" in name:
                p.fill_(1.0)
            elif name.endswith("dt_proj.bias"):  # softplus(bias) log-uniform in [dt_min, dt_max]
                dt = torch.rand(p.shape, generator=generator, device=p.device, dtype=torch.float32)
                dt = torch.exp(dt * (math.log(m.time_step_max) - math.log(m.time_step_min))
                               + math.log(m.time_step_min)).clamp(min=m.time_step_floor)
                p.copy_(dt + torch.log(-torch.expm1(-dt)))
            elif name.endswith("bias"):
                p.zero_()
            elif name.endswith("dt_proj.weight"):
                p.uniform_(-m.time_step_rank ** -0.5, m.time_step_rank ** -0.5, generator=generator)
            else:
                p.normal_(0.0, cfg.initializer_range, generator=generator).clamp_(-2 * cfg.initializer_range,
                                                                                   2 * cfg.initializer_range)

    def num_params(self) -> int:
        return num_params(self.config)

    def position_embeddings(self, grid_h: int, grid_w: int) -> Tensor:
        """(1, grid_h * grid_w + 1, H): the patches' embeddings resampled to the grid (bicubic,
        when it differs from the one they were made for), the class token's in the middle."""
        side, mid = self.config.img_size // self.config.patch_size, self.config.num_patches // 2
        pos = self.pos_embed
        if (grid_h, grid_w) == (side, side):
            return pos
        patches = torch.cat([pos[:, :mid], pos[:, mid + 1:]], dim=1)  # (1, side*side, H)
        patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        patches = patches.to(pos.dtype).flatten(2).transpose(1, 2)  # (1, grid_h*grid_w, H)
        new_mid = grid_h * grid_w // 2
        return torch.cat([patches[:, :new_mid], pos[:, mid:mid + 1], patches[:, new_mid:]], dim=1)

    def embed(self, images: Tensor) -> tuple[Tensor, int]:
        """images (b, C, H, W) -> tokens (b, M + 1, H) with the class token at index M // 2, and that index."""
        x = self.patch_embed(images.to(self.patch_embed.weight.dtype))  # (b, H, gh, gw)
        bsz, _, grid_h, grid_w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (b, M, H)
        mid = grid_h * grid_w // 2
        x = torch.cat([x[:, :mid], self.cls_token.expand(bsz, -1, -1), x[:, mid:]], dim=1)
        return x + self.position_embeddings(grid_h, grid_w), mid

    @torch.no_grad()
    def forward_features(self, images: Tensor) -> Tensor:
        """images (b, C, H, W) -> the class token's final features (b, embed_dim)."""
        hidden, mid = self.embed(images)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.norm_f(hidden.to(self.norm_f.weight.dtype))[:, mid]

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.forward_features(images))


# The paper's models (table 1): Vim-Ti 7M and Vim-S 26M parameters.
VIM_CONFIGS = {"vim_ti": dict(embed_dim=192, depth=24), "vim_s": dict(embed_dim=384, depth=24)}
