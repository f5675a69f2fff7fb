"""Dataset cards: a README.md in each local Hub folder declaring its configs and splits, as on the Hub.

With it, `datasets.load_dataset(<folder>, <subset>)` reads the local copy exactly as
`load_dataset(<owner/name>, <subset>)` reads the Hub's: an engine's task needs only its dataset path
changed, its subset name (lm-eval's `dataset_name`, lighteval's `hf_subset`) stays. Split names are
declared, not guessed from file names (`datasets` would take `dev` for `validation`).
"""

from __future__ import annotations

from pathlib import Path

from bench import data

HEADER = "<!-- written by `make data` (bench/data/cards.py) from the files in this folder -->\n"


def _configs(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.iterdir() if p.suffix in data.SUFFIXES)
        if files:
            out[sub.name] = files
    return out


def card_text(folder: Path) -> str:
    """The card of one local Hub folder; MissingData when a subset mixes .parquet and .jsonl."""
    lines = ["---", "configs:"]
    for name, files in _configs(folder).items():
        if len({f.suffix for f in files}) > 1:
            raise data.MissingData(f"{folder / name}: mixes .parquet and .jsonl splits; keep one format "
                                   "per subset (datasets' Dataset.to_parquet converts)")
        lines.append(f"- config_name: {name}")
        lines.append("  data_files:")
        for f in files:
            lines.append(f"  - split: {f.stem}")
            lines.append(f"    path: {name}/{f.name}")
    lines.append("---")
    return "\n".join(lines) + "\n" + HEADER


def write_cards() -> list[Path]:
    """(Re)write the card of every folder under data/hub/ that holds data; returns the folders."""
    root = data.hub_dir()
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _configs(p)) if root.is_dir() else []
    for folder in folders:
        path = folder / "README.md"
        text = card_text(folder)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return folders
