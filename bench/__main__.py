"""`python -m bench [overrides]`: the Hydra entry point. One job = one model x scenario x hardware.

    python -m bench                                     # the smoke experiment (tiny models, CPU)
    python -m bench -m model=tiny_mamba,tiny_llama scenario.new_tokens=1000,4000
    python -m bench experiment=falcon_mamba_paper       # 7B-class models on a GPU
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
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from bench.config import ConfigError, register_configs  # noqa: E402  (ConfigError is a ValueError)

log = logging.getLogger("bench")
register_configs()


@hydra.main(version_base="1.3", config_path="../configs", config_name="config")
def main(cfg: DictConfig):
    from bench.runner import run_job

    try:
        validated = OmegaConf.to_object(cfg)  # runs every __post_init__ check
    except (ConfigError, ValueError) as e:  # every __post_init__ names its field
        print(f"ssm-bench: config error: {e}", file=sys.stderr)
        sys.exit(2)
    run_dir = HydraConfig.get().runtime.output_dir
    log.info("%s | %s | %s | %s -> %s", validated.scenario.name, validated.model.name, validated.dtype,
             validated.hardware.name, run_dir)
    table = run_job(validated, run_dir)
    if table is not None and (table["status"] == "failed").any():
        log.error("job failed: %s", table["error"].dropna().iloc[0])


if __name__ == "__main__":
    main()
