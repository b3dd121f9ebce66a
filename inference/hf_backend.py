"""DeepConf's transformers backend: batched sampling over our model and its hybrid cache (CPU or GPU).

All traces of one call share the prompt, so the prompt is prefilled once and the cache is expanded to
``n`` rows; every step then decodes one token for every running trace, with no padding. The token
confidence is computed from the raw logits of that step (before temperature / top-k / top-p, as vLLM
reports log-probs), so both backends give the same confidences for the same trace. A trace that ends
(end-of-sequence, length, low confidence, or cancelled) is removed from the batch with
``cache.batch_select_indices`` and costs no further compute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from falcon_h1r.inference.confidence import TOP_K, ConfidenceTracker, token_confidences_from_logits
from falcon_h1r.inference.deepconf import CANCELLED, FINISHED, LENGTH, LOW_CONFIDENCE, Trace
from falcon_h1r.inference.loading import load_model_and_tokenizer
from falcon_h1r.inference.prompting import chat_prompt_ids, decode_trace, eos_token_ids
from falcon_h1r.inference.sampling import SamplingConfig
from falcon_h1r.modeling import CACHE_NAME


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    top_k: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One token per row of ``logits [B, V]`` with temperature, top-k and nucleus (top-p) filtering."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    x = logits.float() / temperature
    if top_k is not None and 0 < top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if top_p < 1.0:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        # drop a token when the mass of the tokens strictly before it already reaches top_p
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        drop[..., 0] = False
        x = x.scatter(-1, order, sorted_x.masked_fill(drop, float("-inf")))
    probs = torch.softmax(x, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class TransformersTraceGenerator:
    """`TraceGenerator` over a transformers causal LM (our FalconH1R, or any model with a batch-selectable cache)."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        sampling: SamplingConfig | None = None,
        top_k_logprobs: int = TOP_K,
        max_batch: int | None = None,
    ):
        self.model = model.eval()
        self.max_batch = max_batch  # most traces decoded together (None: all of a call at once)
        self.tokenizer = tokenizer
        self.sampling = (sampling or SamplingConfig()).resolved(getattr(model, "generation_config", None))
        self.top_k_logprobs = top_k_logprobs
        self.eos_ids = eos_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device)
        if self.sampling.seed is not None:
            self.generator.manual_seed(self.sampling.seed)
        else:
            self.generator.seed()

    @classmethod
    def from_pretrained(cls, path: str, *, device: str | None = None, dtype: str | None = None, **kwargs):
        """Load a checkpoint directory or Hub id (FalconH1R, or in-tree falcon_h1 weights) with its tokenizer.
        ``dtype=None`` is bfloat16 on CUDA and float32 on CPU."""
        model, tokenizer = load_model_and_tokenizer(path, dtype=dtype or "auto", device=device)
        return cls(model, tokenizer, **kwargs)

    def prompt_ids(self, question: str, system: str | None = None) -> list[int]:
        return chat_prompt_ids(self.tokenizer, question, system)

    def end_reason(self, token: int, low_confidence: bool, n_tokens: int, budget: int) -> str | None:
        """Why a trace ends after this token, or None; end-of-sequence wins over a stop on the same token."""
        if token in self.eos_ids:
            return FINISHED
        if low_confidence:
            return LOW_CONFIDENCE
        if n_tokens >= budget:
            return LENGTH
        return None

    def finish_trace(self, row_tokens: list[int], tracker: ConfidenceTracker, reason: str) -> Trace:
        return Trace(
            text=decode_trace(self.tokenizer, row_tokens, self.eos_ids),
            token_ids=list(row_tokens),
            confidences=list(tracker.confidences),
            finish_reason=reason,
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
        """`TraceGenerator.generate`, in chunks of at most ``max_batch`` traces (none started after a cancel)."""
        budget = max_new_tokens or self.sampling.max_new_tokens
        chunk = self.max_batch or max(n, 1)
        cancelled = False

        def watch(trace: Trace) -> bool:
            nonlocal cancelled
            keep_going = on_trace is None or on_trace(trace) is not False
            cancelled = cancelled or not keep_going
            return keep_going

        traces: list[Trace] = []
        for start in range(0, n, chunk):
            if cancelled:
                break
            n_chunk = min(chunk, n - start)
            traces += self._generate_batch(prompt_ids, n_chunk, window, threshold, min_stop_tokens, watch, budget)
        return traces

    @torch.inference_mode()
    def _generate_batch(self, prompt_ids, n, window, threshold, min_stop_tokens, on_trace, budget) -> list[Trace]:
        if not prompt_ids:
            raise ValueError("empty prompt: DeepConf needs at least one prompt token")
        if n < 1:
            return []
        ids = torch.tensor([prompt_ids], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = out[CACHE_NAME]
        # one prefill, expanded to n identical rows (index selection may repeat an index)
        cache.batch_select_indices(torch.zeros(n, dtype=torch.long, device=self.device))
        logits = out.logits[:, -1].expand(n, -1)

        active = list(range(n))  # trace number of each batch row
        tokens: list[list[int]] = [[] for _ in range(n)]
        trackers = [ConfidenceTracker(window, threshold, min_stop_tokens) for _ in range(n)]
        traces: list[Trace] = []
        cancelled = False
        cfg = self.sampling
        while active:
            conf = token_confidences_from_logits(logits, self.top_k_logprobs).tolist()
            nxt = sample_next(
                logits, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, generator=self.generator
            )
            nxt_list = nxt.tolist()
            keep_rows: list[int] = []
            for row, i in enumerate(active):
                tok = nxt_list[row]
                tokens[i].append(tok)
                low = trackers[i].add(conf[row])
                reason = self.end_reason(tok, low, len(tokens[i]), budget)
                if reason is None:
                    keep_rows.append(row)
                    continue
                trace = self.finish_trace(tokens[i], trackers[i], reason)
                traces.append(trace)
                if on_trace is not None and not cancelled and on_trace(trace) is False:
                    cancelled = True
            if cancelled:
                for row in keep_rows:
                    i = active[row]
                    traces.append(self.finish_trace(tokens[i], trackers[i], CANCELLED))
                break
            if not keep_rows:
                break
            if len(keep_rows) < len(active):
                index = torch.tensor(keep_rows, dtype=torch.long, device=self.device)
                cache.batch_select_indices(index)
                nxt = nxt[index]
                active = [active[r] for r in keep_rows]
            out = self.model(input_ids=nxt[:, None], use_cache=True, **{CACHE_NAME: cache})
            cache = out[CACHE_NAME]
            logits = out.logits[:, -1]
        return traces
