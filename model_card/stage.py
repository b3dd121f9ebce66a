"""Stage a complete Hub folder for a checkpoint: the exact file set that will be uploaded.

model-0000i-of-0000N.safetensors + model.safetensors.index.json   (weights, streamed byte for byte)
config.json                     (model_type falcon_h1r, FalconH1RForCausalLM, auto_map, explicit head_dim)
*_falcon_h1r.py                 (remote code, copied verbatim: falcon_h1r.modeling.REMOTE_CODE_FILES)
tokenizer files + chat template (verbatim)
generation_config.json          (recommended sampling: temperature 0.6, top_p 0.95)
README.md                       (the rendered model card)
recipe YAML, when the run saved one
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from falcon_h1r.model_card.card import CardOptions, render_card, training_summary
from falcon_h1r.model_card.checkpoint import (
    GENERATION_FILE,
    TOKENIZER_FILES,
    chat_template_of,
    load_config,
    remote_code,
    rewrite_config,
    write_config,
)
from falcon_h1r.model_card.results import MetricResult
from falcon_h1r.model_card.safetensors_io import CheckpointError, list_checkpoint_tensors, write_sharded
from falcon_h1r.model_card.snippets import RECOMMENDED_SAMPLING

KEEP_ON_RESTAGE = (".cache",)  # huggingface_hub's resumable-upload bookkeeping lives here
MARKER = ".falcon_h1r_staging"  # only folders carrying this marker are ever emptied for re-staging
UPLOAD_IGNORE = [".cache/**", MARKER]


def generation_config(checkpoint: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's generation config (if any) with the recommended sampling and the model's special ids."""
    path = checkpoint / GENERATION_FILE
    gen: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    gen.update({"do_sample": True, **RECOMMENDED_SAMPLING})
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if gen.get(key) is None and cfg.get(key) is not None:
            gen[key] = cfg[key]
    gen.setdefault("transformers_version", cfg.get("transformers_version"))
    return {k: v for k, v in gen.items() if v is not None}


def _reset(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise FileExistsError(
            f"staging folder {folder} is not empty and was not made by falcon-h1r; refusing to empty it. "
            "Fix: pass a new or empty --staging-dir."
        )
    if folder.exists():
        for child in folder.iterdir():
            if child.name in KEEP_ON_RESTAGE:
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("staged by falcon-h1r publish; safe to delete\n")


def stage_folder(
    checkpoint: str | Path,
    out: str | Path,
    *,
    max_shard_size: str | int = "5GB",
    results: str | Path | list[MetricResult] | None = None,
    card_options: CardOptions | None = None,
) -> list[Path]:
    """Write the Hub folder for `checkpoint` into `out` (emptied first); returns the staged files."""
    checkpoint, out = Path(checkpoint), Path(out)
    if out.resolve() == checkpoint.resolve() or checkpoint.resolve() in out.resolve().parents:
        raise ValueError(f"staging folder {out} must not be the checkpoint folder or inside it")
    cfg = load_config(checkpoint)
    entries, metadata = list_checkpoint_tensors(checkpoint)  # refuse a broken source before writing anything
    if chat_template_of(checkpoint) is None:
        raise CheckpointError(
            f"{checkpoint}: the tokenizer has no chat template (chat_template.jinja or tokenizer_config.json). "
            "Fix: save the tokenizer with its chat template (tokenizer.chat_template = ...; save_pretrained)."
        )
    if not any((checkpoint / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise CheckpointError(f"{checkpoint}: no tokenizer files. Fix: tokenizer.save_pretrained(checkpoint).")
    card = render_card(checkpoint, results, card_options)  # before touching `out`: bad results fail early

    _reset(out)
    write_sharded(entries, out, max_shard_size, metadata)
    write_config(rewrite_config(cfg, "falcon_h1r"), out)
    for path in remote_code()[0]:
        shutil.copyfile(path, out / path.name)
    for name in TOKENIZER_FILES:
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, out / name)
    (out / GENERATION_FILE).write_text(json.dumps(generation_config(checkpoint, cfg), indent=2) + "\n")
    for name in training_summary(checkpoint)[1]:
        if name.endswith((".yaml", ".yml")):
            shutil.copyfile(checkpoint / name, out / name)
    (out / "README.md").write_text(card)
    return sorted(p for p in out.iterdir() if p.is_file() and p.name != MARKER)
