"""Run lm-eval (0.4.x) on an in-memory model, offline, and return tidy normalized rows.

Both architectures go through one lm-eval `LM`, `bench.evals.lm_eval_model.TorchLM` (why not
lm-eval's HFLM: see that module): the in-repo Mamba (MambaLM, or its transformers wrapper) and
Transformers baselines as model instances. One code path means the same batching, truncation and
scoring for both, so score differences come from the models alone.

Suites:
- `local`: our generated tasks (bench/evals/local_tasks.py), no download.
- `v2`: lm-eval's own `leaderboard` tasks (IFEval, BBH, MATH Lvl 5, GPQA, MuSR, MMLU-Pro), built by
  lm-eval's TaskManager from its own YAML: templates, few-shot settings and metrics are the
  engine's. With `data="local"` (the default) each task is built with one change, its dataset's
  location: `dataset_path`/`dataset_name`/`dataset_kwargs` point at the local copy of the same Hub
  dataset that `make data` builds (bench.data). A task whose data is not on disk (GPQA, MuSR, the
  MMLU-Pro validation split of its 5 shots...) is skipped with a one-line message naming the file
  to provide, and the rows mark the suite partial. `data="hub"` keeps the Hub datasets untouched
  (online, or from the local Hugging Face cache).

Extras the v2 scoring code imports: IFEval `langdetect`, `immutabledict` and NLTK's English
`punkt_tab` (data/nltk_data, bench/evals/lm_eval_punkt.py: lm-eval would otherwise download it at
import). MATH's leaderboard metric, `exact_match`, is math_verify's verify(parse(...)), whose LaTeX
parser (latex2sympy2_extended >= 1.10) ships the same grammar generated for antlr4 4.9.3, 4.11 and
4.13: installed with the 4.9.3 runtime that hydra-core needs, it runs in this venv. Only the
secondary `exact_match_original` calls sympy's parse_latex, which needs antlr4 4.11; without it
that metric would silently count only string-equal answers, so it is dropped from what we save.

Outputs in out_dir: results.json (lm-eval's results, configs, versions; no samples) and
samples_<task>.jsonl (per-sample logs: prompt, target, responses, metrics).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")  # never the hub: set before any HF library is imported

from bench.evals.local_tasks import LOCAL_RULES, write_lm_eval_tasks  # noqa: E402
from bench.evals.normalization import V2_RULES, Rule  # noqa: E402
from bench.evals.rows import rows_from_metrics  # noqa: E402

SUITES = ("local", "v2")
DATA_SOURCES = ("local", "hub")  # v2 data: the local copies (make data) or the Hub datasets
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
    "math_hard": (("sympy", "math_verify", "latex2sympy2_extended"),
                  'pip install "math-verify[antlr4_9_3]" (the antlr4 runtime hydra-core 1.3 also needs)'),
}
# A metric lm-eval's MATH computes with sympy's parse_latex (antlr4 4.11 only); see the docstring.
SYMPY_LATEX_METRIC = "exact_match_original"


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


def check_v2_packages(tasks=tuple(V2_RULES)) -> None:
    """Fail fast, one line, when a package a v2 task's scoring code imports is missing."""
    import importlib.util

    for task in tasks:
        packages, how = V2_PACKAGES.get(task, ((), ""))
        missing = [p for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            raise ModuleNotFoundError(f"v2 task {task!r} needs package(s) {missing}: {how}")


def check_v2_data(tasks=tuple(V2_RULES)) -> None:
    """data="hub" offline: fail fast, one line, when a dataset is not in the HF cache."""
    check_v2_packages(tasks)
    for task in tasks:
        repo = V2_DATASETS[task]
        if not _dataset_cached(repo):
            raise DatasetNotCachedError(
                f"v2 task {task!r} needs dataset {repo!r}, which is not in the local Hugging Face cache "
                f"(HF_DATASETS_CACHE): on a machine with network, run lm-eval once on {V2_RULES[task].group!r} (or "
                f"datasets.load_dataset({repo!r}, ...) for each subset) and copy its HF_HOME here, or point HF_HOME at one")
    if "ifeval" in tasks:
        import nltk

        from bench.evals import lm_eval_punkt

        lm_eval_punkt.use()
        try:
            nltk.data.find("tokenizers/punkt_tab")
        except LookupError:
            raise DatasetNotCachedError(lm_eval_punkt.missing() or "nltk punkt_tab not found") from None


def v2_task_manager():
    """lm-eval's TaskManager over its own leaderboard folder only (indexing all ~14k YAML files
    takes ~25 s here)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(Path(lm_eval.tasks.__file__).parent / "leaderboard"),
                       include_defaults=False)


def local_dataset(manager, task: str) -> dict:
    """The only fields of an engine task that `data="local"` changes: where its dataset is read.
    Reads the task's own YAML (its includes resolved) for the Hub dataset and subset it names."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from bench import data

    cfg = load_yaml(manager.task_index[task].yaml_path, resolve_func=False)
    kw = data.load_kwargs(cfg["dataset_path"], cfg.get("dataset_name"))
    return {"dataset_path": kw["path"], "dataset_name": None,
            "dataset_kwargs": {**(cfg.get("dataset_kwargs") or {}), "data_files": kw["data_files"]}}


def unavailable(rule: Rule) -> str | None:
    """Why a v2 task cannot run on the local data (one line naming the file to provide), or None."""
    from bench import data

    for task, _ in rule.subtasks.values():
        absent = data.missing(task=task)
        if absent:
            more = f" (and {len(absent) - 1} more file(s): python -m bench.data status)" if len(absent) > 1 else ""
            return absent[0].message + more
    if rule.task == "ifeval":
        from bench.evals import lm_eval_punkt

        return lm_eval_punkt.missing()
    return None


def v2_tasks(rules: dict[str, Rule], manager, data_source: str = "local", overrides: dict | None = None
             ) -> tuple[list, dict[str, str]]:
    """(lm-eval task specs, {skipped task: why}) for the v2 rules.

    local: one inline group of the engine's registered tasks, each with only its dataset location
    changed (lm-eval builds each from its own YAML, then applies the item's keys). `overrides`
    ({lm-eval task: {field: value}}) is for tests only. hub: the engine's group names, untouched.
    """
    if data_source not in DATA_SOURCES:
        raise ValueError(f"v2 data must be one of {DATA_SOURCES}, got {data_source!r}")
    if data_source == "hub":
        check_v2_data(tuple(rules))
        return [rule.group for rule in rules.values()], {}
    check_v2_packages(tuple(rules))
    skipped, items = {}, []
    for name, rule in rules.items():
        why = unavailable(rule)
        if why is not None:
            skipped[name] = why
            continue
        for task, _ in rule.subtasks.values():
            items.append({"task": task, **local_dataset(manager, task), **(overrides or {}).get(task, {})})
    if "ifeval" in rules and "ifeval" not in skipped:
        from bench.evals import lm_eval_punkt

        lm_eval_punkt.use()  # before lm-eval imports IFEval's code, which downloads what it cannot find
    return ([{"group": "ssm_bench_v2", "task": items}] if items else []), skipped


def v2_doc_counts(rules: dict[str, Rule] = V2_RULES, data_source: str = "local") -> dict[str, int]:
    """{lm-eval task: number of documents it scores without a limit}, from the engine's task
    objects (no model run); tasks whose data is missing are left out."""
    manager = v2_task_manager()
    specs, _ = v2_tasks(rules, manager, data_source)
    tasks = manager.load(specs)["tasks"] if specs else {}
    return {name: len(task.eval_docs) for name, task in tasks.items()}


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


def _sympy_latex_usable() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("antlr4-python3-runtime").startswith("4.11")
    except PackageNotFoundError:
        return False


def _drop_sympy_latex_metric(results: dict) -> None:
    """Without antlr4 4.11, MATH's exact_match_original is not what lm-eval would compute: drop it."""
    if _sympy_latex_usable():
        return
    dropped = []
    for task, values in results.get("results", {}).items():
        for key in [k for k in values if k.split(",")[0] in (SYMPY_LATEX_METRIC, SYMPY_LATEX_METRIC + "_stderr")]:
            del values[key]
            dropped.append(task)
    for logs in (results.get("samples") or {}).values():
        for log in logs:
            log.pop(SYMPY_LATEX_METRIC, None)
    if dropped:
        results["ssm_bench_dropped"] = {SYMPY_LATEX_METRIC: sorted(set(dropped)),
                                       "why": "sympy's parse_latex needs antlr4 4.11; this venv has hydra's 4.9.3"}


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
                max_length: int | None = None, tasks: list[str] | None = None, data: str = "local",
                overrides: dict | None = None) -> list[dict]:
    """Evaluate `model` (MambaLM, its transformers wrapper, or a transformers causal LM) on a suite.

    limit: examples per subtask (None: all). bootstrap_iters: lm-eval's stderr bootstrap (0: off,
    stderr still computed for mean metrics). tasks: a subset of the suite's task names (None: all;
    the average row then covers only those). max_length: None, HFLM's default (TorchLM).
    data: where v2 reads its datasets (DATA_SOURCES).
    overrides: {lm-eval task: {field: value}} on top of the engine's config (tests only).
    Returns the tidy rows of bench.evals.rows; v2 tasks without local data are skipped, each with a
    one-line message on stderr, and the rows say the suite is partial.
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
    skipped: dict[str, str] = {}
    if suite == "v2":
        task_manager = v2_task_manager()
        specs, skipped = v2_tasks(rules, task_manager, data, overrides)
        for name, why in skipped.items():
            print(f"lm-eval v2: skipping {name}: {why}", file=sys.stderr)
        if not specs:
            raise FileNotFoundError(f"lm-eval v2: none of the tasks {sorted(rules)} has its data: "
                                    + next(iter(skipped.values())))
    else:
        task_manager = TaskManager(include_path=str(write_lm_eval_tasks(out_dir / "tasks")), include_defaults=False)
        specs = [rule.group for rule in rules.values()]
    lm = TorchLM(model, tokenizer, batch_size=batch_size, max_length=max_length)
    results = simple_evaluate(
        model=lm, tasks=specs, task_manager=task_manager, limit=limit,
        bootstrap_iters=bootstrap_iters, log_samples=True, random_seed=seed, numpy_random_seed=seed,
        torch_random_seed=seed, fewshot_random_seed=seed,
    )
    _drop_sympy_latex_metric(results)
    per_task = _task_metrics(results)
    _save(results, out_dir)
    ran = {name: rule for name, rule in rules.items() if name not in skipped}
    return rows_from_metrics(ran, per_task, harness="lm_eval", skipped=skipped)
