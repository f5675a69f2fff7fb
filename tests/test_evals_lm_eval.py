"""lm-eval offline: local tasks, Mamba vs FalconMamba loglikelihood parity, errors, published scores."""

import json
from pathlib import Path

import pytest
import torch
from transformers import FalconMambaConfig, FalconMambaForCausalLM, LlamaConfig, LlamaForCausalLM

from bench.evals.leaderboard import load_model_dir, run_leaderboard
from bench.evals.lm_eval_runner import DatasetNotCachedError, check_v2_data, run_lm_eval
from bench.evals.local_tasks import LOCAL_RULES, local_tokenizer
from bench.evals.published import join_published, load_published
from models.mamba import MambaConfig, MambaLM

VOCAB = 512  # the local tokenizer's vocabulary fits


@pytest.fixture(scope="module")
def tokenizer():
    tok = local_tokenizer()
    assert len(tok) <= VOCAB
    return tok


def _responses(out_dir, task):
    """Per-sample loglikelihoods from lm-eval's sample log."""
    lines = (out_dir / f"samples_{task}.jsonl").read_text().splitlines()
    return [[float(ll) for ll, _greedy in json.loads(line)["filtered_resps"]] for line in lines]


def test_loglikelihood_parity_with_transformers_falcon_mamba(tokenizer, tmp_path):
    """The same weights, loaded as our MambaLM and as transformers' FalconMambaForCausalLM, give the
    same loglikelihoods through lm-eval on a local multiple-choice task."""
    torch.manual_seed(0)
    hf = FalconMambaForCausalLM(FalconMambaConfig(vocab_size=VOCAB, hidden_size=32, state_size=8,
                                                  num_hidden_layers=2, tie_word_embeddings=False)).eval()
    with torch.no_grad():  # transformers' init leaves A rows identical and norms at 1: perturb
        for name, p in hf.named_parameters():
            if name.endswith(("A_log", "norm.weight", "norm_f.weight")):
                p.add_(0.3 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "weights")
    ours = MambaLM.from_pretrained(tmp_path / "weights").eval()
    theirs = FalconMambaForCausalLM.from_pretrained(tmp_path / "weights").eval()
    for name, model in (("ours", ours), ("theirs", theirs)):
        run_lm_eval(model, tokenizer, "local", tmp_path / name, limit=8, batch_size=4,
                    tasks=["compare", "arithmetic"])
    for task in ("ssmb_compare", "ssmb_arithmetic"):
        a, b = _responses(tmp_path / "ours", task), _responses(tmp_path / "theirs", task)
        assert len(a) == 8
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["ssm", "transformer"])
def test_full_local_run(arch, tokenizer, tmp_path):
    torch.manual_seed(0)
    if arch == "ssm":
        model = MambaLM(MambaConfig(vocab_size=VOCAB, hidden_size=32)).eval()
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4,
                                             num_key_value_heads=2)).eval()
    rows = run_leaderboard(model, tokenizer, arch, suite="local", harness="lm_eval", out_dir=tmp_path,
                           limit=5, batch_size=5)
    by = {(r["task"], r["subtask"]): r for r in rows}
    assert set(by) == {(t, s) for t in LOCAL_RULES for s in ("all", t)} | {("average", "all")}
    for task in LOCAL_RULES:
        row = by[(task, task)]
        assert row["n_samples"] == 5 and 0 <= row["raw"] <= 1 and 0 <= row["normalized"] <= 100
        assert row["unit"] == "score" and row["value"] == row["normalized"] and row["arch"] == arch
        assert row["stderr"] is not None
    compare = by[("compare", "compare")]
    assert compare["normalized"] == pytest.approx(max(0.0, (compare["raw"] - 1 / 3) / (2 / 3)) * 100)
    out = tmp_path / "lm_eval" / "local"
    assert (out / "results.json").is_file() and (out / "samples_ssmb_boolean_expressions.jsonl").is_file()


def test_missing_v2_dataset_in_the_hub_cache_is_a_clear_error(tokenizer, tmp_path, monkeypatch):
    """data=hub, offline: no hub wait; the check runs before lm-eval touches the dataset, and names it."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty_cache")
    with pytest.raises(DatasetNotCachedError, match="SaylorTwift/bbh.*load_dataset"):
        check_v2_data(("bbh",))
    model = MambaLM(MambaConfig(vocab_size=VOCAB, hidden_size=32))
    with pytest.raises(DatasetNotCachedError, match="TIGER-Lab/MMLU-Pro"):
        run_leaderboard(model, tokenizer, "ssm", suite="v2", harness="lm_eval", out_dir=tmp_path, tasks=["mmlu_pro"],
                        data="hub")


BBH_DIR = Path(__file__).resolve().parents[1] / "data" / "bbh"


def _bbh_fixture(root, rows=3):
    """data/hub with the first `rows` real BBH examples of each leaderboard subtask, the Hub's columns."""
    import pandas as pd

    from bench.evals.normalization import BBH_NUM_CHOICES

    for sub in BBH_NUM_CHOICES:
        examples = json.loads((BBH_DIR / f"{sub}.json").read_text())["examples"][:rows]
        out = root / "hub" / "SaylorTwift__bbh" / sub / "test.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(examples)[["input", "target"]].to_parquet(out, index=False)
    return root


def test_missing_local_data_skips_the_task_and_marks_the_suite_partial(tmp_path, monkeypatch, capsys):
    """GPQA is not on disk: one line names the file to provide; BBH runs through lm-eval's own tasks
    on the local copy; every row says the suite is partial and the average names what is missing."""
    import bench.data
    from bench.evals.lm_eval_runner import v2_task_manager, v2_tasks
    from bench.evals.normalization import V2_RULES

    monkeypatch.setattr(bench.data, "DATA_DIR", _bbh_fixture(tmp_path / "data"))
    specs, skipped = v2_tasks({k: V2_RULES[k] for k in ("bbh", "gpqa", "mmlu_pro")}, v2_task_manager())
    assert set(skipped) == {"gpqa", "mmlu_pro"}
    gpqa = tmp_path / "data" / "hub" / "Idavidrein__gpqa" / "gpqa_diamond" / "train.parquet"
    assert str(gpqa) in skipped["gpqa"] and "\n" not in skipped["gpqa"]
    assert "TIGER-Lab__MMLU-Pro" in skipped["mmlu_pro"] and "1 more file" in skipped["mmlu_pro"]
    (items,) = [spec["task"] for spec in specs]  # the engine's task names, only the data moved
    assert {i["task"] for i in items} == {t for t, _ in V2_RULES["bbh"].subtasks.values()}
    assert all(i["dataset_path"] == "parquet" and set(i) == {"task", "dataset_path", "dataset_name", "dataset_kwargs"}
               for i in items)

    torch.manual_seed(0)
    tok = local_tokenizer()
    model = MambaLM(MambaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1)).eval()
    rows = run_leaderboard(model, tok, "ssm", suite="v2", harness="lm_eval", out_dir=tmp_path / "out",
                           tasks=["bbh", "gpqa"], limit=1, batch_size=32)
    assert "lm-eval v2: skipping gpqa: missing data file" in capsys.readouterr().err
    assert all(r["suite_complete"] is False for r in rows)
    average = [r for r in rows if r["task"] == "average"][0]
    assert average["missing_tasks"] == "gpqa"
    bbh = [r for r in rows if r["task"] == "bbh" and r["subtask"] == "all"][0]
    assert average["value"] == bbh["value"] and bbh["n_samples"] == len(V2_RULES["bbh"].subtasks)


def test_missing_local_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no local model weights"):
        load_model_dir(tmp_path / "nowhere", "ssm")


def test_unknown_suite_lists_the_choices(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="runs suites"):
        run_leaderboard(None, tokenizer, "ssm", suite="v1", harness="lm_eval", out_dir=tmp_path)


def test_published_scores_and_join():
    df = load_published()
    assert len(df) == 9 * 7
    falcon = df[(df.model == "Falcon Mamba 7B") & (df.suite == "v2")].set_index("task")["score"]
    assert falcon["ifeval"] == 33.36 and falcon["average"] == 15.04
    assert df[(df.model == "Falcon2-11B") & (df.suite == "v1")].set_index("task")["score"]["gsm8k"] == 53.83
    measured = [{"task": "bbh", "subtask": "all", "normalized": 20.0},
                {"task": "bbh", "subtask": "navigate", "normalized": 1.0}]
    joined = join_published(measured, "v2", model="Falcon Mamba 7B")
    assert len(joined) == 1 and joined["delta"].iloc[0] == pytest.approx(0.12)
    with pytest.raises(ValueError, match="known"):
        join_published(measured, "v2", model="GPT-9")


def test_v2_rules_name_real_lm_eval_tasks():
    """Every group and subtask the normalization reads exists in the installed lm-eval."""
    from pathlib import Path

    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    from bench.evals.normalization import V2_RULES

    manager = TaskManager(include_path=str(Path(lm_eval.tasks.__file__).parent / "leaderboard"),
                          include_defaults=False)
    names = set(manager.all_tasks)
    for rule in V2_RULES.values():
        assert rule.group in names
        assert {task for task, _ in rule.subtasks.values()} <= names


def test_an_empty_task_file_is_named(tmp_path):
    import shutil

    from bench.evals.local_tasks import TASKS_DIR, data_file, write_lm_eval_tasks

    data = tmp_path / "data"
    shutil.copytree(TASKS_DIR, data)
    empty = data_file("ssmb_compare", "test", data)
    empty.write_text("")
    with pytest.raises(ValueError, match=f"{empty}: task data file is empty"):
        write_lm_eval_tasks(tmp_path / "tasks", data)


# ----------------------------------------------------------------------------- HFLM as the oracle

BOS = "<|begin_of_text|>"


def _bos_tokenizer():
    """The local tokenizer with a BOS that it prepends by default, as Llama 3's and Mistral's do."""
    import copy

    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    backend = copy.deepcopy(local_tokenizer().backend_tokenizer)
    backend.add_special_tokens([BOS])
    bos = backend.token_to_id(BOS)
    backend.post_processor = TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                special_tokens=[(BOS, bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    assert tok.encode("1 + 2")[0] == bos and tok.encode("1 + 2", add_special_tokens=False)[0] != bos
    return tok


def _tiny_llama(vocab):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2)).eval()


def _evaluate(lm, tasks, out_dir, limit):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from bench.evals.local_tasks import write_lm_eval_tasks

    manager = TaskManager(include_path=str(write_lm_eval_tasks(out_dir)), include_defaults=False)
    return simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit, log_samples=True,
                           bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                           fewshot_random_seed=0)["samples"]


def test_bos_as_hflm_defaults(tmp_path):
    """With a tokenizer that prepends BOS, our LM scores every request as HFLM does under its defaults
    (BOS on every context, none doubled, BOS as the empty context): same token ids, same
    loglikelihoods, same picks, same greedy generations. Without BOS the loglikelihoods move."""
    from lm_eval.models.huggingface import HFLM

    from bench.evals.lm_eval_model import TorchLM

    tok = _bos_tokenizer()
    model = _tiny_llama(len(tok))
    ours, oracle = TorchLM(model, tok, batch_size=4), HFLM(pretrained=model, tokenizer=tok, batch_size=4)
    assert oracle.add_bos_token is None  # its default: the tokenizer decides
    for text in ("12 + 7 =", BOS + "12 + 7 =", " equal"):
        assert ours.tok_encode(text) == oracle.tok_encode(text), text
        assert ours.tok_encode(text, add_special_tokens=False) == oracle.tok_encode(text, add_special_tokens=False)
    assert ours.prefix_token_id == oracle.prefix_token_id == tok.bos_token_id
    assert ours.max_length == oracle.max_length and ours.max_gen_toks == oracle.max_gen_toks

    tasks = ["ssmb_compare", "ssmb_arithmetic", "ssmb_boolean_expressions"]
    a = _evaluate(ours, tasks, tmp_path / "ours", limit=12)
    b = _evaluate(oracle, tasks, tmp_path / "hflm", limit=12)
    no_bos = _evaluate(TorchLM(model, tok, batch_size=4, add_bos_token=False), tasks[:2], tmp_path / "nobos", limit=12)
    for task in tasks[:2]:
        assert [s["doc_id"] for s in a[task]] == [s["doc_id"] for s in b[task]]
        ll_a = torch.tensor([[float(ll) for ll, _ in s["filtered_resps"]] for s in a[task]])
        ll_b = torch.tensor([[float(ll) for ll, _ in s["filtered_resps"]] for s in b[task]])
        torch.testing.assert_close(ll_a, ll_b, rtol=1e-4, atol=1e-4)
        assert (ll_a.argmax(1) == ll_b.argmax(1)).all()
        assert [s["acc"] for s in a[task]] == [s["acc"] for s in b[task]]
        ll_c = torch.tensor([[float(ll) for ll, _ in s["filtered_resps"]] for s in no_bos[task]])
        assert (ll_c - ll_b).abs().max() > 1e-2  # the check can fail: BOS moves the scores
    gen = "ssmb_boolean_expressions"
    assert [s["filtered_resps"] for s in a[gen]] == [s["filtered_resps"] for s in b[gen]]


def test_math_exact_match_scores_in_this_venv():
    """lm-eval's leaderboard MATH scoring (math_verify on antlr4 4.9.3) gives 1 to a right answer and
    0 to a wrong one: the LaTeX parser works here (had it failed, every answer would score 0)."""
    import importlib.metadata
    import importlib.util

    import lm_eval.tasks

    path = Path(lm_eval.tasks.__file__).parent / "leaderboard" / "math" / "utils.py"
    spec = importlib.util.spec_from_file_location("leaderboard_math_utils", path)
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    doc = {"solution": r"So $\frac{a}{b} = \boxed{-\frac{2}{3}}$.", "answer": r"-\frac{2}{3}"}
    right = r"Final Answer: The final answer is $-\dfrac{2}{3}$. I hope it is correct."
    wrong = r"Final Answer: The final answer is $\frac{3}{2}$. I hope it is correct."
    assert importlib.metadata.version("antlr4-python3-runtime").startswith("4.9")
    assert utils.process_results(doc, [right])["exact_match"] == 1
    assert utils.process_results(doc, [wrong])["exact_match"] == 0


def test_punkt_tables_written_for_nltk(tmp_path, monkeypatch):
    """The converted model's tables, written as punkt_tab files, are read by NLTK's own Punkt: an
    abbreviation does not end a sentence. Before they exist, the message names the file."""
    import bench.data
    from bench.evals import lm_eval_punkt

    monkeypatch.setattr(bench.data, "DATA_DIR", tmp_path)
    assert str(tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english") in lm_eval_punkt.missing()
    source = '''ABBREV_TYPES = frozenset(('dr','p.m'))
SENT_STARTERS = frozenset(('he',))
COLLOCATIONS = frozenset((('##number##','review'),))
NUMERIC_ABBREV_TYPES = frozenset((
))
ORTHO_CONTEXT = {'he':2,'smith':4}
'''
    lm_eval_punkt.write(lm_eval_punkt._tables(source), lm_eval_punkt.model_dir())
    assert lm_eval_punkt.missing() is None
    import nltk
    from nltk.tokenize import PunktTokenizer

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))  # use() prepends data/nltk_data
    lm_eval_punkt.use()
    tokenizer = PunktTokenizer("english")  # NLTK's own lookup and reader of tokenizers/punkt_tab/english
    assert tokenizer._params.abbrev_types == {"dr", "p.m"} and tokenizer._params.ortho_context == {"he": 2, "smith": 4}
    assert tokenizer.tokenize("Dr. Smith left. He came back.") == ["Dr. Smith left.", "He came back."]


def test_mmlu_pro_runs_at_its_5_shots_once_the_validation_split_is_supplied(tmp_path, monkeypatch, capsys):
    """MMLU-Pro's scored test split is on disk but its few-shot validation split is not (it exists
    only on the Hub): the task is skipped, naming that file. A user who saves the validation split
    there gets lm-eval's own leaderboard_mmlu_pro at its 5 shots: the first 5 validation questions
    (the engine's first_n sampler) before each test question. Here a tiny stand-in validation file."""
    import pandas as pd

    import bench.data
    from bench.evals.lm_eval_runner import v2_task_manager, v2_tasks
    from bench.evals.normalization import V2_RULES

    real = bench.data.DATA_DIR / "hub" / "TIGER-Lab__MMLU-Pro" / "default" / "test.parquet"
    if not real.is_file():
        pytest.skip(f"missing data file {real}: run `make data`")
    folder = tmp_path / "data" / "hub" / "TIGER-Lab__MMLU-Pro" / "default"
    folder.mkdir(parents=True)
    test = pd.read_parquet(real).head(3)
    test.to_parquet(folder / "test.parquet", index=False)
    monkeypatch.setattr(bench.data, "DATA_DIR", tmp_path / "data")
    _, skipped = v2_tasks({"mmlu_pro": V2_RULES["mmlu_pro"]}, v2_task_manager())
    assert str(folder / "validation.parquet") in skipped["mmlu_pro"] and "5 shots" in skipped["mmlu_pro"]

    shots = test.head(1).loc[[0] * 6].reset_index(drop=True)  # the Hub's columns; 6 rows, the engine takes 5
    shots["question"] = [f"Stand-in validation question {i}?" for i in range(6)]
    shots["question_id"] = range(6)
    shots.to_parquet(folder / "validation.parquet", index=False)
    specs, skipped = v2_tasks({"mmlu_pro": V2_RULES["mmlu_pro"]}, v2_task_manager())
    assert skipped == {}
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1)).eval()
    rows = run_leaderboard(model, local_tokenizer(), "ssm", suite="v2", harness="lm_eval", out_dir=tmp_path / "out",
                           tasks=["mmlu_pro"], limit=2, batch_size=32)
    assert "skipping" not in capsys.readouterr().err
    by = {(r["task"], r["subtask"]): r for r in rows}
    assert by[("mmlu_pro", "all")]["n_samples"] == 2 and by[("average", "all")]["missing_tasks"] is None
    logs = [json.loads(line) for line in
            (tmp_path / "out" / "lm_eval" / "v2" / "samples_leaderboard_mmlu_pro.jsonl").read_text().splitlines()]
    assert len(logs) == 2
    for log, question in zip(logs, test["question"]):
        prompt = log["arguments"][0][0]  # [context, continuation] per choice
        positions = [prompt.find(f"Stand-in validation question {i}?") for i in range(6)]
        assert positions[5] == -1 and -1 < positions[0] < positions[1] < positions[2] < positions[3] < positions[4]
        assert prompt.index(question) > positions[4]
