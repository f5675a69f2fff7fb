"""notebooks/explore.ipynb runs headless on a report built from the fixture results, and its
jupytext pair notebooks/explore.py has the same cells."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

nbformat = pytest.importorskip("nbformat", reason="pip install nbformat nbclient ipykernel jupytext")
nbclient = pytest.importorskip("nbclient", reason="pip install nbclient ipykernel")
jupytext = pytest.importorskip("jupytext", reason="pip install jupytext")

from bench.report.load import load  # noqa: E402
from report_fixtures import make_results  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_pair_in_sync():
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert cells(jupytext.read(NOTEBOOKS / "explore.py")) == cells(jupytext.read(NOTEBOOKS / "explore.ipynb")), \
        "run: jupytext --sync notebooks/explore.py"


def test_notebook_executes(tmp_path, monkeypatch):
    make_results(tmp_path)
    # The notebook reads only the combined table: write that, not the whole report (no plots to save).
    (tmp_path / "report").mkdir()
    load([tmp_path / "runs", tmp_path / "multirun"]).table().to_parquet(tmp_path / "report" / "all_results.parquet")
    monkeypatch.setenv("SSM_BENCH_REPORT_DIR", str(tmp_path / "report"))
    nb = nbformat.read(NOTEBOOKS / "explore.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5  # throughput, memory, max prompt length, implementation, leaderboard
