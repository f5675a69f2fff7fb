"""The report's figures, each drawn from the combined tidy table alone.

Every `plot_*` function takes the combined table (all runs, see load.Collection.table), picks
the rows of its scenario that may be shown (rows.shown_rows), and returns a matplotlib Figure,
or None when there is nothing to draw: a scenario without rows simply has no figure. Each line
or bar is one combination of settings (rows.series), its legend names them, and a line above the
plot names the settings every row shares. NaN and inf values are left out of the drawing (the
tables print them). `draw_all` draws and saves them all and says why any was not drawn. The
notebook calls the same functions, so the backend is left to the caller (the CLI picks Agg; a
notebook keeps its inline backend).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bench.report.rows import groups, label, legend_columns, recorded, series, shown_rows, text
from bench.report import batch, probes, vision
from bench.report.tables import fmt_count

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


def finite(d: pd.DataFrame) -> pd.DataFrame:
    """The rows whose value can be drawn."""
    return d[np.isfinite(d["value"].astype(float))]


def wrap(labels: list[str], width: int = 36) -> list[str]:
    """Tick labels on several lines, so that long settings do not squeeze the axes."""
    return [textwrap.fill(lbl, width) for lbl in labels]


def subtitle(fig: Figure, d: pd.DataFrame, shown: list[str]) -> None:
    """The settings every row shares (what the figure records), above the axes."""
    text = recorded(d, shown)
    if text:
        fig.suptitle(textwrap.fill(text, 130), fontsize=7, color="#444")


def model_colors(models) -> dict[str, str]:
    """One color per model, stable across figures (sorted names onto tab10)."""
    cmap = plt.get_cmap("tab10")
    return {m: matplotlib.colors.to_hex(cmap(i % 10)) for i, m in enumerate(sorted(set(models)))}


def prompt_len_text(value: float, verdict) -> str:
    """A max_seq_len result: the length, '≥ length' when the search stopped at its probe cap (a
    lower bound), '—' when the weights alone exceed the budget."""
    if verdict == "weights_exceed_budget":
        return "—"
    return ("≥ " if verdict == "exceeds_probe_cap" else "") + format_tokens(value)


def format_tokens(n: float) -> str:
    """A prompt length: +inf is an unbounded verdict; NaN or -inf is no length and says so."""
    if np.isposinf(n):
        return "unbounded"
    return fmt_count(n) if np.isfinite(n) else str(n)


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

def max_prompt_rows(df: pd.DataFrame) -> pd.DataFrame:
    """max_prompt_len rows that have a verdict to show: a length (inf: unbounded) or weights_exceed_budget."""
    d = shown_rows(df, "max_seq_len", ["max_prompt_len"])
    verdict = d["verdict"] if "verdict" in d else pd.Series(None, index=d.index, dtype=object)
    return d[d["value"].notna() | (verdict == "weights_exceed_budget")]


def plot_max_prompt_len(df: pd.DataFrame) -> Figure | None:
    """Horizontal bars per model and settings, parallel vs sequential prefill, log-x.

    'unbounded' is a hatched bar running to the axis edge with an arrow; a model whose weights
    alone exceed the budget gets a label and no bar. One panel per memory budget, titled with the
    emulated hardware (budget_hardware) whose budget it is.
    """
    d = max_prompt_rows(df)
    if d.empty:
        return None
    cols = series(d, axes=("metric", "prefill_mode"))
    named = legend_columns(d, cols)
    d = d.assign(budget=d["budget_bytes"] if "budget_bytes" in d else np.nan,
                 verdict=d["verdict"] if "verdict" in d else None,
                 budget_hw=d["budget_hardware"].fillna("") if "budget_hardware" in d else "",
                 label=[label(dict(zip(cols, k)), named) for k in d[cols].itertuples(index=False)])
    panels = list(d[["budget", "budget_hw"]].drop_duplicates().itertuples(index=False, name=None))
    panels.sort(key=lambda p: (np.isnan(p[0]), np.nan_to_num(p[0]), p[1]))
    modes = [m for m in ("parallel", "sequential") if m in set(d["prefill_mode"])] or [None]
    values = d["value"]
    drawn = values[np.isfinite(values) & (values > 0)]
    low = max(1.0, drawn.min() / 4) if len(drawn) else 1.0
    edge = drawn.max() * 10 if len(drawn) else 1e6  # where 'unbounded' bars end

    labels = sorted(d["label"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 1.2 + 0.7 * len(labels) * len(modes)),
                             squeeze=False, sharey=True)
    height = 0.8 / len(modes)
    for ax, (budget, budget_hw) in zip(axes[0], panels):
        in_panel = (d["budget"] == budget) if np.isfinite(budget) else d["budget"].isna()
        sub = d[in_panel & (d["budget_hw"] == budget_hw)]
        for i, lbl in enumerate(labels):
            for j, mode in enumerate(modes):
                rows = sub[(sub["label"] == lbl) & ((sub["prefill_mode"] == mode) if mode else True)]
                if rows.empty:
                    continue
                row = rows.iloc[0]
                y = i + (j - (len(modes) - 1) / 2) * height
                color = MODE_COLORS.get(mode, "tab:gray")
                if row["verdict"] == "weights_exceed_budget":
                    ax.text(low * 1.1, y, "weights exceed budget", va="center", fontsize=8, color="tab:red")
                elif row["verdict"] == "unbounded" or np.isposinf(row["value"]):
                    ax.barh(y, edge - low, left=low, height=height * 0.9, color=color, alpha=0.35,
                            hatch="//", edgecolor=color)
                    # An arrow to the axis edge: the bar goes on for ever.
                    ax.annotate("unbounded  ", xy=(edge, y), xytext=(edge / 30, y), va="center", ha="right",
                                fontsize=8, fontweight="bold",
                                arrowprops=dict(arrowstyle="-|>", color="black", lw=1.5, mutation_scale=15))
                elif np.isfinite(row["value"]) and row["value"] > 0:
                    ax.barh(y, row["value"] - low, left=low, height=height * 0.9, color=color)
                    ax.text(row["value"] * 1.1, y, prompt_len_text(row["value"], row["verdict"]), va="center", fontsize=8)
                else:  # a value that cannot be a bar: say what it is
                    ax.text(low * 1.1, y, f"{row['value']} tokens", va="center", fontsize=8, color="tab:red")
        ax.set_xscale("log")
        ax.set_xlim(low, edge)
        ax.set_yticks(range(len(labels)), wrap(labels))
        ax.invert_yaxis()
        ax.set_xlabel("max prompt length (tokens, log scale)")
        title = f"budget {budget / GIB:.3g} GiB" if np.isfinite(budget) else "budget not recorded"
        ax.set_title(f"Longest prompt that fits: {title}" + (f" ({budget_hw})" if budget_hw else ""))
        ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=MODE_COLORS.get(m, "tab:gray"), label=f"{m} prefill") for m in modes if m]
    if handles:
        legend_outside(axes[0][-1], handles=handles)
    subtitle(fig, d, cols + ["prefill_mode", "chunk_size"])
    fig.tight_layout()
    return fig


# --- generation -------------------------------------------------------------------------

MARKERS = "os^Dvx*P"  # one per series of the same model (same colour)


def _generation_series(d: pd.DataFrame, metric: str) -> tuple[list[str], pd.DataFrame]:
    """Median over repeats of one metric's finite values per (series, step). The series are
    those of all the scenario's rows, so that every panel names the same line the same way."""
    cols = series(d)
    m = finite(d[d["metric"] == metric])
    med = m.groupby(cols + ["step"], dropna=False)["value"].median().reset_index()
    if "source" not in cols:  # one source for all the scenario's rows
        med["source"] = d["source"].iloc[0] if len(d) else None
    if "mode" not in cols:  # one generation mode (full or sampled) for all of them
        med["mode"] = d["mode"].iloc[0] if "mode" in d and len(d) else None
    return cols, med


def _draw_series(ax, cols: list[str], med: pd.DataFrame, scale: float = 1.0) -> None:
    """One line per series: the model's colour, a marker per series of that model, dotted when simulated;
    sampled-context windows (mode sampled) are points without a line, larger, on the same axes.
    A line with the same values as one drawn before it would hide it: it is drawn dashed with hollow
    markers, and its legend entry says which line it lies on."""
    colors = model_colors(med["model"])
    named = legend_columns(med, cols)
    seen: dict[str, int] = {}
    drawn: list[tuple[pd.Series, str]] = []
    for values, s in groups(med, cols):
        n = seen[values["model"]] = seen.get(values["model"], -1) + 1
        line = s.groupby("step")["value"].median()
        name = label(values, named)
        under = next((other for prev, other in drawn if prev.index.equals(line.index)
                      and np.allclose(prev.values, line.values, rtol=1e-3, equal_nan=True)), None)
        style = dict(ls=(0, (4, 3)), mfc="none", ms=6) if under else \
            dict(ls=SOURCE_STYLES.get(s["source"].iloc[0], "-"), ms=3)
        if s["mode"].iloc[0] == "sampled":  # one window at each sampled context: nothing lies between
            style.update(ls="none", ms=7)
        ax.plot(s["step"], s["value"] / scale, marker=MARKERS[n % len(MARKERS)], color=colors[values["model"]],
                label=textwrap.fill(f"{name} (same values as {under})" if under else name, 90), **style)
        drawn.append((line, name))


def plain_ticks(ax, axis: str = "x") -> None:
    """Log-axis tick labels as plain numbers (1,000, not 10³)."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    for a in ([ax.xaxis] if axis == "x" else [ax.yaxis] if axis == "y" else [ax.xaxis, ax.yaxis]):
        a.set_major_formatter(formatter)
        a.set_minor_formatter(FuncFormatter(_minor_label(a)))


def _minor_label(axis):
    """Under two decades matplotlib labels minor ticks too (2×10², ...): plain 200, 500, 2,000 there
    instead, and none on a wider axis (the decades are enough)."""
    def label(v, _):
        lo, hi = sorted(axis.get_view_interval())
        narrow = 0 < lo and hi / lo < 100
        return f"{v:,.0f}" if narrow and v >= 1 and f"{v:.0e}"[0] in "25" else ""
    return label


def byte_unit(largest: float) -> tuple[float, str]:
    """The unit that makes `largest` bytes read as a number between 1 and 1024."""
    for scale, unit in ((GIB, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
        if abs(largest) >= scale:
            return scale, unit
    return 1, "bytes"


def plot_generation_throughput(df: pd.DataFrame) -> Figure | None:
    """Window throughput vs tokens generated, one line per model and settings (log-x), with the
    bandwidth roofline of each model on its hardware profile where config.yaml gives the bandwidth."""
    d = shown_rows(df, "generation")
    cols, med = _generation_series(d, "window_throughput")
    if med.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.8))
    _draw_series(ax, cols, med)

    # Rooflines: one per (model, hardware, dtype, batch) that has a bandwidth and a param count.
    tops = []
    colors = model_colors(med["model"])
    roof_keys = ["model", "hardware", "dtype", "batch_size", "params", "bandwidth_gbps"]
    w = d[d["metric"] == "window_throughput"]
    for (model, hw, dtype, batch, params, bw), _ in w.groupby(roof_keys, dropna=False):
        roof = roofline_tokens_per_s(params, dtype, bw, batch)
        if np.isfinite(roof) and model in colors:
            tops.append(roof)
            ax.axhline(roof, color=colors[model], ls="--", lw=1, alpha=0.7,
                       label=f"roofline {model} on {hw} ({bw:g} GB/s, {dtype}, batch {batch:g})")
    ax.set_xscale("log")
    plain_ticks(ax, "x")
    if tops and max(tops) > 3 * med["value"].max() and (med["value"] > 0).any():
        ax.set_yscale("log")  # the roofline is far above the measurements: keep both visible
        plain_ticks(ax, "y")
    else:
        ax.set_ylim(bottom=min(0, med["value"].min()))
    ax.set_xlabel("tokens generated (log scale)")
    ax.set_ylabel("tokens/s (whole batch, per window)")
    ax.set_title("Generation throughput as the sequence grows")
    ax.grid(alpha=0.3, which="both")
    subtitle(fig, d, cols)
    fig.tight_layout()  # before the legend, as in the memory figure: many series must not squeeze the axes
    legend_outside(ax)
    return fig


def plot_generation_memory(df: pd.DataFrame) -> Figure | None:
    """Memory vs tokens generated: one panel per memory metric present (CUDA peaks, CPU RSS, state bytes)."""
    d = shown_rows(df, "generation")
    panels = [(metric, *_generation_series(d, metric)) for metric in MEMORY_METRICS]
    panels = [p for p in panels if not p[2].empty]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (metric, cols, med) in zip(axes[0], panels):
        scale, unit = byte_unit(med["value"].abs().max())
        _draw_series(ax, cols, med, scale)
        ax.set_ylim(bottom=min(0, med["value"].min() / scale))  # linear axes: memory grows linearly or not at all
        ax.set_xlabel("tokens generated")
        ax.set_ylabel(unit)
        ax.set_title(MEMORY_METRICS[metric])
        ax.grid(alpha=0.3, which="both")
    subtitle(fig, d, panels[0][1])
    fig.tight_layout()  # before the legend: long legend entries must not squeeze the panels
    legend_outside(axes[0][-1] if len(panels) == 1 else axes[0][len(panels) // 2])
    return fig


# --- leaderboard ---------------------------------------------------------------------------

def leaderboard_series(d: pd.DataFrame) -> list[str]:
    """What tells leaderboard bars apart: the settings that differ per task (harness, suite, ...),
    and always the source, measured or published."""
    cols = series(d, axes=("metric", "task", "subtask"))
    return cols + ([] if "source" in cols else ["source"])


def leaderboard_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One normalized score per (series, task): the task-level row, else the mean of its subtasks."""
    d = finite(shown_rows(df, "leaderboard"))
    if d.empty:
        return d
    task = d["task"] if "task" in d else d["metric"]
    subtask = d["subtask"] if "subtask" in d else pd.Series(np.nan, index=d.index)
    d = d.assign(task=task.fillna(d["metric"]), is_task=subtask.isna() | (subtask.astype(str).str.strip() == ""))
    keys = leaderboard_series(d) + ["task"]
    top = d[d["is_task"]]
    sub = d[~d["is_task"]]
    key = lambda frame: [tuple(map(text, k)) for k in frame[keys].itertuples(index=False)]  # noqa: E731
    have = set(key(top))
    sub = sub[[k not in have for k in key(sub)]]
    return pd.concat([top, sub]).groupby(keys, dropna=False, as_index=False)["value"].mean()


def plot_leaderboard(df: pd.DataFrame) -> Figure | None:
    """Grouped bars per task: each model and settings' measured score next to its published one (hatched)."""
    from bench.report.leaderboard import coverage, with_published

    scores = leaderboard_scores(coverage(with_published(df)))  # suite_complete in words, not 1/0
    if scores.empty:
        return None
    cols = [c for c in scores.columns if c not in ("task", "value")]
    named = legend_columns(scores, cols) + ["source"]
    colors = model_colors(scores["model"])
    tasks = sorted(scores["task"].unique())
    bars = [(values, g.set_index("task")["value"]) for values, g in groups(scores, cols)]
    bars.sort(key=lambda b: (str(b[0]["model"]), b[0]["source"] != "measured", label(b[0], named)))
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(tasks) * max(1, len(bars) / 3)), 4.5))
    for i, (values, s) in enumerate(bars):
        x = np.arange(len(tasks)) + (i - (len(bars) - 1) / 2) * width
        published = values["source"] == "published"
        color = colors[values["model"]]
        ax.bar(x, [s.get(t, np.nan) for t in tasks], width * 0.95, color=color, label=label(values, named),
               alpha=0.45 if published else 1.0, hatch="//" if published else None, edgecolor=color)
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    ax.set_ylabel("normalized score")
    ax.set_title("Leaderboard: measured vs published (hatched)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(min(0, scores["value"].min()), max(scores["value"].max(), 0.1) * 1.3)  # headroom for the legend
    ax.legend(loc="upper left", fontsize=7, ncol=2, frameon=False)
    subtitle(fig, shown_rows(df, "leaderboard"), cols)
    fig.tight_layout()
    return fig


# --- implementation -------------------------------------------------------------------------

REFERENCE_IMPL = "transformers"


def implementation_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Throughput of each impl divided by the reference impl's (transformers), per phase and the
    settings that differ (rows.series; a flagged throughput pairs only with a flagged one).

    Falls back to the run's own 'speedup' rows when no pair of throughputs is present.
    """
    d = shown_rows(df, "implementation")
    if d.empty:
        return pd.DataFrame()
    keys = series(d, axes=("metric", "impl"))
    out = []
    for metric in ("prefill_throughput", "decode_throughput"):
        m = d[d["metric"] == metric]
        if m.empty or REFERENCE_IMPL not in set(m["impl"]):
            continue
        wide = m.groupby(keys + ["impl"], dropna=False)["value"].median().unstack("impl")
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
    r = r[np.isfinite(r["ratio"].astype(float))]
    if r.empty:
        return None
    cols = series(r, axes=("phase",))
    named = legend_columns(r, cols)
    r = r.sort_values(cols)
    r = r.assign(label=[label(dict(zip(cols, k)), named) for k in r[cols].itertuples(index=False)])
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
    ax.set_xticks(range(len(labels)), wrap(labels, 28), rotation=15, ha="right")
    impls = ", ".join(sorted(set(r["impl"].astype(str))))
    ax.set_ylabel(f"speed ratio ({impls} / {REFERENCE_IMPL})")
    ax.set_title(f"Speed ratio vs {REFERENCE_IMPL} (>1: faster)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(0, max(1.0, r["ratio"].max()) * 1.25)  # headroom for the legend
    ax.legend(loc="upper left", fontsize=8, ncol=len(phases), frameon=False)
    subtitle(fig, shown_rows(df, "implementation"), cols + ["impl"])
    fig.tight_layout()
    return fig


# Figure name -> (scenario, function, the metrics it draws); the report places each figure in its
# scenario's section, and says why one was not drawn when its metrics have rows.
PLOTS = {
    "generation_throughput": ("generation", plot_generation_throughput, ["window_throughput"]),
    "generation_memory": ("generation", plot_generation_memory, list(MEMORY_METRICS)),
    "implementation_ratios": ("implementation", plot_implementation,
                              ["prefill_throughput", "decode_throughput", "speedup"]),
    "max_prompt_len": ("max_seq_len", plot_max_prompt_len, ["max_prompt_len"]),
    "leaderboard": ("leaderboard", plot_leaderboard, None),
    "vision_figure1": ("vision", vision.plot_figure1, ["throughput", "peak_memory"]),
    "probe_accuracy": ("probe", probes.plot_accuracy_vs_length, ["accuracy"]),
    "probe_extrapolation": ("probe", probes.plot_extrapolation, ["accuracy"]),
    "batch": ("batch", batch.plot_batch, ["trial_peak_bytes", "generation_throughput", "decode_throughput"]),
}


def draw_all(df: pd.DataFrame, out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Draws and saves (save) every figure that has data. Returns the names saved, and for each
    figure whose rows exist but that was not drawn, why: a figure is never worth the report."""
    names, notes = [], {}
    for name, (scenario, fn, metrics) in PLOTS.items():
        before = set(plt.get_fignums())
        try:
            fig = fn(df)
            if fig is not None:
                save(fig, out_dir, name)
                names.append(name)
                continue
        except Exception as e:  # noqa: BLE001 - the note names the error; the report goes on
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
            notes[name] = f"not drawn: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            continue
        rows = shown_rows(df, scenario, metrics)
        values = rows["value"].astype(float)
        if not rows.empty and not np.isfinite(values).any():  # else the figure had nothing to compare
            notes[name] = (f"not drawn: none of its {len(rows)} values is finite "
                           f"({int(values.isna().sum())} nan, {int(np.isinf(values).sum())} inf)")
    return names, notes


def save(fig: Figure, out_dir: Path, name: str) -> dict[str, Path]:
    """Writes name.png and name.svg under out_dir; returns both paths by extension."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("png", "svg")}
    try:
        fig.savefig(paths["png"], dpi=120, bbox_inches="tight")
        fig.savefig(paths["svg"], bbox_inches="tight")
    finally:
        plt.close(fig)
    return paths
