"""What a result was made from: a hash of the resolved config and of the code.

A finished job is skipped on rerun only when both hashes match the job about to run; results
from another config (a YAML default changed) or other code (a new commit, a different dirty
diff, other library versions) are stale and run again. The report asks `staleness(meta)` so
that stale results are never shown as current.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from omegaconf import OmegaConf

from bench.environment import REPO, git, versions

# Settings that change where or how a job runs, never what it measures.
NOT_MEASURED = ("results_dir", "skip_existing", "isolate", "experiment", "tags", "lock", "allow_failures",
                "memory_guard")
NOT_MEASURED_SCENARIO = ("progress",)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measured_config(cfg) -> dict:
    """The resolved config without the settings that do not change the measurement."""
    data = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    for key in NOT_MEASURED:
        data.pop(key, None)
    for key in NOT_MEASURED_SCENARIO:
        data.get("scenario", {}).pop(key, None)
    path = (data.get("model") or {}).get("path")
    if path:  # the same path may hold other weights tomorrow
        data["model"]["checkpoint_identity"] = checkpoint_identity(path)
    return data


def checkpoint_identity(path: str) -> str | None:
    """A hash of a model directory's files (name, size, modification time): cheap, and it changes
    when the weights are replaced. None when the directory is not there."""
    root = Path(path)
    if not root.is_dir():
        return None
    entries = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return _digest(json.dumps(entries))


def config_hash(cfg) -> str:
    return _digest(json.dumps(measured_config(cfg), sort_keys=True, default=str))


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> dict:
    """git sha, a hash of the uncommitted diff of tracked files, and the library versions."""
    diff = git("diff", "HEAD", "--", "bench", "models", "configs", "pyproject.toml")
    return {"git_sha": git("rev-parse", "HEAD") or None, "diff": _digest(diff) if diff else None,
            "versions": _digest(json.dumps(versions(), sort_keys=True))}


def code_hash() -> str:
    return _digest(json.dumps(code_fingerprint(), sort_keys=True))


def fingerprint(cfg) -> dict:
    return {"config": config_hash(cfg), "code": code_hash()}


def staleness(meta: dict) -> str | None:
    """Why a run's results are not current (None when they are): its code or its config differ
    from what the same overrides give now. Runs without a fingerprint predate them: stale."""
    recorded = meta.get("fingerprint")
    if not isinstance(recorded, dict):
        return "no fingerprint (made before fingerprints were recorded)"
    if recorded.get("code") != code_hash():
        return f"code changed since the run (git {str(meta.get('git_sha'))[:10]}, diff or library versions)"
    overrides = meta.get("overrides")
    if overrides is None:
        return None
    try:
        now = config_hash(compose(overrides))
    except Exception as e:  # noqa: BLE001 — the overrides no longer compose: stale by definition
        return f"its overrides no longer compose ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    if now != recorded.get("config"):
        return "config changed since the run (the same overrides now resolve differently)"
    return None


def compose(overrides: list[str]):
    """The validated config that `python -m bench <overrides>` would run now."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bench.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)
