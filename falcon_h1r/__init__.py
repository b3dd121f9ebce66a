"""Falcon-H1R for the Hugging Face ecosystem.

Importing the package registers `FalconH1RConfig` / `FalconH1RModel` / `FalconH1RForCausalLM` with the
transformers Auto* factories, so `AutoModelForCausalLM.from_pretrained(dir)` works on our checkpoints
without `trust_remote_code` once `falcon_h1r` is imported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from falcon_h1r.modeling import FalconH1RConfig, FalconH1RForCausalLM, FalconH1RModel, register_auto_classes

__version__ = "0.1.0"

# The model card's recommended sampling: temperature 0.6, top_p 0.95, up to 65,536 new tokens. Every sampling
# default of the package (generation, DeepConf, lm-eval's stock tasks, the embedded and published checkpoints'
# generation_config) is these. The budget is kept apart: a max_new_tokens in a generation_config.json would
# override the per-request budget lm-eval passes, so checkpoints do not carry it.
RECOMMENDED_SAMPLING: dict[str, float] = {"temperature": 0.6, "top_p": 0.95}
RECOMMENDED_MAX_NEW_TOKENS = 65536

register_auto_classes()


def tiny_model_path() -> Path:
    """Directory of the embedded tiny Falcon-H1R checkpoint (package data; loads offline)."""
    return Path(__file__).resolve().parent / "tiny_model"


class UsageError(ValueError):
    """Bad input from the command line or a recipe; the CLI prints its message (problem and fix) as one line."""


def resolve_model(model: str | None) -> str:
    """`--model`: the embedded checkpoint when no model is named; a local folder must exist (anything that is not a
    path, like ORG/NAME, is left to the Hub)."""
    if model is None:
        return str(tiny_model_path())
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"--model {model}: the folder has no config.json. Fix: point at a folder written by save_pretrained."
            )
        return str(path)
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise UsageError(
            f"--model {model}: no such checkpoint folder. Fix: pass a folder written by save_pretrained, a Hub id "
            "like ORG/NAME, or leave --model out for the embedded tiny model."
        )
    return model


def subcommand_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The parser of one `falcon-h1r` subcommand, with the shared `--model` option (default: the embedded
    checkpoint, through `resolve_model`). Every subcommand module builds its parser with it."""
    parser = argparse.ArgumentParser(prog=f"falcon-h1r {name}", description=description)
    parser.add_argument(
        "--model",
        default=None,
        help="checkpoint directory or Hub id (default: the embedded tiny Falcon-H1R)",
    )
    return parser


__all__ = [
    "FalconH1RConfig",
    "FalconH1RForCausalLM",
    "FalconH1RModel",
    "RECOMMENDED_MAX_NEW_TOKENS",
    "RECOMMENDED_SAMPLING",
    "UsageError",
    "resolve_model",
    "subcommand_parser",
    "tiny_model_path",
    "__version__",
]
