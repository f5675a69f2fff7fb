"""`python -m bench.report [RESULT_DIRS ...] [--out DIR] [--strict]`: see bench/report/__init__.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened

from bench.report import DEFAULT_OUT, DEFAULT_ROOTS, write_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("roots", nargs="*", type=Path, default=DEFAULT_ROOTS,
                        help="directories searched for run directories (default: results/runs results/multirun)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: results/report)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when any run is skipped")
    args = parser.parse_args(argv)

    report = write_report(args.roots, args.out)
    c = report.collection
    print(f"report: {len(c.runs)} runs, {len(c.skipped)} skipped, {len(report.figures)} plots -> "
          f"{report.out / 'report.md'}, {report.out / 'report.html'}")
    for root in c.missing_roots:
        print(f"  not found: {root}", file=sys.stderr)
    for skipped in c.skipped:
        print(f"  skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    return 1 if args.strict and c.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
