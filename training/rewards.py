"""GRPO reward functions with TRL's signature: ``f(completions, **columns) -> list[float | None]``.

One grader serves the reward and the evaluation metric: math goes through `falcon_h1r.eval.math.is_correct`,
code through `falcon_h1r.eval.livecodebench.grade_response`, the very functions the lm-eval tasks score with
(thinking stripped the same way: the answer is what follows the last `</think>`, and a response still inside
`<think>` has none). A reward returns None for a row it cannot judge (no gold answer / no tests, malformed
tests, a grader error or timeout); TRL turns None into NaN and ignores it.

Threads and processes: math-verify bounds its work with SIGALRM, which only works on a main thread;
`is_correct` grades in-process there and hands other threads' calls to grader subprocesses, and the code judge
runs every program in its own sandboxed subprocess. So these rewards can be called from TRL's async reward
loop, user thread pools, and every `accelerate launch` process alike; they keep no state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from falcon_h1r.eval.answers import THINK_CLOSE, THINK_OPEN
from falcon_h1r.eval.livecodebench import grade_response
from falcon_h1r.eval.math_grading import is_correct

logger = logging.getLogger(__name__)

FORMAT_PENALTY = -1.0


def completion_text(completion: Any) -> str:
    """The assistant text of a completion: plain string or TRL conversational list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        if not isinstance(content, str):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str):
            content = f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{content}"
        parts.append(content)
    return "".join(parts)


def is_well_formed(text: str) -> bool:
    """`<think> reasoning </think> answer`: one think block first, both parts non-empty."""
    body = text.strip()
    if not body.startswith(THINK_OPEN) or body.count(THINK_OPEN) != 1 or body.count(THINK_CLOSE) != 1:
        return False
    reasoning, _, answer = body[len(THINK_OPEN) :].partition(THINK_CLOSE)
    return bool(reasoning.strip()) and bool(answer.strip())


def _judge(job: Callable[..., bool], *args: Any) -> bool | None:
    """Run a grader; None when it cannot judge (malformed tests, a grader crash): never end a training run."""
    try:
        return bool(job(*args))
    except Exception as err:
        logger.warning("reward left unjudged: %s: %s", type(err).__name__, err)
        return None


def _code_job(response: str, tests: list[dict], func_name: str | None, timeout: float) -> bool:
    return grade_response(response, tests, func_name=func_name, timeout=timeout).passed


def _column(kwargs: dict, names: tuple[str, ...], n: int) -> list:
    for name in names:
        if kwargs.get(name) is not None:
            return list(kwargs[name])
    return [None] * n


def math_accuracy_reward(completions: list, answer: list | None = None, **kwargs: Any) -> list[float | None]:
    """1.0 when the final answer matches the gold answer (math-verify), 0.0 otherwise, None without gold."""
    golds = list(answer) if answer is not None else _column(kwargs, ("solution", "ground_truth"), len(completions))
    rewards: list[float | None] = []
    for completion, gold in zip(completions, golds, strict=True):
        if gold is None or str(gold).strip() == "":
            rewards.append(None)
            continue
        ok = _judge(is_correct, completion_text(completion), str(gold))
        rewards.append(None if ok is None else float(ok))
    return rewards


def code_reward(
    completions: list, tests: list | None = None, func_name: list | None = None, timeout: float = 6.0, **kwargs: Any
) -> list[float | None]:
    """1.0 only when the response's program passes every test (`grade_response`: LiveCodeBench semantics, the
    metric's function), 0.0 otherwise, None without tests or with malformed ones."""
    n = len(completions)
    tests = list(tests) if tests is not None else [None] * n
    names = list(func_name) if func_name is not None else [None] * n
    rewards: list[float | None] = []
    for completion, row_tests, name in zip(completions, tests, names, strict=True):
        if isinstance(row_tests, str):
            try:
                row_tests = json.loads(row_tests)
            except json.JSONDecodeError:
                logger.warning("tests column is not JSON; reward left unjudged")
                row_tests = None
        if not row_tests:
            rewards.append(None)
            continue
        ok = _judge(_code_job, completion_text(completion), row_tests, name or None, timeout)
        rewards.append(None if ok is None else float(ok))
    return rewards


def format_reward(completions: list, **kwargs: Any) -> list[float]:
    """0.0 for the `<think>...</think> answer` structure, FORMAT_PENALTY (-1.0) when it is broken."""
    return [0.0 if is_well_formed(completion_text(c)) else FORMAT_PENALTY for c in completions]


REWARD_FUNCS: dict[str, Callable[..., list]] = {
    "math_accuracy": math_accuracy_reward,
    "code": code_reward,
    "format": format_reward,
}


def get_reward_funcs(names: list[str]) -> list[Callable[..., list]]:
    unknown = [n for n in names if n not in REWARD_FUNCS]
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; choose from {sorted(REWARD_FUNCS)}")
    return [REWARD_FUNCS[n] for n in names]
