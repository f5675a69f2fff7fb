"""Per-subtask metrics -> tidy result rows, with leaderboard normalization.

Both harnesses (lm-eval, lighteval) reduce their output to one dict

    {harness task name: {"metrics": {metric: value}, "stderr": {metric: value}, "n_samples": int}}

and `rows_from_metrics` turns it into rows: one per subtask, one per task (its leaderboard score),
and one `average` row. Columns: task, subtask, metric, raw (0..1), normalized (0..100),
n_samples, stderr, plus the schema's value (= normalized) and unit ("score").
"""

from __future__ import annotations

import json
import math
from statistics import fmean

from bench.evals.normalization import Rule, normalize, raw_value, score
from bench.schema import SCORE

ALL = "all"  # the subtask name of a task-level row


def _row(task, subtask, metric, raw, normalized, n_samples, stderr, harness) -> dict:
    return {"task": task, "subtask": subtask, "metric": metric, "raw": raw, "normalized": normalized,
            "n_samples": n_samples, "stderr": stderr, "value": normalized, "unit": SCORE,
            "harness": harness, "source": "measured"}


def _clean(x):
    """lm-eval writes 'N/A' for stderr when bootstrap_iters=0."""
    return float(x) if isinstance(x, (int, float)) and not math.isnan(x) else None


def rows_from_metrics(rules: dict[str, Rule], per_task: dict[str, dict], harness: str,
                      skipped: dict[str, str] | None = None) -> list[dict]:
    """skipped: the suite's tasks that could not run ({task: why}); every row then says the suite is
    partial (suite_complete False) and the average row, over the tasks that ran, names them
    (missing_tasks: comma-separated) and says why (missing_why: JSON {task: one-line message naming
    the file to provide}), so that a report built from the rows alone can say both."""
    rows, scores = [], {}
    for name, rule in rules.items():
        raw_by_subtask, n_total = {}, 0
        for subtask, (harness_task, num_choices) in rule.subtasks.items():
            entry = per_task.get(harness_task)
            if entry is None:
                raise KeyError(f"{harness}: no result for task {harness_task!r} (have {sorted(per_task)})")
            raw = raw_value(rule, entry["metrics"])
            raw_by_subtask[subtask] = raw
            n = entry.get("n_samples")
            n_total += n or 0
            stderr = [_clean(entry.get("stderr", {}).get(m)) for m in rule.metrics]
            stderr = stderr[0] if len(stderr) == 1 else None  # no stderr for a mean of two metrics
            rows.append(_row(name, subtask, rule.metric, raw, normalize(raw, num_choices), n,
                             None if stderr is None else stderr * 100, harness))
        scores[name] = score(rule, raw_by_subtask)
        rows.append(_row(name, ALL, rule.metric, fmean(raw_by_subtask.values()), scores[name], n_total, None,
                         harness))
    rows.append(_row("average", ALL, "score", None, fmean(scores.values()), None, None, harness))
    rows[-1]["missing_tasks"] = ",".join(sorted(skipped)) if skipped else None
    rows[-1]["missing_why"] = json.dumps(dict(sorted(skipped.items()))) if skipped else None
    for row in rows:
        row["suite_complete"] = not skipped
    return rows
