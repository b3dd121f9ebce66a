"""DeepConf's confidence math and voting on hand-computed traces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from falcon_h1r.inference.confidence import (
    ConfidenceTracker,
    group_confidences,
    running_group_confidences,
    token_confidence_from_logprobs,
    token_confidences_from_logits,
    trace_confidence,
)
from falcon_h1r.inference.voting import (
    AnswerGrouper,
    filter_top,
    leader_share,
    math_equivalent,
    math_extractor,
    percentile_threshold,
    tally,
    voting_variants,
    winner,
)


def test_token_confidence_is_minus_mean_of_top_k_logprobs():
    # 25 log-probs; only the 20 largest count
    logprobs = [-0.1, -2.0, -3.0] + [-5.0] * 17 + [-50.0] * 5
    expected = -(-0.1 - 2.0 - 3.0 - 5.0 * 17) / 20
    assert token_confidence_from_logprobs(logprobs) == pytest.approx(expected)
    assert token_confidence_from_logprobs(list(reversed(logprobs))) == pytest.approx(expected)
    # fewer than k given: the mean of what there is
    assert token_confidence_from_logprobs([-1.0, -3.0]) == pytest.approx(2.0)


def test_token_confidence_from_logits_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=g) * 4
    got = token_confidences_from_logits(logits, k=20)
    for row in range(3):
        lp = np.log(np.exp(logits[row].double().numpy()) / np.exp(logits[row].double().numpy()).sum())
        assert got[row].item() == pytest.approx(-np.sort(lp)[-20:].mean(), rel=1e-5)
    # a peaked distribution is more confident than a flat one
    flat, peaked = torch.zeros(1, 50), torch.zeros(1, 50)
    peaked[0, 3] = 30.0
    assert token_confidences_from_logits(peaked) > token_confidences_from_logits(flat)


def test_group_confidences_full_windows_and_short_traces():
    c = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert group_confidences(c, 3).tolist() == pytest.approx([2.0, 3.0, 17 / 3])
    assert group_confidences(c, 5).tolist() == pytest.approx([4.0])
    assert group_confidences(c, 8).tolist() == pytest.approx([4.0])  # shorter than the window: one group
    assert running_group_confidences(c, 3).tolist() == pytest.approx([1.0, 1.5, 2.0, 3.0, 17 / 3])


def test_trace_confidence_lowest_bottom10_tail_mean():
    # 21 tokens, window 2 -> 20 windows; two dips give the two lowest windows
    c = [5.0] * 21
    c[3] = 1.0  # windows (2,3) and (3,4) -> 3.0
    c[10], c[11] = 0.0, 0.0  # windows (9,10)->2.5, (10,11)->0.0, (11,12)->2.5
    tc = trace_confidence(c, window=2)
    assert tc.lowest == pytest.approx(0.0)
    assert tc.bottom10 == pytest.approx((0.0 + 2.5) / 2)  # int(20 * 0.1) = 2 lowest windows
    assert tc.tail == pytest.approx(5.0)
    assert tc.mean == pytest.approx(sum(c) / 21)
    short = trace_confidence([1.0, 3.0], window=4)
    assert (short.lowest, short.bottom10, short.tail, short.mean) == pytest.approx((2.0, 2.0, 2.0, 2.0))
    assert trace_confidence([], window=4).lowest == -math.inf


def test_tracker_matches_offline_measures_at_every_prefix():
    rng = np.random.default_rng(0)
    c = rng.uniform(0.5, 3.0, size=40).tolist()
    for window in (1, 4, 7, 64):
        tracker = ConfidenceTracker(window)
        running = running_group_confidences(c, window)
        for t, value in enumerate(c, start=1):
            tracker.add(value)
            assert tracker.group_confidence == pytest.approx(running[t - 1])
            assert tracker.lowest_group_confidence == pytest.approx(trace_confidence(c[:t], window).lowest)


def test_tracker_stops_only_on_a_full_window_below_threshold_by_default():
    tracker = ConfidenceTracker(window=3, threshold=2.0)
    assert [tracker.add(x) for x in (0.1, 0.1)] == [False, False]  # partial window: reported, not acted on
    assert tracker.group_confidence == pytest.approx(0.1)
    assert tracker.add(0.1) is True
    eager = ConfidenceTracker(window=3, threshold=2.0, min_stop_tokens=1)
    assert eager.add(0.1) is True
    high = ConfidenceTracker(window=3, threshold=2.0)
    assert not any(high.add(x) for x in (3.0, 2.5, 2.1, 2.0, 2.2))  # 2.0 is not below 2.0


def test_percentile_threshold_keeps_the_top_eta_percent_not_the_bottom():
    warmup = [float(x) for x in range(1, 17)]  # 16 warm-up lowest-group confidences
    low = percentile_threshold(warmup, 10)  # DeepConf-low: keep the top 10%
    high = percentile_threshold(warmup, 90)  # DeepConf-high: keep the top 90%
    assert low == pytest.approx(np.percentile(warmup, 90)) == pytest.approx(14.5)
    assert high == pytest.approx(np.percentile(warmup, 10)) == pytest.approx(2.5)
    assert [c for c in warmup if c >= low] == [15.0, 16.0]  # the most confident ~10%
    assert sum(c >= high for c in warmup) == 14
    assert filter_top(warmup, 10) == [c >= 14.5 for c in warmup]
    with pytest.raises(ValueError, match="eta"):
        percentile_threshold(warmup, 0)


def test_tally_weighted_and_consensus_share():
    votes = tally(["a", "b", "a", None, "b", "b"], [1.0, 0.5, 2.0, 9.0, 0.5, 0.5])
    assert [(v.answer, v.count, v.weight) for v in votes] == [("a", 2, 3.0), ("b", 3, 1.5)]
    assert winner(votes) == "a"
    assert leader_share(votes) == pytest.approx(3.0 / 4.5)
    assert winner(tally(["a", "b", "a", None, "b", "b"])) == "b"
    assert winner([]) is None and leader_share([]) == 0.0


def test_voting_variants_disagree_when_confidence_disagrees_with_the_crowd():
    # five confident traces say 7, fifteen unsure ones say 9
    answers = ["7"] * 5 + ["9"] * 15
    conf = [{"lowest": 10.0, "bottom10": 10.0, "tail": 10.0, "mean": 10.0}] * 5 + [
        {"lowest": 1.0, "bottom10": 1.0, "tail": 1.0, "mean": 1.0}
    ] * 15
    v = voting_variants(answers + [None], conf + [conf[0]])
    assert v["majority"]["answer"] == "9" and v["majority"]["n_votes"] == 20
    assert v["weighted_lowest"]["answer"] == "7"  # 50 vs 15
    assert v["top10_tail"]["answer"] == "7" and v["top10_tail"]["n_votes"] == 5  # ties at the cut are kept
    assert v["top90_mean"]["answer"] == "7"
    assert set(v) == {"majority"} | {
        f"{p}_{k}" for p in ("weighted", "top10", "top90") for k in ("lowest", "bottom10", "tail", "mean")
    }


def test_math_grouping_merges_equivalent_answers():
    grouper = AnswerGrouper(math_equivalent)
    assert grouper.canonical("1/2") == "1/2"
    assert grouper.canonical("0.5") == "1/2"
    assert grouper.canonical("3") == "3"
    assert grouper.canonical(None) is None
    assert grouper.groups == ["1/2", "3"]
    assert math_extractor("<think>1+1=2. so \\boxed{3} no</think> The answer is \\boxed{2}.") == "2"
