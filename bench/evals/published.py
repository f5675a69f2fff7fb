"""Published leaderboard scores (published.csv) and a join that puts measured scores beside them.

published.csv: the tables of the Hugging Face blog post "Welcome Falcon Mamba" (Aug 2024), tidy:
model, suite (v1 | v2), task, score. Task names are ours (bench/evals/normalization.py for v2;
arc, hellaswag, mmlu, winogrande, truthfulqa, gsm8k for v1; "average" for the mean).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED_CSV = Path(__file__).parent / "published.csv"


def load_published(path: str | Path = PUBLISHED_CSV) -> pd.DataFrame:
    """Columns: model, suite, task, score (float, 0..100), source ("published")."""
    df = pd.read_csv(path, comment="#")
    df["score"] = df["score"].astype(float)
    df["source"] = "published"
    return df


def join_published(measured: list[dict] | pd.DataFrame, suite: str, model: str | None = None,
                   published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Task-level measured rows (subtask "all") beside the published scores of every model.

    Returns one row per (task, published model): task, measured (our normalized score), model,
    published, delta = measured - published. `model` keeps one published model only.
    """
    measured = pd.DataFrame(measured)
    measured = measured[measured["subtask"] == "all"][["task", "normalized"]].rename(columns={"normalized": "measured"})
    published = load_published() if published is None else published
    published = published[published["suite"] == suite]
    if model is not None:
        if model not in set(published["model"]):
            raise ValueError(f"no published {suite} scores for {model!r}; known: {sorted(set(published['model']))}")
        published = published[published["model"] == model]
    out = measured.merge(published[["task", "model", "score"]].rename(columns={"score": "published"}),
                         on="task", how="left")
    out["delta"] = out["measured"] - out["published"]
    return out
