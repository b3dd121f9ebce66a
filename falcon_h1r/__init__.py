"""Falcon-H1R for the Hugging Face ecosystem.

Importing the package registers `FalconH1RConfig` / `FalconH1RModel` / `FalconH1RForCausalLM` with the
transformers Auto* factories, so `AutoModelForCausalLM.from_pretrained(dir)` works on our checkpoints
without `trust_remote_code` once `falcon_h1r` is imported.
"""

from __future__ import annotations

from pathlib import Path

from falcon_h1r.modeling import FalconH1RConfig, FalconH1RForCausalLM, FalconH1RModel, register_auto_classes

__version__ = "0.1.0"

register_auto_classes()


def tiny_model_path() -> Path:
    """Directory of the embedded tiny Falcon-H1R checkpoint (package data; loads offline)."""
    return Path(__file__).resolve().parent / "tiny_model"


def resolve_model(model: str | None) -> str:
    """`--model` default: the embedded checkpoint when no model is named."""
    return str(tiny_model_path()) if model is None else model


__all__ = [
    "FalconH1RConfig",
    "FalconH1RForCausalLM",
    "FalconH1RModel",
    "resolve_model",
    "tiny_model_path",
    "__version__",
]
