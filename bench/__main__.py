"""`ssm-bench [overrides]` (or `python -m bench`): the Hydra entry point. One job = one model x scenario x hardware.

    python -m bench                                     # the smoke experiment (tiny models, CPU)
    python -m bench -m model=tiny_mamba,tiny_llama scenario.new_tokens=1000,4000
    python -m bench experiment=falcon_mamba_paper       # 7B-class models on a GPU

Exit status: 0 when every job finished ok or flagged (or was skipped as current); 1 when any
job failed or was invalid, after all the others ran (allow_failures=true: 0); 2 for a config
error in a single run; 128+N when the harness was stopped by signal N.
"""

from __future__ import annotations

import logging
import os
import sys

# No hub access, ever: set before any Hugging Face library is imported.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from bench import invocation  # noqa: E402
from bench.config import CONFIG_DIR, ConfigError, register_configs  # noqa: E402  (ConfigError is a ValueError)

log = logging.getLogger("bench")
register_configs()
invocation.begin()  # the top-level process: jobs (in any launcher's processes) report to it


# An absolute path: the same configs whether run as `python -m bench` or as the `ssm-bench` script.
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig):
    from bench.runner import Interrupted, run_job, worst_status

    invocation.watch_top()  # in a launcher's worker: die with the harness
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    overrides = list(hydra_cfg.overrides.task)
    try:
        validated, error = OmegaConf.to_object(cfg), None  # runs every __post_init__ check
    except (ConfigError, ValueError) as e:  # every __post_init__ names its field
        print(f"ssm-bench: config error: {e}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.RUN:
            _remove_if_empty(run_dir)  # Hydra made it; nothing ran
            sys.exit(2)
        validated, error = cfg, e  # a sweep goes on: this job is a failure row
    log.info("%s | %s | %s | %s -> %s", cfg.scenario.name, cfg.model.name, cfg.dtype, cfg.hardware.name, run_dir)
    try:
        table = run_job(validated, run_dir, overrides, config_error=error)
    except Interrupted as e:
        invocation.record(cfg.results_dir, run_dir, "failed", str(e), allowed=False)
        log.error("%s; job marked in %s", e, run_dir)
        _remove_if_empty(run_dir)  # stopped while waiting for the lock: nothing ran
        sys.exit(128 + e.signum)
    except OSError as e:  # e.g. a full disk: the previous results stay, the sweep goes on
        log.error("job could not write its results (%s); %s keeps what it held before", e, run_dir)
        invocation.record(cfg.results_dir, run_dir, "failed", f"{type(e).__name__}: {e}", allowed=False)
        _remove_if_empty(run_dir)
        return
    if table is not None:
        status = worst_status(table)
        reasons = table["reason"].dropna()
        invocation.record(cfg.results_dir, run_dir, status, reasons.iloc[0] if len(reasons) else None,
                          allowed=cfg.allow_failures)


def _remove_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


def cli() -> None:
    """The `ssm-bench` console script (pyproject.toml) and `python -m bench`."""
    try:
        main()
    finally:
        code = invocation.finish()
    sys.exit(code)


if __name__ == "__main__":
    cli()
