"""The settings every generation path shares, decided in one place: sampling defaults and budget, the DeepConf
config built from user options, the end-of-sequence set and trace decoding (`prompting`)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from transformers import GenerationConfig

import falcon_h1r
from falcon_h1r.inference.deepconf import DeepConfConfig
from falcon_h1r.inference.prompting import chat_prompt_ids, decode_trace, eos_token_ids
from falcon_h1r.inference.sampling import DEFAULT_MAX_NEW_TOKENS, SamplingConfig
from falcon_h1r.training.tokenizer import build_tokenizer


def test_sampling_defaults_are_the_model_cards():
    s = SamplingConfig()
    assert (s.temperature, s.top_p, s.top_k, s.max_new_tokens, s.seed) == (0.6, 0.95, None, None, None)
    assert {"temperature": s.temperature, "top_p": s.top_p} == falcon_h1r.RECOMMENDED_SAMPLING
    assert DEFAULT_MAX_NEW_TOKENS == falcon_h1r.RECOMMENDED_MAX_NEW_TOKENS == 65536


def test_the_budget_is_settled_once_the_same_way_for_every_backend():
    assert SamplingConfig().resolved(None).max_new_tokens == 65536
    assert SamplingConfig().resolved(GenerationConfig()).max_new_tokens == 65536
    assert SamplingConfig().resolved(GenerationConfig(max_new_tokens=300)).max_new_tokens == 300
    assert SamplingConfig(max_new_tokens=7).resolved(GenerationConfig(max_new_tokens=300)).max_new_tokens == 7


def test_sampling_options_from_strings_and_errors_name_the_field():
    s = SamplingConfig.from_options(temperature="0.7", top_k="5", max_new_tokens=None, seed="None")
    assert (s.temperature, s.top_k, s.max_new_tokens, s.seed) == (0.7, 5, None, None)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="unknown sampling option"):
        SamplingConfig.from_options(temprature=0.7)
    with pytest.raises(ValueError, match="max_new_tokens='many' must be int"):
        SamplingConfig.from_options(max_new_tokens="many")


def test_generate_kwargs_greedy_at_temperature_zero():
    assert SamplingConfig(temperature=0, max_new_tokens=4).generate_kwargs() == {
        "do_sample": False, "temperature": None, "top_p": None, "top_k": None, "max_new_tokens": 4,
    }  # fmt: skip
    assert SamplingConfig(top_k=0).generate_kwargs()["top_k"] is None  # 0 = off


def test_deepconf_config_from_options():
    default = DeepConfConfig.from_options()
    assert default == DeepConfConfig()
    # lm-eval model args arrive as strings; None keeps the default; the warm-up never exceeds the budget
    c = DeepConfConfig.from_options(mode="offline", budget="3", eta="90", window=4, tau=None, batch_size="None")
    assert (c.mode, c.budget, c.warmup, c.eta, c.window, c.tau, c.batch_size) == ("offline", 3, 3, 90.0, 4, 0.95, None)
    with pytest.raises(ValueError, match="eta"):
        DeepConfConfig.from_options(eta=0)
    with pytest.raises(ValueError, match="unknown DeepConf option"):
        DeepConfConfig.from_options(budjet=3)


def test_eos_set_is_generation_config_tokenizer_and_im_end():
    tok = build_tokenizer()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert eos_token_ids(tok) == {im_end}
    assert eos_token_ids(tok, GenerationConfig(eos_token_id=[5, 6])) == {5, 6, im_end}
    no_eos = SimpleNamespace(eos_token_id=None, get_vocab=lambda: {"a": 0})
    with pytest.raises(ValueError, match="end-of-sequence"):
        eos_token_ids(no_eos, GenerationConfig())


def test_prompt_and_trace_round_trip():
    tok = build_tokenizer()
    text = tok.decode(chat_prompt_ids(tok, "2+2"))
    assert "<|im_start|>user\n2+2<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    eos = eos_token_ids(tok)
    trace = tok("<think>\n2+2=4.\n</think>\n\n\\boxed{4}", add_special_tokens=False)["input_ids"] + sorted(eos)
    assert decode_trace(tok, trace, eos) == "<think>\n2+2=4.\n</think>\n\n\\boxed{4}"
