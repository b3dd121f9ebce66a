"""Answer grouping, confidence filtering and (weighted) majority voting for DeepConf.

Answers that are equivalent (for math: ``falcon_h1r.eval.math.equivalent``, so "1/2" and "0.5" are one
answer) form one group; a group's representative is the first answer seen. Traces with no extractable
answer never vote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from falcon_h1r.inference.confidence import CONFIDENCE_KINDS

Extractor = Callable[[str], "str | None"]
Equivalence = Callable[[str, str], bool]


def math_extractor(text: str) -> str | None:
    """The last ``\\boxed{...}`` of a response (thinking stripped), via the shared math grader."""
    from falcon_h1r.eval.math import extract_boxed_answer

    return extract_boxed_answer(text)


def math_equivalent(a: str, b: str) -> bool:
    """Math equivalence (math-verify), via the shared math grader."""
    from falcon_h1r.eval.math import equivalent

    return equivalent(a, b)


def exact_equivalent(a: str, b: str) -> bool:
    """Equivalence for domains without a semantic comparison (stripped string equality)."""
    return a.strip() == b.strip()


class AnswerGrouper:
    """Maps answers to canonical group representatives, comparing each new answer once per group."""

    def __init__(self, equivalent: Equivalence = math_equivalent):
        self._equivalent = equivalent
        self._canonical: dict[str, str] = {}
        self.groups: list[str] = []

    def canonical(self, answer: str | None) -> str | None:
        if answer is None:
            return None
        if answer in self._canonical:
            return self._canonical[answer]
        for rep in self.groups:
            if answer == rep or self._equivalent(answer, rep):
                self._canonical[answer] = rep
                return rep
        self.groups.append(answer)
        self._canonical[answer] = answer
        return answer


@dataclass(frozen=True)
class Vote:
    """One answer's tally: how many traces voted for it and their summed weight."""

    answer: str
    count: int
    weight: float

    def to_dict(self) -> dict:
        return {"answer": self.answer, "count": self.count, "weight": self.weight}


def tally(answers: Sequence[str | None], weights: Sequence[float] | None = None) -> list[Vote]:
    """Votes per (already canonical) answer, heaviest first; ties keep first-seen order."""
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


def leader_share(votes: Sequence[Vote]) -> float:
    """The leading answer's fraction of the total vote weight (DeepConf's consensus beta); 0 with no votes."""
    total = sum(v.weight for v in votes)
    return votes[0].weight / total if votes and total > 0 else 0.0


def percentile_threshold(confidences: Sequence[float], keep_top_percent: float) -> float:
    """The cut that keeps the top ``keep_top_percent``% of ``confidences``: their (100 - eta)th percentile.

    eta = 10 ("DeepConf-low", aggressive) -> the 90th percentile, so about 10% are at or above it;
    eta = 90 ("DeepConf-high") -> the 10th percentile, so about 90% are kept. Linear interpolation
    (numpy's default), as in the DeepConf reference code.
    """
    if not 0 < keep_top_percent <= 100:
        raise ValueError(f"eta (percent of traces to keep) must be in (0, 100], got {keep_top_percent}")
    values = np.asarray([c for c in confidences if np.isfinite(c)], dtype=np.float64)
    if values.size == 0:
        raise ValueError("no finite trace confidences to set a threshold from (every warm-up trace was empty)")
    return float(np.percentile(values, 100.0 - keep_top_percent))


def filter_top(confidences: Sequence[float], keep_top_percent: float) -> list[bool]:
    """Which traces are kept by 'top eta% by confidence' (ties at the cut are kept)."""
    finite = [c for c in confidences if np.isfinite(c)]
    if not finite:
        return [False] * len(confidences)
    cut = percentile_threshold(finite, keep_top_percent)
    return [bool(np.isfinite(c) and c >= cut) for c in confidences]


def voting_variants(answers: Sequence[str | None], confidences: Sequence[dict[str, float]]) -> dict[str, dict]:
    """Every voting variant over canonical answers and per-trace confidences (dicts of CONFIDENCE_KINDS).

    Keys: ``majority``; ``weighted_<kind>``; ``top10_<kind>`` and ``top90_<kind>`` (filter the top 10% / 90%
    of answering traces by <kind>, then weight by it). Each value: ``answer``, ``votes``, ``n_votes``.
    """
    idx = [i for i, a in enumerate(answers) if a is not None]
    ans = [answers[i] for i in idx]
    out: dict[str, dict] = {}

    def record(name: str, votes: list[Vote]) -> None:
        out[name] = {
            "answer": winner(votes),
            "votes": [v.to_dict() for v in votes],
            "n_votes": sum(v.count for v in votes),
        }

    record("majority", tally(ans))
    for kind in CONFIDENCE_KINDS:
        conf = [confidences[i][kind] for i in idx]
        record(f"weighted_{kind}", tally(ans, conf))
        for eta in (10, 90):
            keep = filter_top(conf, eta)
            record(
                f"top{eta}_{kind}",
                tally([a for a, k in zip(ans, keep) if k], [c for c, k in zip(conf, keep) if k]),
            )
    return out
