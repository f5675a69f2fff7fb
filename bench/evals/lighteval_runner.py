"""Run lighteval (0.13) from the main venv: save the model, call the worker in .venv-lighteval.

lighteval cannot share a venv with hydra-core 1.3 (antlr4 4.13 vs 4.9), so it lives in
.venv-lighteval (made by bench/evals/lighteval_env.sh) and runs as a subprocess:

1. the model is saved with save_pretrained into out_dir/model (the in-repo Mamba through its
   transformers wrapper, models.hf), with the tokenizer;
2. the task data is laid out as out_dir/data/<task>/{train,test}.jsonl (our local tasks, or the
   v1 benchmarks' JSONL exports from `v1_data_dir`);
3. lighteval_worker.py evaluates and writes out_dir/lighteval/metrics.json;
4. the metrics become the same tidy rows as lm-eval's (bench.evals.rows).

Suites: `local` (our tasks: CI) and `v1` (ARC 25-shot, HellaSwag 10, MMLU 5, TruthfulQA mc2 0,
Winogrande 5, GSM8K 5; raw x 100, as the v1 leaderboard reported them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.evals.local_tasks import FEWSHOT, LOCAL_RULES, SPLITS, data_file, require_data_file
from bench.evals.normalization import Rule
from bench.evals.rows import rows_from_metrics

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-lighteval"
WORKER = Path(__file__).with_name("lighteval_worker.py")
ENV_SCRIPT = Path(__file__).with_name("lighteval_env.sh")
SUITES = ("local", "v1")

# v1 tasks: no baseline (the v1 leaderboard reported raw accuracy x 100).
V1_RULES = {
    "arc": Rule("arc", "arc", ("acc_norm",), {"arc": ("arc", None)}),
    "hellaswag": Rule("hellaswag", "hellaswag", ("acc_norm",), {"hellaswag": ("hellaswag", None)}),
    "mmlu": Rule("mmlu", "mmlu", ("acc",), {"mmlu": ("mmlu", None)}),
    "winogrande": Rule("winogrande", "winogrande", ("acc",), {"winogrande": ("winogrande", None)}),
    "truthfulqa": Rule("truthfulqa", "truthfulqa", ("truthfulqa_mc2",), {"truthfulqa": ("truthfulqa", None)}),
    "gsm8k": Rule("gsm8k", "gsm8k", ("exact_match",), {"gsm8k": ("gsm8k", None)}),
}
V1_FEWSHOT = {"arc": 25, "hellaswag": 10, "mmlu": 5, "truthfulqa": 0, "winogrande": 5, "gsm8k": 5}
# lighteval's metric names -> ours (its LogLikelihoodAccMetric names itself after the normalization).
METRIC_NAMES = {"acc": "acc", "acc_logprob_char_norm": "acc_norm", "em": "exact_match"}


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


def _layout_data(suite: str, data_dir: Path, v1_data_dir: str | Path | None) -> dict[str, Rule]:
    """Copy each task's train/test JSONL to data_dir/<task>/ (lighteval reads a directory per task)."""
    if suite == "local":
        for rule in LOCAL_RULES.values():
            task = rule.group
            (data_dir / task).mkdir(parents=True, exist_ok=True)
            for split in SPLITS:
                shutil.copy(data_file(task, split), data_dir / task / f"{split}.jsonl")
        return LOCAL_RULES
    if suite != "v1":
        raise ValueError(f"lighteval suite must be one of {SUITES}, got {suite!r} (v2 runs under lm-eval)")
    if v1_data_dir is None:
        raise FileNotFoundError("suite v1 needs v1_data_dir: a directory with <task>/test.jsonl (and train.jsonl) "
                                f"for {sorted(V1_RULES)}, exported from the hub datasets on a machine with network")
    for task in V1_RULES:
        source = Path(v1_data_dir) / task
        require_data_file(source / "test.jsonl", f"export v1 task {task!r}'s hub test split to JSONL (and its "
                          "train split for few-shot examples)")
        shutil.copytree(source, data_dir / task, dirs_exist_ok=True)
    return V1_RULES


def _save_model(model, tokenizer, model_dir: Path) -> None:
    from models.mamba import MambaLM

    if isinstance(model, MambaLM):
        from models.hf import to_hf

        model = to_hf(model)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)


def run_lighteval(model, tokenizer, suite: str, out_dir: str | Path, limit: int | None = None,
                  batch_size: int = 8, seed: int = 1234, v1_data_dir: str | Path | None = None,
                  venv: Path = VENV, timeout_s: int | None = None) -> list[dict]:
    """Evaluate `model` with lighteval in .venv-lighteval; returns the tidy rows of bench.evals.rows.
    limit: examples per task (lighteval's max_samples)."""
    python = venv_python(venv)
    out_dir = Path(out_dir)
    model_dir, data_dir, results_dir = out_dir / "model", out_dir / "data", out_dir / "lighteval"
    rules = _layout_data(suite, data_dir, v1_data_dir)
    _save_model(model, tokenizer, model_dir)
    fewshot = FEWSHOT if suite == "local" else V1_FEWSHOT
    tasks = ",".join(f"{rule.group}|{fewshot[rule.group]}" for rule in rules.values())
    cmd = [str(python), str(WORKER), "--model-dir", str(model_dir), "--tasks", tasks, "--data", str(data_dir),
           "--out", str(results_dir), "--batch-size", str(batch_size), "--seed", str(seed)]
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
    return rows_from_metrics(rules, per_task, harness="lighteval")


if __name__ == "__main__":  # python -m bench.evals.lighteval_runner: create the venv
    print(ensure_venv(), file=sys.stderr)
