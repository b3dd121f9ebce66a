"""The model's hand-written backwards (CPU speed), each checked against numerical gradients in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from falcon_h1r.modeling import cpu_ops_falcon_h1r as M


def _randn(*shape: int, seed: int = 0, requires_grad: bool = True) -> torch.Tensor:
    t = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return t.requires_grad_(requires_grad)


@pytest.mark.parametrize("length", [1, 3, 37])
def test_causal_conv_backward_is_the_true_gradient(length: int) -> None:
    """Packed rows and bias included; without packing the forward equals a zero-padded depthwise F.conv1d."""
    x, weight, bias = _randn(2, length, 6, seed=length), _randn(6, 4, seed=1), _randn(6, seed=2)
    seq_idx = torch.tensor([[0] * 10 + [1] * 20 + [2] * 7, [0] * 37])[:, :length]
    for packed in (None, seq_idx):
        assert torch.autograd.gradcheck(lambda x, w, b: M.causal_conv1d(x, w, b, packed), (x, weight, bias))  # noqa: B023
    assert torch.autograd.gradcheck(lambda x, w: M.causal_conv1d(x, w, None, seq_idx), (x, weight))
    conv = F.conv1d(x.transpose(1, 2), weight[:, None], bias, padding=3, groups=6)
    assert torch.allclose(M.causal_conv1d(x, weight, bias, None), conv[..., :length].transpose(1, 2))


@pytest.mark.parametrize("weight_shape", [(8,), (3, 8)])  # plain, and group-wise as in the gated norm
def test_rms_norm_backward_is_the_true_gradient(weight_shape: tuple[int, ...]) -> None:
    x, weight = _randn(2, 5, *weight_shape, seed=3), _randn(*weight_shape, seed=4)
    assert torch.autograd.gradcheck(lambda x, w: M.RMSNormFunction.apply(x, w, 1e-6), (x, weight))
    expected = F.rms_norm(x, weight_shape[-1:], eps=1e-6) * weight
    torch.testing.assert_close(M.RMSNormFunction.apply(x, weight, 1e-6), expected)


def test_chunk_diagonal_scan_backward_is_the_true_gradient() -> None:
    b, g, r, c, q, p = 2, 2, 3, 2, 5, 4
    scores = _randn(b, g, c, q, q, seed=5, requires_grad=False).tril().requires_grad_()
    cs = (-torch.rand(b, g, r, c, q, dtype=torch.float64)).cumsum(-1).requires_grad_()  # dt * A <= 0, summed
    x_dt = _randn(b, g, r, c, q, p, seed=6)
    assert torch.autograd.gradcheck(M.ChunkDiagonalScan.apply, (scores, cs, x_dt))
    decay = (cs[..., :, None] - cs[..., None, :]).exp().tril()
    torch.testing.assert_close(M.ChunkDiagonalScan.apply(scores, cs, x_dt), (scores[:, :, None] * decay) @ x_dt)


def test_scaled_split_backward_is_the_true_gradient() -> None:
    x, scale = _randn(2, 3, 7, seed=7), torch.rand(7, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda x: M.ScaledSplit.apply(x, scale, [2, 4, 1]), (x,))
    assert torch.autograd.gradcheck(lambda x: M.ScaledSplit.apply(x, scale, [2, 4, 1])[1], (x,))  # unused pieces


def _padding_mask(batch: int, length: int, pads: list[int]) -> torch.Tensor:
    """(b, 1, l, l) boolean causal mask with `pads[i]` left-padding keys in row i, as create_causal_mask builds it."""
    keep = torch.ones(length, length, dtype=torch.bool).tril().repeat(batch, 1, 1, 1)
    for row, pad in enumerate(pads):
        keep[row, :, :, :pad] = False
    return keep


@pytest.mark.parametrize("masked", [False, True])
def test_row_blocked_attention_equals_sdpa_and_its_backward_is_the_true_gradient(masked: bool, monkeypatch) -> None:
    monkeypatch.setattr(M, "ROW_BLOCK", 3)  # 8 rows: blocks of 3, 3 and 2
    b, heads, kv, length, d = 2, 4, 2, 8, 5
    query = _randn(b, length, heads, d, seed=8).transpose(1, 2)  # the layout the projections give
    key, value = _randn(b, kv, length, d, seed=9), _randn(b, kv, length, d, seed=10)
    mask = _padding_mask(b, length, [2, 0]) if masked else None
    expected = F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=not masked, scale=0.3, enable_gqa=True
    )
    expected = expected.transpose(1, 2)
    bias = M.causal_bias(mask, length, query)

    def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return M.RowBlockedAttentionFunction.apply(q, k, v, bias, 0.3)

    assert torch.autograd.gradcheck(attention, (query, key, value))
    torch.testing.assert_close(attention(query, key, value), expected)
    with torch.no_grad():
        torch.testing.assert_close(M.row_blocked_causal_attention(query, key, value, mask, 0.3), expected)
    if masked:  # the first two rows of the padded sequence see no key: 0, as from SDPA
        assert expected[0, :2].abs().max() == 0 and attention(query, key, value)[0, :2].abs().max() == 0


@pytest.mark.parametrize("rows", [(1,), (32, 1), (3, 7)])  # one decode row, a decode batch, a prefill
def test_linear_inference_path_equals_f_linear_and_training_keeps_autograd(rows: tuple[int, ...]) -> None:
    from falcon_h1r.modeling.modeling_falcon_h1r import FalconH1RLinear

    torch.manual_seed(0)
    layer = FalconH1RLinear(48, 40)
    x = torch.randn(*rows, 48)
    with torch.no_grad():
        out = layer(x)
        assert M.inference_linear(x, layer.weight, layer.bias) is not None or not M.ONEDNN_LINEAR
        assert M.inference_linear(x.double(), layer.weight.double(), None) is None  # float32 only
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)
    assert M.inference_linear(x, layer.weight, layer.bias) is None  # grad enabled: F.linear, so autograd works
    layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, x.reshape(-1, 48).sum(0).expand(40, 48))
