"""`make data`: convert every offline source into data/hub/, checked against data/manifest.json.

The manifest (committed) records, per split, its row count and the sha256 of its content: the rows as
canonical JSON plus the column types, so it does not depend on the parquet writer's version. A local
stamp (data/hub/.files.json, not committed) remembers each file's own sha256, so that a rerun can see
without reading the rows that a file is the one it wrote. A rerun leaves a matching split alone; a
build whose content differs from the recorded one is an error (the file is not kept) unless `--force`
accepts it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench import data
from bench.data.cards import write_cards
from bench.data.catalog import MMLU_SPLIT_ROWS, SPLITS, Split
from bench.data.convert import CONVERTERS, ConvertError, Sources
from bench.data.fetch import WHEELS, FetchError, sha256_file

MANIFEST_ABOUT = ("Local copies of the Hub splits the leaderboard tasks read, built by `make data` "
                  "(python -m bench.data). sha256: the content (column types, then each row as canonical "
                  "JSON). See README.md.")


class BuildError(RuntimeError):
    """A converted split is not what it should be; str() is one line."""


def manifest_path() -> Path:
    return data.DATA_DIR / "manifest.json"


def read_manifest() -> dict:
    path = manifest_path()
    if not path.is_file():
        return {"about": MANIFEST_ABOUT, "wheels": {}, "splits": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BuildError(f"{path}: not valid JSON ({e}); restore it with git") from e


def write_manifest(manifest: dict) -> None:
    path = manifest_path()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def stamp_path() -> Path:
    return data.hub_dir() / ".files.json"


def read_stamp() -> dict[str, str]:
    try:
        return json.loads(stamp_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_stamp(stamp: dict[str, str]) -> None:
    if stamp:
        stamp_path().parent.mkdir(parents=True, exist_ok=True)
        stamp_path().write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")


def content_sha256(path: Path) -> tuple[str, int]:
    """sha256 of a split's content (column names and types, then each row as canonical JSON), rows."""
    table = pq.read_table(path)
    h = hashlib.sha256()
    h.update(json.dumps([[f.name, str(f.type)] for f in table.schema]).encode())
    for row in table.to_pylist():
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest(), table.num_rows


def target(e: Split) -> Path:
    return data.dataset_dir(e.repo, e.subset) / f"{e.split}.parquet"


def up_to_date(e: Split, manifest: dict, stamp: dict[str, str]) -> bool:
    rec = manifest["splits"].get(e.key)
    path = target(e)
    if rec is None or not path.is_file():
        return False
    file_sha = sha256_file(path)
    if stamp.get(e.key) == file_sha:
        return True  # the file this build wrote, with the recorded content
    if content_sha256(path)[0] == rec.get("sha256"):
        stamp[e.key] = file_sha
        return True
    return False


def _write(ds, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    ds.to_parquet(str(tmp))
    os.replace(tmp, path)


def _check_rows(entries: list[Split], built: dict) -> None:
    for e in entries:
        want = e.want_rows
        if want is not None and len(built[e.key]) != want:
            raise BuildError(f"{e.key}: {len(built[e.key])} rows, the real split has {want}")
    if entries and entries[0].repo == "lighteval/mmlu":
        for split, want in MMLU_SPLIT_ROWS.items():
            got = sum(len(ds) for k, ds in built.items() if k.endswith(f"/{split}"))
            if got != want:
                raise BuildError(f"lighteval/mmlu {split}: {got} rows over the 57 subjects, the real split has {want}")


def _summary(source: str, entries: list[Split], manifest: dict, status: str, t0: float) -> dict:
    return {"source": source, "splits": len(entries),
            "rows": sum(manifest["splits"][e.key]["rows"] for e in entries),
            "bytes": sum(target(e).stat().st_size for e in entries), "status": status,
            "seconds": time.perf_counter() - t0}


def build_source(source: str, src: Sources, manifest: dict, stamp: dict[str, str], force: bool) -> dict:
    """Convert one source; returns a summary row. Updates `manifest` and `stamp` in place."""
    entries = [e for e in SPLITS if e.source == source]
    t0 = time.perf_counter()
    if not force and all([up_to_date(e, manifest, stamp) for e in entries]):
        return _summary(source, entries, manifest, "up to date", t0)
    built = CONVERTERS[source](src)
    if set(built) != {e.key for e in entries}:
        raise BuildError(f"converter {source} built {sorted(set(built) ^ {e.key for e in entries})[:3]}... "
                         "instead of its catalogue splits")
    _check_rows(entries, built)
    changed = []
    for e in entries:
        path = target(e)
        _write(built[e.key], path)
        sha, rows = content_sha256(path)
        old = manifest["splits"].get(e.key)
        if old is not None and old.get("sha256") != sha and not force:
            path.unlink()
            changed.append(e.key)
            continue
        manifest["splits"][e.key] = {"file": str(path.relative_to(data.DATA_DIR)), "rows": rows,
                                     "sha256": sha, "source": source}
        stamp[e.key] = sha256_file(path)
    if changed:
        raise BuildError(f"{len(changed)} split(s) of {source} differ from {manifest_path().name} "
                         f"(first: {changed[0]}); the files were not kept: find out why, or accept with --force")
    return _summary(source, entries, manifest, "built", t0)


def build(force: bool = False, sources: list[str] | None = None) -> int:
    from tabulate import tabulate

    import datasets

    datasets.disable_progress_bars()
    manifest, stamp = read_manifest(), read_stamp()
    src = Sources(data.DATA_DIR)
    summary = []
    t0 = time.perf_counter()
    try:
        for source in sources or list(CONVERTERS):
            summary.append(build_source(source, src, manifest, stamp, force))
            write_manifest(manifest)
            write_stamp(stamp)
        write_cards()
    except (BuildError, ConvertError, FetchError, data.MissingData) as e:
        print(f"make data: {e}", file=sys.stderr)
        return 1
    manifest["wheels"] = {w.name: {"version": w.version, "file": w.filename, "sha256": w.sha256,
                                   "licence": w.licence} for w in WHEELS.values()}
    manifest["about"] = MANIFEST_ABOUT
    write_manifest(manifest)
    print(tabulate([[s["source"], s["splits"], s["rows"], f"{s['bytes'] / 1e6:.1f} MB", s["status"],
                     f"{s['seconds']:.1f}"] for s in summary],
                   headers=["source", "splits", "rows", "size", "status", "seconds"]))
    n_missing = len(data.missing())
    print(f"make data: {sum(s['splits'] for s in summary)} splits in {data._shown(data.hub_dir())} "
          f"({time.perf_counter() - t0:.0f} s); {n_missing} splits cannot be had offline: "
          "`python -m bench.data status` lists them")
    return 0
