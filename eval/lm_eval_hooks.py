"""Python hooks of the lm-eval tasks in `eval/tasks/` (referenced there as `!function falcon_h1r.eval.lm_eval_hooks.X`).

Every task keeps all k = `repeats` responses per document (the `keep_all` filter) and scores them here:
    avg@k   mean correctness over the k samples, i.e. pass@1 averaged over k (the paper's metric)
    pass@k  unbiased pass@k estimator with k = n samples (1 if any sample is correct)
    maj@k   correctness of the majority answer (answers grouped by equivalence), math and multiple choice
Thinking is stripped before anything is extracted or graded.

Task knobs reach the dataset builders through lm-eval metadata (`--metadata '{"lcb_start_date": ...}'` or
`falcon-h1r eval --metadata`): lcb_data_dir, lcb_release, lcb_start_date, lcb_end_date, lcb_timeout,
arith_n, arith_seed. They override the task YAML's own metadata (release, start_date, end_date).
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from falcon_h1r.eval import lcb_data
from falcon_h1r.eval.answers import extract_boxed_answer, strip_thinking
from falcon_h1r.eval.livecodebench import grade_many
from falcon_h1r.eval.math_grading import equivalent, is_correct
from falcon_h1r.eval.metrics import sample_metrics
from falcon_h1r.training import synthetic_task

LETTERS = "ABCDEFGHIJ"


# ----------------------------------------------------------------------------- shared
def keep_all(resps, docs):
    """lm-eval `custom` filter: keep every one of the k responses (the default keeps only the first)."""
    return resps


def _responses(results: list) -> list[str]:
    first = results[0]
    return [str(r) for r in first] if isinstance(first, (list, tuple)) else [str(first)]


# ----------------------------------------------------------------------------- math
def math_results(doc: dict, results: list) -> dict[str, float]:
    """Math tasks (and the synthetic arithmetic task): gold in doc['answer'], graded with math-verify."""
    responses = _responses(results)
    gold = str(doc["answer"]).strip()
    correct = [is_correct(r, gold) for r in responses]
    answers = [extract_boxed_answer(r) for r in responses]
    return sample_metrics(correct, answers, same=equivalent)


# ----------------------------------------------------------------------------- multiple choice
_ANSWER_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*[:\-]?\s*\(?\$?\\?(?:text\{|mathrm\{)?([A-J])\b", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-J])\)?[.)]?\s*$"),
)


def extract_choice(response: str, n_choices: int = 4) -> str | None:
    """The option letter of a response: its last \\boxed{}, else the last "answer is X" / "Answer: X",
    else a reply that is just the letter. Thinking is stripped first."""
    text = strip_thinking(response)
    valid = LETTERS[:n_choices]
    boxed = extract_boxed_answer(text)
    if boxed is not None:
        letter = re.sub(r"\\text\{|\\mathrm\{|[{}()$\s.:]", "", boxed).upper()
        if len(letter) == 1 and letter in valid:
            return letter
    for pattern in _ANSWER_PATTERNS:
        matches = [m.group(1).upper() for m in pattern.finditer(text)]
        matches = [m for m in matches if m in valid]
        if matches:
            return matches[-1]
    return None


def mc_doc_to_text(doc: dict) -> str:
    options = "\n".join(f"{LETTERS[i]}) {opt}" for i, opt in enumerate(doc["options"]))
    return (
        "Answer the following multiple-choice question. Think it through, then give the letter of the "
        "correct option within \\boxed{} (for example \\boxed{A}).\n\n"
        f"{doc['question'].strip()}\n\n{options}"
    )


def mc_results(doc: dict, results: list) -> dict[str, float]:
    responses = _responses(results)
    letters = [extract_choice(r, len(doc["options"])) for r in responses]
    correct = [letter == doc["gold_letter"] for letter in letters]
    return sample_metrics(correct, letters)


def _clean(text: Any) -> str:
    return " ".join(str(text or "").split())


def gpqa_process_docs(dataset):
    """GPQA rows -> question, options (correct answer shuffled in with a per-question fixed seed), gold_letter."""
    import random

    def convert(doc: dict) -> dict:
        options = [_clean(doc[f"Incorrect Answer {i}"]) for i in (1, 2, 3)]
        correct = _clean(doc["Correct Answer"])
        rng = random.Random(zlib.crc32(doc["Question"].encode("utf-8")))
        options.insert(rng.randrange(4), correct)
        return {"question": doc["Question"], "options": options, "gold_letter": LETTERS[options.index(correct)]}

    return dataset.map(convert, remove_columns=list(dataset.column_names))


def arc_process_docs(dataset):
    """ARC rows -> question, options, gold_letter (labels may be A-E or 1-5: position decides the letter)."""

    def convert(doc: dict) -> dict:
        labels = list(doc["choices"]["label"])
        if doc["answerKey"] not in labels:
            raise ValueError(f"ARC item {doc.get('id')}: answerKey {doc['answerKey']!r} not among labels {labels}")
        return {
            "question": doc["question"],
            "options": [str(t) for t in doc["choices"]["text"]],
            "gold_letter": LETTERS[labels.index(doc["answerKey"])],
        }

    return dataset.map(convert, remove_columns=list(dataset.column_names))


# ----------------------------------------------------------------------------- LiveCodeBench
def _meta(kwargs: dict, key: str, task_key: str, default: Any = None) -> Any:
    """A global `lcb_*` metadata override, else the task YAML's own metadata value, else the default."""
    if kwargs.get(key) not in (None, ""):
        return kwargs[key]
    if kwargs.get(task_key) not in (None, ""):
        return kwargs[task_key]
    return default


def lcb_dataset(**kwargs):
    """lm-eval `custom_dataset`: LiveCodeBench problems of a release and date window, tests still encoded."""
    from datasets import Dataset, DatasetDict

    problems = lcb_data.load_problems(
        _meta(kwargs, "lcb_release", "release", "release_v6"),
        data_dir=kwargs.get("lcb_data_dir") or None,
        start_date=_meta(kwargs, "lcb_start_date", "start_date"),
        end_date=_meta(kwargs, "lcb_end_date", "end_date"),
        repo_id=kwargs.get("lcb_repo_id") or lcb_data.DEFAULT_REPO,
    )
    timeout = float(kwargs.get("lcb_timeout") or 6.0)
    rows = [
        {
            **{k: p[k] for k in lcb_data.REQUIRED_FIELDS if k != "metadata"},
            "metadata": json.dumps(p["metadata"]),
            "grade_timeout": timeout,
        }
        for p in problems
    ]
    for row in rows:  # Arrow needs one type per column; the raw files mix str and other types in places
        for key in ("question_id", "contest_id", "public_test_cases", "private_test_cases", "starter_code"):
            row[key] = "" if row[key] is None else str(row[key])
    return DatasetDict({"test": Dataset.from_list(rows)})


def lcb_doc_to_text(doc: dict) -> str:
    return lcb_data.build_prompt(doc)


def lcb_judge(resps, docs):
    """lm-eval `custom` filter: judge every sample of every problem at once, in parallel across cores
    (process_results only sees one problem at a time). Each response becomes a JSON verdict
    {"passed", "statuses"}; the raw responses stay in the logged samples. Each response is judged by
    `grade_response`, the GRPO code reward's function."""
    resps, docs = [list(r) for r in resps], list(docs)
    jobs, shape = [], []
    for doc, group in zip(docs, resps):
        tests = lcb_data.problem_tests(doc)
        name = lcb_data.func_name(doc)
        timeout = float(doc.get("grade_timeout") or 6.0)
        jobs += [{"response": str(r), "tests": tests, "func_name": name, "timeout": timeout} for r in group]
        shape.append(len(group))
    verdicts = iter(grade_many(jobs))
    return [
        [json.dumps({"passed": v.passed, "statuses": v.statuses}) for v in (next(verdicts) for _ in range(n))]
        for n in shape
    ]


def lcb_results(doc: dict, results: list) -> dict[str, float]:
    """Scores from the verdicts of `lcb_judge` (thinking stripped, code extracted officially, judged)."""
    verdicts = [json.loads(v) for v in _responses(results)]
    return sample_metrics([bool(v["passed"]) for v in verdicts])


# ----------------------------------------------------------------------------- synthetic arithmetic
def arith_dataset(**kwargs):
    """lm-eval `custom_dataset`: the embedded model's synthetic eval split (generated locally, offline)."""
    from datasets import Dataset, DatasetDict

    n = int(kwargs.get("arith_n") or 200)
    seed = kwargs.get("arith_seed")
    rows = synthetic_task.problems("eval", n, None if seed in (None, "") else int(seed))
    return DatasetDict(
        {"test": Dataset.from_list([{"question": r["question"], "answer": str(r["answer"])} for r in rows])}
    )
