"""Tiny random Falcon-H1 configurations shared by the modeling tests (seeded, so failures reproduce)."""

from __future__ import annotations

import random

import torch
from transformers import FalconH1Config, FalconH1ForCausalLM

from falcon_h1r import FalconH1RConfig, FalconH1RForCausalLM


def tiny_fields(**overrides) -> dict:
    """A small config with non-trivial muP multipliers, 2 B/C groups and head_dim != hidden / heads."""
    fields = dict(
        vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, mamba_d_ssm=64, mamba_n_heads=8, mamba_d_state=8, mamba_n_groups=2,
        mamba_chunk_size=8, mamba_rms_norm=True, mamba_norm_before_gate=False, embedding_multiplier=1.7,
        lm_head_multiplier=0.6, key_multiplier=0.8, attention_in_multiplier=1.3, attention_out_multiplier=0.7,
        ssm_in_multiplier=1.2, ssm_out_multiplier=0.9, ssm_multipliers=[0.5, 1.5, 0.8, 1.2, 0.7],
        mlp_multipliers=[0.9, 1.1], rope_theta=1e4, pad_token_id=0, initializer_range=0.05,
    )  # fmt: skip
    fields.update(overrides)
    return fields


def random_fields(seed: int) -> dict:
    """A random valid config: group counts, norms, gate order, head_dim, biases and multipliers all vary."""
    rng = random.Random(seed)
    n_groups = rng.choice([1, 2, 4])
    heads_per_group = rng.choice([1, 2])
    mamba_heads = n_groups * heads_per_group * rng.choice([1, 2])
    d_head = rng.choice([4, 8, 12])
    attn_heads = rng.choice([2, 4])
    return tiny_fields(
        hidden_size=rng.choice([32, 48, 64]),
        num_attention_heads=attn_heads,
        num_key_value_heads=rng.choice([1, attn_heads]),
        head_dim=rng.choice([8, 12, 16, 24]),
        mamba_n_heads=mamba_heads,
        mamba_d_ssm=mamba_heads * d_head,
        mamba_n_groups=n_groups,
        mamba_d_state=rng.choice([4, 8, 16]),
        mamba_d_conv=rng.choice([2, 3, 4]),
        mamba_chunk_size=rng.choice([4, 8, 16]),
        mamba_rms_norm=rng.random() < 0.7,
        mamba_norm_before_gate=rng.random() < 0.5,
        mamba_proj_bias=rng.random() < 0.3,
        mamba_conv_bias=rng.random() < 0.8,
        projectors_bias=rng.random() < 0.3,
        embedding_multiplier=rng.uniform(0.5, 3),
        lm_head_multiplier=rng.uniform(0.2, 2),
        key_multiplier=rng.uniform(0.3, 2),
        attention_in_multiplier=rng.uniform(0.3, 2),
        attention_out_multiplier=rng.uniform(0.3, 2),
        ssm_in_multiplier=rng.uniform(0.3, 2),
        ssm_out_multiplier=rng.uniform(0.3, 2),
        ssm_multipliers=[rng.uniform(0.3, 2) for _ in range(5)],
        mlp_multipliers=[rng.uniform(0.3, 2), rng.uniform(0.3, 2)],
    )


def randomize_mixer_params(model: torch.nn.Module, seed: int) -> None:
    """Spread dt_bias / A_log / D / norm weights / biases away from their constant inits so every term matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("dt_bias", "A_log")):
                param.copy_(torch.rand(param.shape, generator=gen) * 2 - 1)
            elif name.endswith((".D", "norm.weight")):
                param.copy_(torch.rand(param.shape, generator=gen) + 0.5)
            elif name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


def model_pair(fields: dict, seed: int = 0, attn: str = "sdpa") -> tuple[FalconH1RForCausalLM, FalconH1ForCausalLM]:
    """Our model and the in-tree model with identical weights."""
    torch.manual_seed(seed)
    ours = FalconH1RForCausalLM(FalconH1RConfig(**fields, attn_implementation=attn)).eval()
    randomize_mixer_params(ours, seed)
    ref = FalconH1ForCausalLM(FalconH1Config(**fields, attn_implementation=attn)).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref
