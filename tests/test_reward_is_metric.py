"""One grader per kind: the GRPO reward and the lm-eval metric score every response alike (DESIGN.md: the reward is
the metric), for code and for math, including a response cut off inside its `<think>` (no answer, whatever it
drafted there) and one whose text after a first `</think>` differs from the text after the last."""

from __future__ import annotations

import json

import pytest

from falcon_h1r.eval import lm_eval_hooks
from falcon_h1r.training import rewards

TESTS = [
    {"input": "2 3\n", "output": "5\n", "testtype": "stdin"},
    {"input": "10 -4\n", "output": "6\n", "testtype": "stdin"},
]
GOOD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
BAD = "```python\na, b = map(int, input().split())\nprint(a - b)\n```"
CODE_RESPONSES = {
    "answer after the thinking": (f"<think>\nadd them\n</think>\n\n{GOOD}", 1.0),
    "wrong program": (f"<think>\nsubtract?\n</think>\n\n{BAD}", 0.0),
    "no thinking at all": (GOOD, 1.0),
    "cut off inside <think>, a passing program drafted there": (f"<think>\nfirst try:\n{GOOD}\nnow check", 0.0),
    "the last </think> decides": (f"<think>a</think>\n{GOOD}\n<think>b</think>\nno code after all", 0.0),
    "draft in the thinking, answer after it": (f"<think>\n{BAD}\n</think>\n\n{GOOD}", 1.0),
    "no code": ("<think>x</think>\n\nI cannot solve it.", 0.0),
}
MATH_RESPONSES = {
    "boxed after the thinking": ("<think>\n2+3=5. 5*4=20.\n</think>\n\n\\boxed{20}", "20", 1.0),
    "equivalent form": ("<think>half</think>The answer is \\boxed{\\frac{1}{2}}", "0.5", 1.0),
    "wrong": ("<think>5*4=21</think>\\boxed{21}", "20", 0.0),
    "cut off inside <think>, the right box drafted there": ("<think>\nso \\boxed{20} maybe", "20", 0.0),
    "box only inside the thinking": ("<think>\\boxed{20}</think>\n\nI don't know", "20", 0.0),
    "the last </think> decides": ("<think>a</think>\\boxed{20}<think>b</think>\\boxed{7}", "20", 0.0),
    "no thinking at all": ("\\boxed{20}", "20", 1.0),
}


def code_metric(response: str) -> float:
    """avg@k of the LiveCodeBench task for one sample, through the task's own filter and scorer."""
    doc = {"public_test_cases": json.dumps(TESTS), "private_test_cases": "", "metadata": "{}", "grade_timeout": 6}
    (verdicts,) = lm_eval_hooks.lcb_judge([[response]], [doc])
    return lm_eval_hooks.lcb_results(doc, [verdicts])["avg@k"]


@pytest.mark.parametrize("case", sorted(CODE_RESPONSES))
def test_code_reward_is_the_livecodebench_metric(case: str):
    response, expected = CODE_RESPONSES[case]
    reward = rewards.code_reward([[{"role": "assistant", "content": response}]], tests=[TESTS])
    assert reward == [code_metric(response)] == [expected]


@pytest.mark.parametrize("case", sorted(MATH_RESPONSES))
def test_math_reward_is_the_math_metric(case: str):
    response, gold, expected = MATH_RESPONSES[case]
    reward = rewards.math_accuracy_reward([[{"role": "assistant", "content": response}]], answer=[gold])
    metric = lm_eval_hooks.math_results({"answer": gold}, [[response]])["avg@k"]
    assert reward == [metric] == [expected]
