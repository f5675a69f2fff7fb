"""v1 suite: published scores in the report, the v1 task table, and (lighteval mark) real runs.

The report part is fast and runs in `make test`. The runs need .venv-lighteval and the real data
of `make data`; they are marked `lighteval` (make test-lighteval); the random-weights check over a
few hundred real documents per task is also `slow`.
"""

import json
import math

import pandas as pd
import pytest

from bench.data.catalog import SPLITS
from bench.evals.lighteval_runner import V1_RULES, V1_TASKS
from bench.evals.published import load_published
from bench.report import leaderboard, plots, sections


TRUTHFULQA_WHY = ("v1 task 'truthfulqa' skipped: missing data file "
                  "data/hub/truthfulqa__truthful_qa/multiple_choice/validation.parquet (...)")


def _measured(suite="v1", tasks=("arc", "hellaswag", "winogrande"), metric="acc_norm", complete=True):
    rows = []
    for task in tasks:
        rows.append({"scenario": "leaderboard", "model": "tiny_mamba", "suite": suite, "harness": "lighteval",
                     "task": task, "subtask": "all", "metric": metric, "value": 25.0, "normalized": 25.0,
                     "unit": "score", "source": "measured", "status": "ok", "suite_complete": complete})
    rows.append({**rows[-1], "task": "average", "metric": "score",
                 "missing_tasks": None if complete else "truthfulqa",
                 "missing_why": None if complete else json.dumps({"truthfulqa": TRUTHFULQA_WHY})})
    return pd.DataFrame(rows)


def test_published_rows_beside_measured():
    d = leaderboard.with_published(_measured())
    pub = d[d["source"] == "published"]
    expected = load_published().query("suite == 'v1'")
    assert len(pub) == len(expected) == 4 * 7 and set(pub["suite"]) == {"v1"}
    falcon = pub[pub["model"] == "Falcon Mamba 7B"].set_index("task")["value"]
    assert falcon["arc"] == 62.03 and falcon["average"] == 64.09
    assert set(pub["subtask"]) == {"all"} and set(pub["status"]) == {"ok"}
    # the local suite has no published scores; rows already holding published ones are left alone
    assert leaderboard.with_published(_measured(suite="local")).equals(_measured(suite="local"))
    assert len(leaderboard.with_published(d)) == len(d)


def test_section_and_plot_show_published():
    d = _measured(complete=False)
    section = sections._leaderboard(d)
    table = next(i for i in section.items if isinstance(i, pd.DataFrame))
    assert "published" in set(table["source"]) and "measured" in set(table["source"])
    assert any("Falcon Mamba 7B" in str(m) for m in table["model"])
    notes = next(i for i in section.items if isinstance(i, list))
    assert not any(n.startswith("v1 arc") or n.startswith("v1 hellaswag") for n in notes)  # same metric
    assert any("winogrande: measured acc_norm; the published score is acc" in n for n in notes)
    assert any("v1: partial suite (3 of 4 tasks): its measured average leaves out truthfulqa" in n and "truthfulqa" in n for n in notes)
    assert "v1 truthfulqa not measured: " + TRUTHFULQA_WHY in notes  # which file to provide
    # suite_complete in words (never 1/0), scores with two decimals as published (15.04, not 15)
    assert set(table.loc[table["source"] == "measured", "suite_complete"]) == {"partial (3 of 4 tasks)"}
    assert not set(table["suite_complete"]) & {"0", "1", "False", "True"}
    falcon = table[(table["model"].str.contains("Falcon Mamba 7B")) & (table["source"] == "published")]
    assert falcon["arc"].tolist() == ["62.03"] and table.loc[table["source"] == "measured", "arc"].tolist() == ["25.00"]
    fig = plots.plot_leaderboard(d)
    hatched = [p for p in fig.axes[0].patches if p.get_hatch() and math.isfinite(p.get_height())]
    assert len(hatched) == 4 * 7  # each published model's 7 v1 scores, hatched
    solid = [p for p in fig.axes[0].patches if not p.get_hatch() and math.isfinite(p.get_height())]
    assert len(solid) == 4  # the measured ones


def test_suite_coverage_in_words():
    """complete, partial for want of data (N of M tasks, naming what is missing), or a chosen subset."""
    from bench.report import findings

    assert set(leaderboard.coverage(_measured())["suite_complete"]) == {"complete (3 of 3 tasks)"}
    assert set(leaderboard.coverage(_measured(complete=False))["suite_complete"]) == {"partial (3 of 4 tasks)"}
    subset = _measured(complete=False).assign(missing_tasks=None, missing_why=None)
    assert set(leaderboard.coverage(subset)["suite_complete"]) == {"partial (3 tasks chosen)"}
    (entry,) = leaderboard.suite_coverage(_measured(complete=False))
    assert entry["ran"] == ["arc", "hellaswag", "winogrande"] and entry["missing"] == {"truthfulqa": TRUTHFULQA_WHY}
    d = _measured(complete=False).assign(weights="random")
    (line, *_) = findings._leaderboard(d)
    assert "v1 partial (3 of 4 tasks), no data for truthfulqa" in line and "25.00" in line


# ----------------------------------------------------------------------------- runs (lighteval mark)

Z99 = 2.5758  # two-sided 99% normal quantile


def _interval(ps):
    """99% interval of the mean of independent Bernoulli(p_i) (normal approximation): the fraction
    correct when document i is right with probability p_i."""
    n = len(ps)
    mean, sd = sum(ps) / n, math.sqrt(sum(p * (1 - p) for p in ps)) / n
    return mean - Z99 * sd, mean + Z99 * sd


def _tiny_random(vocab_size):
    import torch

    from models.mamba import MambaConfig, MambaLM

    torch.manual_seed(0)
    return MambaLM(MambaConfig(vocab_size=vocab_size, hidden_size=32)).eval()


def _need_data(tasks):
    from bench import data

    for task in tasks:
        for engine_task in V1_TASKS[task].subtasks.values():
            absent = data.missing(task=engine_task, fewshot=False)
            if absent:
                pytest.skip(absent[0].message)


@pytest.mark.lighteval
def test_v1_small_limit_runs_engine_tasks(tmp_path):
    """The v1 suite end to end at limit 2 on the real data, tiny random Mamba and the Falcon tokenizer:
    every task with data runs through lighteval's own config, TruthfulQA (no data here) is skipped
    and the suite marked partial; MMLU's score is the plain mean of its 57 subjects."""
    from bench.evals.leaderboard import run_leaderboard
    from bench.evals.lighteval_runner import read_samples
    from bench.tokenizers import load_tokenizer

    _need_data(["arc", "winogrande", "mmlu"])
    tok = load_tokenizer("falcon")
    rows = run_leaderboard(_tiny_random(len(tok)), tok, "ssm", suite="v1", harness="lighteval", out_dir=tmp_path,
                           limit=2, batch_size=4, tasks=["arc", "winogrande", "mmlu", "truthfulqa"])
    by = {(r["task"], r["subtask"]): r for r in rows}
    assert {t for t, _ in by} == {"arc", "winogrande", "mmlu", "average"}
    assert {r["suite_complete"] for r in rows} == {False} and by[("average", "all")]["missing_tasks"] == "truthfulqa"
    assert by[("arc", "arc")]["metric"] == "acc_norm" and by[("winogrande", "winogrande")]["metric"] == "acc"
    assert by[("arc", "all")]["fewshot_split"] == "test"  # ARC's train split is not to be had offline
    assert by[("mmlu", "anatomy")]["fewshot_split"] == "dev" and by[("mmlu", "all")]["n_samples"] == 2 * 57
    subjects = [r["raw"] for r in rows if r["task"] == "mmlu" and r["subtask"] != "all"]
    assert len(subjects) == 57 and by[("mmlu", "all")]["raw"] == pytest.approx(sum(subjects) / 57)
    assert {r["doc_selection"] for r in rows} == {"first_n"} and {r["acc_norm_space"] for r in rows} == {"counted"}
    samples = read_samples(tmp_path / "lighteval" / "v1")
    assert [e["doc_id"] for e in samples["arc:challenge"]] == [0, 1]
    assert all(len(e["logprobs"]) in (3, 4, 5) for e in samples["arc:challenge"])


def _baselines(entry: dict) -> dict:
    """One v1 sample: its gold, the argmax picks of acc and of acc_norm (log-prob per character of
    the choice, the leading space counted: lighteval's LogProbCharNorm default), and the choices a
    random model picks: those with the fewest tokens, and with the fewest tokens per character."""
    lls, tokens = entry["logprobs"], entry["n_tokens"]
    chars = [len(c) for c in entry["choices"]]
    assert len(tokens) == len(chars) == len(lls), entry["doc_id"]
    per_char = [t / c for t, c in zip(tokens, chars)]
    gold = entry["gold"][0] if isinstance(entry["gold"], list) else entry["gold"]
    return {"gold": gold, "chars": chars,
            "pick": max(range(len(lls)), key=lambda i: lls[i]),
            "pick_norm": max(range(len(lls)), key=lambda i: lls[i] / chars[i]),
            "fewest": [i for i, t in enumerate(tokens) if t == min(tokens)],
            "fewest_per_char": [i for i, r in enumerate(per_char) if r <= min(per_char) + 1e-12]}


# Documents per task for the random-weights check, spread evenly over each split. ARC is fewer: at
# its 25 shots a prompt is ~2,000 tokens, and lighteval takes the log-softmax of the 65,024-token
# logits at every position of every choice (~2 GB a document), seconds of CPU each.
CHANCE_DOCS = {"arc": 150, "winogrande": 300, "hellaswag": 150}


@pytest.mark.lighteval
@pytest.mark.slow
def test_random_weights_score_chance(tmp_path):
    """Random weights are a check: a random model's loglikelihood of a choice is ~ -log(vocab) per
    token, so acc picks a choice with the fewest tokens and acc_norm one with the fewest tokens per
    character (ties split evenly). On documents spread evenly over each multiple-choice task, at the
    engine's own shots, every pick must be such a choice, and acc and acc_norm must lie in the 99%
    interval of those baselines, computed from the documents themselves with lighteval's own split
    of context and choice. Chance (1 / choices) is printed beside them: the baselines are not
    chance where the data's gold answers are not average in length. ARC's are longer in characters
    per token: measured on 150 docs, acc_norm 0.340 against the per-character baseline's mean
    0.329, chance 0.25 (its 99% interval tops at 0.341). lighteval 0.13's HellaSwag and MMLU are
    generative (a letter, exact match): a random model scores at most chance there."""
    import time

    import torch

    from bench.evals.leaderboard import run_leaderboard
    from bench.evals.lighteval_runner import read_samples
    from bench.tokenizers import load_tokenizer

    _need_data(CHANCE_DOCS)
    tok = load_tokenizer("falcon")
    model = _tiny_random(len(tok))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the worker's too: tiny ops, and a shared machine (see experiment/leaderboard.yaml)
    samples, start = {}, time.perf_counter()
    try:
        for task, limit in CHANCE_DOCS.items():
            rows = run_leaderboard(model, tok, "ssm", suite="v1", harness="lighteval", out_dir=tmp_path / task,
                                   limit=limit, batch_size=4, tasks=[task], doc_selection="spread")
            assert {r["doc_selection"] for r in rows} == {"spread"}
            samples.update(read_samples(tmp_path / task / "lighteval" / "v1"))
    finally:
        torch.set_num_threads(threads)
    print(f"random-weights check: {sum(CHANCE_DOCS.values())} docs in {time.perf_counter() - start:.0f} s")
    for name, task in (("arc:challenge", "arc"), ("winogrande", "winogrande")):
        entries = samples[name]
        size = next(e.rows for e in SPLITS if e.task == name and not e.fewshot)
        assert [e["doc_id"] for e in entries] == [i * size // CHANCE_DOCS[task] for i in range(CHANCE_DOCS[task])]
        docs = [_baselines(e) for e in entries]
        for metric, pick, baseline in (("acc", "pick", "fewest"), ("acc_norm", "pick_norm", "fewest_per_char")):
            # every pick is one the token counts predict (lighteval's own split of context and choice)
            outside = sum(d[pick] not in d[baseline] for d in docs)
            assert outside <= 0.01 * len(docs), f"{name} {metric}: {outside}/{len(docs)} picks not {baseline}"
            assert all(e["metrics"][metric] == (d[pick] == d["gold"]) for e, d in zip(entries, docs))
            score = sum(e["metrics"][metric] for e in entries) / len(entries)
            lo, hi = _interval([(d["gold"] in d[baseline]) / len(d[baseline]) for d in docs])
            c_lo, c_hi = _interval([1 / len(d["chars"]) for d in docs])
            print(f"{name}: {metric} {score:.3f}; {baseline} baseline 99% [{lo:.3f}, {hi:.3f}]; "
                  f"chance 99% [{c_lo:.3f}, {c_hi:.3f}] over {len(docs)} docs")
            assert lo <= score <= hi, f"{name} {metric}"
    entries = samples["hellaswag"]
    em = sum(e["metrics"]["em"] for e in entries) / len(entries)
    print(f"hellaswag: em {em:.3f}, chance 0.25, 99% upper {_interval([0.25] * len(entries))[1]:.3f} "
          f"over {len(entries)} docs")
    assert em <= _interval([0.25] * len(entries))[1]


def test_missing_v1_data_is_skipped_with_its_file(tmp_path):
    """A v1 task whose scored split is not on disk is skipped with one line naming the file to provide."""
    from bench.evals.lighteval_runner import _data_root, _layout_v1

    with _data_root(tmp_path):  # an empty data root: nothing built
        plan, rules, skipped = _layout_v1(tmp_path / "out", ["truthfulqa", "arc"])
    assert plan == [] and rules == {}
    assert set(skipped) == {"truthfulqa", "arc"}
    assert "truthfulqa__truthful_qa/multiple_choice/validation.parquet" in skipped["truthfulqa"]
    assert "Hugging Face Hub" in skipped["truthfulqa"]  # cannot be built offline: says where it comes from
    assert "make data" in skipped["arc"] and "\n" not in skipped["arc"]


def test_v1_rules():
    assert set(V1_RULES) == {"arc", "hellaswag", "mmlu", "truthfulqa", "winogrande", "gsm8k"}
    assert {t: r.fewshot for t, r in V1_TASKS.items()} == {"arc": 25, "hellaswag": 10, "mmlu": 5, "truthfulqa": 0,
                                                            "winogrande": 5, "gsm8k": 5}
    assert len(V1_RULES["mmlu"].subtasks) == 57
    assert all(n is None for r in V1_RULES.values() for _, n in r.subtasks.values())  # v1: raw x 100


@pytest.mark.lighteval
def test_v1_configs_are_the_engines_own():
    """In .venv-lighteval: each v1 task's config is lighteval's registry config with only its data
    location changed (prompt function, shots selection, generation, splits scored, metrics kept;
    acc_norm added where the engine scores a bare loglikelihood accuracy)."""
    import subprocess

    from bench.evals.lighteval_runner import ROOT, ensure_venv

    names = {t: list(v.subtasks.values())[:2] for t, v in V1_TASKS.items()}
    script = f"""
import dataclasses, sys
sys.path.insert(0, {str(ROOT / 'bench' / 'evals')!r})
from lighteval_tasks import engine_config, engine_task
for task, (module, names, split) in {({t: (v.module, names[t], v.eval_split) for t, v in V1_TASKS.items()})!r}.items():
    for name in names:
        cfg = engine_config(module, name)
        assert cfg.evaluation_splits == (split,), (name, cfg.evaluation_splits)
        local = engine_task(module, name, "/nowhere", [split], "counted")
        changed = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(local, f.name)]
        assert set(changed) <= {{"hf_repo", "hf_avail_splits", "few_shots_split", "metrics"}}, (name, changed)
        assert local.prompt_function is cfg.prompt_function and local.hf_subset == cfg.hf_subset
        assert local.metrics[:len(cfg.metrics)] == cfg.metrics
        extra = [m.metric_name for m in local.metrics[len(cfg.metrics):]]
        assert extra == (["acc_norm"] if [m.metric_name for m in cfg.metrics] == ["acc"] else []), (name, extra)
        print(name, [m.metric_name for m in local.metrics])
"""
    proc = subprocess.run([str(ensure_venv()), "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "arc:challenge ['acc', 'acc_norm']" in out and "winogrande ['acc', 'acc_norm']" in out
    assert "hellaswag ['em']" in out and "mmlu:abstract_algebra ['em']" in out and "gsm8k ['extractive_match']" in out
