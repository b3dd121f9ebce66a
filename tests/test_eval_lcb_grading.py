"""LiveCodeBench judge: the official comparison semantics on crafted stdin and call-based problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from falcon_h1r.eval.livecodebench import Sandbox, grade, grade_many, outputs_match

FIXTURES = Path(__file__).parent / "fixtures" / "eval" / "lcb_problems.json"


def stdin_tests(*pairs):
    return [{"input": i, "output": o, "testtype": "stdin"} for i, o in pairs]


def call_tests(*pairs):
    return [{"input": i, "output": o, "testtype": "functional"} for i, o in pairs]


@pytest.mark.parametrize(
    ("actual", "expected", "match"),
    [
        ("3\n", "3", True),
        ("3   \n\n", "3\n", True),  # trailing whitespace and blank lines are stripped
        ("  1 2 3  \r\n4\r\n", "1 2 3\n4\n", True),  # \r\n line ends, per-line strip
        ("2.5\n", "2.5000\n", True),  # tokens compared as Decimals
        ("1.0 2\n", "1 2.00\n", True),
        ("1e2\n", "100\n", True),
        ("2.50001\n", "2.5\n", False),  # Decimal equality is exact: no tolerance
        ("1 2\n", "1  2\n", True),  # whitespace-separated tokens
        ("1\n2\n", "1 2\n", False),  # line structure matters
        ("yes\n", "Yes\n", False),
        ("3\n4\n", "3\n", False),
        ("abc 1.0\n", "abc 1\n", False),  # a non-numeric token makes the Decimal fallback fail
        ("", "", True),
    ],
)
def test_outputs_match(actual, expected, match):
    assert outputs_match(actual, expected) is match


def test_stdin_programs():
    tests = stdin_tests(("1 2\n", "3\n"), ("2.5 2.5\n", "5.0\n"))
    right = "a, b = map(float, input().split())\nprint(a + b)"
    assert grade(right, tests).statuses == ["passed", "passed"]  # prints 3.0 for "3": equal as Decimals
    formatted = "a, b = map(float, input().split())\nprint(f'{a + b:.3f}   ')"
    assert grade(formatted, tests).passed
    ints_only = "a, b = map(int, input().split())\nprint(a + b)"
    r = grade(ints_only, tests)
    assert r.statuses == ["passed", "runtime_error"] and not r.passed
    assert "ValueError" in r.details[1]
    wrong = "a, b = map(float, input().split())\nprint(a * b)"
    assert grade(wrong, tests).statuses == ["wrong_answer"]  # judging stops at the first failure
    assert grade(wrong, tests, stop_on_failure=False).statuses == ["wrong_answer", "wrong_answer"]


def test_stdin_program_details():
    tests = stdin_tests(("5\n", "25\n"))
    # the official runner pre-imports common modules and ignores SystemExit
    assert grade("print(gcd(int(input()), 100) ** 2)", tests).passed
    assert grade("import sys\nprint(25)\nsys.exit(1)", tests).passed
    assert grade("if __name__ == '__main__':\n    print(int(input()) ** 2)", tests).passed
    # a top-level name updated through `global` (rejected by the official function-wrapping)
    code = "total = 0\ndef add(x):\n    global total\n    total += x\nadd(int(input()) ** 2)\nprint(total)"
    assert grade(code, tests).passed
    assert grade("def f(:\n  pass", tests).statuses == ["compile_error"]
    assert grade("", tests).statuses == ["compile_error"]
    assert grade("while True: pass", tests, timeout=1).statuses == ["timeout"]
    deep = "import sys\ndef d(n):\n    return 0 if n == 0 else d(n - 1) + 1\nprint(d(20000) + int(input()) + 0 * 25)"
    assert grade(deep, stdin_tests(("5\n", "20005\n"))).passed  # deep recursion does not crash the stack


def test_call_based_programs():
    tests = call_tests(("[2,7,11,15]\n9", "[0, 1]"), ("[3,3]\n6", "[0, 1]"))
    solution = (
        "class Solution:\n"
        "    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"  # List from the official prelude
        "        print('debug output is ignored')\n"
        "        seen = {}\n"
        "        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n"
        "                return [seen[target - x], i]\n"
        "            seen[x] = i\n"
    )
    assert grade(solution, tests, func_name="twoSum").statuses == ["passed", "passed"]
    as_tuple = solution.replace("return [seen[target - x], i]", "return (seen[target - x], i)")
    assert grade(as_tuple, tests, func_name="twoSum").passed  # a returned tuple counts as a list
    module_level = "def twoSum(nums, target):\n    return [0, 1]"  # no Solution class: module function
    assert grade(module_level, tests, func_name="twoSum").passed
    wrong = "class Solution:\n    def twoSum(self, nums, target):\n        return [1, 0]"
    assert grade(wrong, tests, func_name="twoSum").statuses == ["wrong_answer"]
    none = "class Solution:\n    def twoSum(self, nums, target):\n        pass"
    assert grade(none, tests, func_name="twoSum").statuses == ["wrong_answer"]
    missing = "class Solution:\n    def other(self, nums, target):\n        return [0, 1]"
    assert grade(missing, tests, func_name="twoSum").statuses == ["runtime_error"]


def test_call_based_value_semantics():
    """Only the top-level tuple is converted; other types compare exactly as Python `==` does."""
    nested = call_tests(("1", "[[1, 2]]"))
    code = "class Solution:\n    def f(self, x):\n        return {}"
    assert not grade(code.format("[(1, 2)]"), nested, func_name="f").passed  # inner tuple != inner list
    assert grade(code.format("[[1, 2]]"), nested, func_name="f").passed
    assert grade(code.format("True"), call_tests(("1", "1")), func_name="f").passed  # True == 1 in Python
    assert grade(code.format("2.0"), call_tests(("1", "2")), func_name="f").passed
    assert not grade(code.format("{1: 2}"), call_tests(("1", '{"1": 2}')), func_name="f").passed
    assert grade(code.format("'ab'"), call_tests(("1", '"ab"')), func_name="f").passed
    numpy_int = "import numpy as np\nclass Solution:\n    def f(self, x):\n        return np.int64(x) * 3"
    assert grade(numpy_int, call_tests(("4", "12")), func_name="f").passed
    args = "class Solution:\n    def f(self, a, b, c):\n        return [a, b, c]"
    assert grade(args, call_tests(('"x"\n[1]\n{"k": null}', '["x", [1], {"k": null}]')), func_name="f").passed


def test_bad_test_data_gets_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        grade("print(1)", [])
    with pytest.raises(ValueError, match="func_name"):
        grade("print(1)", call_tests(("1", "1")))
    with pytest.raises(ValueError, match="must be JSON"):
        grade("x", call_tests(("not json", "1")), func_name="f")
    with pytest.raises(ValueError, match="testtype"):
        grade("x", [{"input": "1", "output": "1", "testtype": "interactive"}])


def test_fixture_problems_in_parallel():
    """Every reference solution of the fixture problems gets its declared status, judged in parallel."""
    problems = json.loads(FIXTURES.read_text())["problems"]
    jobs, expected = [], []
    for p in problems:
        tests = p["public_tests"] + p["private_tests"]
        for status, code in p["solutions"].items():
            jobs.append({"code": code, "tests": tests, "func_name": p["metadata"].get("func_name")})
            expected.append(status)
    results = grade_many(jobs, max_workers=4)
    assert [("passed" if r.passed else r.statuses[-1]) for r in results] == expected


def test_runs_without_the_uid_switch():
    """The non-root path (no uid switch; NPROC from the user's task count) still judges correctly."""
    sandbox = Sandbox(drop_privileges=False)
    assert grade("print(int(input()) * 2)", stdin_tests(("21", "42")), sandbox=sandbox).passed
