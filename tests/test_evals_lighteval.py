"""lighteval in its own venv: creation (reused when present) and one real run on the local tasks.

Selected with `pytest -m lighteval`; also marked slow (deselected by `make test`): creating
.venv-lighteval takes several minutes, the run itself about a minute on 2 CPU cores.
"""

import pytest
import torch

from bench.evals.leaderboard import run_leaderboard
from bench.evals.lighteval_runner import ensure_venv
from bench.evals.local_tasks import LOCAL_RULES, local_tokenizer
from models.mamba import MambaConfig, MambaLM

pytestmark = [pytest.mark.lighteval, pytest.mark.slow]


def test_lighteval_env_and_local_run(tmp_path):
    python = ensure_venv()  # reuses .venv-lighteval, or runs bench/evals/lighteval_env.sh
    assert python.is_file()
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(vocab_size=512, hidden_size=32)).eval()
    rows = run_leaderboard(model, local_tokenizer(), "ssm", suite="local", harness="lighteval",
                           out_dir=tmp_path, limit=5, batch_size=5)
    by = {(r["task"], r["subtask"]): r for r in rows}
    assert set(by) == {(t, s) for t in LOCAL_RULES for s in ("all", t)} | {("average", "all")}
    for task in LOCAL_RULES:
        row = by[(task, task)]
        assert row["n_samples"] == 5 and 0 <= row["raw"] <= 1 and 0 <= row["normalized"] <= 100
        assert row["harness"] == "lighteval" and row["unit"] == "score"
    assert (tmp_path / "lighteval" / "local" / "lighteval" / "metrics.json").is_file()
