"""The probe scenario: task generators, the matched models, training, saved weights."""

from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.backends import get_backend_class
from bench.config import ConfigError, register_configs
from bench.device import DTYPES
from bench.probes import models, tasks
from bench.probes.train import accuracy, train
from bench.schema import PROBE_TASKS
from bench.scenarios import probe
from models.mamba import MambaConfig, MambaLM

CONFIGS = str(Path(__file__).resolve().parent.parent / "configs")
register_configs()
IGNORE = tasks.IGNORE


def load(overrides=(), scenario="probe"):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=[f"scenario={scenario}", *overrides]))


# ----------------------------------------------------------------------------- the tasks

def solve_mqar(row: torch.Tensor, pairs: int) -> dict[int, int]:
    """The answers by the rule: each key in the query region gets the value it was paired with."""
    table = {int(row[i]): int(row[i + 1]) for i in range(0, 2 * pairs, 2)}
    return {p: table[int(row[p])] for p in range(2 * pairs, len(row)) if int(row[p]) != 0}


def solve_selective_copying(row: torch.Tensor, vocab: int) -> dict[int, int]:
    markers = [p for p in range(len(row)) if int(row[p]) == vocab - 1]
    data = [int(t) for t in row[:markers[0]] if int(t) != 0]
    return dict(zip(markers, data))


def solve_induction(row: torch.Tensor, vocab: int) -> dict[int, int]:
    first = [p for p in range(len(row) - 1) if int(row[p]) == vocab - 1]
    assert len(first) == 1 and int(row[-1]) == vocab - 1
    return {len(row) - 1: int(row[first[0] + 1])}


@pytest.mark.parametrize("name,seq_len", [("mqar", 64), ("mqar", 128), ("selective_copying", 64),
                                          ("induction_heads", 64), ("induction_heads", 256)])
def test_answers_follow_from_the_inputs(name, seq_len):
    task = tasks.TASKS[name]
    inputs, targets = task.generate(100, seq_len, seed=3)
    assert inputs.shape == targets.shape == (100, seq_len)
    assert int(inputs.min()) >= 0 and int(inputs.max()) < task.vocab
    for row, target in zip(inputs, targets):
        if name == "mqar":
            answers = solve_mqar(row, seq_len // 16)
            assert len(answers) == seq_len // 16  # every key asked once
        elif name == "selective_copying":
            answers = solve_selective_copying(row, task.vocab)
            assert len(answers) == 8
        else:
            answers = solve_induction(row, task.vocab)
        asked = {p: int(target[p]) for p in range(seq_len) if int(target[p]) != IGNORE}
        assert asked == answers


def test_tasks_are_seeded_and_listed_once():
    assert tuple(tasks.TASKS) == PROBE_TASKS
    task = tasks.TASKS["mqar"]
    assert torch.equal(task.generate(8, 64, 1)[0], task.generate(8, 64, 1)[0])
    assert not torch.equal(task.generate(8, 64, 1)[0], task.generate(8, 64, 2)[0])


@pytest.mark.parametrize("name", PROBE_TASKS)
def test_test_set_is_held_out(name):
    task = tasks.TASKS[name]
    (train_x, _), tests = tasks.train_test(task, 64, 2000, 300, seed=0, test_lengths=(128,))
    assert set(tests) == {64, 128}
    train_rows = tasks.row_digests(train_x)
    assert not train_rows & tasks.row_digests(tests[64][0])
    assert len(tests[64][0]) > 250  # held out, not emptied


def test_held_out_drops_sequences_seen_in_training():
    inputs, targets = tasks.TASKS["induction_heads"].generate(10, 32, seed=5)
    seen = tasks.row_digests(inputs[[2, 7]])
    kept, kept_targets = tasks.held_out(inputs, targets, seen)
    assert len(kept) == 8 and not tasks.row_digests(kept) & seen
    assert torch.equal(kept_targets, targets[[0, 1, 3, 4, 5, 6, 8, 9]])


# ----------------------------------------------------------------------------- the models

@pytest.mark.parametrize("family", ["mamba", "falcon_mamba"])
def test_training_forward_is_the_in_repo_forward(family):
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(model_type=family, hidden_size=32, num_hidden_layers=2, vocab_size=64))
    ids = torch.randint(0, 64, (3, 40))
    expected = models.eval_logits(model, ids)
    got = models.training_logits(model, ids)
    assert got.requires_grad
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_scan_gradient():
    shape = (2, 6, 3, 4)
    decay = torch.rand(shape, dtype=torch.double, requires_grad=True)
    inputs = torch.randn(shape, dtype=torch.double, requires_grad=True)
    C = torch.randn(2, 6, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(models.LinearScan.apply, (decay, inputs, C))


@pytest.mark.parametrize("d_model", [64, 128])
@pytest.mark.parametrize("name", PROBE_TASKS)
@pytest.mark.parametrize("other", ["probe_llama", "probe_mistral"])
def test_parameter_counts_match_within_ten_percent(name, d_model, other):
    counts = {}
    for model in ("probe_mamba", other):
        cfg = load([f"model={model}", f"scenario.task={name}", f"scenario.d_model={d_model}"])
        built = build(cfg)
        counts[model] = sum(p.numel() for p in built.model.parameters())
        assert built.num_params() == counts[model]
    assert models.param_ratio(*counts.values()) <= 1.10, counts


def build(cfg):
    task = tasks.TASKS[cfg.scenario.task]
    arch = models.architecture(cfg.model, cfg.scenario.d_model, task.vocab, 4 * cfg.scenario.seq_len)
    backend = get_backend_class(cfg.model.impl)(models.with_architecture(cfg.model, arch, task.vocab),
                                                torch.device("cpu"), DTYPES[cfg.dtype])
    backend.load()
    models.init_for_training(backend.model)
    return backend


def test_the_scenario_owns_width_and_vocabulary():
    cfg = load(["model=probe_llama", "+model.architecture.hidden_size=32"])
    with pytest.raises(ConfigError, match="model.architecture.hidden_size"):
        models.architecture(cfg.model, 64, 16, 64)


@pytest.mark.parametrize("override,message", [
    (["scenario.task=copying"], "scenario.task: 'copying' is not one of"),
    (["scenario.lr=0"], "scenario.lr: must be > 0"),
    (["scenario.extrapolate=[1]"], "scenario.extrapolate"),
    (["model=probe_mamba", "dtype=bfloat16"], "dtype: 'bfloat16' is not one of ['float32']"),
])
def test_bad_settings_name_their_field(override, message):
    with pytest.raises(Exception) as e:
        load(override)
    assert isinstance(e.value, ConfigError) or isinstance(e.value.__cause__, ConfigError)
    assert message in str(e.value)


# ----------------------------------------------------------------------------- training

@pytest.mark.parametrize("model", ["probe_llama", pytest.param("probe_mamba", marks=pytest.mark.slow)])  # its step costs ~4x the Llama's
def test_a_short_training_run_lowers_the_loss(model):
    cfg = load([f"model={model}", "scenario.task=mqar", "scenario.d_model=32", "scenario.seq_len=32"])
    backend = build(cfg)
    task = tasks.TASKS["mqar"]
    inputs, targets = task.generate(16 * 100, 32, seed=0)
    result = train(backend.model, inputs, targets, steps=100, batch_size=16, lr=3e-3, weight_decay=0.1,
                   warmup_steps=10, seed=0, progress=False)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < first - 0.2, (first, last)  # ln(256) = 5.55 at the start
    assert result.tokens == 100 * 16 * 32 and result.seconds > 0


def test_the_mamba_trains_from_mamba_ssm_init():
    """The in-repo init (std 0.02 everywhere) leaves the SSM's gradients below AdamW's eps (1e-8),
    so its mixers would not move; the training init gives every mixer parameter more."""
    inputs, targets = tasks.TASKS["mqar"].generate(16, 64, seed=0)

    def smallest_mixer_gradient(model):
        loss = torch.nn.functional.cross_entropy(models.training_logits(model, inputs).flatten(0, 1),
                                                 targets.flatten(), ignore_index=IGNORE)
        loss.backward()
        return min(float(p.grad.abs().max()) for name, p in model.named_parameters() if ".mixer." in name)

    torch.manual_seed(0)
    model = MambaLM(MambaConfig(hidden_size=64, num_hidden_layers=2, vocab_size=256))
    assert smallest_mixer_gradient(model) < 1e-10  # what the training init is for
    model.zero_grad()
    models.init_for_training(model)
    assert smallest_mixer_gradient(model) > 1e-8


TINY_JOB = ["scenario.task=induction_heads", "scenario.seq_len=32", "scenario.d_model=16", "scenario.steps=6",
            "scenario.batch_size=16", "scenario.test_examples=64", "scenario.extrapolate=[2]", "scenario.progress=false"]


@pytest.fixture(scope="module", params=["probe_mamba", "probe_llama"])
def trained_probe(request, tmp_path_factory):
    """One tiny probe job per architecture: (its config, its rows, its weights directory)."""
    out = tmp_path_factory.mktemp(request.param)
    cfg = load([f"model={request.param}", *TINY_JOB])
    backend = get_backend_class(cfg.model.impl)(cfg.model, torch.device("cpu"), DTYPES[cfg.dtype])
    return cfg, pd.DataFrame(probe.run(cfg, backend, out)), out / probe.WEIGHTS


def load_saved(cfg, weights, scenario="probe", overrides=()):
    """The saved weights as another scenario loads them (the README's route), loaded."""
    again = load([f"model={cfg.model.name}", "model.weights=pretrained", f"model.path={weights}",
                  f"model.vocab_size={tasks.TASKS[cfg.scenario.task].vocab}", "model.match_vocab=false", *overrides],
                 scenario=scenario)
    backend = get_backend_class(again.model.impl)(again.model, torch.device("cpu"), torch.float32)
    backend.load()
    return again, backend


def test_the_job_saves_weights_that_reload_to_the_same_accuracy(trained_probe):
    """The whole scenario on a tiny run: rows, the weights directory, and a strict reload through
    the backend (model.weights=pretrained) that scores exactly what the job recorded."""
    cfg, rows, weights = trained_probe
    acc = rows[rows["metric"] == "accuracy"].set_index("test_len")
    assert list(acc.index) == [32, 64]
    assert (acc["value"] == acc["reloaded_accuracy"]).all()
    assert set(rows["metric"]) == {"accuracy", "train_loss", "train_time", "train_throughput"}
    assert rows["params"].nunique() == 1 and rows["params"].iloc[0] > 0

    # Reloaded again, from outside the job, as another scenario would load it.
    assert (weights / "model.safetensors").is_file()
    _, again = load_saved(cfg, weights)
    _, tests = tasks.train_test(tasks.TASKS["induction_heads"], 32, 6 * 16, 64, cfg.seed, (64,))
    for length, test in tests.items():
        assert accuracy(again.model, *test)[0] == acc.loc[length, "value"]


def test_the_generation_scenario_runs_on_the_saved_weights(trained_probe):
    """The generation scenario on a trained probe, loaded by the README's route: its rows come from
    the trained model (its parameter count), and the decode it times (prefill, then one cached step
    per token) produces the tokens the trained model's own forward predicts."""
    from bench.scenarios import generation
    from safetensors.torch import load_file

    cfg, rows, weights = trained_probe
    gen, backend = load_saved(cfg, weights, scenario="generation",
                              overrides=["scenario.new_tokens=12", "scenario.window=4", "scenario.repeats=1",
                                         "scenario.warmup_tokens=0", "scenario.progress=false"])
    saved = load_file(weights / "model.safetensors")
    loaded = backend.model.state_dict()
    assert saved and all(torch.equal(loaded[name], tensor) for name, tensor in saved.items())
    assert backend.num_params() == rows["params"].iloc[0]

    out = pd.DataFrame(generation.run(gen, backend))
    decode = out[(out["metric"] == "decode_throughput") & out["stat"].isna()]
    assert len(decode) == 1 and decode["value"].iloc[0] > 0

    ids = generation.random_prompt(backend, gen.scenario, gen.seed)
    with torch.inference_mode():
        logits, state = backend.prefill(ids)
        for _ in range(10):  # greedy, as the scenario decodes
            token = logits.argmax(dim=-1)
            ids = torch.cat([ids, token.reshape(len(ids), -1)[:, -1:]], dim=1)
            logits = backend.step(token, state)
    expected = models.eval_logits(backend.model, ids[:, :-1]).argmax(-1)[:, gen.scenario.prompt_len - 1:]
    assert torch.equal(ids[:, gen.scenario.prompt_len:], expected)


def test_the_report_calls_the_probes_weights_trained(trained_probe, tmp_path):
    """config.yaml says model.weights=random (what the job started from); the report must keep the
    rows' own "trained", not call a trained model's accuracy a random model's."""
    from bench.report.load import read_run
    from bench.runner import to_table

    cfg, rows, _ = trained_probe
    to_table(rows.to_dict("records"), cfg, "run").to_parquet(tmp_path / "results.parquet")
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    assert cfg.model.weights == "random"
    assert set(read_run(tmp_path).rows["weights"]) == {"trained"}
    # nor claim a KV cache or decode path: training and scoring run whole sequences
    table = to_table(rows.to_dict("records"), cfg, "run")
    assert table["kv_cache"].isna().all() and table["decode_path"].isna().all()


def test_a_changed_score_after_reload_is_invalid():
    from bench.backends.base import InvalidOutput

    probe.check_reload({64: 0.5}, {64: 0.5})
    with pytest.raises(InvalidOutput, match="reloaded weights score"):
        probe.check_reload({64: 0.5}, {64: 0.49})


# ----------------------------------------------------------------------------- the report

def probe_rows():
    rows = []
    for model, arch in (("probe_mamba", "ssm"), ("probe_llama", "transformer")):
        for lr, scale in ((3e-3, 0.5), (1e-2, 1.0)):
            for task, seq_len, lengths in (("mqar", 64, [64]), ("induction_heads", 64, [64, 128, 256, 1024])):
                for length in lengths:
                    value = scale * (0.95 if arch == "ssm" else 0.6) * (1 if length == seq_len else 0.5)
                    rows.append({"scenario": "probe", "model": model, "arch": arch, "task": task, "seq_len": seq_len,
                                 "d_model": 64, "lr": lr, "params": 1000, "metric": "accuracy", "value": value,
                                 "test_len": length, "status": "ok", "source": "measured"})
    return pd.DataFrame(rows)


def test_report_keeps_the_best_learning_rate_and_states_the_mqar_verdict():
    from bench.report import probes as report

    best = report.best_lr(probe_rows())
    assert len(best) == 4 and set(best["lr"]) == {1e-2}
    assert all(list(r["lr_grid"]) == [3e-3, 1e-2] for _, r in best.iterrows())
    text = " ".join(i for i in report.section_items(probe_rows()) if isinstance(i, str))
    assert "probe_mamba (1k params) 95.0% (lr 0.01)" in text and "reached by probe_mamba." in text
    assert report.plot_accuracy_vs_length(probe_rows()) is not None
    assert report.plot_extrapolation(probe_rows()) is not None
