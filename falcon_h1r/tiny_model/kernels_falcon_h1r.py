"""The seam to the optional CUDA kernels (`mamba_ssm`, `causal_conv1d`).

Everything Falcon-H1R needs from them is gathered in one `MambaKernels` record, imported lazily once.
The model takes the kernel path only for CUDA tensors when both packages import; otherwise it runs its
own pure-PyTorch implementation (which is also the reference the kernels are checked against on a GPU).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class MambaKernels:
    causal_conv1d_fn: Callable  # (x[b,c,l], weight[c,k], bias, seq_idx=, activation=) -> [b,c,l]
    causal_conv1d_update: Callable  # (x[b,c], conv_state[b,c,k], weight, bias, activation=) -> [b,c], state in place
    mamba_chunk_scan_combined: Callable  # SSD scan with seq_idx, dt_softplus, dt_limit, initial/final states
    selective_state_update: Callable  # one-token SSM step, state updated in place
    mamba_split_conv1d_scan_combined: Callable  # fused in_proj-output -> conv -> scan -> norm -> out_proj (training)


def mamba_kernels_for(tensor) -> MambaKernels | None:
    """The kernels to use for `tensor`: only CUDA tensors take them, and only when they import."""
    return load_mamba_kernels() if tensor.is_cuda else None


@functools.cache
def load_mamba_kernels() -> MambaKernels | None:
    """The CUDA kernels, or None when they are not installed (or FALCON_H1R_DISABLE_KERNELS=1)."""
    if os.environ.get("FALCON_H1R_DISABLE_KERNELS", "0") == "1":
        return None
    try:
        from causal_conv1d import causal_conv1d_fn, causal_conv1d_update
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined, mamba_split_conv1d_scan_combined
    except ImportError:
        return None
    return MambaKernels(
        causal_conv1d_fn=causal_conv1d_fn,
        causal_conv1d_update=causal_conv1d_update,
        mamba_chunk_scan_combined=mamba_chunk_scan_combined,
        selective_state_update=selective_state_update,
        mamba_split_conv1d_scan_combined=mamba_split_conv1d_scan_combined,
    )
