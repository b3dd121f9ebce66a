"""Pick a DeepConf trace generator by name: "transformers" (CPU/GPU) or "vllm" (GPU, extra `vllm`)."""

from __future__ import annotations

from typing import Any

from falcon_h1r.inference.hf_backend import TransformersTraceGenerator
from falcon_h1r.inference.sampling import SamplingConfig
from falcon_h1r.inference.vllm_backend import VLLMTraceGenerator  # imports vllm only when one is built

BACKENDS = ("transformers", "vllm")


def make_generator(
    backend: str,
    model: str,
    *,
    sampling: SamplingConfig | None = None,
    device: str | None = None,
    dtype: str | None = None,
    tensor_parallel_size: int = 1,
    data_parallel_size: int = 1,
    max_batch: int | None = None,
    **engine_kwargs: Any,
):
    """A `TraceGenerator` with a ``prompt_ids(question)`` method, sampling as `sampling` says (default:
    `SamplingConfig()`; its max_new_tokens None is the checkpoint's generation_config.max_new_tokens, else
    65,536, on both backends). ``device`` / ``max_batch`` are the transformers backend's; the parallel sizes and
    ``engine_kwargs`` vLLM's."""
    if backend == "transformers":
        if engine_kwargs:
            raise ValueError(
                f"vLLM engine arguments {sorted(engine_kwargs)} do nothing with the transformers backend. "
                "Fix: drop them (--vllm-arg), or pass --backend vllm."
            )
        return TransformersTraceGenerator.from_pretrained(
            model, device=device, dtype=dtype, sampling=sampling, max_batch=max_batch
        )
    if backend == "vllm":
        if max_batch is not None or device is not None:
            raise ValueError(
                "--max-batch and --device are the transformers backend's; vLLM schedules its own batches on its own "
                "device. Fix: drop them, or pass --backend transformers."
            )
        if dtype:
            engine_kwargs["dtype"] = dtype
        return VLLMTraceGenerator(
            model,
            sampling=sampling,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            **engine_kwargs,
        )
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
