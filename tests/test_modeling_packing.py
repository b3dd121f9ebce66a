"""The cases where the in-tree falcon_h1 is wrong and FalconH1R must be exact (facts file, "known defects")."""

from __future__ import annotations

import pytest
import torch
from tiny_configs import model_pair, tiny_fields
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from falcon_h1r import FalconH1RConfig, FalconH1RForCausalLM

LENGTHS = [5, 19, 1, 12]  # with chunk 8: boundaries inside chunks, on a chunk edge, a 1-token sequence


def _sequences(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 97, (n,), generator=gen) for n in LENGTHS]


def _packing_signals(position_ids: torch.Tensor) -> dict:
    """`seq_idx` and `cu_seq_lens_q` as TRL >= 1.16's padding-free collator sends them, for older TRL releases,
    whose collator sends position_ids only."""
    starts = (position_ids[0] == 0).nonzero()[:, 0]
    cu_seq_lens = torch.cat([starts, torch.tensor([position_ids.shape[1]])]).to(torch.int32)
    seq_idx = ((position_ids == 0).cumsum(-1) - 1).to(torch.int32)
    return {"seq_idx": seq_idx, "cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens}


def _alone(model, sequences) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(s[None]).logits[0] for s in sequences])


@pytest.mark.parametrize("signal", ["position_ids", "seq_idx", "cu_seq_lens_q", "trl_collator"])
@pytest.mark.parametrize("fields", [tiny_fields(), tiny_fields(mamba_d_conv=3, mamba_n_groups=1, mamba_chunk_size=4)])
def test_packed_row_equals_sequences_run_alone(signal: str, fields: dict) -> None:
    model, _ = model_pair(fields, seed=7)
    sequences = _sequences()
    expected = _alone(model, sequences)
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": s.tolist()} for s in sequences]
    )
    batch = _packing_signals(batch["position_ids"]) | batch
    inputs = {"input_ids": batch["input_ids"]}
    if signal == "trl_collator":  # everything TRL's padding-free collator sends
        inputs = {k: v for k, v in batch.items() if k != "labels"}
    elif signal == "position_ids":
        inputs["position_ids"] = batch["position_ids"]
    else:  # a signal alone: attention gets its block mask from position_ids, the Mamba branch from the signal
        inputs["position_ids"] = batch["position_ids"]
        inputs[signal] = batch[signal]
    with torch.no_grad():
        packed = model(**inputs).logits[0]
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-5)


def test_packed_loss_and_gradients_equal_unpacked_batch() -> None:
    model, _ = model_pair(tiny_fields(), seed=8)
    model.train()
    sequences = _sequences(1)
    examples = [{"input_ids": s.tolist()} for s in sequences]
    packed = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    model(**packed).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(**padded).loss.backward()
    assert torch.allclose(model(**packed).loss, model(**padded).loss, rtol=1e-5)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("proj_bias", [False, True])
def test_left_padded_batch_equals_unpadded_rows(proj_bias: bool) -> None:
    model, _ = model_pair(tiny_fields(mamba_proj_bias=proj_bias, mamba_conv_bias=True), seed=9)
    rows = _sequences(2)[:2] + [torch.randint(1, 97, (3,))]
    width = max(len(r) for r in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = row
        attention_mask[i, width - len(row) :] = 1
    with torch.no_grad():
        batched = model(input_ids, attention_mask=attention_mask).logits
    for i, row in enumerate(rows):
        torch.testing.assert_close(batched[i, width - len(row) :], _alone(model, [row]), rtol=1e-5, atol=1e-5)
    generated = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=10, do_sample=False)
    for i, row in enumerate(rows):
        alone = model.generate(row[None], max_new_tokens=10, do_sample=False)[0, len(row) :]
        assert torch.equal(generated[i, width : width + len(alone)], alone)  # the batch pads after an early EOS


def test_time_step_limit_is_honoured_in_prefill_and_decode() -> None:
    limited, _ = model_pair(tiny_fields(time_step_limit=(0.0, 0.05)), seed=10)
    free, _ = model_pair(tiny_fields(), seed=10)
    prompt = torch.randint(1, 97, (2, 15), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        assert (limited(prompt).logits - free(prompt).logits).abs().max() > 1e-3  # the clamp bites
    out = limited.generate(prompt, max_new_tokens=12, do_sample=False, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        full = limited(out.sequences).logits[:, prompt.shape[1] - 1 : -1]
    torch.testing.assert_close(torch.stack(out.logits, 1), full, rtol=1e-5, atol=1e-5)  # decode clamps like prefill


@pytest.mark.parametrize("before", [True, False])
def test_norm_before_gate_changes_the_output(before: bool) -> None:
    a, _ = model_pair(tiny_fields(mamba_norm_before_gate=before), seed=11)
    b = FalconH1RForCausalLM(FalconH1RConfig(**tiny_fields(mamba_norm_before_gate=not before))).eval()
    b.load_state_dict(a.state_dict())
    prompt = torch.randint(1, 97, (1, 10))
    with torch.no_grad():
        assert (a(prompt).logits - b(prompt).logits).abs().max() > 1e-4


def test_cache_batch_select_keeps_conv_and_ssm_rows_aligned() -> None:
    model, _ = model_pair(tiny_fields(), seed=12)
    prompt = torch.randint(1, 97, (3, 13), generator=torch.Generator().manual_seed(12))
    keep = torch.tensor([0, 2])
    with torch.no_grad():
        cache = model(prompt, use_cache=True).past_key_values
        cache.batch_select_indices(keep)
        next_token = torch.randint(1, 97, (2, 1))
        stepped = model(next_token, past_key_values=cache, use_cache=True).logits
        direct = model(torch.cat([prompt[keep], next_token], 1)).logits[:, -1:]
    torch.testing.assert_close(stepped, direct, rtol=1e-5, atol=1e-5)
