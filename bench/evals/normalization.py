"""Open LLM Leaderboard score normalization, from per-subtask raw scores.

Hugging Face Open LLM Leaderboard v2 ("Scores normalization" in the leaderboard docs):

    normalized = max(0, (raw - baseline) / (1 - baseline)) * 100,   baseline = 1 / num_choices

so random guessing scores 0 and a perfect model 100. Per benchmark:

| task     | raw metric                                  | how                                                       |
| -------- | ------------------------------------------- | --------------------------------------------------------- |
| IFEval   | inst_level_strict_acc, prompt_level_strict_acc | mean of the two x 100, no baseline                     |
| BBH      | acc_norm, 24 subtasks                       | each normalized with its own choice count (2..19), then mean |
| MATH Lvl5| exact_match, 7 subsets                      | plain mean x 100, no baseline                             |
| GPQA     | acc_norm, diamond / extended / main         | plain mean, then normalized with 1/4                      |
| MuSR     | acc_norm, 3 subtasks                        | each normalized (1/2, 1/5, 1/3), then mean                |
| MMLU-Pro | acc                                         | normalized with 1/10                                      |
| Average  |                                             | plain mean of the six                                     |

Always computed from subtask scores: lm-eval's group rows weight subtasks by size, the leaderboard
does not. v1 (ARC, HellaSwag, MMLU, Winogrande, TruthfulQA, GSM8K) reported raw x 100.

A `Rule` says all of that for one task; `score` applies it. The lm-eval task names live here too,
so that the runner and the normalization cannot disagree on which subtasks make a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean

# Choices per BBH subtask, as in lm-eval's leaderboard_bbh_* doc_to_choice lists.
BBH_NUM_CHOICES = {
    "boolean_expressions": 2,
    "causal_judgement": 2,
    "date_understanding": 6,
    "disambiguation_qa": 3,
    "formal_fallacies": 2,
    "geometric_shapes": 11,
    "hyperbaton": 2,
    "logical_deduction_five_objects": 5,
    "logical_deduction_seven_objects": 7,
    "logical_deduction_three_objects": 3,
    "movie_recommendation": 6,
    "navigate": 2,
    "object_counting": 19,
    "penguins_in_a_table": 5,
    "reasoning_about_colored_objects": 18,
    "ruin_names": 6,
    "salient_translation_error_detection": 6,
    "snarks": 2,
    "sports_understanding": 2,
    "temporal_sequences": 4,
    "tracking_shuffled_objects_five_objects": 5,
    "tracking_shuffled_objects_seven_objects": 7,
    "tracking_shuffled_objects_three_objects": 3,
    "web_of_lies": 2,
}
MUSR_NUM_CHOICES = {"murder_mysteries": 2, "object_placements": 5, "team_allocation": 3}
MATH_SUBSETS = ("algebra", "counting_and_prob", "geometry", "intermediate_algebra", "num_theory",
                "prealgebra", "precalculus")
GPQA_SUBSETS = ("diamond", "extended", "main")
IFEVAL_METRICS = ("inst_level_strict_acc", "prompt_level_strict_acc")


@dataclass(frozen=True)
class Rule:
    """How one leaderboard task turns subtask scores into its score.

    subtasks: our subtask name -> (lm-eval task name, number of choices or None for no baseline).
    normalize_first: normalize each subtask then average (BBH, MuSR), or average then normalize (GPQA).
    metrics: the lm-eval metric(s) read; several are averaged into one raw value (IFEval).
    """

    task: str
    group: str  # the lm-eval group (or task) to request
    metrics: tuple[str, ...]
    subtasks: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    normalize_first: bool = True

    @property
    def metric(self) -> str:
        """The name recorded in result rows."""
        return self.metrics[0] if len(self.metrics) == 1 else "strict_acc"


V2_RULES = {
    "ifeval": Rule("ifeval", "leaderboard_ifeval", IFEVAL_METRICS, {"ifeval": ("leaderboard_ifeval", None)}),
    "bbh": Rule("bbh", "leaderboard_bbh", ("acc_norm",),
                {s: (f"leaderboard_bbh_{s}", n) for s, n in BBH_NUM_CHOICES.items()}),
    "math_hard": Rule("math_hard", "leaderboard_math_hard", ("exact_match",),
                      {s: (f"leaderboard_math_{s}_hard", None) for s in MATH_SUBSETS}, normalize_first=False),
    "gpqa": Rule("gpqa", "leaderboard_gpqa", ("acc_norm",),
                 {s: (f"leaderboard_gpqa_{s}", 4) for s in GPQA_SUBSETS}, normalize_first=False),
    "musr": Rule("musr", "leaderboard_musr", ("acc_norm",),
                 {s: (f"leaderboard_musr_{s}", n) for s, n in MUSR_NUM_CHOICES.items()}),
    "mmlu_pro": Rule("mmlu_pro", "leaderboard_mmlu_pro", ("acc",), {"mmlu_pro": ("leaderboard_mmlu_pro", 10)}),
}


def normalize(raw: float, num_choices: int | None) -> float:
    """A raw score in [0, 1] -> 0..100 above the random-guess baseline 1/num_choices (None: no baseline)."""
    if num_choices is None:
        return raw * 100
    assert num_choices >= 2, f"num_choices must be >= 2, got {num_choices}"
    baseline = 1 / num_choices
    return max(0.0, (raw - baseline) / (1 - baseline)) * 100


def raw_value(rule: Rule, metrics: dict[str, float]) -> float:
    """One subtask's raw score: its metric, or the mean of several (IFEval)."""
    missing = [m for m in rule.metrics if m not in metrics]
    if missing:
        raise KeyError(f"{rule.task}: metric(s) {missing} missing from {sorted(metrics)}")
    return fmean(metrics[m] for m in rule.metrics)


def score(rule: Rule, raw_by_subtask: dict[str, float]) -> float:
    """The task's leaderboard score (0..100) from every subtask's raw score (0..1)."""
    missing = sorted(rule.subtasks.keys() - raw_by_subtask.keys())
    if missing:
        raise KeyError(f"{rule.task}: subtask(s) {missing} missing; the score needs all of them")
    if rule.normalize_first:
        return fmean(normalize(raw_by_subtask[s], n) for s, (_, n) in rule.subtasks.items())
    choices = {n for _, n in rule.subtasks.values()}
    assert len(choices) == 1, f"{rule.task}: averaging before normalizing needs one choice count, got {choices}"
    return normalize(fmean(raw_by_subtask[s] for s in rule.subtasks), choices.pop())


def average(scores: dict[str, float], tasks=tuple(V2_RULES)) -> float:
    """The leaderboard average: plain mean of the task scores (all of them must be present)."""
    missing = [t for t in tasks if t not in scores]
    if missing:
        raise KeyError(f"average needs every task; missing {missing}")
    return fmean(scores[t] for t in tasks)
