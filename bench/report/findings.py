"""The report's opening: one line and one figure per experiment of the release, each answering its
claim in words that the rows support.

Every number here is computed from the rows the report shows (rows.shown_rows: ok and flagged,
never failed, invalid or stale), and each line says where its numbers come from (measured or
simulated, on which device, under which budget; published scores are named as such). A line holds
rows equal in every setting but the model's own description, and in their status (flagged rows get
their own line); the settings that tell lines apart are named in each. Within a line, each model
entry is one combination of the model's description (impl, decode path, ...), named where they differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.memory.search import fitted_slope
from bench.report import plots
from bench.report.rows import FLAG, groups, label, legend_columns, text
from bench.report.tables import fmt_bytes, fmt_number
from bench.schema import SETTINGS

# The release's claims, as its readers know them.
CLAIMS = {
    "max_seq_len": "the SSM fits longer prompts with parallel prefill, and any length with sequential prefill",
    "generation": "the SSM's throughput and memory stay constant as it generates, while a Transformer's slow "
                  "down and grow",
    "leaderboard": "Falcon Mamba 7B averages 15.04 on Open LLM Leaderboard v2, ahead of Mistral-7B (14.50) "
                   "and Llama-3-8B (13.41)",
}
TITLES = {"max_seq_len": "Longest prompt", "generation": "Generation", "leaderboard": "Leaderboard"}
FIGURES = {"max_seq_len": "max_prompt_len", "generation": "generation_memory", "leaderboard": "leaderboard"}
# What describes the model itself: a line compares models, so these vary within it.
MODEL_COLUMNS = ("model", "checkpoint", "arch", "family", "architecture", "impl", "weights", "params", "n_layers",
                 "d_model", "tokenizer", "decode_path", "kv_cache", "kernels", "vocab_resized_from")
# Said at the head of a line, when present: column -> how its value reads.
CONTEXT = {"source": "{}", "device": "{}", "hardware": "{}", "dtype": "{}", "pairing": "pairing {}",
           "budget_hardware": "{}", "harness": "{}", "suite": "suite {}", "limit": "limit {} per task"}


def findings(table: pd.DataFrame, figures: list[str]) -> list:
    """The Findings section's items: the lines of each experiment and its figure."""
    from bench.report.rows import shown_rows
    from bench.report.sections import FigureRef, caption  # sections builds the report around this

    items = []
    for scenario, describe in FINDERS.items():
        d = shown_rows(table, scenario)
        lines = describe(d) if not d.empty else []
        if not lines:
            continue
        items += [f"**{TITLES[scenario]}** (the release: {CLAIMS[scenario]}).", lines]
        if FIGURES[scenario] in figures:
            items.append(FigureRef(FIGURES[scenario], caption(FIGURES[scenario])))
    return items


def _lines(d: pd.DataFrame, inner=(), origin: pd.DataFrame | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(head, rows) per line: rows equal in every setting but the model's description and `inner`
    (what the line itself breaks down), and in status. The head says where its numbers come from and,
    when there are several lines, the settings that tell them apart."""
    keys = [c for c in SETTINGS if c in d and c not in MODEL_COLUMNS and c not in inner and d[c].notna().any()]
    keys += ["status"] if "status" in d else []
    found = list(groups(d, keys))
    apart = [c for c in keys if c != "status" and len({text(v[c]) for v, _ in found}) > 1 and c not in CONTEXT]
    return [(_head(values, d if origin is None else origin, apart), g) for values, g in found]


def _head(values: dict, d: pd.DataFrame, apart: list[str]) -> str:
    shared = {c: d[c].dropna().iloc[0] for c in CONTEXT if c in d and d[c].dropna().nunique() == 1}
    values = {**shared, **values}
    parts = [form.format(text(values[c])) for c, form in CONTEXT.items() if c in values and text(values[c])]
    if "budget_bytes" in values and text(values["budget_bytes"]):
        parts.append(f"budget {fmt_bytes(values['budget_bytes'])}")
    parts += [f"{c}={text(values[c])}" for c in apart if text(values[c])]
    flagged = f" ({FLAG} flagged: measured on a busy machine)" if values.get("status") == "flagged" else ""
    return ", ".join(dict.fromkeys(parts)) + flagged


def _entries(g: pd.DataFrame) -> list[tuple[str, dict, pd.DataFrame]]:
    """(name, values, rows) per model entry of a line: one combination of its description."""
    cols = [c for c in MODEL_COLUMNS if c in g and g[c].notna().any()]
    named = [c for c in legend_columns(g, cols) if c != "status"]
    return [(label({**values, "status": None}, named), values, e) for values, e in groups(g, cols)]


def _compare(values: dict[str, tuple[float, str]], resolution: float | None, what: str) -> str:
    """'; the SSM's longest prompt is 1.9× the longest Transformer's' when both architectures are in
    the line, or that they are within the search's resolution."""
    ssm = [v for v, arch in values.values() if arch == "ssm" and np.isfinite(v)]
    tf = [v for v, arch in values.values() if arch == "transformer" and np.isfinite(v)]
    if not ssm or not tf or max(tf) <= 0:
        return ""
    if resolution and abs(max(ssm) - max(tf)) <= resolution:
        return f"; the SSM's and the Transformers' {what}s are within the search's resolution ({resolution:,.0f} tokens)"
    return f"; the SSM's {what} is {max(ssm) / max(tf):.2f}× the longest Transformer's"


def _max_seq_len(d: pd.DataFrame) -> list[str]:
    d = d[d["metric"] == "max_prompt_len"]
    lines = []
    for head, g in _lines(d, inner=("prefill_mode", "chunk_size")):
        parts = []
        for (mode, chunk), m in g.groupby([g["prefill_mode"], g.get("chunk_size", pd.Series(index=g.index))],
                                          sort=False, dropna=False):
            cells, values = [], {}
            for name, _, e in _entries(m):
                r = e.iloc[0]
                unbounded = r.get("verdict") == "unbounded"
                worded = r.get("verdict") in ("weights_exceed_budget", "none_fits") or not (np.isfinite(r["value"])
                                                                                              or unbounded)
                length = text(r.get("verdict")).replace("_", " ") if worded else \
                    plots.prompt_len_text(r["value"], r.get("verdict"))
                slope = r.get("slope")
                cells.append(f"{name} {length}" + (f", {fmt_bytes(slope)}/token" if pd.notna(slope) else ""))
                values[name] = (np.inf if unbounded else float(r["value"]), text(r.get("arch")))
            resolution = m["resolution"].dropna().max() if "resolution" in m else None
            chunks = f" (chunks of {int(chunk)})" if mode == "sequential" and pd.notna(chunk) else ""
            parts.append(f"{mode} prefill{chunks}: " + "; ".join(cells) + _compare(values, resolution, "longest prompt"))
        lines.append(f"{head}: " + " — ".join(parts) + ".")
    return lines


def _generation(d: pd.DataFrame) -> list[str]:
    lines = []
    parallel = "prefill_mode" not in d or (d["prefill_mode"].dropna() == "parallel").all()
    for head, g in _lines(d, inner=("chunk_size",) if parallel else ()):  # a sequential prefill's only
        speed, memory = [], []
        for name, values, e in _entries(g):
            w = e[e["metric"] == "window_throughput"].groupby("step")["value"].median().sort_index()
            if len(w) >= 2 and w.iloc[0] > 0:
                speed.append(f"{name} {fmt_number(w.iloc[0])} → {fmt_number(w.iloc[-1])} tokens/s "
                             f"({w.iloc[-1] / w.iloc[0]:.2f}×)")
            s = e[e["metric"] == "state_bytes"].groupby("step")["value"].median().sort_index()
            if len(s) >= 2:
                slope = fitted_slope(list(s.items()))  # bytes per generated token
                static = values.get("kv_cache") == "static" and values.get("arch") == "transformer"
                growth = "preallocated (static KV cache)" if static else \
                    "constant" if abs(slope) < 1 else f"grows {fmt_bytes(slope)}/token"
                memory.append(f"{name} {growth} ({fmt_bytes(s.iloc[0])} → {fmt_bytes(s.iloc[-1])})")
        if not speed and not memory:
            continue
        windows = g.loc[g["metric"] == "window_throughput", "step"]
        sampled = "mode" in g and (g["mode"] == "sampled").all()
        span = ("windows at contexts up to " if sampled else "over ") + f"{int(windows.max()):,} generated tokens" \
            if windows.notna().any() else ""
        body = (["first → last window throughput: " + "; ".join(speed)] if speed else []) + \
            (["inference state (SSM state / KV cache): " + "; ".join(memory)] if memory else [])
        lines.append(f"{head}, {span}: " + " — ".join(body) + ".")
    return lines


def _leaderboard(d: pd.DataFrame) -> list[str]:
    from bench.evals.published import load_published
    from bench.report.leaderboard import coverage_text, fmt_score, suite_coverage

    scores = plots.leaderboard_scores(d)
    if scores.empty:
        return []
    scores = scores[scores["task"] != "average"]  # the suite's own mean: not a task
    partial = sorted({f"{e['suite']} {coverage_text(e)}" + (f", no data for {', '.join(sorted(e['missing']))}"
                                                           if e["missing"] else "")
                      for e in suite_coverage(d) if not e["complete"]})
    random = "weights" in d and (d["weights"].astype(str) == "random").all()
    note = (" (random weights: chance level, a normalized score near 0, is what a correct harness gives)"
            if random else "") + (f" — {'; '.join(partial)}: not comparable with a published average"
                                  if partial else "")
    lines = []
    for head, g in _lines(scores, inner=("task",), origin=d):
        cells = [f"{name} {fmt_score(e['value'].mean())}" for name, _, e in _entries(g)]
        lines.append(f"{head}: mean normalized score over {g['task'].nunique()} tasks — " + "; ".join(cells)
                     + note + ".")
    published = load_published()
    for suite, g in published[published["suite"].isin(set(d.get("suite", pd.Series()).dropna()))].groupby("suite"):
        means = g.groupby("model")["score"].mean().sort_values(ascending=False)
        lines.append(f"published ({suite}, the release's table, not measured here): "
                     + "; ".join(f"{m} {v:.2f}" for m, v in means.items()) + ".")
    return lines


FINDERS = {"max_seq_len": _max_seq_len, "generation": _generation, "leaderboard": _leaderboard}
