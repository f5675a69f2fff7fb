"""The batch scenario: the largest batch within a budget (searched as max_seq_len searches
lengths), then tokens/s and memory per batch of 1, 2, 4, ... and that largest batch."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.backends import get_backend_class
from bench.config import ConfigError, register_configs
from bench.device import DTYPES
from bench.scenarios import batch

CONFIGS = str(Path(__file__).resolve().parent.parent / "configs")
register_configs()
TINY = ["scenario=batch", "scenario.prompt_len=64", "scenario.new_tokens=4", "scenario.repeats=1",
        "model.vocab_size=4096", "model.tokenizer=null", "+hardware@scenario.emulate=tiny_budget"]


def load(overrides=()):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


def backend_for(cfg, loaded: bool):
    backend = get_backend_class(cfg.model.impl)(cfg.model, torch.device("cpu"), DTYPES[cfg.dtype])
    if loaded:
        backend.load()
    return backend


def test_sweep_doubles_up_to_the_largest_batch():
    assert batch.sweep(1) == [1] and batch.sweep(8) == [1, 2, 4, 8] and batch.sweep(11) == [1, 2, 4, 8, 11]
    assert batch.sweep(0) == []


@pytest.mark.parametrize("override,message", [
    (["scenario.measure=gpu"], "scenario.measure: 'gpu' is not one of"),
    (["scenario.max_batch=0"], "scenario.max_batch: must be >= 1"),
])
def test_bad_settings_name_their_field(override, message):
    with pytest.raises(Exception) as e:
        load(["scenario=batch", *override])
    assert isinstance(e.value, ConfigError) or isinstance(e.value.__cause__, ConfigError)
    assert message in str(e.value)


@pytest.mark.slow  # ~20-40 s of CPU each: a search of ~8 trials, then the timed sweep
@pytest.mark.parametrize("model", ["tiny_mamba", "tiny_llama"])
def test_largest_batch_then_timed_sweep(model):
    cfg = load([f"model={model}", *TINY, "scenario.measure=cpu"])
    rows = batch.run(cfg, backend_for(cfg, loaded=True))
    (largest,) = [r for r in rows if r["metric"] == "max_batch"]
    assert largest["verdict"] == "bounded" and largest["value"] >= 2, largest
    trials = {r["batch_size"]: r for r in rows if r["metric"] == "trial_peak_bytes"}
    fit = int(largest["value"])
    # The search's answer: that batch fitted the budget, one more did not (bisected to one sequence).
    assert not trials[fit]["oom"] and trials[fit]["value"] <= largest["budget_bytes"]
    assert trials[fit + 1]["oom"] or trials[fit + 1]["value"] > largest["budget_bytes"]
    timed = [r for r in rows if r["metric"] == "decode_throughput" and r.get("stat") == "median"]
    assert [r["batch_size"] for r in timed] == batch.sweep(fit)
    assert all(r["value"] > 0 and r["source"] == "measured" for r in timed)
    state = {r["batch_size"]: r["value"] for r in rows if r["metric"] == "state_bytes"}
    assert state[2] == 2 * state[1]  # the state per sequence, times the batch


@pytest.mark.slow
def test_simulated_search_agrees_with_the_measured_one():
    """Fake tensors (memory only, no timing): the same largest batch as live tensor bytes, or one
    off (the simulation takes the last step's peak from a prefilled state instead of stepping)."""
    measured = load(["model=tiny_llama", *TINY, "scenario.measure=cpu"])
    simulated = load(["model=tiny_llama", *TINY, "scenario.measure=simulate"])
    m = batch.run(measured, backend_for(measured, loaded=True))
    s = batch.run(simulated, backend_for(simulated, loaded=False))
    largest = {r["source"]: r["value"] for r in m + s if r["metric"] == "max_batch"}
    assert abs(largest["simulated"] - largest["measured"]) <= 1, largest
    assert not [r for r in s if r["metric"].endswith("throughput")]
