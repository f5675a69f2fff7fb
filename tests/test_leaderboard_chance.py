"""Random weights are a check: lm-eval's own v2 multiple-choice tasks on the real local data.

A random model's next-token distribution is close to uniform over the 65,024 Falcon tokens, so a
continuation's log-likelihood is about -(its token count) x log V plus small noise. Hence, on
real documents through the engine's own templates, with a tiny random model of each architecture:
- acc (argmax log-likelihood) picks a choice with the fewest tokens, and acc_norm one with the
  fewest tokens per character: baselines this test computes from the data itself (each choice
  tokenized as lm-eval splits context and continuation);
- acc_norm lies within the 99% binomial interval of chance (1/choices per document);
- the leaderboard score (normalized, clipped at 0) stays below the 99th percentile it has under
  chance, and near 0.
What departed, and why: where the choices tie in tokens (BBH's "(A)".."(F)", MMLU-Pro's letters)
a random model does not break ties at random: the tiny random Mamba picked "(C)" on every BBH
document and "F" on every MMLU-Pro one (the Llama a few labels), so its accuracy is that label's
share of the gold answers. BBH's labels are not balanced, least of all
at the start of a split (8 of movie_recommendation's first 12 answers are "(C)", 28% of all 250
against 1/6), so lm-eval's `limit` (the first N) gave a random model far-above-chance subtasks.
Documents are therefore taken evenly spread over each split. Also: without a limit, each task's
document count is the real test set's size (from the engine's task objects, no model).

make test-leaderboard (slow: ~minutes on 2 cores).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.evals.normalization import BBH_NUM_CHOICES, V2_RULES, normalize

pytestmark = pytest.mark.slow

Z99 = 2.5758  # two-sided 99% normal quantile
BBH_DOCS = 12  # documents per BBH subtask: 24 x 12 = 288 documents
MMLU_PRO_DOCS = 240
# MMLU-Pro's 5 shots come from its validation split, which is not available offline: this test
# scores its real test questions zero-shot (the chance property does not depend on the shots).
MMLU_PRO_ZERO_SHOT = {"leaderboard_mmlu_pro": {"num_fewshot": 0, "fewshot_split": None}}


def _need_data():
    from bench import data

    absent = data.missing(task="leaderboard_bbh_navigate") + data.missing(task="leaderboard_mmlu_pro", fewshot=False)
    if absent:
        pytest.skip(absent[0].message)


def _items(tasks, manager, overrides=None):
    """lm-eval task specs for the given engine tasks on the local data (as the runner builds them)."""
    from bench.evals.lm_eval_runner import local_dataset

    return [{"task": t, **local_dataset(manager, t), **(overrides or {}).get(t, {})} for t in tasks]


# ----------------------------------------------------------------------------- row counts

def test_doc_counts_are_the_real_test_set_sizes():
    from bench import data
    from bench.data.catalog import BBH_SIZES, MATH_SUBJECTS
    from bench.evals.lm_eval_runner import v2_doc_counts, v2_task_manager

    _need_data()
    counts = v2_doc_counts()
    bbh = {t: n for t, n in counts.items() if t.startswith("leaderboard_bbh_")}
    assert bbh == {f"leaderboard_bbh_{s}": BBH_SIZES.get(s, 250) for s in BBH_NUM_CHOICES}
    if not data.missing(task="leaderboard_ifeval"):
        assert counts["leaderboard_ifeval"] == 541
    if not [m for _, (t, _) in V2_RULES["math_hard"].subtasks.items() for m in data.missing(task=t)]:
        math = {task: level5 for task, _, level5 in MATH_SUBJECTS.values()}
        assert {t: counts[t] for t in math} == math and sum(math.values()) == 1324
    manager = v2_task_manager()
    tasks = manager.load([{"group": "count", "task": _items(["leaderboard_mmlu_pro"], manager,
                                                             MMLU_PRO_ZERO_SHOT)}])["tasks"]
    assert len(tasks["leaderboard_mmlu_pro"].eval_docs) == 12032


# ----------------------------------------------------------------------------- chance

def _evenly(n: int, k: int) -> list[int]:
    return [i * n // k for i in range(k)]


def _poisson_binomial_interval(ps):
    """99% interval (normal approximation) of the number of successes of independent Bernoullis."""
    mean, sd = sum(ps), math.sqrt(sum(p * (1 - p) for p in ps))
    return mean - Z99 * sd, mean + Z99 * sd


@pytest.fixture(scope="module", params=["ssm", "transformer"])
def scored(request):
    return score_random_model(request.param)


def score_random_model(arch: str):
    """A tiny random model of `arch`, the Falcon tokenizer, lm-eval's BBH and MMLU-Pro (local data)."""
    from lm_eval import simple_evaluate
    from transformers import LlamaConfig, LlamaForCausalLM

    from bench.evals.lm_eval_model import TorchLM
    from bench.evals.lm_eval_runner import v2_task_manager
    from bench.tokenizers import load_tokenizer
    from models.mamba import MambaConfig, MambaLM

    _need_data()
    tok = load_tokenizer("falcon")
    torch.manual_seed(0)
    if arch == "ssm":
        model = MambaLM(MambaConfig(vocab_size=65024, hidden_size=64, num_hidden_layers=2)).eval()
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=65024, hidden_size=64, intermediate_size=128,
                                             num_hidden_layers=2, num_attention_heads=4,
                                             num_key_value_heads=2)).eval()
    lm = TorchLM(model, tok, batch_size=16)
    manager = v2_task_manager()
    bbh = [t for t, _ in V2_RULES["bbh"].subtasks.values()]
    # Documents spread evenly over each split (lm-eval's `samples`), not its first N: the first
    # documents of a BBH task can share one label (8 of movie_recommendation's first 12 are "(C)").
    from bench.data.catalog import BBH_SIZES

    spread = {f"leaderboard_bbh_{s}": _evenly(BBH_SIZES.get(s, 250), BBH_DOCS) for s in BBH_NUM_CHOICES}
    out = simple_evaluate(model=lm, tasks=[{"group": "chance", "task": _items(bbh, manager)}], task_manager=manager,
                          samples=spread, log_samples=True, bootstrap_iters=0)
    mmlu = simple_evaluate(model=lm, tasks=[{"group": "chance", "task": _items(["leaderboard_mmlu_pro"], manager,
                                                                               MMLU_PRO_ZERO_SHOT)}],
                           task_manager=manager, samples={"leaderboard_mmlu_pro": _evenly(12032, MMLU_PRO_DOCS)},
                           log_samples=True, bootstrap_iters=0)
    samples = {**out["samples"], **mmlu["samples"]}
    results = {**out["results"], **mmlu["results"]}
    return lm, samples, results


def _docs(lm, samples, tasks):
    """Per document: gold index, choice count, the picks of acc (max log-likelihood) and acc_norm (per
    character, as lm-eval: the choice without the target delimiter), the fewest-token choices."""
    rows = []
    for task in tasks:
        for s in samples[task]:
            lls = np.array([float(ll) for ll, _ in s["filtered_resps"]])
            choices = [cont[1:] for _, cont in s["arguments"]]  # continuation = " " + choice
            n_tokens = [len(lm._encode_pair(ctx, cont)[1]) for ctx, cont in s["arguments"]]
            gold = s["target"] if isinstance(s["target"], int) else choices.index(str(s["target"]))
            rows.append({"task": task, "gold": gold, "k": len(lls), "pick": int(np.argmax(lls)), "labels": choices,
                         "pick_norm": int(np.argmax(lls / np.array([len(c) for c in choices]))),
                         "fewest": [i for i, n in enumerate(n_tokens) if n == min(n_tokens)],
                         "tokens_per_char": [n / len(c) for n, c in zip(n_tokens, choices)]})
    return rows


def _tasks():
    return (("bbh", [t for t, _ in V2_RULES["bbh"].subtasks.values()], "acc_norm"),
            ("mmlu_pro", ["leaderboard_mmlu_pro"], "acc"))


def _lowest(values):
    return [i for i, v in enumerate(values) if v <= min(values) + 1e-9]


def test_picks_follow_the_token_counts_of_the_data(scored):
    """acc picks a choice with the fewest tokens, acc_norm one with the fewest tokens per character
    (both counted from lm-eval's own context/continuation split of the real documents): a target
    offset, a template or a tokenizer error would break this. Among choices that tie (the letters
    "(A)".."(F)" of BBH, "A".."J" of MMLU-Pro) the model's own small preferences decide."""
    lm, samples, _ = scored
    for name, tasks, _ in _tasks():
        docs = _docs(lm, samples, tasks)
        outside = [d for d in docs if d["pick"] not in d["fewest"]]
        assert len(outside) <= 0.01 * len(docs), f"{name}: {len(outside)}/{len(docs)} acc picks not fewest-token"
        outside = [d for d in docs if d["pick_norm"] not in _lowest(d["tokens_per_char"])]
        assert len(outside) <= 0.01 * len(docs), f"{name}: {len(outside)}/{len(docs)} acc_norm picks not fewest per char"


def test_acc_norm_is_chance(scored):
    """On documents spread over each task, acc_norm (MMLU-Pro: acc, its leaderboard metric) lies
    within the 99% binomial interval of chance, 1/choices per document, pooled over the task."""
    lm, samples, _ = scored
    for name, tasks, metric in _tasks():
        docs = _docs(lm, samples, tasks)
        hits = sum(float(s[metric]) for t in tasks for s in samples[t])
        assert hits == sum(d["gold"] == d["pick_norm" if metric == "acc_norm" else "pick"] for d in docs)
        lo, hi = _poisson_binomial_interval([1 / d["k"] for d in docs])
        assert lo <= hits <= hi, f"{name} {metric}: {hits}/{len(docs)} outside chance's [{lo:.1f}, {hi:.1f}]"


def test_leaderboard_score_is_near_zero(scored):
    """The normalized, clipped score is below its 99th percentile under chance (simulated), per task."""
    _, samples, results = scored
    rng = np.random.default_rng(0)
    bbh = {f"leaderboard_bbh_{s}": k for s, k in BBH_NUM_CHOICES.items()}
    sims = np.zeros(20000)
    scores = []
    for task, k in bbh.items():
        n = len(samples[task])
        sims += np.maximum(0, (rng.binomial(n, 1 / k, sims.size) / n - 1 / k) / (1 - 1 / k)) * 100
        scores.append(normalize(results[task]["acc_norm,none"], k))
    sims /= len(bbh)
    score = float(np.mean(scores))
    assert score <= np.quantile(sims, 0.99), f"bbh score {score:.2f} above chance's 99th percentile"
    assert score < 10
    n = len(samples["leaderboard_mmlu_pro"])
    mmlu_sims = np.maximum(0, (rng.binomial(n, 0.1, 20000) / n - 0.1) / 0.9) * 100
    mmlu = normalize(results["leaderboard_mmlu_pro"]["acc,none"], 10)
    assert mmlu <= np.quantile(mmlu_sims, 0.99) and mmlu < 5, f"mmlu_pro score {mmlu:.2f}"
