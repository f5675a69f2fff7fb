"""`python -m bench.data [build|status] [--force]`: build the local Hub copies, or say what is there.

build (the default, `make data`): copy/fetch/convert every split that can be had offline into
data/hub/, record sha256 and row count per split in data/manifest.json; a split whose file already
matches the manifest is left alone (`--force` redoes it).
status: one table of every split the leaderboard tasks read: built, missing (and where to put it).
"""

from __future__ import annotations

import argparse
import sys

from bench import data
from bench.data.catalog import SPLITS


def status_table() -> str:
    from tabulate import tabulate

    built, absent = [], []
    for e in SPLITS:
        path = data._find(e.repo, e.subset, e.split)
        if path is not None:
            built.append(e)
    rows = []
    for m in data.missing():
        e = m.split
        rows.append([e.repo, e.subset or "", e.split, e.task + (" (few-shot)" if e.fewshot else ""),
                     e.rows if e.rows is not None else "", data._shown(m.path),
                     "make data" if e.source else "the Hub (not offline)"])
        absent.append(e)
    head = (f"{len(built)} of {len(SPLITS)} splits on disk under {data._shown(data.hub_dir())}; "
            f"{len(absent)} missing:")
    if not rows:
        return head.replace("; 0 missing:", "; none missing")
    return head + "\n" + tabulate(rows, headers=["hub repo", "subset", "split", "read by", "rows",
                                                 "file expected", "comes from"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="build", choices=["build", "status"])
    parser.add_argument("--force", action="store_true", help="rebuild every split, even when it matches")
    args = parser.parse_args(argv)
    if args.command == "status":
        print(status_table())
        return 0
    from bench.data.build import build

    return build(force=args.force)


if __name__ == "__main__":
    sys.exit(main())
