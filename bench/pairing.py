"""How the two architectures are paired in a comparison: one table, applied when a config is built.

A comparison between architectures holds only when both sides get the same care. `pairing`
names which care a run had, and every row records it:

- release: both architectures through transformers, as the Falcon Mamba release measured them
  with optimum-benchmark, whose pytorch backend leaves everything at transformers' defaults:
  FalconMambaForCausalLM (its MambaCache) and LlamaForCausalLM / MistralForCausalLM with a
  DynamicCache, the default attention (SDPA), no torch.compile, eager decode.
- best: each architecture on its fastest path on the hardware. The Transformers: a preallocated
  StaticCache, SDPA (flash kernels where the device has them), decode under
  torch.compile(mode="reduce-overhead"), i.e. CUDA graphs. On a CPU, which has no graphs, the
  fastest of eager decode over a dynamic cache, eager over the static cache and compiled over
  the static cache, measured when the job starts (every figure and the winner are rows, and the
  rows record the cache that ran), so best is never slower there than release's path. The
  Mamba: the in-repo kernels (impl ssm_bench), decode replayed as one CUDA graph on CUDA (a CPU
  has no graphs: eager there).

The default is best: the harness exists to compare architectures, and an unqualified figure
should not carry one side's framework overhead. The release's settings stay one override away.

Scenarios that do not time a decode path (max_seq_len, leaderboard) take only the pairing's
backend (impl): the Transformers' cache there is transformers' default one, since a preallocated
static cache would decide a prompt-length search by its own size. The implementation scenario
compares two implementations of one architecture, both eager: its rows record no pairing.

Compile and capture times are rows of their own (metric `compile_time`), never in a throughput.
The report keeps pairings apart (schema SETTINGS), so no ratio ever spans two of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import ConfigError

PAIRINGS = ("release", "best")
DEFAULT = "best"
AUTO = "auto"  # model.impl / scenario.kv_cache left to the pairing


@dataclass(frozen=True)
class Path:
    """What a pairing fixes for one architecture."""

    impl: str  # the backend (bench/backends REGISTRY)
    kv_cache: str | None  # transformers' cache class; None: the model keeps no KV cache
    decode: str  # eager | compile (torch.compile; CPU: the faster of it and eager) | graph (CUDA graph)


TABLE = {  # (pairing, model.arch) -> its path
    ("release", "ssm"): Path(impl="transformers", kv_cache=None, decode="eager"),
    ("release", "transformer"): Path(impl="transformers", kv_cache="dynamic", decode="eager"),
    ("best", "ssm"): Path(impl="ssm_bench", kv_cache=None, decode="graph"),
    ("best", "transformer"): Path(impl="transformers", kv_cache="static", decode="compile"),
}
DUMMY = Path(impl="dummy", kv_cache=None, decode="eager")  # no model: nothing to pair


def path(pairing: str, model_cfg) -> Path:
    if pairing not in PAIRINGS:
        raise ConfigError(f"pairing: {pairing!r} is not one of {list(PAIRINGS)}")
    return DUMMY if model_cfg.family == "dummy" else TABLE[(pairing, model_cfg.arch)]


def apply(cfg) -> None:
    """Fill what cfg left to the pairing (model.impl, scenario.kv_cache: 'auto'); an explicit
    value that contradicts the pairing is a ConfigError naming the field."""
    p = path(cfg.pairing, cfg.model)
    impl = cfg.model.impl
    if impl not in (AUTO, p.impl):
        raise ConfigError(f"model.impl: {impl!r} contradicts pairing={cfg.pairing}, which runs {cfg.model.arch} "
                          f"models with impl {p.impl!r} (drop the override, or choose the other pairing)")
    cfg.model.impl = p.impl
    scenario = cfg.scenario
    if not hasattr(scenario, "kv_cache"):
        return
    if p.kv_cache is None:  # no KV cache to choose: the setting is moot, recorded as transformers' default
        scenario.kv_cache = "dynamic" if scenario.kv_cache == AUTO else scenario.kv_cache
    elif scenario.kv_cache in (AUTO, p.kv_cache):
        scenario.kv_cache = p.kv_cache
    else:
        raise ConfigError(f"scenario.kv_cache: {scenario.kv_cache!r} contradicts pairing={cfg.pairing}, which gives "
                          f"the Transformers a {p.kv_cache} cache (drop the override, or choose the other pairing)")


def natural_impl(model_cfg) -> str:
    """The backend of a model config built without a run (no pairing): the default pairing's."""
    return model_cfg.impl if model_cfg.impl != AUTO else path(DEFAULT, model_cfg).impl


def decode(cfg) -> str:
    """The decode path the pairing asks of the backend: eager | compile | graph."""
    return path(cfg.pairing, cfg.model).decode
