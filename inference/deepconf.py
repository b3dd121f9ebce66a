"""DeepConf (arXiv 2508.15260): many reasoning traces, confidence-filtered and confidence-weighted vote.

Backend-independent: a backend is anything with the `TraceGenerator` interface (transformers in
`hf_backend`, vLLM in `vllm_backend`). This module owns the algorithm:

offline
    generate ``budget`` traces; keep the top ``eta``% by the chosen trace confidence (default: lowest
    group confidence), weighted majority vote with that confidence as the weight. Every other voting
    variant is reported in ``result.voting``.
online
    1. warm-up: ``warmup`` traces generated to the end. Threshold ``s`` = the (100 - eta)th percentile of
       their lowest group confidences (eta = 10 -> 90th percentile: only the ~10% most confident warm-up
       traces are at or above it; eta = 90 -> 10th percentile).
    2. later traces stop as soon as their current group confidence falls below ``s`` (once they hold a
       full window, see `ConfidenceTracker`).
    3. votes: every finished trace whose lowest group confidence is >= s, weighted by it. After each
       trace, if the leading answer's share of the vote weight is >= ``tau``, sampling ends (traces still
       running are cancelled; the tokens they used are counted). Otherwise it ends at ``budget`` traces.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from falcon_h1r.inference.confidence import (
    CONFIDENCE_KINDS,
    DEFAULT_WINDOW,
    TOP_K,
    TraceConfidence,
    running_group_confidences,
    trace_confidence,
)
from falcon_h1r.inference.sampling import config_from_options
from falcon_h1r.inference.voting import (
    AnswerGrouper,
    Equivalence,
    Extractor,
    Vote,
    filter_top,
    leader_share,
    math_equivalent,
    math_extractor,
    percentile_threshold,
    tally,
    voting_variants,
    winner,
)

# finish reasons a backend reports
FINISHED = "stop"  # end-of-sequence token
LENGTH = "length"  # max_new_tokens reached
LOW_CONFIDENCE = "low_confidence"  # online early stop
CANCELLED = "cancelled"  # consensus reached while this trace was still running


@dataclass
class Trace:
    """One sampled reasoning trace with its per-token confidences."""

    text: str
    token_ids: list[int]
    confidences: list[float]
    finish_reason: str
    phase: str = "final"  # "warmup" or "final" (online); "offline"
    answer: str | None = None  # canonical (grouped) answer, set by run_deepconf
    raw_answer: str | None = None  # as extracted from the text
    confidence: TraceConfidence | None = None
    voted: bool = False

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def stopped_early(self) -> bool:
        return self.finish_reason in (LOW_CONFIDENCE, CANCELLED)

    def to_dict(self, window: int) -> dict:
        return {
            "text": self.text,
            "answer": self.answer,
            "raw_answer": self.raw_answer,
            "phase": self.phase,
            "tokens": self.n_tokens,
            "finish_reason": self.finish_reason,
            "stopped_early": self.stopped_early,
            "voted": self.voted,
            "confidence": self.confidence.to_dict() if self.confidence else None,
            "token_confidences": [round(c, 5) for c in self.confidences],
            "group_confidences": [round(float(g), 5) for g in running_group_confidences(self.confidences, window)],
        }


class TraceGenerator(Protocol):
    """What a backend provides: sample ``n`` traces of the prompt, tracking confidence per token.

    With ``threshold`` set, a trace stops once `ConfidenceTracker.add` says so (finish_reason
    LOW_CONFIDENCE). ``on_trace`` is called with each trace as it finishes; when it returns False, the
    traces still running are cancelled and returned with finish_reason CANCELLED. ``max_new_tokens`` is this
    call's budget per trace (None: the generator's own; `run_deepconf` passes it only when its caller sets one).
    Returns every trace started, in any order.
    """

    def generate(
        self,
        prompt_ids: list[int],
        n: int,
        *,
        window: int,
        threshold: float | None = None,
        min_stop_tokens: int | None = None,
        on_trace: Callable[[Trace], bool] | None = None,
        max_new_tokens: int | None = None,
    ) -> list[Trace]: ...


@dataclass
class DeepConfConfig:
    mode: str = "online"  # "online" | "offline"
    budget: int = 512  # most traces
    warmup: int = 16  # online N_init
    eta: float = 10.0  # percent of traces kept (10 = DeepConf-low, 90 = DeepConf-high)
    window: int = DEFAULT_WINDOW
    tau: float = 0.95  # online consensus share that ends sampling
    confidence: str = "lowest"  # trace confidence used to filter/weight (offline; online always "lowest")
    min_stop_tokens: int | None = None  # online: fewest tokens before a trace may stop (None = window)
    batch_size: int | None = None  # online traces generated concurrently after warm-up (None = warmup)
    top_k_logprobs: int = TOP_K

    @classmethod
    def from_options(cls, **options: Any) -> DeepConfConfig:
        """The config from user options (CLI flags, lm-eval model args as strings), the one way every caller
        builds it: None keeps a field's default, strings are converted, ``warmup`` never exceeds ``budget``
        (so a small ``--budget`` works with the default warm-up), and the result is validated."""
        config = config_from_options(cls, options, "DeepConf")
        config.warmup = min(config.warmup, config.budget)
        config.validate()
        return config

    def validate(self) -> None:
        if self.mode not in ("online", "offline"):
            raise ValueError(f"mode must be 'online' or 'offline', got {self.mode!r}")
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1 trace, got {self.budget}")
        if self.mode == "online" and not 1 <= self.warmup <= self.budget:
            raise ValueError(f"warmup must be between 1 and budget ({self.budget}), got {self.warmup}")
        if not 0 < self.eta <= 100:
            raise ValueError(f"eta is the percent of traces kept, in (0, 100]; got {self.eta}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau is a vote share in (0, 1]; got {self.tau}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1 token, got {self.window}")
        if self.confidence not in CONFIDENCE_KINDS:
            raise ValueError(f"confidence must be one of {', '.join(CONFIDENCE_KINDS)}, got {self.confidence!r}")


@dataclass
class DeepConfResult:
    answer: str | None
    votes: list[Vote]
    traces: list[Trace]
    mode: str
    threshold: float | None
    wall_time: float
    config: DeepConfConfig
    voting: dict[str, dict] = field(default_factory=dict)
    stopped_by_consensus: bool = False

    @property
    def tokens(self) -> int:
        """Every generated token, counting early-stopped and cancelled traces."""
        return sum(t.n_tokens for t in self.traces)

    def to_json(self) -> dict:
        c = self.config
        return {
            "answer": self.answer,
            "votes": [v.to_dict() for v in self.votes],
            "tokens": self.tokens,
            "wall_time": self.wall_time,
            "mode": self.mode,
            "threshold": self.threshold,
            "stopped_by_consensus": self.stopped_by_consensus,
            "n_traces": len(self.traces),
            "n_stopped_early": sum(t.stopped_early for t in self.traces),
            "config": {
                "budget": c.budget,
                "warmup": c.warmup,
                "eta": c.eta,
                "window": c.window,
                "tau": c.tau,
                "confidence": c.confidence,
            },
            "voting": self.voting,
            "traces": [t.to_dict(c.window) for t in self.traces],
        }


class _Annotator:
    """Extracts, groups and scores traces as they arrive."""

    def __init__(self, config: DeepConfConfig, extractor: Extractor, equivalent: Equivalence):
        self.config = config
        self.extractor = extractor
        self.grouper = AnswerGrouper(equivalent)

    def __call__(self, trace: Trace, phase: str) -> Trace:
        trace.phase = phase
        trace.confidence = trace_confidence(trace.confidences, self.config.window)
        if trace.finish_reason not in (LOW_CONFIDENCE, CANCELLED):
            raw = self.extractor(trace.text)
            # an empty answer (`\boxed{}`, `\boxed{ }`) is no answer: it never votes, as in the official DeepConf code
            trace.raw_answer = raw if raw is not None and raw.strip() else None
            trace.answer = self.grouper.canonical(trace.raw_answer)
        return trace


class DeepConfRun:
    """One question's DeepConf as a state machine, the algorithm of the module docstring in one place.

    A driver asks `can_start()` whether the question wants another trace now, calls `start()` when it starts one
    (which returns the trace's phase and the stop threshold to run it with) and `finish(trace, phase)` when it
    ends; `finish` returns False once the question has reached consensus and its running traces should be
    cancelled (report them with `finish` too: they are kept and counted, never voted). `run_deepconf` drives one
    question in waves through a `TraceGenerator`; `inference.scheduler` drives many questions over one batch.
    Online, at most ``batch_size`` (default: ``warmup``) final traces run at once, so a consensus cancels few.
    """

    def __init__(
        self,
        config: DeepConfConfig,
        extractor: Extractor = math_extractor,
        equivalent: Equivalence = math_equivalent,
        progress: Callable[[list[Trace], str | None], None] | None = None,
    ):
        config.validate()
        self.config = config
        self.annotate = _Annotator(config, extractor, equivalent)
        self.progress = progress
        self.traces: list[Trace] = []
        self.started = 0
        self.running = 0
        self.threshold: float | None = None
        self.votes: list[Vote] = []
        self.consensus = False
        self._warm_finished = 0

    @property
    def online(self) -> bool:
        return self.config.mode == "online"

    @property
    def phase(self) -> str:
        """The phase of the next trace to start."""
        if not self.online:
            return "offline"
        return "warmup" if self.started < self.config.warmup else "final"

    def can_start(self) -> bool:
        c = self.config
        if not self.online:
            return self.started < c.budget
        if self.started < c.warmup:
            return True
        return (
            self.threshold is not None
            and not self.consensus
            and self.started < c.budget
            and self.running < (c.batch_size or c.warmup)
        )

    @property
    def done(self) -> bool:
        return self.running == 0 and not self.can_start()

    def start(self) -> tuple[str, float | None]:
        """Count a trace as started; returns its phase and the early-stop threshold it runs with."""
        if not self.can_start():
            raise RuntimeError("DeepConfRun.start: this question wants no trace now (check can_start first)")
        phase = self.phase
        self.started += 1
        self.running += 1
        return phase, (self.threshold if phase == "final" else None)

    def release(self, n: int) -> None:
        """``n`` traces counted by `start` were never started (a backend stopped a wave early)."""
        self.started -= n
        self.running -= n

    def finish(self, trace: Trace, phase: str) -> bool:
        """Record a trace that ended; False when the question has reached consensus (cancel what still runs)."""
        self.running -= 1
        self.traces.append(self.annotate(trace, phase))
        if phase == "warmup":
            self._warm_finished += 1
            if self._warm_finished == self.config.warmup:
                self.threshold = percentile_threshold(
                    [t.confidence.lowest for t in self.traces if t.phase == "warmup"], self.config.eta
                )
                self._count_votes()
        elif phase == "final" and trace.finish_reason != CANCELLED:
            self._count_votes()
        if self.progress:
            if phase == "offline":
                leader = winner(tally([t.answer for t in self.traces]))
            else:
                leader = None if phase == "warmup" else winner(self.votes)
            self.progress(self.traces, leader)
        return not self.consensus

    def _count_votes(self) -> None:
        for t in self.traces:
            t.voted = t.answer is not None and t.confidence.lowest >= self.threshold
        self.votes = tally(
            [t.answer for t in self.traces if t.voted], [t.confidence.lowest for t in self.traces if t.voted]
        )
        self.consensus = leader_share(self.votes) >= self.config.tau

    def result(self, wall_time: float) -> DeepConfResult:
        c = self.config
        if self.online:
            result = DeepConfResult(
                winner(self.votes), self.votes, self.traces, "online", self.threshold, wall_time, c,
                stopped_by_consensus=self.consensus,
            )  # fmt: skip
        else:
            answering = [t for t in self.traces if t.answer is not None]
            conf = [t.confidence.get(c.confidence) for t in answering]
            cut = percentile_threshold(conf, c.eta) if any(math.isfinite(x) for x in conf) else None
            for t, keep in zip(answering, filter_top(conf, c.eta)):
                t.voted = keep
            votes = tally(
                [t.answer for t in answering if t.voted], [t.confidence.get(c.confidence) for t in answering if t.voted]
            )
            result = DeepConfResult(winner(votes), votes, self.traces, "offline", cut, wall_time, c)
        result.voting = voting_variants([t.answer for t in self.traces], [t.confidence.to_dict() for t in self.traces])
        return result


def run_deepconf(
    generator: TraceGenerator,
    prompt_ids: list[int],
    config: DeepConfConfig,
    *,
    extractor: Extractor = math_extractor,
    equivalent: Equivalence = math_equivalent,
    progress: Callable[[list[Trace], str | None], None] | None = None,
    max_new_tokens: int | None = None,
) -> DeepConfResult:
    """Run DeepConf for one prompt, in waves: offline all ``budget`` traces in one call; online the warm-up, then
    waves of ``batch_size`` final traces until consensus or budget. ``progress(traces_so_far, current_leader)``
    is called per trace; ``max_new_tokens`` caps every trace of this run (None: the generator's budget)."""
    run = DeepConfRun(config, extractor, equivalent, progress)
    token_cap = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    start = time.perf_counter()
    while run.can_start():
        phase, threshold = run.start()
        n = 1
        while run.can_start() and run.phase == phase:
            run.start()
            n += 1
        seen: set[int] = set()

        def on_trace(trace: Trace, phase: str = phase, seen: set[int] = seen) -> bool:
            seen.add(id(trace))
            return run.finish(trace, phase)

        stop = {} if threshold is None else {"threshold": threshold, "min_stop_tokens": config.min_stop_tokens}
        wave = generator.generate(prompt_ids, n, window=config.window, on_trace=on_trace, **stop, **token_cap)
        if not wave:
            raise RuntimeError("the trace generator returned no traces; DeepConf cannot make progress")
        for t in wave:  # cancelled traces come back without an on_trace call (and a backend may never call it)
            if id(t) not in seen:
                run.finish(t, phase)
        run.release(n - len(wave))
    return run.result(time.perf_counter() - start)
