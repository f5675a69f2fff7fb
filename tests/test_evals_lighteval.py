"""lighteval in its own venv, and lighteval against lm-eval on the same documents.

Selected with `pytest -m lighteval` (make test-lighteval); deselected by `make test`. Creating
.venv-lighteval takes a few minutes once; each lighteval run here takes ~10-20 s on 2 CPU cores.

The two divergences between the engines, each pinned on our local tasks with one tiny random Mamba:
- document selection under a limit: lighteval shuffles (seed 42) and takes N, lm-eval takes the
  first N. `doc_selection="first_n"` makes lighteval score lm-eval's documents;
- acc_norm: lighteval's LogProbCharNorm counts a choice's leading space, lm-eval's does not. With
  `acc_norm_space="ignored"` both give the same acc and acc_norm on every document.
"""

import json
import random

import numpy as np
import pytest
import torch

from bench.evals.leaderboard import run_leaderboard
from bench.evals.lighteval_runner import ensure_venv, read_samples
from bench.evals.local_tasks import LOCAL_RULES, data_file, local_tokenizer
from models.mamba import MambaConfig, MambaLM

pytestmark = pytest.mark.lighteval
MC_TASKS = ("ssmb_compare", "ssmb_arithmetic")


@pytest.fixture(scope="module")
def model():
    ensure_venv()  # reuses .venv-lighteval, or runs bench/evals/lighteval_env.sh
    torch.manual_seed(0)
    return MambaLM(MambaConfig(vocab_size=512, hidden_size=32)).eval()


def _lm_eval_samples(out_dir, task):
    """lm-eval's per-sample log: doc_id -> (acc, acc_norm, loglikelihood per choice)."""
    logs = [json.loads(line) for line in (out_dir / "lm_eval" / "local" / f"samples_{task}.jsonl").open()]
    return {log["doc_id"]: (log["acc"], log["acc_norm"], [float(r[0]) for r in log["filtered_resps"]])
            for log in logs}


def _choices(task):
    rows = [json.loads(line) for line in data_file(task, "test").open()]
    return [[f" {c}" for c in row["choices"]] for row in rows]


def test_local_run_rows(model, tmp_path):
    rows = run_leaderboard(model, local_tokenizer(), "ssm", suite="local", harness="lighteval",
                           out_dir=tmp_path, limit=5, batch_size=5)
    by = {(r["task"], r["subtask"]): r for r in rows}
    assert set(by) == {(t, s) for t in LOCAL_RULES for s in ("all", t)} | {("average", "all")}
    for task in LOCAL_RULES:
        row = by[(task, task)]
        assert row["n_samples"] == 5 and 0 <= row["raw"] <= 1 and 0 <= row["normalized"] <= 100
        assert row["harness"] == "lighteval" and row["unit"] == "score"
        assert (row["doc_selection"], row["acc_norm_space"], row["fewshot_split"]) == ("first_n", "ignored", "train")
        assert row["suite_complete"] is True
    assert (tmp_path / "lighteval" / "local" / "lighteval" / "metrics.json").is_file()


def test_doc_selection(model, tmp_path):
    """first_n: lighteval scores the split's first N docs, as lm-eval does; `lighteval`: the engine's
    seed-42 shuffle (at limit 5 on 60 docs: {38, 23, 54, 11, 16})."""
    limit = 5
    tok = local_tokenizer()
    run_leaderboard(model, tok, "ssm", suite="local", harness="lm_eval", out_dir=tmp_path, limit=limit)
    run_leaderboard(model, tok, "ssm", suite="local", harness="lighteval", out_dir=tmp_path / "first",
                    limit=limit, doc_selection="first_n")
    rows = run_leaderboard(model, tok, "ssm", suite="local", harness="lighteval", out_dir=tmp_path / "shuf",
                           limit=limit, doc_selection="lighteval")
    assert {r["doc_selection"] for r in rows} == {"lighteval"}
    first, shuffled = read_samples(tmp_path / "first" / "lighteval" / "local"), read_samples(
        tmp_path / "shuf" / "lighteval" / "local")
    order = list(range(60))
    random.Random(42).shuffle(order)
    for task in (*MC_TASKS, "ssmb_boolean_expressions"):
        lm_eval_ids = [json.loads(line)["doc_id"]
                       for line in (tmp_path / "lm_eval" / "local" / f"samples_{task}.jsonl").open()]
        assert sorted(lm_eval_ids) == list(range(limit))
        assert [e["doc_id"] for e in first[task]] == list(range(limit))
        assert {e["doc_id"] for e in shuffled[task]} == set(order[:limit]) == {38, 23, 54, 11, 16}


def test_acc_norm_space(model, tmp_path):
    """All 60 docs of each multiple-choice task: with the same normalization the two engines agree
    on every document's acc and acc_norm; lighteval's default (`counted`) is its own definition:
    argmax of loglikelihood / len(choice with its leading space), from the same loglikelihoods."""
    tok = local_tokenizer()
    run_leaderboard(model, tok, "ssm", suite="local", harness="lm_eval", out_dir=tmp_path)
    for space in ("ignored", "counted"):
        rows = run_leaderboard(model, tok, "ssm", suite="local", harness="lighteval", out_dir=tmp_path / space,
                               acc_norm_space=space)
        assert {r["acc_norm_space"] for r in rows} == {space} and {r["doc_selection"] for r in rows} == {"all"}
    differ = 0
    for task in MC_TASKS:
        ref = _lm_eval_samples(tmp_path, task)
        choices = _choices(task)
        ignored = read_samples(tmp_path / "ignored" / "lighteval" / "local")[task]
        counted = read_samples(tmp_path / "counted" / "lighteval" / "local")[task]
        assert [e["doc_id"] for e in ignored] == sorted(ref) == list(range(60))
        for a, b in zip(ignored, counted):
            acc, acc_norm, lls = ref[a["doc_id"]]
            np.testing.assert_allclose(a["logprobs"], lls, rtol=0, atol=2e-4)  # same model, same requests
            assert (a["metrics"]["acc"], a["metrics"]["acc_norm"]) == (acc, acc_norm)
            assert b["metrics"]["acc"] == acc
            counted_pick = int(np.argmax([lp / len(c) for lp, c in zip(b["logprobs"], choices[a["doc_id"]])]))
            gold = json.loads(data_file(task, "test").read_text().splitlines()[a["doc_id"]])["label"]
            assert b["metrics"]["acc_norm"] == float(counted_pick == gold)
            differ += b["metrics"]["acc_norm"] != acc_norm
    print(f"acc_norm differs between the definitions on {differ} of {60 * len(MC_TASKS)} docs")
