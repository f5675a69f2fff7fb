"""The generation scenario's sampled-context mode: a window timed at each context length from a
state built by a prefill, on the full mode's axes; and its simulation (fake tensors, memory only).
The two modes' throughput agreement is a benchmark, not a test: python -m bench.scenarios.generation."""

import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.backends import get_backend_class
from bench.config import ConfigError, register_configs
from bench.device import DTYPES
from bench.scenarios import generation
from bench.schema import LOAD_COLUMNS

CONFIGS = str(Path(__file__).resolve().parent.parent / "configs")
register_configs()
SMALL = ["model.vocab_size=512", "scenario.progress=false", "scenario.repeats=1", "scenario.warmup_tokens=2"]


def load(overrides=()):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


def loaded_backend(cfg):
    backend = get_backend_class(cfg.model.impl)(cfg.model, torch.device("cpu"), DTYPES[cfg.dtype])
    backend.load()
    return backend


@pytest.mark.parametrize("override,message", [
    (["scenario.mode=sampled"], "scenario.contexts: the sampled mode needs"),
    (["scenario.mode=sampled", "scenario.prompt_len=8", "scenario.contexts=[4]"], "scenario.contexts"),
    (["scenario.mode=everything"], "scenario.mode: 'everything' is not one of"),
    (["scenario.measure=simulate"], "scenario.measure: simulate runs the sampled mode only"),
    (["scenario=crosscheck", "scenario.mode=sampled", "scenario.contexts=[8]"], "scenario.mode: the crosscheck"),
])
def test_bad_settings_name_their_field(override, message):
    with pytest.raises(Exception) as e:
        load(override)
    assert isinstance(e.value, ConfigError) or isinstance(e.value.__cause__, ConfigError), e.value
    assert message in str(e.value)


def test_longest_sequence_and_steps():
    full = load(["scenario.new_tokens=100", "scenario.prompt_len=5"]).scenario
    sampled = load(["scenario.mode=sampled", "scenario.contexts=[64,32]", "scenario.window=16"]).scenario
    assert generation.longest_sequence(full) == 105 and generation.longest_sequence(sampled) == 80
    # The full-mode window that starts from a 64-token state (1-token prompt) ends at step 80.
    assert generation.window_step(sampled, 64) == 80


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_mamba"])
def test_sampled_windows_sit_on_the_full_modes_steps(model):
    """The sampled rows carry the full mode's metric names at the steps whose windows start from
    the same state: the inference state's bytes there are the same, exactly (a KV cache's size
    counts the tokens it holds)."""
    window = 8
    full_cfg = load([f"model={model}", *SMALL, "scenario.new_tokens=32", f"scenario.window={window}"])
    sampled_cfg = load([f"model={model}", *SMALL, "scenario.mode=sampled", "scenario.contexts=[8,24]",
                        f"scenario.window={window}"])
    backend = loaded_backend(full_cfg)
    full = generation.run(full_cfg, backend)
    sampled = generation.run(sampled_cfg, backend)

    windowed = {"window_throughput", "state_bytes", "rss"}
    assert {r["metric"] for r in sampled} == windowed
    assert {r["step"] for r in sampled} == {16, 32} and {r["context_len"] for r in sampled} == {8, 24}
    for r in sampled:
        assert r["source"] == "measured" and r["value"] > 0 and r["context_len"] + window == r["step"]
        recorded = {**backend.describe(), **r}  # as the runner records them
        assert recorded.get("kv_cache") == ("dynamic" if model == "tiny_llama" else None)  # an SSM keeps no KV cache
    full_state = {r["step"]: r["value"] for r in full if r["metric"] == "state_bytes"}
    full_context = {r["step"]: r["context_len"] for r in full if r["metric"] == "state_bytes"}
    for r in (r for r in sampled if r["metric"] == "state_bytes"):
        assert r["value"] == full_state[r["step"]], (r["step"], r["value"], full_state)
        assert r["context_len"] == full_context[r["step"]]
    if model == "tiny_llama":  # a KV cache grows with the context; the SSM state does not
        by_step = {r["step"]: r["value"] for r in sampled if r["metric"] == "state_bytes"}
        assert by_step[32] > by_step[16]


@pytest.mark.parametrize("model", ["tiny_llama", "tiny_mamba"])
def test_simulated_memory_matches_the_measured_state(model):
    """measure=simulate builds the model on fake tensors and reports, per context, the state's
    bytes (exactly those of a real run), and the peaks of the decode step and of the prefill."""
    overrides = [f"model={model}", *SMALL, "scenario.mode=sampled", "scenario.contexts=[8,24]", "scenario.window=8"]
    simulated_cfg = load(overrides + ["scenario.measure=simulate"])
    backend = get_backend_class(simulated_cfg.model.impl)(simulated_cfg.model, torch.device("cpu"), torch.float32)
    simulated = generation.run(simulated_cfg, backend)
    measured = generation.run(load(overrides), loaded_backend(load(overrides)))

    assert {r["source"] for r in simulated} == {"simulated"}
    assert {r["metric"] for r in simulated} == {"state_bytes", "peak_allocated", "prefill_peak_allocated"}
    value = {(r["step"], r["metric"]): r["value"] for r in simulated}
    for r in (r for r in measured if r["metric"] == "state_bytes"):
        assert value[(r["step"], "state_bytes")] == r["value"]
    weights = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    for step in (16, 32):
        assert value[(step, "peak_allocated")] > weights + value[(step, "state_bytes")]
        assert value[(step, "prefill_peak_allocated")] > weights


def test_agreement_compares_each_full_window_with_the_sampled_window_from_the_same_state(capsys):
    """The agreement check (python -m bench.scenarios.generation) pairs every full-mode window but
    the first with the sampled window that starts from the same context, over interleaved rounds."""
    backend = loaded_backend(load(["model=tiny_mamba", *SMALL]))
    rows = generation.agreement(backend, window=8, windows=4, rounds=2, warmup_tokens=2)
    assert [(r["step"], r["context_len"]) for r in rows] == [(16, 8), (24, 16), (32, 24)]
    for r in rows:
        assert r["ratio"] == pytest.approx(r["sampled"] / r["full"])
        assert r["best_ratio"] == pytest.approx(r["sampled_spread"][1] / r["full_spread"][1])
        assert r["full_spread"][0] <= r["full"] <= r["full_spread"][1]
        assert set(r["load"]) == set(LOAD_COLUMNS)  # the worst readings over the rounds, for the verdict
    assert generation.main(["--models", "tiny_mamba", "--window", "8", "--windows", "3", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "largest |sampled/full - 1| over windows" in out and "busiest round: other processes used" in out
    # rounds this short cannot read the machine's load: the verdict says so rather than pass
    assert re.search(r"^verdict: FLAGGED, tiny_mamba: (load unmeasured|contended)", out, re.M), out


def test_a_contended_agreement_is_flagged_not_passed(monkeypatch, capsys):
    """Other processes busy while the rounds ran: the verdict says so, whatever the ratios."""
    from bench import contention

    class Busy(contention.LoadMeter):
        def __init__(self):  # no sampler thread: the reading is made up
            pass

        def close(self):
            pass

        def read(self):
            return {"load1": 3.0, "other_cpu": 1.5}

    monkeypatch.setattr(contention, "LoadMeter", Busy)
    assert generation.main(["--models", "tiny_mamba", "--window", "8", "--windows", "3", "--rounds", "1"]) == 0
    assert "verdict: FLAGGED, tiny_mamba: contended: other processes used 1.50 cores" in capsys.readouterr().out
    bad = (["--windows", "1"], ["--rounds", "0"],  # nothing to compare: an error, not "0.000"
           ["--threads", "0"], ["--tolerance", "-1"], ["--tolerance", "nan"], ["--models", "tiny_mamba,nosuchmodel"],
           ["--models", "tiny_mamba,deit_ti"],  # an image classifier: refused before anything is timed
           *([["--device", "cuda"]] if not torch.cuda.is_available() else []), ["--device", "tpu"])
    for args in bad:
        with pytest.raises(SystemExit) as e:
            generation.main(["--models", "tiny_mamba", *args])
        assert e.value.code == 2, args
    assert "--models: no configs/model/nosuchmodel.yaml" in capsys.readouterr().err


def test_the_agreement_verdict_passes_only_quiet_agreement():
    """agree: every model quiet and within tolerance. A quiet model outside it is reported whatever
    the others; a contended one is FLAGGED, never passed."""
    quiet, busy = {"load1": 0.5, "other_cpu": 0.01}, {"load1": 3.0, "other_cpu": 1.5}
    verdict = generation.agreement_verdict
    assert verdict({"a": (0.04, quiet), "b": (0.05, quiet)}, 0.05) == "agree"
    assert verdict({"a": (0.06, quiet), "b": (0.01, quiet)}, 0.05) == "outside tolerance (a)"
    assert verdict({"a": (0.01, quiet), "b": (0.01, busy)}, 0.05).startswith("FLAGGED, b: contended")
    mixed = verdict({"a": (0.10, quiet), "b": (0.01, busy)}, 0.05)  # b's flag must not hide a's miss
    assert mixed.startswith("outside tolerance (a); FLAGGED, b: contended")
    assert verdict({"a": (0.30, busy)}, 0.05).startswith("FLAGGED, a: contended")  # not a measured miss
    unread = {"load1": 0.5, "other_cpu": float("nan"), "other_cpu_peak": float("nan")}
    assert verdict({"a": (0.01, unread)}, 0.05).startswith("FLAGGED, a: load unmeasured")


def test_the_agreement_keeps_the_worst_load_readings(monkeypatch):
    """The load that decides the verdict is the worst of each reading over all rounds (the average
    and the busiest second may come from different rounds), not the first or the last round's."""
    from bench import contention

    readings = iter([(0.0, 0.0), (0.1, 0.8), (0.2, 0.3), (0.05, 0.1)])  # full, sampled, sampled, full

    class Varying(contention.LoadMeter):
        def __init__(self):  # no sampler thread: the readings are made up
            pass

        def close(self):
            pass

        def read(self):
            average, peak = next(readings)
            return {"load1": 1.0, "other_cpu": average, "other_cpu_peak": peak}

    monkeypatch.setattr(contention, "LoadMeter", Varying)
    backend = loaded_backend(load(["model=tiny_mamba", *SMALL]))
    rows = generation.agreement(backend, window=8, windows=3, rounds=2, warmup_tokens=2)
    assert all(r["load"] == {"load1": 1.0, "other_cpu": 0.2, "other_cpu_peak": 0.8} for r in rows)
    assert contention.contention_reason(rows[0]["load"]).startswith("contended: other processes used 0.80 cores "
                                                                   "in its busiest second")
