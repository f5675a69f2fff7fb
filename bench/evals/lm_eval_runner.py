"""Run lm-eval (0.4.x) on an in-memory model, offline, and return tidy normalized rows.

Both architectures go through one lm-eval `LM`, `bench.evals.lm_eval_model.TorchLM` (why not
lm-eval's HFLM: see that module): the in-repo Mamba (MambaLM, or its transformers wrapper) and
Transformers baselines as model instances. One code path means the same batching, truncation and
scoring for both, so score differences come from the models alone.

Suites:
- `local`: our generated tasks (bench/evals/local_tasks.py), no download.
- `v2`: the Open LLM Leaderboard v2 groups with their standard few-shot settings. Their datasets
  must already be in the local Hugging Face cache; otherwise `DatasetNotCachedError` names the
  dataset and how to provide it, before lm-eval could wait on the hub.

Outputs in out_dir: results.json (lm-eval's results, configs, versions; no samples) and
samples_<task>.jsonl (per-sample logs: prompt, target, responses, metrics).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")  # never the hub: set before any HF library is imported

from bench.evals.local_tasks import LOCAL_RULES, write_lm_eval_tasks  # noqa: E402
from bench.evals.normalization import V2_RULES, Rule  # noqa: E402
from bench.evals.rows import rows_from_metrics  # noqa: E402

SUITES = ("local", "v2")
# Hub dataset behind each v2 task (lm-eval 0.4.13's leaderboard YAML `dataset_path`).
V2_DATASETS = {
    "ifeval": "wis-k/instruction-following-eval",
    "bbh": "SaylorTwift/bbh",
    "math_hard": "DigitalLearningGmbH/MATH-lighteval",
    "gpqa": "Idavidrein/gpqa",  # gated: accept the terms on the hub before downloading
    "musr": "TAUR-Lab/MuSR",
    "mmlu_pro": "TIGER-Lab/MMLU-Pro",
}


# Python packages the v2 tasks' scoring code imports (lm-eval extras), and how to get them.
V2_PACKAGES = {
    "ifeval": (("langdetect", "immutabledict", "nltk"), 'pip install "lm-eval[ifeval]"'),
    "math_hard": (("sympy", "math_verify"), 'pip install "lm-eval[math]" (it pins antlr4 4.11, which '
                  "hydra-core 1.3 cannot share: use a separate venv, e.g. .venv-lighteval)"),
}


class DatasetNotCachedError(FileNotFoundError):
    """A benchmark dataset is not in the local Hugging Face cache (and we never download)."""


def suite_rules(suite: str) -> dict[str, Rule]:
    if suite == "local":
        return LOCAL_RULES
    if suite == "v2":
        return V2_RULES
    raise ValueError(f"lm-eval suite must be one of {SUITES}, got {suite!r} (v1 runs under lighteval)")


def _dataset_cached(repo: str) -> bool:
    """True when `repo` is in the datasets cache (HF_DATASETS_CACHE/org___name), which is what
    `datasets.load_dataset` reads offline. (A hub-cache snapshot alone is not enough: measured
    here, offline load_dataset then raises "Couldn't reach ... (OfflineModeIsEnabled)".)"""
    from datasets import config as ds_config

    org, name = repo.split("/")
    ds_cache = Path(ds_config.HF_DATASETS_CACHE)
    wanted = f"{org}___{name}".lower()
    return ds_cache.is_dir() and any(p.name.lower() == wanted for p in ds_cache.iterdir())


def check_v2_data(tasks=tuple(V2_RULES)) -> None:
    """Fail fast, one line, when a v2 dataset, a scoring package or IFEval's nltk data is missing."""
    import importlib.util

    for task in tasks:
        packages, how = V2_PACKAGES.get(task, ((), ""))
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            raise ModuleNotFoundError(f"v2 task {task!r} needs package(s) {missing}: {how}")
        repo = V2_DATASETS[task]
        if not _dataset_cached(repo):
            raise DatasetNotCachedError(
                f"v2 task {task!r} needs dataset {repo!r}, which is not in the local Hugging Face cache "
                f"(HF_DATASETS_CACHE): on a machine with network, run lm-eval once on {V2_RULES[task].group!r} (or "
                f"datasets.load_dataset({repo!r}, ...) for each subset) and copy its HF_HOME here, or point HF_HOME at one")
    if "ifeval" in tasks:
        import nltk

        try:
            nltk.data.find("tokenizers/punkt_tab")
        except LookupError:
            raise DatasetNotCachedError(
                "v2 task 'ifeval' needs nltk's punkt_tab (lm-eval would try to download it): run "
                "`python -m nltk.downloader punkt_tab` on a machine with network and copy ~/nltk_data here") from None


def _mean_stderr(values: list[float]) -> float | None:
    """Standard error of a mean (lm-eval's mean_stderr): sample std (n - 1) / sqrt(n)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def _task_metrics(results: dict) -> dict[str, dict]:
    """lm-eval's `results` (metric keys like 'acc_norm,none') -> {task: {metrics, stderr, n_samples}}.

    With bootstrap_iters=0 lm-eval reports no stderr at all ('N/A'); for metrics that are plain
    means of per-sample values we compute it from the sample logs."""
    out = {}
    samples = results.get("samples") or {}
    for task, values in results["results"].items():
        metrics, stderr = {}, {}
        for key, value in values.items():
            if "," not in key:
                continue
            metric, _filter = key.split(",", 1)
            if metric.endswith("_stderr"):
                stderr[metric[: -len("_stderr")]] = value
            else:
                metrics[metric] = value
        for metric in metrics:
            if not isinstance(stderr.get(metric), (int, float)) and task in samples:
                values = [log[metric] for log in samples[task] if isinstance(log.get(metric), (int, float, bool))]
                if len(values) == len(samples[task]):
                    stderr[metric] = _mean_stderr([float(v) for v in values])
        n = results.get("n-samples", {}).get(task, {}).get("effective")
        out[task] = {"metrics": metrics, "stderr": stderr, "n_samples": n}
    return out


def _save(results: dict, out_dir: Path) -> None:
    from lm_eval.utils import handle_non_serializable

    samples = results.pop("samples", {}) or {}
    for task, logs in samples.items():
        with open(out_dir / f"samples_{task}.jsonl", "w") as f:
            for log in logs:
                f.write(json.dumps(log, default=handle_non_serializable) + "\n")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=handle_non_serializable))


def run_lm_eval(model, tokenizer, suite: str, out_dir: str | Path, limit: int | float | None = None,
                batch_size: int = 8, bootstrap_iters: int = 0, seed: int = 1234,
                max_length: int = 2048, tasks: list[str] | None = None) -> list[dict]:
    """Evaluate `model` (MambaLM, its transformers wrapper, or a transformers causal LM) on a suite.

    limit: examples per subtask (None: all). bootstrap_iters: lm-eval's stderr bootstrap (0: off,
    stderr still computed for mean metrics). tasks: a subset of the suite's task names (None: all;
    the average row then covers only those). Returns the tidy rows of bench.evals.rows.
    """
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from bench.evals.lm_eval_model import TorchLM

    rules = suite_rules(suite)
    if tasks is not None:
        unknown = sorted(set(tasks) - rules.keys())
        if unknown:
            raise ValueError(f"unknown {suite} task(s) {unknown}; choose from {sorted(rules)}")
        rules = {name: rule for name, rule in rules.items() if name in tasks}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Index only the tasks we run: indexing all of lm-eval's ~14k YAML files takes ~25 s here.
    if suite == "v2":
        check_v2_data(tuple(rules))
        import lm_eval.tasks

        include = Path(lm_eval.tasks.__file__).parent / "leaderboard"
    else:
        include = write_lm_eval_tasks(out_dir / "tasks")
    task_manager = TaskManager(include_path=str(include), include_defaults=False)
    lm = TorchLM(model, tokenizer, batch_size=batch_size, max_length=max_length)
    results = simple_evaluate(
        model=lm, tasks=[rule.group for rule in rules.values()], task_manager=task_manager, limit=limit,
        bootstrap_iters=bootstrap_iters, log_samples=True, random_seed=seed, numpy_random_seed=seed,
        torch_random_seed=seed, fewshot_random_seed=seed,
    )
    per_task = _task_metrics(results)
    _save(results, out_dir)
    return rows_from_metrics(rules, per_task, harness="lm_eval")
