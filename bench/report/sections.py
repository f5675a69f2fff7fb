"""What the report says, independent of how it is written out (markdown or HTML).

`build(collection, table, figures, figure_notes)` returns a list of Sections. A section holds
items in order: a str is a paragraph, a list of str is a bullet list, a DataFrame is a table and
a FigureRef is a picture. The report opens with what ran and every job that is not ok (failed,
invalid, flagged, stale, incomplete, skipped), then each scenario's tables and figures. Each
scenario gets a section only when it has rows to show, so the report follows the data. Tables
keep apart every combination of settings (rows.series) and say what their rows share.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from bench.report import batch, leaderboard, plots, probes, vision
from bench.report.findings import findings
from bench.report.load import JOB_STATES, Collection
from bench.report.rows import (FLAG, FLAG_NOTE, groups, key_cells, label, legend_columns, model_label, recorded,
                               saved_bool, series, shown_rows, text)
from bench.report.tables import fmt_bytes, fmt_number, fmt_time, fmt_value, parse_time
from bench.scenarios import SCENARIOS
from bench.schema import CROSSCHECK_TOOLS, LOAD_COLUMNS, STATUSES

SCENARIO_TITLES = {
    "generation": "Generation: throughput and memory as the sequence grows",
    "crosscheck": "Cross-check: ssm-bench vs optimum-benchmark",
    "implementation": "Implementation: ssm_bench vs transformers",
    "max_seq_len": "Maximum prompt length within a memory budget",
    "leaderboard": "Leaderboard: task scores",
    "vision": vision.TITLE,
    "probe": probes.TITLE,
    "batch": batch.TITLE,
}
# Row statuses other than ok: the section listing them and what it means for the tables.
PROBLEMS = {
    "failed": ("Failed", "No measurement: the job, or this part of it, failed. Left out of every table and plot."),
    "invalid": ("Invalid", "The job finished but failed a validity check (e.g. non-finite outputs). Left out of "
                           "every table and plot."),
    "flagged": ("Flagged", f"Measured under a condition that may have distorted the numbers (e.g. a contended "
                           f"machine). Shown in the tables and plots marked {FLAG}, never pooled with ok rows."),
}


@dataclass
class FigureRef:
    name: str  # file stem under plots/
    caption: str


@dataclass
class Section:
    title: str
    items: list = field(default_factory=list)  # str | list[str] | pd.DataFrame | FigureRef


def build(collection: Collection, table: pd.DataFrame, figures: list[str],
          figure_notes: dict[str, str] | None = None) -> list[Section]:
    """figures: the names drawn (plots.draw_all); figure_notes: why others were not."""
    figure_notes = figure_notes or {}
    # The answers first (findings.py), then what ran and what went wrong, each scenario's tables
    # and figures, and the environment and caveats last.
    opening = findings(table, figures)
    sections = [Section("Findings", opening)] if opening else []
    sections += [_overview(collection, table)]
    sections += [s for s in (_row_problems(table, collection, status) for status in PROBLEMS) if s]
    sections += [s for s in (_stale(collection), _incomplete(collection)) if s]
    sections += [_skipped(collection)]
    closing = [_environment(collection), _caveats(collection, table)]
    builders = {"generation": _generation, "crosscheck": _crosscheck, "implementation": _implementation,
                "max_seq_len": _max_seq_len, "leaderboard": _leaderboard,
                "vision": lambda d: Section(vision.TITLE, vision.section_items(d)),
                "probe": lambda d: Section(probes.TITLE, probes.section_items(d)),
                "batch": lambda d: Section(batch.TITLE, batch.section_items(d))}
    present = list(dict.fromkeys(table["scenario"].dropna().astype(str)))
    for scenario in [s for s in SCENARIOS if s in present] + [s for s in present if s not in SCENARIOS]:
        d = shown_rows(table, scenario)
        if d.empty:
            continue  # nothing to show: its rows are listed above as failed, invalid or stale
        build_one = builders.get(scenario, _generic)
        section = build_one(d)
        section.title = section.title or f"Scenario: {scenario}"
        for name, (sc, _, _) in plots.PLOTS.items():
            if sc == scenario and name in figures:
                section.items.append(FigureRef(name, _CAPTIONS[name]))
            elif sc == scenario and name in figure_notes:
                section.items.append(f"Figure *{_CAPTIONS[name]}* {figure_notes[name]}.")
        sections.append(section)
    return sections + closing


def caption(figure: str) -> str:
    return _CAPTIONS[figure]


_CAPTIONS = {
    "generation_throughput": ("Throughput per window vs tokens generated (median over repeats; "
                              "dashed: bandwidth roofline; dotted: simulated)"),
    "generation_memory": "Memory vs tokens generated (linear axes; dotted: simulated)",
    "implementation_ratios": "Speed ratio per phase (1 = as fast as transformers)",
    "max_prompt_len": "Longest prompt within the memory budget, parallel vs sequential prefill",
    "leaderboard": "Normalized task scores, measured next to published (hatched)",
    "vision_figure1": vision.CAPTION,
    "probe_accuracy": probes.LENGTH_CAPTION,
    "probe_extrapolation": probes.EXTRAPOLATION_CAPTION,
    "batch": batch.CAPTION,
}


def short_path(path) -> str:
    """A run directory as the reader typed it: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def _join(values) -> str:
    return ", ".join(sorted({text(v) for v in values} - {""}))


def _truthy(v) -> bool:
    return v is True or text(v).lower() in ("true", "1", "yes")


# --- overview -------------------------------------------------------------------------

def job_summary(states: Counter) -> str:
    """'3 of 12 jobs failed, 1 invalid, 2 flagged, 0 stale, 1 incomplete, 0 skipped; 5 ok.'"""
    total = sum(states.values())
    others = [s for s in STATUSES[::-1] + JOB_STATES if s not in ("failed", "ok")]
    return (f"{states['failed']} of {total} jobs failed, " + ", ".join(f"{states[s]} {s}" for s in others)
            + f"; {states['ok']} ok.")


def _duration(meta: dict) -> str:
    start, end = parse_time(meta.get("start_time")), parse_time(meta.get("end_time"))
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _overview(c: Collection, table: pd.DataFrame) -> Section:
    s = Section("What ran")
    rows_by_status = table["status"].value_counts()
    s.items.append(f"**{job_summary(c.states())}** A job counts under its worst row (failed, then invalid, then "
                   "flagged): a leaderboard with one failed task counts as failed. Each kind is listed below.")
    s.items.append(f"{len(table)} rows: " + ", ".join(f"{int(rows_by_status.get(st, 0))} {st}" for st in STATUSES)
                   + f". Generated {datetime.now():%Y-%m-%d %H:%M}.")
    rows = []
    for run in c.runs:
        r = run.rows
        rows.append({
            "run": short_path(run.path), "scenario": _join(r["scenario"]), "model": _join(r["model"]),
            "impl": _join(r["impl"]), "hardware": _join(r["hardware"]), "device": _join(r["device"]),
            "dtype": _join(r["dtype"]), "weights": _join(r["weights"]), "source": _join(r["source"]),
            "rows": len(r), "state": f"{FLAG} flagged" if run.state == "flagged" else run.state,
            "git": str(run.meta.get("git_sha", ""))[:10] + ("+dirty" if run.meta.get("git_dirty") else ""),
            "started": fmt_time(run.meta.get("start_time")), "took": _duration(run.meta),
            "note": "; ".join(n for n in (run.stale and f"stale: {run.stale}", run.last_attempt) if n),
        })
    if rows:
        s.items.append(pd.DataFrame(rows))
    return s


# --- jobs that are not ok --------------------------------------------------------------

def _row_problems(table: pd.DataFrame, c: Collection, status: str) -> Section | None:
    """The rows of one non-ok status, one line per run, model and reason; for failures also the
    redos that failed while the previous results were kept."""
    bad = table[table["status"] == status]
    redos = [f"`{short_path(r.path)}`: {r.last_attempt}." for r in c.runs if r.last_attempt] \
        if status == "failed" else []
    if bad.empty and not redos:
        return None
    title, meaning = PROBLEMS[status]
    s = Section(title, [meaning])
    if not bad.empty:
        bad = bad.assign(what=bad["task"].fillna(bad["metric"]) if "task" in bad else bad["metric"])
        rows = []
        for values, g in groups(bad, ["run_dir", "scenario", "model", "reason"]):
            row = {"run": short_path(values["run_dir"]), "scenario": values["scenario"],
                   "model": model_label(g.iloc[0].to_dict()), "reason": values["reason"], "rows": len(g),
                   "metrics": _join(w for w in g["what"] if w != "error")}
            if "oom" in g and g["oom"].map(_truthy).any():
                row["oom"] = "yes"
            for col in (c for c in LOAD_COLUMNS if c in g and g[c].notna().any()):
                row[f"{col} (max)"] = fmt_number(g[col].max())
            rows.append(row)
        s.items.append(pd.DataFrame(rows))
    if redos:
        s.items += ["Redos that failed; the previous results of these runs are kept and shown:", redos]
    return s


def _stale(c: Collection) -> Section | None:
    stale = [r for r in c.runs if r.stale]
    if not stale:
        return None
    return Section("Stale runs", [
        "Runs made with code or a config that has changed since: kept out of every table and plot "
        "(their rows stay in all_results, column `stale`). Rerun them to bring them back.",
        pd.DataFrame([{"run": short_path(r.path), "scenario": _join(r.rows["scenario"]),
                       "model": _join(r.rows["model"]), "why": r.stale} for r in stale])])


def _incomplete(c: Collection) -> Section | None:
    if not c.incomplete:
        return None
    bullets = []
    for job in c.incomplete:
        j = job.job
        overrides = " ".join(map(str, j["overrides"])) if isinstance(j.get("overrides"), list) else j.get("overrides")
        bullets.append(f"`{short_path(j['run_dir'])}`: started {fmt_time(j.get('start_time')) or 'at an unknown time'} "
                       f"by pid {j.get('pid', '?')} on {j.get('host', '?')}, never finished"
                       + (f" (overrides: `{overrides}`)" if overrides else "")
                       + f"; staging directory `{short_path(job.path)}`" + (f"; {job.note}" if job.note else "") + ".")
    return Section("Incomplete runs", [
        "Jobs that started and left no results (killed, crashed outside Python, or still running). "
        "Their staging directories hold no measurements; nothing from them is shown.", bullets])


def _skipped(c: Collection) -> Section:
    s = Section("Skipped runs")
    if not c.skipped:
        s.items.append("None: every run directory found was read.")
        return s
    s.items.append(f"{len(c.skipped)} run directories could not be used and are left out of everything above:")
    s.items.append(pd.DataFrame([{"run": short_path(k.path), "reason": k.reason} for k in c.skipped]))
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
        emulated = _join(sim["budget_hardware"]) if "budget_hardware" in sim else ""
        bullets.append(f"**Simulated** rows ({len(sim)}, hardware profile(s) {_join(sim['hardware'])}"
                       + (f", emulated hardware {emulated}" if emulated else "") + ") are "
                       "estimates from a hardware model, not measurements; plots draw them dotted.")
    if (table["source"] == "published").any():
        bullets.append("**Published** rows are reference scores reported by others, not run here.")
    for kind, meaning in (("random", "random weights: speed and memory are representative, quality scores are not"),
                       ("pretrained", "pretrained weights"),
                       ("trained", "weights trained in the job (the probes)"),
                       ("unknown", "weights not recorded in config.yaml (random or pretrained unknown)")):
        models = table.loc[(table["weights"] == kind) & (table["source"] != "published"), "model"]
        if not models.empty:
            bullets.append(f"Models with {meaning}: {_join(models)}.")
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

def _described(d: pd.DataFrame, table: pd.DataFrame, keys: list[str]) -> list:
    """A table, what every one of its rows records, and the ⚠ note when it shows flagged rows."""
    items = [table]
    caption = recorded(d, keys)
    if caption:
        items.append(caption)
    if "status" in keys:
        items.append(FLAG_NOTE)
    return items


def metric_table(d: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Median of each metric (a column, unit in the header) per combination of settings (rows.series)."""
    keys = keys or series(d)
    units = d.groupby("metric")["unit"].first()
    rows = []
    for values, g in groups(d, keys):
        row = key_cells(values)
        for metric, m in g.groupby("metric", sort=False):
            unit = units.get(metric)
            row[f"{metric} ({unit})" if text(unit) else metric] = fmt_value(m["value"].median(), unit)
        rows.append(row)
    return pd.DataFrame(rows)


def _generation(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["generation"])
    prepared = d[d["metric"].isin(PREPARE_METRICS)]
    d = d[~d["metric"].isin(PREPARE_METRICS)]  # a path's preparation has settings of its own: not a table row
    keys = series(d)
    rows = []
    for values, g in groups(d, keys):
        row = key_cells(values)
        stat = g["stat"] if "stat" in g else pd.Series(np.nan, index=g.index)
        for metric, unit in (("ttft", "s"), ("decode_throughput", "tokens/s")):
            m = g[g["metric"] == metric]
            raw = m.loc[stat[m.index].isna(), "value"]  # one value per repeat, of every pooled run (rounds)
            if len(raw):
                by_stat = pd.Series({"median": raw.median(), "min": raw.min(), "max": raw.max()})
            else:  # summaries only: the spread of pooled runs is the widest of theirs
                pooled = {"min": pd.Series.min, "max": pd.Series.max}
                by_stat = pd.Series({k: pooled.get(k, pd.Series.median)(v)
                                     for k, v in m.assign(stat=stat[m.index]).groupby("stat")["value"]})
            if "median" in by_stat:
                spread = f" [{fmt_value(by_stat.get('min'), unit)}–{fmt_value(by_stat.get('max'), unit)}]" \
                    if "min" in by_stat and "max" in by_stat else ""
                row[f"{metric} ({unit}) median [min–max]"] = fmt_value(by_stat["median"], unit) + spread
            elif not m.empty:
                row[f"{metric} ({unit}) median"] = fmt_value(m["value"].median(), unit)
        w = g[g["metric"] == "window_throughput"].groupby("step")["value"].median().sort_index()
        if len(w) >= 2:
            first, last = float(w.iloc[0]), float(w.iloc[-1])
            row["window tokens/s first → last"] = f"{fmt_value(first, '')} → {fmt_value(last, '')}"
            with np.errstate(divide="ignore", invalid="ignore"):  # 0, nan and inf print as such
                row["last/first"] = f"{np.float64(last) / first:.2f}"
        for metric in plots.MEMORY_METRICS:
            m = g[g["metric"] == metric]
            if not m.empty:
                row[f"{metric} at end"] = fmt_value(m.loc[m["step"] == m["step"].max(), "value"].median(), "bytes")
        rows.append(row)
    s.items.append("Per model and settings: time to first token and decode throughput over the repeats, the "
                   "throughput of the first and last window (a ratio near 1 is flat; a KV cache makes it fall), "
                   "and memory after the last token.")
    s.items += _described(d, pd.DataFrame(rows), keys)
    if not prepared.empty:
        s.items += ["How each decode path was prepared before anything was timed (pairing=best): the compile time, "
                    "never inside a throughput, and on a CPU each path's tokens/s over a short decode, ✓ the one "
                    "kept for the measurements above.", *_prepared_table(prepared)]
    return s


PREPARE_METRICS = ("compile_time", "decode_path_throughput")  # Backend.prepare_decode's rows


def _prepared_table(d: pd.DataFrame) -> list:
    keys = [c for c in series(d) if c not in ("decode_path", "kv_cache", "status")]  # the candidates are columns
    rows = []
    for values, g in groups(d, keys):
        row = key_cells(values)
        for r in g.to_dict("records"):
            flag = f" {FLAG}" if r.get("status") == "flagged" else ""
            if r["metric"] == "compile_time":
                row["compile time (s)"] = fmt_value(r["value"], "s") + flag
            else:
                chosen = " ✓" if saved_bool(r.get("chosen")) else ""
                row[f"{r['decode_path']}, {r['kv_cache']} cache (tokens/s)"] = fmt_value(r["value"], "") + chosen + flag
        rows.append(row)
    return _described(d, pd.DataFrame(rows), keys)


def _crosscheck(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["crosscheck"])
    loop, generate, optimum = CROSSCHECK_TOOLS
    keys = series(d, axes=("metric", "tool"))
    named = legend_columns(d, keys)
    rows, overheads = [], []
    for values, g in groups(d, keys):
        name = label(values, named)
        compared = g["tool"].isin(CROSSCHECK_TOOLS) & (g["metric"] != "loop_drift")
        for metric in dict.fromkeys(g.loc[compared, "metric"]):
            m = g[g["metric"] == metric]
            unit = m["unit"].iloc[0]
            row = {**key_cells(values), "metric": f"{metric} ({unit})"}
            for tool in CROSSCHECK_TOOLS:
                measured = m.loc[m["tool"] == tool, "value"]
                row[tool] = fmt_value(measured.median(), unit) if not measured.empty else "—"
            for tool in (loop, generate):
                r = g[(g["metric"] == f"{metric}_ratio") & (g["tool"] == f"{tool}/{optimum}")]
                agrees = not r.empty and "agrees" in r and bool(r["agrees"].iloc[0])
                row[f"{tool} / {optimum}"] = "—" if r.empty else \
                    f"{r['value'].iloc[0]:.2f}" + (" ✓" if agrees else " ✗")
            rows.append(row)
        drift = g.loc[g["metric"] == "loop_drift", "value"]
        if not drift.empty:
            overheads.append(f"{name}: the loop's decode throughput after the other tools ran / "
                             f"before: {drift.iloc[0]:.2f} (the machine's own drift over the run).")
        extra = g[g["metric"] == "decode_overhead"].set_index("tool")["value"]
        if not extra.empty:
            overheads.append(f"{name}: transformers' generate() adds "
                             f"{fmt_number(extra.get(f'{generate}-{loop}'))} ms/token over the loop (timed by "
                             f"ssm-bench), {fmt_number(extra.get(f'{optimum}-{loop}'))} ms/token as optimum-benchmark "
                             f"times it.")
    tolerance = d["tolerance"].dropna().iloc[0] if "tolerance" in d and d["tolerance"].notna().any() else None
    s.items.append("The same model and settings measured three ways: ssm-bench's loop (prefill, then one step per "
                   "token), transformers' generate() timed by ssm-bench, and optimum-benchmark's inference scenario. "
                   "Ratios are against optimum-benchmark; ✓ when within "
                   f"{fmt_number(100 * tolerance) if tolerance else '?'}%.")
    s.items += _described(d, pd.DataFrame(rows), keys)
    if overheads:
        s.items += ["How steady the machine was, and the decode time per token that generate() adds (its logits "
                    "processors, stopping criteria, output bookkeeping and attention masks): where the loop and "
                    "optimum-benchmark part.", overheads]
    return s


def _implementation(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["implementation"])
    keys = series(d)
    s.items.append("Median of each metric per implementation and setting.")
    s.items += _described(d, metric_table(d, keys), keys)
    ratios = plots.implementation_ratios(d)
    if not ratios.empty and "ratio" in ratios:
        cols = series(ratios, axes=("phase",))
        t = pd.DataFrame([{**key_cells(dict(zip(cols, k))), "phase": phase, "ratio": f"{ratio:.2f}×"}
                          for k, phase, ratio in zip(ratios[cols].itertuples(index=False), ratios["phase"],
                                                     ratios["ratio"])])
        s.items += [f"Speed ratios against {plots.REFERENCE_IMPL} (> 1: faster):", *_described(ratios, t, cols)]
    return s


def _max_seq_len(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["max_seq_len"])
    at_limit = d[d["metric"].isin(["peak_bytes_at_limit", "peak_reserved_at_limit"])]
    d = d[d["metric"] == "max_prompt_len"]
    keys = series(d)
    rows = []
    for values, g in groups(d, keys):
        for _, r in g.iterrows():
            verdict = r.get("verdict")
            peak = _same_setting(at_limit, r, ["run_id", "model", "prefill_mode", *keys])
            rows.append({**key_cells(values), "verdict": text(verdict),
                         "max prompt (tokens)": plots.prompt_len_text(r["value"], verdict),
                         "budget": fmt_bytes(r.get("budget_bytes")), "limiting_factor": text(r.get("limiting_factor")),
                         "slope (bytes/token)": fmt_number(r.get("slope")),
                         "peak allocated at limit": fmt_bytes(peak.get("peak_bytes_at_limit")),
                         "peak reserved at limit": fmt_bytes(peak.get("peak_reserved_at_limit"))})
    s.items += _described(d, pd.DataFrame(rows).replace("", np.nan).dropna(axis=1, how="all"), keys)
    s.items.append("'unbounded': memory does not grow with the prompt (a fixed-size SSM state with sequential "
                   "prefill), so no prompt length exceeds the budget. 'weights_exceed_budget': the weights alone do "
                   "not fit. '≥': the search stopped at its probe cap (scenario.max_len) and the prompt still fit. The budget is that of the emulated hardware (budget_hardware) where the rows record it. "
                   "Reserved bytes are the CUDA caching allocator's (measured, or its model in a simulation "
                   "of a GPU): a capped GPU runs out of reserved memory, so they, not the allocated peak, meet the budget. "
                   "A blank reserved cell: no caching allocator (measured or simulated on a CPU), no fitting trial, or "
                   "results from before reserved bytes were recorded. 'Unbounded' rows give the peaks of their last probe.")
    return s


def _same_setting(d: pd.DataFrame, row: pd.Series, columns: list[str]) -> dict:
    """metric -> value of the one row of d that agrees with `row` on every one of `columns` (NaN
    with NaN); a metric that several rows match is ambiguous and left out."""
    same = pd.Series(True, index=d.index)
    for col in dict.fromkeys(c for c in columns if c in d):
        same &= (d[col] == row[col]) | (d[col].isna() & pd.isna(row[col]))
    matched = d[same]
    unique = matched.groupby("metric")["value"].agg(["count", "first"])
    return unique.loc[unique["count"] == 1, "first"].to_dict()


def _leaderboard(d: pd.DataFrame) -> Section:
    s = Section(SCENARIO_TITLES["leaderboard"])
    d = leaderboard.with_published(d)  # the release's published scores, source "published"
    scores = plots.leaderboard_scores(leaderboard.coverage(d))  # suite_complete in words, not 1/0
    keys = [c for c in scores.columns if c not in ("task", "value")]
    rows = [{**key_cells(values), **{task: leaderboard.fmt_score(v) for task, v in zip(g["task"], g["value"])}}
            for values, g in groups(scores, keys)]
    s.items.append("Normalized score per task (the task's own row, else the mean of its subtasks).")
    s.items += _described(d, pd.DataFrame(rows), keys)
    notes = leaderboard.metric_notes(d)  # published vs measured not like for like
    s.items += [notes] if notes else []
    return s


def _generic(d: pd.DataFrame) -> Section:
    s = Section("")
    keys = series(d)
    s.items.append("No dedicated section for this scenario; median of each metric per model and settings.")
    s.items += _described(d, metric_table(d, keys), keys)
    return s
