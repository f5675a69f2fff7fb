"""The release's published leaderboard scores beside the measured ones (report section and plot).

Measured leaderboard rows name their suite (v1 | v2); for each suite measured, the scores the
Falcon Mamba release published (bench/evals/published.csv) are added as rows of source
"published": one per published model and task, at subtask "all", so that the section's table and
the plot show them next to the measured scores, marked published (hatched bars). Suites with
no published scores (our `local` tasks) get none.
"""

from __future__ import annotations

import pandas as pd

from bench.evals.published import load_published
from bench.schema import SCORE


def published_rows(suites) -> pd.DataFrame:
    """The published scores of `suites` as leaderboard rows (source "published")."""
    pub = load_published()
    pub = pub[pub["suite"].isin(set(suites))]
    return pd.DataFrame({
        "scenario": "leaderboard", "model": pub["model"].values, "suite": pub["suite"].values,
        "task": pub["task"].values, "subtask": "all", "metric": pub["metric"].values,
        "value": pub["score"].values, "normalized": pub["score"].values, "unit": SCORE,
        "source": "published", "status": "ok",
    })


def with_published(d: pd.DataFrame) -> pd.DataFrame:
    """Leaderboard rows `d` plus the published scores of every suite they measured (none already
    published in `d` itself)."""
    if d.empty or "suite" not in d or (d["source"] == "published").any():
        return d
    rows = published_rows(d.loc[d["scenario"] == "leaderboard", "suite"].dropna().unique())
    if rows.empty:
        return d
    return pd.concat([d, rows], ignore_index=True)


def metric_notes(d: pd.DataFrame) -> list[str]:
    """One line per task whose measured metric is not the one the published score used (e.g.
    lighteval 0.13's HellaSwag is a generative exact match, the v1 leaderboard's was acc_norm), and
    one per partial measured suite: the two are then not like for like."""
    if d.empty or "suite" not in d:
        return []
    pub = load_published()
    pub = pub[pub["suite"].isin(set(d["suite"].dropna()))]
    published = {(s, t): m for s, t, m in zip(pub["suite"], pub["task"], pub["metric"])}
    measured = d[(d["source"] != "published") & (d["subtask"] == "all")]
    notes = []
    for (suite, task), g in measured.groupby(["suite", "task"]):
        want = published.get((suite, task))
        have = sorted(set(g["metric"].dropna().astype(str)))
        if want is not None and want != "score" and have != [want]:
            notes.append(f"{suite} {task}: measured {', '.join(have)}; the published score is {want}, "
                         "so the two are not the same measure.")
    if "suite_complete" in measured:
        partial = measured[measured["suite_complete"].astype(str) == "False"]
        for suite, g in partial.groupby("suite"):
            missing = sorted({t for v in g.get("missing_tasks", pd.Series(dtype=str)).dropna() for t in str(v).split(",")})
            notes.append(f"{suite}: partial suite, its measured average leaves out {', '.join(missing) or 'some tasks'} "
                         "(no data); the published average covers every task.")
    return notes
