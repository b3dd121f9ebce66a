"""Our lm-eval tasks end to end: fixture files with the real datasets' schemas, lm-eval's own pipeline.

- In process, with a canned-response LM (lm-eval's model interface, not our code): the scores our hooks
  give to known responses, through lm-eval's filters, repeats and aggregation.
- The lm-eval CLI (`python -m lm_eval --include_path ...`) on the embedded tiny model: every task runs with
  the chat template applied and writes lm-eval's results JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.tasks import TaskManager
from test_eval_lcb_data import fixture_problems, write_release

from falcon_h1r.eval import tasks_dir

MATH_ROWS = [
    {"problem": "Compute $1/4 + 1/4$.", "answer": "\\frac{1}{2}"},
    {"problem": "How many primes are below 10?", "answer": "4"},
]
GPQA_ROWS = [
    {
        "Question": "Which particle carries the electromagnetic force?",
        "Correct Answer": "photon",
        "Incorrect Answer 1": "gluon",
        "Incorrect Answer 2": "W boson",
        "Incorrect Answer 3": "graviton",
        "Subdomain": "Physics",
        "Record ID": "rec1",
    },
    {
        "Question": "What is the chemical symbol of sodium?",
        "Correct Answer": "Na",
        "Incorrect Answer 1": "So",
        "Incorrect Answer 2": "Sd",
        "Incorrect Answer 3": "S",
        "Subdomain": "Chemistry",
        "Record ID": "rec2",
    },
]
ARC_ROWS = [
    {
        "id": "arc1",
        "question": "Which is a mammal?",
        "choices": {"text": ["shark", "whale", "trout", "eel"], "label": ["A", "B", "C", "D"]},
        "answerKey": "B",
    },
    {
        "id": "arc2",
        "question": "Water boils at sea level at",
        "choices": {"text": ["50 C", "75 C", "100 C"], "label": ["1", "2", "3"]},
        "answerKey": "3",
    },
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _override(include_dir: Path, task: str, extra: str) -> None:
    (include_dir / f"{task}.yaml").write_text(
        f"include: {tasks_dir() / (task + '.yaml')}\ntask: {task}\n{extra}", encoding="utf-8"
    )


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Data files in the real schemas + task YAMLs that point our tasks at them (same task names)."""
    root = tmp_path_factory.mktemp("eval_fixtures")
    include = root / "tasks"
    include.mkdir()
    aime24 = _jsonl(
        root / "aime24.jsonl",
        [{"id": i, "solution": "...", "url": "u", "year": 2024, **r} for i, r in enumerate(MATH_ROWS)],
    )
    math500 = _jsonl(
        root / "math500.jsonl",
        [
            {"solution": "...", "subject": "Algebra", "level": 1, "unique_id": f"t/{i}.json", **r}
            for i, r in enumerate(MATH_ROWS)
        ],
    )
    import pyarrow as pa
    import pyarrow.parquet as pq

    arena = [
        {"problem_idx": i + 1, "problem": r["problem"], "answer": r["answer"], "problem_type": ["Algebra"]}
        for i, r in enumerate(MATH_ROWS)
    ]
    pq.write_table(pa.Table.from_pylist(arena), root / "arena.parquet")
    import csv

    with (root / "gpqa_diamond.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(GPQA_ROWS[0]))
        writer.writeheader()
        writer.writerows(GPQA_ROWS)
    arc = _jsonl(root / "arc.jsonl", ARC_ROWS)
    lcb_dir = write_release(root / "lcb")

    _override(
        include, "falcon_h1r_aime24", f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    train: {aime24}\n"
    )
    for task in ("falcon_h1r_aime25", "falcon_h1r_hmmt25"):
        _override(
            include,
            task,
            f"dataset_path: parquet\ndataset_kwargs:\n  data_files:\n    train: {root / 'arena.parquet'}\n",
        )
    _override(
        include, "falcon_h1r_math500", f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {math500}\n"
    )
    _override(
        include,
        "falcon_h1r_gpqa_diamond",
        f"dataset_path: csv\ndataset_name: null\ndataset_kwargs:\n  data_files:\n    train: {root / 'gpqa_diamond.csv'}\n",
    )
    _override(
        include,
        "falcon_h1r_arc_easy",
        f"dataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n    test: {arc}\n",
    )
    return {"root": root, "include": include, "lcb_dir": lcb_dir}


class CannedLM(LM):
    """Answers generate_until requests with `respond(doc, sample_index)`; records what it was asked."""

    def __init__(self, respond):
        super().__init__()
        self.respond = respond
        self.requests = []

    def generate_until(self, requests, disable_tqdm: bool = False):
        seen: Counter = Counter()
        out = []
        for req in requests:
            seen[id(req)] += 1
            self.requests.append(req)
            out.append(self.respond(req.doc, seen[id(req)] - 1))
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def manager(include: Path | None = None, metadata: dict | None = None) -> TaskManager:
    """Our tasks (+ fixture overrides) only: indexing lm-eval's ~15k stock tasks takes tens of seconds."""
    paths = [str(tasks_dir())] + ([str(include)] if include else [])
    return TaskManager(include_path=paths, include_defaults=False, metadata=metadata or {})


def evaluate(fixtures, tasks, respond, metadata=None, configure=None, **kwargs):
    tm = manager(fixtures["include"], metadata)
    loaded = tm.load(tasks)
    if configure is not None:
        configure(loaded["tasks"])
    lm = CannedLM(respond)
    results = simple_evaluate(
        model=lm, tasks=list(loaded["tasks"].values()), task_manager=tm, confirm_run_unsafe_code=True, **kwargs
    )
    return results, lm


def metric(results, task, name, flt="all_samples"):
    return results["results"][task][f"{name},{flt}"]


def test_math_task_scores_known_responses(fixtures):
    answers = {  # per problem, 4 samples: correct / equivalent form / wrong / unfinished thinking
        "\\frac{1}{2}": [
            "<think>1/4+1/4</think>\\boxed{\\frac{1}{2}}",
            "\\boxed{0.5}",
            "\\boxed{1}",
            "<think>\\boxed{0.5}",
        ],
        "4": ["\\boxed{5}", "<think>2,3,5,7</think>\\boxed{5}", "\\boxed{4}", "\\boxed{6}"],
    }

    def configure(tasks):
        tasks["falcon_h1r_aime24"].set_config(key="repeats", value=4)

    results, lm = evaluate(
        fixtures, ["falcon_h1r_aime24"], lambda doc, i: answers[doc["answer"]][i], configure=configure
    )
    assert metric(results, "falcon_h1r_aime24", "avg@k") == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert metric(results, "falcon_h1r_aime24", "pass@k") == 1.0
    assert metric(results, "falcon_h1r_aime24", "maj@k") == 0.5  # problem 2's majority answer is the wrong 5
    assert len(lm.requests) == 8
    context, gen_kwargs = lm.requests[0].args
    assert context.startswith("Compute $1/4 + 1/4$.") and "\\boxed{}" in context
    assert gen_kwargs["until"] == [] and gen_kwargs["do_sample"] is True
    assert (gen_kwargs["temperature"], gen_kwargs["top_p"], gen_kwargs["max_gen_toks"]) == (0.6, 0.95, 65536)


def test_all_math_tasks_load_their_real_schemas(fixtures):
    tm = manager(fixtures["include"])
    protocol = {"falcon_h1r_aime24": 16, "falcon_h1r_aime25": 16, "falcon_h1r_hmmt25": 16, "falcon_h1r_math500": 1}
    loaded = tm.load(list(protocol))["tasks"]
    for name, repeats in protocol.items():
        task = loaded[name]
        assert task.config.repeats == repeats
        docs = list(task.eval_docs)
        assert [str(task.doc_to_target(d)) for d in docs] == ["\\frac{1}{2}", "4"]
    assert loaded["falcon_h1r_math500"].config.generation_kwargs["max_gen_toks"] == 32768


def test_multiple_choice_tasks(fixtures):
    def respond(doc, i):
        return f"<think>options...</think>\\boxed{{{doc['gold_letter']}}}" if i % 2 == 0 else "Answer: A"

    results, lm = evaluate(fixtures, ["falcon_h1r_gpqa_diamond", "falcon_h1r_arc_easy"], respond)
    docs = {r.doc["question"]: r.doc for r in lm.requests}
    assert docs["Which is a mammal?"]["gold_letter"] == "B"
    assert docs["Water boils at sea level at"]["gold_letter"] == "C"  # numeric labels map by position
    photon = docs["Which particle carries the electromagnetic force?"]
    assert photon["options"][ord(photon["gold_letter"]) - 65] == "photon"
    # GPQA: 5 samples per question, the 3 boxed ones right; "Answer: A" right only where the shuffle put it at A
    gpqa_docs = [docs[g["Question"]] for g in GPQA_ROWS]
    expected = sum((3 + 2 * (d["gold_letter"] == "A")) / 5 for d in gpqa_docs) / len(gpqa_docs)
    assert metric(results, "falcon_h1r_gpqa_diamond", "avg@k") == pytest.approx(expected)
    assert metric(results, "falcon_h1r_gpqa_diamond", "pass@k") == 1.0
    assert metric(results, "falcon_h1r_arc_easy", "avg@k") == 1.0  # one sample each, the boxed one
    again = manager(fixtures["include"]).load(["falcon_h1r_gpqa_diamond"])
    assert [d["options"] for d in again["tasks"]["falcon_h1r_gpqa_diamond"].eval_docs] == [
        docs[g["Question"]]["options"] for g in GPQA_ROWS
    ]  # the shuffle is fixed per question


def test_livecodebench_tasks_judge_extracted_code(fixtures):
    solutions = {p["question_id"]: p["solutions"] for p in fixture_problems()}

    def respond(doc, i):
        sol = solutions[doc["question_id"]]
        fenced = "```python\n{}\n```"
        if i == 0:
            return "<think>plan</think>Here it is:\n" + fenced.format(sol["passed"])
        if i == 1:
            return fenced.format(sol.get("wrong_answer") or sol["runtime_error"])
        return "<think>" + fenced.format(sol["passed"]) + "</think>I could not finish."  # code only in thinking

    meta = {"lcb_data_dir": str(fixtures["lcb_dir"])}
    results, lm = evaluate(fixtures, ["falcon_h1r_lcb_v6"], respond, metadata=meta)
    assert results["n-samples"]["falcon_h1r_lcb_v6"]["effective"] == 4
    assert metric(results, "falcon_h1r_lcb_v6", "avg@k") == pytest.approx(1 / 3)
    assert metric(results, "falcon_h1r_lcb_v6", "pass@k") == 1.0
    verdicts = {
        row["doc"]["question_id"]: [json.loads(v)["statuses"][-1] for v in row["filtered_resps"][0]]
        for row in results["samples"]["falcon_h1r_lcb_v6"]
    }
    assert verdicts["3999"] == ["passed", "wrong_answer", "compile_error"]  # no code after the thinking
    assert verdicts["4001"] == ["passed", "runtime_error", "compile_error"]
    prompt = next(r.args[0] for r in lm.requests if r.doc["question_id"] == "3999")
    assert prompt.startswith("### Question:\n") and "class Solution:" in prompt


def test_livecodebench_releases_and_window(fixtures):
    meta = {"lcb_data_dir": str(fixtures["lcb_dir"])}
    tm = manager(metadata=meta)
    loaded = tm.load(["falcon_h1r_lcb_v5", "falcon_h1r_lcb_v6", "falcon_h1r_lcb_window"])["tasks"]
    ids = {name: sorted(d["question_id"] for d in task.eval_docs) for name, task in loaded.items()}
    assert ids["falcon_h1r_lcb_v5"] == ["4001", "abc900_a"]
    assert ids["falcon_h1r_lcb_v6"] == ["2000A", "3999", "4001", "abc900_a"]
    assert ids["falcon_h1r_lcb_window"] == ["2000A", "3999", "abc900_a"]  # 2024-08-01 .. 2025-05-01
    narrowed = manager(metadata=meta | {"lcb_start_date": "2025-03-01"})
    docs = narrowed.load(["falcon_h1r_lcb_window"])["tasks"]["falcon_h1r_lcb_window"].eval_docs
    assert [d["question_id"] for d in docs] == ["3999"]


def test_arith_task_is_offline(fixtures):
    results, lm = evaluate(
        fixtures,
        ["falcon_h1r_arith"],
        lambda doc, i: f"<think>...</think>\\boxed{{{doc['answer']}}}",
        metadata={"arith_n": 6},
    )
    assert results["n-samples"]["falcon_h1r_arith"]["effective"] == 6
    assert metric(results, "falcon_h1r_arith", "avg@k") == 1.0
    from falcon_h1r.training.synthetic_task import evaluate_expression

    assert all(evaluate_expression(r.doc["question"]) == int(r.doc["answer"]) for r in lm.requests)


def test_reasoning_settings_for_lm_evals_own_tasks(fixtures, tmp_path):
    """gsm8k's strict-match reads 'The answer is N.': a trace with an early guess fools it unless thinking
    is stripped, and its stop strings would cut the reasoning."""
    import argparse

    import lm_eval

    from falcon_h1r.eval.cli import configure_tasks

    stock = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k-cot-zeroshot.yaml"
    data = _jsonl(tmp_path / "gsm8k.jsonl", [{"question": "What is 9 + 9?", "answer": "9 + 9 = 18\n#### 18"}])
    (tmp_path / "gsm8k_cot_zeroshot.yaml").write_text(
        f"include: {stock}\ntask: gsm8k_cot_zeroshot\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    train: {data}\n    test: {data}\n"
    )
    response = "<think>First guess: The answer is 5. Q: check again. 9 + 9 = 18.</think>The answer is 18."
    fx = {"include": tmp_path}
    scores = {}
    for no_reasoning in (False, True):
        args = argparse.Namespace(no_reasoning=no_reasoning, max_gen_toks=1000, samples=None, deepconf=False)
        results, lm = evaluate(
            fx, ["gsm8k_cot_zeroshot"], lambda doc, i: response, configure=lambda t, a=args: configure_tasks(t, a)
        )
        scores[no_reasoning] = metric(results, "gsm8k_cot_zeroshot", "exact_match", "strict-match")
        if not no_reasoning:
            gen = lm.requests[0].args[1]
            assert gen["until"] == [] and gen["temperature"] == 0.6 and gen["top_p"] == 0.95
            assert gen["max_gen_toks"] == 1000
    assert scores == {False: 1.0, True: 0.0}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """The embedded checkpoint (copied: its generation_config.max_new_tokens would override lm-eval's
    per-request budget in a raw `lm_eval` run; `falcon-h1r eval` clears it itself)."""
    import falcon_h1r

    src = falcon_h1r.tiny_model_path()
    if not (src / "config.json").is_file():
        pytest.skip("the embedded tiny model has not been built yet")
    dst = tmp_path_factory.mktemp("tiny") / "model"
    shutil.copytree(src, dst)
    gen = dst / "generation_config.json"
    if gen.is_file():
        cfg = json.loads(gen.read_text())
        cfg.pop("max_new_tokens", None)
        gen.write_text(json.dumps(cfg))
    return dst


def test_lm_eval_cli_runs_every_task_on_the_tiny_model(fixtures, tiny_model, tmp_path):
    include = fixtures["include"]
    for task in ("falcon_h1r_lcb_v5", "falcon_h1r_lcb_v6", "falcon_h1r_lcb_window", "falcon_h1r_arith"):
        _override(include, task, "")
    for path in include.glob("*.yaml"):  # a short protocol: 2 samples per problem
        path.write_text(path.read_text() + "repeats: 2\n")
    tasks = sorted(p.stem for p in include.glob("falcon_h1r_*.yaml"))
    assert len(tasks) == 10
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "lm_eval", "run",
        "--model", "hf",
        "--model_args", f"pretrained={tiny_model},trust_remote_code=True,dtype=float32",
        "--tasks", ",".join(tasks),
        "--include_path", str(include),
        "--apply_chat_template",
        "--limit", "2",
        "--gen_kwargs", "max_gen_toks=6",
        "--batch_size", "16",
        "--device", "cpu",
        "--metadata", json.dumps({"lcb_data_dir": str(fixtures["lcb_dir"]), "arith_n": 4}),
        "--confirm_run_unsafe_code",
        "--log_samples",
        "--output_path", str(out),
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    for task in tasks:
        row = results["results"][task]
        for name in ("avg@k", "pass@k"):
            assert 0.0 <= row[f"{name},all_samples"] <= 1.0
        assert results["n-samples"][task]["effective"] == 2
        assert results["configs"][task]["repeats"] == 2
        samples = [json.loads(line) for line in next(out.rglob(f"samples_{task}_*.jsonl")).read_text().splitlines()]
        prompt = samples[0]["arguments"]["gen_args_0"]["arg_0"]
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
        assert len(samples[0]["resps"][0]) == 2
