"""What the report says, independent of how it is written out (markdown or HTML).

`build(collection, table, figures)` returns a list of Sections. A section holds items in order:
a str is a paragraph, a list of str is a bullet list, a DataFrame is a table and a FigureRef is
a picture. Each scenario gets a section only when it has rows, so the report follows the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from bench.report import plots
from bench.report.load import Collection
from bench.report.tables import fmt_bytes, fmt_number, fmt_value
from bench.report.validate import SCENARIOS
from bench.schema import CROSSCHECK_TOOLS

SCENARIO_TITLES = {
    "generation": "Generation: throughput and memory as the sequence grows",
    "crosscheck": "Cross-check: ssm-bench vs optimum-benchmark",
    "implementation": "Implementation: ssm_bench vs transformers",
    "max_seq_len": "Maximum prompt length within a memory budget",
    "leaderboard": "Leaderboard: task scores",
}


@dataclass
class FigureRef:
    name: str  # file stem under plots/
    caption: str


@dataclass
class Section:
    title: str
    items: list = field(default_factory=list)  # str | list[str] | pd.DataFrame | FigureRef


def build(collection: Collection, table: pd.DataFrame, figures: dict[str, object]) -> list[Section]:
    sections = [_overview(collection, table), _environment(collection), _caveats(collection, table)]
    builders = {"generation": _generation, "crosscheck": _crosscheck, "implementation": _implementation,
                "max_seq_len": _max_seq_len, "leaderboard": _leaderboard}
    present = list(dict.fromkeys(table["scenario"].dropna().astype(str)))
    for scenario in [s for s in SCENARIOS if s in present] + [s for s in present if s not in SCENARIOS]:
        d = plots.ok_rows(table, scenario)
        if d.empty:
            continue  # only failures: listed under "Failed measurements"
        build_one = builders.get(scenario, _generic)
        section = build_one(d)
        section.title = section.title or f"Scenario: {scenario}"
        section.items += [FigureRef(name, _CAPTIONS[name]) for name, (sc, _) in plots.PLOTS.items()
                          if sc == scenario and name in figures]
        sections.append(section)
    failed = table[table["status"] != "ok"]
    if not failed.empty:
        sections.append(_failures(failed))
    sections.append(_skipped(collection))
    return sections


_CAPTIONS = {
    "generation_throughput": ("Throughput per window vs tokens generated (median over repeats; "
                              "dashed: bandwidth roofline; dotted: simulated)"),
    "generation_memory": "Memory vs tokens generated",
    "implementation_ratios": "Speed ratio per phase (1 = as fast as transformers)",
    "max_prompt_len": "Longest prompt within the memory budget, parallel vs sequential prefill",
    "leaderboard": "Normalized task scores, measured next to published (hatched)",
}


def short_path(path) -> str:
    """A run directory as the reader typed it: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def _join(values) -> str:
    return ", ".join(sorted({str(v) for v in values if pd.notna(v) and str(v) != ""}))


# --- overview -------------------------------------------------------------------------

def _time(value) -> datetime | None:
    """meta.json times: epoch seconds or ISO 8601 text."""
    try:
        return datetime.fromtimestamp(float(value)) if isinstance(value, (int, float)) \
            else datetime.fromisoformat(str(value))
    except (ValueError, TypeError, OverflowError):
        return None


def _duration(meta: dict) -> str:
    start, end = _time(meta.get("start_time")), _time(meta.get("end_time"))
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _overview(c: Collection, table: pd.DataFrame) -> Section:
    s = Section("What ran")
    n_failed = int((table["status"] != "ok").sum())
    s.items.append(f"{len(c.runs)} runs read, {len(c.skipped)} skipped (see *Skipped runs*), "
                   f"{len(table)} rows of which {n_failed} failed. Generated {datetime.now():%Y-%m-%d %H:%M}.")
    if c.missing_roots:
        s.items.append("Not found (no runs read from them): " + ", ".join(f"`{p}`" for p in c.missing_roots) + ".")
    rows = []
    for run in c.runs:
        r = run.rows
        rows.append({
            "run": short_path(run.path), "scenario": _join(r["scenario"]), "model": _join(r["model"]),
            "impl": _join(r["impl"]), "hardware": _join(r["hardware"]), "device": _join(r["device"]),
            "dtype": _join(r["dtype"]), "weights": _join(r["weights"]), "source": _join(r["source"]),
            "rows": len(r), "failed": int((r["status"] != "ok").sum()),
            "git": str(run.meta.get("git_sha", ""))[:10] + ("+dirty" if run.meta.get("git_dirty") else ""),
            "started": f"{_time(run.meta.get('start_time')):%Y-%m-%d %H:%M}" if _time(run.meta.get("start_time")) else "",
            "took": _duration(run.meta),
        })
    if rows:
        s.items.append(pd.DataFrame(rows))
    return s


def _versions(meta: dict) -> dict:
    """The library versions dict of meta.json, whatever its key ('versions', 'libraries', ...)."""
    for key in ("versions", "libraries", "library_versions", "packages"):
        if isinstance(meta.get(key), dict):
            return meta[key]
    return next((v for v in meta.values() if isinstance(v, dict)), {})


def _environment(c: Collection) -> Section:
    s = Section("Environment")
    machines = pd.DataFrame([{k: str(run.meta.get(k, "")) for k in ("cpu", "gpu", "torch_threads", "seed")}
                             for run in c.runs])
    if not machines.empty:
        counts = machines.value_counts(dropna=False).rename("runs").reset_index()
        s.items += ["Machines, as recorded in each run's meta.json:", counts]
    versions: dict[str, dict[str, int]] = {}
    for run in c.runs:
        for lib, version in _versions(run.meta).items():
            versions.setdefault(lib, {}).setdefault(str(version), 0)
            versions[lib][str(version)] += 1
    if versions:
        s.items += ["Library versions (runs per version):", pd.DataFrame(
            [{"library": lib, "version": ", ".join(f"{v} ({n})" for v, n in sorted(vs.items()))}
             for lib, vs in sorted(versions.items())])]
    shas = sorted({str(run.meta.get("git_sha")) for run in c.runs if run.meta.get("git_sha")})
    if shas:
        s.items.append("Git commit(s): " + ", ".join(f"`{sha}`" for sha in shas) + ".")
    if len(s.items) == 0:
        s.items.append("No meta.json was readable; the environment is unknown.")
    return s


# --- caveats ---------------------------------------------------------------------------

def _caveats(c: Collection, table: pd.DataFrame) -> Section:
    bullets = []
    counts = table["source"].value_counts()
    bullets.append("Rows by source: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".")
    sim = table[table["source"] == "simulated"]
    if not sim.empty:
        bullets.append(f"**Simulated** rows ({len(sim)}, hardware profile(s) {_join(sim['hardware'])}) are "
                       "estimates from a hardware model, not measurements; plots draw them dotted.")
    if (table["source"] == "published").any():
        bullets.append("**Published** rows are reference scores reported by others, not run here.")
    for kind, text in (("random", "random weights: speed and memory are representative, quality scores are not"),
                       ("pretrained", "pretrained weights"),
                       ("unknown", "weights not recorded in config.yaml (random or pretrained unknown)")):
        models = table.loc[(table["weights"] == kind) & (table["source"] != "published"), "model"]
        if not models.empty:
            bullets.append(f"Models with {text}: {_join(models)}.")
    if (table["device"].astype(str) == "cpu").any() and (table["metric"] == "rss").any():
        bullets.append("CPU memory is process RSS: it includes the Python runtime and libraries, not only the model.")
    if table["bandwidth_gbps"].notna().any():
        bullets.append("Rooflines assume each decode step reads every weight once at the profile's bandwidth "
                       "(batch × bandwidth / (params × bytes per parameter)); they ignore state and KV-cache "
                       "reads, so they are an upper bound.")
    shas = {str(r.meta.get("git_sha")) for r in c.runs if r.meta.get("git_sha")}
    if len(shas) > 1:
        bullets.append(f"Runs come from {len(shas)} different git commits.")
    dirty = [short_path(r.path) for r in c.runs if r.meta.get("git_dirty")]
    if dirty:
        bullets.append(f"{len(dirty)} runs were made from a working tree with uncommitted changes.")
    for run in c.runs:
        for note in run.notes:
            bullets.append(f"`{short_path(run.path)}`: {note}.")
    return Section("Caveats", [bullets])


# --- scenarios -------------------------------------------------------------------------

def metric_table(d: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    """Median value per metric (columns, unit in the header) for each combination of index columns."""
    index = [c for c in index if c in d.columns and d[c].notna().any()]
    units = d.groupby("metric")["unit"].first()
    wide = d.pivot_table(index=index, columns="metric", values="value", aggfunc="median", dropna=False)
    wide = wide.dropna(how="all").reset_index()
    wide.columns.name = None  # else HTML shows a header row named "metric"
    for metric in (m for m in wide.columns if m in units.index):
        wide[metric] = [fmt_value(v, units[metric]) for v in wide[metric]]
        wide = wide.rename(columns={metric: f"{metric} ({units[metric]})"})
    for col in index:
        wide[col] = wide[col].map(fmt_number)
    return wide


def _generation(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["generation"])
    keys = ["model"] + plots.series_columns(d, plots.GENERATION_SERIES[1:])
    rows = []
    for key, g in d.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        stat = g["stat"] if "stat" in g else pd.Series(np.nan, index=g.index)
        for metric, unit in (("ttft", "s"), ("decode_throughput", "tokens/s")):
            m = g[g["metric"] == metric]
            by_stat = m.assign(stat=stat[m.index]).groupby("stat")["value"].median()
            if "median" in by_stat:
                spread = f" [{fmt_number(by_stat.get('min'))}–{fmt_number(by_stat.get('max'))}]" \
                    if "min" in by_stat and "max" in by_stat else ""
                row[f"{metric} ({unit}) median [min–max]"] = fmt_number(by_stat["median"]) + spread
            elif not m.empty:
                row[f"{metric} ({unit}) median"] = fmt_number(m["value"].median())
        w = g[g["metric"] == "window_throughput"].groupby("step")["value"].median().sort_index()
        if len(w) >= 2:
            row["window tokens/s first → last"] = f"{fmt_number(w.iloc[0])} → {fmt_number(w.iloc[-1])}"
            row["last/first"] = f"{w.iloc[-1] / w.iloc[0]:.2f}"
        for metric in plots.MEMORY_METRICS:
            m = g[g["metric"] == metric]
            if not m.empty:
                row[f"{metric} at end"] = fmt_bytes(m.loc[m["step"] == m["step"].max(), "value"].median())
        rows.append(row)
    s.items.append("Per model: time to first token and decode throughput over the repeats, the throughput "
                   "of the first and last window (a ratio near 1 is flat; a KV cache makes it fall), and memory "
                   "after the last token.")
    s.items.append(pd.DataFrame(rows))
    return s


def _crosscheck(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["crosscheck"])
    loop, generate, optimum = CROSSCHECK_TOOLS
    keys = [c for c in ("model", "dtype", "device") if c in d.columns]
    rows, overheads = [], []
    for key, g in d.groupby(keys, dropna=False, sort=True):
        described = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        compared = g["tool"].isin(CROSSCHECK_TOOLS) & (g["metric"] != "loop_drift")
        for metric in dict.fromkeys(g.loc[compared, "metric"]):
            m = g[g["metric"] == metric]
            unit = m["unit"].iloc[0]
            row = {**described, "metric": f"{metric} ({unit})"}
            for tool in CROSSCHECK_TOOLS:
                values = m.loc[m["tool"] == tool, "value"]
                row[tool] = fmt_value(values.median(), unit) if not values.empty else "—"
            for tool in (loop, generate):
                r = g[(g["metric"] == f"{metric}_ratio") & (g["tool"] == f"{tool}/{optimum}")]
                agrees = not r.empty and "agrees" in r and bool(r["agrees"].iloc[0])
                row[f"{tool} / {optimum}"] = "—" if r.empty else \
                    f"{r['value'].iloc[0]:.2f}" + (" ✓" if agrees else " ✗")
            rows.append(row)
        drift = g.loc[g["metric"] == "loop_drift", "value"]
        if not drift.empty:
            overheads.append(f"{described.get('model')}: the loop's decode throughput after the other tools ran / "
                             f"before: {drift.iloc[0]:.2f} (the machine's own drift over the run).")
        extra = g[g["metric"] == "decode_overhead"].set_index("tool")["value"]
        if not extra.empty:
            overheads.append(f"{described.get('model')}: transformers' generate() adds "
                             f"{fmt_number(extra.get(f'{generate}-{loop}'))} ms/token over the loop (timed by "
                             f"ssm-bench), {fmt_number(extra.get(f'{optimum}-{loop}'))} ms/token as optimum-benchmark "
                             f"times it.")
    tolerance = d["tolerance"].dropna().iloc[0] if "tolerance" in d and d["tolerance"].notna().any() else None
    s.items.append("The same model and settings measured three ways: ssm-bench's loop (prefill, then one step per "
                   "token), transformers' generate() timed by ssm-bench, and optimum-benchmark's inference scenario. "
                   "Ratios are against optimum-benchmark; ✓ when within "
                   f"{fmt_number(100 * tolerance) if tolerance else '?'}%.")
    s.items.append(pd.DataFrame(rows))
    if overheads:
        s.items += ["How steady the machine was, and the decode time per token that generate() adds (its logits "
                    "processors, stopping criteria, output bookkeeping and attention masks): where the loop and "
                    "optimum-benchmark part.", overheads]
    return s


def _implementation(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["implementation"])
    s.items.append("Median of each metric per implementation and setting.")
    s.items.append(metric_table(d, ["model", "impl"] + plots.IMPLEMENTATION_KEYS[1:]))
    ratios = plots.implementation_ratios(d)
    if not ratios.empty and "ratio" in ratios:
        cols = [c for c in ["model", "impl", "phase"] + plots.IMPLEMENTATION_KEYS[1:] if c in ratios]
        t = ratios[cols + ["ratio"]].copy()
        t["ratio"] = t["ratio"].map(lambda v: f"{v:.2f}×")
        for col in ("batch_size", "prompt_len"):
            if col in t:
                t[col] = t[col].map(fmt_number)
        s.items += [f"Speed ratios against {plots.REFERENCE_IMPL} (> 1: faster):", t]
    return s


def _max_seq_len(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["max_seq_len"])
    d = d[d["metric"] == "max_prompt_len"]
    cols = [c for c in ["model", "prefill_mode", "hardware", "dtype", "batch_size", "verdict", "value",
                        "budget_bytes", "limiting_factor", "slope"] if c in d.columns]
    t = d[cols].sort_values([c for c in ("model", "prefill_mode") if c in cols]).copy()
    t["value"] = [plots.format_tokens(v) if verdict != "weights_exceed_budget" else "—"
                  for v, verdict in zip(t["value"], t.get("verdict", [None] * len(t)))]
    if "budget_bytes" in t:
        t["budget_bytes"] = t["budget_bytes"].map(fmt_bytes)
    if "slope" in t:
        t["slope"] = t["slope"].map(fmt_number)
    t["batch_size"] = t["batch_size"].map(fmt_number) if "batch_size" in t else None
    s.items.append(t.rename(columns={"value": "max prompt (tokens)", "budget_bytes": "budget",
                                     "slope": "slope (bytes/token)"}))
    s.items.append("'unbounded': memory does not grow with the prompt (a fixed-size SSM state with sequential "
                   "prefill), so no prompt length exceeds the budget. 'weights_exceed_budget': the weights alone do "
                   "not fit.")
    return s


def _leaderboard(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["leaderboard"])
    scores = plots.leaderboard_scores(d)
    wide = scores.pivot_table(index=["model", "source"], columns="task", values="value").reset_index()
    wide.columns.name = None
    for col in wide.columns[2:]:
        wide[col] = wide[col].map(lambda v: fmt_number(v, 3))
    s.items += ["Normalized score per task (the task's own row, else the mean of its subtasks).", wide]
    return s


def _generic(d: pd.DataFrame) -> Section:
    s = Section("")
    s.items.append("No dedicated section for this scenario; median of each metric per model.")
    s.items.append(metric_table(d, ["model", "impl", "hardware", "dtype", "batch_size", "prompt_len"]))
    return s


# --- problems --------------------------------------------------------------------------

def _failures(failed: pd.DataFrame) -> Section:
    cols = [c for c in ("run_dir", "scenario", "model", "impl", "metric", "error") if c in failed.columns]
    t = failed[cols].copy()
    t["run_dir"] = t["run_dir"].map(short_path)
    return Section("Failed measurements", ["Rows with status 'failed' (left out of tables and plots):", t])


def _skipped(c: Collection) -> Section:
    s = Section("Skipped runs")
    if not c.skipped:
        s.items.append("None: every run directory found was read.")
        return s
    s.items.append(f"{len(c.skipped)} run directories could not be used and are left out of everything above:")
    s.items.append(pd.DataFrame([{"run": short_path(k.path), "reason": k.reason} for k in c.skipped]))
    return s

