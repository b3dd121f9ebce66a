"""DeepConf confidence measures (arXiv 2508.15260), shared by every backend.

Definitions (the facts file's, kept identical across backends):

- token confidence ``C_i = -(1/k) * sum_{j<=k} log p_j(i)`` over the k most likely tokens at position i
  (k = 20). Log-probs are the model's raw next-token distribution (before temperature / top-p), which is
  what vLLM returns by default, so both backends agree. Higher = more peaked = more confident.
- group confidence at token t: the mean of C over the sliding window of the last ``window`` tokens
  (2048 by default). Before a trace has ``window`` tokens, the window is all tokens so far (the mean over
  the tokens seen), so every token has a defined group confidence.
- lowest group confidence: the minimum group confidence over the trace's *full* windows; a trace shorter
  than the window has a single group, the mean over all its tokens.
- bottom-10% group confidence: the mean of the lowest 10% (at least one) of the full-window group
  confidences (again the mean of all tokens for a trace shorter than the window).
- tail confidence: the mean of C over the last ``window`` tokens.
- mean confidence: the mean of C over the whole trace.

`ConfidenceTracker` computes the same numbers incrementally, token by token, for online early stopping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch

TOP_K = 20
DEFAULT_WINDOW = 2048
CONFIDENCE_KINDS = ("lowest", "bottom10", "tail", "mean")


def token_confidence_from_logprobs(top_logprobs: list[float] | np.ndarray, k: int = TOP_K) -> float:
    """C_i from one position's log-probs: minus the mean of the k largest (fewer if fewer are given)."""
    values = np.sort(np.asarray(top_logprobs, dtype=np.float64))[::-1][:k]
    if values.size == 0:
        raise ValueError("token confidence needs at least one log-prob for the position")
    return float(-values.mean())


def token_confidences_from_logits(logits: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
    """C for every row of raw logits ``[..., vocab]`` -> ``[...]`` (float32 log-softmax, then top-k mean)."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    top = torch.topk(logprobs, min(k, logprobs.shape[-1]), dim=-1).values
    return -top.mean(dim=-1)


def group_confidences(confs: list[float] | np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Mean of C over every full sliding window; one group (the mean of all) for a trace shorter than it."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = np.asarray(confs, dtype=np.float64)
    if c.size == 0:
        return np.zeros(0)
    if c.size < window:
        return np.array([c.mean()])
    csum = np.concatenate([[0.0], np.cumsum(c)])
    return (csum[window:] - csum[:-window]) / window


def running_group_confidences(confs: list[float] | np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Group confidence at every token t: mean over the last min(t, window) tokens (what online mode sees)."""
    c = np.asarray(confs, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(c)])
    t = np.arange(1, c.size + 1)
    start = np.maximum(t - window, 0)
    return (csum[t] - csum[start]) / (t - start)


@dataclass(frozen=True)
class TraceConfidence:
    """The four trace-level confidences DeepConf filters and weights by (higher = more confident)."""

    lowest: float
    bottom10: float
    tail: float
    mean: float

    def get(self, kind: str) -> float:
        if kind not in CONFIDENCE_KINDS:
            raise ValueError(f"unknown confidence {kind!r}; choose one of {', '.join(CONFIDENCE_KINDS)}")
        return getattr(self, kind)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def trace_confidence(
    confs: list[float] | np.ndarray, window: int = DEFAULT_WINDOW, bottom_fraction: float = 0.1
) -> TraceConfidence:
    """All trace-level confidences of one trace's token confidences."""
    c = np.asarray(confs, dtype=np.float64)
    if c.size == 0:
        # An empty trace carries no evidence; -inf sorts it below every threshold and out of every filter.
        return TraceConfidence(-math.inf, -math.inf, -math.inf, -math.inf)
    groups = group_confidences(c, window)
    n_bottom = max(1, int(groups.size * bottom_fraction))
    bottom = np.partition(groups, n_bottom - 1)[:n_bottom]
    return TraceConfidence(
        lowest=float(groups.min()),
        bottom10=float(bottom.mean()),
        tail=float(c[-window:].mean()),
        mean=float(c.mean()),
    )


class ConfidenceTracker:
    """Token-by-token group confidence for one trace, with the online early-stop test.

    ``add(c)`` returns True when the trace should stop: its current group confidence is below
    ``threshold`` and it has at least ``min_stop_tokens`` tokens. ``min_stop_tokens`` defaults to the
    window, as in the DeepConf reference implementation: a full window's mean below the threshold proves
    the trace's lowest group confidence (what the threshold was computed from) is below it, whatever comes
    next, so stopping never drops a trace the offline filter would keep. A partial-window mean over a
    few tokens proves nothing of the kind and is noisy, so it is reported but not acted on unless asked.
    """

    def __init__(
        self, window: int = DEFAULT_WINDOW, threshold: float | None = None, min_stop_tokens: int | None = None
    ):
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.threshold = threshold
        self.min_stop_tokens = window if min_stop_tokens is None else max(1, min_stop_tokens)
        self.confidences: list[float] = []
        self._recent: deque[float] = deque()
        self._sum = 0.0
        self._lowest_full = math.inf

    def add(self, confidence: float) -> bool:
        self.confidences.append(confidence)
        self._recent.append(confidence)
        self._sum += confidence
        if len(self._recent) > self.window:
            self._sum -= self._recent.popleft()
        if len(self._recent) == self.window:
            self._lowest_full = min(self._lowest_full, self.group_confidence)
        return self.should_stop

    @property
    def n_tokens(self) -> int:
        return len(self.confidences)

    @property
    def group_confidence(self) -> float:
        """Mean over the last min(n_tokens, window) tokens."""
        return self._sum / len(self._recent) if self._recent else math.nan

    @property
    def lowest_group_confidence(self) -> float:
        """Equal to `trace_confidence(...).lowest` of the tokens so far."""
        if self.n_tokens < self.window:
            return float(np.mean(self.confidences)) if self.confidences else -math.inf
        return self._lowest_full

    @property
    def should_stop(self) -> bool:
        return (
            self.threshold is not None
            and self.n_tokens >= self.min_stop_tokens
            and self.group_confidence < self.threshold
        )
