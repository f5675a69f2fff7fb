"""Finds run directories, reads each one, and keeps the good ones apart from the bad.

A run directory is any directory that holds one of results.parquet, results.csv, config.yaml or
meta.json (hidden directories such as Hydra's .hydra/ and submitit's .submitit/ are not runs).
Results are read from results.parquet, or from results.csv when the parquet file is missing,
unreadable or fails validation (with a note). A run without usable results becomes a `Skipped`
entry with the reason; it never stops the other runs from being reported.

A job that was killed leaves its staging directory, `<parent>/.<name>.staging-<id>/`, holding
job.json ({"pid", "host", "start_time", "overrides", "run_dir"}) and no results: it becomes an
`Incomplete` entry, never a result. A run whose meta.json says its code or config has changed
since (bench/fingerprint.py, when present) is read but marked stale.

Each good run's rows get a few columns from its own files, so that plots and the notebook
work from the combined table alone: run_dir, git_sha, weights (random/pretrained/unknown, from
config.yaml), bandwidth_gbps (the hardware profile's memory bandwidth, GB/s, if any) and stale
(why the run no longer matches the code or config, or empty).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from bench import jobdir
from bench.report.tables import fmt_time
from bench.report.validate import validate
from bench.schema import COLUMNS, JOB_STATES, MEASURED, STATUSES

try:  # the runner's check that a run still matches the code and config
    from bench.fingerprint import staleness
except ImportError:  # not there: every run counts as current
    staleness = None

RESULT_FILES = ("results.parquet", "results.csv")
MARKERS = RESULT_FILES + ("config.yaml", "meta.json")
STAGING = re.compile(rf"^\.(?P<name>.+){re.escape(jobdir.STAGING)}[^.]+$")  # bench/jobdir.py's naming
# Columns the report adds to every row, from the run's directory, meta.json and config.yaml.
RUN_INFO_COLUMNS = ["run_dir", "git_sha", "weights", "bandwidth_gbps", "stale"]


@dataclass
class Run:
    path: Path
    rows: pd.DataFrame
    config: dict
    meta: dict
    notes: list[str] = field(default_factory=list)  # problems that did not stop the run being used
    stale: str | None = None  # why the run no longer matches the code or config
    last_attempt: str | None = None  # a redo that failed, its previous results kept

    @property
    def state(self) -> str:
        worst = max(self.rows["status"], key=STATUSES.index)  # a failure counts as one, stale or not
        return "stale" if self.stale and worst in MEASURED else worst


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class Incomplete:
    """A job that started and never finished: its staging directory and job.json."""
    path: Path
    job: dict  # pid, host, start_time, overrides, run_dir; {} when unreadable
    note: str = ""  # job.json unreadable, or the process still alive


@dataclass
class Collection:
    runs: list[Run]
    skipped: list[Skipped]
    incomplete: list[Incomplete] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """All rows of all good runs: schema columns first, then extras, then the run info."""
        if not self.runs:
            return pd.DataFrame(columns=COLUMNS + ["status"] + RUN_INFO_COLUMNS)
        df = pd.concat([r.rows for r in self.runs], ignore_index=True)
        extras = [c for c in df.columns if c not in COLUMNS and c not in RUN_INFO_COLUMNS]
        return _parquet_safe(df[COLUMNS + extras + RUN_INFO_COLUMNS])

    def states(self) -> Counter:
        """Jobs per state: STATUSES (a run counts under its worst row) and JOB_STATES."""
        counts = Counter({state: 0 for state in STATUSES + JOB_STATES})
        counts.update(run.state for run in self.runs)
        counts.update({"incomplete": len(self.incomplete), "skipped": len(self.skipped)})
        return counts


def find_run_dirs(roots: list[Path], exclude: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Run directories and staging directories (of jobs that never finished) under the roots, sorted."""
    found, staging = set(), set()
    exclude = exclude.resolve() if exclude else None
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            staging.update(here / d for d in dirnames if STAGING.match(d))
            # Skip hidden directories (staging ones included) and the report's own output directory.
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and (exclude is None or (here / d).resolve() != exclude))
            if any(m in filenames for m in MARKERS):
                found.add(here)
    return sorted(found), sorted(staging)


def load(roots: list[Path], exclude: Path | None = None) -> Collection:
    dirs, staging = find_run_dirs(roots, exclude)
    runs, skipped = [], []
    for path in dirs:
        try:
            runs.append(read_run(path))
        except BadRun as e:
            skipped.append(Skipped(path, str(e)))
    return Collection(runs, skipped, [read_staging(path) for path in staging])


def read_staging(path: Path) -> Incomplete:
    notes: list[str] = []
    job = _read_optional(path / jobdir.JOB_FILE, json.loads, notes)
    if jobdir.job_alive(job):
        notes.append("it may still be running (its process is alive, or ran on another host)")
    job.setdefault("run_dir", str(path.parent / STAGING.match(path.name)["name"]))
    return Incomplete(path, job, "; ".join(notes))


class BadRun(Exception):
    """A run directory that cannot be used; the message says why."""


def read_run(path: Path) -> Run:
    notes: list[str] = []
    meta = _read_optional(path / "meta.json", json.loads, notes)
    config = _read_optional(path / "config.yaml", yaml.safe_load, notes)
    rows = _read_results(path, notes)
    stale = _staleness(meta, notes)
    rows["run_dir"] = str(path)
    rows["git_sha"] = meta.get("git_sha")
    # A job that trains (the probes) records "trained" in its rows; config.yaml says what it started from.
    kind = weights_kind(config)
    rows["weights"] = rows["weights"].where(rows["weights"] == "trained", kind) if "weights" in rows else kind
    rows["bandwidth_gbps"] = bandwidth_gbps(config)
    rows["stale"] = stale
    return Run(path, rows, config, meta, notes, stale, _last_attempt(meta))


def _read_results(path: Path, notes: list[str]) -> pd.DataFrame:
    """The validated rows of the first results file that reads and validates, in RESULT_FILES order."""
    present = [f for f in RESULT_FILES if (path / f).is_file()]
    if not present:
        others = sorted(p.name for p in path.iterdir())
        raise BadRun(f"no results file (results.parquet or results.csv); directory holds only {others}")
    failures = []
    for name in present:
        try:
            frame = pd.read_parquet(path / name) if name.endswith(".parquet") else read_csv(path / name)
        except Exception as e:  # noqa: BLE001 - any reader error means "corrupt file"
            failures.append(f"{name} unreadable ({type(e).__name__}: {_first_line(e)})")
            continue
        rows, errors, more_notes = validate(frame)
        if errors:
            failures.append(f"{name} fails validation ({'; '.join(errors)})")
            continue
        notes += [f"{f}; used {name}" for f in failures] + more_notes
        return rows
    raise BadRun("; ".join(failures))


def _staleness(meta: dict, notes: list[str]) -> str | None:
    if staleness is None:
        return None
    try:
        return staleness(meta)
    except Exception as e:  # noqa: BLE001 - an unreadable fingerprint must not lose the run
        notes.append(f"could not tell whether the run is stale ({type(e).__name__}: {_first_line(e)})")
        return None


def _last_attempt(meta: dict) -> str | None:
    """meta.json's last_attempt, when a redo failed and the runner kept the previous results."""
    last = meta.get("last_attempt")
    if not isinstance(last, dict) or last.get("status", "failed") == "ok":
        return None
    return f"a redo ({fmt_time(last.get('time')) or 'time not recorded'}) {last.get('status', 'failed')}: " \
           f"{last.get('reason') or 'no reason recorded'}; the results shown are the previous ones"


def read_csv(path: Path) -> pd.DataFrame:
    """A results.csv with its identifiers as text: a run_id such as '3e3891602191' would
    otherwise parse as the float 3e+3891602191 (inf)."""
    return pd.read_csv(path, dtype={"run_id": str})


def _read_optional(path: Path, parse, notes: list[str]) -> dict:
    """A parsed meta.json/config.yaml, or {} with a note when it is missing or unreadable."""
    if not path.is_file():
        notes.append(f"no {path.name}")
        return {}
    try:
        data = parse(path.read_text())
    except Exception as e:  # noqa: BLE001
        notes.append(f"{path.name} unreadable ({type(e).__name__}: {_first_line(e)})")
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path.name} is not a mapping")
        return {}
    return data


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


def _get(config: dict, *keys):
    for key in keys:
        if not isinstance(config, dict):
            return None
        config = config.get(key)
    return config


def weights_kind(config: dict) -> str:
    """'random', 'pretrained' or 'unknown', from the model section of config.yaml.

    Looks at model.weights ('random'/'pretrained'), then model.pretrained (bool), then
    model.path / model.pretrained_path (a local checkpoint means pretrained weights).
    """
    weights = _get(config, "model", "weights")
    if isinstance(weights, str) and weights in ("random", "pretrained"):
        return weights
    pretrained = _get(config, "model", "pretrained")
    if isinstance(pretrained, bool):
        return "pretrained" if pretrained else "random"
    if _get(config, "model", "path") or _get(config, "model", "pretrained_path"):
        return "pretrained"
    return "unknown"


def bandwidth_gbps(config: dict) -> float:
    """The hardware profile's memory bandwidth in GB/s (config.yaml hardware.bandwidth_gbps), or NaN."""
    value = _get(config, "hardware", "bandwidth_gbps")
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns mixing types (e.g. bools and strings from different runs) as strings."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col].dropna()}
            if len(kinds) > 1 or (kinds and kinds != {str}):
                df[col] = df[col].map(lambda v: v if pd.isna(v) else str(v)).astype("string")
    return df
