"""lighteval task table (TASKS_TABLE) for the worker: imported only inside .venv-lighteval.

The worker's plan (JSON at $SSMB_LIGHTEVAL_PLAN, written by lighteval_runner.py) lists the tasks:

- our local tasks (ssmb_compare, ssmb_arithmetic: loglikelihood acc / acc_norm;
  ssmb_boolean_expressions: generative exact match), on JSONL laid out by the runner;
- the v1 leaderboard tasks, taken from lighteval's own registry modules
  (lighteval.tasks.tasks.<module>: arc:challenge, hellaswag, mmlu:*, truthfulqa:mc, winogrande,
  gsm8k) with `dataclasses.replace` of the data location only: `hf_repo` becomes a local folder
  whose README declares the Hub subsets and splits (so `hf_subset` stays the engine's), and
  `hf_avail_splits` lists the splits on disk (a missing few-shot split makes lighteval draw its
  shots from the evaluation split, its own rule for such datasets). Prompt functions, few-shot
  selection, generation settings and metrics are the engine's.

acc_norm is lighteval's `LogProbCharNorm`; the plan's `acc_norm_space` says whether the leading space
of a choice counts towards its length ("counted": lighteval's default; "ignored": lm-eval's
definition, `ignore_first_space=True`). It is added to the v1 tasks whose engine metric is a plain
loglikelihood accuracy (the v1 leaderboard reported ARC's acc_norm).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os

from lighteval.metrics.dynamic_metrics import LogLikelihoodAccMetric
from lighteval.metrics.metrics import Metrics
from lighteval.metrics.normalizations import LogProbCharNorm
from lighteval.tasks.lighteval_task import LightevalTask, LightevalTaskConfig
from lighteval.tasks.requests import Doc

ACC = LogLikelihoodAccMetric()


def acc_norm(space: str) -> LogLikelihoodAccMetric:
    if space not in ("counted", "ignored"):
        raise ValueError(f"acc_norm_space must be 'counted' or 'ignored', got {space!r}")
    return LogLikelihoodAccMetric(normalization=LogProbCharNorm(ignore_first_space=space == "ignored"))


# ----------------------------------------------------------------------------- local tasks

def mc_prompt(line, task_name: str = None):
    """ssmb_compare / ssmb_arithmetic: the same text as the lm-eval YAML."""
    return Doc(task_name=task_name, query=f"Q: {line['question']}\nA:",
               choices=[f" {c}" for c in line["choices"]], gold_index=line["label"])


def boolean_prompt(line, task_name: str = None):
    return Doc(task_name=task_name, query=f"Q: {line['input']}\nA:", choices=[f" {line['target']}"], gold_index=0)


def local_task(name: str, data_dir: str, space: str) -> LightevalTaskConfig:
    if name == "ssmb_boolean_expressions":
        prompt, metrics, size, stop = boolean_prompt, [Metrics.exact_match], 4, ["\n", "Q:"]
    else:
        prompt, metrics, size, stop = mc_prompt, [ACC, acc_norm(space)], -1, ["\n"]
    return LightevalTaskConfig(
        name=name, prompt_function=prompt, hf_repo=data_dir, hf_subset="default",
        hf_avail_splits=["train", "test"], evaluation_splits=["test"], few_shots_split="train",
        few_shots_select="sequential", metrics=metrics, generation_size=size, stop_sequence=stop, version=0,
    )


# ----------------------------------------------------------------------------- engine tasks

def engine_config(module: str, name: str) -> LightevalTaskConfig:
    """lighteval's own config of task `name`, from its registry module (nothing else is imported:
    the load-all step pulls in modules that download or crash offline)."""
    table = importlib.import_module(f"lighteval.tasks.tasks.{module}").TASKS_TABLE
    configs = {c.name: c for c in table}
    if name not in configs:
        raise KeyError(f"lighteval.tasks.tasks.{module} has no task {name!r} (has {sorted(configs)[:5]}...)")
    return configs[name]


def engine_task(module: str, name: str, hf_repo: str, splits: list[str], space: str) -> LightevalTaskConfig:
    """The engine's config with only its data location replaced (see the module docstring)."""
    cfg = engine_config(module, name)
    missing = [s for s in cfg.evaluation_splits if s not in splits]
    if missing:
        raise FileNotFoundError(f"{name}: evaluation split(s) {missing} not in {hf_repo} (have {splits})")
    few = cfg.few_shots_split if cfg.few_shots_split in splits else None
    metrics = list(cfg.metrics)
    if [m.metric_name for m in metrics] == ["acc"]:
        metrics.append(acc_norm(space))
    local = dataclasses.replace(cfg, hf_repo=hf_repo, hf_avail_splits=list(splits), few_shots_split=few,
                                metrics=metrics)
    # where the engine draws its shots with the Hub's splits (the worker records both)
    local.engine_fewshot_split = LightevalTask(cfg).fewshot_split or ",".join(cfg.evaluation_splits)
    return local


def tasks_table(plan: dict) -> list[LightevalTaskConfig]:
    space = plan["acc_norm_space"]
    out = []
    for t in plan["tasks"]:
        if t.get("module"):
            out.append(engine_task(t["module"], t["name"], t["hf_repo"], t["splits"], space))
        else:
            out.append(local_task(t["name"], t["hf_repo"], space))
    return out


_PLAN = os.environ.get("SSMB_LIGHTEVAL_PLAN")
TASKS_TABLE = tasks_table(json.loads(open(_PLAN).read())) if _PLAN else []
