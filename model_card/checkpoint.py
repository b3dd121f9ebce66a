"""Checkpoint folders: read/rewrite config.json between the in-tree `falcon_h1` and our `falcon_h1r` layouts.

Both layouts hold the same parameter names and bytes; only config.json (model_type, architectures, auto_map)
and the presence of the remote-code files differ. The config is handled as a plain JSON dict, so every field
(including transformers' encoded values such as `{"__float__": "Infinity"}`) is carried over untouched.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from falcon_h1r import resolve_model
from falcon_h1r.model_card.safetensors_io import CheckpointError, TensorEntry
from falcon_h1r.model_card.vllm_plugin import vllm_config_problems
from falcon_h1r.modeling import AUTO_MAP, REMOTE_CODE_FILES

ARCHITECTURES = {"falcon_h1": "FalconH1ForCausalLM", "falcon_h1r": "FalconH1RForCausalLM"}
# Files a tokenizer may consist of (any subset); copied verbatim.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
GENERATION_FILE = "generation_config.json"


def resolve_checkpoint(path_or_repo: str | Path) -> Path:
    """A local checkpoint folder, or a Hub model id downloaded (cached) with huggingface_hub."""
    path = Path(path_or_repo)
    if path.is_dir():
        return path
    text = str(path_or_repo)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/")):
        raise CheckpointError(f"{text}: not a checkpoint folder. Fix: pass a folder or a Hub id like ORG/NAME.")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]))
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{text}: no such local folder, and downloading it from the Hub failed ({exc}). "
            "Fix: check the path / repo id, or download it first with `hf download`."
        ) from exc


def checkpoint_argument(positional: str | None, model: str | None, parser: argparse.ArgumentParser) -> Path:
    """The checkpoint a `card` / `publish` / `convert` command names: its positional argument or `--model` (not
    two different ones); neither is the embedded checkpoint. A local folder, or a Hub id downloaded."""
    if positional and model and positional != model:
        parser.error("give the checkpoint either as the positional argument or as --model, not both")
    return resolve_checkpoint(positional or resolve_model(model))


def load_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a Falcon-H1 / Falcon-H1R checkpoint as a dict; refuses other model types."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json. Fix: point at a folder written by save_pretrained.")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}). Fix: restore the file.") from exc
    model_type = cfg.get("model_type")
    if model_type not in ARCHITECTURES:
        raise CheckpointError(
            f"{path}: model_type is {model_type!r}; only 'falcon_h1' (in-tree transformers) and 'falcon_h1r' "
            "checkpoints are supported. Fix: use a Falcon-H1 / Falcon-H1R checkpoint."
        )
    return cfg


def remote_code() -> tuple[list[Path], dict[str, str]]:
    """The modeling files to ship next to the weights and the auto_map that points at them (modeling's own, the
    one `save_pretrained` writes)."""
    return [Path(p) for p in REMOTE_CODE_FILES], dict(AUTO_MAP)


def add_interop_fields(cfg: dict[str, Any]) -> dict[str, Any]:
    """Make implicit values explicit for readers that do not derive them (vLLM, llama.cpp's converter).

    `head_dim` is derived by transformers as hidden_size // num_attention_heads when absent; llama.cpp's
    converter requires it in the file. A top-level `rope_theta` mirrors rope_parameters for older readers;
    transformers ignores it when rope_parameters already holds rope_theta, so both stay consistent.
    """
    out = dict(cfg)
    if out.get("head_dim") is None and out.get("hidden_size") and out.get("num_attention_heads"):
        out["head_dim"] = out["hidden_size"] // out["num_attention_heads"]
    rope = out.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope and "rope_theta" not in out:
        out["rope_theta"] = rope["rope_theta"]
    return out


def remote_code_architecture(cfg: dict[str, Any]) -> str:
    """The `architectures` entry of our layout: vLLM's `FalconH1ForCausalLM` when vLLM's Falcon-H1 serves the config
    faithfully, so stock vLLM (without our plugin) runs its own Falcon-H1 on it; else `FalconH1RForCausalLM`, a name
    only our plugin resolves (to a class that refuses the config), so stock vLLM cannot serve it wrongly.
    transformers loads both through `auto_map`, which does not read this field."""
    errors, mismatches = vllm_config_problems(cfg)
    return ARCHITECTURES["falcon_h1r" if errors or mismatches else "falcon_h1"]


def rewrite_config(cfg: dict[str, Any], to: str) -> dict[str, Any]:
    """Config for the target layout: `falcon_h1r` (remote code, auto_map) or `falcon_h1` (in-tree)."""
    if to not in ARCHITECTURES:
        raise ValueError(f"unknown target layout {to!r}; choose 'falcon_h1r' or 'falcon_h1'")
    out = add_interop_fields(cfg)
    out["model_type"] = to
    out["architectures"] = [remote_code_architecture(out) if to == "falcon_h1r" else ARCHITECTURES[to]]
    if to == "falcon_h1r":
        out["auto_map"] = remote_code()[1]
    else:
        out.pop("auto_map", None)
    return out


def write_config(cfg: dict[str, Any], folder: str | Path) -> Path:
    path = Path(folder) / "config.json"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return path


def copy_tokenizer_and_generation(src: str | Path, dst: str | Path) -> list[Path]:
    """Copy the tokenizer files and generation_config.json that exist in `src`, byte for byte."""
    src, dst = Path(src), Path(dst)
    copied = []
    for name in (*TOKENIZER_FILES, GENERATION_FILE):
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(dst / name)
    return copied


def chat_template_of(folder: str | Path) -> str | None:
    """The chat template shipped in a folder (chat_template.jinja, chat_template.json or tokenizer_config.json)."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    for name, key in (("chat_template.json", "chat_template"), ("tokenizer_config.json", "chat_template")):
        if (folder / name).is_file():
            try:
                value = json.loads((folder / name).read_text()).get(key)
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(value, str) and value.strip():
                return value
    return None


def parameter_summary(entries: list[TensorEntry]) -> tuple[int, list[str]]:
    """(number of parameters stored, sorted dtypes) from the safetensors headers alone."""
    return sum(e.numel for e in entries), sorted({e.dtype for e in entries})
