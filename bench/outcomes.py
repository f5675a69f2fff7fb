"""How each job of this invocation ended, gathered for the exit status and a closing summary.

Jobs may run in other processes (joblib, submitit), so each writes a small JSON file into a
directory named by SSM_BENCH_OUTCOMES, which the top-level process creates (and inherits to
every launcher's workers) and reads once the sweep is over.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ENV = "SSM_BENCH_OUTCOMES"
OWNER_ENV = "SSM_BENCH_OUTCOMES_OWNER"
BAD = ("failed", "invalid")  # statuses that make the invocation exit 1


def begin() -> None:
    if ENV not in os.environ:
        os.environ[ENV] = tempfile.mkdtemp(prefix="ssm-bench-outcomes-")
        os.environ[OWNER_ENV] = str(os.getpid())


def record(run_dir, status: str, reason: str | None, allowed: bool) -> None:
    where = os.environ.get(ENV)
    if where and Path(where).is_dir():
        entry = {"run_dir": str(run_dir), "status": status, "reason": reason, "allowed": bool(allowed)}
        (Path(where) / f"{uuid.uuid4().hex}.json").write_text(json.dumps(entry))


def finish() -> int:
    """Print what went wrong and return the exit status (only in the process that began)."""
    where = os.environ.get(ENV)
    if not where or os.environ.get(OWNER_ENV) != str(os.getpid()):
        return 0
    entries = []
    for path in sorted(Path(where).glob("*.json")):
        try:
            entries.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    shutil.rmtree(where, ignore_errors=True)
    bad = [e for e in entries if e["status"] in BAD]
    if bad:
        print(f"ssm-bench: {len(bad)} of {len(entries)} jobs did not give a valid result:", file=sys.stderr)
        for e in bad:
            print(f"  {e['status']}: {e['run_dir']}: {e['reason']}", file=sys.stderr)
    flagged = sum(e["status"] == "flagged" for e in entries)
    if flagged:
        print(f"ssm-bench: {flagged} of {len(entries)} jobs flagged (see the report's flagged rows)", file=sys.stderr)
    return 1 if any(not e["allowed"] for e in bad) else 0
