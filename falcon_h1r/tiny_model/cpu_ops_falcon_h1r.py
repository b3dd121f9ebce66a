"""CPU-speed implementations of Falcon-H1R's ops (the CUDA ones are behind `kernels_falcon_h1r.py`).

`modeling_falcon_h1r.py` shows each op's reference math and calls one function from here per op. What is here
computes the same result faster on a CPU: hand-differentiated autograd Functions (RMSNorm, row-blocked causal
attention, causal conv, the within-chunk SSD scan, the scaled in_proj split), single-query decode attention, oneDNN
inner products for float32 inference, and the short cut generate() takes through a static-cache decode step. Each
one states what it saves, measured on the CPU (bench/); tests/test_modeling_autograd.py checks every backward
against autograd.
Like the other remote-code files it imports only torch and transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def is_traced(t: torch.Tensor) -> bool:
    """True under torch.compile / torch.export / fx, where Python cannot branch on a tensor's values: such shortcuts
    are skipped there and the general path (same result) is traced instead."""
    return torch.compiler.is_compiling() or isinstance(t, (torch._subclasses.FakeTensor, torch.fx.Proxy))


# ----------------------------------------------------------------------------------------------------------
# Linear layers
# ----------------------------------------------------------------------------------------------------------


ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def inference_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """x @ weight.T + bias through oneDNN's inner product, for float32 CPU inference; None where it does not apply.

    F.linear runs MKL's sgemm, slow on the few rows a decode step has: on a 2-core AMD EPYC (AVX2) a 32 x 768 by
    768 x 5000 product takes 4.8 ms there and 2.4 ms in oneDNN (1.5 vs 0.3 ms for one row), on the plain weight,
    so nothing is packed or copied. Results differ from F.linear only in summation order (~1e-6 relative).
    Training (grad enabled), other dtypes and devices, and traced graphs keep F.linear.
    """
    if not ONEDNN_LINEAR or torch.is_grad_enabled() or x.device.type != "cpu" or is_traced(x):
        return None
    if x.dtype != torch.float32 or weight.dtype != torch.float32:  # bf16 fails to build a primitive on AVX2 CPUs
        return None
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


# ----------------------------------------------------------------------------------------------------------
# RMSNorm
# ----------------------------------------------------------------------------------------------------------


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """bf16 / fp16 -> float32; float32 and float64 stay as they are."""
    return t.float() if t.element_size() < 4 else t


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm over the last dim (at least float32 inside), times `weight` shaped like x's trailing dims.

    Hand-differentiated: autograd through the composite RMSNorm runs ~12 elementwise passes in the backward
    (pow, mean, rsqrt and their gradients; ~3.5 ms for a 4x512x256 norm here, the forward takes 0.3 ms);
    this backward runs about half as many and keeps only x and the per-row inverse RMS.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x_up = _upcast(x)
        inv_rms = torch.linalg.vector_norm(x_up, dim=-1, keepdim=True).square_().div_(x.shape[-1]).add_(eps).rsqrt_()
        ctx.save_for_backward(x, weight, inv_rms)
        return (x_up * inv_rms).mul_(_upcast(weight)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        # n = x * inv_rms;  dx = inv_rms * (dn - n * mean(dn * n)) with dn = grad * weight;  dweight = sum(grad * n)
        x, weight, inv_rms = ctx.saved_tensors
        grad = _upcast(grad)
        normed = _upcast(x) * inv_rms
        grad_normed = grad * _upcast(weight)
        grad_weight = (grad * normed).sum(tuple(range(x.dim() - weight.dim())))
        dot = (grad_normed * normed).mean(-1, keepdim=True)
        grad_x = grad_normed.sub_(normed.mul_(dot)).mul_(inv_rms)
        return grad_x.to(x.dtype), grad_weight.to(weight.dtype), None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / rms(x) * weight over the last dim, in at least float32 (weight may cover several trailing dims)."""
    if not torch.is_grad_enabled() and weight.dim() == 1:  # one fused op: inference and decoding are dispatch-bound
        return F.rms_norm(x, weight.shape, weight, eps)
    return RMSNormFunction.apply(x, weight, eps)


# ----------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------


def single_query_attention(query, key, value, attention_mask, scaling: float) -> torch.Tensor:
    """Attention for one new token per row, without repeating K/V over the query heads that share them (a copy
    of the whole cache per layer and step): those heads are stacked as if they were query positions.

    Two small matmuls and a softmax rather than SDPA: under torch.compile on the CPU the softmax fuses with its
    neighbours and the step is ~0.15 ms faster than with four SDPA calls (bench/model_speed.py).
    query: (b, heads, 1, d); key, value: (b, kv_heads, kv_len, d); attention_mask: None, or bool (True = attend)
    or additive, broadcastable to (b, 1, 1, kv_len). Returns (b, 1, heads, d) like the attention interfaces.
    """
    b, heads, _, d = query.shape
    query = query.view(b, key.shape[1], heads // key.shape[1], d)  # (b, kv_heads, group, d)
    scores = (query @ key.transpose(-1, -2)) * scaling  # (b, kv_heads, group, kv_len)
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask, -torch.inf)
    elif attention_mask is not None:
        scores = scores + attention_mask
    weights = scores.softmax(-1, dtype=torch.float32).to(value.dtype)
    return (weights @ value).reshape(b, 1, heads, d)


# The CPU flash-attention kernel takes keys in blocks of 512 and computes a block whole even where the causal mask
# hides it, so up to ~1k tokens a causal call costs the full square. Query rows [i, i + 64) only see keys [0, i + 64):
# cutting the rows into such blocks skips the hidden part (4x512 tokens: ~14 vs ~20 ms forward per layer).
ROW_BLOCK, MAX_ROW_BLOCKED_LENGTH = 64, 1024


def _row_blocks(length: int) -> list[tuple[int, int]]:
    """(start, end) of each block of query rows."""
    return [(start, min(start + ROW_BLOCK, length)) for start in range(0, length, ROW_BLOCK)]


def _causal_keep(attention_mask: torch.Tensor | None, length: int, device: torch.device) -> torch.Tensor:
    """The boolean mask to attend with (True = attend): the one given, or plain causal for None."""
    if attention_mask is not None:
        return attention_mask
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def row_blocked_causal_attention(query, key, value, attention_mask, scaling: float, dropout: float = 0.0):
    """Causal SDPA over blocks of query rows, each against the keys it can see; the same result as one call.

    query: (b, heads, l, d); key, value: (b, kv_heads, l, d) for the same l positions (no cache prefix);
    attention_mask: None (plain causal) or a causal boolean mask broadcastable to (b, heads, l, l), True = attend.
    Returns (b, l, heads, d), contiguous, like the attention interfaces.
    """
    length = query.shape[2]
    attention_mask = _causal_keep(attention_mask, length, query.device)
    blocks = []
    for start, end in _row_blocks(length):
        block = F.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, :end],
            value[:, :, :end],
            attn_mask=attention_mask[..., start:end, :end],
            dropout_p=dropout,
            scale=scaling,
            enable_gqa=True,
        )
        blocks.append(block.transpose(1, 2))
    return torch.cat(blocks, dim=1)


class RowBlockedAttentionFunction(torch.autograd.Function):
    """Causal attention for CPU training: the row blocks above, with an explicit softmax whose probabilities are
    kept for the backward, which is then four matmuls per block instead of the flash kernel's recomputation
    (4x512 tokens, forward+backward per layer: ~40-47 ms, against ~52 ms for SDPA in row blocks and ~66 ms for
    one causal SDPA call; ~10 MB more activations per layer).

    The query heads that share a KV head are stacked as rows, so K/V are never repeated. Everything runs in at
    least float32. query: (b, heads, l, d); key, value: (b, kv_heads, l, d); bias: additive, (l, l) or
    (b, 1, l, l), with the dtype's finite minimum where masked (from `causal_bias`).
    Returns (b, l, heads, d), contiguous.
    """

    @staticmethod
    def forward(ctx, query, key, value, bias, scaling: float):
        b, heads, length, d = query.shape
        kv = key.shape[1]
        group = heads // kv
        # (b * kv, l * group, d): row (t, j) is position t of the j-th query head of its group
        q_rows = _upcast(query).view(b, kv, group, length, d).permute(0, 1, 3, 2, 4).reshape(b * kv, -1, d)
        k, v = (_upcast(t).reshape(b * kv, length, d) for t in (key, value))
        padded = bias.dim() == 4  # a per-row padding mask (b, 1, l, l), not the shared causal (l, l)
        out, probs = [], []
        for start, end in _row_blocks(length):
            block_bias = bias[..., start:end, :end].repeat_interleave(group, dim=-2)  # (..., rows * group, end)
            if padded:  # (b, 1, ., .) -> (b * kv, ., .)
                block_bias = block_bias.expand(b, kv, -1, -1).reshape(b * kv, -1, end)
            scores = torch.baddbmm(block_bias, q_rows[:, start * group : end * group], k[:, :end].mT, alpha=scaling)
            probs.append(scores.softmax(-1))
            if padded:  # rows with every key masked (left padding) give 0 and no gradient, as SDPA does
                probs[-1].masked_fill_(block_bias.amax(-1, keepdim=True) == torch.finfo(bias.dtype).min, 0.0)
            out.append(probs[-1] @ v[:, :end])
        out = torch.cat(out, dim=1)  # (b * kv, l * group, d)
        ctx.save_for_backward(q_rows, k, v, out, *probs)
        ctx.scaling, ctx.shapes, ctx.dtypes = scaling, (query.shape, key.shape), (query.dtype, key.dtype)
        return out.view(b, kv, length, group, d).transpose(1, 2).reshape(b, length, heads, d).to(query.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        q_rows, k, v, out, *probs = ctx.saved_tensors
        (b, heads, length, d), key_shape = ctx.shapes
        group = heads // key_shape[1]
        grad_rows = _upcast(grad_out).view(b, length, -1, group, d).transpose(1, 2).reshape(k.shape[0], -1, d)
        # softmax backward: dscores = p * (dp - sum_j dp_j p_j), and sum_j dp_j p_j = dout . out (a row of d, not l)
        row_dot = (grad_rows * out).sum(-1, keepdim=True)
        grad_q, grad_k, grad_v = [], torch.zeros_like(k), torch.zeros_like(v)
        for (start, end), p in zip(_row_blocks(length), probs):
            rows = slice(start * group, end * group)
            grad_v[:, :end].baddbmm_(p.mT, grad_rows[:, rows])
            grad_p = grad_rows[:, rows] @ v[:, :end].mT
            grad_scores = grad_p.sub_(row_dot[:, rows]).mul_(p)
            grad_q.append((grad_scores @ k[:, :end]).mul_(ctx.scaling))
            grad_k[:, :end].baddbmm_(grad_scores.mT, q_rows[:, rows], alpha=ctx.scaling)
        grad_q = torch.cat(grad_q, dim=1).view(b, -1, length, group, d).transpose(2, 3).reshape(b, heads, length, d)
        query_dtype, key_dtype = ctx.dtypes
        grad_k, grad_v = (grad.view(key_shape).to(key_dtype) for grad in (grad_k, grad_v))
        return grad_q.to(query_dtype), grad_k, grad_v, None, None


def causal_bias(attention_mask: torch.Tensor | None, length: int, like: torch.Tensor) -> torch.Tensor:
    """Additive mask for RowBlockedAttentionFunction from None (plain causal) or a boolean mask (True = attend)."""
    keep = _causal_keep(attention_mask, length, like.device)
    dtype = torch.promote_types(like.dtype, torch.float32)
    return torch.zeros(keep.shape, dtype=dtype, device=like.device).masked_fill_(~keep, torch.finfo(dtype).min)


def _is_causal_bool_mask(mask: torch.Tensor | None) -> bool:
    """True for None or a boolean mask that attends to no later position (what `create_causal_mask` builds)."""
    if mask is None:
        return True
    return mask.dtype == torch.bool and not bool(mask[..., -mask.shape[-2] :].triu(1).any())


def fast_attention(module, query, key, value, attention_mask) -> torch.Tensor | None:
    """Causal attention by the fastest CPU route that gives the in-tree result, or None where the generic attention
    interface should run: a decode step (one query, SDPA) by `single_query_attention`, a CPU prefill or training
    forward of up to MAX_ROW_BLOCKED_LENGTH tokens with a causal mask in row blocks. Returns (b, l, heads, d)."""
    sdpa = module.config._attn_implementation == "sdpa"
    length = query.shape[2]
    if length == 1 and sdpa and not module.training:
        return single_query_attention(query, key, value, attention_mask, module.scaling)
    if not (
        sdpa
        and query.device.type == "cpu"
        and 1 < length == key.shape[2] <= MAX_ROW_BLOCKED_LENGTH
        and not is_traced(query)
        and _is_causal_bool_mask(attention_mask)
    ):
        return None
    dropout = module.attention_dropout if module.training else 0.0
    if torch.is_grad_enabled() and query.requires_grad and dropout == 0.0:
        bias = causal_bias(attention_mask, length, query)
        return RowBlockedAttentionFunction.apply(query, key, value, bias, module.scaling)
    return row_blocked_causal_attention(query, key, value, attention_mask, module.scaling, dropout)


# ----------------------------------------------------------------------------------------------------------
# Mamba-2: causal conv, the within-chunk scan, the scaled split of in_proj's output
# ----------------------------------------------------------------------------------------------------------


class CausalConv1d(torch.autograd.Function):
    """Depthwise causal conv, channels last, as k shifted multiply-adds with a hand-written backward.

    out[b, t, c] = sum_j weight[c, j] * x[b, t - (k - 1 - j), c] * keep[b, t, j]   (x = 0 before the start)

    keep (b, l, k - 1) is 1 where tap j stays inside the sequence of position t (packed rows), or None; the tap
    on the current position is always kept. Compared with F.conv1d this needs no transposed copies of the
    (b, l, c) activations, and the backward is ~5x faster than depthwise conv1d's on the CPU (autograd through
    the taps would allocate a padded gradient per tap).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, keep):
        k, length = weight.shape[-1], x.shape[1]
        out = x * weight[:, -1] if bias is None else torch.addcmul(bias, x, weight[:, -1])
        for tap in range(k - 1):  # tap j adds x[t - shift] to out[t], shift = k - 1 - j
            shift = k - 1 - tap
            if shift < length:
                x_tap = x[:, : length - shift] if keep is None else x[:, : length - shift] * keep[:, shift:, tap, None]
                out[:, shift:].addcmul_(x_tap, weight[:, tap])
        ctx.save_for_backward(x, weight, keep)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, keep = ctx.saved_tensors
        k, length = weight.shape[-1], x.shape[1]
        grad_x = grad * weight[:, -1]
        grad_weight = [x.new_zeros(weight.shape[0]) for _ in range(k - 1)] + [(grad * x).sum((0, 1))]
        for tap in range(k - 1):
            shift = k - 1 - tap
            if shift < length:
                g = grad[:, shift:] if keep is None else grad[:, shift:] * keep[:, shift:, tap, None]
                grad_weight[tap] = (g * x[:, : length - shift]).sum((0, 1))
                grad_x[:, : length - shift].addcmul_(g, weight[:, tap])
        grad_bias = grad.sum((0, 1)) if ctx.has_bias else None
        return grad_x, torch.stack(grad_weight, dim=-1), grad_bias, None


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, seq_idx: torch.Tensor | None):
    """Depthwise causal conv, channels last. x: (b, l, c), weight: (c, k), seq_idx: (b, l) or None -> (b, l, c).

    With `seq_idx`, a tap that would reach into another (packed) sequence contributes zero, exactly as if each
    sequence were convolved alone with zero left padding.
    """
    keep = None
    if seq_idx is not None:
        k, length = weight.shape[-1], x.shape[1]
        seq_padded = F.pad(seq_idx, (k - 1, 0), value=-1)
        taps = [seq_padded[:, tap : tap + length] == seq_idx for tap in range(k - 1)]
        keep = torch.stack(taps, dim=-1).to(x.dtype)  # (b, l, k - 1)
    return CausalConv1d.apply(x, weight, bias, keep)


class ChunkDiagonalScan(torch.autograd.Function):
    """The within-chunk part of the SSD scan, y = (scores * exp(cs_l - cs_s)) @ x_dt, hand-differentiated.

    scores: (b, g, c, l, s) = C_l . B_s, causal-masked, shared by the r heads of a group
    cs: (b, g, r, c, l) cumulative dt * A inside each chunk;   x_dt: (b, g, r, c, s, p)   ->   y: (b, g, r, c, l, p)
    The decay exponent is clamped to [-80, 0]: exp stays off its slow underflow path (~8x slower here), e^-80 stands
    in for smaller factors, and above the diagonal the decay is 1 where the scores are 0. Autograd through the
    broadcasts, clamp and exp runs ~12 passes over the r-times-larger decay tensor in the backward; this runs five.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, cs: torch.Tensor, x_dt: torch.Tensor) -> torch.Tensor:
        decay = (cs[..., :, None] - cs[..., None, :]).clamp_(-80.0, 0.0).exp_()  # (b, g, r, c, l, s)
        if not any(ctx.needs_input_grad):
            return decay.mul_(scores[:, :, None]) @ x_dt
        weights = decay * scores[:, :, None]
        ctx.save_for_backward(scores, x_dt, decay, weights)
        return weights @ x_dt

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        # with W = scores * decay: dscores = sum_r dW * decay;  dcs_l = sum_s dW * W - sum_s' dW * W (as the source)
        scores, x_dt, decay, weights = ctx.saved_tensors
        grad_y = grad_y.contiguous()  # once, not once per matmul
        grad_x_dt = weights.transpose(-1, -2) @ grad_y
        grad_weights = (grad_y @ x_dt.transpose(-1, -2)).mul_(decay)
        grad_scores = grad_weights.sum(2)
        grad_weights.mul_(scores[:, :, None])  # now dW * W
        grad_cs = grad_weights.sum(-1) - grad_weights.sum(-2)
        return grad_scores, grad_cs, grad_x_dt


def chunk_diagonal_scan(scores: torch.Tensor, cs: torch.Tensor, x_dt: torch.Tensor) -> torch.Tensor:
    """(scores * exp(cs_l - cs_s)) @ x_dt; shapes as in ChunkDiagonalScan."""
    return ChunkDiagonalScan.apply(scores, cs, x_dt)


class ScaledSplit(torch.autograd.Function):
    """(x * scale).split(sizes, -1) for a per-channel scale; the backward writes grad * scale of every piece straight
    into one buffer (autograd would allocate the scaled gradient and a concatenation of the pieces besides)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
        ctx.save_for_backward(scale)
        ctx.sizes = sizes
        return tuple((x * scale).split(sizes, dim=-1))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):
        (scale,) = ctx.saved_tensors
        like = next(grad for grad in grads if grad is not None)
        grad_x = like.new_empty(*like.shape[:-1], scale.shape[0])
        for grad, grad_piece, scale_piece in zip(grads, grad_x.split(ctx.sizes, -1), scale.split(ctx.sizes)):
            if grad is None:
                grad_piece.zero_()
            else:
                torch.mul(grad, scale_piece, out=grad_piece)
        return grad_x, None, None


def scaled_split(x: torch.Tensor, scale: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """(x * scale).split(sizes, -1); without autograd in place (x must then be a fresh tensor nobody else reads)."""
    if torch.is_grad_enabled():
        return ScaledSplit.apply(x, scale, sizes)
    return tuple(x.mul_(scale).split(sizes, dim=-1))


# ----------------------------------------------------------------------------------------------------------
# generate(): a static-cache decode step without the generic input preparation
# ----------------------------------------------------------------------------------------------------------


def static_decode_mask(cache, past_seen: int, attention_mask, like: torch.Tensor) -> torch.Tensor:
    """(b, 1, 1, slots) bool: the query of a decode step sees every cached slot up to its own that is not padding.
    A few small ops instead of the general mask builder, whose ~0.2 ms would be a tenth of a compiled CPU step."""
    slots = torch.arange(cache.get_mask_sizes(1, 0)[0], device=like.device)
    visible = (slots <= past_seen)[None].expand(like.shape[0], -1)
    if attention_mask is not None:
        visible = visible & F.pad(attention_mask.bool(), (0, len(slots) - attention_mask.shape[-1]))
    return visible[:, None, None, :]


def static_decode_inputs(model, input_ids, cache, attention_mask, kwargs: dict) -> dict | None:
    """generate()'s inputs for a plain decode step over a static cache (the compiled path), or None where the generic
    preparation must run. The generic one costs ~0.3 ms per token on a CPU, about a tenth of a compiled step of a
    small model. The caller adds the cache under its release's name."""
    weight = model.lm_head.weight
    if not (
        (attention_mask is None or attention_mask.dim() == 2)
        and input_ids.device == weight.device
        and set(kwargs) <= {"position_ids", "logits_to_keep", "use_cache"}
    ):
        return None
    kwargs = dict(kwargs)
    position_ids = kwargs.pop("position_ids", None)
    if position_ids is not None:
        position_ids = position_ids[..., -1:].clone(memory_format=torch.contiguous_format)
    shape_only = weight.new_empty((input_ids.shape[0], 1, 0))
    masks = model.create_masks_for_generate(model.config, shape_only, attention_mask, cache, position_ids)
    return {
        "input_ids": input_ids[:, -1:].clone(memory_format=torch.contiguous_format),  # one stride: no recompile
        "position_ids": position_ids,
        "attention_mask": {k: None if v is None else v.contiguous() for k, v in masks.items()},
        **kwargs,
    }
