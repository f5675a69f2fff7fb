"""The batch scenario in the report: throughput and memory against batch size, and the largest batch.

Rows (bench/scenarios/batch.py): `max_batch` (the search's answer, with its verdict), one
`trial_peak_bytes` per batch the search tried (measured on a capped GPU or as live tensor bytes,
or simulated on fake tensors; `oom` when it did not fit), and, for measured runs only, per timed
batch `generation_throughput` (prefill included, as the Mamba paper times it) and
`decode_throughput` (their medians: `stat` median), `ttft`, the state's bytes and the device's
peak memory. Each table row and line is one model and combination of settings (rows.series,
pairing and source included), never pooled across them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from bench.report.rows import groups, key_cells, label, legend_columns, recorded, series, shown_rows, text
from bench.report.tables import fmt_bytes, fmt_number, fmt_value

TITLE = "Batch: generation throughput and memory against batch size"
CAPTION = ("Left: tokens/s against batch size (solid: whole generation, prefill included; dashed: decode alone). "
           "Right: peak memory of each batch the search tried (× did not fit; dotted: simulated) and the budget")
AXES = ("metric", "batch_size")  # what varies along a table or figure, not between its series
PEAK_METRICS = ("peak_allocated", "rss")  # the device's peak of a timed run: CUDA, or the CPU process


def _medians(d: pd.DataFrame, metric: str) -> pd.DataFrame:
    m = d[d["metric"] == metric]
    return m[m["stat"] == "median"] if "stat" in m else m.iloc[0:0]


def largest_batch_table(d: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per model and settings: the largest batch, its verdict, and the peak at it."""
    m = d[d["metric"] == "max_batch"]
    keys = series(m, axes=AXES)
    rows = []
    for values, g in groups(m, keys):
        r = g.iloc[0]
        at = d[(d["metric"] == "peak_bytes_at_limit") & (d["run_id"] == r["run_id"])] if "run_id" in d else d.iloc[0:0]
        rows.append({**key_cells(values), "largest batch": fmt_number(r["value"]), "verdict": text(r.get("verdict")),
                     "limited by": text(r.get("limiting_factor")), "source": text(r.get("source")),
                     "budget": fmt_bytes(r.get("budget_bytes")),
                     "peak at it": fmt_bytes(at["value"].iloc[0]) if len(at) else "—"})
    return pd.DataFrame(rows), keys


def per_batch_table(d: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per model, settings and timed batch: tokens/s (medians), TTFT, state, peak memory."""
    timed = d[d["metric"].isin(["generation_throughput", "decode_throughput"]) & d["batch_size"].notna()]
    keys = series(timed, axes=AXES)
    rows = []
    for values, g in groups(timed, keys):
        run = d[d["run_id"].isin(set(g["run_id"]))] if "run_id" in d else d
        for batch in sorted(set(g["batch_size"].dropna())):
            at = run[run["batch_size"] == batch]
            row = {**key_cells(values), "batch": fmt_number(batch)}
            for metric, name in (("generation_throughput", "generation (tokens/s)"),
                                 ("decode_throughput", "decode (tokens/s)")):
                v = _medians(at, metric)["value"]
                row[name] = fmt_value(v.median(), "tokens/s") if len(v) else "—"
            for metric, name, unit in (("ttft", "TTFT", "s"), ("state_bytes", "state", "bytes")):
                v = at.loc[at["metric"] == metric, "value"]
                row[name] = fmt_value(v.median(), unit) if len(v) else "—"
            peak = at[at["metric"].isin(PEAK_METRICS)]
            row["peak memory"] = f"{fmt_bytes(peak['value'].median())} ({peak['metric'].iloc[0]})" if len(peak) else "—"
            rows.append(row)
    return pd.DataFrame(rows), keys


def section_items(d: pd.DataFrame) -> list:
    items = ["The largest batch within the memory budget, searched as the longest prompt is (doubling, then "
             "bisection to one sequence) at the scenario's prompt and generated tokens: on a GPU capped to the "
             "budget or as live tensor bytes (source measured), or on fake tensors (simulated, memory only, "
             "no timing). 'exceeds_probe_cap': it still fit at scenario.max_batch."]
    largest, keys = largest_batch_table(d)
    if not largest.empty:
        items += [largest, *_caption(d[d["metric"] == "max_batch"], keys)]
    timed, keys = per_batch_table(d)
    if not timed.empty:
        items += ["Timed generations at batch 1, 2, 4, ... and the largest (measured runs only): median tokens/s "
                  "over the repeats of the whole generation (prefill included, the Mamba paper's throughput) "
                  "and of the decode alone, time to first token, the inference state and the run's peak memory. "
                  "Compare architectures within one pairing only.", timed,
                  *_caption(d[d["metric"].isin(["generation_throughput", "decode_throughput"])], keys)]
    return items


def _caption(d: pd.DataFrame, keys: list[str]) -> list[str]:
    text_ = recorded(d, keys)
    return [text_] if text_ else []


def plot_batch(df: pd.DataFrame) -> Figure | None:
    d = shown_rows(df, "batch")
    trials = d[(d["metric"] == "trial_peak_bytes") & np.isfinite(d["value"].astype(float))]
    tps = pd.concat([_medians(d, "generation_throughput"), _medians(d, "decode_throughput")])
    if trials.empty and tps.empty:
        return None
    from bench.report.plots import MARKERS, SOURCE_STYLES, byte_unit, model_colors, plain_ticks, subtitle

    keys = series(pd.concat([trials, tps]), axes=AXES)
    colors = model_colors(d["model"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    seen: dict[str, int] = {}
    for values, g in groups(tps, keys):
        n = seen[values["model"]] = seen.get(values["model"], -1) + 1
        name = label(values, legend_columns(tps, keys))
        for metric, ls in (("generation_throughput", "-"), ("decode_throughput", "--")):
            m = g[g["metric"] == metric].groupby("batch_size")["value"].median()
            if len(m):
                left.plot(m.index, m.values, ls=ls, marker=MARKERS[n % len(MARKERS)], ms=4,
                          color=colors[values["model"]], label=name if metric == "generation_throughput" else None)
    scale, unit = byte_unit(trials["value"].abs().max() if len(trials) else 1)
    seen = {}
    budgets = set()
    for values, g in groups(trials, keys):
        n = seen[values["model"]] = seen.get(values["model"], -1) + 1
        g = g.sort_values("batch_size")
        oom = g["oom"].fillna(False).astype(bool) if "oom" in g else pd.Series(False, index=g.index)
        style = SOURCE_STYLES.get(text(g["source"].iloc[0]), "-")
        color = colors[values["model"]]
        right.plot(g.loc[~oom, "batch_size"], g.loc[~oom, "value"] / scale, ls=style, color=color,
                   marker=MARKERS[n % len(MARKERS)], ms=4, label=label(values, legend_columns(trials, keys)))
        right.scatter(g.loc[oom, "batch_size"], g.loc[oom, "value"] / scale, marker="x", color=color)
        budgets |= set(g["budget_bytes"].dropna()) if "budget_bytes" in g else set()
    for budget in budgets:
        right.axhline(budget / scale, color="#888", ls="--", lw=1)
    for ax, ylabel, title in ((left, "tokens/s (whole batch)", "Throughput"),
                              (right, unit, "Peak memory per batch (search trials)")):
        ax.set_xscale("log", base=2)
        plain_ticks(ax, "x")
        ax.set(xlabel="batch size (log scale)", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3, which="both")
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    subtitle(fig, d, keys)
    fig.tight_layout()
    # One legend under both panels: every series has memory trials; a timed one has throughput too.
    handles, labels = (right if right.get_legend_handles_labels()[0] else left).get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7, frameon=False)
    return fig
