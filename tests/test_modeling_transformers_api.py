"""Behaviours a transformers user relies on, checked against the in-tree model where it has them: tuple outputs,
RoPE scaling through transformers' rope-update machinery, base-model <-> causal-LM checkpoints, torch.export, the
tensor-parallel plan, both names of the cache argument (transformers 5.24 renamed `past_key_values` to `cache`),
and a quiet generate()."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from tiny_configs import model_pair, tiny_fields
from transformers import FalconH1Config, FalconH1ForCausalLM, FalconH1Model

from falcon_h1r import FalconH1RConfig, FalconH1RForCausalLM, FalconH1RModel
from falcon_h1r.modeling import CACHE_NAME


def _ids(length: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 97, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("use_cache", [False, True])
def test_return_dict_false_gives_in_tree_tuples(use_cache: bool) -> None:
    ours, ref = model_pair(tiny_fields(), seed=1)
    input_ids, labels = _ids(9), _ids(9, seed=1)
    with torch.no_grad():
        for call in (
            lambda m: m(input_ids, labels=labels, use_cache=use_cache, return_dict=False),
            lambda m: m.model(input_ids, use_cache=use_cache, output_hidden_states=True, return_dict=False),
        ):
            got, want = call(ours), call(ref)
            assert isinstance(got, tuple) and isinstance(want, tuple)
            assert len(got) == len(want)
            for a, b in zip(got, want):
                if isinstance(b, torch.Tensor):
                    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
                elif isinstance(b, tuple):  # hidden states
                    for x, y in zip(a, b, strict=True):
                        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
                else:  # the cache
                    assert a.get_seq_length() == b.get_seq_length() == 9


def test_config_return_dict_false_is_honoured() -> None:
    ours, _ = model_pair(tiny_fields(return_dict=False), seed=1)
    assert isinstance(ours(_ids(5), use_cache=False), tuple)
    assert ours(_ids(5), use_cache=False, return_dict=True).logits.shape == (2, 5, 97)


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "dynamic", "factor": 2.0},
        {"rope_type": "linear", "factor": 3.0},
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
    ],
    ids=lambda r: r["rope_type"],
)
def test_rope_scaling_matches_in_tree_beyond_the_trained_length(rope: dict) -> None:
    fields = tiny_fields(max_position_embeddings=16, rope_parameters={**rope, "rope_theta": 1e4})
    fields.pop("rope_theta")
    ours, ref = model_pair(fields, seed=2)
    plain, _ = model_pair(tiny_fields(max_position_embeddings=16), seed=2)
    input_ids = _ids(40)  # past max_position_embeddings: dynamic scaling changes the frequencies here
    with torch.no_grad():
        logits = ours(input_ids).logits
        torch.testing.assert_close(logits, ref(input_ids).logits, rtol=1e-5, atol=1e-5)
        assert (logits - plain(input_ids).logits).abs().max() > 1e-3  # the scaling did something
        prompt = input_ids[:1, :30]
        assert torch.equal(
            ours.generate(prompt, max_new_tokens=8, do_sample=False),
            ref.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False),
        )


@pytest.mark.parametrize("tied", [True, False])
def test_base_model_checkpoint_loads_into_the_causal_lm_and_back(tmp_path, tied: bool) -> None:
    torch.manual_seed(3)
    config = FalconH1RConfig(**tiny_fields(tie_word_embeddings=tied))
    base = FalconH1RModel(config).eval()
    base.save_pretrained(tmp_path / "base")
    in_tree = FalconH1ForCausalLM.from_pretrained(tmp_path / "base").eval()  # what in-tree makes of the same folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untied lm_head is missing and newly initialised, as in-tree
        lm = FalconH1RForCausalLM.from_pretrained(tmp_path / "base").eval()
    torch.testing.assert_close(lm.model.state_dict(), base.state_dict())
    if tied:
        assert lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()
        with torch.no_grad():
            torch.testing.assert_close(lm(_ids(6)).logits, in_tree(_ids(6)).logits, rtol=1e-5, atol=1e-6)
    lm.save_pretrained(tmp_path / "lm")
    back = FalconH1RModel.from_pretrained(tmp_path / "lm")
    torch.testing.assert_close(back.state_dict(), base.state_dict())
    assert FalconH1Model.from_pretrained(tmp_path / "lm").embed_tokens.weight.shape == (97, 48)


def test_torch_export_matches_eager_with_and_without_padding() -> None:
    ours, _ = model_pair(tiny_fields(), seed=4)
    input_ids = _ids(12)
    full = torch.ones_like(input_ids)
    program = torch.export.export(
        ours, args=(), kwargs={"input_ids": input_ids, "attention_mask": full, "use_cache": False}, strict=False
    )
    padded = full.clone()
    padded[1, :4] = 0  # the program was traced on a mask of ones: the general masked path must be what it holds
    for mask in (full, padded):
        with torch.no_grad():
            eager = ours(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
        exported = program.module()(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
        torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-5)


def test_tensor_parallel_plan_covers_what_in_tree_shards() -> None:
    ours, ref = model_pair(tiny_fields(tie_word_embeddings=True), seed=5)
    assert (
        ours.config.base_model_tp_plan == FalconH1Config().base_model_tp_plan or not FalconH1Config().base_model_tp_plan
    )
    ours_plan, ref_plan = ours._tp_plan, ref._tp_plan
    assert ours_plan["model.embed_tokens"] == "embedding_rowwise"  # tied: the embedding is sharded as lm_head is
    assert {k: v for k, v in ref_plan.items() if k in ours_plan} == {k: ours_plan[k] for k in ref_plan}


def test_the_cache_is_accepted_under_both_names_and_returned_under_the_running_one() -> None:
    ours, _ = model_pair(tiny_fields(), seed=6)
    input_ids = _ids(10)
    with torch.no_grad():
        full = ours(input_ids).logits[:, -1]
        for name in ("cache", "past_key_values"):
            prefix = ours(input_ids[:, :9], use_cache=True)
            cache = prefix[CACHE_NAME]
            assert cache is not None and cache.get_seq_length() == 9
            step = ours(input_ids[:, 9:], **{name: cache}).logits[:, -1]
            torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="Pass the cache once"):
            ours(input_ids[:, 9:], cache=cache, past_key_values=cache)


def test_generate_is_quiet_and_cached_decode_equals_uncached(caplog) -> None:
    ours, _ = model_pair(tiny_fields(), seed=7)
    prompt = _ids(7)
    mask = torch.ones_like(prompt)
    mask[0, :3] = 0  # left padding on one row
    runs = ({}, {"attention_mask": mask}, {"cache_implementation": "static"})
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cached = [ours.generate(prompt, max_new_tokens=6, do_sample=False, **kwargs) for kwargs in runs]
    assert not [str(w.message) for w in caught]
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    for kwargs, tokens in zip(runs, cached):
        kwargs.pop("cache_implementation", None)
        assert torch.equal(tokens, ours.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False, **kwargs))
