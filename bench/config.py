"""Structured configs: every field of a run is typed and validated before anything is measured.

Each dataclass is registered with Hydra's ConfigStore under a `*_schema` name; the YAML files in
configs/ hold values only and name their schema in `defaults`. Hydra rejects unknown keys and
wrong types while composing; `__post_init__` rejects impossible values (run by
OmegaConf.to_object) with a message that names the field and the allowed values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from bench.memory.allocator import SEGMENT_ADDRESSES
from bench.schema import ARCHS, DOC_SELECTIONS, PROBE_TASKS

FAMILIES = ("mamba", "falcon_mamba", "llama", "mistral", "dummy", "vim", "deit")
VISION_IMPLS = {"vim": ("ssm_bench",), "deit": ("transformers", "timm")}  # image classifier family -> its backends
VISION_FAMILIES = tuple(VISION_IMPLS)  # the vision scenario only
IMPLS = ("ssm_bench", "transformers", "dummy", "auto", "timm")  # auto: the pairing decides (bench/pairing.py)
WEIGHTS = ("random", "pretrained")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
KERNELS = ("cpu", "cuda")
PREFILL_MODES = ("parallel", "sequential")
MEMORY_MEASURES = ("cuda", "cpu", "simulate")  # bench/memory/trackers.py: where a peak is read
KV_CACHES = ("dynamic", "static", "auto")  # auto: the pairing decides
GENERATION_MODES = ("full", "sampled")
GENERATION_MEASURES = ("device", "simulate")
HARNESSES = {"lm_eval": ("local", "v2"), "lighteval": ("local", "v1")}  # harness -> its suites


class ConfigError(ValueError):
    """An impossible configuration; the message starts with the field's dotted name."""


def _one_of(field_name: str, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{field_name}: {value!r} is not one of {list(allowed)}")


def _profile(field_name: str, value):
    """A hardware profile chosen for a scenario field: composed from configs/hardware/, not a name."""
    if value is not None and not hasattr(value, "memory_gib") and not (isinstance(value, dict) and "memory_gib" in value):
        raise ConfigError(f"{field_name}: {value!r} is not a hardware profile; choose one with "
                          f"hardware@{field_name}=<name of configs/hardware/*.yaml>")


def _positive(field_name: str, value):
    if value < 1:
        raise ConfigError(f"{field_name}: must be >= 1, got {value}")


@dataclass
class ModelConfig:
    name: str = MISSING
    arch: str = MISSING  # ssm | transformer
    family: str = MISSING  # mamba | falcon_mamba | llama | mistral | dummy: picks the config/model class
    # The backend: ssm_bench (in-repo Mamba) | transformers | dummy (no model) | auto (what `pairing` runs)
    impl: str = "auto"
    # 65024 (Falcon Mamba's) for every model, so embeddings and LM head are matched.
    vocab_size: int = 65024
    weights: str = "random"  # random (fast init) | pretrained (local HF-format directory in `path`)
    path: Optional[str] = None
    match_vocab: bool = True  # pretrained models (both backends): resize embeddings to vocab_size, with a warning
    # The tokenizer for real text (bench/tokenizers.py): a converted one by name (falcon, gpt-neox,
    # llama-bpe, gpt-2, mpt) or a local tokenizer directory; null: none (synthetic tasks bring theirs).
    tokenizer: Optional[str] = None
    # Architecture hyperparameters, passed to the family's config class (our MambaConfig, or
    # transformers' LlamaConfig / MistralConfig / FalconMambaConfig).
    architecture: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _one_of("model.arch", self.arch, ARCHS)
        _one_of("model.family", self.family, FAMILIES)
        _one_of("model.impl", self.impl, IMPLS)
        _one_of("model.weights", self.weights, WEIGHTS)
        if self.tokenizer is not None:
            from bench.tokenizers import check_tokenizer_field

            check_tokenizer_field(self.tokenizer)  # its size is checked where it is used: tokenizer_for_model
        _positive("model.vocab_size", self.vocab_size)
        if self.weights == "pretrained" and not self.path:
            raise ConfigError("model.path: required when model.weights=pretrained (a local HF-format directory)")
        if self.weights == "random" and self.path:
            raise ConfigError(f"model.path: {self.path!r} would be ignored with model.weights=random; "
                              "add model.weights=pretrained to load it")
        if self.impl == "ssm_bench" and self.family not in ("mamba", "falcon_mamba", "vim"):
            raise ConfigError(f"model.impl: ssm_bench runs Mamba families only, not {self.family!r}")
        if self.impl != "auto" and (self.impl == "dummy") != (self.family == "dummy"):
            raise ConfigError("model.impl: the dummy backend and the dummy family go together")


@dataclass
class HardwareConfig:
    name: str = MISSING
    device: str = "auto"  # auto picks CUDA when present
    memory_gib: float = MISSING  # memory budget of the device (2**30 bytes)
    overhead_gib: float = 0.0  # per-process runtime overhead (CUDA context, allocator slack)
    bandwidth_gbps: float = MISSING  # memory bandwidth, GB/s: decode roofline
    peak_tflops: float = MISSING  # dense peak at the profile's main dtype: prefill roofline
    # The kernels a run on this hardware takes (cpu: our C scan; cuda: our Triton scan). A
    # simulated max_seq_len search emulating this profile allocates as they do.
    kernels: str = "cpu"

    def __post_init__(self):
        _one_of("hardware.device", self.device, DEVICES)
        _one_of("hardware.kernels", self.kernels, KERNELS)
        if self.memory_gib <= self.overhead_gib:
            raise ConfigError(f"hardware.memory_gib: {self.memory_gib} must exceed overhead_gib {self.overhead_gib}")

    @property
    def budget_bytes(self) -> int:
        return int((self.memory_gib - self.overhead_gib) * 2**30)


@dataclass
class ScenarioConfig:
    name: str = MISSING

    def check_run(self, cfg: "BenchConfig") -> None:
        """Rules tying this scenario to the rest of the run (model, pairing, dtype), checked by
        BenchConfig once the pairing has filled model.impl. Most scenarios have none."""


@dataclass
class GenerationConfig(ScenarioConfig):
    """Batch-1 generation of new_tokens tokens after a prompt, greedy, no early stop at EOS."""

    name: str = "generation"
    prompt_len: int = 1
    new_tokens: int = 256
    window: int = 64  # tokens per throughput/memory sample
    batch_size: int = 1
    prefill_mode: str = "parallel"
    chunk_size: int = 1  # sequential prefill only
    kv_cache: str = "auto"  # Transformers: DynamicCache or StaticCache; auto: what `pairing` gives them
    warmup_tokens: int = 16  # generated (and discarded) before the measured repeats (sampled: before each window)
    repeats: int = 3
    progress: bool = True
    # full: every token generated (the release's procedure); sampled: a window timed at each of
    # `contexts` (state lengths), each state built by a prefill (bench/scenarios/generation.py).
    mode: str = "full"
    contexts: List[int] = field(default_factory=list)
    measure: str = "device"  # simulate: the sampled mode's memory on fake tensors, no timing

    def __post_init__(self):
        for name in ("prompt_len", "new_tokens", "window", "batch_size", "chunk_size", "repeats"):
            _positive(f"scenario.{name}", getattr(self, name))
        _one_of("scenario.prefill_mode", self.prefill_mode, PREFILL_MODES)
        _one_of("scenario.kv_cache", self.kv_cache, KV_CACHES)
        if self.warmup_tokens < 0:
            raise ConfigError(f"scenario.warmup_tokens: must be >= 0, got {self.warmup_tokens}")
        _one_of("scenario.mode", self.mode, GENERATION_MODES)
        _one_of("scenario.measure", self.measure, GENERATION_MEASURES)
        self.contexts = list(self.contexts)
        if self.mode == "sampled" and (not self.contexts or min(self.contexts) < self.prompt_len):
            raise ConfigError(f"scenario.contexts: the sampled mode needs context lengths >= prompt_len "
                              f"({self.prompt_len}), got {self.contexts}")
        if self.measure == "simulate" and self.mode != "sampled":
            raise ConfigError("scenario.measure: simulate runs the sampled mode only (scenario.mode=sampled)")


@dataclass
class CrossCheckConfig(GenerationConfig):
    """The generation settings, measured by ssm-bench and by optimum-benchmark (parallel prefill,
    as optimum-benchmark's generate() runs it)."""

    name: str = "crosscheck"
    new_tokens: int = 256
    window: int = 32
    repeats: int = 3
    rounds: int = 2  # the tools take turns this many times (the loop also runs once before)
    optimum_warmup_runs: int = 1  # optimum-benchmark's short warm-up generates (after its full one)
    tolerance: float = 0.10  # |ours / theirs - 1| that counts as agreement

    def __post_init__(self):
        super().__post_init__()
        _positive("scenario.rounds", self.rounds)
        if self.mode != "full" or self.measure != "device":
            raise ConfigError("scenario.mode: the crosscheck compares full generations measured on the device")
        if self.prefill_mode != "parallel":
            raise ConfigError("scenario.prefill_mode: optimum-benchmark prefills in parallel only")
        if self.new_tokens < 2:
            raise ConfigError(f"scenario.new_tokens: decode throughput needs >= 2 tokens, got {self.new_tokens}")
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"scenario.tolerance: must be in (0, 1), got {self.tolerance}")

    def check_run(self, cfg: "BenchConfig") -> None:
        if cfg.pairing != "release":
            raise ConfigError(f"pairing: the crosscheck scenario times ssm-bench's loop against optimum-benchmark, "
                              f"which runs transformers' defaults (eager decode, dynamic cache): pairing=release, "
                              f"not {cfg.pairing!r}")


@dataclass
class BatchConfig(ScenarioConfig):
    """Generation throughput against batch size, up to the largest batch that fits the budget
    (bench/scenarios/batch.py): the Mamba paper's setting, prompt 2048, 128 new tokens."""

    name: str = "batch"
    prompt_len: int = 2048
    new_tokens: int = 128
    prefill_mode: str = "parallel"
    chunk_size: int = 2048  # sequential prefill only
    kv_cache: str = "auto"  # Transformers: as `pairing` gives them, or dynamic / static
    measure: str = "simulate"  # the largest batch's search: cuda | cpu | simulate (memory only, no timing)
    max_batch: int = 4096  # probe cap of the search
    repeats: int = 2
    emulate: Any = None  # hardware profile whose budget is searched (None: the job's own hardware)
    progress: bool = True

    def __post_init__(self):
        for name in ("prompt_len", "new_tokens", "chunk_size", "max_batch", "repeats"):
            _positive(f"scenario.{name}", getattr(self, name))
        _profile("scenario.emulate", self.emulate)
        _one_of("scenario.prefill_mode", self.prefill_mode, PREFILL_MODES)
        _one_of("scenario.kv_cache", self.kv_cache, KV_CACHES)
        _one_of("scenario.measure", self.measure, MEMORY_MEASURES)


@dataclass
class ImplementationConfig(ScenarioConfig):
    """The in-repo Mamba against transformers' (Falcon)Mamba on identical weights."""

    name: str = "implementation"
    prompt_len: int = 1024  # parallel prefill, all logits (as transformers computes them)
    decode_tokens: int = 32
    memory_prompt_len: int = 4096  # prefill activation memory, last-position logits
    warmup: int = 1
    repeats: int = 3
    batch_size: int = 1

    def __post_init__(self):
        for name in ("prompt_len", "decode_tokens", "memory_prompt_len", "repeats", "batch_size"):
            _positive(f"scenario.{name}", getattr(self, name))

    def check_run(self, cfg: "BenchConfig") -> None:
        if cfg.model.impl != "ssm_bench":
            raise ConfigError(f"model.impl: the implementation scenario compares the in-repo Mamba "
                              f"(model.impl=ssm_bench) with transformers; got {cfg.model.impl!r}")


@dataclass
class KernelsConfig(ScenarioConfig):
    """The Triton kernels against the PyTorch ops, and the scan's speed (bench/scenarios/kernels.py)."""

    name: str = "kernels"
    check_len: int = 300  # agreement: scan length and d_inner
    check_d: int = 256
    scan_len: int = 8192  # speed: the prefill scan alone at this length and d_inner
    scan_d: int = 8192
    repeats: int = 7
    copy_mib: int = 4096  # CUDA: the copy-bandwidth buffers

    def __post_init__(self):
        for name in ("check_len", "check_d", "scan_len", "scan_d", "repeats", "copy_mib"):
            _positive(f"scenario.{name}", getattr(self, name))


@dataclass
class LeaderboardConfig(ScenarioConfig):
    """Leaderboard evals: `local` tasks (shipped), `v2` (lm-eval) or `v1` (lighteval)."""

    name: str = "leaderboard"
    harness: str = "lm_eval"  # lm_eval | lighteval (its own venv, .venv-lighteval)
    suite: str = "local"  # local | v2 (lm_eval) | v1 (lighteval)
    tasks: Optional[List[str]] = None  # a subset of the suite's tasks (v2 or v1; local runs whole)
    limit: Optional[int] = None  # examples per subtask; None = all
    batch_size: int = 8
    bootstrap_iters: int = 0
    seed: int = 1234
    v1_data_dir: Optional[str] = None  # v1 data root holding hub/ (default: the project's data/, `make data`)
    # With a limit, which documents lighteval scores: first_n (the split's first N, as lm-eval) |
    # spread (N spread evenly over the split) | lighteval (the engine's seed-42 shuffle). Rows
    # record it (doc_selection); lm-eval always takes the first N.
    doc_selection: str = "first_n"
    # lighteval's acc_norm: counted (a choice's leading space in its length: lighteval's own) |
    # ignored (lm-eval's). None: ignored for local (cross-engine), counted for v1 (the engine's number).
    acc_norm_space: Optional[str] = None
    data: str = "local"  # v2 datasets: local (data/, `make data`) | hub (the Hub's, online or HF cache)

    def __post_init__(self):
        _one_of("scenario.harness", self.harness, HARNESSES)
        _one_of("scenario.suite", self.suite, HARNESSES[self.harness])
        _one_of("scenario.data", self.data, ("local", "hub"))
        _one_of("scenario.doc_selection", self.doc_selection, DOC_SELECTIONS)
        if self.doc_selection != "first_n" and self.harness != "lighteval":
            raise ConfigError(f"scenario.doc_selection: {self.doc_selection!r} chooses lighteval's documents; "
                              f"lm-eval takes the first N (first_n), so with harness={self.harness} it would be a label only")
        if self.acc_norm_space is not None:
            _one_of("scenario.acc_norm_space", self.acc_norm_space, ("counted", "ignored"))
        _positive("scenario.batch_size", self.batch_size)
        if self.limit is not None:
            _positive("scenario.limit", self.limit)


@dataclass
class MaxSeqLenConfig(ScenarioConfig):
    """The longest prompt whose prefill plus one decode step fits the budget (bench/scenarios/max_seq_len.py)."""

    name: str = "max_seq_len"
    measure: str = field(default="simulate", metadata={"help": f"peak memory from: one of {MEMORY_MEASURES}"})
    modes: List[str] = field(default_factory=lambda: list(PREFILL_MODES),
                             metadata={"help": f"prefill modes to search, from {PREFILL_MODES}"})
    chunk_size: int = field(default=2048, metadata={"help": "tokens per forward in sequential prefill"})
    start_len: int = field(default=1024, metadata={"help": "first probe length (tokens)"})
    max_len: int = field(default=2**20, metadata={"help": "probe cap (tokens): no trial is longer"})
    growth: float = field(default=2.0, metadata={"help": "geometric factor between probes"})
    resolution: int = field(default=256, metadata={"help": "bisection stops when the bracket is this narrow"})
    logits_to_keep: int = field(default=1, metadata={"help": "prefill logits for the last k positions; 0 = all"})
    unbounded_slope_threshold: float = field(
        default=64.0, metadata={"help": "bytes/token: a flatter peak-vs-length slope means unbounded"})
    flat_steps: int = field(default=3, metadata={"help": "geometric steps the slope must stay flat over"})
    record_trials: bool = field(default=True, metadata={"help": "one row per trial (peak vs length)"})
    emulate: Any = field(default=None, metadata={
        "help": "hardware profile whose budget is searched (None: the job's own hardware)"})
    segment_addresses: str = field(default="rising", metadata={
        "help": f"a simulated GPU's cudaMalloc address order, one of {SEGMENT_ADDRESSES}: it breaks best-fit "
                "ties in the caching-allocator model (bench/memory/allocator.py), and so how blocks fragment"})

    def __post_init__(self):
        _one_of("scenario.measure", self.measure, MEMORY_MEASURES)
        _one_of("scenario.segment_addresses", self.segment_addresses, SEGMENT_ADDRESSES)
        _profile("scenario.emulate", self.emulate)
        self.modes = list(self.modes)
        if not self.modes or any(m not in PREFILL_MODES for m in self.modes):
            raise ConfigError(f"scenario.modes: {self.modes!r} must be a non-empty list from {list(PREFILL_MODES)}")
        for name in ("chunk_size", "start_len", "max_len", "resolution", "flat_steps"):
            _positive(f"scenario.{name}", getattr(self, name))
        if self.start_len > self.max_len:
            raise ConfigError(f"scenario.start_len: {self.start_len} must not exceed max_len {self.max_len}")
        if self.growth <= 1:
            raise ConfigError(f"scenario.growth: must be > 1, got {self.growth}")
        if self.logits_to_keep < 0:
            raise ConfigError(f"scenario.logits_to_keep: must be >= 0 (0 = all positions), got {self.logits_to_keep}")
        if self.unbounded_slope_threshold < 0:
            raise ConfigError(f"scenario.unbounded_slope_threshold: must be >= 0, got {self.unbounded_slope_threshold}")


@dataclass
class VisionConfig(ScenarioConfig):
    """Image classifiers (Vim, DeiT): images/s and peak memory of a forward pass against image
    resolution, measured, and simulated for GPU budgets (bench/scenarios/vision.py)."""

    name: str = "vision"
    resolutions: List[int] = field(default_factory=lambda: [224, 384, 512, 640])  # square images, measured
    batch_size: int = 1
    warmup: int = 1
    repeats: int = 3
    attention: List[str] = field(default_factory=lambda: ["sdpa", "eager"])  # DeiT's kinds (Vim has none)
    simulate_resolutions: List[int] = field(default_factory=lambda: [224, 512, 640, 738, 1024, 1248])
    budgets: List[str] = field(default_factory=lambda: ["a100_80gb", "h100_80gb"])  # configs/hardware profiles
    progress: bool = True

    def __post_init__(self):
        from models.deit import ATTENTIONS

        for name in ("batch_size", "repeats"):
            _positive(f"scenario.{name}", getattr(self, name))
        if self.warmup < 0:
            raise ConfigError(f"scenario.warmup: must be >= 0, got {self.warmup}")
        for name in ("resolutions", "simulate_resolutions"):  # resolutions=[]: simulated only (any machine)
            values = list(getattr(self, name))
            if any(v < 16 for v in values):
                raise ConfigError(f"scenario.{name}: {values} must be image sizes of at least one 16-pixel patch")
        if not self.resolutions and not self.simulate_resolutions:
            raise ConfigError("scenario.resolutions: empty, and so is simulate_resolutions: nothing to run")
        if not self.attention or any(a not in ATTENTIONS for a in self.attention):
            raise ConfigError(f"scenario.attention: {list(self.attention)} must be a non-empty list from {list(ATTENTIONS)}")
        for name in self.budgets:
            if not (CONFIG_DIR / "hardware" / f"{name}.yaml").is_file():
                raise ConfigError(f"scenario.budgets: {name!r} is not a profile in configs/hardware/")

    def check_run(self, cfg: "BenchConfig") -> None:
        _one_of("model.impl", cfg.model.impl, VISION_IMPLS[cfg.model.family])


@dataclass
class ProbeConfig(ScenarioConfig):
    """Train a small model on a synthetic probe task; its held-out accuracy (bench/scenarios/probe.py)."""

    name: str = "probe"
    task: str = "mqar"  # one of bench.schema.PROBE_TASKS
    seq_len: int = 64  # training length (and the test set's)
    d_model: int = 64  # the model's width; the task gives the vocabulary
    steps: int = 400
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.1
    warmup_steps: int = 20  # linear warm-up, then cosine decay to zero
    train_examples: int = 0  # training set size; 0: steps * batch_size, every example seen once
    test_examples: int = 512
    # Test lengths as multiples of seq_len, for the tasks that extrapolate (induction heads).
    extrapolate: List[int] = field(default_factory=lambda: [2, 4, 8, 16])
    progress: bool = True

    def check_run(self, cfg: "BenchConfig") -> None:
        _one_of("dtype", cfg.dtype, ("float32",))  # it trains real models
        _one_of("model.impl", cfg.model.impl, ("ssm_bench", "transformers"))

    def __post_init__(self):
        _one_of("scenario.task", self.task, PROBE_TASKS)
        for name in ("seq_len", "d_model", "steps", "batch_size", "test_examples"):
            _positive(f"scenario.{name}", getattr(self, name))
        if not self.lr > 0:
            raise ConfigError(f"scenario.lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_steps < 0 or self.train_examples < 0:
            raise ConfigError("scenario.weight_decay, warmup_steps, train_examples: must be >= 0")
        self.extrapolate = list(self.extrapolate)
        if any(m < 2 for m in self.extrapolate):
            raise ConfigError(f"scenario.extrapolate: {self.extrapolate} must be multiples >= 2 of seq_len")


@dataclass
class BenchConfig:
    model: ModelConfig = MISSING
    scenario: Any = MISSING
    hardware: HardwareConfig = MISSING
    experiment: str = "default"
    dtype: str = "float32"  # one dtype for every model of a comparison
    # release | best: how each architecture is run (bench/pairing.py's table: impl, KV cache, decode path)
    pairing: str = "best"
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    skip_existing: bool = True  # a finished run (results present, no failure) is not run again
    isolate: bool = True  # measure in a fresh process, so memory state never leaks between jobs
    # One measurement at a time per results root (flock). false: measure anyway, rows flagged.
    lock: bool = True
    # Failed or invalid jobs make `python -m bench` exit 1 (after the others ran). true: exit 0,
    # for sweeps where a failure is a result (OOM searches).
    allow_failures: bool = False
    # Refuse a CPU job whose estimated peak memory exceeds what the host has available.
    memory_guard: bool = True
    # The same job again, in its own directory: `-m round=0,1,2 model=a,b` runs a0 b0 a1 b1 a2 b2,
    # so drift of a shared machine hits every model alike; the report pools the rounds.
    round: int = 0
    results_dir: str = "results"
    tags: List[str] = field(default_factory=list)

    def __post_init__(self):
        _one_of("dtype", self.dtype, DTYPES)
        from bench import pairing

        if self.model.family not in VISION_FAMILIES:  # image classifiers name their impl (vision scenario)
            pairing.apply(self)  # model.impl and scenario.kv_cache as the pairing runs them
        emulated = getattr(self.scenario, "emulate", None) or self.hardware
        if (getattr(self.scenario, "measure", None) == "simulate" and self.model.arch == "ssm"
                and self.model.impl == "transformers" and getattr(emulated, "kernels", "cpu") == "cuda"):
            raise ConfigError("pairing: a simulation for a GPU (hardware.kernels=cuda) of transformers' FalconMamba would "
                              "follow its CPU slow path (a Python loop per token, (b, d, l, n) float32 temporaries), "
                              "not the CUDA kernels a GPU runs: use pairing=best (the in-repo Mamba, same shapes)")
        if (getattr(self.scenario, "name", None) == "vision") != (self.model.family in VISION_FAMILIES):
            raise ConfigError(f"model.family: the vision scenario runs {list(VISION_FAMILIES)} models, and only it "
                              f"does; got family {self.model.family!r} with scenario {self.scenario.name!r}")
        self.scenario.check_run(self)  # the scenario's own rules about the model and the pairing
        if self.round < 0:
            raise ConfigError(f"round: must be >= 0, got {self.round}")
        if self.threads < 0:
            raise ConfigError(f"threads: must be >= 0, got {self.threads}")


# Each scenario's schema, by the name it gives itself (bench/scenarios/__init__.py registers the same names).
SCENARIO_SCHEMAS = {schema.name: schema for schema in (
    GenerationConfig, CrossCheckConfig, ImplementationConfig, LeaderboardConfig, KernelsConfig, MaxSeqLenConfig,
    VisionConfig, BatchConfig, ProbeConfig)}


MAX_DIRNAME = 100  # characters of a job directory's name; longer override sets are hashed


def job_dirname(overrides: str) -> str:
    """A job directory's name from its overrides (Hydra's override_dirname): as it is when short
    and flat; else a readable prefix and a hash of the whole (config.yaml and meta.json keep the
    full overrides). A path in an override never makes nested directories."""
    flat = overrides.replace("/", "_")
    if flat == overrides and len(overrides) <= MAX_DIRNAME:
        return overrides
    digest = hashlib.sha256(overrides.encode()).hexdigest()[:10]
    return f"{flat[:MAX_DIRNAME - 11].rstrip(',')}-{digest}"


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def config_groups() -> str:
    """The `--help` list of each config group's options: its YAML files, not the typed schemas."""
    groups = sorted(d for d in CONFIG_DIR.iterdir() if d.is_dir() and d.name != "hydra")
    options = {d.name: sorted(str(f.relative_to(d).with_suffix("")) for f in d.rglob("*.yaml")) for d in groups}
    return "".join(f"{group}: {', '.join(names)}\n" for group, names in options.items())


def register_configs(extra_scenarios: dict | None = None):
    OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)
    OmegaConf.register_new_resolver("config_groups", config_groups, replace=True)
    extra_scenarios = extra_scenarios or {}
    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="hardware", name="hardware_schema", node=HardwareConfig)
    for name, schema in {**SCENARIO_SCHEMAS, **extra_scenarios}.items():
        cs.store(group="scenario", name=f"{name}_schema", node=schema)
