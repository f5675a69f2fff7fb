"""The report's figures, each drawn from the combined tidy table alone.

Every `plot_*` function takes the combined table (all runs, see load.Collection.table), picks
the successful rows of its scenario, and returns a matplotlib Figure, or None when there is
nothing to draw: a scenario without rows simply has no figure. `draw_all` runs them all;
`save` writes one figure as PNG and SVG. The notebook calls the same functions, so the backend
is left to the caller (the CLI picks Agg; a notebook keeps its inline backend).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# Bytes per parameter, for the weight bytes that a decode step must read (roofline).
DTYPE_BYTES = {"float64": 8, "float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "half": 2,
               "bfloat16": 2, "bf16": 2, "int8": 1, "float8_e4m3fn": 1, "fp8": 1}
MEMORY_METRICS = {"peak_allocated": "CUDA peak allocated", "peak_reserved": "CUDA peak reserved",
                  "rss": "process RSS (CPU)", "state_bytes": "inference state (SSM / KV cache)"}
MODE_COLORS = {"parallel": "tab:blue", "sequential": "tab:orange"}
SOURCE_STYLES = {"measured": "-", "simulated": ":", "published": "--"}
GIB = 2 ** 30


def legend_outside(ax, **kw) -> None:
    """Legend under the axes (below the x label), never over the data; save() crops to fit it."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, frameon=False, ncol=2, **kw)


def ok_rows(df: pd.DataFrame, scenario: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """Successful rows of one scenario (optionally only some metrics)."""
    d = df[(df["scenario"] == scenario) & (df["status"].fillna("ok") == "ok")]
    return d[d["metric"].isin(metrics)] if metrics else d


def model_colors(models) -> dict[str, str]:
    """One color per model, stable across figures (sorted names onto tab10)."""
    cmap = plt.get_cmap("tab10")
    return {m: matplotlib.colors.to_hex(cmap(i % 10)) for i, m in enumerate(sorted(set(models)))}


def series_columns(d: pd.DataFrame, candidates: list[str]) -> list[str]:
    """The candidate columns whose values differ between rows: what a legend must tell apart."""
    return [c for c in candidates if c in d.columns and d[c].astype(str).nunique(dropna=False) > 1]


def _short(v) -> str:
    """A legend value: 2048.0 -> '2048'."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def series_label(key: tuple, columns: list[str]) -> str:
    parts = [str(key[0])] + [f"{c}={_short(v)}" for c, v in zip(columns[1:], key[1:])]
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def format_tokens(n: float) -> str:
    if not np.isfinite(n):
        return "unbounded"
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def roofline_tokens_per_s(params: float, dtype: str, bandwidth_gbps: float, batch_size: float = 1) -> float:
    """Memory-bandwidth bound on decode: each step reads all weights once and yields batch_size tokens.

    tokens/s = batch_size * bandwidth (GB/s = 1e9 bytes/s) / (params * bytes per parameter).
    NaN when something is unknown.
    """
    nbytes = DTYPE_BYTES.get(str(dtype).replace("torch.", ""))
    if not nbytes or not np.isfinite(params) or not np.isfinite(bandwidth_gbps) or params <= 0:
        return float("nan")
    batch = batch_size if np.isfinite(batch_size) and batch_size > 0 else 1
    return batch * bandwidth_gbps * 1e9 / (params * nbytes)


# --- max_seq_len ---------------------------------------------------------------------------

def plot_max_prompt_len(df: pd.DataFrame) -> Figure | None:
    """Horizontal bars per model, parallel vs sequential prefill, log-x.

    'unbounded' is a hatched bar running to the axis edge with an arrow; a model whose weights
    alone exceed the budget gets a label and no bar. One panel per memory budget.
    """
    d = ok_rows(df, "max_seq_len", ["max_prompt_len"])
    if d.empty:
        return None
    d = d.assign(budget=d["budget_bytes"] if "budget_bytes" in d else np.nan,
                 verdict=d["verdict"] if "verdict" in d else None)
    label_cols = ["model"] + series_columns(d, ["hardware", "dtype", "batch_size"])
    d = d.assign(label=[series_label(k, label_cols) for k in d[label_cols].itertuples(index=False)])
    budgets = sorted(d["budget"].dropna().unique()) + ([np.nan] if d["budget"].isna().any() else [])
    modes = [m for m in ("parallel", "sequential") if m in set(d["prefill_mode"])] or [None]
    finite = d["value"][np.isfinite(d["value"]) & (d["value"] > 0)]
    low = max(1.0, finite.min() / 4) if len(finite) else 1.0
    edge = finite.max() * 10 if len(finite) else 1e6  # where 'unbounded' bars end

    labels = sorted(d["label"].unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(7.5 * len(budgets), 1.0 + 0.7 * len(labels) * len(modes)),
                             squeeze=False, sharey=True)
    height = 0.8 / len(modes)
    for ax, budget in zip(axes[0], budgets):
        sub = d[d["budget"] == budget] if np.isfinite(budget) else d[d["budget"].isna()]
        for i, label in enumerate(labels):
            for j, mode in enumerate(modes):
                rows = sub[(sub["label"] == label) & ((sub["prefill_mode"] == mode) if mode else True)]
                if rows.empty:
                    continue
                row = rows.iloc[0]
                y = i + (j - (len(modes) - 1) / 2) * height
                color = MODE_COLORS.get(mode, "tab:gray")
                if row["verdict"] == "weights_exceed_budget":
                    ax.text(low * 1.1, y, "weights exceed budget", va="center", fontsize=8, color="tab:red")
                elif row["verdict"] == "unbounded" or np.isinf(row["value"]):
                    ax.barh(y, edge - low, left=low, height=height * 0.9, color=color, alpha=0.35,
                            hatch="//", edgecolor=color)
                    # An arrow to the axis edge: the bar goes on for ever.
                    ax.annotate("unbounded  ", xy=(edge, y), xytext=(edge / 30, y), va="center", ha="right",
                                fontsize=8, fontweight="bold",
                                arrowprops=dict(arrowstyle="-|>", color="black", lw=1.5, mutation_scale=15))
                else:
                    ax.barh(y, row["value"] - low, left=low, height=height * 0.9, color=color)
                    ax.text(row["value"] * 1.1, y, format_tokens(row["value"]), va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(low, edge)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("max prompt length (tokens, log scale)")
        title = f"budget {budget / GIB:.3g} GiB" if np.isfinite(budget) else "budget not recorded"
        ax.set_title(f"Longest prompt that fits: {title}")
        ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=MODE_COLORS.get(m, "tab:gray"), label=f"{m} prefill") for m in modes if m]
    if handles:
        legend_outside(axes[0][-1], handles=handles)
    fig.tight_layout()
    return fig


# --- generation -------------------------------------------------------------------------

GENERATION_SERIES = ["model", "hardware", "device", "dtype", "batch_size", "prompt_len", "prefill_mode", "source"]


def _generation_series(d: pd.DataFrame, metric: str) -> tuple[list[str], pd.DataFrame]:
    """Median over repeats of one metric per (series, step)."""
    cols = ["model"] + series_columns(d, GENERATION_SERIES[1:])
    m = d[d["metric"] == metric]
    keys = cols + (["source"] if "source" not in cols else [])
    med = m.groupby(keys + ["step"], dropna=False)["value"].median().reset_index()
    return cols, med


def plot_generation_throughput(df: pd.DataFrame) -> Figure | None:
    """Window throughput vs tokens generated, one line per model (log-x), with the bandwidth
    roofline of each model on its hardware profile where config.yaml gives the bandwidth."""
    d = ok_rows(df, "generation")
    if not (d["metric"] == "window_throughput").any():
        return None
    cols, med = _generation_series(d, "window_throughput")
    colors = model_colors(d["model"])
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for key, s in med.groupby(cols, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        source = s["source"].iloc[0]
        ax.plot(s["step"], s["value"], SOURCE_STYLES.get(source, "-"), marker="o", ms=3,
                color=colors[key[0]], label=series_label(key, cols))

    # Rooflines: one per (model, hardware, dtype, batch) that has a bandwidth and a param count.
    tops = []
    roof_keys = ["model", "hardware", "dtype", "batch_size", "params", "bandwidth_gbps"]
    w = d[d["metric"] == "window_throughput"]
    for (model, hw, dtype, batch, params, bw), _ in w.groupby(roof_keys, dropna=False):
        roof = roofline_tokens_per_s(params, dtype, bw, batch)
        if np.isfinite(roof):
            tops.append(roof)
            ax.axhline(roof, color=colors[model], ls="--", lw=1, alpha=0.7,
                       label=f"roofline {model} on {hw} ({bw:g} GB/s, {dtype}, batch {batch:g})")
    ax.set_xscale("log")
    if tops and max(tops) > 3 * med["value"].max():
        ax.set_yscale("log")  # the roofline is far above the measurements: keep both visible
    else:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("tokens generated (log scale)")
    ax.set_ylabel("tokens/s (whole batch, per window)")
    ax.set_title("Generation throughput as the sequence grows")
    ax.grid(alpha=0.3, which="both")
    legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_generation_memory(df: pd.DataFrame) -> Figure | None:
    """Memory vs tokens generated: one panel per memory metric present (CUDA peaks, CPU RSS, state bytes)."""
    d = ok_rows(df, "generation")
    metrics = [m for m in MEMORY_METRICS if (d["metric"] == m).any()]
    if not metrics:
        return None
    colors = model_colors(d["model"])
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        cols, med = _generation_series(d, metric)
        scale, unit = (GIB, "GiB") if med["value"].max() >= GIB else (2 ** 20, "MiB")
        for key, s in med.groupby(cols, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            ax.plot(s["step"], s["value"] / scale, SOURCE_STYLES.get(s["source"].iloc[0], "-"), marker="o", ms=3,
                    color=colors[key[0]], label=series_label(key, cols))
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("tokens generated (log scale)")
        ax.set_ylabel(unit)
        ax.set_title(MEMORY_METRICS[metric])
        ax.grid(alpha=0.3, which="both")
    legend_outside(axes[0][-1])
    fig.tight_layout()
    return fig


# --- leaderboard ---------------------------------------------------------------------------

def leaderboard_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One normalized score per (model, source, task): the task-level row, else the mean of its subtasks."""
    d = ok_rows(df, "leaderboard")
    if d.empty:
        return d
    task = d["task"] if "task" in d else d["metric"]
    subtask = d["subtask"] if "subtask" in d else pd.Series(np.nan, index=d.index)
    d = d.assign(task=task.fillna(d["metric"]), is_task=subtask.isna() | (subtask.astype(str).str.strip() == ""))
    top = d[d["is_task"]]
    sub = d[~d["is_task"]]
    have = set(zip(top["model"], top["source"], top["task"]))
    sub = sub[[k not in have for k in zip(sub["model"], sub["source"], sub["task"])]]
    rows = pd.concat([top, sub])
    return rows.groupby(["model", "source", "task"], as_index=False)["value"].mean()


def plot_leaderboard(df: pd.DataFrame) -> Figure | None:
    """Grouped bars per task: each model's measured score next to its published one (hatched)."""
    scores = leaderboard_scores(df)
    if scores.empty:
        return None
    colors = model_colors(scores["model"])
    tasks = sorted(scores["task"].unique())
    bars = sorted(set(zip(scores["model"], scores["source"])), key=lambda k: (k[0], k[1] != "measured", k[1]))
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks) * max(1, len(bars) / 3)), 4.5))
    for i, (model, source) in enumerate(bars):
        s = scores[(scores["model"] == model) & (scores["source"] == source)].set_index("task")["value"]
        x = np.arange(len(tasks)) + (i - (len(bars) - 1) / 2) * width
        published = source == "published"
        ax.bar(x, [s.get(t, np.nan) for t in tasks], width * 0.95, color=colors[model], label=f"{model} ({source})",
               alpha=0.45 if published else 1.0, hatch="//" if published else None, edgecolor=colors[model])
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylabel("normalized score")
    ax.set_title("Leaderboard: measured vs published (hatched)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, scores["value"].max() * 1.3)  # headroom for the legend
    ax.legend(loc="upper left", fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    return fig


# --- implementation -------------------------------------------------------------------------

REFERENCE_IMPL = "transformers"
IMPLEMENTATION_KEYS = ["model", "hardware", "device", "dtype", "batch_size", "prompt_len"]


def implementation_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Throughput of each impl divided by the reference impl's (transformers), per phase and setting.

    Falls back to the run's own 'speedup' rows when no pair of throughputs is present.
    """
    d = ok_rows(df, "implementation")
    if d.empty:
        return pd.DataFrame()
    keys = [k for k in IMPLEMENTATION_KEYS if k in d.columns]
    out = []
    for metric in ("prefill_throughput", "decode_throughput"):
        m = d[d["metric"] == metric]
        if m.empty or REFERENCE_IMPL not in set(m["impl"]):
            continue
        wide = m.pivot_table(index=keys, columns="impl", values="value", aggfunc="median", dropna=False)
        for impl in (c for c in wide.columns if c != REFERENCE_IMPL):
            r = (wide[impl] / wide[REFERENCE_IMPL]).dropna().rename("ratio").reset_index()
            out.append(r.assign(phase=metric.removesuffix("_throughput"), impl=impl))
    if out:
        return pd.concat(out, ignore_index=True)
    s = d[d["metric"] == "speedup"]
    return s.assign(ratio=s["value"], phase="speedup") if not s.empty else pd.DataFrame()


def plot_implementation(df: pd.DataFrame) -> Figure | None:
    """Bars of speed ratios (impl / transformers) for prefill and decode; 1 = same speed."""
    r = implementation_ratios(df)
    if r.empty:
        return None
    cols = ["model"] + series_columns(r, IMPLEMENTATION_KEYS[1:] + ["impl"])
    r = r.sort_values(cols)
    r = r.assign(label=[series_label(k, cols) for k in r[cols].itertuples(index=False)])
    labels = list(dict.fromkeys(r["label"]))  # in the order of the sorted settings
    phases = list(dict.fromkeys(r["phase"]))
    width = 0.8 / len(phases)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4.2))
    for j, phase in enumerate(phases):
        s = r[r["phase"] == phase].groupby("label")["ratio"].median()
        x = np.arange(len(labels)) + (j - (len(phases) - 1) / 2) * width
        vals = [s.get(lbl, np.nan) for lbl in labels]
        ax.bar(x, vals, width * 0.95, label=phase)
        for xi, v in zip(x, vals):
            if np.isfinite(v):
                ax.text(xi, v, f"{v:.2f}×", ha="center", va="bottom", fontsize=8)
    ax.axhline(1.0, color="black", lw=1, ls="--")
    ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right")
    impls = ", ".join(sorted(set(r["impl"].astype(str))))
    ax.set_ylabel(f"speed ratio ({impls} / {REFERENCE_IMPL})")
    ax.set_title(f"Speed ratio vs {REFERENCE_IMPL} (>1: faster)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, max(1.0, r["ratio"].max()) * 1.25)  # headroom for the legend
    ax.legend(loc="upper left", fontsize=8, ncol=len(phases), frameon=False)
    fig.tight_layout()
    return fig


# Figure name -> (scenario, function); the report places each figure in its scenario's section.
PLOTS = {
    "generation_throughput": ("generation", plot_generation_throughput),
    "generation_memory": ("generation", plot_generation_memory),
    "implementation_ratios": ("implementation", plot_implementation),
    "max_prompt_len": ("max_seq_len", plot_max_prompt_len),
    "leaderboard": ("leaderboard", plot_leaderboard),
}


def draw_all(df: pd.DataFrame) -> dict[str, Figure]:
    """Every figure that has data, by name."""
    figures = {}
    for name, (_, fn) in PLOTS.items():
        fig = fn(df)
        if fig is not None:
            figures[name] = fig
    return figures


def save(fig: Figure, out_dir: Path, name: str) -> dict[str, Path]:
    """Writes name.png and name.svg under out_dir; returns both paths by extension."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("png", "svg")}
    fig.savefig(paths["png"], dpi=120, bbox_inches="tight")
    fig.savefig(paths["svg"], bbox_inches="tight")
    plt.close(fig)
    return paths
