"""Math answer grading (falcon_h1r.eval.math) and the sample metrics (falcon_h1r.eval.metrics)."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from falcon_h1r.eval.math import equivalent, extract_boxed_answer, is_correct, strip_thinking
from falcon_h1r.eval.metrics import majority_index, pass_at_k, sample_metrics


def test_strip_thinking():
    assert strip_thinking("<think>a</think>\n\nfinal") == "final"
    assert strip_thinking("<think>a</think> x </think> y") == "y"  # the last </think> counts
    assert strip_thinking("<think>never closed \\boxed{3}") == ""  # out of budget inside the reasoning
    assert strip_thinking("plain answer 7 ") == "plain answer 7"
    assert strip_thinking("reasoning without opening tag</think>42") == "42"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\sqrt{\\frac{a}{b}}}", "\\sqrt{\\frac{a}{b}}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are literal set braces
        ("\\fbox{12}", "12"),
        ("answer \\boxed 5.", "5"),
        ("\\boxed{3} and a truncated \\boxed{\\frac{1}{", "3"),  # an unbalanced last box is skipped
        ("no box here: 17", None),
        ("<think>\\boxed{9}</think> the answer is 8", None),  # boxes inside the thinking do not count
        ("<think>\\boxed{9}</think> \\boxed{8}", "8"),
    ],
)
def test_extract_boxed_answer(text, expected):
    assert extract_boxed_answer(text) == expected


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("<think>x</think>The answer is \\boxed{\\frac{1}{2}}", "0.5", True),
        ("\\boxed{0.5}", "\\frac{1}{2}", True),
        ("\\boxed{\\dfrac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}", True),
        ("\\boxed{1{,}000}", "1000", True),
        ("\\boxed{50\\%}", "\\frac{1}{2}", True),
        ("\\boxed{(1,2)}", "(1, 2)", True),
        ("\\boxed{x = 3}", "3", True),
        ("The final answer is $204$.", "204", True),  # no box: math-verify's own extraction
        ("\\boxed{204}", "204.0", True),
        ("\\boxed{3}", "4", False),
        ("\\boxed{\\frac{1}{3}}", "0.33", False),
        ("<think>\\boxed{42}</think>I am not sure.", "42", False),
        ("<think>long reasoning \\boxed{42}", "42", False),  # unfinished thinking never counts
        ("", "1", False),
    ],
)
def test_is_correct_formats(response, gold, expected):
    assert is_correct(response, gold) is expected


def test_equivalent():
    assert equivalent("1/2", "0.5")
    assert equivalent("\\frac{3}{6}", "\\frac12")
    assert equivalent("2\\sqrt{2}", "\\sqrt{8}")
    assert not equivalent("1/2", "0.6")
    with pytest.raises(TypeError, match="two strings"):
        is_correct(None, "1")


CASES = [
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("<think>\\boxed{3}</think>\\boxed{4}", "4"),
    ("\\boxed{7}", "8"),
    ("<think>unfinished", "1"),
]


def test_off_main_thread_matches_main_thread():
    """math-verify's SIGALRM timeout is main-thread only; other threads go through grader subprocesses."""
    on_main = [is_correct(r, g) for r, g in CASES] + [equivalent("1/2", "0.5")]
    assert on_main == [True, True, False, False, True]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(is_correct, r, g) for r, g in CASES] + [pool.submit(equivalent, "1/2", "0.5")]
        assert [f.result(timeout=120) for f in futures] == on_main


def test_pathological_answer_is_bounded_on_any_thread():
    """A tower of powers cannot be compared in time: graded False within the limit, never an exception."""
    response, gold = "\\boxed{9^{9^{9^{9}}}}", "1"
    start = time.monotonic()
    assert is_correct(response, gold, timeout=1) is False
    assert time.monotonic() - start < 30
    out = []
    thread = threading.Thread(target=lambda: out.append(is_correct(response, gold, timeout=1)))
    start = time.monotonic()
    thread.start()
    thread.join(timeout=120)
    assert out == [False]
    assert time.monotonic() - start < 60


def test_pass_at_k_matches_enumeration():
    """The unbiased estimator equals the fraction of k-subsets of the n samples with a correct one."""
    for n, c in [(5, 0), (5, 1), (5, 3), (6, 6), (8, 2)]:
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_majority_vote_groups_equivalent_answers():
    answers = ["0.5", "3", "\\frac{1}{2}", None, "3", "1/2"]
    # "0.5", "\frac{1}{2}", "1/2" form one group of three; "3" has two.
    assert majority_index(answers, same=equivalent) == 0
    assert majority_index(answers) == 1  # without equivalence, "3" (two exact copies) wins
    assert majority_index([None, None]) is None
    assert majority_index(["2", "5"]) == 0  # ties go to the answer seen first


def test_sample_metrics():
    m = sample_metrics([True, False, False, True], ["1", "2", "2", "1"])
    assert m == {"avg@k": 0.5, "pass@k": 1.0, "maj@k": 1.0}
    m = sample_metrics([False, False, True], ["2", "2", "1"])
    assert m["avg@k"] == pytest.approx(1 / 3) and m["pass@k"] == 1.0 and m["maj@k"] == 0.0
    assert sample_metrics([False]) == {"avg@k": 0.0, "pass@k": 0.0}
