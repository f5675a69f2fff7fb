"""Leaderboard evals of one model: lm-evaluation-harness (v2, HF-normalized) or lighteval (v1).

The model comes from the backend (random weights from our configs, or a local directory); the
suite is `local` (our generated tasks, no download), `v2` (lm-eval, datasets from the local HF
cache) or `v1` (lighteval, JSONL exports). The work is done by bench/evals; this module maps the
Hydra config onto it. lm-eval's results JSON and per-sample logs stay in the run directory.
"""

from __future__ import annotations

from pathlib import Path



def run(cfg, backend, out_dir=None) -> list[dict]:
    from bench.evals.leaderboard import run_leaderboard

    sc = cfg.scenario
    tokenizer = _tokenizer(cfg, backend)
    vocab = backend.vocab_size()
    if len(tokenizer) > vocab:
        raise ValueError(f"model.vocab_size: the tokenizer has {len(tokenizer)} tokens, the model only {vocab}")
    import torch

    backend.probe_tokens(torch.arange(len(tokenizer)))  # every token the evals can feed gives finite logits
    rows = run_leaderboard(backend.model, tokenizer, backend.arch, suite=sc.suite, harness=sc.harness,
                           out_dir=Path(out_dir or cfg.results_dir) / "evals", limit=sc.limit, batch_size=sc.batch_size,
                           bootstrap_iters=sc.bootstrap_iters, seed=sc.seed, v1_data_dir=sc.v1_data_dir,
                           tasks=list(sc.tasks) if sc.tasks else None, data=sc.data,
                           doc_selection=sc.doc_selection, acc_norm_space=sc.acc_norm_space)
    for row in rows:
        row.setdefault("source", "measured")
        if sc.tasks:  # a chosen subset: its average is not the suite's (the `tasks` column names it)
            row["suite_complete"] = False
    return rows


def _tokenizer(cfg, backend):
    if cfg.model.weights == "pretrained":
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(cfg.model.path, local_files_only=True)
    if cfg.scenario.suite != "local":  # real tasks: the model's real tokenizer (model.tokenizer)
        from bench.config import ConfigError
        from bench.tokenizers import tokenizer_for_model

        tokenizer = tokenizer_for_model(cfg.model)
        if tokenizer is None:
            raise ConfigError(f"model.tokenizer: suite {cfg.scenario.suite} reads real text and needs a real "
                              "tokenizer (e.g. model.tokenizer=falcon), got null")
        return tokenizer
    from bench.evals.local_tasks import local_tokenizer

    return local_tokenizer()  # random weights: the small tokenizer trained on our local tasks

