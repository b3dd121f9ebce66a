"""DeepConf's transformers backend and CLI on a tiny random Falcon-H1R (CPU, a few tokens)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from falcon_h1r.inference.confidence import running_group_confidences, token_confidences_from_logits
from falcon_h1r.inference.deepconf import LOW_CONFIDENCE, DeepConfConfig, run_deepconf
from falcon_h1r.inference.hf_backend import TransformersTraceGenerator, sample_next
from falcon_h1r.inference.sampling import SamplingConfig

# small enough to run in a blink, with weights spread wide enough that token confidences vary
SMALL = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=8, mamba_chunk_size=16,
    initializer_range=0.2,
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from falcon_h1r.training.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("deepconf_tiny")
    build_tiny_model(path, seed=0, **SMALL)
    return path


@pytest.fixture(scope="module")
def generator(tiny_dir):
    torch.set_num_threads(1)
    return TransformersTraceGenerator.from_pretrained(
        str(tiny_dir), device="cpu", sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=16, seed=0)
    )


def recomputed_confidences(model, prompt_ids, token_ids):
    """C_i for every generated token from one full forward over prompt + trace (no cache)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + token_ids])).logits[0]
    p = len(prompt_ids)
    return token_confidences_from_logits(logits[p - 1 : p - 1 + len(token_ids)]).tolist()


def test_recorded_confidences_equal_a_full_forward_recomputation_with_rows_removed_midway(generator):
    prompt = generator.prompt_ids("12+7*3")
    probe = generator.generate(prompt, 8, window=4)
    # a threshold in the middle of the group confidences at token 6 stops some traces, not all
    threshold = float(np.median([running_group_confidences(t.confidences, 4)[5] for t in probe]))
    traces = generator.generate(prompt, 8, window=4, threshold=threshold)
    stopped = [t for t in traces if t.finish_reason == LOW_CONFIDENCE]
    assert stopped, "the test needs early-stopped traces (pick another threshold)"
    assert max(t.n_tokens for t in traces) > min(t.n_tokens for t in stopped), "rows must outlive a removal"
    for t in traces:
        assert len(t.confidences) == t.n_tokens
        ref = recomputed_confidences(generator.model, prompt, t.token_ids)
        np.testing.assert_allclose(t.confidences, ref, rtol=0, atol=1e-4)
        g = running_group_confidences(t.confidences, 4)
        if t.finish_reason == LOW_CONFIDENCE:  # stopped at the first full window below the threshold
            assert g[-1] < threshold and t.n_tokens >= 4 and all(x >= threshold for x in g[3:-1])
        else:
            assert all(x >= threshold for x in g[3:])


def test_same_seed_same_traces_and_text_is_the_decoded_tokens(tiny_dir):
    kw = dict(device="cpu", sampling=SamplingConfig(temperature=0.6, top_p=0.95, max_new_tokens=10, seed=123))
    a = TransformersTraceGenerator.from_pretrained(str(tiny_dir), **kw)
    b = TransformersTraceGenerator.from_pretrained(str(tiny_dir), **kw)
    prompt = a.prompt_ids("5-3")
    ta, tb = a.generate(prompt, 3, window=4), b.generate(prompt, 3, window=4)
    assert [t.token_ids for t in ta] == [t.token_ids for t in tb]
    for t in ta:
        ids = t.token_ids[:-1] if t.token_ids[-1] in a.eos_ids else t.token_ids
        assert t.text == a.tokenizer.decode(ids, skip_special_tokens=False)


def test_sampling_filters():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, temperature=0.0, top_p=1.0, top_k=None, generator=g).eq(0).all()
    assert sample_next(logits, temperature=1.0, top_p=1.0, top_k=1, generator=g).eq(0).all()
    assert sample_next(logits, temperature=1.0, top_p=0.5, top_k=None, generator=g).eq(0).all()
    nucleus = sample_next(logits, temperature=1.0, top_p=0.8, top_k=None, generator=g)
    assert set(nucleus.tolist()) == {0, 1}
    free = sample_next(logits, temperature=1.0, top_p=1.0, top_k=None, generator=g)
    assert set(free.tolist()) == {0, 1, 2}


def test_online_deepconf_end_to_end_on_the_transformers_backend(generator):
    prompt = generator.prompt_ids("40+2")
    config = DeepConfConfig(mode="online", budget=8, warmup=4, batch_size=4, window=4, eta=50, tau=0.95)
    result = run_deepconf(generator, prompt, config)
    assert 4 <= len(result.traces) <= 8
    assert result.tokens == sum(t.n_tokens for t in result.traces) > 0
    assert [t.phase for t in result.traces[:4]] == ["warmup"] * 4
    lowest = sorted(t.confidence.lowest for t in result.traces[:4])
    assert result.threshold == pytest.approx(float(np.percentile(lowest, 50)))
    assert all(t.n_tokens <= 16 for t in result.traces)


def test_cli_json_and_plot(tiny_dir, tmp_path, capsys):
    from falcon_h1r.inference.deepconf_cli import main

    png = tmp_path / "conf.png"
    argv = ["7*6", "--model", str(tiny_dir), "--budget", "6", "--warmup", "3", "--window", "4", "--eta", "90"]
    argv += ["--max-new-tokens", "8", "--seed", "0", "--device", "cpu", "--json", "--plot", str(png)]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"answer", "votes", "traces", "tokens"} <= set(data)
    assert data["tokens"] == sum(t["tokens"] for t in data["traces"]) and 3 <= len(data["traces"]) <= 6
    assert all(t["tokens"] <= 8 and len(t["token_confidences"]) == t["tokens"] for t in data["traces"])
    assert png.stat().st_size > 1000


def test_cli_rejects_bad_options(capsys):
    from falcon_h1r.inference.deepconf_cli import main

    assert main(["q", "--eta", "0"]) == 2
    assert "eta" in capsys.readouterr().err


def test_lm_eval_model_is_registered_and_answers_generation_requests(tiny_dir):
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    from falcon_h1r.inference.lm_eval_deepconf import DeepConfLM

    assert get_model("falcon_h1r_deepconf") is DeepConfLM
    lm = DeepConfLM.create_from_arg_string(
        f"pretrained={tiny_dir},mode=offline,budget=3,window=4,eta=90,max_new_tokens=6,seed=1,device=cpu",
        {"batch_size": 1},
    )
    requests = [
        Instance("generate_until", {}, (q, {"until": ["<|im_end|>"], "max_gen_toks": 6}), i)
        for i, q in enumerate(["1+1", "9*9"])
    ]
    out = lm.generate_until(requests)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    for o, r in zip(out, lm.results):
        assert o == ("" if r["answer"] is None else f"\\boxed{{{r['answer']}}}")
        assert r["traces"] == 3 and 0 < r["tokens"] <= 18
    with pytest.raises(NotImplementedError, match="generation"):
        lm.loglikelihood(requests)


def test_max_batch_chunks_and_a_cancel_starts_no_new_chunk(generator):
    prompt = generator.prompt_ids("3+4")
    generator.max_batch = 2
    try:
        assert len(generator.generate(prompt, 5, window=4)) == 5
        seen = []
        traces = generator.generate(prompt, 5, window=4, on_trace=lambda t: bool(seen.append(t)))
    finally:
        generator.max_batch = None
    assert len(seen) == 1 and len(traces) == 2  # the first chunk only
