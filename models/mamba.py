"""
A Mamba-1 language model in plain PyTorch, including the Falcon Mamba variant.

References:
1) A. Gu and T. Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
   arXiv 2312.00752 (the mixer, section 3 and algorithm 2).
2) TII, Falcon Mamba 7B (2024): Mamba-1 with extra weightless RMS norms on B, C and dt
   inside the mixer (transformers' FalconMambaForCausalLM).

The file reads top to bottom: config, cache, norm, mixer, block, language model.
Module and parameter names follow the Hugging Face checkpoints, so weights load by name.

Three ways through a sequence, all with the same result:
- parallel prefill: `forward` on the whole prompt; the scan runs in chunks, so extra memory
  is O(chunk * d_inner * d_state) rather than O(L * d_inner * d_state);
- sequential prefill: `prefill(mode="sequential", chunk_size=c)` feeds c tokens at a time,
  carrying the conv and SSM states, so peak memory does not grow with the prompt;
- decode: `step` takes one token per sequence and updates a preallocated cache in place.

Inference only: forward, prefill and step run without autograd (the scan updates in place).

Precision: the SSM state and the scan run in float32 whatever the weights' dtype, and by
default so does the residual stream (residual_in_fp32), as in mamba_ssm and transformers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.ops import scan_backend
from models.ops.scan_backend import Kernels
from models.ops.selective_scan import dt_B_C, fp32, rms_normalize

MODEL_TYPES = ("mamba", "falcon_mamba")


@dataclass
class MambaConfig:
    """Hyperparameters, named as in transformers' (Falcon)MambaConfig and checkpoints' config.json.

    The defaults give a small model (d_model 64, 2 layers) that runs in milliseconds on a CPU.
    """

    model_type: str = "mamba"  # "mamba" or "falcon_mamba" (adds RMS norms on B, C and dt)
    vocab_size: int = 1024
    hidden_size: int = 64
    num_hidden_layers: int = 2
    state_size: int = 16
    conv_kernel: int = 4
    intermediate_size: int | None = None  # default: 2 * hidden_size
    time_step_rank: int | str = "auto"  # "auto": ceil(hidden_size / 16)
    use_bias: bool = False
    use_conv_bias: bool = True
    tie_word_embeddings: bool = True
    layer_norm_epsilon: float = 1e-5
    mixer_rms_eps: float | None = None  # Falcon Mamba only; default 1e-6 there
    residual_in_fp32: bool = True
    # initialisation (random weights only)
    initializer_range: float = 0.02
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    # parallel-prefill scan chunk: memory O(scan_chunk_size * d_inner * d_state)
    scan_chunk_size: int = 64

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.model_type == "falcon_mamba" and self.mixer_rms_eps is None:
            self.mixer_rms_eps = 1e-6
        if self.model_type == "mamba" and self.mixer_rms_eps is not None:
            raise ValueError("mixer_rms_eps is a Falcon Mamba setting: use model_type='falcon_mamba'")
        if self.intermediate_size is None:
            self.intermediate_size = 2 * self.hidden_size
        if self.time_step_rank == "auto":
            self.time_step_rank = math.ceil(self.hidden_size / 16)
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "conv_kernel",
                     "intermediate_size", "time_step_rank", "scan_chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def num_params(config: MambaConfig) -> int:
    """Parameter count from the config alone (tied head counted once)."""
    H, D, N, R, K = (config.hidden_size, config.intermediate_size, config.state_size,
                     config.time_step_rank, config.conv_kernel)
    mixer = (H * 2 * D + (2 * D if config.use_bias else 0)  # in_proj
             + D * K + (D if config.use_conv_bias else 0)  # conv1d
             + D * (R + 2 * N)  # x_proj
             + R * D + D  # dt_proj
             + D * N + D  # A_log, D
             + D * H + (H if config.use_bias else 0))  # out_proj
    layers = config.num_hidden_layers * (mixer + H)
    embeddings = config.vocab_size * H * (1 if config.tie_word_embeddings else 2)
    return layers + embeddings + H


@dataclass
class MambaCache:
    """Inference state for every layer: constant size, whatever the sequence length.

    conv: (layers, batch, d_inner, d_conv)   the last d_conv inputs of each conv, in the model's dtype
    ssm:  (layers, batch, d_inner, d_state)  the SSM state, always float32
    """

    conv: Tensor
    ssm: Tensor
    seqlen_offset: int = 0
    layers: list = field(init=False, repr=False)

    def __post_init__(self):
        # Per-layer views, made once: the decode loop must not pay for indexing.
        self.layers = [(self.conv[i], self.ssm[i]) for i in range(self.conv.shape[0])]

    def reset(self):
        self.conv.zero_()
        self.ssm.zero_()
        self.seqlen_offset = 0

    @property
    def nbytes(self) -> int:
        return self.conv.numel() * self.conv.element_size() + self.ssm.numel() * self.ssm.element_size()


class RMSNorm(nn.Module):
    """RMSNorm computed in float32, scaled in the input dtype (as transformers' MambaRMSNorm)."""

    def __init__(self, hidden_size: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * rms_normalize(x, self.eps)


class MambaMixer(nn.Module):
    """The selective SSM block: in_proj -> causal depthwise conv -> SiLU -> x_proj -> (dt, B, C)
    -> dt_proj -> softplus -> selective scan -> D skip -> gate by SiLU(z) -> out_proj."""

    def __init__(self, config: MambaConfig, layer_idx: int, device=None, dtype=None, kernels: Kernels | None = None):
        super().__init__()
        factory_kwargs = {"device": device, "dtype": dtype}
        self.kernels = Kernels() if kernels is None else kernels  # MambaLM's: one for all its layers
        H, D, N, R, K = (config.hidden_size, config.intermediate_size, config.state_size,
                         config.time_step_rank, config.conv_kernel)
        self.layer_idx = layer_idx
        self.d_inner, self.d_state, self.dt_rank, self.d_conv = D, N, R, K
        self.mixer_rms_eps = config.mixer_rms_eps
        self.scan_chunk_size = config.scan_chunk_size
        self.in_proj = nn.Linear(H, 2 * D, bias=config.use_bias, **factory_kwargs)
        self.conv1d = nn.Conv1d(D, D, K, groups=D, padding=K - 1, bias=config.use_conv_bias, **factory_kwargs)
        self.x_proj = nn.Linear(D, R + 2 * N, bias=False, **factory_kwargs)
        self.dt_proj = nn.Linear(R, D, bias=True, **factory_kwargs)
        self.A_log = nn.Parameter(torch.empty(D, N, **factory_kwargs))
        self.D = nn.Parameter(torch.empty(D, **factory_kwargs))
        self.out_proj = nn.Linear(D, H, bias=config.use_bias, **factory_kwargs)

    def forward(self, hidden_states: Tensor, state: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """hidden_states: (b, l, H). With `state` = (conv (b, D, K), ssm (b, D, N)), start from it
        and leave the final state in it, so that chunks can follow one another."""
        bsz, length, _ = hidden_states.shape
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # (b, l, D) each
        x = self._conv(x.transpose(1, 2), state).transpose(1, 2)  # (b, l, D)
        dt, B, C = self._dt_B_C(x)
        y, final_ssm = scan_backend.selective_scan(
            x, dt, self._A(), B, C, self.D, z,
            initial_state=None if state is None else state[1], chunk_size=self.scan_chunk_size,
            kernels=self.kernels,
        )
        if state is not None:
            state[1].copy_(final_ssm)
        return self.out_proj(y)

    def step(self, hidden_states: Tensor, state: tuple[Tensor, Tensor]) -> Tensor:
        """One token. hidden_states: (b, H); state as in forward, updated in place."""
        conv_state, ssm_state = state
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # (b, D) each
        x = scan_backend.conv_state_update(conv_state, x, self.conv1d.weight[:, 0, :], self.conv1d.bias,
                                           kernels=self.kernels)
        # _dt_B_C and the state update, from x_proj's output (b, R + 2N): one kernel on CUDA.
        y = scan_backend.selective_step(ssm_state, x, z, self.x_proj(x), self.dt_proj.weight, self.dt_proj.bias,
                                        self._A(), self.D, self.dt_rank, self.d_state, self.mixer_rms_eps,
                                        kernels=self.kernels)
        return self.out_proj(y)  # (b, H)

    def _conv(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> Tensor:
        """Causal depthwise conv + SiLU. x: (b, D, l). Reads and refreshes the conv state if given."""
        length, K = x.shape[-1], self.d_conv
        if state is None:
            out = self.conv1d(x)[..., :length]
        else:
            conv_state = state[0]
            # The last K-1 inputs of the previous chunk stand in for the zero padding.
            x = torch.cat([conv_state[:, :, 1:], x], dim=-1)  # (b, D, K-1+l)
            out = F.conv1d(x, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)
            conv_state.copy_(x[:, :, -K:])
        return F.silu(out)

    def _dt_B_C(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x_proj, split, optional Falcon RMS norms, dt_proj + softplus. Works on (..., D)."""
        return dt_B_C(self.x_proj(x), self.dt_proj.weight, self.dt_proj.bias, self.dt_rank, self.d_state,
                      self.mixer_rms_eps)

    def _A(self) -> Tensor:
        """A = -exp(A_log) in float32, (D, N); recomputed only when A_log changes."""
        # A compiled graph fuses it for free. An inference tensor (A_log converted under
        # torch.inference_mode, e.g. by .to(dtype)) has no version counter to reveal an in-place
        # change: recompute. (MambaLM's constructor and loader make ordinary ones.)
        if torch.compiler.is_compiling() or self.A_log.is_inference():
            return -torch.exp(self.A_log.float())
        key = (id(self.A_log), self.A_log._version, self.A_log.dtype, self.A_log.device)
        if getattr(self, "_A_key", None) != key:
            self._A_value, self._A_key = -torch.exp(self.A_log.float()), key
        return self._A_value


class MambaBlock(nn.Module):
    """Pre-norm residual block: residual + mixer(norm(residual))."""

    def __init__(self, config: MambaConfig, layer_idx: int, device=None, dtype=None, kernels: Kernels | None = None):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon, device=device, dtype=dtype)
        self.mixer = MambaMixer(config, layer_idx, device=device, dtype=dtype, kernels=kernels)
        self.kernels = self.mixer.kernels

    def forward(self, residual: Tensor, state=None) -> Tensor:
        return self._add(residual, self.mixer(self.norm(residual.to(self.norm.weight.dtype)), state))

    def step(self, residual: Tensor, state) -> Tensor:
        # self.norm as in forward; one kernel on CUDA instead of ~9 (see scan_backend.rms_norm)
        hidden = scan_backend.rms_norm(residual, self.norm.weight, self.norm.eps, self.kernels)  # (b, H)
        return self._add(residual, self.mixer.step(hidden, state))

    def _add(self, residual: Tensor, update: Tensor) -> Tensor:
        return (fp32(residual) if self.residual_in_fp32 else residual) + update


class MambaBackbone(nn.Module):
    def __init__(self, config: MambaConfig, device=None, dtype=None, kernels: Kernels | None = None):
        super().__init__()
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size, device=device, dtype=dtype)
        self.layers = nn.ModuleList(
            MambaBlock(config, i, device=device, dtype=dtype, kernels=kernels) for i in range(config.num_hidden_layers)
        )
        self.norm_f = RMSNorm(config.hidden_size, config.layer_norm_epsilon, device=device, dtype=dtype)


class MambaLM(nn.Module):
    """Mamba language model: embeddings, blocks, final norm, LM head (tied or not).

    kernels: which fast paths its ops may take (models.ops.scan_backend.Kernels; default all), and
    the record of the paths they took, shared by every layer: `model.kernels.cpu = False` sends
    the whole model to the PyTorch code, `model.kernels.used` says what ran.
    """

    def __init__(self, config: MambaConfig, device=None, dtype=None, init_weights: bool = True,
                 kernels: Kernels | None = None):
        super().__init__()
        self.config = config
        self.kernels = Kernels() if kernels is None else kernels
        # Build on the meta device, then allocate once: nn.Linear's own (slow) init never runs,
        # which matters at 7B. Works for device="meta" and under FakeTensorMode too.
        with torch.device("meta"):
            self.backbone = MambaBackbone(config, dtype=dtype, kernels=self.kernels)
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False, dtype=dtype)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.backbone.embeddings.weight
        device = torch.device(device) if device is not None else torch.get_default_device()
        if device.type != "meta":
            with torch.inference_mode(False):  # ordinary parameters, even when built for inference
                _materialize(self, device)
                if config.tie_word_embeddings:  # each parameter was allocated anew: re-tie
                    self.lm_head.weight = self.backbone.embeddings.weight
                if init_weights:
                    self.reset_parameters()

    # ----------------------------------------------------------------------------- weights

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None):
        """Fast random init, in the spirit of mamba_ssm's: one vectorised op per tensor."""
        cfg = self.config
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.lm_head.weight.device).manual_seed(seed)
        std = cfg.initializer_range
        for name, p in self.named_parameters():
            if name.endswith("A_log"):  # S4D-real: A[:, n] = -(n + 1)
                p.copy_(torch.log(torch.arange(1, p.shape[1] + 1, dtype=torch.float32)).expand_as(p))
            elif name.endswith(".D") or "norm" in name:
                p.fill_(1.0)
            elif name.endswith("dt_proj.bias"):  # softplus(bias) ~ log-uniform in [dt_min, dt_max]
                dt = torch.rand(p.shape, generator=generator, device=p.device, dtype=torch.float32)
                dt = torch.exp(dt * (math.log(cfg.time_step_max) - math.log(cfg.time_step_min))
                               + math.log(cfg.time_step_min)).clamp(min=cfg.time_step_floor)
                p.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            elif name.endswith("bias"):
                p.zero_()
            elif name.endswith("dt_proj.weight"):
                bound = cfg.time_step_rank ** -0.5
                p.uniform_(-bound, bound, generator=generator)
            else:
                p.normal_(0.0, std, generator=generator)

    @classmethod
    def from_pretrained(cls, path, dtype=None, device=None) -> "MambaLM":
        """Load a local Hugging Face format directory (config.json + safetensors), offline."""
        from models.loading import load_pretrained

        return load_pretrained(cls, path, dtype=dtype, device=device)

    @torch.no_grad()
    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Give embeddings and head vocab_size rows, in place (a tied head stays tied): kept rows
        are copied, new ones drawn as at init. config.vocab_size follows."""
        cfg, keep = self.config, min(self.config.vocab_size, vocab_size)

        def resized(weight: Tensor) -> nn.Parameter:
            new = weight.new_empty(vocab_size, weight.shape[1]).normal_(0.0, cfg.initializer_range)
            new[:keep] = weight[:keep]
            return nn.Parameter(new, requires_grad=weight.requires_grad)

        embeddings = self.backbone.embeddings
        embeddings.weight, embeddings.num_embeddings = resized(embeddings.weight), vocab_size
        self.lm_head.weight = embeddings.weight if cfg.tie_word_embeddings else resized(self.lm_head.weight)
        self.lm_head.out_features = vocab_size
        self.config = replace(cfg, vocab_size=vocab_size)

    def num_params(self) -> int:
        return num_params(self.config)

    # ----------------------------------------------------------------------------- inference

    def allocate_inference_cache(self, batch_size: int, dtype=None, device=None) -> MambaCache:
        cfg, weight = self.config, self.lm_head.weight
        device = weight.device if device is None else device
        dtype = weight.dtype if dtype is None else dtype
        L, D = cfg.num_hidden_layers, cfg.intermediate_size
        return MambaCache(
            conv=torch.zeros(L, batch_size, D, cfg.conv_kernel, device=device, dtype=dtype),
            ssm=torch.zeros(L, batch_size, D, cfg.state_size, device=device, dtype=torch.float32),
        )

    @torch.no_grad()
    def forward(self, input_ids: Tensor, cache: MambaCache | None = None, logits_to_keep: int = 0) -> Tensor:
        """input_ids: (b, l) -> logits (b, l, V), or (b, k, V) for the last k with logits_to_keep=k.

        With a cache, start from its state and leave the final state in it.
        """
        hidden = self.backbone.embeddings(input_ids)  # (b, l, H)
        for i, layer in enumerate(self.backbone.layers):
            hidden = layer(hidden, None if cache is None else cache.layers[i])
        if cache is not None:
            cache.seqlen_offset += input_ids.shape[1]
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self._logits(hidden)

    @torch.no_grad()
    def step(self, token_ids: Tensor, cache: MambaCache) -> Tensor:
        """One token per sequence. token_ids: (b,) or (b, 1) -> logits (b, V); cache updated in place."""
        hidden = self.backbone.embeddings(token_ids.reshape(-1))  # (b, H)
        for layer, state in zip(self.backbone.layers, cache.layers):
            hidden = layer.step(hidden, state)
        cache.seqlen_offset += 1
        norm_f = self.backbone.norm_f  # as in _logits; one kernel on CUDA and on CPU
        return self.lm_head(scan_backend.rms_norm(hidden, norm_f.weight, norm_f.eps, self.kernels))

    @torch.no_grad()
    def prefill(self, input_ids: Tensor, mode: str = "parallel", chunk_size: int = 1,
                cache: MambaCache | None = None, logits_to_keep: int = 1) -> tuple[Tensor, MambaCache]:
        """Run the prompt through the model: returns (logits of the last position (b, V), cache).

        parallel: the whole prompt in one forward pass (scan chunked internally).
        sequential: chunk_size tokens at a time, carrying the state; memory does not grow with l.
        logits_to_keep: positions whose logits each forward computes (0 = all, as a plain forward
        does; 1 = the last only, as a generation engine does). It changes memory, not the result.
        """
        if mode not in ("parallel", "sequential"):
            raise ValueError(f"prefill mode must be 'parallel' or 'sequential', got {mode!r}")
        assert chunk_size >= 1, f"chunk_size must be >= 1, got {chunk_size}"
        bsz, length = input_ids.shape
        assert length >= 1, "prefill needs at least one token"
        cache = self.allocate_inference_cache(bsz) if cache is None else cache
        if mode == "parallel":
            return self(input_ids, cache, logits_to_keep=logits_to_keep)[:, -1], cache
        for start in range(0, length, chunk_size):
            chunk = input_ids[:, start:start + chunk_size]
            logits = self.step(chunk, cache) if chunk.shape[1] == 1 else \
                self(chunk, cache, logits_to_keep=logits_to_keep)[:, -1]
        return logits, cache

    @torch.inference_mode()
    def generate(self, input_ids: Tensor, max_new_tokens: int, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, eos_token_id: int | None = None,
                 prefill_mode: str = "parallel", chunk_size: int = 1,
                 generator: torch.Generator | None = None) -> Tensor:
        """Greedy or sampled generation. Returns (b, l + new) token ids. Stops early only when
        eos_token_id is given and every sequence has produced it."""
        logits, cache = self.prefill(input_ids, mode=prefill_mode, chunk_size=chunk_size)
        tokens = [input_ids]
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for i in range(max_new_tokens):
            next_token = sample_next_token(logits, do_sample, temperature, top_k, generator)
            tokens.append(next_token[:, None])
            if eos_token_id is not None:
                finished |= next_token == eos_token_id
                if bool(finished.all()):
                    break
            if i + 1 < max_new_tokens:
                logits = self.step(next_token, cache)
        return torch.cat(tokens, dim=1)

    def _logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(self.backbone.norm_f(hidden.to(self.lm_head.weight.dtype)))


def _materialize(module: nn.Module, device: torch.device):
    """Give every meta parameter uninitialised storage on `device`. Unlike Module.to_empty, this
    never swaps tensors in place, so it also works under FakeTensorMode."""
    for submodule in module.modules():
        for name, p in submodule._parameters.items():
            if p is not None:
                submodule._parameters[name] = nn.Parameter(torch.empty_like(p, device=device), p.requires_grad)


def sample_next_token(logits: Tensor, do_sample: bool = False, temperature: float = 1.0,
                      top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """logits (b, V) -> token ids (b,): argmax, or a sample at `temperature` from the top k."""
    if not do_sample:
        return logits.argmax(dim=-1)
    assert temperature > 0, f"temperature must be > 0 when sampling, got {temperature}"
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
