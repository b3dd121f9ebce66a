"""DeepConf over many questions on the transformers backend: one batch of at most ``capacity`` rows, kept full.

Saved tokens become saved time only when a freed row is given to other work. Here a trace starts as soon as a
row frees (end of sequence, low-confidence stop, or its question's consensus), from whichever question may start
one (the oldest first; a new question is admitted when none of those in flight can), and every question keeps
its own warm-up, threshold, votes and budget (`DeepConfRun`, the single-question algorithm).

Rows hold different prompts at different positions. Each row's tokens are right-aligned in the attention cache:
row r owns the last ``length[r]`` KV columns, the columns before them are masked out, and its next position is
``length[r]``. A question's prompt is computed once, when it is admitted: all of it but the last token is
prefilled into a snapshot, which is copied into each row that starts one of its traces; the row then feeds the
prompt's last token as its first step, like a row that feeds its last sampled token. Conv and SSM states are per
row already. Columns that no row uses any more are dropped as the batch moves on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from falcon_h1r.inference.confidence import ConfidenceTracker, token_confidences_from_logits
from falcon_h1r.inference.deepconf import CANCELLED, DeepConfConfig, DeepConfResult, DeepConfRun
from falcon_h1r.inference.hf_backend import TransformersTraceGenerator, sample_next
from falcon_h1r.inference.voting import Equivalence, Extractor, math_equivalent, math_extractor
from falcon_h1r.modeling import CACHE_NAME

DEFAULT_CAPACITY = 64  # rows decoding at once
TRIM_EVERY = 32  # drop unused leading KV columns once this many have built up (each drop copies the cache)


@dataclass
class PromptSnapshot:
    """A question's prefilled prompt (all but its last token): per layer KV (1, kv_heads, P-1, d), conv and SSM."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    conv: list[torch.Tensor]
    ssm: list[torch.Tensor]
    last_token: int

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]


def snapshot(cache, last_token: int) -> PromptSnapshot:
    layers = cache.layers
    return PromptSnapshot(
        [layer.keys.clone() for layer in layers],
        [layer.values.clone() for layer in layers],
        [layer.conv_states[0].clone() for layer in layers],
        [layer.recurrent_states[0].clone() for layer in layers],
        last_token,
    )


class RowCache:
    """The batch's hybrid cache, seen as independent rows (the layer fields every supported transformers has)."""

    def __init__(self, cache):
        self.cache = cache

    @property
    def columns(self) -> int:
        return self.cache.layers[0].keys.shape[2]

    @property
    def rows(self) -> int:
        return self.cache.layers[0].keys.shape[0]

    def _pad_left(self, n: int) -> None:
        for layer in self.cache.layers:
            for name in ("keys", "values"):
                t = getattr(layer, name)
                setattr(layer, name, torch.cat([t.new_zeros(*t.shape[:2], n, t.shape[3]), t], dim=2))

    def write(self, row: int, prompt: PromptSnapshot) -> None:
        """Row ``row`` holds ``prompt``, right-aligned (grows every row on the left when the prompt is longer)."""
        if prompt.length > self.columns:
            self._pad_left(prompt.length - self.columns)
        first = self.columns - prompt.length
        for i, layer in enumerate(self.cache.layers):
            layer.keys[row, :, first:] = prompt.keys[i][0]
            layer.values[row, :, first:] = prompt.values[i][0]
            layer.conv_states[0][row] = prompt.conv[i][0]
            layer.recurrent_states[0][row] = prompt.ssm[i][0]

    def append(self, n: int) -> None:
        """``n`` more rows (to be written before use)."""
        for layer in self.cache.layers:
            for name in ("keys", "values"):
                t = getattr(layer, name)
                setattr(layer, name, torch.cat([t, t.new_zeros(n, *t.shape[1:])]))
            for states in (layer.conv_states, layer.recurrent_states):
                states[0] = torch.cat([states[0], states[0].new_zeros(n, *states[0].shape[1:])])

    def keep(self, rows: list[int]) -> None:
        self.cache.batch_select_indices(torch.tensor(rows, dtype=torch.long, device=self.cache.layers[0].keys.device))

    def drop_leading(self, n: int) -> None:
        for layer in self.cache.layers:
            layer.keys = layer.keys[:, :, n:]
            layer.values = layer.values[:, :, n:]


@dataclass
class _Row:
    question: int
    phase: str
    tracker: ConfidenceTracker
    feed: int  # the token this row feeds next step
    length: int  # tokens of this row's sequence already in the cache (= the position of `feed`)
    tokens: list[int] = field(default_factory=list)


@dataclass
class WorkloadResult:
    """Every question's result, in input order, and what the workload cost."""

    results: list[DeepConfResult]
    wall_time: float
    capacity: int
    steps: int  # decode steps (batched forwards)
    peak_rows: int = 0  # most rows decoding at once

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results)

    def summary(self) -> dict:
        return {
            "questions": len(self.results),
            "wall_time": round(self.wall_time, 3),
            "tokens": self.tokens,
            "capacity": self.capacity,
            "decode_steps": self.steps,
            "peak_rows": self.peak_rows,
        }


class DeepConfScheduler:
    """Answers many questions with DeepConf over one batch of at most ``capacity`` rows (transformers backend)."""

    def __init__(self, generator: TransformersTraceGenerator, capacity: int = DEFAULT_CAPACITY):
        if capacity < 1:
            raise ValueError(f"capacity is the most rows decoding at once; it must be >= 1, got {capacity}")
        self.gen = generator
        self.capacity = capacity

    @torch.inference_mode()
    def run(
        self,
        prompts: Sequence[list[int]],
        config: DeepConfConfig,
        *,
        extractor: Extractor = math_extractor,
        equivalent: Equivalence = math_equivalent,
        on_result: Callable[[int, DeepConfResult], None] | None = None,
        max_new_tokens: int | None = None,
    ) -> WorkloadResult:
        """DeepConf for every prompt; ``on_result(index, result)`` is called as each question is answered."""
        for i, p in enumerate(prompts):
            if len(p) < 2:
                raise ValueError(
                    f"prompt {i} has {len(p)} token(s); the scheduler needs at least 2 (use a chat prompt)"
                )
        gen, model, device = self.gen, self.gen.model, self.gen.device
        budget = max_new_tokens or gen.sampling.max_new_tokens
        config.validate()
        runs = [DeepConfRun(config, extractor, equivalent) for _ in prompts]
        admitted: list[int] = []  # questions in flight, oldest first
        snapshots: dict[int, PromptSnapshot] = {}
        started_at: dict[int, float] = {}
        results: list[DeepConfResult | None] = [None] * len(prompts)
        next_question = 0
        cache: RowCache | None = None
        rows: list[_Row] = []
        steps = peak_rows = 0
        t0 = time.perf_counter()

        def admit(q: int) -> None:
            nonlocal cache
            ids = torch.tensor([prompts[q][:-1]], device=device)
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            snapshots[q] = snapshot(out[CACHE_NAME], prompts[q][-1])
            started_at[q] = time.perf_counter()
            admitted.append(q)
            if cache is None:  # the batch cache starts as this prefill's cache with no rows
                cache = RowCache(out[CACHE_NAME])
                cache.keep([])

        def next_trace() -> int | None:
            nonlocal next_question
            for q in admitted:
                if runs[q].can_start():
                    return q
            while next_question < len(prompts):
                q = next_question
                next_question += 1
                admit(q)
                if runs[q].can_start():
                    return q
            return None

        def start_row(q: int) -> _Row:
            phase, threshold = runs[q].start()
            tracker = ConfidenceTracker(
                config.window, threshold, config.min_stop_tokens if threshold is not None else None
            )
            snap = snapshots[q]
            return _Row(q, phase, tracker, feed=snap.last_token, length=snap.length)

        def end(row: _Row, reason: str) -> bool:
            return runs[row.question].finish(gen.finish_trace(row.tokens, row.tracker, reason), row.phase)

        def retire_done() -> None:
            for q in [q for q in admitted if runs[q].done]:
                admitted.remove(q)
                del snapshots[q]
                results[q] = runs[q].result(time.perf_counter() - started_at[q])
                if on_result:
                    on_result(q, results[q])

        free: list[int] = []  # row indices that ended this step
        while True:
            # 1. give freed rows (then new rows, up to capacity) to new traces; drop the rows left over
            while (free or len(rows) < self.capacity) and (q := next_trace()) is not None:
                row = start_row(q)
                if free:
                    index = free.pop(0)
                    rows[index] = row
                else:
                    cache.append(1)
                    rows.append(row)
                    index = len(rows) - 1
                cache.write(index, snapshots[q])
            if free:
                ended = set(free)
                keep = [i for i in range(len(rows)) if i not in ended]
                cache.keep(keep)
                rows = [rows[i] for i in keep]
                free = []
            retire_done()
            if not rows:
                break
            # 2. one decode step for every row: its own position, attending to its own columns only
            columns = cache.columns
            lengths = torch.tensor([r.length for r in rows], device=device)
            mask = torch.arange(columns + 1, device=device)[None, :] >= (columns - lengths)[:, None]
            out = model(
                input_ids=torch.tensor([[r.feed] for r in rows], device=device),
                attention_mask=mask.long(),
                position_ids=lengths[:, None],
                use_cache=True,
                **{CACHE_NAME: cache.cache},
            )
            cache.cache = out[CACHE_NAME]
            steps += 1
            peak_rows = max(peak_rows, len(rows))
            logits = out.logits[:, -1]
            conf = token_confidences_from_logits(logits, gen.top_k_logprobs).tolist()
            cfg = gen.sampling
            tokens = sample_next(
                logits, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, generator=gen.generator
            ).tolist()
            # 3. every row takes its token; rows that end free up, a consensus cancels its question's other rows
            ended = []
            for i, row in enumerate(rows):
                row.length += 1
                row.tokens.append(tokens[i])
                row.feed = tokens[i]
                reason = gen.end_reason(tokens[i], row.tracker.add(conf[i]), len(row.tokens), budget)
                if reason is not None:
                    ended.append((i, reason))
            cancelled: set[int] = set()
            for i, reason in ended:
                free.append(i)
                if not end(rows[i], reason):
                    cancelled.add(rows[i].question)
            for i, row in enumerate(rows):
                if row.question in cancelled and i not in free:
                    free.append(i)
                    end(row, CANCELLED)
            free.sort()
            ended = set(free)
            live = [r.length for i, r in enumerate(rows) if i not in ended]
            if live and cache.columns - max(live) >= TRIM_EVERY:
                cache.drop_leading(cache.columns - max(live))
        return WorkloadResult(list(results), time.perf_counter() - t0, self.capacity, steps, peak_rows)


def answer_all(
    generator,
    prompts: Sequence[list[int]],
    config: DeepConfConfig,
    *,
    capacity: int = DEFAULT_CAPACITY,
    on_result: Callable[[int, DeepConfResult], None] | None = None,
    max_new_tokens: int | None = None,
    **kwargs,
) -> WorkloadResult:
    """DeepConf for many prompts as one workload of at most ``capacity`` traces in flight: this module's scheduler
    on the transformers backend, streamed and aborted requests on vLLM (`VLLMTraceGenerator.run_workload`)."""
    if isinstance(generator, TransformersTraceGenerator):
        return DeepConfScheduler(generator, capacity).run(
            prompts, config, on_result=on_result, max_new_tokens=max_new_tokens, **kwargs
        )
    start = time.perf_counter()
    results = generator.run_workload(
        prompts, config, capacity, on_result=on_result, max_new_tokens=max_new_tokens, **kwargs
    )
    return WorkloadResult(results, time.perf_counter() - start, capacity, steps=0)
