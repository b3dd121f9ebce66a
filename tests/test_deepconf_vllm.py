"""The vLLM backend's seam, on CPU: vLLM-shaped outputs (hand-built with vLLM's field names and semantics)
become our traces with the same confidences the transformers backend records; the streaming / abort
orchestration runs against a stand-in engine with AsyncLLM's generate/abort interface."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from falcon_h1r.inference.confidence import token_confidences_from_logits
from falcon_h1r.inference.deepconf import CANCELLED, FINISHED, LENGTH, LOW_CONFIDENCE
from falcon_h1r.inference.vllm_backend import (
    StreamingTrace,
    VLLMTraceGenerator,
    position_confidence,
    trace_from_completion,
)


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: list[dict[int, Logprob]] | None
    finish_reason: str | None = None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    request_id: str
    outputs: list[CompletionOutput]
    finished: bool = False
    prompt_token_ids: list[int] = field(default_factory=list)


def vllm_position(logits_row: torch.Tensor, sampled: int, k: int = 20) -> dict[int, Logprob]:
    """What vLLM returns for one position with logprobs=k: the top k by raw log-prob (ranks 1..k), plus the
    sampled token with its true rank when it is not among them."""
    lp = torch.log_softmax(logits_row.double(), dim=-1)
    order = torch.argsort(lp, descending=True).tolist()
    out = {tok: Logprob(lp[tok].item(), rank) for rank, tok in enumerate(order[:k], start=1)}
    if sampled not in out:
        out[sampled] = Logprob(lp[sampled].item(), order.index(sampled) + 1)
    return out


def test_position_confidence_uses_exactly_the_top_k_ranks():
    top = {i: Logprob(-0.1 * (i + 1), rank=i + 1) for i in range(20)}
    expected = np.mean([0.1 * (i + 1) for i in range(20)])
    assert position_confidence(top) == pytest.approx(expected)
    with_sampled = {**top, 999: Logprob(-30.0, rank=57)}  # sampled token outside the top 20: not counted
    assert position_confidence(with_sampled) == pytest.approx(expected)
    no_ranks = {i: Logprob(v.logprob) for i, v in with_sampled.items()}  # ranks missing: the 20 largest
    assert position_confidence(no_ranks) == pytest.approx(expected)


def test_vllm_shaped_output_gives_the_transformers_backend_confidences():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 300, generator=g) * 3
    sampled = [int(torch.argsort(logits[i], descending=True)[[0, 3, 150][i % 3]]) for i in range(12)]
    completion = CompletionOutput(
        0, "some text", sampled, None, [vllm_position(logits[i], sampled[i]) for i in range(12)], "stop"
    )
    trace = trace_from_completion(completion, window=4)
    np.testing.assert_allclose(trace.confidences, token_confidences_from_logits(logits).tolist(), atol=1e-5)
    assert trace.token_ids == sampled and trace.finish_reason == FINISHED and trace.text == "some text"
    completion.finish_reason = "length"
    assert trace_from_completion(completion, window=4, decode=lambda ids: f"{len(ids)} ids").text == "12 ids"
    assert trace_from_completion(completion, window=4).finish_reason == LENGTH


def test_streaming_deltas_track_confidence_and_flag_low_confidence():
    acc = StreamingTrace(window=2, threshold=1.0, min_stop_tokens=None)
    pos = lambda c: {0: Logprob(-c, 1)}  # noqa: E731  (one candidate: C = c)
    assert acc.extend([5, 6], [pos(2.0), pos(2.0)]) is False
    assert acc.extend([7], [pos(0.5)]) is False  # window mean 1.25
    assert acc.extend([8, 9], [pos(0.5), pos(3.0)]) is True  # after token 8: mean 0.5 < 1.0
    assert acc.token_ids == [5, 6, 7, 8, 9] and acc.tracker.confidences == [2.0, 2.0, 0.5, 0.5, 3.0]
    assert acc.extend([], [pos(9.0)] * 5) is True  # empty final delta: vLLM slices logprobs[-0:] = all
    assert len(acc.token_ids) == 5
    with pytest.raises(ValueError, match="logprobs"):
        acc.extend([1], None)
    with pytest.raises(ValueError, match="log-prob entries"):
        acc.extend([1, 2], [pos(1.0)])


class StandInEngine:
    """AsyncLLM's generate/abort contract: streamed DELTA outputs per request id; abort stops a request."""

    def __init__(self, scripts: list[list[float]], eos: int = 2):
        self.scripts = iter(scripts)
        self.eos = eos
        self.aborted: list[str] = []
        self.delivered: dict[str, int] = {}

    async def generate(self, prompt, params, request_id):
        confs = next(self.scripts)
        for i, c in enumerate(confs):
            await asyncio.sleep(0)
            last = i == len(confs) - 1
            tok = self.eos if last else 10 + i
            self.delivered[request_id] = i + 1
            delta = CompletionOutput(0, "", [tok], None, [{tok: Logprob(-c, 1)}], "stop" if last else None)
            yield RequestOutput(request_id, [delta], finished=last)

    async def abort(self, request_id):
        self.aborted.append(request_id)


def stand_in_generator(engine: StandInEngine) -> VLLMTraceGenerator:
    gen = object.__new__(VLLMTraceGenerator)
    gen.engine, gen.k, gen.eos_ids = engine, 20, {engine.eos}
    gen._loop = asyncio.new_event_loop()
    gen._counter = itertools.count()
    gen._params = lambda n, streamed, max_new_tokens=None: SimpleNamespace(n=n, streamed=streamed)
    gen.tokenizer = SimpleNamespace(decode=lambda ids, skip_special_tokens: " ".join(map(str, ids)))
    return gen


def test_streamed_requests_are_aborted_on_low_confidence_and_on_consensus():
    engine = StandInEngine([[3.0] * 6, [3.0, 0.1, 0.1, 3.0, 3.0, 3.0], [3.0] * 40, [3.0] * 40])
    gen = stand_in_generator(engine)
    seen = []

    def on_trace(trace):
        seen.append(trace)
        return trace.finish_reason != FINISHED  # consensus after the first finished trace

    traces = gen.generate([1, 2, 3], 4, window=2, threshold=1.0, on_trace=on_trace)
    reasons = sorted(t.finish_reason for t in traces)
    assert reasons == sorted([FINISHED, LOW_CONFIDENCE, CANCELLED, CANCELLED])
    low = next(t for t in traces if t.finish_reason == LOW_CONFIDENCE)
    assert low.n_tokens == 3 and low.confidences == [3.0, 0.1, 0.1]
    done = next(t for t in traces if t.finish_reason == FINISHED)
    assert done.n_tokens == 6 and done.text == "10 11 12 13 14"  # EOS dropped from the text
    assert all(t.n_tokens < 40 for t in traces if t.finish_reason == CANCELLED)
    assert set(engine.aborted) == set(engine.delivered)  # every request is aborted (a no-op once finished)
    assert [t.finish_reason for t in seen] == [LOW_CONFIDENCE, FINISHED]
