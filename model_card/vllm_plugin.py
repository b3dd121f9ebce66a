"""vLLM support: serve falcon_h1r checkpoints with vLLM's own (CUDA-optimised) Falcon-H1 implementation.

Checkpoints `save_pretrained` writes, and staged ones vLLM cannot serve faithfully, say
`architectures: ["FalconH1RForCausalLM"]`, a name vLLM does not know (staged ones it can serve name its own
`FalconH1ForCausalLM`, see `checkpoint.remote_code_architecture`). `register()` is
installed as a `vllm.general_plugins` entry point (see pyproject.toml), which vLLM calls in every process
it starts; it maps that name onto vLLM's in-tree `FalconH1ForCausalLM`, imported lazily by string so
registration costs nothing and never initialises CUDA. The weights and the config field names are exactly
the in-tree ones, which is what makes the alias valid; `vllm_config_problems` checks that a config carries
every field vLLM's Falcon-H1 reads and flags the options vLLM implements differently.

    pip install "falcon-h1r[vllm]"
    vllm serve DIR_OR_REPO --trust-remote-code --reasoning-parser deepseek_r1 --tensor-parallel-size 2 \
        --max-model-len 65536
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

ARCHITECTURE = "FalconH1RForCausalLM"
# vLLM's in-tree Falcon-H1 (vllm/model_executor/models/falcon_h1.py, present since vLLM 0.9), subclassed only to refuse
# checkpoints it would serve wrongly (vllm_model.py); a `<module>:<class>` string, imported lazily by vLLM.
VLLM_TARGET = "falcon_h1r.model_card.vllm_model:FalconH1RForCausalLM"

# Attributes vLLM's falcon_h1.py (FalconH1MLP, FalconH1SSMDecoderLayer, FalconH1AttentionDecoderLayer,
# FalconH1ParallelHybrid, FalconH1Model, FalconH1ForCausalLM incl. the Mamba state-shape classmethods) reads
# from the loaded HF config without a default.
VLLM_REQUIRED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "rms_norm_eps",
    "tie_word_embeddings",
    "mlp_multipliers",
    "key_multiplier",
    "attention_in_multiplier",
    "attention_out_multiplier",
    "ssm_in_multiplier",
    "ssm_out_multiplier",
    "ssm_multipliers",
    "embedding_multiplier",
    "lm_head_multiplier",
    "mamba_d_ssm",  # or mamba_expand * hidden_size when mamba_d_ssm is None
    "mamba_d_state",
    "mamba_d_conv",
    "mamba_conv_bias",
    "mamba_proj_bias",
    "mamba_n_groups",
    "mamba_n_heads",
    "mamba_d_head",
    "mamba_rms_norm",
    "rope_parameters",
)
# Read with a fallback that is wrong for Falcon-H1R when absent (head_dim: hidden_size // heads;
# max_position_embeddings: 8192), so we require them explicitly too.
VLLM_DEFAULTED_FIELDS = ("head_dim", "max_position_embeddings")


class _Registry(Protocol):
    """The part of vLLM's `ModelRegistry` we use (vllm.model_executor.models.registry._ModelRegistry)."""

    def get_supported_archs(self) -> Any: ...

    def register_model(self, model_arch: str, model_cls: Any) -> None: ...


def register(registry: _Registry | None = None) -> None:
    """Register `FalconH1RForCausalLM` as an alias of vLLM's in-tree Falcon-H1 (idempotent).

    vLLM calls this with no argument; tests pass a stand-in with the same two methods.
    """
    if registry is None:
        from vllm import ModelRegistry

        registry = ModelRegistry
    if ARCHITECTURE in registry.get_supported_archs():
        return  # vLLM loads general plugins once per process; re-registering would only log a warning
    registry.register_model(ARCHITECTURE, VLLM_TARGET)


def _get(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def vllm_config_problems(config: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) for serving `config` (a loaded config object or a config.json dict) with vLLM.

    Errors: a field vLLM reads is missing or has a value it cannot use. Warnings: the model will run but
    vLLM's Falcon-H1 implements an option differently from transformers, so outputs will differ.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for name in VLLM_REQUIRED_FIELDS + VLLM_DEFAULTED_FIELDS:
        if _get(config, name) is None and not (name == "mamba_d_ssm" and _get(config, "mamba_expand") is not None):
            errors.append(f"config has no {name!r}, which vLLM's Falcon-H1 reads; add it to config.json")
    rope = _get(config, "rope_parameters")
    if isinstance(rope, Mapping) and "rope_theta" not in rope:
        errors.append("rope_parameters has no 'rope_theta'; vLLM would fall back to 1e11")
    if _get(config, "hidden_act") not in (None, "silu"):
        errors.append(f"hidden_act={_get(config, 'hidden_act')!r}: vLLM's Falcon-H1 supports only 'silu'")
    if not isinstance(_get(config, "mamba_d_head"), (int, type(None))):
        errors.append(f"mamba_d_head={_get(config, 'mamba_d_head')!r} must be an integer for vLLM (not 'auto')")
    for name, n in (("mlp_multipliers", 2), ("ssm_multipliers", 5)):
        value = _get(config, name)
        if value is not None and len(value) != n:
            errors.append(f"{name} needs {n} entries for vLLM, got {len(value)}")
    if _get(config, "mamba_rms_norm") and _get(config, "mamba_norm_before_gate"):
        warnings.append(
            "mamba_norm_before_gate=True: vLLM's gated RMSNorm multiplies by silu(z) before normalising "
            "(norm_before_gate=False), so vLLM outputs will differ from transformers for this checkpoint"
        )
    limit = _get(config, "time_step_limit")
    if limit is not None and _time_step_limit_is_set(limit):
        warnings.append(f"time_step_limit={list(limit)} is not read by vLLM's Falcon-H1 (it uses no dt clamp)")
    for name in ("attention_bias", "mlp_bias", "projectors_bias"):
        if _get(config, name):
            errors.append(f"{name}=True: vLLM's Falcon-H1 builds these projections without bias")
    return errors, warnings


def _time_step_limit_is_set(limit: Any) -> bool:
    def as_float(v: Any) -> float:
        if isinstance(v, Mapping) and "__float__" in v:  # transformers' JSON encoding of inf/nan
            return float(v["__float__"])
        return float(v)

    lo, hi = (as_float(v) for v in limit)
    return lo > 0.0 or not math.isinf(hi)
