"""LiveCodeBench: official prompt, code extraction, data loading and a sandboxed judge.

    grade(code, tests, func_name=None, timeout=6.0) -> GradeResult(.passed, .statuses, .details)
    grade_response(response, tests, ...)            -> the same for a model response: `answer_code`, then `grade`
    grade_many(jobs, max_workers=None)              -> list[GradeResult], judged in parallel
    answer_code(response)                           the program a response answers with
    load_problems / problem_tests / func_name       (see lcb_data)
    build_prompt(problem), SYSTEM_MESSAGE, extract_code(text)

Comparison semantics are the official harness's:
- stdin tests: both outputs are stripped and split into lines, each line stripped; the line counts must
  match, and each line must match exactly or, failing that, its whitespace-separated tokens must all be
  equal as Decimals ("1.0" == "1", "0.50" == "0.5").
- call-based tests (`func_name`, LeetCode): each input line is one json-decoded positional argument;
  `Solution()` is instantiated when the source contains `class Solution`; a returned tuple counts as a
  list; the value must `==` the json-decoded expected output.
- each test has `timeout` seconds (default 6); a sample passes only if every test passes. Judging stops at
  the first failing test (as the official runner does), so `statuses` may be shorter than `tests`.
Status per test: passed | wrong_answer | timeout | runtime_error | compile_error (the program does not
compile or no code was found). Output beyond the sandbox's cap is a wrong answer.
Deliberate difference: the program runs as a real `__main__` module in a fresh process per test, rather
than being wrapped into a function inside the judge's process, so valid programs that use `global` at
top level are not rejected.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from falcon_h1r.eval.answers import strip_thinking
from falcon_h1r.eval.lcb_data import (
    SYSTEM_MESSAGE,
    build_prompt,
    decode_tests,
    encode_private_tests,
    extract_code,
    func_name,
    load_problems,
    problem_tests,
    release_files,
)
from falcon_h1r.eval.sandbox import Sandbox, SandboxError, SandboxLimits

__all__ = [
    "GradeResult",
    "SYSTEM_MESSAGE",
    "answer_code",
    "Sandbox",
    "SandboxError",
    "SandboxLimits",
    "build_prompt",
    "decode_tests",
    "default_sandbox",
    "encode_private_tests",
    "extract_code",
    "func_name",
    "grade",
    "grade_many",
    "grade_response",
    "load_problems",
    "outputs_match",
    "problem_tests",
    "release_files",
]

GRADE_STATUSES = ("passed", "wrong_answer", "timeout", "runtime_error", "compile_error")


@dataclass
class GradeResult:
    passed: bool
    statuses: list[str]
    details: list[str] = field(default_factory=list)  # one line per judged test, for humans


_DEFAULT: Sandbox | None = None
_DEFAULT_LOCK = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox used when none is given (limits: `SandboxLimits()` defaults)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Sandbox()
        return _DEFAULT


# ----------------------------------------------------------------------------- comparison
def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def outputs_match(actual: str, expected: str) -> bool:
    """Official stdin comparison: line by line, exact or token-wise equal as Decimals."""
    got, want = _stripped_lines(actual), _stripped_lines(expected)
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g == w:
            continue
        try:
            if [Decimal(t) for t in g.split()] != [Decimal(t) for t in w.split()]:
                return False
        except (InvalidOperation, ValueError):
            return False
    return True


def _values_match(actual: object, expected: object) -> bool:
    try:
        return bool(actual == expected)
    except Exception:
        return False


# ----------------------------------------------------------------------------- grading
def _validate(tests: Sequence[dict], func_name: str | None) -> list[tuple[str, object]]:
    """(stdin text, expected) per test; expected is json-decoded for call-based problems."""
    if not tests:
        raise ValueError("grade: `tests` is empty; a problem needs at least one test case")
    prepared = []
    for i, t in enumerate(tests):
        if not isinstance(t, dict) or "input" not in t or "output" not in t:
            raise ValueError(f"tests[{i}] needs keys 'input' and 'output' (and 'testtype'); got {t!r:.200}")
        if t.get("testtype", "stdin") not in ("stdin", "functional"):
            raise ValueError(f"tests[{i}].testtype must be 'stdin' or 'functional', got {t.get('testtype')!r}")
        if t.get("testtype") == "functional" and not func_name:
            raise ValueError(
                f"tests[{i}] is a functional (call-based) test but func_name is None; pass the problem's "
                "metadata['func_name']"
            )
        if func_name:
            try:
                for line in str(t["input"]).split("\n"):
                    json.loads(line)
                expected = json.loads(t["output"])
            except json.JSONDecodeError as exc:
                raise ValueError(f"tests[{i}]: call-based input lines and output must be JSON ({exc})") from exc
            prepared.append((str(t["input"]), expected))
        else:
            prepared.append((str(t["input"]), str(t["output"])))
    return prepared


def grade(
    code: str,
    tests: Sequence[dict],
    func_name: str | None = None,
    timeout: float = 6.0,
    *,
    sandbox: Sandbox | None = None,
    stop_on_failure: bool = True,
) -> GradeResult:
    """Judge one program on LiveCodeBench-style tests in the sandbox (see the module docstring)."""
    prepared = _validate(tests, func_name)
    if not isinstance(code, str) or not code.strip():
        return GradeResult(False, ["compile_error"], ["no code to run (nothing was extracted from the response)"])
    sandbox = sandbox or default_sandbox()
    statuses: list[str] = []
    details: list[str] = []
    mode = "functional" if func_name else "stdin"
    with sandbox.slot() as slot:
        for i, (stdin, expected) in enumerate(prepared):
            # Leave room for outputs larger than the default cap (a few LiveCodeBench tests print megabytes).
            cap = None if func_name else max(int(sandbox.limits.max_output_mb * 2**20), 4 * len(expected) + 1024)
            run = sandbox.run(
                code, stdin=stdin, mode=mode, func_name=func_name, timeout=timeout, max_output_bytes=cap, slot=slot
            )
            if run.status == "ok":
                if func_name:
                    ok = run.has_value and _values_match(run.value, expected)
                    why = "" if ok else ("no return value" if not run.has_value else f"returned {run.value!r:.200}")
                else:
                    ok = outputs_match(run.stdout.decode("utf-8", "replace"), expected)
                    why = "" if ok else "output differs"
                status = "passed" if ok else "wrong_answer"
            elif run.status == "output_limit":
                status, why = "wrong_answer", run.detail
            else:
                status = run.status
                tail = run.stderr.decode("utf-8", "replace").strip().splitlines()
                why = tail[-1][:200] if status == "runtime_error" and tail else run.detail
            statuses.append(status)
            details.append(f"test {i}: {status}" + (f" ({why})" if why else "") + f" [{run.wall_time:.2f} s]")
            if status == "compile_error" or (stop_on_failure and status != "passed"):
                break
    passed = len(statuses) == len(prepared) and all(s == "passed" for s in statuses)
    return GradeResult(passed, statuses, details)


def answer_code(response: str) -> str:
    """The program a model response answers with: the official extraction (`extract_code`) applied to the
    response's answer part, thinking stripped the one way every grader strips it (`strip_thinking`): after the
    last `</think>`, and nothing at all when `<think>` never closes. A trace cut off inside its reasoning has
    not answered yet, so a program drafted in that reasoning is not its answer ("" is judged compile_error)."""
    return extract_code(strip_thinking(response))


def grade_response(
    response: str,
    tests: Sequence[dict],
    func_name: str | None = None,
    timeout: float = 6.0,
    *,
    sandbox: Sandbox | None = None,
) -> GradeResult:
    """Judge a model response: its `answer_code` on the tests. The GRPO code reward and the LiveCodeBench
    metric are both this function, so the reward is the metric."""
    return grade(answer_code(response), tests, func_name, timeout, sandbox=sandbox)


def grade_many(
    jobs: Iterable[dict],
    *,
    max_workers: int | None = None,
    sandbox: Sandbox | None = None,
) -> list[GradeResult]:
    """Judge many programs or responses in parallel. Each job: {code or response, tests, func_name=None,
    timeout=6.0}; a `response` goes through `grade_response`. Results come back in input order;
    `max_workers` defaults to the number of CPU cores."""
    jobs = list(jobs)
    if not jobs:
        return []
    workers = max(1, min(len(jobs), max_workers or os.cpu_count() or 1))
    sandbox = sandbox or default_sandbox()

    def one(job: dict) -> GradeResult:
        judge = grade_response if "response" in job else grade
        program = job["response"] if "response" in job else job["code"]
        return judge(program, job["tests"], job.get("func_name"), job.get("timeout", 6.0), sandbox=sandbox)

    if workers == 1:
        return [one(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lcb-judge") as pool:
        return list(pool.map(one, jobs))
