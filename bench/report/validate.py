"""Checks one run's result table against the tidy schema (bench/schema.py).

`validate(frame)` coerces the column types in place of a copy and returns (frame, errors,
notes). Any error means the run is skipped and named in the report; notes are kept as
caveats. The checks are the schema's promises: every column of COLUMNS is present, numeric
columns hold numbers (inf allowed: an unbounded max prompt length), the columns that name a
row are never empty, and the enumerated columns hold only their allowed values.

A failed row is a job's record that it measured nothing: it needs no metric, source or value,
so that a failure is read as a failure and not as a malformed run. Its `reason` says why; the
runner's older failure rows called that column `error` and left `source` empty.
"""

from __future__ import annotations

import pandas as pd

from bench.memory.search import VERDICTS  # max_seq_len's verdicts
from bench.scenarios import SCENARIOS
from bench.schema import ARCHS, COLUMNS, LOAD_COLUMNS, SOURCES, STATUSES

PREFILL_MODES = ("parallel", "sequential")


# Column -> allowed values; checked on non-empty cells only, and only where the column exists.
ALLOWED = {"arch": ARCHS, "source": SOURCES, "status": STATUSES, "verdict": VERDICTS,
           "prefill_mode": PREFILL_MODES}
# Core and known extra columns that hold numbers. Extra columns missing from a run are fine.
NUMERIC = ["params", "vocab_size", "chunk_size", "batch_size", "prompt_len", "step", "value",
           "repeat", "budget_bytes", "slope", "raw", "normalized", "n_samples", "stderr"] + LOAD_COLUMNS
# Every row must say which run, scenario and model it is; every row but a failed one, also which
# measurement (metric) and where its number comes from (source).
NOT_NULL = ["run_id", "scenario", "model"]
MEASUREMENT_NOT_NULL = ["metric", "source"]
NO_REASON = "(no reason recorded)"  # the reason of a row that is not ok and gives none


def validate(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Returns (typed copy of frame, errors, notes). Errors make the run unusable."""
    errors: list[str] = []
    notes: list[str] = []
    df = frame.copy()
    if df.empty:
        return df, ["results file has no rows"], notes

    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        errors.append(f"missing required columns: {', '.join(missing)}")
        return df, errors, notes

    # A harness that never writes `status` has only successful rows.
    if "status" not in df.columns:
        df["status"] = "ok"
    df["status"] = df["status"].where(df["status"].notna() & (df["status"].astype(str).str.strip() != ""), "ok")
    if "error" in df.columns:  # the older name of `reason`, on failure rows
        reason = df["reason"].astype(object) if "reason" in df.columns else df["error"]
        df["reason"] = reason.where(reason.notna(), df["error"])

    for col in (c for c in NUMERIC if c in df.columns):
        # Booleans and strings such as "inf" coerce to numbers; anything else becomes NaN.
        coerced = pd.to_numeric(df[col], errors="coerce")
        bad = coerced.isna() & df[col].notna() & (df[col].astype(str).str.strip() != "")
        if bad.any():
            errors.append(f"column {col!r} has {int(bad.sum())} non-numeric values, e.g. {df.loc[bad, col].iloc[0]!r}")
        df[col] = coerced.astype("float64")

    not_failed = df["status"] != "failed"
    for col in NOT_NULL + MEASUREMENT_NOT_NULL:
        empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if col in MEASUREMENT_NOT_NULL:
            empty &= not_failed
        if empty.any():
            errors.append(f"column {col!r} is empty in {int(empty.sum())} rows")

    for col, allowed in ALLOWED.items():
        if col not in df.columns:
            continue
        values = df[col].dropna().astype(str)
        values = values[values.str.strip() != ""]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            errors.append(f"column {col!r} has values {unknown}; allowed: {list(allowed)}")

    ok = df["status"] == "ok"
    no_value = ok & df["value"].isna()
    if no_value.any():
        notes.append(f"{int(no_value.sum())} successful rows have no value")
    not_ok = df["status"] != "ok"
    if not_ok.any():
        reason = df["reason"].astype(object) if "reason" in df.columns else \
            pd.Series(None, index=df.index, dtype=object)
        unexplained = not_ok & (reason.isna() | (reason.astype(str).str.strip() == ""))
        if unexplained.any():
            notes.append(f"{int(unexplained.sum())} rows that are not ok give no reason")
        df["reason"] = reason.where(~unexplained, NO_REASON)
    unknown_scenarios = sorted(set(df["scenario"].dropna().astype(str)) - set(SCENARIOS))
    if unknown_scenarios:
        notes.append(f"scenario(s) {unknown_scenarios} have no dedicated report section; shown as plain tables")
    return df, errors, notes
