"""Falcon-H1R: a parallel-hybrid decoder where every layer runs attention and a Mamba-2 mixer side by side.

This file is the model, top to bottom (transformers' one-model-one-file style): each op's reference math, with
one call per op to the implementation that runs it. Sibling remote-code files hold the rest:
`cpu_ops_falcon_h1r.py` the CPU-speed implementations (hand-differentiated autograd Functions, row-blocked and
single-query attention, oneDNN inner products for float32 inference, the static-cache decode short cut),
`kernels_falcon_h1r.py` the seam to the optional CUDA kernels (mamba_ssm / causal_conv1d, taken for CUDA tensors
only), `checkpoint_falcon_h1r.py` strict loading.
Parameter names and shapes are exactly those of transformers' in-tree `falcon_h1`, so published Falcon-H1 /
Falcon-H1R checkpoints load unchanged. Where this file deliberately differs from the in-tree model:

- packed sequences (position_ids restarting at 0, `seq_idx`, or `cu_seq_lens_q`, as TRL's padding-free
  collator sends them) keep the SSM state and the conv window of each sequence apart, on every path;
- left padding is exact with `mamba_proj_bias=True` (pad positions are zeroed *after* in_proj, so the
  projection bias cannot leak through the causal conv);
- `time_step_limit` clamps dt in prefill and in single-token decode alike;
- `mamba_norm_before_gate` is honoured on every path, including the fused CUDA training kernel;
- `cache.batch_select_indices` also selects the conv and SSM states (needed to drop finished rows);
- given `inputs_embeds` are scaled by `embedding_multiplier` as looked-up ones are (in-tree skips it), so
  `inputs_embeds=get_input_embeddings()(ids)` gives what `input_ids=ids` gives.

Layer: h = input_layernorm(x)
       x = x + ssm_out_mult * mamba(h * ssm_in_mult) + attn_out_mult * attention(h * attn_in_mult)
       x = x + mlp(pre_ff_layernorm(x))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.cache_utils import DynamicCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel

from .checkpoint_falcon_h1r import load_strictly
from .configuration_falcon_h1r import FalconH1RConfig
from .cpu_ops_falcon_h1r import (
    causal_conv1d,
    chunk_diagonal_scan,
    fast_attention,
    inference_linear,
    is_traced,
    rms_norm,
    scaled_split,
    static_decode_inputs,
    static_decode_mask,
)
from .kernels_falcon_h1r import mamba_kernels_for

# What a saved folder's config.json maps the Auto classes to (the remote code of this folder).
AUTO_MAP = {
    "AutoConfig": "configuration_falcon_h1r.FalconH1RConfig",
    "AutoModel": "modeling_falcon_h1r.FalconH1RModel",
    "AutoModelForCausalLM": "modeling_falcon_h1r.FalconH1RForCausalLM",
}

# transformers 5.24 renamed the cache from `past_key_values` to `cache`, in forward() arguments, model outputs and
# generate()'s bookkeeping (the old names go in 5.40). We accept both names and hand the cache back under the name
# the running release reads, so one file serves every release from our lower bound on.
CACHE_NAME = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def _one_cache(cache, past_key_values):
    if cache is not None and past_key_values is not None:
        raise ValueError("Pass the cache once: as `cache` (transformers >= 5.24) or as `past_key_values`, not both.")
    return past_key_values if cache is None else cache


# ----------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------


class FalconH1RHybridCache(DynamicCache):
    """transformers' DynamicCache with one hybrid layer per decoder layer: growing KV for attention, a
    fixed-size conv window (the last `mamba_d_conv` inputs) and the SSM state for the Mamba mixer.

    The base class reorders all three for beam search but selects / repeats only the KV part; these two
    overrides keep rows of the conv and SSM states aligned with their KV rows.
    """

    def __init__(self, config: FalconH1RConfig):
        super().__init__(config=config)

    def _map_states(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        for layer in self.layers:
            for states, ready in (
                (layer.conv_states, layer.is_conv_states_initialized),
                (layer.recurrent_states, layer.is_recurrent_states_initialized),
            ):
                for idx, tensor in states.items():
                    if ready[idx] and tensor is not None:
                        states[idx] = fn(tensor)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._map_states(lambda t: t[indices.to(t.device)].contiguous())

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._map_states(lambda t: t.repeat_interleave(repeats, dim=0))


def mamba_states(cache, layer_idx: int) -> tuple[torch.Tensor | None, torch.Tensor | None, bool]:
    """(conv window, SSM state, whether the cache records past windows) of a layer; the states are None before the
    layer's first update. Read off the cache layer's own fields, which every supported release has
    (`Cache.get_conv_state` / `is_recording_past` arrived only in 5.2x)."""
    layer = cache.layers[layer_idx]
    if not layer.has_previous_state[0]:
        return None, None, layer.record_past
    return layer.conv_states[0], layer.recurrent_states[0], layer.record_past


# ----------------------------------------------------------------------------------------------------------
# Norms, rotary embedding, attention, MLP
# ----------------------------------------------------------------------------------------------------------


class FalconH1RLinear(nn.Linear):
    """nn.Linear (same parameters, and PEFT / quantizers treat it as one) whose float32 CPU inference runs
    oneDNN's inner product (`inference_linear`: up to twice as fast as F.linear on a decode step's few rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = inference_linear(x, self.weight, self.bias)
        return super().forward(x) if out is None else out


class FalconH1RRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # x / sqrt(mean(x^2) + eps) * weight, in float32
        return rms_norm(hidden_states, self.weight, self.variance_epsilon)


class FalconH1RRMSNormGated(nn.Module):
    """Group-wise RMSNorm with a SiLU gate, applied after (`norm_before_gate`) or before the norm."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, n_groups: int = 1, norm_before_gate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps
        self.n_groups = n_groups
        self.norm_before_gate = norm_before_gate

    def forward(self, hidden_states: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states, gate = hidden_states.float(), F.silu(gate.float())
        if not self.norm_before_gate:
            hidden_states = hidden_states * gate
        grouped = hidden_states.unflatten(-1, (self.n_groups, -1))  # each group normalised on its own
        weight = self.weight.float().view(self.n_groups, -1)
        hidden_states = rms_norm(grouped, weight, self.variance_epsilon).flatten(-2)
        if self.norm_before_gate:
            hidden_states = hidden_states * gate
        return hidden_states.to(input_dtype)


class FalconH1RRotaryEmbedding(nn.Module):
    def __init__(self, config: FalconH1RConfig, device: torch.device | None = None):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        rope_init_fn = self.compute_default_rope_parameters
        if self.rope_type != "default":
            rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = rope_init_fn(config, device)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)
        # read by `dynamic_rope_update` ("dynamic", "longrope": frequencies that follow the sequence length)
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings

    @staticmethod
    def compute_default_rope_parameters(
        config: FalconH1RConfig, device=None, *args, **kwargs
    ) -> tuple[torch.Tensor, float]:
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim)), 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (b, l, head_dim) in x's dtype: transformers' rotary-embedding interface."""
        freqs = position_ids[:, :, None].float() * self.inv_freq  # (b, l, head_dim / 2)
        cos, sin = freqs.cos() * self.attention_scaling, freqs.sin() * self.attention_scaling
        return torch.cat((cos, cos), dim=-1).to(x.dtype), torch.cat((sin, sin), dim=-1).to(x.dtype)


def rope_for_attention(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, l, d) cos / sin -> (b, 1, l, d) cos and signed_sin, computed once per forward for every layer: the sign of
    rotate_half goes into sin, so applying RoPE is one roll and one multiply-add."""
    half = sin.shape[-1] // 2
    signed_sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
    return cos[:, None], signed_sin[:, None]


def apply_rotary_pos_emb(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, where rotate_half(x) = (-x2, x1) = roll(x, d/2) with the sign in signed_sin."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(b, kv_heads, l, d) -> (b, kv_heads * n_rep, l, d)"""
    if n_rep == 1:
        return hidden_states
    b, kv_heads, length, d = hidden_states.shape
    return hidden_states[:, :, None].expand(b, kv_heads, n_rep, length, d).reshape(b, kv_heads * n_rep, length, d)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key, value = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    return torch.matmul(attn_weights, value).transpose(1, 2).contiguous(), attn_weights


class FalconH1RAttention(nn.Module):
    """Grouped-query attention with RoPE; keys are scaled by `key_multiplier` before RoPE (muP)."""

    def __init__(self, config: FalconH1RConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        # muP scales keys by key_multiplier before RoPE; RoPE is linear, so the factor moves into the softmax scale
        self.scaling = self.head_dim**-0.5 * config.key_multiplier
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        bias = config.attention_bias
        self.q_proj = FalconH1RLinear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = FalconH1RLinear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = FalconH1RLinear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.o_proj = FalconH1RLinear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=bias)

    def forward(self, hidden_states, position_embeddings, attention_mask, cache=None, **kwargs):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = apply_rotary_pos_emb(
            self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2), *position_embeddings
        )
        key = apply_rotary_pos_emb(self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2), *position_embeddings)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (b, kv_heads, l, d)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
        # softmax(q k^T * scaling + mask) v; on the CPU in row blocks or as a single query when that is faster
        attn_output = fast_attention(self, query, key, value, attention_mask)
        if attn_output is not None:
            return self.o_proj(attn_output.reshape(*input_shape, -1)), None
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.attention_dropout,
            scaling=self.scaling,
            **kwargs,
        )
        return self.o_proj(attn_output.reshape(*input_shape, -1)), attn_weights


class FalconH1RMLP(nn.Module):
    """SwiGLU: down(up(x) * silu(gate(x) * mlp_mult[0])) * mlp_mult[1]."""

    def __init__(self, config: FalconH1RConfig):
        super().__init__()
        self.gate_proj = FalconH1RLinear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = FalconH1RLinear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = FalconH1RLinear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.gate_multiplier, self.down_multiplier = config.mlp_multipliers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in-place scaling of fresh projection outputs: autograd keeps a Linear's inputs, not its output, so this is
        # safe in training and spares an allocation per multiplier
        gate = F.silu(self.gate_proj(x).mul_(self.gate_multiplier))
        return self.down_proj(self.up_proj(x) * gate).mul_(self.down_multiplier)


# ----------------------------------------------------------------------------------------------------------
# Mamba-2: the SSD scan in pure PyTorch (the plain recurrence, then the chunked form the model runs)
# ----------------------------------------------------------------------------------------------------------


def ssd_recurrence(x, dt, A, B, C, initial_state=None, seq_idx=None) -> tuple[torch.Tensor, torch.Tensor]:
    """What `ssd_chunk_scan` computes, one position at a time (the definition; O(l) sequential steps, for reading
    and testing). Same arguments and results as `ssd_chunk_scan`."""
    b, length, h, p = x.shape
    r = h // B.shape[2]
    B, C = B.float().repeat_interleave(r, dim=2), C.float().repeat_interleave(r, dim=2)  # (b, l, h, n)
    state = x.new_zeros(b, h, p, B.shape[-1]).float() if initial_state is None else initial_state.float()
    ys = []
    for t in range(length):
        if seq_idx is not None and t > 0:  # a new packed sequence starts from a zero state
            state = state * (seq_idx[:, t] == seq_idx[:, t - 1]).float()[:, None, None, None]
        decay = torch.exp(dt[:, t].float() * A.float())[..., None, None]  # (b, h, 1, 1)
        state = decay * state + (dt[:, t].float()[..., None] * x[:, t].float())[..., None] * B[:, t, :, None, :]
        ys.append((state * C[:, t, :, None, :]).sum(-1))  # y_t = h_t C_t: (b, h, p)
    return torch.stack(ys, dim=1), state


def segment_sum(x: torch.Tensor) -> torch.Tensor:
    """x: (..., T) -> (..., T, T) with [i, j] = x[j+1] + ... + x[i] for j <= i, and -inf above the diagonal."""
    x_cumsum = torch.cumsum(x, dim=-1)
    segsum = x_cumsum[..., :, None] - x_cumsum[..., None, :]
    causal = torch.ones(x.shape[-1], x.shape[-1], dtype=torch.bool, device=x.device).tril()
    return segsum.masked_fill(~causal, -torch.inf)


def ssd_chunk_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba-2 state-space duality (SSD) scan, chunked, in float32.

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,   y_t = h_t C_t          (per head; D skip added by the caller)

    x: (b, l, h, p)   dt: (b, l, h) (after softplus + clamp)   A: (h,) negative
    B, C: (b, l, g, n), each group of B/C serves r = h // g heads and is never repeated over them
    initial_state: (b, h, p, n)   seq_idx: (b, l) non-decreasing ids of packed sequences; no state crosses ids
    returns y: (b, l, h, p), final_state: (b, h, p, n)

    The result does not depend on `chunk_size` (up to rounding); it only trades the quadratic work inside
    chunks against the state passing between them. Internally heads are laid out as (g, r).
    """
    b, length, h, p = x.shape
    g, n = B.shape[-2:]
    r, q = h // g, chunk_size
    pad = (-length) % q
    c = (length + pad) // q

    # 0. pad to whole chunks (dt = 0 there: no decay, no input) and go head-major: (b, g, [r,] c, q, ...)
    def chunked(t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        if pad:
            t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(b, c, q, *t.shape[2:])

    # contiguous once, so that both matmuls below read x_dt in place instead of each copying it
    x_dt = (chunked(x) * chunked(dt)[..., None]).view(b, c, q, g, r, p).permute(0, 3, 4, 1, 2, 5).contiguous()
    B = chunked(B).permute(0, 3, 1, 2, 4)  # (b, g, c, q, n)
    C = chunked(C).permute(0, 3, 1, 2, 4)  # (b, g, c, q, n)
    dA = (chunked(dt) * A.float()).view(b, c, q, g, r).permute(0, 3, 4, 1, 2)  # (b, g, r, c, q)
    dA_cumsum = torch.cumsum(dA, dim=-1)
    if seq_idx is not None:
        seq = (F.pad(seq_idx, (0, pad), mode="replicate") if pad else seq_idx).view(b, 1, 1, c, q)
        # owner of the state after chunk z - 1 (z = 0: the initial state belongs to the first sequence)
        state_owner = torch.cat([seq[..., :1, 0], seq[..., -1]], dim=-1)  # (b, 1, 1, c + 1)

    # 1. within each chunk (diagonal blocks): y_l = sum_{s <= l} (C_l . B_s) exp(dA_{s+1} + ... + dA_l) (dt x)_s
    # The causal (and packed-sequence) mask goes on the scores, which the r heads of a group share, not on the
    # r times larger decay.
    scores = (C @ B.transpose(-1, -2)).masked_fill(~torch.ones(q, q, dtype=torch.bool, device=x.device).tril(), 0)
    if seq_idx is not None:
        scores = scores * (seq[..., :, None] == seq[..., None, :])[:, :, 0]
    y = chunk_diagonal_scan(scores, dA_cumsum, x_dt)  # (b, g, r, c, l, p) = (scores * exp(cs_l - cs_s)) @ x_dt

    # 2. each chunk's own contribution to the state at its end: S = sum_s exp(dA_{s+1} + ... + dA_end) (dt x)_s B_s^T
    decay_to_end = torch.exp(dA_cumsum[..., -1:] - dA_cumsum)  # (b, g, r, c, s)
    if seq_idx is not None:
        decay_to_end = decay_to_end * (seq == seq[..., -1:])
    # the decay rides on B (materialised per head either way): x_dt is read in place, B is not expanded and copied
    chunk_states = x_dt.transpose(-1, -2) @ (decay_to_end[..., None] * B[:, :, None])  # (b, g, r, c, p, n)

    # 3. pass states across chunks: the state entering chunk z is the decayed sum of all earlier chunk states
    if initial_state is None:
        initial_state = x_dt.new_zeros(b, h, p, n)
    states = torch.cat([initial_state.float().view(b, g, r, 1, p, n), chunk_states], dim=3)  # (b,g,r,c+1,p,n)
    chunk_decay = torch.exp(segment_sum(F.pad(dA_cumsum[..., -1], (1, 0))))  # (b, g, r, c + 1, c + 1) [to, from]
    if seq_idx is not None:
        chunk_decay = chunk_decay * (state_owner[..., :, None] == state_owner[..., None, :])
    # rows 0..c-1 give the states entering each chunk, row c the final state: two matmuls keep `entering` contiguous
    entering = (chunk_decay[..., :-1, :] @ states.flatten(-2)).view(b, g, r, c, p, n)
    final_state = chunk_decay[..., -1:, :] @ states.flatten(-2)  # (b, g, r, 1, p * n)

    # 4. the entering state's contribution to each position: y_l += exp(dA_1 + ... + dA_l) state C_l
    decay_from_start = torch.exp(dA_cumsum)  # (b, g, r, c, l)
    if seq_idx is not None:
        decay_from_start = decay_from_start * (seq == state_owner[..., :-1, None])
    C_decayed = decay_from_start[..., None] * C[:, :, None]  # (b, g, r, c, l, n); the decay rides on C, not on y
    y = torch.baddbmm(y.flatten(0, 3), C_decayed.flatten(0, 3), entering.flatten(0, 3).transpose(-1, -2))

    y = y.view(b, g, r, c, q, p).permute(0, 3, 4, 1, 2, 5).reshape(b, c * q, h, p)[:, :length]
    return y, final_state.reshape(b, h, p, n)


# ----------------------------------------------------------------------------------------------------------
# Mamba-2 mixer
# ----------------------------------------------------------------------------------------------------------


# The pure-PyTorch scan's result does not depend on its chunk size; on CPU, 64 beats the configured 256 by ~25%
# (less exp/mask work inside chunks, the same state passing between them).
SCAN_CHUNK_SIZE = 64


def compute_mup_vector(config: FalconH1RConfig) -> torch.Tensor:
    """Per-channel factors for the in_proj output [z | x | B | C | dt] from the five `ssm_multipliers`.

    Without an in_proj bias, in_proj(h * ssm_in_multiplier) == in_proj(h) * ssm_in_multiplier, so that
    scalar is folded in here too (one elementwise pass fewer; the state dict is unchanged)."""
    gn = config.mamba_n_groups * config.mamba_d_state
    sizes = [config.mamba_d_ssm, config.mamba_d_ssm, gn, gn, config.mamba_n_heads]
    vector = torch.cat([torch.full((size,), float(m)) for size, m in zip(sizes, config.ssm_multipliers)])
    return vector if config.mamba_proj_bias else vector * config.ssm_in_multiplier


class FalconH1RMixer(nn.Module):
    """Mamba-2 mixer: in_proj -> (z, xBC, dt); causal conv + SiLU on xBC; SSD scan; D skip; gate; out_proj."""

    def __init__(self, config: FalconH1RConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.mamba_n_heads
        self.head_dim = config.mamba_d_head
        self.n_groups = config.mamba_n_groups
        self.ssm_state_size = config.mamba_d_state
        self.intermediate_size = config.mamba_d_ssm
        self.conv_kernel_size = config.mamba_d_conv
        self.chunk_size = config.mamba_chunk_size
        self.scan_chunk_size = min(config.mamba_chunk_size, SCAN_CHUNK_SIZE)
        self.time_step_limit = tuple(config.time_step_limit)
        self.mamba_rms_norm = config.mamba_rms_norm
        self.norm_before_gate = config.mamba_norm_before_gate
        self.input_multiplier = config.ssm_in_multiplier if config.mamba_proj_bias else 1.0  # else in mup_vector
        self.conv_dim = self.intermediate_size + 2 * self.n_groups * self.ssm_state_size

        self.in_proj = FalconH1RLinear(
            config.hidden_size, self.intermediate_size + self.conv_dim + self.num_heads, bias=config.mamba_proj_bias
        )
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            kernel_size=self.conv_kernel_size,
            groups=self.conv_dim,
            padding=self.conv_kernel_size - 1,
            bias=config.mamba_conv_bias,
        )
        self.dt_bias = nn.Parameter(torch.ones(self.num_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.num_heads + 1, dtype=torch.float32)))
        self.D = nn.Parameter(torch.ones(self.num_heads))
        if config.mamba_rms_norm:
            self.norm = FalconH1RRMSNormGated(
                self.intermediate_size, config.rms_norm_eps, self.n_groups, config.mamba_norm_before_gate
            )
        self.out_proj = FalconH1RLinear(self.intermediate_size, config.hidden_size, bias=config.projectors_bias)
        self.register_buffer("mup_vector", compute_mup_vector(config), persistent=False)

    def _clamped_dt(self, dt: torch.Tensor) -> torch.Tensor:
        dt = F.softplus(dt.float() + self.dt_bias.float())
        low, high = self.time_step_limit
        return dt if (low, high) == (0.0, float("inf")) else dt.clamp(low, high)

    def _gate(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.mamba_rms_norm:
            return self.norm(y, z)
        return (y.float() * F.silu(z.float())).to(y.dtype)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache: FalconH1RHybridCache | None = None,
        pad_mask: torch.Tensor | None = None,
        seq_idx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states: (b, l, hidden) already normalised; pad_mask: (b, l) 1 = token, 0 = padding."""
        batch, length, _ = hidden_states.shape
        dtype = hidden_states.dtype
        if self.input_multiplier != 1.0:
            hidden_states = hidden_states * self.input_multiplier
        zxbcdt = self.in_proj(hidden_states)
        if pad_mask is not None:  # after in_proj, so a projection bias at pad positions cannot leak
            zxbcdt = zxbcdt * pad_mask[..., None].to(dtype)

        kernels = mamba_kernels_for(hidden_states)
        if kernels is not None and self.training and cache is None and pad_mask is None:
            return self._fused_training_forward(kernels, zxbcdt.mul_(self.mup_vector), seq_idx)

        sizes = [self.intermediate_size, self.conv_dim, self.num_heads]
        z, xBC, dt = scaled_split(zxbcdt, self.mup_vector, sizes)  # (zxbcdt * mup_vector).split(sizes)
        conv_state, ssm_state, recording = (None, None, False) if cache is None else mamba_states(cache, self.layer_idx)
        if length == 1 and conv_state is not None and ssm_state is not None and not recording:
            y = self._decode_step(kernels, z[:, 0], xBC[:, 0], dt[:, 0], conv_state, ssm_state)
            return self.out_proj(y[:, None].to(dtype))

        # 1. causal depthwise conv over xBC (b, l, conv_dim), continuing from the cached window when there is one:
        #    out[t, c] = bias[c] + sum_j weight[c, j] * xBC[t - (k - 1 - j), c], no tap across packed sequences
        if cache is not None:  # the cache keeps the window channels-first, (b, conv_dim, k)
            window = self.conv_kernel_size
            xBC = cache.update_conv_state(xBC.transpose(1, 2), self.layer_idx, conv_kernel_size=window)
            xBC = xBC.transpose(1, 2)
        context = xBC.shape[1] - length  # cached positions prepended by the cache, if any
        conv_seq_idx = None if seq_idx is None else F.pad(seq_idx, (context, 0), mode="replicate")
        if kernels is not None:
            xBC = kernels.causal_conv1d_fn(
                xBC.transpose(1, 2).contiguous(),
                self.conv1d.weight.squeeze(1),
                self.conv1d.bias,
                seq_idx=conv_seq_idx,
                activation="silu",
            ).transpose(1, 2)
        else:
            xBC = F.silu(causal_conv1d(xBC, self.conv1d.weight.squeeze(1), self.conv1d.bias, conv_seq_idx))
        xBC = xBC[:, context:]  # (b, l, conv_dim)
        if pad_mask is not None:
            xBC = xBC * pad_mask[..., None].to(xBC.dtype)
        gn = self.n_groups * self.ssm_state_size
        x, B, C = xBC.split([self.intermediate_size, gn, gn], dim=-1)

        # 2. SSD scan over the sequence, from the cached state when there is one
        x = x.reshape(batch, length, self.num_heads, self.head_dim)
        B = B.reshape(batch, length, self.n_groups, self.ssm_state_size)
        C = C.reshape(batch, length, self.n_groups, self.ssm_state_size)
        A = -torch.exp(self.A_log.float())
        if kernels is not None:
            y, final_state = kernels.mamba_chunk_scan_combined(
                x, dt, A, B, C, self.chunk_size, D=self.D, dt_bias=self.dt_bias, initial_states=ssm_state,
                seq_idx=None if seq_idx is None else seq_idx.to(torch.int32), dt_softplus=True,
                dt_limit=self.time_step_limit, return_final_states=True,
            )  # fmt: skip
        else:
            dt = self._clamped_dt(dt)
            chunk = min(self.scan_chunk_size, length)  # a short prompt is one chunk, not padded to a full one
            y, final_state = ssd_chunk_scan(x, dt, A, B, C, chunk, ssm_state, seq_idx)
            y = torch.addcmul(y, x.float(), self.D.float()[:, None])
        if cache is not None:
            cache.update_recurrent_state(final_state, self.layer_idx)  # kept in float32 across decode steps

        # 3. gate (optionally through the group-wise RMSNorm) and project out
        y = self._gate(y.reshape(batch, length, -1).to(dtype), z)
        return self.out_proj(y)

    def _decode_step(self, kernels, z, xBC, dt, conv_state, ssm_state) -> torch.Tensor:
        """One token: roll the conv window and advance the SSM state in place. Inputs are (b, channels)."""
        batch = xBC.shape[0]
        weight = self.conv1d.weight.squeeze(1)  # (conv_dim, k)
        if kernels is not None:
            xBC = kernels.causal_conv1d_update(xBC, conv_state, weight, self.conv1d.bias, activation="silu")
        else:  # slide the window (the last d_conv inputs) by one and apply the depthwise filter
            conv_state.copy_(torch.cat([conv_state[:, :, 1:], xBC[:, :, None]], dim=-1))
            xBC = (conv_state * weight).sum(-1)
            xBC = F.silu(xBC if self.conv1d.bias is None else xBC + self.conv1d.bias)
        g, r, p, n = self.n_groups, self.num_heads // self.n_groups, self.head_dim, self.ssm_state_size
        x, B, C = xBC.split([self.intermediate_size, g * n, g * n], dim=-1)
        dt = self._clamped_dt(dt)  # (b, h), time_step_limit honoured in decode too
        A = -torch.exp(self.A_log.float())
        if kernels is not None:
            y = kernels.selective_state_update(
                ssm_state,
                x.view(batch, -1, p),
                dt[..., None].expand(-1, -1, p),
                A[:, None, None].expand(-1, p, n),
                B.view(batch, g, n),
                C.view(batch, g, n),
                D=self.D[:, None].expand(-1, p),
                dt_softplus=False,
            )
            return self._gate(y.reshape(batch, -1), z)
        # h <- exp(dt A) h + dt x B^T ;  y = h C + D x   (in place, float32; heads as (g, r): B, C not repeated)
        state = ssm_state.view(batch, g, r, p, n)
        x = x.float().view(batch, g, r, p)
        x_dt = x * dt.view(batch, g, r, 1)
        state.mul_(torch.exp(dt * A).view(batch, g, r, 1, 1)).addcmul_(
            x_dt[..., None], B.float().view(batch, g, 1, 1, n)
        )
        # h C for all r heads of a group as one (1, n) @ (n, r p) product: BLAS runs that ~4x faster on the CPU than
        # r p separate (n,) dot products, and the state is the largest thing a decode step reads
        hC = torch.bmm(C.float().reshape(batch * g, 1, n), state.view(batch * g, r * p, n).transpose(1, 2))
        y = hC.view(batch, g, r, p) + x * self.D.float().view(g, r, 1)
        return self._gate(y.reshape(batch, -1).to(z.dtype), z)

    def _fused_training_forward(self, kernels, zxbcdt, seq_idx) -> torch.Tensor:
        """CUDA training path: conv, scan, gate/norm and out_proj in one kernel (mamba_ssm)."""
        return kernels.mamba_split_conv1d_scan_combined(
            zxbcdt,
            self.conv1d.weight.squeeze(1),
            self.conv1d.bias,
            self.dt_bias,
            -torch.exp(self.A_log.float()),
            D=self.D,
            chunk_size=self.chunk_size,
            seq_idx=None if seq_idx is None else seq_idx.to(torch.int32),
            dt_limit=self.time_step_limit,
            activation="silu",
            rmsnorm_weight=self.norm.weight if self.mamba_rms_norm else None,
            rmsnorm_eps=self.norm.variance_epsilon if self.mamba_rms_norm else 1e-6,
            outproj_weight=self.out_proj.weight,
            outproj_bias=self.out_proj.bias,
            headdim=self.head_dim,
            ngroups=self.n_groups,
            norm_before_gate=self.norm_before_gate,  # the in-tree model hard-codes False here
        )


# ----------------------------------------------------------------------------------------------------------
# Decoder layer and models
# ----------------------------------------------------------------------------------------------------------


class FalconH1RDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: FalconH1RConfig, layer_idx: int):
        super().__init__()
        self.feed_forward = FalconH1RMLP(config)
        self.mamba = FalconH1RMixer(config, layer_idx)
        self.self_attn = FalconH1RAttention(config, layer_idx)
        self.input_layernorm = FalconH1RRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.pre_ff_layernorm = FalconH1RRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.attention_in_multiplier = config.attention_in_multiplier
        self.attn_out_multiplier = config.attention_out_multiplier
        self.ssm_out_multiplier = config.ssm_out_multiplier

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask=None,
        pad_mask: torch.Tensor | None = None,
        seq_idx: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: FalconH1RHybridCache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        mamba_out = self.mamba(hidden_states, cache=cache, pad_mask=pad_mask, seq_idx=seq_idx)
        attn_in = hidden_states if self.attention_in_multiplier == 1.0 else hidden_states * self.attention_in_multiplier
        attn_out, attn_weights = self.self_attn(
            attn_in,
            position_embeddings=position_embeddings,
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = residual.add(mamba_out, alpha=self.ssm_out_multiplier).add_(
            attn_out, alpha=self.attn_out_multiplier
        )
        hidden_states = hidden_states + self.feed_forward(self.pre_ff_layernorm(hidden_states))
        return hidden_states, attn_weights


class FalconH1RPreTrainedModel(PreTrainedModel):
    config_class = FalconH1RConfig
    config: FalconH1RConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["FalconH1RDecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = False
    _is_stateful = True
    _can_compile_fullgraph = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader, made strict (checkpoint_falcon_h1r.py): a truncated shard, or a missing or
        mis-shaped tensor, is an error naming the tensor or file (in-tree would initialise it with a warning)."""
        return load_strictly(super().from_pretrained, cls, pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Write the whole auto_map (config, base model, causal LM), whichever class is being saved.
        self.config.auto_map = dict(AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # Linear/Conv1d ~ N(0, initializer_range), Embedding, norms = 1, RoPE
        if isinstance(module, FalconH1RMixer):
            init.ones_(module.dt_bias)
            init.copy_(module.A_log, torch.log(torch.arange(1, module.num_heads + 1, dtype=torch.float32)))
            init.ones_(module.D)
            init.copy_(module.mup_vector, compute_mup_vector(self.config))


def _packed_seq_idx(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Sequence ids from packed position_ids (a new sequence wherever the position does not advance by 1)."""
    starts = position_ids[:, 1:] != position_ids[:, :-1] + 1
    if not is_traced(starts) and not bool(starts.any()):
        return None
    return F.pad(starts.cumsum(-1), (1, 0)).to(torch.int32)


def _seq_idx_from_cu_seqlens(cu_seqlens: torch.Tensor, length: int) -> torch.Tensor:
    """(n + 1,) cumulative lengths of sequences packed in one row -> (1, length) sequence ids."""
    positions = torch.arange(length, device=cu_seqlens.device)
    return torch.bucketize(positions, cu_seqlens[1:].to(positions.dtype), right=True)[None].to(torch.int32)


def build_masks(config, inputs_embeds, attention_mask, cache, position_ids, past_seen: int) -> tuple:
    """(attention mask for the attention branch, (b, l) padding mask for the Mamba branch or None)."""
    length = inputs_embeds.shape[1]
    traced = is_traced(inputs_embeds)
    pad_mask = None
    if attention_mask is not None and attention_mask.dim() == 2 and length > 1:
        pad_mask = attention_mask[:, -length:]
        if not traced and bool(pad_mask.all()):
            pad_mask = None
    static = cache is not None and cache.is_compileable
    unpadded = attention_mask is None or (not traced and bool(attention_mask.all()))
    if length == 1 and past_seen > 0 and not static and unpadded:
        return None, pad_mask  # one new token without padding attends to everything in a dynamic cache
    # An empty dynamic cache changes nothing in the mask but would switch off the packed-sequence block mask; a static
    # cache sizes the mask to its preallocated length, so it always goes in. Positional arguments: the cache argument
    # is `past_key_values` before transformers 5.24 and `cache` after.
    mask_cache = cache if past_seen > 0 or static else None
    causal_mask = create_causal_mask(config, inputs_embeds, attention_mask, mask_cache, position_ids)
    return causal_mask, pad_mask


def _return_dict(config, kwargs: dict) -> bool:
    return_dict = kwargs.pop("return_dict", None)
    return config.return_dict if return_dict is None else return_dict


class FalconH1RModel(FalconH1RPreTrainedModel):
    def __init__(self, config: FalconH1RConfig):
        if getattr(config, "_attn_implementation", None) == "vllm":
            # vLLM's generic Transformers backend (its fallback for an architecture name it does not know) swaps in its
            # own attention and KV cache but knows nothing of the Mamba states: it would load and answer wrongly.
            raise ValueError(
                "vLLM's generic Transformers backend cannot run Falcon-H1R (it keeps no Mamba state). Fix: pip install "
                "falcon-h1r where vLLM runs (its plugin maps FalconH1RForCausalLM to vLLM's own Falcon-H1)."
            )
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(FalconH1RDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_layernorm = FalconH1RRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = FalconH1RRotaryEmbedding(config)
        self.embedding_multiplier = config.embedding_multiplier
        self.lm_head_multiplier = config.lm_head_multiplier
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: FalconH1RHybridCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        seq_idx: torch.Tensor | None = None,
        past_key_values: FalconH1RHybridCache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("FalconH1RModel: pass exactly one of input_ids or inputs_embeds.")
        cache = _one_cache(cache, past_key_values)
        return_dict = _return_dict(self.config, kwargs)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache, cache = False, None  # the backward replays each layer: a cache would be written twice
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        # Unlike in-tree (which scales only the embeddings it looks up itself), given `inputs_embeds` are scaled too, so
        # that inputs_embeds=get_input_embeddings()(ids) gives what input_ids=ids gives.
        hidden_states = inputs_embeds * self.embedding_multiplier
        batch, length = hidden_states.shape[:2]

        if use_cache and cache is None:
            cache = FalconH1RHybridCache(self.config)
        past_seen = cache.get_seq_length() if cache is not None else 0
        # Packed rows (TRL's padding-free collator): ids of the sequences for the Mamba branch; attention gets its
        # block mask from position_ids in create_causal_mask, or from cu_seq_lens in the flash-attention kwargs.
        if seq_idx is None and length > 1 and past_seen == 0:
            if kwargs.get("cu_seq_lens_q") is not None and batch == 1:
                seq_idx = _seq_idx_from_cu_seqlens(kwargs["cu_seq_lens_q"], length)
            elif attention_mask is None and position_ids is not None:
                seq_idx = _packed_seq_idx(position_ids.expand(batch, -1))
        if position_ids is None:
            position_ids = torch.arange(past_seen, past_seen + length, device=hidden_states.device)[None]

        if isinstance(attention_mask, dict):  # built ahead by generate() for static caches: create_masks_for_generate
            causal_mask, pad_mask = attention_mask["full_attention"], attention_mask["linear_attention"]
        else:
            causal_mask, pad_mask = build_masks(
                self.config, hidden_states, attention_mask, cache, position_ids, past_seen
            )
        position_embeddings = rope_for_attention(*self.rotary_emb(hidden_states, position_ids))

        all_hidden_states, all_attentions = [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            hidden_states, attn_weights = layer(
                hidden_states,
                attention_mask=causal_mask,
                pad_mask=pad_mask,
                seq_idx=seq_idx,
                position_embeddings=position_embeddings,
                cache=cache,
                position_ids=position_ids,
                output_attentions=output_attentions,
                **kwargs,
            )
            if output_attentions:
                all_attentions.append(attn_weights)
        hidden_states = self.final_layernorm(hidden_states)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)

        output = BaseModelOutputWithPast(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
            **{CACHE_NAME: cache if use_cache else None},
        )
        return output if return_dict else output.to_tuple()


class FalconH1RForCausalLM(FalconH1RPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: FalconH1RConfig):
        super().__init__(config)
        self.model = FalconH1RModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = FalconH1RLinear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: FalconH1RHybridCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        past_key_values: FalconH1RHybridCache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        return_dict = _return_dict(self.config, kwargs)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=_one_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :]).mul_(self.model.lm_head_multiplier)

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{CACHE_NAME: outputs[CACHE_NAME] if CACHE_NAME in outputs else None},
        )
        return output if return_dict else output.to_tuple()

    @staticmethod
    def create_masks_for_generate(
        config, inputs_embeds, attention_mask, cache=None, position_ids=None, past_key_values=None, **_
    ):
        """Used by generate() with a static cache: both masks, built ahead of the (compilable) forward."""
        cache = _one_cache(cache, past_key_values)
        past_seen = cache.get_seq_length() if cache is not None else 0
        if inputs_embeds.shape[1] == 1 and config._attn_implementation == "sdpa":  # a decode step
            return {
                "full_attention": static_decode_mask(cache, past_seen, attention_mask, inputs_embeds),
                "linear_attention": None,
            }
        causal_mask, pad_mask = build_masks(
            config.get_text_config(), inputs_embeds, attention_mask, cache, position_ids, past_seen
        )
        return {"full_attention": causal_mask, "linear_attention": pad_mask}

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        cache=None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        past_key_values=None,
        **kwargs,
    ) -> dict:
        """generate()'s inputs for one step. A plain decode step over a static cache (the compiled path) takes a
        short cut to the same inputs: the generic preparation costs ~0.3 ms per token on a CPU, about a tenth of a
        compiled step of a small model. Everything else goes through the generic preparation."""
        cache = _one_cache(cache, past_key_values)
        if is_first_iteration or next_sequence_length != 1 or not getattr(cache, "is_compileable", False):
            inputs = None
        else:
            inputs = static_decode_inputs(self, input_ids, cache, attention_mask, kwargs)
        if inputs is None:  # positional: the cache parameter's name depends on the transformers release
            return super().prepare_inputs_for_generation(
                input_ids, next_sequence_length, cache, attention_mask, inputs_embeds, is_first_iteration, **kwargs
            )
        return {**inputs, CACHE_NAME: cache}

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs) -> None:
        # generate() would build a plain DynamicCache; ours also selects conv/SSM rows (see FalconH1RHybridCache).
        super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        cache = model_kwargs.get(CACHE_NAME)
        if type(cache) is DynamicCache and not getattr(cache, "_is_user_defined", False):
            model_kwargs[CACHE_NAME] = FalconH1RHybridCache(self.config)


FalconH1RConfig.register_for_auto_class()
FalconH1RModel.register_for_auto_class("AutoModel")
FalconH1RForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["FalconH1RForCausalLM", "FalconH1RHybridCache", "FalconH1RModel", "FalconH1RPreTrainedModel"]
