"""Local copies of the Hub datasets that the leaderboard tasks read, laid out for `datasets` offline.

Layout (see data/README.md): one folder per Hub dataset and subset,

    data/hub/<owner>__<name>/<subset or "default">/<split>.parquet   (or .jsonl, for a file a user adds)
    data/hub/<owner>__<name>/README.md                               (its configs and splits, as on the Hub)

with exactly the columns of the Hub dataset, so an engine loads it with the "parquet" (or "json")
builder and its own task definition applies unchanged:

    from bench import data
    datasets.load_dataset(data.hub_path("lighteval/mmlu"), "anatomy")   # as load_dataset("lighteval/mmlu", "anatomy")
    kw = data.load_kwargs("SaylorTwift/bbh", "boolean_expressions")
    # {"path": "parquet", "data_files": {"test": ".../data/hub/SaylorTwift__bbh/boolean_expressions/test.parquet"}}
    datasets.load_dataset(**kw)            # lm-eval: dataset_path=kw["path"], dataset_kwargs={"data_files": ...}

`make data` (python -m bench.data) builds every split that can be had offline; `missing()` lists the
ones absent (GPQA, MuSR, TruthfulQA... or a build not yet run), each with a one-line message saying
which file to provide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.data.catalog import BY_KEY, SPLITS, Split

DATA_DIR = Path(os.environ.get("SSM_BENCH_DATA_DIR") or Path(__file__).resolve().parents[2] / "data")
SUFFIXES = {".parquet": "parquet", ".jsonl": "json"}  # file suffix -> `datasets` builder
MAKE = "`make data`"

__all__ = ["DATA_DIR", "MissingData", "Missing", "Split", "SPLITS", "dataset_dir", "local_path",
           "data_files", "load_kwargs", "hub_path", "missing", "entry"]


class MissingData(FileNotFoundError):
    """A split an engine task needs is not on disk; str() is one line naming the file."""


@dataclass(frozen=True)
class Missing:
    split: Split
    path: Path          # where the file is expected (.parquet; a .jsonl there works too)
    message: str        # one line: the file, the task that needs it, how to provide it


def hub_dir() -> Path:
    return DATA_DIR / "hub"


def dataset_dir(repo: str, subset: str | None = None) -> Path:
    return hub_dir() / repo.replace("/", "__") / (subset or "default")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def entry(repo: str, subset: str | None, split: str) -> Split | None:
    return BY_KEY.get(f"{repo}/{subset or 'default'}/{split}")


def _find(repo: str, subset: str | None, split: str) -> Path | None:
    for suffix in SUFFIXES:
        path = dataset_dir(repo, subset) / f"{split}{suffix}"
        if path.is_file():
            return path
    return None


def _message(repo: str, subset: str | None, split: str) -> str:
    path = dataset_dir(repo, subset) / f"{split}.parquet"
    what = f"{repo}{' ' + subset if subset else ''} {split}"
    e = entry(repo, subset, split)
    if e is not None:
        what += f", read by {e.task}" + (" for its few-shot examples" if e.fewshot else "")
    if e is not None and e.source is None:
        sub = f", subset {subset}" if subset else ""
        how = (f"not obtainable offline, so {MAKE} cannot build it: save split {split} of {repo}{sub} "
               f"from the Hugging Face Hub at that path (.parquet or .jsonl, the Hub's columns), then run {MAKE}"
               + (f"; {e.note}" if e.note else ""))
    else:
        how = f"run {MAKE}"
    return f"missing data file {_shown(path)} ({what}): {how}"


def local_path(repo: str, subset: str | None, split: str) -> Path:
    """The local file of one Hub split; MissingData (one line, naming the file) when absent."""
    path = _find(repo, subset, split)
    if path is None:
        raise MissingData(_message(repo, subset, split))
    return path


def data_files(repo: str, subset: str | None = None, splits: list[str] | tuple[str, ...] | None = None
               ) -> dict[str, str]:
    """split -> file path (str, as `datasets` wants it) for one Hub dataset/subset.

    `splits=None`: every split on disk, after checking that each split `make data` builds is there.
    Named splits must all exist. Raises MissingData naming the first absent file.
    """
    if splits is None:
        for e in SPLITS:
            if e.repo == repo and e.subset == subset and e.source is not None:
                local_path(repo, subset, e.split)
        folder = dataset_dir(repo, subset)
        found = sorted({p.stem for p in folder.iterdir() if p.suffix in SUFFIXES}) if folder.is_dir() else []
        if not found:
            known = [e.split for e in SPLITS if e.repo == repo and e.subset == subset]
            raise MissingData(_message(repo, subset, known[0] if known else "test"))
        splits = found
    return {s: str(local_path(repo, subset, s)) for s in splits}


def load_kwargs(repo: str, subset: str | None = None, splits: list[str] | tuple[str, ...] | None = None
                ) -> dict:
    """Arguments for `datasets.load_dataset(**kw)` reading the local copy: {"path", "data_files"}."""
    files = data_files(repo, subset, splits)
    builders = {SUFFIXES[Path(f).suffix] for f in files.values()}
    if len(builders) != 1:
        raise MissingData(f"{_shown(dataset_dir(repo, subset))}: mixes .parquet and .jsonl splits; "
                          "keep one format per folder")
    return {"path": builders.pop(), "data_files": files}


def hub_path(repo: str, subset: str | None = None, splits: list[str] | tuple[str, ...] | None = None
             ) -> str:
    """The local folder standing in for Hub dataset `repo`: `datasets.load_dataset(hub_path(repo), subset)`
    reads it as the Hub's (lm-eval: `dataset_path`; lighteval: `hf_repo`; the subset name unchanged).

    Checks the folder's card (written by `make data`) and, for `subset` (every subset when None), the
    splits as `data_files` does.
    """
    subsets = {subset} if subset is not None else {e.subset for e in SPLITS if e.repo == repo}
    for sub in sorted(subsets, key=str):
        data_files(repo, sub, splits)
    folder = hub_dir() / repo.replace("/", "__")
    if not (folder / "README.md").is_file():
        raise MissingData(f"missing dataset card {_shown(folder / 'README.md')} ({repo}): run {MAKE}")
    return str(folder)


def missing(task: str | None = None, repo: str | None = None, subset: str | None = None,
            split: str | None = None, fewshot: bool | None = None) -> list[Missing]:
    """Catalogued splits absent on disk, filtered by engine task name and/or Hub coordinates.

    A task with an absent scored split cannot run; with only its few-shot split absent it cannot run
    at its published number of shots. Callers skip it with `m.message` and mark the suite partial.
    """
    out = []
    for e in SPLITS:
        if ((task is not None and e.task != task) or (repo is not None and e.repo != repo)
                or (subset is not None and e.subset != subset) or (split is not None and e.split != split)
                or (fewshot is not None and e.fewshot != fewshot)):
            continue
        if _find(e.repo, e.subset, e.split) is None:
            out.append(Missing(e, dataset_dir(e.repo, e.subset) / f"{e.split}.parquet",
                               _message(e.repo, e.subset, e.split)))
    return out
