"""Loading a Falcon-H1R checkpoint with its tokenizer for generation, and `generate()` kwargs for compiled decoding.

(Chat prompts, the end-of-sequence set and trace decoding are in `falcon_h1r.inference.prompting`.)
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer, CompileConfig, PreTrainedTokenizerBase

from falcon_h1r import FalconH1RForCausalLM, resolve_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model_and_tokenizer(
    model: str | None = None, dtype: str = "auto", device: str | None = None
) -> tuple[FalconH1RForCausalLM, PreTrainedTokenizerBase]:
    """A checkpoint directory or Hub id (config `falcon_h1r` or in-tree `falcon_h1`), ready for generation.

    dtype "auto" is bfloat16 on CUDA and float32 on CPU (CPU bf16 matmuls are slow on most machines).
    """
    path = resolve_model(model)
    device = device or default_device()
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not supported; choose one of auto, {', '.join(DTYPES)}.")
    loaded = FalconH1RForCausalLM.from_pretrained(path, dtype=DTYPES[dtype]).to(device).eval()  # config errors first
    return loaded, AutoTokenizer.from_pretrained(path)


def compiled_decoding(device: str | torch.device = "cpu") -> dict:
    """`generate()` kwargs for a torch.compile'd decode step over a static (preallocated) cache, on any device.

    The first call pays the compile (tens of seconds); it pays off over long generations. transformers compiles
    only on accelerators unless the config says otherwise, hence the flag. On the CPU, where a small model's
    step is mostly overhead, two inductor options matter (measured in bench/model_speed.py):
    - decompose_mm_pass turns batch-1 matrix-vector products into fused multiply-sum loops that run on all
      threads (MKL runs them on one here, at half the memory bandwidth);
    - cpp_wrapper drives the step's kernels from generated C++ instead of Python.
    """
    if torch.device(device).type != "cpu":
        config = CompileConfig(mode="default")  # "reduce-overhead" (CUDA graphs) is untested with the hybrid cache
    else:  # torch.compile takes a mode or options, not both
        config = CompileConfig(
            mode=None, options={"post_grad_fusion_options": {"decompose_mm_pass": {}}, "cpp_wrapper": True}
        )
    config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": config}
