"""bench.report on a fixture results tree (tests/report_fixtures.py): every output is written, bad
runs are named and skipped, sections follow the data, and the HTML renders in headless Chromium."""

from __future__ import annotations

import math
import re
import shutil
import subprocess

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from bench.report import write_report  # noqa: E402
from bench.report.__main__ import main  # noqa: E402
from bench.report.plots import PLOTS, roofline_tokens_per_s  # noqa: E402
from bench.report.validate import validate  # noqa: E402
from bench.schema import COLUMNS  # noqa: E402
from report_fixtures import make_results, write_run, generation_rows, _config  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture tree and the report written from it (built once: plotting takes a few seconds)."""
    root = tmp_path_factory.mktemp("results")
    paths = make_results(root)
    report = write_report([root / "runs", root / "multirun", root / "not_there"], root / "report")
    return root, paths, report


def test_writes_every_output(built):
    root, _, report = built
    out = root / "report"
    for name in ("report.md", "report.html", "all_results.csv", "all_results.parquet"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(report.figures) == sorted(PLOTS)  # the fixture has every scenario
    for name in PLOTS:
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
        assert (out / "plots" / f"{name}.svg").read_text().lstrip().startswith("<?xml")


def test_bad_runs_are_named_and_skipped(built):
    root, paths, report = built
    reasons = {s.path: s.reason for s in report.collection.skipped}
    assert set(reasons) == {paths["corrupt"], paths["partial"]}
    assert "results.parquet unreadable" in reasons[paths["corrupt"]]
    assert "no results file" in reasons[paths["partial"]] and "config.yaml" in reasons[paths["partial"]]
    skipped_section = (root / "report" / "report.md").read_text().split("## Skipped runs")[1]
    assert "corrupt" in skipped_section and "partial" in skipped_section
    assert root / "not_there" in report.collection.missing_roots


def test_good_runs_are_all_read(built):
    _, paths, report = built
    read = {r.path for r in report.collection.runs}
    assert read == {paths[k] for k in ("gen_mamba", "gen_llama", "gen_sim", "msl", "impl", "leaderboard")}
    assert not any(".hydra" in str(p) for p in read)  # Hydra's own config.yaml is not a run


def test_combined_table(built):
    root, _, report = built
    df = pd.read_parquet(root / "report" / "all_results.parquet")
    assert list(df.columns[:len(COLUMNS)]) == COLUMNS
    assert {"run_dir", "git_sha", "weights", "bandwidth_gbps", "status"} <= set(df.columns)
    assert set(df["scenario"]) == {"generation", "implementation", "max_seq_len", "leaderboard"}
    unbounded = df[(df["metric"] == "max_prompt_len") & (df["verdict"] == "unbounded")]["value"]
    assert len(unbounded) == 1 and math.isinf(unbounded.iloc[0])
    assert (df["status"] == "failed").sum() == 1
    assert set(df.loc[df["model"] == "llama-160m", "weights"]) >= {"pretrained"}
    csv = pd.read_csv(root / "report" / "all_results.csv")
    assert len(csv) == len(df)


def test_report_sections_and_caveats(built):
    root, _, _ = built
    md = (root / "report" / "report.md").read_text()
    for heading in ("What ran", "Environment", "Caveats", "Generation", "Implementation",
                    "Maximum prompt length", "Leaderboard", "Failed measurements", "Skipped runs"):
        assert f"## {heading}" in md, heading
    assert "0123456789abcdef" in md and "transformers" in md and "4.57.1" in md  # git sha, versions
    assert "**Simulated** rows" in md and "random weights" in md
    assert "dataset piqa not found offline" in md
    for name in PLOTS:
        assert f"(plots/{name}.png)" in md


def test_html_is_self_contained(built):
    root, _, report = built
    html = (root / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(report.figures)
    assert not re.search(r'src="(?!data:)', html)  # no external images, scripts or styles


def test_sections_follow_the_data(tmp_path):
    """Only a generation run: no other scenario's section or plot, and nothing skipped."""
    write_run(tmp_path / "runs" / "g", generation_rows("mamba-130m", "g", lambda s: 100.0, lambda s: 1e9),
              _config("mamba-130m", "generation"))
    report = write_report([tmp_path / "runs"], tmp_path / "report")
    assert sorted(report.figures) == ["generation_memory", "generation_throughput"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Maximum prompt length" not in md and "## Leaderboard" not in md
    assert "None: every run directory found was read." in md


def test_empty_input_still_writes_a_report(tmp_path):
    report = write_report([tmp_path / "nothing"], tmp_path / "report")
    assert report.figures == [] and (tmp_path / "report" / "report.html").exists()


def test_cli_strict(tmp_path, capsys):
    (tmp_path / "runs" / "partial").mkdir(parents=True)
    (tmp_path / "runs" / "partial" / "config.yaml").write_text("model: {}\n")
    args = [str(tmp_path / "runs"), "--out", str(tmp_path / "report")]
    assert main(args) == 0
    assert main(args + ["--strict"]) == 1
    assert "skipped" in capsys.readouterr().err


def _rows(**overrides) -> pd.DataFrame:
    row = {c: None for c in COLUMNS}
    row.update(run_id="r", scenario="generation", model="m", arch="ssm", metric="ttft", value=0.1, unit="s",
               source="measured")
    row.update(overrides)
    return pd.DataFrame([row])


@pytest.mark.parametrize("overrides, message", [
    ({"arch": "rnn"}, "column 'arch' has values ['rnn']"),
    ({"source": "guessed"}, "column 'source'"),
    ({"value": "fast"}, "column 'value' has 1 non-numeric"),
    ({"model": None}, "column 'model' is empty"),
    ({"verdict": "maybe"}, "column 'verdict'"),
])
def test_validation_errors(overrides, message):
    _, errors, _ = validate(_rows(**overrides))
    assert any(message in e for e in errors), errors


def test_validation_missing_columns_and_ok_rows():
    _, errors, _ = validate(_rows().drop(columns=["unit", "step"]))
    assert errors == ["missing required columns: step, unit"]
    df, errors, _ = validate(_rows(value="inf"))
    assert errors == [] and math.isinf(df["value"].iloc[0]) and df["status"].iloc[0] == "ok"


def test_roofline():
    # 1 GB of weights (5e8 fp16 params) at 1000 GB/s: 1000 steps/s; batch 4 makes 4000 tokens/s.
    assert roofline_tokens_per_s(5e8, "float16", 1000) == pytest.approx(1000)
    assert roofline_tokens_per_s(5e8, "torch.float16", 1000, batch_size=4) == pytest.approx(4000)
    assert math.isnan(roofline_tokens_per_s(5e8, "float16", float("nan")))


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(built, tmp_path):
    root, _, _ = built
    shot = tmp_path / "report.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,4000", f"--screenshot={shot}",
           (root / "report" / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=60)
    assert shot.exists(), "chromium wrote no screenshot"
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (4000, 1280)
    # Not a blank page: text and pictures make many distinct colors and a spread of brightness.
    assert image[..., :3].std() > 0.05
