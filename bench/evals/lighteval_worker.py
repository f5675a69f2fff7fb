"""lighteval worker: runs inside .venv-lighteval, started by lighteval_runner.py as a subprocess.

    .venv-lighteval/bin/python bench/evals/lighteval_worker.py --model-dir DIR --tasks ssmb_compare|3,...
        --data DIR --out DIR [--max-samples N] [--batch-size B] [--seed S]

Reads a Hugging Face format model directory (importing models.hf first, so the in-repo Mamba
loads through AutoModelForCausalLM), evaluates our custom tasks (lighteval_tasks.py) with
lighteval's transformers backend on CPU or the first GPU, and writes out/metrics.json:

    {task: {"metrics": {name: value}, "stderr": {name: value}, "n_samples": int}}

plus lighteval's own results and per-sample details under out/. The workarounds for lighteval
0.13 offline (FIELD-NOTES pitfalls):
- the registry imports every built-in task module on start (some download or crash offline):
  `Registry.load_all_task_configs` is replaced by one that loads only our TASKS_TABLE;
- the prediction cache is keyed on the model name, not the weights: it is switched off;
- result keys are "task:0" (get_results) but "task|0" (saved JSON): we strip either suffix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_var] = "1"
ROOT = Path(__file__).resolve().parents[2]
TASKS_MODULE = Path(__file__).with_name("lighteval_tasks.py")


def _only_custom_tasks(custom_tasks=None, load_multilingual=False):
    """Replacement for Registry.load_all_task_configs: our TASKS_TABLE, nothing built in."""
    from lighteval.tasks.registry import Registry

    return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--tasks", required=True, help="comma-separated name|fewshot")
    parser.add_argument("--data", required=True, help="directory with <task>/{train,test}.jsonl")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    os.environ["SSMB_LIGHTEVAL_DATA"] = str(Path(args.data).resolve())  # read by lighteval_tasks.py
    sys.path.insert(0, str(ROOT))

    import torch
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters
    from lighteval.tasks.registry import Registry

    import models.hf  # noqa: F401  registers ssm_bench_mamba with AutoModelForCausalLM

    torch.manual_seed(args.seed)
    Registry.load_all_task_configs = staticmethod(_only_custom_tasks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tracker = EvaluationTracker(output_dir=str(out), save_details=True)
    params = PipelineParameters(launcher_type=ParallelismManager.NONE, custom_tasks_directory=str(TASKS_MODULE),
                                max_samples=args.max_samples)
    model_config = TransformersModelConfig(model_name=str(Path(args.model_dir).resolve()),
                                           batch_size=args.batch_size,
                                           device="cuda" if torch.cuda.is_available() else "cpu")
    pipeline = Pipeline(tasks=args.tasks, pipeline_parameters=params, evaluation_tracker=tracker,
                        model_config=model_config)
    pipeline.model._cache = None  # keyed on the model path, not the weights: never reuse
    pipeline.evaluate()
    pipeline.save_and_push_results()
    results = pipeline.get_results()
    details = pipeline.get_details()  # {"task|fewshot": [one entry per sample]}
    counts = {name.replace("|", ":").rsplit(":", 1)[0]: len(entries) for name, entries in details.items()}

    per_task = {}
    for key, values in results["results"].items():
        if key == "all":
            continue
        task = key.replace("|", ":").rsplit(":", 1)[0]
        metrics = {k: v for k, v in values.items() if not k.endswith("_stderr")}
        stderr = {k[: -len("_stderr")]: v for k, v in values.items() if k.endswith("_stderr")}
        per_task[task] = {"metrics": metrics, "stderr": stderr, "n_samples": counts.get(task)}
    (out / "metrics.json").write_text(json.dumps(per_task, indent=2))


if __name__ == "__main__":
    main()
