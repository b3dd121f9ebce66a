"""Sample-level metrics over k responses to one problem: avg@k, unbiased pass@k, maj@k."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al., 2021)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n (k={k}, n={n}); draw at least k samples")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_index(answers: Sequence[str | None], same: Callable[[str, str], bool] | None = None) -> int | None:
    """Index of a response holding the most frequent answer (None answers do not vote).

    Answers are grouped first by exact string, then groups are merged when `same(a, b)` says two
    representatives are equivalent (e.g. math-verify: "1/2" and "0.5"). Ties go to the group seen first.
    """
    groups: list[list[int]] = []  # indices per group, representative = first member
    by_text: dict[str, int] = {}
    for i, ans in enumerate(answers):
        if ans is None:
            continue
        key = ans.strip()
        if key in by_text:
            groups[by_text[key]].append(i)
            continue
        target = None
        if same is not None:
            for g, members in enumerate(groups):
                if same(answers[members[0]].strip(), key):
                    target = g
                    break
        if target is None:
            groups.append([i])
            target = len(groups) - 1
        else:
            groups[target].append(i)
        by_text[key] = target
    if not groups:
        return None
    best = max(range(len(groups)), key=lambda g: (len(groups[g]), -groups[g][0]))
    return groups[best][0]


def sample_metrics(correct: Sequence[bool], answers: Sequence[str | None] | None = None, same=None) -> dict:
    """avg@k (= pass@1 averaged over the k samples), pass@k (unbiased, k = n) and, with answers, maj@k."""
    n = len(correct)
    if n == 0:
        raise ValueError("no responses to score; the task produced zero samples for a document")
    c = sum(bool(x) for x in correct)
    out = {"avg@k": c / n, "pass@k": pass_at_k(n, c, n)}
    if answers is not None:
        winner = majority_index(answers, same)
        out["maj@k"] = float(winner is not None and bool(correct[winner]))
    return out
