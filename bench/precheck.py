"""A sweep checks every job's config before its first job starts.

Hydra composes each job lazily, so a bad value in job 2 of 3 would only surface when job 2
runs. This callback expands the sweep (as the basic sweeper does), composes and validates
every job up front, and says which ones are invalid; those become failure rows when their
turn comes, and the others run. A job that does not even compose (an unknown key, a wrong
type) stops the sweep here, before anything is measured.
"""

from __future__ import annotations

import logging
import sys

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bench import invocation

log = logging.getLogger("bench")


def expand(overrides: list[str]) -> list[list[str]]:
    """Every job's override list, in the basic sweeper's order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


class SweepPrecheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from bench.config import ConfigError

        if "BasicSweeper" not in str(OmegaConf.select(config, "hydra.sweeper._target_")):
            return  # other sweepers choose their jobs as they go
        hydra = GlobalHydra.instance().hydra
        # As the basic sweeper does: the experiment's hydra.sweeper.params, then the command line.
        params = OmegaConf.to_container(config.hydra.sweeper.get("params") or {})
        jobs = expand([f"{k}={v}" for k, v in params.items()] + OmegaConf.to_container(config.hydra.overrides.task))
        bad = []
        for i, job in enumerate(jobs):
            try:
                composed = hydra.compose_config(config.hydra.job.config_name, job, run_mode=RunMode.RUN)
            except Exception as e:  # noqa: BLE001 — nothing has run yet: stop with the job named
                print(f"ssm-bench: job {i} ({' '.join(job)}) does not compose: {str(e).splitlines()[0]}",
                      file=sys.stderr)
                sys.exit(2)
            invocation.expect(composed.results_dir)  # where this job will say how it ended
            OmegaConf.set_struct(composed, False)
            composed.pop("hydra", None)
            try:
                OmegaConf.to_object(composed)
            except (ConfigError, ValueError) as e:
                bad.append(f"job {i} ({' '.join(job)}): {e}")
        if bad:
            log.error("config check: %d of %d jobs are invalid and will be failure rows; the others run:\n  %s",
                      len(bad), len(jobs), "\n  ".join(bad))
        else:
            log.info("config check: all %d jobs valid", len(jobs))
