"""The entry point of the harness's `leaderboard` scenario: one model, one suite, one harness.

    rows = run_leaderboard(model, tokenizer, arch_name="ssm", suite="local", harness="lm_eval", out_dir=...)

| suite | harness   | tasks                                                       | data                        |
| ----- | --------- | ----------------------------------------------------------- | --------------------------- |
| local | either    | our generated tasks (bench/evals/local_tasks.py)            | shipped, no download        |
| v2    | lm_eval   | IFEval, BBH, MATH Lvl 5, GPQA, MuSR, MMLU-Pro               | data/ (make data) or Hub    |
| v1    | lighteval | ARC, HellaSwag, MMLU, TruthfulQA, Winogrande, GSM8K         | JSONL exports (v1_data_dir) |

Rows carry the tidy schema's metric/value/unit plus task, subtask, raw, normalized, n_samples,
stderr, harness, suite and arch; the runner adds the run columns.
"""

from __future__ import annotations

from pathlib import Path

HARNESSES = ("lm_eval", "lighteval")
SUITES = {"lm_eval": ("local", "v2"), "lighteval": ("local", "v1")}


def run_leaderboard(model, tokenizer, arch_name: str, suite: str = "local", harness: str = "lm_eval",
                    out_dir: str | Path = "results/leaderboard", limit: int | float | None = None,
                    batch_size: int = 8, bootstrap_iters: int = 0, seed: int = 1234,
                    v1_data_dir: str | Path | None = None, tasks: list[str] | None = None,
                    doc_selection: str = "first_n", acc_norm_space: str | None = None,
                    data: str = "local") -> list[dict]:
    """Evaluate and return tidy rows. model: MambaLM, its transformers wrapper, or a transformers
    causal LM; tokenizer: a transformers tokenizer. Raises ValueError on an unknown suite/harness
    pair, DatasetNotCachedError / FileNotFoundError when benchmark data is not available offline.
    tasks: a subset of the suite's tasks (None: all). doc_selection, acc_norm_space: lighteval only
    (bench.evals.lighteval_runner); lm-eval rows record its own conventions, first_n and ignored.
    data: where v2 reads its datasets, "local" (data/, built by `make data`) or "hub"."""
    if harness not in HARNESSES:
        raise ValueError(f"harness must be one of {HARNESSES}, got {harness!r}")
    if suite not in SUITES[harness]:
        raise ValueError(f"harness {harness!r} runs suites {SUITES[harness]}, got {suite!r}")
    out_dir = Path(out_dir) / harness / suite
    if harness == "lm_eval":
        from bench.evals.lm_eval_runner import run_lm_eval

        rows = run_lm_eval(model, tokenizer, suite, out_dir, limit=limit, batch_size=batch_size,
                           bootstrap_iters=bootstrap_iters, seed=seed, tasks=tasks, data=data)
        # lm-eval takes a split's first N documents; its acc_norm leaves out the choice's leading space
        for row in rows:
            row.update(doc_selection="all" if limit is None else "first_n", acc_norm_space="ignored")
    else:
        from bench.evals.lighteval_runner import run_lighteval

        rows = run_lighteval(model, tokenizer, suite, out_dir, limit=limit, batch_size=batch_size, seed=seed,
                             v1_data_dir=v1_data_dir, tasks=tasks, doc_selection=doc_selection,
                             acc_norm_space=acc_norm_space)
    for row in rows:
        row.update(suite=suite, arch=arch_name)
    return rows


def load_model_dir(path: str | Path, arch_name: str, dtype=None):
    """A local model directory -> (model, tokenizer), offline, with a clear error when it is missing.
    arch_name "ssm": the in-repo Mamba (Mamba / FalconMamba / ssm_bench_mamba checkpoints);
    "transformer": AutoModelForCausalLM."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no local model weights (config.json missing); give a local Hugging Face "
                                "format directory (nothing is downloaded)")
    if arch_name == "ssm":
        from models.hf import load_mamba

        model = load_mamba(path, dtype=dtype)
    elif arch_name == "transformer":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    else:
        raise ValueError(f"arch_name must be 'ssm' or 'transformer', got {arch_name!r}")
    return model.eval(), AutoTokenizer.from_pretrained(path, local_files_only=True)
