"""The decode step of Mamba's causal depthwise conv, in plain PyTorch.

The conv state holds the last K inputs of each channel, oldest first. One decode step shifts
it left by one, appends the new input and takes a per-channel dot product with the K-tap
kernel: the same numbers as conv1d(padding=K-1) on the whole sequence, one position at a time.
The Triton twin is models.ops.triton_conv.conv_state_update_triton.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def conv_state_update(conv_state: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None = None,
                      silu: bool = True) -> Tensor:
    """One token. conv_state: (b, d, K), updated in place; x: (b, d); weight: (d, K); bias: (d,).

    Returns silu(<conv_state, weight> + bias): (b, d), computed in the inputs' dtype.
    """
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
    conv_state[:, :, -1] = x
    out = torch.linalg.vecdot(conv_state, weight)  # (b, d)
    if bias is not None:
        out = out + bias
    return F.silu(out) if silu else out
