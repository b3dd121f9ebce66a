"""Shared helpers for the model_card / convert / publish tests (no tests here).

`tiny_checkpoint()` is the embedded checkpoint (`falcon_h1r.tiny_model_path()`) when it is complete; while the
training helper is regenerating it, a tiny random Falcon-H1R with a byte-level tokenizer is built instead, so
the tests always exercise a real model + tokenizer folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import falcon_h1r

CHATML = (
    "{%- for m in messages -%}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# The layout of a real lm-eval 0.4.13 results JSON (captured from `lm_eval run --model dummy` on a local
# generate_until task with repeats and a majority-vote filter), trimmed and with a second task added.
LM_EVAL_RESULTS = {
    "results": {
        "aime25": {
            "name": "aime25",
            "alias": "aime25",
            "sample_len": 30,
            "exact_match,none": 0.8313,
            "exact_match_stderr,none": 0.0512,
        },
        "toy_math": {
            "name": "toy_math",
            "alias": "toy_math",
            "sample_len": 3,
            "exact_match,maj": 0.6667,
            "exact_match_stderr,maj": 0.3333,
        },
    },
    "group_subtasks": {"aime25": [], "toy_math": []},
    "configs": {
        "aime25": {
            "task": "aime25",
            "dataset_path": "math-ai/aime25",
            "test_split": "test",
            "num_fewshot": 0,
            "output_type": "generate_until",
            "repeats": 16,
            "generation_kwargs": {
                "until": [],
                "do_sample": True,
                "temperature": 0.6,
                "top_p": 0.95,
                "max_gen_toks": 65536,
            },
        },
        "toy_math": {
            "task": "toy_math",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": "/tmp/data.jsonl"}},
            "test_split": "test",
            "num_fewshot": 0,
            "output_type": "generate_until",
            "repeats": 2,
            "generation_kwargs": {
                "until": ["\n"],
                "do_sample": True,
                "temperature": 0.6,
                "top_p": 0.95,
                "max_gen_toks": 64,
            },
            "filter_list": [{"name": "maj", "filter": [{"function": "majority_vote"}, {"function": "take_first"}]}],
        },
    },
    "versions": {"aime25": 1.0, "toy_math": 1.0},
    "n-shot": {"aime25": 0, "toy_math": 0},
    "higher_is_better": {"aime25": {"exact_match": True}, "toy_math": {"exact_match": True}},
    "n-samples": {"aime25": {"original": 30, "effective": 30}, "toy_math": {"original": 3, "effective": 3}},
    "config": {"model": "hf", "model_args": {}, "batch_size": 1, "gen_kwargs": {}, "limit": None},
    "lm_eval_version": "0.4.13",
}


def _complete(folder: Path) -> bool:
    from falcon_h1r.model_card.checkpoint import chat_template_of

    has_weights = (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()
    return (
        (folder / "config.json").is_file()
        and has_weights
        and (folder / "tokenizer.json").is_file()
        and bool(chat_template_of(folder))
    )


def _build_random(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from falcon_h1r import FalconH1RConfig, FalconH1RForCausalLM

    byte_vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    tok = Tokenizer(models.BPE(vocab=byte_vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"pad_token": "<|pad|>", "eos_token": "<|im_end|>"})
    fast.add_tokens(["<|im_start|>", "<think>", "</think>"], special_tokens=True)
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = FalconH1RConfig(
        vocab_size=len(fast), hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, mamba_d_ssm=64, mamba_n_heads=4, mamba_d_state=8, mamba_chunk_size=16,
        mamba_rms_norm=True, mamba_norm_before_gate=False, max_position_embeddings=512,
        pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    FalconH1RForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def tiny_checkpoint(tmp_factory) -> Path:
    """A complete tiny checkpoint folder (config, weights, tokenizer with chat template), safe to modify."""
    embedded = falcon_h1r.tiny_model_path()
    out = Path(tmp_factory.mktemp("ckpt")) / "tiny-falcon-h1r"
    if _complete(embedded):
        shutil.copytree(embedded, out)
        return out
    return _build_random(out)


def write_results(folder: Path) -> Path:
    path = folder / "results_2026-01-01T00-00-00.json"
    path.write_text(json.dumps(LM_EVAL_RESULTS))
    return path
