"""GRPO rewards on crafted completions: right, wrong, malformed, unjudgeable; from threads too."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from falcon_h1r.training import rewards


def conv(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


RIGHT = "<think>\n2+3=5. 5*4=20.\n</think>\n\n\\boxed{20}"
WRONG = "<think>\n2+3=5. 5*4=21.\n</think>\n\n\\boxed{21}"
EQUIV = "<think>\nhalf\n</think>\n\nThe answer is \\boxed{\\frac{1}{2}}"
UNFINISHED = "<think>\n2+3=5. 5*4="  # cut off while thinking
NO_THINK = "\\boxed{20}"
BOXED_IN_THINK_ONLY = "<think>\\boxed{20}</think>\n\nI don't know"


def test_math_accuracy_on_crafted_completions():
    completions = [conv(RIGHT), conv(WRONG), conv(EQUIV), conv(UNFINISHED), RIGHT, conv(BOXED_IN_THINK_ONLY)]
    golds = ["20", "20", "0.5", "20", "20", "20"]
    assert rewards.math_accuracy_reward(completions, answer=golds) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    # a row without a gold answer cannot be judged -> None (TRL turns it into NaN and ignores it)
    assert rewards.math_accuracy_reward([conv(RIGHT), conv(RIGHT)], answer=[None, ""]) == [None, None]
    # the gold may come as `solution` (common dataset column)
    assert rewards.math_accuracy_reward([conv(RIGHT)], solution=["20"]) == [1.0]
    # reasoning split out by a response parser is put back
    parsed = [{"role": "assistant", "content": "\\boxed{20}", "reasoning_content": "2+3=5. 5*4=20."}]
    assert rewards.math_accuracy_reward([parsed], answer=["20"]) == [1.0]


def test_format_reward():
    texts = [
        RIGHT,
        WRONG,
        UNFINISHED,
        NO_THINK,
        "<think></think>\n\n20",
        "<think>a</think>",
        "<think>a<think>b</think>c",
    ]
    assert rewards.format_reward([conv(t) for t in texts]) == [0.0, 0.0, -1.0, -1.0, -1.0, -1.0, -1.0]


def test_rewards_from_threads_match_main_thread():
    completions = [conv(RIGHT), conv(WRONG), conv(EQUIV)] * 2
    golds = ["20", "20", "0.5"] * 2
    expected = rewards.math_accuracy_reward(completions, answer=golds)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(rewards.math_accuracy_reward, completions, answer=golds) for _ in range(3)]
        assert [f.result() for f in futures] == [expected] * 3


STDIN_TESTS = [
    {"input": "2 3\n", "output": "5\n", "testtype": "stdin"},
    {"input": "10 -4\n", "output": "6\n", "testtype": "stdin"},
]
GOOD_CODE = "<think>\nadd\n</think>\n\n```python\na, b = map(int, input().split())\nprint(a + b)\n```"
BAD_CODE = "<think>\nadd\n</think>\n\n```python\na, b = map(int, input().split())\nprint(a - b)\n```"


def test_code_reward_with_the_livecodebench_judge():
    out = rewards.code_reward(
        [conv(GOOD_CODE), conv(BAD_CODE), conv("<think>x</think>\n\nno code"), conv(GOOD_CODE), conv(GOOD_CODE)],
        tests=[STDIN_TESTS, STDIN_TESTS, STDIN_TESTS, None, [{"input": "1", "testtype": "stdin"}]],
    )
    # right, wrong, nothing extracted, no tests (unjudgeable), malformed tests (unjudgeable)
    assert out == [1.0, 0.0, 0.0, None, None]


def test_reward_registry():
    assert rewards.get_reward_funcs(["math_accuracy", "format"]) == [
        rewards.math_accuracy_reward,
        rewards.format_reward,
    ]
    with pytest.raises(ValueError, match="unknown reward"):
        rewards.get_reward_funcs(["accuracy"])
