"""DeepConf's voting: confidence filtering, the consensus share and every voting variant.

Answers are grouped and counted by the package's one vote (`falcon_h1r.eval.answers`: `AnswerGrouper`,
`tally`, `winner`), here weighted by trace confidence. For math, answers are the last ``\\boxed{...}`` after
the thinking and equivalent answers ("1/2" and "0.5", math-verify) form one group; a group's representative
is the first answer seen. Traces with no extractable answer never vote.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from falcon_h1r.eval.answers import AnswerGrouper, Equivalence, Vote, extract_boxed_answer, tally, winner
from falcon_h1r.eval.math_grading import equivalent
from falcon_h1r.inference.confidence import CONFIDENCE_KINDS

__all__ = [
    "AnswerGrouper",
    "Equivalence",
    "Extractor",
    "Vote",
    "exact_equivalent",
    "filter_top",
    "leader_share",
    "math_equivalent",
    "math_extractor",
    "percentile_threshold",
    "tally",
    "voting_variants",
    "winner",
]

Extractor = Callable[[str], "str | None"]

math_extractor: Extractor = extract_boxed_answer  # the last \boxed{} of a response, thinking stripped
math_equivalent: Equivalence = equivalent  # math-verify equivalence (the math grader's)


def exact_equivalent(a: str, b: str) -> bool:
    """Equivalence for domains without a semantic comparison (stripped string equality)."""
    return a.strip() == b.strip()


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
