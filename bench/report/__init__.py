"""The results report: reads every run directory, checks it against the tidy schema, and writes
report.md, a self-contained report.html, PNG/SVG plots and the combined tables.

    python -m bench.report [RESULT_DIRS ...] [--out results/report] [--strict]

Modules, in the order the data flows: validate (one run's rows against bench/schema.py), load
(find and read run directories, keep bad and unfinished ones apart), tables (formatting), rows
(which rows may be shown and the settings that keep them apart), plots (figures from the
combined table), sections (what the report says), render (markdown and HTML).

The report is built in a hidden directory beside --out and swapped in only when complete, so a
crash or a typo'd results directory never replaces the previous report.
"""

from __future__ import annotations

import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import jobdir
from bench.report import plots, render, sections
from bench.report.load import RESULT_FILES, Collection, load

DEFAULT_ROOTS = [Path("results/runs"), Path("results/multirun")]
DEFAULT_OUT = Path("results/report")


MARKER = ".ssm-bench-report"  # in every report directory: the only kind --out may replace


class RootNotFound(FileNotFoundError):
    """A results directory that does not exist: a typo must not read as 'no results'."""


class UnsafeOut(ValueError):
    """--out names something the report must not replace: results, or files it did not write."""


def check_out(out: Path, roots: list[Path]) -> None:
    """The report replaces --out whole, so --out must be a report it wrote before (or empty, or
    new), and must neither be nor contain a results directory."""
    resolved = out.resolve()
    for root in roots:
        r = Path(root).resolve()
        if r == resolved or resolved in r.parents:
            raise UnsafeOut(f"--out {out}: holds the results directory {root}; choose a directory of its own")
    if out.exists() and not out.is_dir():
        raise UnsafeOut(f"--out {out}: is a file, not a report directory")
    if out.is_dir() and any(out.iterdir()) and not _is_report(out):
        raise UnsafeOut(f"--out {out}: not empty and not a report written by ssm-bench (no {MARKER}); "
                        "it would be replaced whole, so choose a new or empty directory")


@dataclass
class Report:
    out: Path
    collection: Collection
    figures: list[str]  # names of the figures written under out/plots


def results_roots(roots: list[Path] | None) -> list[Path]:
    """The directories to read. Named ones must all exist; of the defaults, at least one."""
    if roots is None:
        present = [r for r in DEFAULT_ROOTS if r.is_dir()]
        if not present:
            raise RootNotFound(f"no results directory: none of {', '.join(map(str, DEFAULT_ROOTS))} exists")
        return present
    roots = [Path(r) for r in roots]
    missing = [r for r in roots if not r.is_dir()]
    if missing:
        raise RootNotFound(f"results directory not found: {', '.join(map(str, missing))}")
    return roots


def write_report(roots: list[Path] | None = None, out: Path = DEFAULT_OUT) -> Report:
    """Reads the runs under `roots` (default: DEFAULT_ROOTS) and writes the report into `out`,
    replacing what was there only once the new one is complete."""
    roots = results_roots(roots)
    out = Path(out)
    check_out(out, roots)
    collection = load(roots, exclude=out)
    table = collection.table()
    with _replacing(out) as new:
        (new / MARKER).write_text("written by python -m bench.report; the next report replaces this directory whole\n")
        table.to_csv(new / "all_results.csv", index=False)
        table.to_parquet(new / "all_results.parquet", index=False)
        figures, figure_notes = plots.draw_all(table, new / "plots")
        report_sections = sections.build(collection, table, figures, figure_notes)
        text = render.markdown(report_sections)
        (new / "report.md").write_text(text)
        (new / "report.html").write_text(render.html_page(text, new / "plots"))
    return Report(out, collection, figures)


def _is_report(path: Path) -> bool:
    """Written by this report: its marker, or (reports from before the marker) report.md with no
    run's results anywhere below."""
    if (path / MARKER).is_file():
        return True
    return (path / "report.md").is_file() and not any(p.name in RESULT_FILES for p in path.rglob("results.*"))


@contextmanager
def _replacing(out: Path):
    """A new hidden directory beside `out` that replaces it in one step (as a job's run directory
    is, bench/jobdir.py) once the block completes; on an error it is removed, `out` left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new = out.parent / f".{out.name}.new-{uuid.uuid4().hex[:8]}"
    new.mkdir()
    try:
        yield new
        jobdir.commit(new, out)
    finally:
        shutil.rmtree(new, ignore_errors=True)
