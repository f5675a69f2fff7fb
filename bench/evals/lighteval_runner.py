"""Run lighteval (0.13) from the main venv: save the model, call the worker in .venv-lighteval.

lighteval cannot share a venv with hydra-core 1.3 (antlr4 4.13 vs 4.9), so it lives in
.venv-lighteval (made by bench/evals/lighteval_env.sh) and runs as a subprocess:

1. the model is saved with save_pretrained into out_dir/model (the in-repo Mamba through its
   transformers wrapper, models.hf), with the tokenizer;
2. the task data: our local tasks' JSONL laid out under out_dir/data, or, for v1, the local copies
   of `make data` (bench.data.hub_path: a folder that load_dataset reads as the Hub dataset), so
   that lighteval's own task configs load it with only `hf_repo` changed;
3. lighteval_worker.py evaluates the plan (lighteval_tasks.py) and writes metrics.json and
   samples.json (per-sample metrics and log-probs);
4. the metrics become the same tidy rows as lm-eval's (bench.evals.rows).

Suites: `local` (our tasks: CI) and `v1`, lighteval's own tasks at the Open LLM Leaderboard v1
shots: ARC-Challenge 25, HellaSwag 10, MMLU 5 (57 subjects, plain mean), TruthfulQA mc 0,
Winogrande 5, GSM8K 5; raw x 100, no baseline, as v1 reported them. A task whose scored split is
not on disk is skipped with a one-line message naming the file, and the rows mark the suite
partial (bench.evals.rows: suite_complete, missing_tasks); a missing few-shot split makes lighteval draw the shots from the evaluation split (its
own rule, the doc itself excluded), and rows record `fewshot_split`.

Two settings make lighteval comparable with lm-eval on the same tasks; rows record both:
- `doc_selection` (with a limit): `first_n`, the split's first N documents as lm-eval takes them
  (each with the shots lighteval gives it in a full run), `spread`, N documents spread evenly over
  the split (likewise; the random-weights check uses it), or `lighteval`, the engine's seed-42
  shuffle; without a limit all are `all`;
- `acc_norm_space`: whether acc_norm counts a choice's leading space in its length (`counted`,
  lighteval's LogProbCharNorm default) or not (`ignored`, lm-eval's acc_norm). Default per suite:
  `ignored` for local (the cross-engine check), `counted` for v1 (the engine's own number).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.evals.local_tasks import FEWSHOT, LOCAL_RULES, SPLITS, data_file
from bench.evals.normalization import Rule
from bench.evals.rows import rows_from_metrics
from bench.schema import DOC_SELECTIONS

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-lighteval"
WORKER = Path(__file__).with_name("lighteval_worker.py")
ENV_SCRIPT = Path(__file__).with_name("lighteval_env.sh")
SUITES = ("local", "v1")
ACC_NORM_SPACES = ("counted", "ignored")
DEFAULT_ACC_NORM_SPACE = {"local": "ignored", "v1": "counted"}
# lighteval's metric names -> ours
METRIC_NAMES = {"em": "exact_match"}


@dataclass(frozen=True)
class V1Task:
    """One v1 task: lighteval's registry module, its task names per subtask, shots, scored metric
    and the split lighteval scores (checked against the engine's config by the worker)."""

    module: str
    subtasks: dict  # our subtask -> lighteval task name
    fewshot: int
    metric: str
    eval_split: str

    def rule(self, name: str) -> Rule:
        return Rule(name, name, (self.metric,), {s: (t, None) for s, t in self.subtasks.items()})


def _mmlu_subjects() -> tuple[str, ...]:
    from bench.data.catalog import MMLU_SUBJECTS

    return MMLU_SUBJECTS


V1_TASKS = {
    # ARC: the engine's metric is acc; acc_norm (added, the engine's LogProbCharNorm) is what v1 reported
    "arc": V1Task("arc", {"arc": "arc:challenge"}, 25, "acc_norm", "test"),
    "hellaswag": V1Task("hellaswag", {"hellaswag": "hellaswag"}, 10, "exact_match", "validation"),
    "mmlu": V1Task("mmlu", {s: f"mmlu:{s}" for s in _mmlu_subjects()}, 5, "exact_match", "test"),
    "truthfulqa": V1Task("truthfulqa", {"truthfulqa": "truthfulqa:mc"}, 0, "truthfulqa_mc2", "validation"),
    "winogrande": V1Task("winogrande", {"winogrande": "winogrande"}, 5, "acc", "validation"),
    "gsm8k": V1Task("gsm8k", {"gsm8k": "gsm8k"}, 5, "extractive_match", "test"),
}
V1_RULES = {name: task.rule(name) for name, task in V1_TASKS.items()}


class LightevalEnvError(RuntimeError):
    """.venv-lighteval is missing or broken: the message says how to create it."""


def venv_python(venv: Path = VENV) -> Path:
    python = venv / "bin" / "python"
    if not (venv / ".installed").is_file() or not python.is_file():
        raise LightevalEnvError(f"{venv}: lighteval environment not found; create it with `bash {ENV_SCRIPT}` (~3 min)")
    return python


def ensure_venv(venv: Path = VENV) -> Path:
    """Reuse .venv-lighteval if present, else create it (several minutes)."""
    if not (venv / ".installed").is_file():
        subprocess.run(["bash", str(ENV_SCRIPT), str(venv)], check=True)
    return venv_python(venv)


def _layout_local(data_dir: Path) -> list[dict]:
    """Our local tasks: data_dir/<task>/{train,test}.jsonl (lighteval reads a directory per task)."""
    plan = []
    for rule in LOCAL_RULES.values():
        task = rule.group
        (data_dir / task).mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            shutil.copy(data_file(task, split), data_dir / task / f"{split}.jsonl")
        plan.append({"name": task, "hf_repo": str((data_dir / task).resolve()), "fewshot": FEWSHOT[task]})
    return plan


def _layout_v1(data_dir: Path, tasks: list[str]) -> tuple[list[dict], dict[str, Rule], dict[str, str]]:
    """The v1 plan over the local copies of `make data`: (plan, rules of the tasks that run,
    {task: one-line message} for each task skipped because its scored split is not on disk)."""
    from bench import data
    from bench.data.catalog import SPLITS as CATALOG

    plan, rules, skipped = [], {}, {}
    for name in tasks:
        v1 = V1_TASKS[name]
        entries = {}
        for subtask, engine_name in v1.subtasks.items():
            splits = [e for e in CATALOG if e.task == engine_name]
            if not splits:
                raise KeyError(f"bench.data.catalog has no split for lighteval task {engine_name!r}")
            entries[engine_name] = splits
        try:
            for engine_name, splits in entries.items():
                data.local_path(splits[0].repo, splits[0].subset, v1.eval_split)
        except data.MissingData as e:
            skipped[name] = f"v1 task {name!r} skipped: {e}"
            continue
        for engine_name, splits in entries.items():
            files = {}
            for e in splits:
                try:
                    files[e.split] = str(data.local_path(e.repo, e.subset, e.split))
                except data.MissingData:
                    pass  # a few-shot split: lighteval then draws its shots from the evaluation split
            plan.append({"name": engine_name, "module": v1.module, "repo": splits[0].repo, "splits": sorted(files),
                         "fewshot": v1.fewshot})
        rules[name] = V1_RULES[name]
    for entry in plan:  # bench.data's folder, read by load_dataset as the Hub dataset (its card names the splits)
        entry["hf_repo"] = data.hub_path(entry.pop("repo"))
    return plan, rules, skipped


def _save_model(model, tokenizer, model_dir: Path) -> None:
    from models.mamba import MambaLM

    if isinstance(model, MambaLM):
        from models.hf import to_hf

        model = to_hf(model)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)


def run_lighteval(model, tokenizer, suite: str, out_dir: str | Path, limit: int | None = None,
                  batch_size: int = 8, seed: int = 1234, v1_data_dir: str | Path | None = None,
                  doc_selection: str = "first_n", acc_norm_space: str | None = None,
                  tasks: list[str] | None = None, venv: Path = VENV, timeout_s: int | None = None) -> list[dict]:
    """Evaluate `model` with lighteval in .venv-lighteval; returns the tidy rows of bench.evals.rows
    (suite_complete False, and the average row's missing_tasks, when a task was skipped), each with
    doc_selection, acc_norm_space and fewshot_split.

    limit: documents per task (lighteval's max_samples), chosen by `doc_selection` (module docstring).
    acc_norm_space: None for the suite's default. v1_data_dir: a data root holding hub/ (default:
    the project's data/, see bench.data). tasks: a subset of the v1 tasks (None: all)."""
    if suite not in SUITES:
        raise ValueError(f"lighteval suite must be one of {SUITES}, got {suite!r} (v2 runs under lm-eval)")
    if doc_selection not in DOC_SELECTIONS:
        raise ValueError(f"doc_selection must be one of {DOC_SELECTIONS}, got {doc_selection!r}")
    acc_norm_space = acc_norm_space or DEFAULT_ACC_NORM_SPACE[suite]
    if acc_norm_space not in ACC_NORM_SPACES:
        raise ValueError(f"acc_norm_space must be one of {ACC_NORM_SPACES}, got {acc_norm_space!r}")
    import torch

    python = venv_python(venv)
    out_dir = Path(out_dir)
    model_dir, data_dir, results_dir = out_dir / "model", out_dir / "data", out_dir / "lighteval"
    skipped = {}
    if suite == "local":
        if tasks is not None:
            raise ValueError("tasks= selects v1 tasks only; the local suite runs whole")
        plan, rules = _layout_local(data_dir), LOCAL_RULES
    else:
        unknown = sorted(set(tasks or ()) - V1_TASKS.keys())
        if unknown:
            raise ValueError(f"unknown v1 task(s) {unknown}; choose from {sorted(V1_TASKS)}")
        with _data_root(v1_data_dir):
            plan, rules, skipped = _layout_v1(data_dir, list(tasks or V1_TASKS))
        for message in skipped.values():
            print(message, file=sys.stderr)
        if not plan:
            raise FileNotFoundError("no v1 task has its data on disk: " + " | ".join(skipped.values()))
    data_dir.mkdir(parents=True, exist_ok=True)
    plan_file = data_dir / "plan.json"
    plan_file.write_text(json.dumps({"acc_norm_space": acc_norm_space, "tasks": plan}, indent=1))
    _save_model(model, tokenizer, model_dir)
    cmd = [str(python), str(WORKER), "--model-dir", str(model_dir), "--plan", str(plan_file),
           "--tasks", ",".join(f"{t['name']}|{t['fewshot']}" for t in plan), "--out", str(results_dir),
           "--batch-size", str(batch_size), "--seed", str(seed), "--doc-selection", doc_selection,
           "--threads", str(torch.get_num_threads())]  # the caller's CPU threads (the run's `threads`)
    if limit is not None:
        cmd += ["--max-samples", str(int(limit))]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PYTHONPATH", None)  # the worker must import its own venv's packages only
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    (out_dir / "lighteval.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"lighteval worker failed (exit {proc.returncode}); log: {out_dir / 'lighteval.log'}\n{tail}")
    raw = json.loads((results_dir / "metrics.json").read_text())
    per_task = {task: {"metrics": {METRIC_NAMES.get(k, k): v for k, v in entry["metrics"].items()},
                       "stderr": {METRIC_NAMES.get(k, k): v for k, v in entry["stderr"].items()},
                       "n_samples": entry["n_samples"]} for task, entry in raw.items()}
    rows = rows_from_metrics(rules, per_task, harness="lighteval", skipped=skipped)
    settings = {"doc_selection": "all" if limit is None else doc_selection, "acc_norm_space": acc_norm_space}
    fewshot_split = {sub: raw[t]["fewshot_split"] for r in rules.values() for sub, (t, _) in r.subtasks.items()}
    for row in rows:
        row.update(settings)
        if row["subtask"] in fewshot_split:
            row["fewshot_split"] = fewshot_split[row["subtask"]]
        elif row["task"] in rules:
            row["fewshot_split"] = ",".join(sorted({fewshot_split[s] for s in rules[row["task"]].subtasks}))
    return rows


@contextmanager
def _data_root(root: str | Path | None):
    """bench.data reading from `root` (a folder holding hub/) for the duration; None: unchanged."""
    from bench import data

    saved = data.DATA_DIR
    if root is not None:  # absolute: the worker runs from another folder and reads the plan's paths there
        data.DATA_DIR = Path(root).resolve()
    try:
        yield
    finally:
        data.DATA_DIR = saved


def read_samples(out_dir: str | Path) -> dict[str, list[dict]]:
    """The worker's per-sample output of a run_lighteval(out_dir=...) call: {task: [{doc_id, metrics,
    logprobs}]}, sorted by doc_id."""
    samples = json.loads((Path(out_dir) / "lighteval" / "samples.json").read_text())
    return {task: sorted(entries, key=lambda e: e["doc_id"]) for task, entries in samples.items()}


if __name__ == "__main__":  # python -m bench.evals.lighteval_runner: create the venv
    print(ensure_venv(), file=sys.stderr)
