"""Sample-level metrics over k responses to one problem: avg@k, unbiased pass@k, maj@k (the one vote of
`falcon_h1r.eval.answers`)."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

from falcon_h1r.eval.answers import Equivalence, majority_index

__all__ = ["majority_index", "pass_at_k", "sample_metrics"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n (k={k}, n={n}); draw at least k samples")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def sample_metrics(
    correct: Sequence[bool], answers: Sequence[str | None] | None = None, same: Equivalence | None = None
) -> dict:
    """avg@k (= pass@1 averaged over the k samples), pass@k (unbiased, k = n) and, with answers, maj@k: the
    correctness of a response holding the majority answer (answers grouped by `same`, e.g. math equivalence)."""
    n = len(correct)
    if n == 0:
        raise ValueError("no responses to score; the task produced zero samples for a document")
    c = sum(bool(x) for x in correct)
    out = {"avg@k": c / n, "pass@k": pass_at_k(n, c, n)}
    if answers is not None:
        winner = majority_index(answers, same)
        out["maj@k"] = float(winner is not None and bool(correct[winner]))
    return out
