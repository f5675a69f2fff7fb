"""The probes' models: the in-repo Mamba and a transformers Llama / Mistral, matched in size.

The model YAML (configs/model/probe_*.yaml) names the family and the shape that does not depend
on the run (layers, state size, head size, RoPE); the probe scenario gives the width (d_model) and
the task's vocabulary. A Transformer's MLP width, unless the YAML sets it, is solved so that its
parameter count matches the in-repo Mamba of the same width, layers and vocabulary (the issue's
matched sizes, within 10%; tests/test_probes.py checks every width the sweep uses).

Training: the in-repo Mamba is an inference model (its scan runs without autograd and updates in
place), so `training_logits` runs the same arithmetic over the same parameters with a
differentiable sequential scan; tests check it agrees with MambaLM.forward. The accuracy is
always measured by the model's own forward (`eval_logits`): for the Mamba, MambaLM.forward.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.config import ConfigError
from models.mamba import MambaConfig, MambaLM, num_params, rms_normalize

SCENARIO_SET = ("hidden_size", "vocab_size")  # the probe's to set, not the YAML's


def architecture(model_cfg, d_model: int, vocab: int, max_len: int) -> dict:
    """The full architecture dict for this width and vocabulary (the YAML's values win)."""
    given = dict(model_cfg.architecture)
    for name in SCENARIO_SET:
        if name in given:
            raise ConfigError(f"model.architecture.{name}: the probe scenario sets it (scenario.d_model, the task's "
                              "vocabulary); remove it from the model config")
    if model_cfg.family in ("mamba", "falcon_mamba"):
        return {**given, "hidden_size": d_model}
    head_dim = given.get("head_dim", 16)
    derived = {"hidden_size": d_model, "head_dim": head_dim, "num_attention_heads": d_model // head_dim,
               "num_key_value_heads": d_model // head_dim, "max_position_embeddings": max_len}
    layers = given.get("num_hidden_layers", 2)
    if "intermediate_size" not in given:
        derived["intermediate_size"] = matched_mlp_width(d_model, layers, vocab, given.get("tie_word_embeddings", True))
    return {**derived, **given}


def mamba_params(d_model: int, layers: int, vocab: int, tied: bool = True) -> int:
    """The in-repo Mamba's parameter count at its default shape (expand 2, state 16)."""
    return num_params(MambaConfig(hidden_size=d_model, num_hidden_layers=layers, vocab_size=vocab,
                                  tie_word_embeddings=tied))


def llama_params(d_model: int, layers: int, vocab: int, mlp: int, tied: bool = True) -> int:
    """LlamaForCausalLM's count, multi-head attention without biases: q, k, v, o; gate, up, down; two norms."""
    per_layer = 4 * d_model * d_model + 3 * d_model * mlp + 2 * d_model
    return layers * per_layer + vocab * d_model * (1 if tied else 2) + d_model


def matched_mlp_width(d_model: int, layers: int, vocab: int, tied: bool = True) -> int:
    """The MLP width (a multiple of 8) that brings the Transformer closest to the Mamba's size."""
    target = mamba_params(d_model, layers, vocab, tied)
    per_unit = 3 * d_model * layers
    base = llama_params(d_model, layers, vocab, 0, tied)
    return max(8, 8 * round((target - base) / per_unit / 8))


def init_for_training(model) -> None:
    """The in-repo Mamba's random init is for speed and memory runs (std 0.02 everywhere, so the
    SSM's inputs and gradients start ~1e-12, below AdamW's eps, and its mixers never train). Before
    training it gets mamba_ssm's init instead (Mamba.__init__ and _init_weights): PyTorch's default
    for in_proj, x_proj and conv1d, out_proj scaled by 1/sqrt(layers); embeddings, dt_proj, A and D
    keep ours, which are mamba_ssm's. transformers models keep their own init (that of a model
    trained from scratch)."""
    if not isinstance(model, MambaLM):
        return
    with torch.no_grad():
        for block in model.backbone.layers:
            mixer = block.mixer
            for layer in (mixer.in_proj, mixer.x_proj, mixer.conv1d, mixer.out_proj):
                layer.reset_parameters()
            mixer.out_proj.weight /= math.sqrt(model.config.num_hidden_layers)
            if mixer.out_proj.bias is not None:
                mixer.out_proj.bias.zero_()
            if mixer.in_proj.bias is not None:
                mixer.in_proj.bias.zero_()


# ----------------------------------------------------------------------------- forward passes

def eval_logits(model, input_ids: Tensor) -> Tensor:
    """The model's own forward: MambaLM.forward, or the transformers model's."""
    with torch.no_grad():
        if isinstance(model, MambaLM):
            return model(input_ids)
        return model(input_ids).logits


def training_logits(model, input_ids: Tensor) -> Tensor:
    """Differentiable logits (b, l, V)."""
    if isinstance(model, MambaLM):
        return _mamba_training_forward(model, input_ids)
    return model(input_ids).logits


def _mamba_training_forward(model: MambaLM, input_ids: Tensor) -> Tensor:
    """MambaLM.forward written without in-place updates (models/mamba.py, MambaBlock and MambaMixer)."""
    cfg = model.config
    hidden = model.backbone.embeddings(input_ids)
    for block in model.backbone.layers:
        mixer = block.mixer
        x, z = mixer.in_proj(block.norm(hidden.to(block.norm.weight.dtype))).chunk(2, dim=-1)
        x = F.silu(mixer.conv1d(x.transpose(1, 2))[..., :x.shape[1]]).transpose(1, 2)
        dt, B, C = torch.split(mixer.x_proj(x), [mixer.dt_rank, mixer.d_state, mixer.d_state], dim=-1)
        if mixer.mixer_rms_eps is not None:
            dt, B, C = (rms_normalize(t, mixer.mixer_rms_eps) for t in (dt, B, C))
        dt = F.softplus(mixer.dt_proj(dt).float())
        y = _scan(x.float(), dt, -torch.exp(mixer.A_log.float()), B.float(), C.float())
        y = (y + x.float() * mixer.D.float()) * F.silu(z.float())
        update = mixer.out_proj(y.to(x.dtype))
        hidden = (hidden.float() if cfg.residual_in_fp32 else hidden) + update
    return model.lm_head(model.backbone.norm_f(hidden.to(model.lm_head.weight.dtype)))


def _scan(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """y_t = <h_t, C_t>, h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, h_{-1} = 0 (models/ops/selective_scan.py's
    recurrence). u, dt: (b, l, d); A: (d, n); B, C: (b, l, n). Differentiable."""
    decay = torch.exp(dt[..., None] * A)  # (b, l, d, n)
    inputs = (dt * u)[..., None] * B[:, :, None, :]  # (b, l, d, n)
    return LinearScan.apply(decay, inputs, C)


class LinearScan(torch.autograd.Function):
    """y_t = <h_t, C_t> with h_t = decay_t * h_{t-1} + inputs_t: the recurrence runs in place, one
    fused multiply-add per token each way, with a hand-written backward. (Written with autograd,
    each token's ops are graph nodes of their own, and the step took about twice as long.)

    Backward, with g_t = dL/dh_t: g_t = C_t dy_t + decay_{t+1} g_{t+1} (a reverse scan);
    dL/dinputs_t = g_t; dL/ddecay_t = g_t h_{t-1}; dL/dC_t = sum over d of h_t dy_t."""

    @staticmethod
    def forward(ctx, decay: Tensor, inputs: Tensor, C: Tensor) -> Tensor:
        states = inputs.clone()
        steps, decays = states.unbind(1), decay.unbind(1)
        for t in range(1, len(steps)):
            steps[t].addcmul_(decays[t], steps[t - 1])
        ctx.save_for_backward(decay, states, C)
        return torch.matmul(states, C[..., None]).squeeze(-1)  # (b, l, d)

    @staticmethod
    def backward(ctx, dy: Tensor):
        decay, states, C = ctx.saved_tensors
        grad = dy[..., None] * C[:, :, None, :]  # (b, l, d, n): C_t dy_t, then the reverse scan
        steps, decays = grad.unbind(1), decay.unbind(1)
        for t in range(len(steps) - 2, -1, -1):
            steps[t].addcmul_(decays[t + 1], steps[t + 1])
        d_decay = torch.zeros_like(decay)
        d_decay[:, 1:] = grad[:, 1:] * states[:, :-1]
        d_C = torch.matmul(dy[:, :, None, :], states).squeeze(2)  # (b, l, n)
        return d_decay, grad, d_C


def describe_architecture(arch: dict) -> str:
    """The runner's `architecture` column format: sorted name=value pairs."""
    return ",".join(f"{k}={v}" for k, v in sorted(arch.items()))


def with_architecture(model_cfg, arch: dict, vocab: int):
    """The model config the probe trains: the YAML's, with the full architecture and the task's vocabulary."""
    return dataclasses.replace(model_cfg, architecture=arch, vocab_size=vocab, match_vocab=False)


def param_ratio(a: int, b: int) -> float:
    return max(a, b) / min(a, b) if min(a, b) > 0 else math.inf
