"""Strict loading for Falcon-H1R checkpoints: a truncated shard, a missing shard or tensor, or a tensor whose shape
does not fit config.json is refused with an error naming it, before any weight is loaded. In-tree transformers would
initialise a missing tensor at random and only warn. Part of the remote code (imports torch, transformers, safetensors).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch
from torch import nn
from transformers.generation import GenerationMixin


def load_strictly(load: Callable, cls: type[nn.Module], pretrained_model_name_or_path, *args, **kwargs):
    """`load` (transformers' from_pretrained of `cls`), refusing incomplete or mis-shaped local checkpoints.

    Two callers get transformers' own behaviour for missing tensors: `from_pretrained(None, state_dict=...)` (the
    weights are the caller's, not a checkpoint's) and `output_loading_info=True` (the caller asked for the report of
    what is missing and reads it); a truncated file or a mis-shaped tensor is refused for them too."""
    if pretrained_model_name_or_path is None:
        return load(pretrained_model_name_or_path, *args, **kwargs)
    want_info = kwargs.pop("output_loading_info", False)
    may_miss: set[str] = set()
    if os.path.isdir(str(pretrained_model_name_or_path)):
        config = kwargs.get("config")
        if not isinstance(config, cls.config_class):
            config = cls.config_class.from_pretrained(pretrained_model_name_or_path)
        may_miss = check_checkpoint_files(str(pretrained_model_name_or_path), cls, config, allow_missing=want_info)
    model, info = load(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
    if not want_info and set(info["missing_keys"]) - may_miss:
        raise ValueError(
            f"{pretrained_model_name_or_path}: the checkpoint has no tensor for {sorted(info['missing_keys'])}; "
            "it is incomplete or belongs to another architecture. Re-download or re-save it."
        )
    return (model, info) if want_info else model


def check_checkpoint_files(
    directory: str, model_class: type[nn.Module], config, allow_missing: bool = False
) -> set[str]:
    """Refuse a local safetensors checkpoint that is truncated, misses a shard or tensor, or has a tensor of
    the wrong shape for `config`, before any weight is loaded. Returns the tensors the model may lack after loading:
    an untied `lm_head.weight` when a base-model checkpoint goes into the causal LM (transformers initialises it
    and reports it, as for in-tree)."""
    from safetensors import safe_open

    index_path = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    elif os.path.exists(os.path.join(directory, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        return set()  # other formats are left to transformers
    found: dict[str, tuple[int, ...]] = {}
    for name in files:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise ValueError(
                f"{path} is listed in model.safetensors.index.json but missing. Re-download the checkpoint."
            )
        try:
            with safe_open(path, framework="pt") as shard:
                found.update({key: tuple(shard.get_slice(key).get_shape()) for key in shard.keys()})
        except Exception as err:  # safetensors raises its own error type for a cut-off header or data
            raise ValueError(f"{path} is not a complete safetensors file ({err}). Re-download or re-save it.") from err
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    # A causal-LM checkpoint loads into the base model and a base-model checkpoint into the causal LM (as in-tree):
    # compare names with the base model's prefix put on or taken off as the class needs.
    prefix = model_class.base_model_prefix + "."
    prefixed = any(k.startswith(prefix) for k in found)
    causal_lm = issubclass(model_class, GenerationMixin)
    may_miss: set[str] = set()
    if not causal_lm and prefixed:
        found = {k.removeprefix(prefix): v for k, v in found.items() if k.startswith(prefix)}
    elif causal_lm and not prefixed:
        found = {prefix + k: v for k, v in found.items()}
        may_miss = {"lm_head.weight"} & set(expected)
        expected = {k: v for k, v in expected.items() if k not in may_miss}
    missing = [] if allow_missing else [k for k in expected if k not in found]
    wrong = [f"{k}: {found[k]} != {shape}" for k, shape in expected.items() if k in found and found[k] != shape]
    if missing or wrong:
        raise ValueError(
            f"{directory} does not match its config.json: "
            + (f"missing tensors {missing}; " if missing else "")
            + (f"wrong shapes (checkpoint != config) {wrong}; " if wrong else "")
            + "fix the config or re-save the checkpoint."
        )
    return may_miss
