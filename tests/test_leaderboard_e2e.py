"""`make bench-leaderboard` end to end at a small limit (CI: make test-lighteval).

The two commands of the Makefile target, v2 through lm-eval then v1 through lighteval (its own
venv), on the real local data (`make data`), one tiny random model of each architecture, one
document per subtask; then the report from those runs alone. Checks what a user would look at:
every job ok, every task with data scored on exactly `limit` documents per subtask, the tasks
without data named (the suite partial), and the report saying so in words.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.lighteval

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("tiny_mamba", "tiny_llama")  # one of each architecture (the experiment also sweeps tiny_mistral)
LIMIT = 1
SUITES = {  # suite: (the Makefile's extra arguments, tasks that run on the local data, tasks without data)
    "v2": ([], {"ifeval", "bbh", "math_hard"}, {"gpqa", "musr", "mmlu_pro"}),
    "v1": (["scenario.harness=lighteval", "scenario.suite=v1"], {"arc", "hellaswag", "mmlu", "winogrande", "gsm8k"},
           {"truthfulqa"}),
}


def _need_data():
    from bench import data
    from bench.evals.lighteval_runner import venv_python

    venv_python()  # LightevalEnvError naming `make lighteval-env` when absent
    absent = data.missing(task="leaderboard_bbh_navigate") + data.missing(task="arc:challenge", fewshot=False)
    if absent:
        pytest.skip(absent[0].message)


def test_bench_leaderboard_runs_both_suites(tmp_path):
    from bench.report import sections
    from bench.report.load import load

    _need_data()
    start = time.perf_counter()
    for suite, (extra, _, _) in SUITES.items():
        cmd = [sys.executable, "-m", "bench", "experiment=leaderboard", f"results_dir={tmp_path}",
               f"scenario.limit={LIMIT}", f"model={','.join(MODELS)}", *extra]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{suite}: {proc.stderr[-3000:]}"
    print(f"bench-leaderboard at limit {LIMIT}, {len(MODELS)} models: {time.perf_counter() - start:.0f} s")

    d = load([tmp_path]).table()
    assert set(d["status"]) == {"ok"}
    for suite, (_, ran, missing) in SUITES.items():
        for model in MODELS:
            rows = d[(d["suite"] == suite) & (d["model"] == model)]
            assert set(rows["task"]) == ran | {"average"}, (suite, model)
            subtasks = rows[(rows["subtask"] != "all") & (rows["task"] != "average")]
            assert set(subtasks["n_samples"]) == {LIMIT}, (suite, model)
            assert set(rows["suite_complete"].astype(str)) == {"False"}
            (average,) = rows.loc[rows["task"] == "average", "missing_tasks"]
            assert set(average.split(",")) == missing

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Incomplete runs" not in (out / "report.md").read_text()  # lighteval's own output is no job
    # The leaderboard section's words, from these rows (a run is marked stale, and kept out of the
    # tables, when the working tree changed while it ran: not what this checks).
    section = sections._leaderboard(d.drop(columns=["stale"], errors="ignore"))
    table = next(i for i in section.items if isinstance(i, pd.DataFrame))
    measured = table[table["source"] == "measured"]
    assert set(measured["suite_complete"]) == {"partial (3 of 6 tasks)", "partial (5 of 6 tasks)"}
    notes = next(i for i in section.items if isinstance(i, list))
    for suite, (_, _, missing) in SUITES.items():
        for task in missing:
            assert any(n.startswith(f"{suite} {task} not measured: ") and "missing data file" in n for n in notes)
    assert any("mmlu_pro" in n and "TIGER-Lab__MMLU-Pro/default/validation.parquet" in n for n in notes)
