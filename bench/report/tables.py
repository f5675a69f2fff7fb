"""Small helpers that turn result rows into readable tables (numbers formatted, units in headers).

Cells are formatted here, once; tabulate only lays them out (`to_markdown`).
"""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd

GIB = 2 ** 30
MIB = 2 ** 20


def fmt_bytes(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return ""
    if abs(n) >= GIB:
        return f"{n / GIB:.2f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.1f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n:.0f} B"


def fmt_number(x, digits: int = 3) -> str:
    """Significant digits for ordinary values; '' for a missing one, 'inf'/'-inf' for infinities."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return str(x)
    if isinstance(x, (int, float)):
        if float(x).is_integer() and abs(x) < 1e15:
            return f"{int(x):,}"
        return f"{x:,.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return str(x)


def parse_time(value) -> datetime | None:
    """meta.json and job.json times: epoch seconds or ISO 8601 text."""
    try:
        return datetime.fromtimestamp(float(value)) if isinstance(value, (int, float)) \
            else datetime.fromisoformat(str(value))
    except (ValueError, TypeError, OverflowError, OSError):
        return None


def fmt_time(value) -> str:
    """'2025-01-01 12:05', or the value as written when it is not a time."""
    t = parse_time(value)
    return f"{t:%Y-%m-%d %H:%M}" if t else ("" if value is None else str(value))


def fmt_value(value, unit: str) -> str:
    """A measured value: NaN and inf are printed as such ('nan', 'inf'), never as a blank."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return fmt_bytes(value) if unit == "bytes" else fmt_number(value)


def fmt_count(n: float) -> str:
    """4_200_000 -> '4.2M', 7.27e9 -> '7.27B': parameter counts in labels."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def to_markdown(df: pd.DataFrame) -> str:
    """A pipe table (tabulate). Missing cells blank; cells that read 'nan' (a measured NaN,
    formatted) stay; a `|` or line break inside a cell would end it, so they are escaped."""
    text = df.astype(object).where(df.notna(), "").astype(str)
    text = text.map(lambda s: s.replace("|", "\\|").replace("\n", " "))
    return text.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)
