"""Small evaluation tasks that we generate ourselves: no download, answers computed by Python.

- `ssmb_boolean_expressions` (BBH style, generation, exact match): "not ( True and False ) or False" -> "True".
- `ssmb_compare` (multiple choice, 3 options, acc / acc_norm): is a + b greater than, less than or equal to c?
- `ssmb_arithmetic` (multiple choice, 4 options, acc / acc_norm): what is a + b (or a - b)?

The data is deterministic (fixed seed) and shipped as JSONL in bench/evals/tasks/ with a byte-level
BPE tokenizer trained on the same text (for tiny random models). Regenerate both with

    python -m bench.evals.local_tasks

lm-eval needs absolute data paths in its YAML, so `write_lm_eval_tasks(dir)` renders the YAML
files at run time, pointing at the shipped JSONL; the lighteval worker reads the JSONL directly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from bench.evals.normalization import Rule

TASKS_DIR = Path(__file__).parent / "tasks"
TOKENIZER_FILE = TASKS_DIR / "tokenizer.json"
SPLITS = ("train", "test")  # train: few-shot examples; test: scored
SIZES = {"train": 8, "test": 60}
SEED = 1234
COMPARE_CHOICES = ["greater", "less", "equal"]
EOS = "<|endoftext|>"

# The `local` suite: the same Rule machinery as the leaderboard (normalization.py).
LOCAL_RULES = {
    "boolean_expressions": Rule("boolean_expressions", "ssmb_boolean_expressions", ("exact_match",),
                                {"boolean_expressions": ("ssmb_boolean_expressions", None)}),
    "compare": Rule("compare", "ssmb_compare", ("acc_norm",), {"compare": ("ssmb_compare", 3)}),
    "arithmetic": Rule("arithmetic", "ssmb_arithmetic", ("acc_norm",), {"arithmetic": ("ssmb_arithmetic", 4)}),
}
FEWSHOT = {"ssmb_boolean_expressions": 3, "ssmb_compare": 3, "ssmb_arithmetic": 3}


# ----------------------------------------------------------------------------- generators

def _boolean_expression(rng: random.Random, depth: int = 2) -> str:
    """A random expression over True/False with not/and/or and parentheses, as in BBH."""
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(["True", "False"])
    kind = rng.choice(["not", "and", "or"])
    if kind == "not":
        return f"not {_boolean_expression(rng, depth - 1)}"
    left, right = _boolean_expression(rng, depth - 1), _boolean_expression(rng, depth - 1)
    return f"( {left} {kind} {right} )"


def boolean_expressions(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        expr = _boolean_expression(rng)
        while " " not in expr:  # at least one operator
            expr = _boolean_expression(rng)
        rows.append({"input": f"{expr} is", "target": str(eval(expr))})  # our own grammar: eval is safe
    return rows


def compare(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        c = a + b + [1, -1, 0][i % 3] * rng.randint(0, 5)  # keep the three answers balanced
        label = 0 if a + b > c else 1 if a + b < c else 2
        rows.append({"question": f"Is {a} + {b} greater than, less than, or equal to {c}?",
                     "choices": COMPARE_CHOICES, "label": label})
    return rows


def arithmetic(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        op = rng.choice("+-")
        answer = a + b if op == "+" else a - b
        wrong = rng.sample([d for d in range(-5, 6) if d != 0], 3)
        choices = [str(answer + d) for d in [0, *wrong]]
        rng.shuffle(choices)
        rows.append({"question": f"What is {a} {op} {b}?", "choices": choices, "label": choices.index(str(answer))})
    return rows


GENERATORS = {"ssmb_boolean_expressions": boolean_expressions, "ssmb_compare": compare, "ssmb_arithmetic": arithmetic}


def data_file(task: str, split: str, root: Path = TASKS_DIR) -> Path:
    return root / f"{task}.{split}.jsonl"


def write_data(root: Path = TASKS_DIR) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, (task, make) in enumerate(GENERATORS.items()):
        rng = random.Random(SEED + i)
        for split in SPLITS:
            rows = make(rng, SIZES[split])
            data_file(task, split, root).write_text("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- lm-eval YAML

# Prompts follow BBH's "Q: ...\nA:" format; lm-eval adds a space before the target/choice.
_COMMON = """\
dataset_path: json
dataset_kwargs:
  data_files:
    train: {train}
    test: {test}
training_split: train
test_split: test
fewshot_split: train
num_fewshot: {fewshot}
fewshot_config:
  sampler: first_n
metadata:
  version: 1.0
"""
_YAML = {
    "ssmb_boolean_expressions": """\
task: ssmb_boolean_expressions
output_type: generate_until
doc_to_text: "Q: {{{{input}}}}\\nA:"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["\\n", "Q:"]
  do_sample: false
  max_gen_toks: 4
filter_list:
  - name: strip
    filter:
      - function: remove_whitespace
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
""",
    "ssmb_compare": """\
task: ssmb_compare
output_type: multiple_choice
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
""",
}
_YAML["ssmb_arithmetic"] = _YAML["ssmb_compare"].replace("ssmb_compare", "ssmb_arithmetic")


def require_data_file(path: Path, remedy: str) -> None:
    """A task's JSONL file must exist and hold rows: an empty one would score nothing, silently."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: task data missing; {remedy}")
    if not path.read_text().strip():
        raise ValueError(f"{path}: task data file is empty (0 rows); {remedy}")


def write_lm_eval_tasks(out_dir: str | Path, data_root: Path = TASKS_DIR) -> Path:
    """Render the YAML task files into out_dir (absolute data paths); returns the include_path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for task, body in _YAML.items():
        paths = {s: data_file(task, s, data_root).resolve() for s in SPLITS}
        for p in paths.values():
            require_data_file(p, "run `python -m bench.evals.local_tasks`")
        (out_dir / f"{task}.yaml").write_text(body.format() + _COMMON.format(fewshot=FEWSHOT[task], **paths))
    return out_dir


# ----------------------------------------------------------------------------- tokenizer

def _corpus(root: Path = TASKS_DIR) -> list[str]:
    lines = []
    for task in GENERATORS:
        for split in SPLITS:
            for line in data_file(task, split, root).read_text().splitlines():
                row = json.loads(line)
                lines.append(" ".join(str(v) if not isinstance(v, list) else " ".join(v) for v in row.values()))
    return lines + ["Q: A: greater than less than or equal to What is True False not and or"]


def train_tokenizer(root: Path = TASKS_DIR, vocab_size: int = 512):
    """A byte-level BPE tokenizer (exact round trip for any text) trained on the task text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(root), trainer)
    return tok


def local_tokenizer(path: Path = TOKENIZER_FILE):
    """PreTrainedTokenizerFast over the shipped tokenizer.json (trained on the fly if missing).
    Its vocabulary (512) is what tiny test models must use."""
    from transformers import PreTrainedTokenizerFast

    if path.is_file():
        return PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token=EOS, pad_token=EOS)
    return PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(), eos_token=EOS, pad_token=EOS)


if __name__ == "__main__":
    write_data()
    train_tokenizer().save(str(TOKENIZER_FILE))
    print(f"wrote {TASKS_DIR}")
