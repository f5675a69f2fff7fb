"""The `ssm-bench` console script: help lists choices, not schemas; bash completion completes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "ssm-bench"


@pytest.fixture(scope="module")
def script():
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} not installed (pip install -e . creates it)")
    return str(SCRIPT)


def test_help_lists_yaml_options_not_schemas(script, tmp_path):
    out = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    listing = out.split("== Config ==")[0]
    groups = dict(line.split(": ", 1) for line in listing.splitlines() if ": " in line)
    assert {"model", "scenario", "hardware", "experiment"} <= set(groups)
    assert "tiny_mamba" in groups["model"] and "generation" in groups["scenario"]
    assert "_schema" not in out  # the typed schemas are not choices
    assert out.startswith("ssm-bench")  # the app's name, not __main__


def test_bash_completion_completes_group_options(script):
    env = {**os.environ, "COMP_LINE": "ssm-bench model=tiny_m"}
    out = subprocess.run([script, "-sc", "query=bash"], capture_output=True, text=True, env=env, check=True).stdout
    assert set(out.split()) == {"model=tiny_mamba", "model=tiny_mistral"}


def test_python_m_bench_is_the_same_entry_point():
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ssm-bench") and "_schema" not in out
