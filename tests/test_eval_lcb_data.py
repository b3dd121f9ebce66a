"""LiveCodeBench data: release files with the real schema, private-test decoding, date windows, prompt."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest

from falcon_h1r.eval.lcb_data import (
    RELEASE_FILES,
    build_prompt,
    decode_tests,
    encode_private_tests,
    extract_code,
    func_name,
    load_problems,
    problem_tests,
    release_files,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "lcb_problems.json"


def fixture_problems() -> list[dict]:
    return json.loads(FIXTURES.read_text())["problems"]


def to_record(p: dict) -> dict:
    """A row of livecodebench/code_generation_lite: every column a string, private tests encoded."""
    return {
        "question_title": p["question_title"],
        "question_content": p["question_content"],
        "platform": p["platform"],
        "question_id": p["question_id"],
        "contest_id": p["contest_id"],
        "contest_date": p["contest_date"],
        "starter_code": p["starter_code"],
        "difficulty": p["difficulty"],
        "public_test_cases": json.dumps(p["public_tests"]),
        "private_test_cases": encode_private_tests(p["private_tests"]),
        "metadata": json.dumps(p["metadata"]),
    }


def write_release(directory: Path, fmt: str = "jsonl") -> Path:
    """Spread the fixture problems over test.jsonl .. test6.jsonl by contest date, like the real releases."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[dict]] = {name: [] for name in RELEASE_FILES}
    for p in fixture_problems():
        year = p["contest_date"][:4]
        name = {"2023": "test.jsonl", "2024": "test5.jsonl"}.get(year, "test6.jsonl")
        files[name].append(to_record(p))
    for name, rows in files.items():
        if fmt == "jsonl":
            (directory / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pa.schema([(k, pa.string()) for k in to_record(fixture_problems()[0])])
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), directory / name.replace(".jsonl", ".parquet"))
    return directory


def test_release_files():
    assert release_files("release_v1") == ["test.jsonl"]
    assert release_files("release_v5") == ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl"]
    assert release_files("release_v6") == list(RELEASE_FILES)
    assert release_files("release_latest") == list(RELEASE_FILES)
    assert release_files("v6") == ["test6.jsonl"]
    with pytest.raises(ValueError, match="release_v1..release_v6"):
        release_files("release_v7")


def test_private_tests_round_trip_and_plain_json():
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    encoded = encode_private_tests(tests)
    assert json.loads(pickle.loads(zlib.decompress(base64.b64decode(encoded)))) == tests  # the official layout
    assert decode_tests(encoded) == tests
    assert decode_tests(json.dumps(tests)) == tests  # some rows carry plain JSON
    assert decode_tests("") == []


def test_private_tests_never_unpickle_objects():
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode()
    with pytest.raises(ValueError, match="base64->zlib->pickle->JSON"):
        decode_tests(payload)
    with pytest.raises(ValueError, match="testtype"):
        decode_tests(json.dumps([{"input": "1", "output": "2", "testtype": "interactive"}]))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_load_problems_and_date_window(tmp_path, fmt):
    data = write_release(tmp_path / fmt, fmt)
    everything = load_problems("release_v6", data_dir=str(data))
    assert sorted(p["question_id"] for p in everything) == ["2000A", "3999", "4001", "abc900_a"]
    assert [p["question_id"] for p in load_problems("release_v1", data_dir=str(data))] == ["4001"]
    assert sorted(p["question_id"] for p in load_problems("v6", data_dir=str(data))) == ["2000A", "3999"]
    window = load_problems("release_v6", data_dir=str(data), start_date="2024-08-01", end_date="2025-03-01")
    assert sorted(p["question_id"] for p in window) == ["2000A", "abc900_a"]
    with pytest.raises(ValueError, match="widen the date window"):
        load_problems("release_v6", data_dir=str(data), start_date="2026-01-01")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        load_problems("release_v6", data_dir=str(data), start_date="01/02/2025")

    two_sum = next(p for p in everything if p["question_id"] == "3999")
    assert func_name(two_sum) == "twoSum"
    assert [t["output"] for t in problem_tests(two_sum)] == ["[0, 1]", "[1, 2]", "[0, 1]"]
    assert func_name(next(p for p in everything if p["question_id"] == "abc900_a")) is None


def test_missing_files_and_fields_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="test.jsonl"):
        load_problems("release_v1", data_dir=str(tmp_path))
    (tmp_path / "test.jsonl").write_text(json.dumps({"question_title": "x"}) + "\n")
    with pytest.raises(ValueError, match="missing LiveCodeBench fields"):
        load_problems("release_v1", data_dir=str(tmp_path))


def test_official_prompt():
    stdin_problem, call_problem = fixture_problems()[0], fixture_problems()[2]
    prompt = build_prompt(stdin_problem)
    assert prompt.startswith("### Question:\nRead two integers A and B and print A + B.\n\n### Format: Read the inputs")
    assert "```python\n# YOUR CODE HERE\n```\n\n" in prompt
    assert prompt.endswith("### Answer: (use the provided format with backticks)\n\n")
    prompt = build_prompt(call_problem)
    assert "### Format: You will use the following starter code" in prompt
    assert f"```python\n{call_problem['starter_code']}\n```\n\n" in prompt


def test_extract_code_takes_the_last_fenced_block():
    text = "plan\n```python\nprint(1)\n```\nbetter:\n```python\nprint(2)\nprint(3)\n```\n"
    assert extract_code(text) == "print(2)\nprint(3)"
    assert extract_code("```\nx = 1\n```") == "x = 1"
    assert extract_code("no code at all") == ""
    assert extract_code("```python\nunterminated") == ""
    # lines that merely contain ``` count as fences, as in the official extractor
    assert extract_code("a ```python\nprint(4)\n``` b") == "print(4)"
