"""falcon_h1r.modeling: the FalconH1R config and model (also shipped verbatim as Hub remote code)."""

from __future__ import annotations

from pathlib import Path

from .configuration_falcon_h1r import FalconH1RConfig
from .modeling_falcon_h1r import (
    AUTO_MAP,
    CACHE_NAME,
    FalconH1RForCausalLM,
    FalconH1RHybridCache,
    FalconH1RModel,
    FalconH1RPreTrainedModel,
)

_HERE = Path(__file__).resolve().parent
# The files a Hub folder needs for `trust_remote_code=True` (they import only torch, transformers and each other):
# the config, the model (reference math, top to bottom), its CPU-speed ops, its CUDA-kernel seam, strict loading.
REMOTE_CODE_FILES: list[Path] = [
    _HERE / "configuration_falcon_h1r.py",
    _HERE / "modeling_falcon_h1r.py",
    _HERE / "cpu_ops_falcon_h1r.py",
    _HERE / "kernels_falcon_h1r.py",
    _HERE / "checkpoint_falcon_h1r.py",
]


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModel / AutoModelForCausalLM resolve model_type `falcon_h1r` to our classes."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    AutoConfig.register("falcon_h1r", FalconH1RConfig, exist_ok=True)
    AutoModel.register(FalconH1RConfig, FalconH1RModel, exist_ok=True)
    AutoModelForCausalLM.register(FalconH1RConfig, FalconH1RForCausalLM, exist_ok=True)


__all__ = [
    "AUTO_MAP",
    "CACHE_NAME",
    "REMOTE_CODE_FILES",
    "FalconH1RConfig",
    "FalconH1RForCausalLM",
    "FalconH1RHybridCache",
    "FalconH1RModel",
    "FalconH1RPreTrainedModel",
    "register_auto_classes",
]
