"""The report's opening: one line and one figure per experiment of the release, each answering its
claim in words that the rows support.

Every number here is computed from the rows the report shows (rows.shown_rows: ok and flagged,
never failed, invalid or stale), and each line says where its numbers come from (measured or
simulated, on which device, under which budget; published scores are named as such). Rows that
differ in a setting other than the model's own description are never put in one line: each
combination of the other settings gets its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report import plots
from bench.report.rows import FLAG, groups, model_label, shown_rows, text
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
MODEL_COLUMNS = {"model", "checkpoint", "arch", "family", "architecture", "impl", "weights", "params", "n_layers",
                 "d_model", "tokenizer", "decode_path", "kv_cache", "kernels", "vocab_resized_from"}
# Said once at the head of a line, when present (what the numbers are and where they come from):
# column -> how its value reads.
CONTEXT = {"source": "{}", "device": "{}", "hardware": "{}", "dtype": "{}", "pairing": "pairing {}",
           "mode": "{} mode", "budget_hardware": "{}", "harness": "{}", "suite": "suite {}",
           "limit": "limit {} per task"}


def findings(table: pd.DataFrame, figures: list[str]) -> list:
    """The Findings section's items: a line per experiment (and per distinct setting) and its figure."""
    from bench.report.sections import FigureRef, caption  # sections builds the report around this

    items = []
    for scenario, describe in FINDERS.items():
        d = shown_rows(table, scenario)
        if d.empty:
            continue
        lines = describe(d)
        if not lines:
            continue
        items.append(f"**{TITLES[scenario]}** (the release: {CLAIMS[scenario]}).")
        items.append(lines)
        if FIGURES[scenario] in figures:
            items.append(FigureRef(FIGURES[scenario], caption(FIGURES[scenario])))
    return items


def _comparisons(d: pd.DataFrame, extra=()) -> list[tuple[dict, pd.DataFrame]]:
    """Groups of rows that may share a line: equal in every setting but the model's description."""
    keys = [c for c in SETTINGS if c in d and c not in MODEL_COLUMNS and c not in extra and d[c].notna().any()]
    return list(groups(d, keys))


def _context(values: dict, d: pd.DataFrame, origin: pd.DataFrame | None = None) -> str:
    """Where the line's numbers come from: its group's settings, else what all of `origin` shares."""
    origin = d if origin is None else origin
    shared = {c: origin[c].dropna().iloc[0] for c in CONTEXT if c in origin and origin[c].dropna().nunique() == 1}
    values = {**shared, **values}
    parts = list(dict.fromkeys(form.format(text(values[c])) for c, form in CONTEXT.items()
                               if c in values and text(values[c])))
    if "budget_bytes" in values and text(values["budget_bytes"]):
        parts.append(f"budget {fmt_bytes(values['budget_bytes'])}")
    flagged = f" ({FLAG} flagged rows among them)" if "status" in d and (d["status"] == "flagged").any() else ""
    return ", ".join(parts) + flagged


def _ssm_vs_transformer(values: dict[str, float], archs: dict[str, str], what: str) -> str:
    """'the SSM's is 1.9× the best Transformer's' when both architectures are in the line."""
    ssm = [v for m, v in values.items() if archs.get(m) == "ssm" and np.isfinite(v)]
    tf = [v for m, v in values.items() if archs.get(m) == "transformer" and np.isfinite(v)]
    if not ssm or not tf or max(tf) <= 0:
        return ""
    return f"; the SSM's {what} is {max(ssm) / max(tf):.2f}× the longest Transformer's"


def _max_seq_len(d: pd.DataFrame) -> list[str]:
    d = d[d["metric"] == "max_prompt_len"]
    lines = []
    for values, g in _comparisons(d, extra=("prefill_mode", "chunk_size")):
        parts = []
        for mode, m in g.groupby("prefill_mode", sort=False):
            archs = {model_label(r): text(r.get("arch")) for r in m.to_dict("records")}
            per_model, cells = {}, []
            for r in m.to_dict("records"):
                name = model_label(r)
                per_model[name] = float(r["value"]) if r.get("verdict") != "unbounded" else np.inf
                slope = r.get("slope")
                slope_text = f", {fmt_bytes(slope)}/token" if slope is not None and np.isfinite(slope) else ""
                length = plots.prompt_len_text(r["value"], r.get("verdict")) if np.isfinite(r["value"]) or \
                    r.get("verdict") == "unbounded" else text(r.get("verdict")).replace("_", " ")
                cells.append(f"{name} {length}{slope_text}")
            chunk = f" (chunks of {int(m['chunk_size'].iloc[0])})" if mode == "sequential" and \
                "chunk_size" in m and m["chunk_size"].notna().any() else ""
            parts.append(f"{mode} prefill{chunk}: " + "; ".join(cells)
                         + _ssm_vs_transformer(per_model, archs, "longest prompt"))
        lines.append(f"{_context(values, g)}: " + " — ".join(parts) + ".")
    return lines


def _slope(steps: pd.Series, values: pd.Series) -> float:
    """Least-squares bytes per generated token."""
    if steps.nunique() < 2:
        return np.nan
    return float(np.polyfit(steps.astype(float), values.astype(float), 1)[0])


def _generation(d: pd.DataFrame) -> list[str]:
    lines = []
    parallel = "prefill_mode" not in d or (d["prefill_mode"].dropna() == "parallel").all()
    for values, g in _comparisons(d, extra=("chunk_size",) if parallel else ()):  # a sequential prefill's only
        speed, memory = [], []
        for _, m in g.groupby("model", sort=False):
            name = model_label(m.iloc[0].to_dict())
            w = m[m["metric"] == "window_throughput"].groupby("step")["value"].median().sort_index()
            if len(w) >= 2 and w.iloc[0] > 0:
                speed.append(f"{name} {fmt_number(w.iloc[0])} → {fmt_number(w.iloc[-1])} tokens/s "
                             f"({w.iloc[-1] / w.iloc[0]:.2f}×)")
            s = m[m["metric"] == "state_bytes"].groupby("step")["value"].median().sort_index()
            if len(s) >= 2:
                slope = _slope(pd.Series(s.index), pd.Series(s.values))
                static = "kv_cache" in m and (m["kv_cache"] == "static").all() and m["arch"].iloc[0] == "transformer"
                growth = "preallocated (static KV cache)" if static else \
                    "constant" if abs(slope) < 1 else f"grows {fmt_bytes(slope)}/token"
                memory.append(f"{name} {growth} ({fmt_bytes(s.iloc[0])} → {fmt_bytes(s.iloc[-1])})")
        if not speed and not memory:
            continue
        steps = g.loc[g["metric"] == "window_throughput", "step"]  # this line's runs, not every run's
        span = f"over {int(steps.max()):,} generated tokens" if steps.notna().any() else ""
        body = []
        if speed:
            body.append("first → last window throughput: " + "; ".join(speed))
        if memory:
            body.append("inference state (SSM state / KV cache): " + "; ".join(memory))
        lines.append(f"{_context(values, g)}, {span}: " + " — ".join(body) + ".")
    return lines


def _leaderboard(d: pd.DataFrame) -> list[str]:
    from bench.evals.published import load_published

    scores = plots.leaderboard_scores(d)
    if scores.empty:
        return []
    lines = []
    for values, g in _comparisons(scores, extra=("task",)):
        means = g.groupby("model", sort=False)["value"].mean()
        random = "weights" in d and (d["weights"].astype(str) == "random").all()
        note = " (random weights: chance level, a normalized score near 0, is what a correct harness gives)" \
            if random else ""
        lines.append(f"{_context(values, g, origin=d)}: mean normalized score over {g['task'].nunique()} tasks — "
                     + "; ".join(f"{m} {fmt_number(v)}" for m, v in means.items()) + note + ".")
    published = load_published()
    for suite, g in published[published["suite"].isin(set(d.get("suite", pd.Series()).dropna()))].groupby("suite"):
        means = g.groupby("model")["score"].mean().sort_values(ascending=False)
        lines.append(f"published ({suite}, the release's table, not measured here): "
                     + "; ".join(f"{m} {fmt_number(v)}" for m, v in means.items()) + ".")
    return lines


FINDERS = {"max_seq_len": _max_seq_len, "generation": _generation, "leaderboard": _leaderboard}
