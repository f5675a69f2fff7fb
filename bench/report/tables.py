"""Small helpers that turn result rows into readable tables (numbers formatted, units in headers).

`to_markdown` uses pandas' DataFrame.to_markdown when `tabulate` is installed and writes a plain
pipe table otherwise, so the report never needs it.
"""

from __future__ import annotations

import math

import pandas as pd

GIB = 2 ** 30
MIB = 2 ** 20


def fmt_bytes(n) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return ""
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.1f} KiB"


def fmt_number(x, digits: int = 3) -> str:
    """Significant digits for ordinary values, 'inf'/'' for the special ones."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    if isinstance(x, (int, float)):
        if float(x).is_integer() and abs(x) < 1e15:
            return f"{int(x):,}"
        return f"{x:,.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return str(x)


def fmt_value(value, unit: str) -> str:
    return fmt_bytes(value) if unit == "bytes" else fmt_number(value)


def to_markdown(df: pd.DataFrame) -> str:
    text = df.astype(str).replace({"nan": "", "None": "", "<NA>": ""})
    try:
        return text.to_markdown(index=False)
    except ImportError:  # no tabulate: a plain pipe table
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(esc(c) for c in text.columns) + " |",
                 "|" + "|".join("---" for _ in text.columns) + "|"]
        lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in text.itertuples(index=False)]
        return "\n".join(lines)
