"""The multi-question DeepConf scheduler (one batch of rows kept full across questions), on real models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import falcon_h1r
from falcon_h1r.inference.deepconf import (
    CANCELLED,
    FINISHED,
    DeepConfConfig,
    DeepConfRun,
    Trace,
    run_deepconf,
)
from falcon_h1r.inference.hf_backend import TransformersTraceGenerator
from falcon_h1r.inference.sampling import SamplingConfig
from falcon_h1r.inference.scheduler import TRIM_EVERY, DeepConfScheduler, RowCache
from falcon_h1r.inference.voting import leader_share

QUESTIONS = ["(78-28)*8+82", "46+68-77+62-62", "(54-6)*2+2", "12*3+7", "99-1+5*2"]
LONG_SYSTEM = "You are Falcon. " * 8 + "Reason inside <think></think>, then answer."  # ~100 more prompt tokens


@pytest.fixture(scope="module")
def greedy():
    torch.set_num_threads(1)
    return TransformersTraceGenerator.from_pretrained(
        falcon_h1r.tiny_model_path(), device="cpu", sampling=SamplingConfig(temperature=0.0, max_new_tokens=48)
    )


def _prompts(gen):
    # prompts of different lengths: row writes grow the cache on the left, and unused columns get trimmed
    return [gen.prompt_ids(q, LONG_SYSTEM if i == 1 else None) for i, q in enumerate(QUESTIONS)]


@pytest.mark.parametrize("capacity", [2, 3, 64])
def test_rows_of_different_prompts_decode_as_each_prompt_alone(greedy, capacity, monkeypatch):
    """Greedy traces (tokens and confidences) equal the single-question backend's, whatever shares the batch."""
    trims = []
    drop = RowCache.drop_leading
    monkeypatch.setattr(RowCache, "drop_leading", lambda self, n: (trims.append(n), drop(self, n)))
    prompts = _prompts(greedy)
    config = DeepConfConfig(mode="offline", budget=2)
    alone = [run_deepconf(greedy, p, config) for p in prompts]
    prefills = []
    forward = greedy.model.forward
    monkeypatch.setattr(
        greedy.model,
        "forward",
        lambda input_ids, **kw: (prefills.append(input_ids.shape[1] > 1), forward(input_ids, **kw))[1],
    )
    workload = DeepConfScheduler(greedy, capacity).run(prompts, DeepConfConfig(mode="offline", budget=2))
    monkeypatch.undo()
    assert sum(prefills) == len(prompts)  # each prompt computed once, then copied into its rows
    assert workload.peak_rows == min(capacity, 2 * len(prompts))
    for a, b in zip(alone, workload.results, strict=True):
        assert [t.token_ids for t in b.traces] == [t.token_ids for t in a.traces]
        assert len(b.traces[0].token_ids) > 10
        np.testing.assert_allclose(b.traces[0].confidences, a.traces[0].confidences, atol=1e-3)
        assert b.answer == a.answer
    assert workload.tokens == sum(r.tokens for r in alone)
    if capacity < 2 * len(prompts):
        assert trims and min(trims) >= TRIM_EVERY  # the long prompt's columns were dropped once it was done


def test_online_questions_keep_their_own_algorithm_in_a_shared_batch():
    torch.set_num_threads(1)
    gen = TransformersTraceGenerator.from_pretrained(
        falcon_h1r.tiny_model_path(), device="cpu", sampling=SamplingConfig(temperature=1.0, max_new_tokens=40, seed=0)
    )
    config = DeepConfConfig(mode="online", budget=12, warmup=4, eta=50, window=4, tau=0.9, batch_size=3)
    prompts = [gen.prompt_ids(q) for q in QUESTIONS]
    answered = []
    workload = DeepConfScheduler(gen, capacity=6).run(prompts, config, on_result=lambda i, r: answered.append(i))
    assert sorted(answered) == list(range(len(prompts))) and workload.peak_rows == 6
    for result in workload.results:
        warm = [t for t in result.traces if t.phase == "warmup"]
        final = [t for t in result.traces if t.phase == "final"]
        assert len(warm) == 4 and len(result.traces) <= 12
        assert result.threshold == pytest.approx(float(np.percentile([t.confidence.lowest for t in warm], 50)))
        voted = [t for t in result.traces if t.voted]
        assert all(t.answer is not None and t.confidence.lowest >= result.threshold for t in voted)
        assert not any(t.voted for t in result.traces if t.finish_reason == CANCELLED)
        if result.stopped_by_consensus:
            assert leader_share(result.votes) >= 0.9
        else:
            assert len(result.traces) == 12
        if final and not result.stopped_by_consensus:
            assert all(t.finish_reason != CANCELLED for t in final)
    assert workload.tokens == sum(t.n_tokens for r in workload.results for t in r.traces)


def _trace(text: str, conf: float = -0.1) -> Trace:
    return Trace(text=text, token_ids=[1] * 8, confidences=[conf] * 8, finish_reason=FINISHED)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_an_empty_answer_never_votes(mode):
    config = DeepConfConfig(mode=mode, budget=4, warmup=2, eta=100, window=2, tau=1.0)
    run = DeepConfRun(config)
    texts = iter(["<think>\nx\n</think>\n\n\\boxed{}", "\\boxed{ }", "\\boxed{7}", "\\boxed{7}"])
    while run.can_start():
        phase, _ = run.start()
        run.finish(_trace(next(texts)), phase)
    result = run.result(0.0)
    assert [t.raw_answer for t in result.traces[:2]] == [None, None]
    assert not any(t.voted for t in result.traces[:2]) and all(t.voted for t in result.traces[2:])
    assert result.answer == "7" and sum(v.count for v in result.votes) == len(result.traces) - 2
    assert all(v["n_votes"] <= len(result.traces) - 2 for v in result.voting.values())


def test_cli_answers_a_workload_as_json_lines(tmp_path, capsys):
    from falcon_h1r.inference.deepconf_cli import main

    questions = tmp_path / "questions.txt"
    questions.write_text("12*3+7\n\n99-1+5*2\n")
    argv = ["(54-6)*2+2", "--questions-file", str(questions), "--mode", "offline", "--budget", "3"]
    argv += ["--max-new-tokens", "40", "--max-batch", "4", "--seed", "0", "--json"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["question"] for line in lines[:-1]) == ["(54-6)*2+2", "12*3+7", "99-1+5*2"]
    summary = lines[-1]["summary"]
    assert summary["questions"] == 3 and summary["capacity"] == 4 and summary["peak_rows"] == 4
    assert summary["tokens"] == sum(line["tokens"] for line in lines[:-1]) and summary["wall_time"] > 0


def test_cli_refuses_an_empty_questions_file_and_a_plot_of_many(tmp_path, capsys):
    from falcon_h1r.inference.deepconf_cli import main

    empty = tmp_path / "none.txt"
    empty.write_text("\n \n")
    assert main(["--questions-file", str(empty)]) == 2
    assert "no non-empty line" in capsys.readouterr().err
    assert main([]) == 2
    assert "no question given" in capsys.readouterr().err
    assert main(["1+1", "2+2", "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot draws one question" in capsys.readouterr().err
