"""The results report: reads every run directory, checks it against the tidy schema, and writes
report.md, a self-contained report.html, PNG/SVG plots and the combined tables.

    python -m bench.report [RESULT_DIRS ...] [--out results/report]

Modules, in the order the data flows: validate (one run's rows against bench/schema.py), load
(find and read run directories, keep bad ones apart), plots (figures from the combined table),
tables (formatting), sections (what the report says), render (markdown and HTML).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.report import plots, render, sections
from bench.report.load import Collection, load

DEFAULT_ROOTS = [Path("results/runs"), Path("results/multirun")]
DEFAULT_OUT = Path("results/report")


@dataclass
class Report:
    out: Path
    collection: Collection
    figures: list[str]  # names of the figures written under out/plots


def write_report(roots: list[Path] | None = None, out: Path = DEFAULT_OUT) -> Report:
    """Reads the runs under `roots` and writes the report into `out` (created if missing)."""
    roots = [Path(r) for r in (roots or DEFAULT_ROOTS)]
    out = Path(out)
    collection = load(roots, exclude=out)
    table = collection.table()
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "all_results.csv", index=False)
    table.to_parquet(out / "all_results.parquet", index=False)

    plots_dir = out / "plots"
    figures = plots.draw_all(table) if not table.empty else {}
    for name, fig in figures.items():
        plots.save(fig, plots_dir, name)
    report_sections = sections.build(collection, table, figures)
    (out / "report.md").write_text(render.markdown(report_sections))
    (out / "report.html").write_text(render.html_page(report_sections, plots_dir))
    return Report(out, collection, list(figures))
