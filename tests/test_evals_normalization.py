"""Open LLM Leaderboard v2 normalization: every rule pinned by hand-computed values."""

import pytest

from bench.evals.normalization import (BBH_NUM_CHOICES, MUSR_NUM_CHOICES, V2_RULES, average, normalize,
                                       raw_value, score)
from bench.evals.rows import rows_from_metrics


def test_normalize_formula():
    assert normalize(0.25, 4) == 0.0  # random guessing scores 0
    assert normalize(1.0, 4) == 100.0
    assert normalize(0.5, 4) == pytest.approx(100 / 3)  # (0.5 - 0.25) / 0.75
    assert normalize(0.1, 4) == 0.0  # below the baseline: clipped
    assert normalize(0.3, 10) == pytest.approx(200 / 9)  # (0.3 - 0.1) / 0.9
    assert normalize(0.42, None) == pytest.approx(42.0)  # no baseline


def test_bbh_choice_table():
    assert len(BBH_NUM_CHOICES) == 24
    assert min(BBH_NUM_CHOICES.values()) == 2 and max(BBH_NUM_CHOICES.values()) == 19
    assert BBH_NUM_CHOICES["object_counting"] == 19 and BBH_NUM_CHOICES["reasoning_about_colored_objects"] == 18
    assert BBH_NUM_CHOICES["geometric_shapes"] == 11 and BBH_NUM_CHOICES["date_understanding"] == 6


def test_bbh_normalizes_each_subtask_then_plain_mean():
    raw = {s: 0.5 for s in BBH_NUM_CHOICES}
    raw["object_counting"] = 1.0  # 100
    raw["boolean_expressions"] = 0.4  # below 1/2: 0
    # 0.5 with n choices -> (0.5 - 1/n) / (1 - 1/n) * 100 = (n/2 - 1) / (n - 1) * 100
    expected = {s: (n / 2 - 1) / (n - 1) * 100 for s, n in BBH_NUM_CHOICES.items()}
    expected["object_counting"], expected["boolean_expressions"] = 100.0, 0.0
    assert score(V2_RULES["bbh"], raw) == pytest.approx(sum(expected.values()) / 24)


def test_gpqa_mean_then_normalize():
    raw = {"diamond": 0.20, "extended": 0.30, "main": 0.40}  # mean 0.30 -> (0.30 - 0.25) / 0.75
    assert score(V2_RULES["gpqa"], raw) == pytest.approx(20 / 3)
    # normalizing first would clip diamond to 0 and give (0 + 6.667 + 20) / 3 = 8.889: not the rule
    assert score(V2_RULES["gpqa"], raw) != pytest.approx(8.888888)


def test_musr_per_subtask_baselines():
    raw = {"murder_mysteries": 0.6, "object_placements": 0.4, "team_allocation": 0.5}
    # (0.6 - 1/2) / (1/2) = 20; (0.4 - 1/5) / (4/5) = 25; (0.5 - 1/3) / (2/3) = 25
    assert MUSR_NUM_CHOICES == {"murder_mysteries": 2, "object_placements": 5, "team_allocation": 3}
    assert score(V2_RULES["musr"], raw) == pytest.approx((20 + 25 + 25) / 3)


def test_math_plain_mean_no_baseline():
    raw = dict(zip(V2_RULES["math_hard"].subtasks, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert score(V2_RULES["math_hard"], raw) == pytest.approx(30.0)  # not weighted by subset size


def test_mmlu_pro_ten_choices():
    assert score(V2_RULES["mmlu_pro"], {"mmlu_pro": 0.325}) == pytest.approx(25.0)  # (0.325 - 0.1) / 0.9


def test_ifeval_mean_of_strict_metrics():
    rule = V2_RULES["ifeval"]
    metrics = {"inst_level_strict_acc": 0.4, "prompt_level_strict_acc": 0.3, "inst_level_loose_acc": 0.9}
    assert raw_value(rule, metrics) == pytest.approx(0.35)
    assert score(rule, {"ifeval": 0.35}) == pytest.approx(35.0)


def test_average_is_plain_mean_of_six():
    scores = {"ifeval": 33.36, "bbh": 19.88, "math_hard": 3.63, "gpqa": 8.05, "musr": 10.86, "mmlu_pro": 14.47}
    assert average(scores) == pytest.approx(15.04, abs=0.01)  # Falcon Mamba 7B's published average
    with pytest.raises(KeyError, match="missing"):
        average({"bbh": 1.0})


def test_missing_subtask_is_an_error():
    with pytest.raises(KeyError, match="team_allocation"):
        score(V2_RULES["musr"], {"murder_mysteries": 0.6, "object_placements": 0.4})


def test_rows_from_lm_eval_style_metrics():
    """Subtask rows, task rows with the leaderboard score, and the average, from per-task metrics."""
    per_task = {}
    for rule in V2_RULES.values():
        for subtask, (name, _) in rule.subtasks.items():
            per_task[name] = {"metrics": {m: 0.5 for m in rule.metrics}, "stderr": {m: 0.01 for m in rule.metrics},
                              "n_samples": 10}
    rows = rows_from_metrics(V2_RULES, per_task, harness="lm_eval")
    by = {(r["task"], r["subtask"]): r for r in rows}
    assert by[("gpqa", "all")]["normalized"] == pytest.approx(100 / 3)
    assert by[("gpqa", "diamond")]["stderr"] == pytest.approx(1.0)  # x 100, like the score
    assert by[("ifeval", "all")]["normalized"] == pytest.approx(50.0)
    assert by[("musr", "all")]["n_samples"] == 30
    assert by[("mmlu_pro", "all")]["value"] == by[("mmlu_pro", "all")]["normalized"]
    assert {r["unit"] for r in rows} == {"score"}
    task_scores = {t: by[(t, "all")]["normalized"] for t in V2_RULES}
    assert by[("average", "all")]["normalized"] == pytest.approx(average(task_scores))
