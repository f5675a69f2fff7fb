"""`python -m bench.report [RESULT_DIRS ...] [--out DIR] [--strict]`: see bench/report/__init__.py.

Exit status: 0, the report was written; 1, with --strict, when any job failed, is invalid,
incomplete or was skipped (the report is still written); 2, a results directory does not exist
(nothing written, the previous report kept)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none opened

from bench.report import DEFAULT_OUT, RootNotFound, UnsafeOut, write_report  # noqa: E402
from bench.report.sections import job_summary  # noqa: E402

# The job states that --strict refuses.
STRICT = ("failed", "invalid", "incomplete", "skipped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="*", type=Path,
                        help="directories searched for run directories, each of which must exist "
                             "(default: those of results/runs and results/multirun that exist)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: results/report)")
    parser.add_argument("--strict", action="store_true",
                        help=f"exit with status 1 when any job is {', '.join(STRICT)}")
    args = parser.parse_args(argv)

    try:
        report = write_report(args.roots or None, args.out)
    except (RootNotFound, UnsafeOut) as e:
        print(f"python -m bench.report: {e}", file=sys.stderr)
        return 2
    c = report.collection
    states = c.states()
    print(f"report: {job_summary(states)} {len(report.figures)} plots -> "
          f"{report.out / 'report.md'}, {report.out / 'report.html'}")
    for skipped in c.skipped:
        print(f"  skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    for job in c.incomplete:
        print(f"  incomplete {job.job.get('run_dir')}: started, never finished ({job.path})", file=sys.stderr)
    return 1 if args.strict and any(states[s] for s in STRICT) else 0


if __name__ == "__main__":
    sys.exit(main())
