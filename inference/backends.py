"""Pick a DeepConf trace generator by name: "transformers" (CPU/GPU) or "vllm" (GPU, extra `vllm`)."""

from __future__ import annotations

from typing import Any

BACKENDS = ("transformers", "vllm")


def make_generator(
    backend: str,
    model: str,
    *,
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int | None = None,
    max_new_tokens: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    max_batch: int | None = None,
    **engine_kwargs: Any,
):
    """A `TraceGenerator` with a ``prompt_ids(question)`` method. ``max_new_tokens=None`` takes the
    checkpoint's generation_config.max_new_tokens (transformers) or 65,536 (vLLM, the paper's budget)."""
    sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "seed": seed}
    if backend == "transformers":
        from falcon_h1r.inference.hf_backend import TransformersTraceGenerator

        gen = TransformersTraceGenerator.from_pretrained(
            model, device=device, dtype=dtype, max_batch=max_batch, **sampling
        )
        if max_new_tokens is None:
            max_new_tokens = getattr(gen.model.generation_config, "max_new_tokens", None) or 4096
        gen.max_new_tokens = max_new_tokens
        return gen
    if backend == "vllm":
        from falcon_h1r.inference.vllm_backend import VLLMTraceGenerator

        if dtype:
            engine_kwargs["dtype"] = dtype
        return VLLMTraceGenerator(
            model,
            max_new_tokens=max_new_tokens or 65536,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            **sampling,
            **engine_kwargs,
        )
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
