"""Which rows a table or figure may show, and the settings that keep them apart.

The report never pools rows that differ in a setting (bench/schema.py SETTINGS): each table row,
line or bar is one combination of the settings that differ between its rows (`series`), and a
caption names the settings every row shares (`recorded`). Failed and invalid rows carry no number
worth showing; flagged rows are shown, marked ⚠, never merged with ok ones; stale runs are kept
out (their own section says why). The model is always named with its checkpoint and parameter
count where the rows record them, so a 4M-parameter checkpoint never passes for a 7B model.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.report.tables import fmt_count, fmt_number
from bench.schema import MEASURED, SETTINGS

FLAG = "⚠"
FLAG_NOTE = f"{FLAG} flagged: measured under a condition that may have distorted it (see *Flagged*)."
# Always named with the model when recorded: what the model really is.
HEAD = ("model", "checkpoint", "params")
# Settings that usually follow from the model: they split a series only where one model has several.
PER_MODEL = ("family", "architecture")
# Caption names where the column's own name would mislead.
NAMES = {"hardware": "hardware profile", "budget_hardware": "emulated hardware (memory budget)",
         "vocab_size": "vocabulary"}


def shown_rows(df: pd.DataFrame, scenario: str, metrics: list[str] | None = None) -> pd.DataFrame:
    """The rows of one scenario (optionally some metrics) that tables and figures may show: those
    that carry a number (schema.MEASURED) from runs that are not stale."""
    status = df["status"].fillna("ok")
    current = df["stale"].isna() if "stale" in df else True
    d = df[(df["scenario"] == scenario) & status.isin(MEASURED) & current]
    return d[d["metric"].isin(metrics)] if metrics else d


def saved_bool(v) -> bool | None:
    """A boolean cell as a results table saves it (bool, 1/0, or its CSV text); None when missing."""
    return {"True": True, "1": True, "1.0": True, "False": False, "0": False, "0.0": False}.get(text(v))


def text(v) -> str:
    """A cell as the report compares and prints settings: '' when missing, 2048.0 -> '2048'."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def differs(d: pd.DataFrame, column: str, axes=()) -> bool:
    """Whether `column` takes more than one value (missing counts as one) among rows that share
    their `axes` values: a setting that only changes along an axis (the metric, the bar colour)
    describes that axis, not a separate series."""
    if column not in d or d.empty:
        return False
    values = d[column].map(text)
    axes = [a for a in axes if a in d]
    if not axes:
        return values.nunique() > 1
    return bool((values.groupby([d[a].map(text) for a in axes]).nunique() > 1).any())


def series(d: pd.DataFrame, axes=("metric",)) -> list[str]:
    """The columns that name d's rows, lines or bars: the model (with checkpoint and params where
    recorded), every SETTINGS column that differs within an `axes` value, and status where flagged
    rows are present. Grouping by these never pools rows that differ in a setting."""
    head = [c for c in HEAD if c in d and (c == "model" or d[c].notna().any())]
    rest = [c for c in SETTINGS if c not in HEAD and c != "scenario" and c not in axes and differs(d, c, axes)
            and (c not in PER_MODEL or differs(d, c, [*axes, *head]))]
    return head + rest + (["status"] if "status" in d and (d["status"] == "flagged").any() else [])


def groups(d: pd.DataFrame, columns: list[str]):
    """(values by column, rows) for each combination of `columns`, missing values included."""
    for key, g in d.groupby(columns, dropna=False, sort=True):
        yield dict(zip(columns, key if isinstance(key, tuple) else (key,))), g


def _checkpoint(path) -> str:
    """A checkpoint path short enough for a legend: '…/tiny' for a long local path."""
    path = text(path).rstrip("/")
    return path if len(path) <= 30 else "…/" + path.rsplit("/", 1)[-1]


def _details(values: dict) -> list[str]:
    details = []
    if text(values.get("checkpoint")):
        details.append(f"checkpoint {_checkpoint(values['checkpoint'])}")
    params = values.get("params")
    if isinstance(params, (int, float)) and math.isfinite(params) and params > 0:
        details.append(f"{fmt_count(params)} params")
    return details


def model_label(values: dict) -> str:
    """'falcon_mamba_7b (checkpoint …/tiny, 4.2M params)': the model as the rows record it."""
    details = _details(values)
    return f"{values.get('model')}" + (f" ({', '.join(details)})" if details else "")


def legend_columns(d: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns a legend names: those the model (with checkpoint and params) does not already
    determine. arch, impl or vocab_size change with the model; the tables show them."""
    head = [c for c in HEAD if c in columns]
    return [c for c in columns if c in head or c == "status" or differs(d, c, head)]


def label(values: dict, named: list[str] | None = None) -> str:
    """One line's or bar's name: the model label, the other settings (those in `named`, default all)
    as name=value, ⚠ when flagged."""
    settings = [f"{c}={text(v)}" for c, v in values.items()
                if c not in HEAD and c != "status" and (named is None or c in named)]
    inside = "; ".join(", ".join(p) for p in (_details(values), settings) if p)
    flag = f" {FLAG}" if values.get("status") == "flagged" else ""
    return f"{values.get('model')}" + (f" ({inside})" if inside else "") + flag


def key_cells(values: dict) -> dict:
    """A table row's leading cells: the model label, then each other setting, then the status."""
    cells = {"model": model_label(values)}
    for c, v in values.items():
        if c == "status":
            cells[c] = f"{FLAG} flagged" if v == "flagged" else text(v)
        elif c not in HEAD:
            cells[c] = fmt_number(v)
    return cells


def recorded(d: pd.DataFrame, shown=()) -> str:
    """'Every row: hardware profile h200, dtype float16, ...': the settings a table or figure does
    not show because they have one value, so that it still says what its rows record."""
    parts = []
    for c in SETTINGS:
        if c in shown or c in HEAD or c == "scenario" or c not in d:
            continue
        values = set(d[c].map(text))
        known = sorted(values - {""})
        if len(known) == 1:
            parts.append(f"{NAMES.get(c, c)} {known[0]}" + (" (where recorded)" if "" in values else ""))
    return ("Every row: " + ", ".join(parts) + ".") if parts else ""
