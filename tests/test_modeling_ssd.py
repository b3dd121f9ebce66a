"""The chunked SSD scan the model runs equals the plain Mamba-2 recurrence it is defined by."""

from __future__ import annotations

import pytest
import torch

from falcon_h1r.modeling.modeling_falcon_h1r import ssd_chunk_scan, ssd_recurrence


@pytest.mark.parametrize("length, chunk", [(1, 4), (7, 4), (16, 8), (23, 16), (40, 64)])
@pytest.mark.parametrize("packed", [False, True])
def test_chunked_scan_equals_the_recurrence(length: int, chunk: int, packed: bool) -> None:
    gen = torch.Generator().manual_seed(length * 100 + chunk + packed)
    b, h, p, g, n = 2, 6, 4, 3, 5
    x = torch.randn(b, length, h, p, generator=gen, dtype=torch.float64)
    dt = torch.rand(b, length, h, generator=gen, dtype=torch.float64) * 0.5
    A = -torch.rand(h, generator=gen, dtype=torch.float64) * 2
    B, C = (torch.randn(b, length, g, n, generator=gen, dtype=torch.float64) for _ in range(2))
    initial = torch.randn(b, h, p, n, generator=gen, dtype=torch.float64)
    seq_idx = None
    if packed:  # row 0: three sequences, row 1: one
        seq_idx = torch.zeros(b, length, dtype=torch.int32)
        seq_idx[0, length // 3 :] += 1
        seq_idx[0, 2 * length // 3 :] += 1
    y, final = ssd_chunk_scan(x, dt, A, B, C, chunk, initial, seq_idx)
    y_ref, final_ref = ssd_recurrence(x, dt, A, B, C, initial, seq_idx)
    torch.testing.assert_close(y, y_ref.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(final, final_ref.float(), rtol=1e-4, atol=1e-4)
