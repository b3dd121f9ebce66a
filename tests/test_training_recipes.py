"""The shipped recipes parse into TRL configs (the 7B ones are built, never run) and the accelerate configs load."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from trl import ModelConfig, SFTConfig

from falcon_h1r.training import recipe_run
from falcon_h1r.training.grpo import FalconGRPOConfig, GRPOScriptArguments
from falcon_h1r.training.tokenizer import CHAT_TEMPLATE_PATH

RECIPES = Path(recipe_run.__file__).resolve().parent / "recipes"
SFT_TYPES = (recipe_run.FalconScriptArguments, SFTConfig, ModelConfig)
GRPO_TYPES = (GRPOScriptArguments, FalconGRPOConfig, ModelConfig)


def build(types, name: str, *overrides: str):
    return recipe_run.parse(types, ["--config", str(RECIPES / name), *overrides], "test")


def build_gpu_recipe(types, name: str):
    """bf16 is refused on a machine without a GPU: build with it off, after checking the recipe asks for it."""
    assert yaml.safe_load((RECIPES / name).read_text())["bf16"] is True
    return build(types, name, "--bf16", "false")


def test_7b_sft_recipe_matches_the_paper():
    script, args, model = build_gpu_recipe(SFT_TYPES, "falcon_h1r_7b_sft.yaml")
    assert model.model_name_or_path == "tiiuae/Falcon-H1-7B-Base" and model.dtype == "bfloat16"
    assert args.learning_rate == pytest.approx(1024e-6) and args.lr_scheduler_type == "linear"
    assert args.warmup_steps == pytest.approx(0.04) and args.num_train_epochs == 3
    assert args.weight_decay == 0.01 and args.max_grad_norm == 1.0 and args.max_length == 36864
    assert args.packing and args.packing_strategy == "bfd" and args.assistant_only_loss
    assert 8 * args.per_device_train_batch_size * args.gradient_accumulation_steps == 512
    assert recipe_run.resolve_chat_template_path(args.chat_template_path) == str(CHAT_TEMPLATE_PATH)
    assert script.dataset_name


def test_7b_grpo_recipe_matches_the_paper():
    script, args, _ = build_gpu_recipe(GRPO_TYPES, "falcon_h1r_7b_grpo.yaml")
    assert args.loss_type == "dapo" and args.beta == 0.0
    assert (args.epsilon, args.epsilon_high) == (0.2, 0.28)
    assert args.num_generations == 16 and args.temperature == 0.85
    assert args.mask_truncated_completions and args.max_completion_length == 49152
    assert args.use_vllm and args.vllm_mode == "colocate"
    assert args.vllm_importance_sampling_clip_max == 2.0 and args.entropy_coef == 0.0
    assert args.learning_rate == 2e-6 and args.warmup_steps == 10
    assert args.correct_sample_ce_coef > 0 and args.steps_per_generation == args.gradient_accumulation_steps
    assert 8 * args.generation_batch_size // args.num_generations == 128  # prompts per RL batch on 8 GPUs
    assert script.reward_funcs == ["math_accuracy", "format"] and script.answer_column == "solution"


def test_tiny_recipes_parse_with_overrides():
    script, args, model = build(SFT_TYPES, "tiny_sft.yaml", "--learning_rate", "1e-3")
    assert script.dataset_name == "synthetic" and args.learning_rate == 1e-3  # the CLI wins over the YAML
    assert args.packing and args.packing_strategy == "bfd" and args.assistant_only_loss and not args.bf16
    script, args, _ = build(GRPO_TYPES, "tiny_grpo.yaml")
    assert script.reward_funcs == ["math_accuracy", "format"] and args.loss_type == "dapo"
    assert args.correct_sample_ce_coef > 0 and args.num_iterations == 1


def test_cross_entropy_on_correct_samples_is_refused_off_policy():
    with pytest.raises(ValueError, match="only on-policy"):
        build(GRPO_TYPES, "tiny_grpo.yaml", "--num_iterations", "2")


@pytest.mark.parametrize("name, kind", [("deepspeed_zero3.yaml", "DEEPSPEED"), ("fsdp.yaml", "FSDP")])
def test_accelerate_configs_load(name, kind):
    config = load_config_from_file(str(RECIPES / "accelerate" / name))
    assert config.distributed_type.value == kind and config.num_processes == 8
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == 3
    else:
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "FalconH1RDecoderLayer"


@pytest.mark.parametrize("override", [[], ["--gradient_checkpointing", "true"]])
def test_recipes_parse_without_deprecation_warnings(override: list[str]):
    """transformers 5.24 deprecated `gradient_checkpointing` for `activation_checkpointing`; the recipes' setting (or a
    CLI override) arrives under whichever name the installed release reads, without a FutureWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        _, args, _ = build(SFT_TYPES, "tiny_sft.yaml", *override)
        _, grpo_args, _ = build(GRPO_TYPES, "tiny_grpo.yaml")
    assert args.gradient_checkpointing is bool(override) and grpo_args.gradient_checkpointing is False
    if hasattr(args, "activation_checkpointing"):
        assert args.activation_checkpointing is bool(override)
