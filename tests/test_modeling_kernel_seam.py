"""The CUDA-kernel path, exercised on CPU through stand-ins for mamba_ssm / causal_conv1d.

The stand-ins implement the kernels' documented contracts (argument shapes, dt_softplus / dt_bias /
dt_limit, seq_idx, in-place state updates, group-wise gated RMSNorm) with naive per-timestep loops, written
independently of the model's chunked scan. Swapping them in checks that the model calls the kernels with
the right arguments: the kernel path must give what the pure-PyTorch path gives. The real kernels need a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_configs import model_pair, tiny_fields

from falcon_h1r.modeling import kernels_falcon_h1r, modeling_falcon_h1r


def _activate(out, activation):
    return F.silu(out) if activation in ("silu", "swish") else out


def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, activation=None):  # x: (b, c, l), weight: (c, k)
    b, c, length = x.shape
    k = weight.shape[1]
    out = torch.zeros_like(x)
    for t in range(length):
        for j in range(k):
            s = t - (k - 1) + j
            if s < 0:
                continue
            same = 1.0 if seq_idx is None else (seq_idx[:, s] == seq_idx[:, t]).to(x.dtype)[:, None]
            out[:, :, t] += weight[:, j] * x[:, :, s] * same
    return _activate(out if bias is None else out + bias[:, None], activation)


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None):  # x: (b, c), state: (b, c, k)
    conv_state.copy_(torch.cat([conv_state[:, :, 1:], x[:, :, None]], dim=-1))
    out = (conv_state * weight).sum(-1)
    return _activate(out if bias is None else out + bias, activation)


def _step(state, x, dt, A, B, C):  # one recurrence step; state (b, h, p, n), x (b, h, p), dt (b, h), B/C (b, h, n)
    state = state * torch.exp(dt * A)[..., None, None] + (dt[..., None] * x)[..., None] * B[:, :, None, :]
    return state, (state * C[:, :, None, :]).sum(-1)


def mamba_chunk_scan_combined(
    x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None, seq_idx=None,
    dt_softplus=False, dt_limit=(0.0, float("inf")), return_final_states=False,
):  # fmt: skip
    b, length, h, p = x.shape
    r = h // B.shape[2]
    dt = dt.float() + (dt_bias.float() if dt_bias is not None else 0)
    dt = (F.softplus(dt) if dt_softplus else dt).clamp(*dt_limit)
    state = initial_states.float() if initial_states is not None else x.new_zeros(b, h, p, B.shape[-1]).float()
    ys = []
    for t in range(length):
        if seq_idx is not None and t > 0:
            state = state * (seq_idx[:, t] == seq_idx[:, t - 1]).float()[:, None, None, None]
        Bt, Ct = B[:, t].repeat_interleave(r, 1).float(), C[:, t].repeat_interleave(r, 1).float()
        state, y = _step(state, x[:, t].float(), dt[:, t], A.float(), Bt, Ct)
        ys.append(y + (D.float()[:, None] * x[:, t].float() if D is not None else 0))
    y = torch.stack(ys, 1)
    return (y, state) if return_final_states else y


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    # documented shapes: state (b, h, p, n), x (b, h, p), dt (b, h, p), A (h, p, n), B/C (b, g, n), D (h, p)
    assert dt.shape == x.shape and A.shape == state.shape[1:] and D.shape == x.shape[1:]
    r = state.shape[1] // B.shape[1]
    dt = dt + (dt_bias if dt_bias is not None else 0)
    dt = F.softplus(dt) if dt_softplus else dt
    new = state * torch.exp(dt[..., None] * A) + (dt * x)[..., None] * B.repeat_interleave(r, 1)[:, :, None, :]
    state.copy_(new)
    return (new * C.repeat_interleave(r, 1)[:, :, None, :]).sum(-1) + D * x


def mamba_split_conv1d_scan_combined(
    zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, chunk_size, initial_states=None, seq_idx=None,
    dt_limit=(0.0, float("inf")), return_final_states=False, activation="silu", rmsnorm_weight=None,
    rmsnorm_eps=1e-6, outproj_weight=None, outproj_bias=None, headdim=None, ngroups=1, norm_before_gate=True,
):  # fmt: skip
    h = D.shape[0]
    dim = h * headdim
    z, xBC, dt = zxbcdt.split([dim, conv1d_weight.shape[0], h], dim=-1)
    xBC = causal_conv1d_fn(xBC.transpose(1, 2), conv1d_weight, conv1d_bias, seq_idx, activation).transpose(1, 2)
    x, B, C = xBC.split([dim, (xBC.shape[-1] - dim) // 2, (xBC.shape[-1] - dim) // 2], dim=-1)
    b, length = x.shape[:2]
    y = mamba_chunk_scan_combined(
        x.reshape(b, length, h, headdim), dt, A, B.reshape(b, length, ngroups, -1), C.reshape(b, length, ngroups, -1),
        chunk_size, D=D, dt_bias=dt_bias, seq_idx=seq_idx, dt_softplus=True, dt_limit=dt_limit,
    ).reshape(b, length, dim)  # fmt: skip
    gate = F.silu(z.float())
    if rmsnorm_weight is None:
        y = y * gate
    else:
        y = y if norm_before_gate else y * gate
        grouped = y.unflatten(-1, (ngroups, -1))
        y = (grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + rmsnorm_eps)).flatten(-2) * rmsnorm_weight
        y = y * gate if norm_before_gate else y
    return F.linear(y.to(zxbcdt.dtype), outproj_weight, outproj_bias)


STAND_INS = kernels_falcon_h1r.MambaKernels(
    causal_conv1d_fn=causal_conv1d_fn,
    causal_conv1d_update=causal_conv1d_update,
    mamba_chunk_scan_combined=mamba_chunk_scan_combined,
    selective_state_update=selective_state_update,
    mamba_split_conv1d_scan_combined=mamba_split_conv1d_scan_combined,
)

CONFIGS = [
    tiny_fields(),  # 2 groups, gated norm after the gate
    tiny_fields(mamba_norm_before_gate=True, mamba_proj_bias=True, time_step_limit=(0.0, 0.1)),
    tiny_fields(mamba_rms_norm=False, mamba_n_groups=1, mamba_d_conv=3),
]


def _kernel_path(monkeypatch, enabled: bool) -> None:
    monkeypatch.setattr(modeling_falcon_h1r, "mamba_kernels_for", lambda tensor: STAND_INS if enabled else None)


@pytest.mark.parametrize("fields", CONFIGS)
def test_kernel_path_prefill_decode_and_packing_match_pure_pytorch(monkeypatch, fields: dict) -> None:
    model, _ = model_pair(fields, seed=30)
    prompt = torch.randint(1, 97, (2, 11), generator=torch.Generator().manual_seed(30))
    packed = {
        "input_ids": torch.randint(1, 97, (1, 14)),
        "position_ids": torch.tensor([list(range(6)) + list(range(8))]),
    }
    runs = {}
    for enabled in (False, True):
        _kernel_path(monkeypatch, enabled)
        with torch.no_grad():
            out = model.generate(
                prompt, max_new_tokens=6, do_sample=False, output_logits=True, return_dict_in_generate=True
            )
            runs[enabled] = (out.sequences, torch.stack(out.logits, 1), model(**packed).logits)
    assert torch.equal(runs[True][0], runs[False][0])
    torch.testing.assert_close(runs[True][1], runs[False][1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(runs[True][2], runs[False][2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fields", CONFIGS)
def test_fused_training_kernel_matches_pure_pytorch_loss_and_grads(monkeypatch, fields: dict) -> None:
    model, _ = model_pair(fields, seed=31)
    model.train()
    input_ids = torch.randint(1, 97, (2, 13), generator=torch.Generator().manual_seed(31))
    grads = {}
    for enabled in (False, True):
        _kernel_path(monkeypatch, enabled)
        model.zero_grad()
        loss = model(input_ids, labels=input_ids, use_cache=False).loss
        loss.backward()
        grads[enabled] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(grads[True][0], grads[False][0], rtol=1e-5, atol=1e-6)
    for name, grad in grads[False][1].items():
        torch.testing.assert_close(grads[True][1][name], grad, rtol=1e-3, atol=1e-6, msg=name)


def test_kernels_are_only_for_cuda_tensors() -> None:
    assert kernels_falcon_h1r.mamba_kernels_for(torch.zeros(1)) is None
