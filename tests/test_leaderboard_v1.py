"""v1 suite: published scores in the report, the v1 task table, and (lighteval mark) real runs.

The report part is fast and runs in `make test`. The runs need .venv-lighteval and the real data
of `make data`; they are marked `lighteval` (make test-lighteval); the random-weights check over a
few hundred real documents per task is also `slow`.
"""

import math

import pandas as pd
import pytest

from bench.evals.lighteval_runner import V1_RULES, V1_TASKS
from bench.evals.published import load_published
from bench.report import leaderboard, plots, sections


def _measured(suite="v1", tasks=("arc", "hellaswag", "winogrande"), metric="acc_norm", complete=True):
    rows = []
    for task in tasks:
        rows.append({"scenario": "leaderboard", "model": "tiny_mamba", "suite": suite, "harness": "lighteval",
                     "task": task, "subtask": "all", "metric": metric, "value": 25.0, "normalized": 25.0,
                     "unit": "score", "source": "measured", "status": "ok", "suite_complete": complete})
    rows.append({**rows[-1], "task": "average", "metric": "score",
                 "missing_tasks": None if complete else "truthfulqa"})
    return pd.DataFrame(rows)


def test_published_rows_beside_measured():
    d = leaderboard.with_published(_measured())
    pub = d[d["source"] == "published"]
    expected = load_published().query("suite == 'v1'")
    assert len(pub) == len(expected) == 4 * 7 and set(pub["suite"]) == {"v1"}
    falcon = pub[pub["model"] == "Falcon Mamba 7B"].set_index("task")["value"]
    assert falcon["arc"] == 62.03 and falcon["average"] == 64.09
    assert set(pub["subtask"]) == {"all"} and set(pub["status"]) == {"ok"}
    # the local suite has no published scores; rows already holding published ones are left alone
    assert leaderboard.with_published(_measured(suite="local")).equals(_measured(suite="local"))
    assert len(leaderboard.with_published(d)) == len(d)


def test_section_and_plot_show_published():
    d = _measured(complete=False)
    section = sections._leaderboard(d)
    table = next(i for i in section.items if isinstance(i, pd.DataFrame))
    assert "published" in set(table["source"]) and "measured" in set(table["source"])
    assert any("Falcon Mamba 7B" in str(m) for m in table["model"])
    notes = next(i for i in section.items if isinstance(i, list))
    assert not any(n.startswith("v1 arc") or n.startswith("v1 hellaswag") for n in notes)  # same metric
    assert any("winogrande: measured acc_norm; the published score is acc" in n for n in notes)
    assert any("partial suite" in n and "truthfulqa" in n for n in notes)
    fig = plots.plot_leaderboard(d)
    hatched = [p for p in fig.axes[0].patches if p.get_hatch() and math.isfinite(p.get_height())]
    assert len(hatched) == 4 * 7  # each published model's 7 v1 scores, hatched
    solid = [p for p in fig.axes[0].patches if not p.get_hatch() and math.isfinite(p.get_height())]
    assert len(solid) == 4  # the measured ones
