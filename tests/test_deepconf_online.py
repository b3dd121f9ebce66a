"""DeepConf's online / offline scheduler, driven by a deterministic scripted trace generator.

The fake generator stands in for a model only: it replays scripted (answer, token confidences) traces
through the real `ConfidenceTracker`, so early stopping, thresholds, votes and consensus are the real code.
"""

from __future__ import annotations

import numpy as np
import pytest

from falcon_h1r.inference.confidence import ConfidenceTracker
from falcon_h1r.inference.deepconf import (
    CANCELLED,
    FINISHED,
    LOW_CONFIDENCE,
    DeepConfConfig,
    Trace,
    run_deepconf,
)
from falcon_h1r.inference.voting import exact_equivalent


def boxed_extractor(text: str) -> str | None:
    return text.split("ANSWER=")[-1] if "ANSWER=" in text else None


class ScriptedGenerator:
    """Replays scripted traces in order; honours threshold, min_stop_tokens and on_trace cancellation."""

    def __init__(self, script: list[tuple[str | None, list[float]]]):
        self.script = list(script)
        self.calls: list[dict] = []

    def generate(self, prompt_ids, n, *, window, threshold=None, min_stop_tokens=None, on_trace=None):
        self.calls.append({"n": n, "threshold": threshold})
        out: list[Trace] = []
        cancelled = False
        for _ in range(n):
            answer, confs = self.script.pop(0)
            tracker = ConfidenceTracker(window, threshold, min_stop_tokens)
            reason = FINISHED
            if cancelled:
                tracker.add(confs[0])  # it had started: one token spent
                reason = CANCELLED
            else:
                for c in confs:
                    if tracker.add(c):
                        reason = LOW_CONFIDENCE
                        break
            n_tok = tracker.n_tokens
            text = f"ANSWER={answer}" if answer is not None and reason == FINISHED else "..."
            trace = Trace(text, list(range(n_tok)), list(tracker.confidences), reason)
            out.append(trace)
            if reason != CANCELLED and on_trace is not None and on_trace(trace) is False:
                cancelled = True
        return out


def flat(level: float, n: int = 8) -> list[float]:
    return [level] * n


def run(script, **cfg):
    config = DeepConfConfig(**{"window": 4, "warmup": 8, "budget": 24, "batch_size": 4, **cfg})
    gen = ScriptedGenerator(script)
    result = run_deepconf(gen, [1, 2, 3], config, extractor=boxed_extractor, equivalent=exact_equivalent)
    return result, gen


def test_threshold_is_the_90th_percentile_for_eta_10_and_votes_use_only_traces_above_it():
    warm = [("5", flat(c)) for c in (1, 2, 3, 4, 5, 6, 7, 8)]
    later = [("5", flat(9.0))] * 16
    result, gen = run(warm + later, eta=10, tau=1.0)
    expected = float(np.percentile([1, 2, 3, 4, 5, 6, 7, 8], 90))  # 7.3: keeps the top ~10%
    assert result.threshold == pytest.approx(expected)
    warm_voters = [t for t in result.traces if t.phase == "warmup" and t.voted]
    assert [t.confidence.lowest for t in warm_voters] == [8.0]
    high, _ = run(warm + later, eta=90, tau=1.0)
    assert high.threshold == pytest.approx(np.percentile([1, 2, 3, 4, 5, 6, 7, 8], 10))
    assert sum(t.voted for t in high.traces if t.phase == "warmup") == 7


def test_low_confidence_traces_stop_at_the_first_full_window_below_threshold():
    # eta 25: threshold = 75th percentile = 6.25; the two voters disagree, so no early consensus
    warm = [("5", flat(c)) for c in (1, 2, 3, 4, 5, 6, 7)] + [("4", flat(8.0))]
    dip = [9.0, 9.0, 9.0, 9.0, 9.0, -3.0, 9.0, 9.0, 9.0, 9.0]  # window 4: means 9, then 6 (< 6.25) at token 6
    later = [("6", dip)] + [("5", flat(9.0)), ("4", flat(9.0))] * 8
    result, gen = run(warm + later, eta=25, tau=1.0)
    assert result.threshold == pytest.approx(6.25)
    assert all(c["threshold"] == pytest.approx(6.25) for c in gen.calls[1:]) and gen.calls[0]["threshold"] is None
    stopped = [t for t in result.traces if t.finish_reason == LOW_CONFIDENCE]
    assert len(stopped) == 1 and stopped[0].n_tokens == 6 and stopped[0].stopped_early
    assert stopped[0].answer is None and not stopped[0].voted
    assert result.tokens == 8 * 8 + 6 + 15 * 8 and len(result.traces) == 24


def test_consensus_ends_sampling_before_the_budget_and_cancels_running_traces():
    warm = [("5", flat(c)) for c in (1, 2, 3, 4, 5, 6, 7, 8)]
    later = [("5", flat(9.0))] * 16
    result, gen = run(warm + later, eta=10, tau=0.95)
    # the only warm-up voter already says "5" with share 1.0 >= tau: no trace after the warm-up
    assert result.stopped_by_consensus and len(result.traces) == 8 and len(gen.calls) == 1
    assert result.answer == "5"

    warm2 = [("4", flat(8.0))] + [("5", flat(c)) for c in (1, 2, 3, 4, 5, 6, 7.5)]  # voters: "4"(8) and "5"(7.5)
    later2 = [("5", flat(9.0))] * 16
    r2, gen2 = run(warm2 + later2, eta=25, tau=0.7)
    # after the warm-up "4" leads 8 vs 7.5; each "5" at 9.0 adds weight: 7.5+9=16.5 / 24.5 = 0.67, then 25.5/33.5 = 0.76
    assert r2.stopped_by_consensus and r2.answer == "5"
    final = [t for t in r2.traces if t.phase == "final"]
    assert [t.finish_reason for t in final] == [FINISHED, FINISHED, CANCELLED, CANCELLED]
    assert r2.tokens == 8 * 8 + 2 * 8 + 2 * 1  # cancelled traces' tokens are counted


def test_without_consensus_online_runs_to_the_budget():
    warm = [("5", flat(8.0)), ("6", flat(8.0))] + [("7", flat(c)) for c in (1, 2, 3, 4, 5, 6)]
    later = [("5", flat(9.0)), ("6", flat(9.0))] * 8
    result, gen = run(warm + later, eta=25, tau=0.95)
    assert not result.stopped_by_consensus
    assert len(result.traces) == 24 and [c["n"] for c in gen.calls] == [8, 4, 4, 4, 4]
    assert result.answer in {"5", "6"}
    votes = {v.answer: v for v in result.votes}
    assert votes["5"].count == 9 and votes["5"].weight == pytest.approx(8.0 + 8 * 9.0)
    assert "7" not in votes  # below the threshold


def test_offline_keeps_the_top_eta_percent_and_weights_by_the_chosen_confidence():
    script = [("3", flat(9.0))] * 2 + [("4", flat(2.0))] * 18
    result, gen = run(script, mode="offline", budget=20, eta=10)
    assert gen.calls == [{"n": 20, "threshold": None}]
    assert result.answer == "3" and result.voting["majority"]["answer"] == "4"
    assert sum(t.voted for t in result.traces) == 2 and result.tokens == 20 * 8
    wide, _ = run(script, mode="offline", budget=20, eta=90)
    assert wide.answer == "4"


def test_result_json_has_the_documented_fields():
    warm = [("5", flat(c)) for c in (1, 2, 3, 4, 5, 6, 7, 8)]
    result, _ = run(warm + [("5", flat(9.0))] * 16, eta=10)
    data = result.to_json()
    assert {"answer", "votes", "traces", "tokens", "wall_time", "threshold"} <= set(data)
    assert data["tokens"] == sum(t["tokens"] for t in data["traces"])
    t0 = data["traces"][0]
    assert {"text", "answer", "tokens", "stopped_early", "confidence", "token_confidences"} <= set(t0)
    assert data["votes"] == [{"answer": "5", "count": 1, "weight": 8.0}]


def test_invalid_configuration_is_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="warmup"):
        DeepConfConfig(budget=4, warmup=8).validate()
    with pytest.raises(ValueError, match="eta"):
        DeepConfConfig(eta=0).validate()
    with pytest.raises(ValueError, match="mode"):
        DeepConfConfig(mode="sometimes").validate()
