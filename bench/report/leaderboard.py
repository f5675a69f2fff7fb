"""The release's published leaderboard scores beside the measured ones (report section and plot),
and what a partial measured suite leaves out.

Measured leaderboard rows name their suite (v1 | v2); for each suite measured, the scores the
Falcon Mamba release published (bench/evals/published.csv) are added as rows of source
"published": one per published model and task, at subtask "all", so that the section's table and
the plot show them next to the measured scores, marked published (hatched bars). Suites with
no published scores (our `local` tasks) get none.

A measured suite whose tasks did not all run (no data on disk, or a chosen subset) is partial: its
rows say so (suite_complete False; the average row's missing_tasks and missing_why, bench.evals.rows).
`coverage` words it for tables ("partial (3 of 6 tasks)", never a bare 1/0) and `metric_notes`
names each missing task with the file to provide. Scores print with two decimals, as published.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from bench.evals.published import load_published
from bench.report.rows import saved_bool
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


def fmt_score(value) -> str:
    """A leaderboard score as the release prints it: two decimals (15.04, not 15)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):.2f}"


def _run_keys(d: pd.DataFrame) -> list[str]:
    return [c for c in ("run_id", "model", "harness", "suite") if c in d]


def suite_coverage(d: pd.DataFrame) -> list[dict]:
    """One entry per measured run and suite: {keys..., suite, ran (tasks scored), missing ({task: why}),
    complete (bool)}; `why` is the rows' one-line message naming the file to provide ("" when the
    rows do not say, e.g. a chosen subset of tasks)."""
    if d.empty or "suite_complete" not in d or "suite" not in d:
        return []
    measured = d[(d.get("source", pd.Series("measured", index=d.index)) != "published") & d["suite_complete"].notna()]
    out = []
    for values, g in measured.groupby(_run_keys(measured), dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        missing = {}
        for names in g.get("missing_tasks", pd.Series(dtype=object)).dropna():
            missing.update({t: "" for t in str(names).split(",") if t})
        for why in g.get("missing_why", pd.Series(dtype=object)).dropna():
            missing.update(json.loads(why))
        out.append({**dict(zip(_run_keys(measured), values)), "ran": sorted(set(g["task"]) - {"average"}),
                    "missing": missing, "complete": not g["suite_complete"].map(lambda v: saved_bool(v) is False).any()})
    return out


def coverage_text(entry: dict) -> str:
    """'complete (6 of 6 tasks)', 'partial (3 of 6 tasks)', or 'partial (2 tasks chosen)' for a subset."""
    ran, missing = len(entry["ran"]), len(entry["missing"])
    if entry["complete"]:
        return f"complete ({ran} of {ran} tasks)"
    return f"partial ({ran} of {ran + missing} tasks)" if missing else \
        f"partial ({ran} task{'s' if ran != 1 else ''} chosen)"


def coverage(d: pd.DataFrame) -> pd.DataFrame:
    """`d` with suite_complete in words (coverage_text) on measured rows, so tables never print 1/0."""
    entries = suite_coverage(d)
    if not entries:
        return d
    keys = _run_keys(d)
    words = {tuple(str(e[k]) for k in keys): coverage_text(e) for e in entries}
    d = d.copy()
    d["suite_complete"] = [words.get(tuple(str(v) for v in row), None) if pd.notna(c) else c
                           for row, c in zip(d[keys].itertuples(index=False), d["suite_complete"])]
    return d


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
    seen = set()
    for entry in suite_coverage(d[d["source"] != "published"]):
        if entry["complete"]:
            continue
        missing = entry["missing"]
        key = (entry["suite"], coverage_text(entry), json.dumps(missing, sort_keys=True))
        if key in seen:  # one note per suite and reason, not one per model
            continue
        seen.add(key)
        left_out = ", ".join(sorted(missing)) if missing else "the tasks not chosen (scenario.tasks)"
        notes.append(f"{entry['suite']}: {coverage_text(entry).replace('partial', 'partial suite')}: its measured "
                     f"average leaves out "
                     f"{left_out}; the published average covers every task.")
        notes += [f"{entry['suite']} {task} not measured: {why}" for task, why in sorted(missing.items()) if why]
    return notes
