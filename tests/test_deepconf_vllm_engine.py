"""DeepConf on a real vLLM engine (the CPU build; CI's vllm stage): both modes run to the end through
`VLLMTraceGenerator`, the sampling config's budget and a run's own cap hold, and a trace ends at the shared
end-of-sequence set (generation config + tokenizer + <|im_end|>), its last token dropped from the text as the
transformers backend drops it. Skipped where vLLM is not installed."""

from __future__ import annotations

import dataclasses
import json

import pytest
from vllm_support import ENGINE_KWARGS, gate_order_checkpoint, transformers_greedy

from falcon_h1r.inference.backends import make_generator
from falcon_h1r.inference.deepconf import FINISHED, DeepConfConfig, run_deepconf
from falcon_h1r.inference.prompting import decode_trace
from falcon_h1r.inference.sampling import SamplingConfig

pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return gate_order_checkpoint(tmp_path_factory.mktemp("deepconf_vllm") / "tiny")


@pytest.fixture(scope="module")
def stop_token(checkpoint):
    """The checkpoint's generation config names the prompt's first greedy token as an end-of-sequence token."""
    from transformers import AutoTokenizer

    prompt = AutoTokenizer.from_pretrained(checkpoint)("2+2", add_special_tokens=False)["input_ids"]
    (first,) = transformers_greedy(checkpoint, [prompt], 1)[0]
    path = checkpoint / "generation_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "eos_token_id": [config["eos_token_id"], first]}))
    return prompt, first


@pytest.fixture(scope="module")
def generator(checkpoint, stop_token):
    gen = make_generator("vllm", str(checkpoint), sampling=SamplingConfig(seed=0, max_new_tokens=24), **ENGINE_KWARGS)
    yield gen
    gen.close()


def test_both_modes_and_both_budgets(generator):
    prompt = generator.prompt_ids("12+7")
    offline = run_deepconf(generator, prompt, DeepConfConfig.from_options(mode="offline", budget=4, window=4, eta=90))
    assert len(offline.traces) == 4 and all(0 < t.n_tokens <= 24 for t in offline.traces)
    online = run_deepconf(
        generator, prompt, DeepConfConfig.from_options(budget=6, warmup=2, window=4, eta=90), max_new_tokens=10
    )
    assert 2 <= len(online.traces) <= 6 and online.tokens == sum(t.n_tokens for t in online.traces)
    assert all(t.n_tokens <= 12 for t in online.traces)  # a stopped request may decode a token or two more


def test_a_trace_ends_at_the_shared_end_of_sequence_set(generator, stop_token):
    prompt, first = stop_token
    assert first in generator.eos_ids and generator._params(1, False).stop_token_ids == sorted(generator.eos_ids)
    greedy = make_generator_like(generator, temperature=0.0)
    (trace,) = greedy.generate(prompt, 1, window=4)
    assert (trace.token_ids, trace.finish_reason) == ([first], FINISHED)
    assert trace.text == decode_trace(generator.tokenizer, [first], generator.eos_ids) == ""


def make_generator_like(generator, **sampling):
    """The same engine with other sampling settings (no second engine on a CPU runner)."""
    clone = object.__new__(type(generator))
    clone.__dict__.update(generator.__dict__)
    clone.sampling = dataclasses.replace(generator.sampling, **sampling)
    return clone


def test_confidences_equal_the_transformers_backends_on_the_same_tokens(generator, checkpoint):
    """vLLM's top-20 log-probs give each token the confidence our transformers backend computes from its logits."""
    import torch

    from falcon_h1r import FalconH1RForCausalLM
    from falcon_h1r.inference.confidence import token_confidences_from_logits

    prompt = list(range(3, 203))  # 200 tokens: past one prefix-cache block and one prefill chunk of the scan
    traces = make_generator_like(generator, max_new_tokens=12).generate(prompt, 3, window=4)
    model = FalconH1RForCausalLM.from_pretrained(checkpoint).eval()
    for trace in traces:
        ids = torch.tensor([prompt + trace.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1]
        expected = token_confidences_from_logits(logits).tolist()
        assert trace.confidences == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_online_deepconf_on_a_long_prompt_stops_low_confidence_traces(generator):
    """Online on a 300-token prompt: warm-up, threshold, traces aborted once their confidence falls below it."""
    prompt = list(range(3, 303))
    config = DeepConfConfig.from_options(budget=16, warmup=4, window=4, eta=10, tau=0.5, batch_size=4)
    result = run_deepconf(make_generator_like(generator, max_new_tokens=16), prompt, config)
    assert 4 <= len(result.traces) <= 16
    assert result.tokens == sum(t.n_tokens for t in result.traces)
    assert result.threshold is not None
    stopped = [t for t in result.traces if t.stopped_early]
    assert stopped and all(t.n_tokens >= 4 for t in stopped)  # eta 10%: most traces fall below the threshold


def test_every_seeded_request_gets_its_own_seed(generator):
    """Trace n of a seeded run samples with seed + n: a trace's randomness does not depend on the others'."""
    seeds = [generator._params(1, True).seed for _ in range(3)]
    assert len(set(seeds)) == 3 and seeds == list(range(seeds[0], seeds[0] + 3))


def test_many_questions_as_one_workload_of_streamed_requests(generator):
    """Each question keeps its own algorithm (warm-up, threshold, votes, budget) with its traces interleaved with
    the other questions' in one engine, at most `capacity` requests in flight."""
    from falcon_h1r.inference.scheduler import answer_all

    config = DeepConfConfig.from_options(budget=6, warmup=2, window=4, eta=50, tau=0.9, batch_size=2)
    prompts = [generator.prompt_ids(q) for q in ("12+7", "3*4+1", "99-5", "8+8")]
    answered = []
    workload = answer_all(generator, prompts, config, capacity=3, on_result=lambda i, r: answered.append(i))
    assert sorted(answered) == [0, 1, 2, 3] and workload.summary()["capacity"] == 3
    for result in workload.results:
        warm = [t for t in result.traces if t.phase == "warmup"]
        assert len(warm) == 2 and 2 <= len(result.traces) <= 6 and result.threshold is not None
        assert all(t.confidence.lowest >= result.threshold for t in result.traces if t.voted)
        assert result.stopped_by_consensus or len(result.traces) == 6
    assert workload.tokens == sum(t.n_tokens for r in workload.results for t in r.traces) > 0
