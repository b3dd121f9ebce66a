"""A recipe run, the part the SFT and GRPO entry points share: parsing the YAML recipe and flags, loading the
model and tokenizer, LoRA, resuming, training and saving."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config

from falcon_h1r import UsageError, resolve_model
from falcon_h1r.modeling import FalconH1RForCausalLM
from falcon_h1r.training.tokenizer import CHAT_TEMPLATE_PATH

logger = logging.getLogger(__name__)

# LoRA on the Mamba out_proj / conv1d is refused by PEFT for this family (fused kernels read those weights directly).
SAFE_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "in_proj", "gate_proj", "up_proj", "down_proj"]
UNSAFE_LORA_TARGETS = {"out_proj", "conv1d"}
FALCON_MODEL_TYPES = {"falcon_h1", "falcon_h1r"}


@dataclass
class FalconScriptArguments(ScriptArguments):
    """TRL's script arguments plus what our recipes need (`dataset_name: synthetic` = the arithmetic task)."""

    dataset_train_split: str = field(default="train", metadata={"help": "split to train on"})
    dataset_test_split: str = field(default="test", metadata={"help": "split to evaluate on (eval_strategy != no)"})
    dataset_num_examples: int | None = field(
        default=None, metadata={"help": "number of training rows (first N; the synthetic task generates N)"}
    )
    eval_num_examples: int | None = field(default=None, metadata={"help": "number of evaluation rows"})
    dataset_seed: int | None = field(default=None, metadata={"help": "generator seed for the synthetic task"})
    merge_lora: bool = field(
        default=True,
        metadata={
            "help": "with --use_peft: merge the adapter and save a full model in output_dir (adapter in adapter/)"
        },
    )
    torch_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads for CPU runs"})


def parse(dataclass_types: tuple, argv: list[str] | None, prog: str):
    """TrlParser: `--config recipe.yaml` plus CLI overrides (CLI wins), exactly as TRL's own scripts."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        return TrlParser(dataclass_types, prog=prog).parse_args_and_config(args)
    at = args.index("--config") + 1 if "--config" in args else None
    config = Path(args[at]) if at is not None and at < len(args) else None
    if config is None or not config.is_file():
        raise UsageError(
            f"{'--config ' + str(config) + ': no such recipe file' if config else 'no --config recipe given'}. "
            f"Fix: pass --config with a YAML recipe, such as one of {Path(__file__).parent / 'recipes'}/*.yaml "
            "(command-line flags then override its values)."
        )
    args += _checkpointing_under_the_new_name(dataclass_types, args, config)
    return TrlParser(dataclass_types, prog=prog).parse_args_and_config(args)


def _checkpointing_under_the_new_name(dataclass_types: tuple, args: list[str], config: Path) -> list[str]:
    """transformers 5.24 renamed TrainingArguments' `gradient_checkpointing` to `activation_checkpointing` (the old
    name warns and goes in v6); older releases know only the old name, so recipes keep it and, where the new field
    exists, its value is passed on under the new name (TRL's default too), which keeps the run quiet."""
    import dataclasses

    import yaml

    training_args = next(t for t in dataclass_types if hasattr(t, "gradient_checkpointing"))
    fields = {f.name: f for f in dataclasses.fields(training_args)}
    if "activation_checkpointing" not in fields or "--activation_checkpointing" in args:
        return []
    value = (yaml.safe_load(config.read_text()) or {}).get(
        "gradient_checkpointing", fields["gradient_checkpointing"].default
    )
    if "--gradient_checkpointing" in args and args.index("--gradient_checkpointing") + 1 < len(args):
        value = args[args.index("--gradient_checkpointing") + 1]
    return [] if value is None else ["--activation_checkpointing", str(value)]


def resolve_chat_template_path(path: str | None) -> str | None:
    """`falcon_h1r` names the packaged Falcon-H1R chat template (with generation markers)."""
    return str(CHAT_TEMPLATE_PATH) if path == "falcon_h1r" else path


def _dtype(name: str | None):
    if name in (None, "auto"):
        return "auto"
    return getattr(torch, name)


def load_model(model_args: ModelConfig, trust_remote_code: bool = False):
    """Falcon-H1 / Falcon-H1R checkpoints load as our FalconH1RForCausalLM (fixes and remote-code saving);
    anything else goes through AutoModelForCausalLM (importing falcon_h1r registered our Auto classes)."""
    path = resolve_model(model_args.model_name_or_path)
    kwargs = {"dtype": _dtype(model_args.dtype), "revision": model_args.model_revision}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, revision=model_args.model_revision)
    if config.model_type in FALCON_MODEL_TYPES:
        return FalconH1RForCausalLM.from_pretrained(path, **kwargs)
    return AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)


def load_tokenizer(model_args: ModelConfig, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    path = resolve_model(model_args.model_name_or_path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=model_args.model_revision)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def peft_config(model_args: ModelConfig):
    """TRL's LoRA config with the family's safe target modules by default; refuses the unsafe ones."""
    if not model_args.use_peft:
        return None
    if model_args.lora_target_modules is None:
        model_args.lora_target_modules = list(SAFE_LORA_TARGETS)
    targets = model_args.lora_target_modules
    bad = UNSAFE_LORA_TARGETS & set([targets] if isinstance(targets, str) else targets)
    if bad:
        raise ValueError(
            f"lora_target_modules includes {sorted(bad)}: LoRA cannot target the Mamba out_proj/conv1d of Falcon-H1 "
            f"(the fused kernels read those weights directly); use a subset of {SAFE_LORA_TARGETS}"
        )
    return get_peft_config(model_args)


def trainer_inputs(model_args: ModelConfig, training_args) -> dict:
    """The TRL trainer arguments every recipe passes alike: model, tokenizer (processing_class), LoRA, training args."""
    trust = training_args.trust_remote_code
    return {
        "model": load_model(model_args, trust),
        "args": training_args,
        "processing_class": load_tokenizer(model_args, trust),
        "peft_config": peft_config(model_args),
    }


RUN_FILE = "falcon_h1r_run.json"  # in output_dir: which model the run there started from


def last_checkpoint(training_args, model_name_or_path: str) -> str | None:
    """Resume point: an explicit resume_from_checkpoint path, else the newest checkpoint-* in output_dir, but only
    when that run started from the same model (resuming another run's checkpoint would silently train the wrong
    weights); `--resume_from_checkpoint false` starts over."""
    output_dir, explicit = Path(training_args.output_dir), training_args.resume_from_checkpoint
    if explicit and str(explicit).lower() not in ("true", "false"):
        return explicit
    found = None
    if str(explicit).lower() != "false" and output_dir.is_dir():
        found = get_last_checkpoint(str(output_dir))
    run_file = output_dir / RUN_FILE
    if found and run_file.exists():
        started_from = json.loads(run_file.read_text())["model_name_or_path"]
        if started_from != model_name_or_path:
            raise SystemExit(
                f"{output_dir} holds checkpoints of a run that started from {started_from}, not "
                f"{model_name_or_path}. Use another output_dir, or --resume_from_checkpoint false to start over there."
            )
    if int(os.environ.get("RANK", "0")) == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"model_name_or_path": model_name_or_path}) + "\n")
    if found:
        print(f"resuming from {found}", flush=True)
    return found


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def report_processes(trainer) -> None:
    """First log line of a run: how many processes train together, so a launch that silently fell back to one
    process (accelerate does that for its MULTI_CPU type without MPI) is visible at once."""
    n = trainer.accelerator.num_processes
    kind = trainer.accelerator.distributed_type.value
    trainer.accelerator.print(f"{n} process{'es' if n > 1 else ''} ({kind})")
    if n == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit(
            f"{os.environ['WORLD_SIZE']} processes were launched but each trains alone: on a machine without a GPU "
            "set `use_cpu: true` in the recipe (or --use_cpu true) so they join in gloo DDP."
        )


def train_and_save(trainer, training_args, model_name_or_path: str, merge_lora: bool) -> None:
    """The part of a run shared by sft and grpo: report the processes, train (resuming when that is safe), save."""
    report_processes(trainer)
    trainer.train(resume_from_checkpoint=last_checkpoint(training_args, model_name_or_path))
    save_final(trainer, trainer.processing_class, training_args.output_dir, merge_lora)
    trainer.accelerator.print(f"saved to {training_args.output_dir}")


def save_final(trainer, tokenizer, output_dir: str, merge_lora: bool) -> None:
    """Save the final model (remote code for Falcon models) + tokenizer; with PEFT, merge and save the full model."""
    model = trainer.model
    # trainers switch the cache off for training (TRL with gradient checkpointing); the saved model is for inference
    trainer.accelerator.unwrap_model(model).config.use_cache = True
    if hasattr(model, "merge_and_unload") and merge_lora:
        trainer.save_model(str(Path(output_dir) / "adapter"))
        if trainer.accelerator.is_main_process:
            merged = trainer.accelerator.unwrap_model(model).merge_and_unload()
            merged.save_pretrained(output_dir)
            tokenizer.save_pretrained(output_dir)
        trainer.accelerator.wait_for_everyone()
        return
    trainer.save_model(output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(output_dir)
