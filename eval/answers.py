"""Answers: the answer part of a response, its boxed answer, and the one majority vote over answers.

    strip_thinking(text)              the answer part: after the last `</think>`; "" when `<think>` never closes
    extract_boxed_answer(response)    last \\boxed{...} of the answer part, or None
    last_boxed(text)                  last \\boxed{...} of `text` as it is
    AnswerGrouper(equivalent=None)    maps each answer to its group's representative (the first seen)
    tally(answers, weights=None)      votes per grouped answer, heaviest first (ties: first seen)
    majority_index(answers, same)     index of a response holding the winning answer

Every vote in the package goes through these: the maj@k metric of the lm-eval tasks, DeepConf (weighted by
confidence) and the embedded model's evaluation. Answers are stripped, then equal strings are one answer, and
with `equivalent` (e.g. `falcon_h1r.eval.math_grading.equivalent`: "1/2" and "0.5") a new answer joins the
first group whose representative it is equivalent to (the representative is the reference). None never votes.

The text helpers are implemented in `_math_core` (which the math grader's worker runs without the package).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from falcon_h1r.eval._math_core import THINK_CLOSE, THINK_OPEN, extract_boxed_answer, last_boxed, strip_thinking

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "AnswerGrouper",
    "Equivalence",
    "Vote",
    "extract_boxed_answer",
    "last_boxed",
    "majority_index",
    "strip_thinking",
    "tally",
    "winner",
]

Equivalence = Callable[[str, str], bool]


class AnswerGrouper:
    """Maps answers to canonical group representatives, comparing each new answer once per group."""

    def __init__(self, equivalent: Equivalence | None = None):
        self._equivalent = equivalent
        self._canonical: dict[str, str] = {}
        self.groups: list[str] = []

    def canonical(self, answer: str | None) -> str | None:
        """The representative of `answer`'s group (a new group when it matches none); None stays None."""
        if answer is None:
            return None
        key = answer.strip()
        if key in self._canonical:
            return self._canonical[key]
        rep = next((g for g in self.groups if self._equivalent is not None and self._equivalent(g, key)), None)
        if rep is None:
            self.groups.append(key)
            rep = key
        self._canonical[key] = rep
        return rep


@dataclass(frozen=True)
class Vote:
    """One answer's tally: how many responses voted for it and their summed weight."""

    answer: str
    count: int
    weight: float

    def to_dict(self) -> dict:
        return {"answer": self.answer, "count": self.count, "weight": self.weight}


def tally(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> list[Vote]:
    """Votes per (already canonical) answer, heaviest first; ties keep first-seen order. Unweighted: counts."""
    weights = [1.0] * len(answers) if weights is None else list(weights)
    if len(weights) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    for answer, weight in zip(answers, weights):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        sums[answer] = sums.get(answer, 0.0) + float(weight)
    votes = [Vote(a, counts[a], sums[a]) for a in counts]
    return sorted(votes, key=lambda v: -v.weight)  # sorted() is stable: ties stay in first-seen order


def winner(votes: Sequence[Vote]) -> str | None:
    return votes[0].answer if votes else None


def majority_index(answers: Sequence[str | None], same: Equivalence | None = None) -> int | None:
    """Index of the first response holding the most frequent answer (grouped as above); None if none answers.
    Ties go to the answer seen first."""
    grouper = AnswerGrouper(same)
    canonical = [grouper.canonical(a) for a in answers]
    top = winner(tally(canonical))
    return None if top is None else canonical.index(top)
