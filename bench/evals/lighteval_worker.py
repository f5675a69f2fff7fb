"""lighteval worker: runs inside .venv-lighteval, started by lighteval_runner.py as a subprocess.

    .venv-lighteval/bin/python bench/evals/lighteval_worker.py --model-dir DIR --plan PLAN.json
        --tasks name|fewshot,... --out DIR [--max-samples N] [--doc-selection first_n|spread|lighteval]
        [--batch-size B] [--seed S] [--threads T]

Reads a Hugging Face format model directory (importing models.hf first, so the in-repo Mamba
loads through AutoModelForCausalLM), evaluates the plan's tasks (lighteval_tasks.py) with
lighteval's transformers backend on CPU or the first GPU, and writes

    out/metrics.json  {task: {"metrics": {name: value}, "stderr": {name: value}, "n_samples": int,
                              "fewshot_split": split the shots came from, "engine_fewshot_split": ...}}
    out/samples.json  {task: [{"doc_id": int, "gold": gold index(es), "metrics": {name: value}, "logprobs": [per choice],
                               "n_tokens": [tokens per choice as scored, or per generation], "choices": [text],
                               "text": [generations]}]}

plus lighteval's own results and per-sample details under out/. Workarounds for lighteval 0.13
offline:
- the registry imports every built-in task module on start (some download or crash offline):
  `Registry.load_all_task_configs` is replaced by one that loads only the plan's TASKS_TABLE;
- the prediction cache is keyed on the model name, not the weights: it is switched off;
- result keys are "task:0" (get_results) but "task|0" (saved JSON): we strip either suffix.

Document selection under --max-samples: lighteval shuffles a task's documents (seed 42) and
takes the first N; lm-eval takes the first N of the split. `first_n` scores the first N documents
of the split, each with the very few-shot examples lighteval gives it in a full run (its docs are
built as for a full run, then the first N by index are kept), so the two engines score the same
documents; `spread` takes N documents spread evenly over the split (i * size // N), each likewise
with its full-run shots (a split's first documents can share one label); `lighteval` keeps the
engine's shuffle.
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
sys.path.insert(0, str(ROOT))  # the project's modules (bench.schema has no imports: safe in this venv)
from bench.schema import DOC_SELECTIONS  # noqa: E402


def _only_custom_tasks(custom_tasks=None, load_multilingual=False):
    """Replacement for Registry.load_all_task_configs: the plan's TASKS_TABLE, nothing else imported."""
    from lighteval.tasks.registry import Registry

    return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks))


def _by_index(engine_get_docs, how: str):
    """LightevalTask.get_docs taking N documents of the split by index instead of N shuffled ones:
    its first N (`first_n`) or N spread evenly over it (`spread`: documents i * size // N)."""

    def get_docs(self, max_samples=None):
        docs = engine_get_docs(self, None)  # every doc, with the few-shot examples of a full run
        if max_samples:
            docs = sorted(docs, key=lambda d: int(d.id))
            if how == "first_n":
                docs = docs[:max_samples]
            elif max_samples < len(docs):
                docs = [docs[i * len(docs) // max_samples] for i in range(max_samples)]
        return docs

    return get_docs


def _n_tokens(model, detail) -> list[int]:
    """Tokens per choice as the engine scored them (loglikelihood), or per generation.

    A loglikelihood doc's count comes from lighteval's own split of context and choice (its
    tok_encode_pair, pairwise as its batches do), not from the response's output_tokens: lighteval
    0.13 cuts that [choices, longest] tensor to min(choices, longest) rows
    (`gathered_continuations[i][:num_choices][:len_choice]`), so an ARC doc whose longest choice
    is 2 tokens kept 2 of its 4 rows. The recomputed context must have as many tokens as the one
    scored (the response's input_tokens), else this raises."""
    import torch

    response, doc = detail.model_response, detail.doc
    if response.logprobs and doc.choices and len(response.logprobs) == len(doc.choices):
        context, continuations = model.tok_encode_pair(model.prompt_manager.prepare_prompt(doc), list(doc.choices),
                                                       pairwise=True)
        scored = response.input_tokens
        if scored is not None and len(scored) and len(context[0]) != len(scored):
            raise RuntimeError(f"doc {doc.id}: recomputed context has {len(context[0])} tokens, "
                               f"lighteval scored {len(scored)}")
        return [len(c) for c in continuations]
    if response.output_tokens is None:
        return []
    return [int((torch.as_tensor(t) != -1).sum()) for t in response.output_tokens]


def _task_key(key: str) -> str:
    return key.replace("|", ":").rsplit(":", 1)[0]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--plan", required=True, help="JSON task plan (see lighteval_tasks.py)")
    parser.add_argument("--tasks", required=True, help="comma-separated name|fewshot")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--doc-selection", choices=DOC_SELECTIONS, default="first_n")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    os.environ["SSMB_LIGHTEVAL_PLAN"] = str(Path(args.plan).resolve())  # read by lighteval_tasks.py

    import torch
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters
    from lighteval.tasks.lighteval_task import LightevalTask
    from lighteval.tasks.registry import Registry

    import models.hf  # noqa: F401  registers ssm_bench_mamba with AutoModelForCausalLM

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    Registry.load_all_task_configs = staticmethod(_only_custom_tasks)
    if args.doc_selection != "lighteval":
        LightevalTask.get_docs = _by_index(LightevalTask.get_docs, args.doc_selection)
    out = Path(args.out).resolve()
    # lighteval files its results and details under out/{results,details}/<model_name>/, and
    # model_name is the path it loads: an absolute one copied the whole path, the job's
    # `.<run>.staging-<id>` folder included, which the report then took for a killed job. Load it
    # by its folder name, from its parent.
    model_dir = Path(args.model_dir).resolve()
    os.chdir(model_dir.parent)
    out.mkdir(parents=True, exist_ok=True)
    tracker = EvaluationTracker(output_dir=str(out), save_details=True)
    params = PipelineParameters(launcher_type=ParallelismManager.NONE, custom_tasks_directory=str(TASKS_MODULE),
                                max_samples=args.max_samples)
    model_config = TransformersModelConfig(model_name=model_dir.name,
                                           batch_size=args.batch_size,
                                           device="cuda" if torch.cuda.is_available() else "cpu")
    pipeline = Pipeline(tasks=args.tasks, pipeline_parameters=params, evaluation_tracker=tracker,
                        model_config=model_config)
    pipeline.model._cache = None  # keyed on the model path, not the weights: never reuse
    tokenizer = pipeline.model.tokenizer  # evaluate() ends with model.cleanup(), which deletes it
    pipeline.evaluate()
    pipeline.model._tokenizer = tokenizer  # for _n_tokens: the engine's own tokenization, after the run
    pipeline.save_and_push_results()
    results = pipeline.get_results()
    details = pipeline.get_details()  # {"task|fewshot": [one Detail per sample]}

    engine_split = {}  # task -> (split its shots came from, the split the engine's config names)
    for cfg in Registry.create_custom_tasks_module(str(TASKS_MODULE)).TASKS_TABLE:
        used = LightevalTask(cfg).fewshot_split or ",".join(cfg.evaluation_splits)
        engine_split[cfg.name] = (used, getattr(cfg, "engine_fewshot_split", used))

    samples = {}
    for name, entries in details.items():
        samples[_task_key(name)] = [
            {"doc_id": int(d.doc.id), "gold": d.doc.gold_index, "metrics": {k: float(v) for k, v in d.metric.items()},
             "logprobs": [float(x) for x in (d.model_response.logprobs or [])],
             "n_tokens": _n_tokens(pipeline.model, d), "choices": [str(c) for c in (d.doc.choices or [])],
             "truncated": int(d.model_response.truncated_tokens_count or 0),
             "text": [str(t) for t in (d.model_response.text or [])]} for d in entries]
    per_task = {}
    for key, values in results["results"].items():
        if key == "all":
            continue
        task = _task_key(key)
        if task not in engine_split:  # lighteval's own group means ("mmlu:_average"): ours are in bench.evals.rows
            continue
        metrics = {k: v for k, v in values.items() if not k.endswith("_stderr")}
        stderr = {k[: -len("_stderr")]: v for k, v in values.items() if k.endswith("_stderr")}
        per_task[task] = {"metrics": metrics, "stderr": stderr, "n_samples": len(samples.get(task, [])),
                          "fewshot_split": engine_split[task][0], "engine_fewshot_split": engine_split[task][1]}
    (out / "metrics.json").write_text(json.dumps(per_task, indent=2))
    (out / "samples.json").write_text(json.dumps(samples))


if __name__ == "__main__":
    main()
