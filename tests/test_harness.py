"""The harness core: config validation, matched baselines, atomic and resumable results, sweeps."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from bench import runner
from bench.backends import get_backend_class
from bench.config import ConfigError, register_configs
from bench.scenarios import SCENARIOS
from bench.schema import COLUMNS, MEASURED

REPO = Path(__file__).resolve().parent.parent
CONFIGS = str(REPO / "configs")
register_configs()

# Shrink what the tiny presets measure so each job takes a second or two.
FAST = ["scenario.new_tokens=24", "scenario.window=8", "scenario.repeats=1", "scenario.warmup_tokens=2",
        "scenario.progress=false", "model.vocab_size=512", "isolate=false"]


def load(overrides=()):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


# Model presets with their own vocabulary, not the matched 65024: the implementation benchmark's
# model, Mamba-130m's own (GPT-NeoX) tokenizer, and the probes' task vocabularies (set per task).
OWN_VOCAB = {"mamba_d64": 1024, "mamba_130m": 50280}


def test_every_model_preset_composes_with_matched_vocab():
    from bench.config import VISION_FAMILIES

    for path in sorted((REPO / "configs" / "model").glob("*.yaml")):
        cfg = load([f"model={path.stem}"] + (["scenario=vision"] if path.stem.startswith(("vim", "deit")) else []))
        assert cfg.model.arch in ("ssm", "transformer")
        if cfg.model.family in VISION_FAMILIES or path.stem.startswith("probe_"):
            continue
        assert cfg.model.vocab_size == OWN_VOCAB.get(path.stem, 65024), path.stem


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml")))
def test_every_job_of_every_experiment_sweep_composes_and_validates(experiment):
    """What the sweep would run, job by job (the sweeper's params expanded as the precheck does)."""
    from bench.precheck import expand

    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        params = compose(config_name="config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        sweep = OmegaConf.to_container(params.hydra.sweeper.get("params") or {})
        for job in expand([f"{k}={v}" for k, v in sweep.items()]):
            cfg = OmegaConf.to_object(compose(config_name="config", overrides=[f"experiment={experiment}", *job]))
            assert cfg.scenario.name in SCENARIOS and cfg.experiment == experiment, job


def test_every_registered_scenario_has_a_schema_and_a_module():
    from bench.config import SCENARIO_SCHEMAS

    assert set(SCENARIO_SCHEMAS) == set(SCENARIOS)
    for spec in SCENARIOS.values():
        assert callable(spec.load().run), spec.name
        assert spec.model in ("runner", "scenario", "none"), spec.name


@pytest.mark.parametrize("hardware", sorted(p.stem for p in (REPO / "configs" / "hardware").glob("*.yaml")))
def test_every_hardware_profile_composes_and_validates(hardware):
    cfg = load([f"hardware={hardware}"])
    assert cfg.hardware.name == hardware and cfg.hardware.budget_bytes > 0


# What a scenario needs beside the defaults: a vision model; the pairing optimum-benchmark runs.
NEEDS = {"vision": ["model=vim_ti"], "crosscheck": ["pairing=release"]}


@pytest.mark.parametrize("scenario", sorted(str(p.relative_to(REPO / "configs" / "scenario").with_suffix(""))
                                            for p in (REPO / "configs" / "scenario").rglob("*.yaml")))
def test_every_scenario_composes_and_validates(scenario):
    cfg = load([f"scenario={scenario}", *NEEDS.get(scenario, [])])
    assert cfg.scenario.name in SCENARIOS


@pytest.mark.parametrize("override,message", [
    (["model.weights=downloaded"], "model.weights: 'downloaded' is not one of"),
    (["dtype=int8"], "dtype: 'int8'"),
    (["scenario.prefill_mode=sideways"], "scenario.prefill_mode"),
    (["scenario.new_tokens=0"], "scenario.new_tokens: must be >= 1"),
    (["model.weights=pretrained"], "model.path: required"),
    (["model.path=/some/ckpt"], "model.path: '/some/ckpt' would be ignored with model.weights=random"),
    (["scenario=implementation", "model=tiny_llama"], "model.impl: the implementation scenario compares"),
    (["hardware.device=tpu"], "hardware.device"),
    (["hardware.kernels=tpu"], "hardware.kernels"),
    (["model=dummy", "model.impl=transformers"], "model.impl: the dummy backend and the dummy family go together"),
])
def test_impossible_values_fail_with_the_field_name(override, message):
    with pytest.raises(ConfigError, match=message):
        load(override)


@pytest.mark.parametrize("override", [["scenario.new_tokenz=5"], ["scenario.new_tokens=many"], ["model.colour=red"]])
def test_unknown_keys_and_wrong_types_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        load(override)


def test_cli_config_error_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "model=tiny_llama", "dtype=int8", f"results_dir={tmp_path}",
                          "hydra.mode=RUN"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("ssm-bench: config error: dtype: 'int8'")
    assert not [p for p in tmp_path.rglob("*") if p.is_file() or p.name.startswith("dtype")]  # no run dir left


@pytest.mark.parametrize("model", ["tiny_mamba", "tiny_llama", "tiny_mistral", "dummy"])
def test_backends_share_vocab_dtype_and_interface(model):
    cfg = load([f"model={model}"])
    backend = get_backend_class(cfg.model.impl)(cfg.model, torch.device("cpu"), torch.float32)
    backend.load()
    assert backend.vocab_size() == 65024
    logits, state = backend.prefill(torch.tensor([[1, 2, 3]]))
    assert logits.shape == (1, 65024) and logits.dtype == torch.float32
    assert backend.step(logits.argmax(-1), state).shape == (1, 65024)
    assert backend.state_nbytes(state) > 0


def test_generation_rows_are_tidy_and_memory_trends_differ(tmp_path):
    """The KV cache grows with every generated token; the SSM state does not."""
    states = {}
    for model in ("tiny_mamba", "tiny_llama"):
        # release: transformers' DynamicCache, which grows (pairing=best preallocates a StaticCache)
        cfg = load([f"model={model}", "pairing=release", *FAST, "scenario.new_tokens=64", "scenario.window=16"])
        table = runner.run_job(cfg, tmp_path / model)
        assert list(table.columns[:len(COLUMNS)]) == COLUMNS
        assert table["status"].isin(MEASURED).all() and (table["vocab_size"] == 512).all()
        windows = table[(table.metric == "window_throughput")]
        assert windows["step"].tolist() == [16, 32, 48, 64] and (windows["value"] > 0).all()
        states[model] = table[table.metric == "state_bytes"]["value"].tolist()
        medians = table[(table.metric == "decode_throughput") & (table["stat"] == "median")]
        assert len(medians) == 1 and medians["value"].iloc[0] > 0
    assert len(set(states["tiny_mamba"])) == 1  # constant
    llama = states["tiny_llama"]
    assert all(b > a for a, b in zip(llama, llama[1:]))  # growing
    # 2 layers x (k, v) x 1 KV head x 32 dims x 4 bytes per token; 64 tokens = prompt 1 + 63 steps
    assert llama[-1] == 2 * 2 * 1 * 32 * 4 * 64


@pytest.mark.parametrize("arch", ["ssm", "transformer"])
def test_dummy_backend_state_follows_its_arch(arch, tmp_path):
    """No model library involved: the harness alone shows a flat state or one growing per token."""
    cfg = load(["model=dummy", f"model.arch={arch}", *FAST, "scenario.new_tokens=32", "scenario.window=8"])
    table = runner.run_job(cfg, tmp_path)
    assert table["status"].isin(MEASURED).all() and set(table["impl"]) == {"dummy"} and set(table["arch"]) == {arch}
    states = table[table.metric == "state_bytes"]["value"].tolist()
    row = 16 * 4  # hidden_size float32s
    assert states == ([row] * 4 if arch == "ssm" else [row * n for n in (8, 16, 24, 32)])


def test_results_are_atomic_and_a_finished_run_is_skipped(tmp_path):
    cfg = load(["model=tiny_mamba", *FAST])
    first = runner.run_job(cfg, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["config.yaml", "job.log", "meta.json", "results.csv", "results.parquet"]  # no temporaries left
    assert runner.run_job(cfg, tmp_path) is None  # skipped
    cfg.skip_existing = False
    assert runner.run_job(cfg, tmp_path)["run_id"].iloc[0] != first["run_id"].iloc[0]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results.csv").iloc[:, :5],
                                  pd.read_parquet(tmp_path / "results.parquet").iloc[:, :5], check_dtype=False)


def test_interrupted_write_keeps_the_old_table(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    target.write_text("old")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        runner.write_atomic(target, b"new, half written")
    assert target.read_text() == "old"


def test_a_failed_run_leaves_a_failure_row_and_is_retried(tmp_path):
    cfg = load(["model=tiny_llama", *FAST, "model.weights=pretrained", f"model.path={tmp_path / 'nowhere'}"])
    table = runner.run_job(cfg, tmp_path / "run")
    assert table["status"].tolist() == ["failed"]
    assert "nowhere" in table["reason"].iloc[0]
    assert not runner.is_finished(tmp_path / "run")  # a rerun tries again


def test_real_multirun_runs_each_job_in_its_own_process(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench", "-m", f"results_dir={tmp_path}",
         *[o for o in FAST if not o.startswith(("isolate", "scenario.new_tokens"))],
         "isolate=true", "scenario=generation", "model=tiny_mamba,tiny_llama", "scenario.new_tokens=8,16"],
        cwd=REPO, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = sorted(tmp_path.glob("multirun/smoke/*/results.parquet"))
    assert len(runs) == 4, out.stderr[-2000:]
    table = pd.concat(pd.read_parquet(p) for p in runs)
    assert set(table["model"]) == {"tiny_mamba", "tiny_llama"} and table["status"].isin(MEASURED).all()
    assert set(table[table.metric == "decode_throughput"]["step"]) == {8, 16}


def test_doc_selection_is_lightevals_choice_only():
    assert load(["scenario=leaderboard", "scenario.harness=lighteval", "scenario.doc_selection=spread"]
                ).scenario.doc_selection == "spread"
    with pytest.raises(Exception, match="scenario.doc_selection: 'spread' chooses lighteval's documents"):
        load(["scenario=leaderboard", "scenario.doc_selection=spread"])  # lm-eval: a label only
