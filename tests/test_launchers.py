"""The Hydra launcher configs in configs/hydra/launcher compose against the plugins' schemas, and
the Slurm one turns into the sbatch script we expect. A tiny primary config in tmp_path puts the
repository's configs/ on the search path, so these tests do not depend on configs/config.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install hydra-joblib-launcher")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install hydra-submitit-launcher")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
APP = """
import hydra

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    print("job", cfg.x)

if __name__ == "__main__":
    main()
"""


@pytest.fixture
def app_dir(tmp_path) -> Path:
    (tmp_path / "config.yaml").write_text(f"hydra:\n  searchpath:\n    - file://{CONFIGS}\nx: 1\n")
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def launcher(app_dir: Path, name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(app_dir), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={name}", *overrides], return_hydra_config=True)
    return cfg.hydra.launcher


def test_joblib_local(app_dir):
    cfg = launcher(app_dir, "joblib_local")
    assert cfg._target_.endswith("JoblibLauncher")
    assert cfg.n_jobs == 2 and cfg.prefer == "processes"


def test_local_submitit(app_dir):
    cfg = launcher(app_dir, "local_submitit")
    assert cfg._target_.endswith("submitit_launcher.LocalLauncher")
    assert cfg.timeout_min == 60 and cfg.tasks_per_node == 1


def test_slurm_fields_and_overrides(app_dir):
    cfg = launcher(app_dir, "slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30")
    assert cfg._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (cfg.partition, cfg.timeout_min, cfg.gpus_per_node, cfg.cpus_per_task, cfg.mem_gb) == ("gpu", 30, 1, 8, 64)
    assert cfg.gpus_per_task is None


def test_slurm_sbatch_script(app_dir, tmp_path, monkeypatch):
    """Builds the executor the way the plugin does and checks the #SBATCH lines (a fake srun on PATH)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")

    params = OmegaConf.to_container(launcher(app_dir, "slurm", "hydra.launcher.partition=gpu"), resolve=False)
    params.pop("_target_")
    params.pop("submitit_folder")
    params["name"] = "bench"
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path / "sub",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    script = executor._executor._make_submission_file_text("python -m bench", "uid")
    for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=64GB", "--time=120"):
        assert f"#SBATCH {line}" in script, script


@pytest.mark.slow
@pytest.mark.parametrize("name", ["joblib_local", "local_submitit"])
def test_multirun_runs_every_job(app_dir, name):
    sweep = app_dir / "multirun"
    proc = subprocess.run([sys.executable, "app.py", "-m", "x=1,2", f"hydra/launcher={name}",
                           f"hydra.sweep.dir={sweep}"], cwd=app_dir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0", "1"]


def test_bench_sweep_through_submitit_local(tmp_path):
    """The cluster path end to end: the harness's own sweep, each job submitted by submitit's local
    executor (as Slurm would run it), each writing its own results."""
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "-m", "hydra/launcher=local_submitit", f"results_dir={tmp_path}",
         "scenario=generation", "model=tiny_mamba,tiny_llama", "model.vocab_size=512", "scenario.new_tokens=8",
         "scenario.window=4",
         "scenario.repeats=1", "scenario.warmup_tokens=0", "scenario.progress=false", "isolate=false"],
        cwd=repo, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(tmp_path.glob("multirun/smoke/*/results.parquet"))
    assert len(runs) == 2, proc.stderr[-3000:]
    assert (tmp_path / "multirun" / "smoke" / ".submitit").is_dir()  # submitted, not run in-process
