"""FalconH1R configuration.

Field names, defaults and meanings are those of transformers' in-tree `FalconH1Config`, so a published
Falcon-H1 / Falcon-H1R `config.json` (model_type `falcon_h1`) loads into this class unchanged. Unlike the
in-tree config, every inconsistent value is refused at construction with a `ValueError` naming the field.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import PreTrainedConfig


class FalconH1RConfig(PreTrainedConfig):
    r"""
    Configuration of a Falcon-H1R model: every decoder layer runs attention and a Mamba-2 mixer in parallel
    on the same normalised input, followed by a SwiGLU MLP; muP multipliers scale each branch.

    Attention: `hidden_size`, `num_attention_heads`, `num_key_value_heads` (GQA), `head_dim` (may differ
    from hidden_size / num_attention_heads; defaults to that ratio), RoPE via `rope_parameters` (Falcon-H1
    uses a very large `rope_theta`).
    Mamba-2: `mamba_d_ssm` (inner width; `mamba_expand * hidden_size` when None) = `mamba_n_heads *
    mamba_d_head`, `mamba_n_groups` groups of B/C of size `mamba_d_state`, depthwise causal conv of width
    `mamba_d_conv`, chunk size of the SSD scan `mamba_chunk_size`, `time_step_limit` clamps dt after
    softplus, `mamba_rms_norm` picks the gated RMSNorm (group-wise) over a plain `y * silu(z)` gate, and
    `mamba_norm_before_gate` the order inside that norm.
    muP: `embedding_multiplier`, `lm_head_multiplier`, `attention_in_multiplier`, `attention_out_multiplier`,
    `key_multiplier`, `ssm_in_multiplier`, `ssm_out_multiplier`, `ssm_multipliers` (5 factors for the
    [z | x | B | C | dt] segments of the Mamba in_proj output), `mlp_multipliers` ([gate, down]).
    """

    model_type = "falcon_h1r"
    attribute_map = {"layer_types": "layers_block_type"}
    keys_to_ignore_at_inference = ["past_key_values"]
    # Tensor parallelism: the embedding is split by rows, like in-tree (so tied embeddings follow lm_head's plan).
    base_model_tp_plan = {"embed_tokens": "embedding_rowwise"}

    vocab_size: int = 128000
    tie_word_embeddings: bool = False
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 8
    head_dim: int | None = None
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    use_cache: bool | None = True
    num_logits_to_keep: int | None = 1
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    max_position_embeddings: int = 8192
    attention_dropout: float | int | None = 0.0
    attention_bias: bool = False
    mlp_bias: bool = False
    projectors_bias: bool | None = False
    rope_parameters: dict | None = None
    mamba_d_ssm: int | None = 1024
    mamba_n_heads: int | None = 128
    mamba_d_head: str | int | None = "auto"
    mamba_n_groups: int | None = 1
    mamba_d_state: int | None = 256
    mamba_d_conv: int | None = 4
    mamba_expand: int | None = 2
    mamba_chunk_size: int | None = 256
    mamba_conv_bias: bool | None = True
    mamba_proj_bias: bool | None = False
    mamba_norm_before_gate: bool | None = True
    mamba_rms_norm: bool | None = False
    time_step_limit: list[float] | tuple[float, float] | None = (0.0, float("inf"))
    lm_head_multiplier: float | None = 1.0
    embedding_multiplier: float | None = 1.0
    mlp_multipliers: list[float] | None = None
    key_multiplier: float | None = 1.0
    attention_out_multiplier: float | None = 1.0
    attention_in_multiplier: float | None = 1.0
    ssm_multipliers: list[float] | None = None
    ssm_in_multiplier: float | None = 1.0
    ssm_out_multiplier: float | None = 1.0

    def __post_init__(self, **kwargs: Any) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.mamba_d_ssm is None:
            self.mamba_d_ssm = int(self.mamba_expand * self.hidden_size)
        if self.mamba_d_head == "auto" and self.mamba_n_heads:
            self.mamba_d_head = self.mamba_d_ssm // self.mamba_n_heads
        if self.head_dim is None and self.num_attention_heads:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.mlp_multipliers is None:
            self.mlp_multipliers = [1.0, 1.0]
        if self.ssm_multipliers is None:
            self.ssm_multipliers = [1.0] * 5
        self.mlp_multipliers = [float(m) for m in self.mlp_multipliers]
        self.ssm_multipliers = [float(m) for m in self.ssm_multipliers]
        if self.time_step_limit is None:
            self.time_step_limit = (0.0, float("inf"))
        self.time_step_limit = tuple(float(t) for t in self.time_step_limit)
        # The base class folds a top-level `rope_theta` (as published Falcon-H1 configs store it, 1e11) into
        # `rope_parameters`, with the in-tree default of 1e4 when there is none.
        super().__post_init__(**kwargs)
        self._validate_falcon_h1r()

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        # (0, inf) is "no clamp", every reader's default when the key is absent. JSON has no infinity: transformers
        # would write {"__float__": "Infinity"}, which other tools (llama.cpp's converter, plain json readers) cannot
        # read, so the no-op limit is left out of config.json.
        if tuple(out.get("time_step_limit") or ()) == (0.0, float("inf")):
            del out["time_step_limit"]
        return out

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict[str, Any], dict[str, Any]]:
        # A published Falcon-H1 / Falcon-H1R config says model_type `falcon_h1`: the same fields, read as ours (without
        # transformers' "model of type falcon_h1 to instantiate a model of type falcon_h1r" warning).
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") == "falcon_h1":
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    @property
    def layers_block_type(self) -> list[str]:
        # Every Falcon-H1 layer is hybrid: attention and Mamba-2 side by side.
        return ["hybrid"] * self.num_hidden_layers

    def _validate_falcon_h1r(self) -> None:
        def fail(field: str, problem: str, fix: str) -> None:
            raise ValueError(f"FalconH1RConfig.{field}: {problem}. Fix: {fix}.")

        positive = [
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "max_position_embeddings", "mamba_d_ssm", "mamba_n_heads",
            "mamba_d_head", "mamba_n_groups", "mamba_d_state", "mamba_d_conv", "mamba_chunk_size",
        ]  # fmt: skip
        for field in positive:
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(field, f"must be a positive integer, got {value!r}", "use a size > 0")
        if self.num_attention_heads % self.num_key_value_heads:
            fail(
                "num_key_value_heads",
                f"{self.num_key_value_heads} does not divide num_attention_heads={self.num_attention_heads}",
                "choose a divisor of num_attention_heads (grouped-query attention)",
            )
        if self.head_dim % 2:
            fail("head_dim", f"must be even for rotary embeddings, got {self.head_dim}", "use an even head_dim")
        if self.mamba_n_heads * self.mamba_d_head != self.mamba_d_ssm:
            fail(
                "mamba_d_head",
                f"mamba_n_heads * mamba_d_head = {self.mamba_n_heads} * {self.mamba_d_head} != mamba_d_ssm={self.mamba_d_ssm}",
                "set mamba_d_head = mamba_d_ssm // mamba_n_heads (or 'auto') with mamba_n_heads dividing mamba_d_ssm",
            )
        if self.mamba_n_heads % self.mamba_n_groups:
            fail(
                "mamba_n_groups",
                f"{self.mamba_n_groups} does not divide mamba_n_heads={self.mamba_n_heads}",
                "each B/C group must serve a whole number of heads",
            )
        if self.mamba_rms_norm and self.mamba_d_ssm % self.mamba_n_groups:
            fail("mamba_n_groups", f"does not divide mamba_d_ssm={self.mamba_d_ssm}", "the gated norm is group-wise")
        if len(self.ssm_multipliers) != 5:
            fail(
                "ssm_multipliers",
                f"needs 5 entries for the [z, x, B, C, dt] segments, got {len(self.ssm_multipliers)}",
                "pass a list of 5 floats",
            )
        if len(self.mlp_multipliers) != 2:
            fail("mlp_multipliers", f"needs 2 entries [gate, down], got {len(self.mlp_multipliers)}", "pass 2 floats")
        limit = self.time_step_limit
        if len(limit) != 2 or not 0.0 <= limit[0] <= limit[1]:
            fail(
                "time_step_limit",
                f"must be (min, max) with 0 <= min <= max, got {self.time_step_limit}",
                "e.g. (0.0, inf)",
            )
        scalars = [
            "embedding_multiplier", "lm_head_multiplier", "key_multiplier", "attention_in_multiplier",
            "attention_out_multiplier", "ssm_in_multiplier", "ssm_out_multiplier", "rms_norm_eps",
        ]  # fmt: skip
        for field in scalars + ["ssm_multipliers", "mlp_multipliers"]:
            values = getattr(self, field)
            for value in values if isinstance(values, list) else [values]:
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    fail(field, f"must be a finite number, got {value!r}", "use a finite float")
        if self.hidden_act != "silu":
            fail("hidden_act", f"only 'silu' is supported, got {self.hidden_act!r}", "set hidden_act='silu'")


__all__ = ["FalconH1RConfig"]
