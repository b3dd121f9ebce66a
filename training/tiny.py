"""Build the randomly initialised tiny Falcon-H1R that the embedded model is trained from.

    python -m falcon_h1r.training.tiny --output runs/tiny-init

writes config + safetensors + tokenizer (with the chat template) + generation_config into one directory,
ready for `falcon-h1r sft --config training/recipes/tiny_sft.yaml`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoTokenizer, GenerationConfig

from falcon_h1r import RECOMMENDED_SAMPLING
from falcon_h1r.modeling import FalconH1RConfig, FalconH1RForCausalLM
from falcon_h1r.training.tokenizer import build_tokenizer

# ~2.7M parameters: sized by a measured CPU trial (see TRAINING.md of the embedded model).
TINY_CONFIG: dict = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 48,
    "mamba_d_ssm": 384,
    "mamba_n_heads": 6,
    "mamba_d_head": 64,
    "mamba_n_groups": 1,
    "mamba_d_state": 16,
    "mamba_d_conv": 4,
    "mamba_expand": 2,
    "mamba_chunk_size": 64,
    "mamba_rms_norm": True,
    # gate, then norm: the published Falcon-H1 family's order, the only one vLLM and llama.cpp implement
    "mamba_norm_before_gate": False,
    "tie_word_embeddings": True,
    "max_position_embeddings": 4096,
    # RoPE base 1e4, not the 7B's 1e11: at ~100-token contexts the large base leaves too little positional
    # signal, and a tiny model then learns to copy operands much more slowly (measured: lower loss at equal steps)
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    "initializer_range": 0.02,
}
# A much smaller shape for tests and smoke runs (same tokenizer and chat template).
MICRO_CONFIG: dict = {
    **TINY_CONFIG,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "mamba_d_ssm": 64,
    "mamba_n_heads": 2,
    "mamba_d_head": 32,
    "mamba_d_state": 8,
    "mamba_chunk_size": 16,
}


def build_tiny_model(output_dir: str | Path | None = None, seed: int = 0, **overrides):
    """A random-init tiny model and its tokenizer; saved to `output_dir` when given."""
    tokenizer = build_tokenizer()
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up: a multiple of 64 keeps matmuls aligned
    fields = {**TINY_CONFIG, **overrides}
    config = FalconH1RConfig(
        vocab_size=vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **fields,
    )
    torch.manual_seed(seed)
    model = FalconH1RForCausalLM(config)
    model.generation_config = sampling_defaults(tokenizer)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    return model, tokenizer


def sampling_defaults(tokenizer) -> GenerationConfig:
    """The model card's sampling (T 0.6, top_p 0.95). No max_new_tokens: the caller sets the budget (a default
    here would override lm-eval's max_gen_toks)."""
    return GenerationConfig(
        do_sample=True, **RECOMMENDED_SAMPLING, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )


def ship(checkpoint: str | Path, dest: str | Path, extra_files: list[str | Path] = ()) -> None:
    """Write a trained checkpoint as the embedded model: weights + remote code + tokenizer + sampling defaults,
    plus `extra_files` (recipes, results); nothing from training state (optimizer, trainer args, checkpoints)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():  # a clean folder: no stale shards or files from an earlier build
        if old.is_file() and old.name != "TRAINING.md":
            old.unlink()
    model = FalconH1RForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model.generation_config = sampling_defaults(tokenizer)
    model.config.use_cache = True  # trainers switch it off in their checkpoints; the shipped model is for inference
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    for f in extra_files:
        (dest / Path(f).name).write_bytes(Path(f).read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write a randomly initialised tiny Falcon-H1R checkpoint, or ship one")
    parser.add_argument("--output", required=True, help="directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ship", default=None, help="instead: copy this trained checkpoint to --output as the embedded model"
    )
    parser.add_argument(
        "--extra", nargs="*", default=[], help="with --ship: files to copy alongside (recipes, results)"
    )
    args = parser.parse_args(argv)
    if args.ship:
        ship(args.ship, args.output, args.extra)
        print(f"shipped {args.ship} to {args.output}")
        return 0
    model, _ = build_tiny_model(args.output, seed=args.seed)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: {n / 1e6:.2f}M parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
