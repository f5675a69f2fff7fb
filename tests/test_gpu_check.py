"""experiment=gpu_check: the GPU checks as ordinary runs, composed and run at tiny sizes on a CPU."""

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench import runner
from bench.precheck import expand
from bench.scenarios import SCENARIOS
from bench.schema import MEASURED
from tests.test_harness import REPO, load

PRESET = REPO / "configs" / "experiment" / "gpu_check.yaml"
CHECKS = OmegaConf.load(PRESET).hydra.sweeper.params["+check"].split(",")
# Tiny stand-ins for the 7B models, and sizes a CPU runs in seconds.
TINY = {"mamba": "tiny_mamba", "llama": "tiny_llama", "kernels": "tiny_mamba", "implementation": "mamba_d64"}
SIZES = {"kernels": ["scenario.check_len=40", "scenario.check_d=32", "scenario.scan_len=64", "scenario.scan_d=32",
                     "scenario.repeats=1"],
         "generation": ["scenario.new_tokens=12", "scenario.window=4", "scenario.warmup_tokens=2",
                        "scenario.progress=false"],
         "implementation": ["scenario.prompt_len=32", "scenario.memory_prompt_len=64", "scenario.decode_tokens=4",
                            "scenario.repeats=1"]}


def tiny(check: str) -> list[str]:
    return ["experiment=gpu_check", f"+check={check}", f"model={TINY[check.split('_')[0]]}", "hardware=cpu",
            "dtype=float32"]


def test_every_check_is_a_job_of_the_preset_and_validates():
    assert [job for job in expand([f"+check={','.join(CHECKS)}"])] == [[f"+check={c}"] for c in CHECKS]
    for check in CHECKS:
        cfg = load(["experiment=gpu_check", f"+check={check}"])
        assert cfg.experiment == "gpu_check" and cfg.dtype == "bfloat16" and cfg.hardware.name == "h200"
        assert cfg.model.name in ("falcon_mamba_7b", "llama_3_1_8b") and cfg.scenario.name in SCENARIOS
    pairings = {c: load(["experiment=gpu_check", f"+check={c}"]).pairing for c in CHECKS if c.endswith(("best", "release"))}
    assert pairings == {"mamba_best": "best", "llama_best": "best", "mamba_release": "release",
                        "llama_release": "release"}


def test_kernels_need_cuda_or_the_interpreter(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cfg = load(tiny("kernels") + SIZES["kernels"] + ["isolate=true"])
    table = runner.run_job(cfg, tmp_path)
    if table["status"].isin(MEASURED).all():  # a CUDA machine
        return
    assert table["status"].tolist() == ["failed"]
    assert "TRITON_INTERPRET=1" in table["reason"].iloc[0] or "not importable" in table["reason"].iloc[0]


@pytest.mark.slow
@pytest.mark.parametrize("check", ["kernels", "implementation", "mamba_best", "mamba_release", "llama_release"])
def test_checks_run_at_tiny_sizes_on_a_cpu(check, tmp_path, monkeypatch):
    """The kernels in Triton's interpreter (a fresh process reads TRITON_INTERPRET at import); the
    rest on the CPU's own paths. llama_best compiles (tests/test_pairing.py covers it); the max-prompt
    checks measure on CUDA only (max_seq_len's own tests cover the search)."""
    if check == "kernels":  # only there: transformers' FalconMamba takes the interpreter for CUDA kernels
        pytest.importorskip("triton")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    cfg = load(tiny(check) + SIZES.get(check, SIZES["generation"]) + ["isolate=true"])
    table = runner.run_job(cfg, tmp_path)
    assert table["status"].isin(MEASURED).all(), table.get("reason")
    if check == "kernels":
        errors = table[table["metric"].str.endswith("_max_rel_err")]
        assert len(errors) == 24 and (errors["value"] <= errors["tolerance"]).all()
        assert set(table[table["metric"] == "scan_time"]["impl"]) == {"triton", "torch_chunked"}
    elif check == "implementation":  # two implementations of one architecture, both eager: no pairing
        assert set(table["pairing"].map(lambda v: None if pd.isna(v) else v)) == {None}
        assert set(table["decode_path"].dropna()) <= {"eager"}
    else:
        assert set(table["pairing"]) == {cfg.pairing}
