"""lighteval custom tasks (TASKS_TABLE), all on local JSONL: imported only inside .venv-lighteval.

Each task's `hf_repo` is a local directory holding test.jsonl (and train.jsonl for few-shot
examples), prepared by the worker under $SSMB_LIGHTEVAL_DATA (see lighteval_worker.py):

- our local tasks: ssmb_compare, ssmb_arithmetic (loglikelihood: acc, acc_norm) and
  ssmb_boolean_expressions (generative, exact match);
- Open LLM Leaderboard v1 definitions, for when their data was exported to JSONL beforehand
  (fields as in the hub datasets): arc (allenai/ai2_arc, ARC-Challenge), hellaswag (Rowan/hellaswag),
  mmlu (cais/mmlu "all"), truthfulqa (truthful_qa "multiple_choice", mc2), winogrande
  (winogrande_xl), gsm8k (gsm8k "main"). (Few-shot counts: lighteval_runner.V1_FEWSHOT.)

Prompts follow lighteval's own definitions of those tasks (helm/leaderboard style).
"""

from __future__ import annotations

import os
import re

from lighteval.metrics.dynamic_metrics import LogLikelihoodAccMetric
from lighteval.metrics.metrics import Metrics
from lighteval.metrics.normalizations import LogProbCharNorm
from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc

DATA = os.environ.get("SSMB_LIGHTEVAL_DATA", "")
ACC = LogLikelihoodAccMetric()
ACC_NORM = LogLikelihoodAccMetric(normalization=LogProbCharNorm())


# ----------------------------------------------------------------------------- prompts

def mc_prompt(line, task_name: str = None):
    """ssmb_compare / ssmb_arithmetic: the same text as the lm-eval YAML."""
    return Doc(task_name=task_name, query=f"Q: {line['question']}\nA:",
               choices=[f" {c}" for c in line["choices"]], gold_index=line["label"])


def boolean_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=f"Q: {line['input']}\nA:", choices=[f" {line['target']}"], gold_index=0)


def arc_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=f"Question: {line['question']}\nAnswer:",
               choices=[f" {c}" for c in line["choices"]["text"]],
               gold_index=line["choices"]["label"].index(line["answerKey"]))


def _hellaswag_clean(text: str) -> str:
    text = text.replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ").strip()


def hellaswag_prompt(line, task_name: str = None):
    ctx = f"{line['ctx_a']} {line['ctx_b'].capitalize()} "
    return Doc(task_name=task_name, query=_hellaswag_clean(line["activity_label"] + ": " + ctx),
               choices=[" " + _hellaswag_clean(e) for e in line["endings"]],
               gold_index=int(line["label"]) if line["label"] != "" else -1)


def mmlu_prompt(line, task_name: str = None):
    letters = "ABCD"
    subject = line["subject"].replace("_", " ")
    query = f"The following are multiple choice questions (with answers) about {subject}.\n\n{line['question']}\n"
    query += "".join(f"{k}. {c}\n" for k, c in zip(letters, line["choices"])) + "Answer:"
    return Doc(task_name=task_name, query=query, choices=[f" {k}" for k in letters], gold_index=int(line["answer"]),
               instruction=f"The following are multiple choice questions (with answers) about {subject}.\n\n")


def truthfulqa_prompt(line, task_name: str = None):
    """mc2: all mc2 targets as choices; the gold ones are the labels equal to 1."""
    targets = line["mc2_targets"]
    return Doc(task_name=task_name, query=f"Q: {line['question']}\nA:",
               choices=[f" {c}" for c in targets["choices"]],
               gold_index=[i for i, label in enumerate(targets["labels"]) if label == 1])


def winogrande_prompt(line, task_name: str = None):
    """As lighteval's: the sentence up to the blank is the query, each option plus the rest a choice."""
    query, end = line["sentence"].split("_", 1)
    end = end.strip()
    return Doc(task_name=task_name, query=query, choices=[f"{line['option1']} {end}", f"{line['option2']} {end}"],
               gold_index=int(line["answer"]) - 1)


def gsm8k_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=f"Question: {line['question']}\nAnswer:",
               choices=[f" {line['answer']}"], gold_index=0)


# ----------------------------------------------------------------------------- configs

def _task(name: str, prompt, metrics, generation_size: int = -1, stop=("\n",)) -> LightevalTaskConfig:
    return LightevalTaskConfig(
        name=name, prompt_function=prompt, hf_repo=os.path.join(DATA, name), hf_subset="default",
        hf_avail_splits=["train", "test"], evaluation_splits=["test"], few_shots_split="train",
        few_shots_select="sequential", metrics=metrics, generation_size=generation_size,
        stop_sequence=list(stop), version=0,
    )


TASKS_TABLE = [
    _task("ssmb_compare", mc_prompt, [ACC, ACC_NORM]),
    _task("ssmb_arithmetic", mc_prompt, [ACC, ACC_NORM]),
    _task("ssmb_boolean_expressions", boolean_prompt, [Metrics.exact_match], generation_size=4, stop=("\n", "Q:")),
    _task("arc", arc_prompt, [ACC, ACC_NORM]),
    _task("hellaswag", hellaswag_prompt, [ACC, ACC_NORM]),
    _task("mmlu", mmlu_prompt, [ACC]),
    _task("truthfulqa", truthfulqa_prompt, [Metrics.truthfulqa_mc_metrics]),
    _task("winogrande", winogrande_prompt, [ACC]),
    _task("gsm8k", gsm8k_prompt, [Metrics.exact_match], generation_size=256, stop=("Question:",)),
]
