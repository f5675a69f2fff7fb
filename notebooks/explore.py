# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring ssm-bench results
#
# Loads the combined tidy table that `python -m bench.report` writes (`results/report/all_results.parquet`)
# and redraws the report's main plots, so that you can filter the rows first (one model, one hardware
# profile, ...). Set `SSM_BENCH_REPORT_DIR` to read another report directory.
#
# Every row has a `status` (ok, flagged, invalid, failed: see bench/schema.py) and a `stale` reason
# where the run's code or config has changed since. `rows.shown_rows` keeps what the report shows (ok
# and flagged rows of current runs), and `rows.series` the settings that tell rows apart: group by
# them, never by model alone, or runs with different settings get pooled.
#
# Paired with `explore.py` by jupytext: edit either, then `jupytext --sync notebooks/explore.py`.

# %%
import os
from pathlib import Path

import pandas as pd

from bench.report import plots, rows


def report_dir() -> Path:
    """SSM_BENCH_REPORT_DIR, else results/report of the repository (from the repo root or notebooks/)."""
    if os.environ.get("SSM_BENCH_REPORT_DIR"):
        return Path(os.environ["SSM_BENCH_REPORT_DIR"])
    for root in (Path.cwd(), Path.cwd().parent):
        if (root / "pyproject.toml").exists():
            return root / "results" / "report"
    return Path("results/report")


REPORT = report_dir()
df = pd.concat([pd.read_parquet(p) for p in sorted(REPORT.glob("*.parquet"))], ignore_index=True)
print(f"{len(df)} rows from {REPORT}")
df.groupby(["scenario", "source", "status"], dropna=False).size().rename("rows").to_frame()

# %% [markdown]
# ## What ran: models per scenario and hardware

# %%
df.groupby(["scenario", "model", "hardware", "dtype"])["run_id"].nunique().rename("runs").to_frame()

# %% [markdown]
# ## Generation: throughput and memory vs tokens generated
#
# A flat line is a fixed-size state (Mamba); a falling one is a growing KV cache (Transformer).

# %%
gen = rows.shown_rows(df, "generation", ["window_throughput"])
gen.groupby(rows.series(gen) + ["step"], dropna=False)["value"].median().unstack("step").round(1)

# %%
# Assigned, not returned: the inline backend shows each new figure once, at the end of its cell.
fig = plots.plot_generation_throughput(df)

# %%
fig = plots.plot_generation_memory(df)

# %% [markdown]
# ## Maximum prompt length within the memory budget

# %%
fig = plots.plot_max_prompt_len(df)

# %% [markdown]
# ## Implementation speed ratios and leaderboard

# %%
plots.implementation_ratios(df)

# %%
fig = plots.plot_implementation(df)

# %%
fig = plots.plot_leaderboard(df)

# %% [markdown]
# ## What is not ok: failed, invalid and flagged rows, stale runs

# %%
problems = df[df["status"] != "ok"]
problems.groupby(["status", "run_dir", "model", "reason"], dropna=False).size().rename("rows").to_frame()

# %%
df.loc[df["stale"].notna(), ["run_dir", "stale"]].drop_duplicates()
