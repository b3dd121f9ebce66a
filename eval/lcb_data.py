"""LiveCodeBench code-generation data: the jsonl release files read directly, private tests decoded.

The Hub dataset `livecodebench/code_generation_lite` ships a loading script that current `datasets`
refuses, so the release files (test.jsonl ... test6.jsonl, or parquet copies with the same columns) are
read as they are. A release tag selects files the way the benchmark defines them: `release_vN` is the
cumulative set test.jsonl..testN.jsonl (release_v6: 1055 problems, May 2023 - Apr 2025), `vN` the Nth file
alone, `release_latest` all of them. `start_date` / `end_date` (YYYY-MM-DD, inclusive, compared with the
problem's `contest_date` as the official runner does) cut a contamination window.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

DEFAULT_REPO = "livecodebench/code_generation_lite"
RELEASE_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")
REQUIRED_FIELDS = (
    "question_title",
    "question_content",
    "platform",
    "question_id",
    "contest_id",
    "contest_date",
    "starter_code",
    "difficulty",
    "public_test_cases",
    "private_test_cases",
    "metadata",
)


def release_files(release: str) -> list[str]:
    """File names of a release tag: release_v1..release_v6, release_latest, v1..v6 (one file)."""
    n = len(RELEASE_FILES)
    if release == "release_latest":
        return list(RELEASE_FILES)
    if release.startswith("release_v") and release[len("release_v") :].isdigit():
        k = int(release[len("release_v") :])
        if 1 <= k <= n:
            return list(RELEASE_FILES[:k])
    if release.startswith("v") and release[1:].isdigit() and 1 <= int(release[1:]) <= n:
        return [RELEASE_FILES[int(release[1:]) - 1]]
    raise ValueError(
        f"unknown LiveCodeBench release {release!r}; use release_v1..release_v{n}, release_latest or v1..v{n}"
    )


class _StrOnlyUnpickler(pickle.Unpickler):
    """The private tests are a pickled str: refuse any class lookup (no code runs while decoding)."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from LiveCodeBench private tests")


def decode_tests(raw: str | list, *, field: str = "private_test_cases") -> list[dict]:
    """Test cases from a JSON string, or from base64 -> zlib -> pickle -> JSON string (private tests)."""
    if isinstance(raw, list):
        return _check_tests(raw, field)
    if not isinstance(raw, str):
        raise ValueError(f"{field}: expected a string, got {type(raw).__name__}")
    if not raw.strip():
        return []
    try:
        return _check_tests(json.loads(raw), field)
    except json.JSONDecodeError:
        pass
    try:
        text = _StrOnlyUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(raw.encode("utf-8"))))).load()
        return _check_tests(json.loads(text), field)
    except Exception as exc:
        raise ValueError(
            f"{field}: neither JSON nor base64->zlib->pickle->JSON ({type(exc).__name__}: {exc}); "
            "is this a LiveCodeBench code_generation_lite file?"
        ) from exc


def encode_private_tests(tests: list[dict]) -> str:
    """Inverse of `decode_tests` for private tests (used to write fixtures in the real format)."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode("ascii")


def _check_tests(tests, field: str) -> list[dict]:
    if not isinstance(tests, list):
        raise ValueError(f"{field}: expected a list of test cases, got {type(tests).__name__}")
    for i, t in enumerate(tests):
        if not isinstance(t, dict) or not {"input", "output", "testtype"} <= set(t):
            raise ValueError(f"{field}[{i}]: a test case needs keys input, output, testtype; got {t!r:.200}")
        if t["testtype"] not in ("stdin", "functional"):
            raise ValueError(f"{field}[{i}].testtype must be 'stdin' or 'functional', got {t['testtype']!r}")
    return tests


def problem_tests(problem: dict) -> list[dict]:
    """All tests of a problem (public first, then private), decoded."""
    return decode_tests(problem["public_test_cases"], field="public_test_cases") + decode_tests(
        problem["private_test_cases"]
    )


def func_name(problem: dict) -> str | None:
    """metadata.func_name: set for call-based (LeetCode) problems, absent for stdin ones."""
    meta = problem.get("metadata") or {}
    if isinstance(meta, str):
        meta = json.loads(meta) if meta.strip() else {}
    return meta.get("func_name") or None


def parse_date(value: str, what: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d")
    except ValueError as exc:
        raise ValueError(f"{what} must look like 2024-08-01 (YYYY-MM-DD), got {value!r}") from exc


def _read_records(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: not a JSON line ({exc})") from exc
    return records


def _locate(name: str, data_dir: str | None, repo_id: str, revision: str | None) -> Path:
    stem = name.rsplit(".", 1)[0]
    if data_dir is not None:
        for candidate in (Path(data_dir) / name, Path(data_dir) / f"{stem}.parquet"):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"LiveCodeBench file {name} (or {stem}.parquet) not found in {data_dir}; download it from "
            f"https://huggingface.co/datasets/{repo_id} or choose another release"
        )
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, name, repo_type="dataset", revision=revision))


def load_problems(
    release: str = "release_v6",
    *,
    data_dir: str | None = None,
    files: Iterable[str] | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    repo_id: str = DEFAULT_REPO,
    revision: str | None = None,
) -> list[dict]:
    """Problems of a release (or explicit `files`) from `data_dir`, else from the Hub, date-filtered.

    Each problem keeps the dataset's columns (tests still encoded, so documents stay small) and has
    `metadata` parsed to a dict. Use `problem_tests` / `func_name` to grade it.
    """
    names = list(files) if files is not None else release_files(release)
    start = parse_date(start_date, "start_date") if start_date else None
    end = parse_date(end_date, "end_date") if end_date else None
    problems: list[dict] = []
    for name in names:
        path = _locate(name, data_dir, repo_id, revision)
        for i, rec in enumerate(_read_records(path)):
            missing = [f for f in REQUIRED_FIELDS if f not in rec]
            if missing:
                raise ValueError(f"{path} record {i}: missing LiveCodeBench fields {missing}")
            meta = rec["metadata"]
            rec["metadata"] = json.loads(meta) if isinstance(meta, str) and meta.strip() else (meta or {})
            try:
                date = datetime.fromisoformat(str(rec["contest_date"]))
            except ValueError as exc:
                raise ValueError(f"{path} record {i}: bad contest_date {rec['contest_date']!r}") from exc
            if (start and date < start) or (end and date > end):
                continue
            rec["contest_date"] = date.isoformat()
            problems.append(rec)
    if not problems:
        window = f" between {start_date or 'the start'} and {end_date or 'the end'}" if (start or end) else ""
        raise ValueError(f"no LiveCodeBench problems in {names}{window}; widen the date window or the release")
    return problems


# ----------------------------------------------------------------------------- prompt and extraction
# The benchmark's own wording (LiveCodeBench generic chat prompt), kept verbatim so scores are comparable.
SYSTEM_MESSAGE = (
    "You are an expert Python programmer. You will be given a question (problem specification) and will "
    "generate a correct Python program that matches the specification and passes all tests."
)
FORMAT_WITH_STARTER = (
    "You will use the following starter code to write the solution to the problem and enclose your code "
    "within delimiters."
)
FORMAT_STDIN = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the "
    "sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, "
    "it reads the inputs, runs the algorithm and writes output to STDOUT."
)


def build_prompt(problem: dict) -> str:
    """The user message of the official LiveCodeBench code-generation prompt."""
    parts = [f"### Question:\n{problem['question_content']}\n\n"]
    if problem.get("starter_code"):
        parts.append(f"### Format: {FORMAT_WITH_STARTER}\n```python\n{problem['starter_code']}\n```\n\n")
    else:
        parts.append(f"### Format: {FORMAT_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n")
    parts.append("### Answer: (use the provided format with backticks)\n\n")
    return "".join(parts)


def extract_code(text: str) -> str:
    """The official extraction: the lines between the last two lines that contain a ``` fence ("" if < 2)."""
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1 : fences[-1]])
