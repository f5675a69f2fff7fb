"""Every Hub dataset split the leaderboard tasks read, where a local copy comes from, and its real size.

One entry per (Hub repo, subset, split) that an engine's task reads: lm-eval's `leaderboard` group
(v2) and lighteval's v1 tasks. `source` names the converter that builds it (bench/data/convert.py);
`None` means no copy can be had offline here: a user saves it from the Hub. `rows` is the
size of the real split on the Hub; `expected_rows` is what the offline source holds when it differs,
with `note` saying why.
"""

from __future__ import annotations

from dataclasses import dataclass

BBH_TASKS = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa",
    "dyck_languages", "formal_fallacies", "geometric_shapes", "hyperbaton",
    "logical_deduction_five_objects", "logical_deduction_seven_objects",
    "logical_deduction_three_objects", "movie_recommendation", "multistep_arithmetic_two",
    "navigate", "object_counting", "penguins_in_a_table", "reasoning_about_colored_objects",
    "ruin_names", "salient_translation_error_detection", "snarks", "sports_understanding",
    "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
    "web_of_lies", "word_sorting",
)
BBH_SIZES = {"causal_judgement": 187, "penguins_in_a_table": 146, "snarks": 178}  # the rest: 250
# Free-form BBH tasks that lm-eval's leaderboard_bbh (24 multiple-choice subtasks) leaves out.
BBH_NOT_IN_LEADERBOARD = ("dyck_languages", "multistep_arithmetic_two", "word_sorting")

# Subject -> (lm-eval task, test rows, Level 5 test rows) of MATH (Hendrycks et al.).
MATH_SUBJECTS = {
    "algebra": ("leaderboard_math_algebra_hard", 1187, 307),
    "counting_and_probability": ("leaderboard_math_counting_and_prob_hard", 474, 123),
    "geometry": ("leaderboard_math_geometry_hard", 479, 132),
    "intermediate_algebra": ("leaderboard_math_intermediate_algebra_hard", 903, 280),
    "number_theory": ("leaderboard_math_num_theory_hard", 540, 154),
    "prealgebra": ("leaderboard_math_prealgebra_hard", 871, 193),
    "precalculus": ("leaderboard_math_precalculus_hard", 546, 135),
}

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics",
    "econometrics", "electrical_engineering", "elementary_mathematics", "formal_logic",
    "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics",
    "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law",
    "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law",
    "professional_medicine", "professional_psychology", "public_relations", "security_studies",
    "sociology", "us_foreign_policy", "virology", "world_religions",
)
MMLU_SPLIT_ROWS = {"test": 14042, "validation": 1531, "dev": 285}  # summed over the 57 subjects

@dataclass(frozen=True)
class Split:
    repo: str                  # the Hub dataset the engine's task reads, e.g. "SaylorTwift/bbh"
    subset: str | None         # its config name (None: the Hub dataset has a single default one)
    split: str
    task: str                  # the engine task that reads it (lm-eval or lighteval name; "" for none)
    source: str | None         # converter that builds it offline; None: not obtainable here
    rows: int | None = None    # size of the real split (None where summed over subsets elsewhere)
    expected_rows: int | None = None  # what the offline source yields, when it differs from `rows`
    note: str = ""
    fewshot: bool = False      # read for the task's few-shot examples, not scored

    @property
    def key(self) -> str:
        return f"{self.repo}/{self.subset or 'default'}/{self.split}"

    @property
    def want_rows(self) -> int | None:
        return self.expected_rows if self.expected_rows is not None else self.rows


def _entries() -> list[Split]:
    out: list[Split] = []
    # ---- v2: lm-eval's leaderboard group
    for task in BBH_TASKS:
        if task in BBH_NOT_IN_LEADERBOARD:
            out.append(Split("SaylorTwift/bbh", task, "test", "", "bbh", BBH_SIZES.get(task, 250),
                             note="not one of lm-eval's 24 leaderboard_bbh subtasks (free-form answers)"))
        else:
            out.append(Split("SaylorTwift/bbh", task, "test", f"leaderboard_bbh_{task}", "bbh",
                             BBH_SIZES.get(task, 250)))
    out.append(Split("TIGER-Lab/MMLU-Pro", None, "test", "leaderboard_mmlu_pro", "mmlu_pro", 12032))
    out.append(Split(
        "TIGER-Lab/MMLU-Pro", None, "validation", "leaderboard_mmlu_pro", None, 70, fewshot=True,
        note="without it leaderboard_mmlu_pro cannot run at its 5 shots: test questions are never substituted"))
    out.append(Split("wis-k/instruction-following-eval", None, "train", "leaderboard_ifeval", "ifeval", 541))
    for subject, (task, n, level5) in MATH_SUBJECTS.items():
        out.append(Split("DigitalLearningGmbH/MATH-lighteval", subject, "test", task, "math", n,
                         note=f"the task keeps its {level5} Level 5 problems"))
    for name, n in (("murder_mysteries", 250), ("object_placements", 256), ("team_allocation", 250)):
        out.append(Split("TAUR-Lab/MuSR", None, name, f"leaderboard_musr_{name}", None, n))
    for name, n in (("gpqa_diamond", 198), ("gpqa_extended", 546), ("gpqa_main", 448)):
        out.append(Split("Idavidrein/gpqa", name, "train", f"leaderboard_{name}", None, n,
                         note="gated by its authors: accept their terms on the Hub"))
    # ---- v1: lighteval's tasks
    out.append(Split("allenai/ai2_arc", "ARC-Challenge", "test", "arc:challenge", "arc", 1172,
                     note="choice labels written A, B, C... (the Hub has 1-4 on a few questions)"))
    out.append(Split("allenai/ai2_arc", "ARC-Challenge", "train", "arc:challenge", None, 1119, fewshot=True))
    out.append(Split("Rowan/hellaswag", None, "validation", "hellaswag", "hellaswag", 10042))
    out.append(Split("Rowan/hellaswag", None, "train", "hellaswag", None, 39905, fewshot=True))
    for split in ("test", "validation", "dev"):
        for subject in MMLU_SUBJECTS:
            out.append(Split("lighteval/mmlu", subject, split,
                             f"mmlu:{subject}", "mmlu", None, fewshot=split == "dev"))
    out.append(Split("truthfulqa/truthful_qa", "multiple_choice", "validation", "truthfulqa:mc", None, 817))
    out.append(Split("allenai/winogrande", "winogrande_xl", "validation", "winogrande", "winogrande", 1267))
    out.append(Split("allenai/winogrande", "winogrande_xl", "train", "winogrande", None, 40398, fewshot=True))
    out.append(Split("openai/gsm8k", "main", "test", "gsm8k", "gsm8k", 1319))
    out.append(Split("openai/gsm8k", "main", "train", "gsm8k", None, 7473, fewshot=True))
    return out


SPLITS: tuple[Split, ...] = tuple(_entries())
BY_KEY = {s.key: s for s in SPLITS}
