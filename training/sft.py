"""`falcon-h1r sft --config RECIPE.yaml [--key value ...]`: supervised fine-tuning with TRL's SFTTrainer.

Same YAML keys and CLI overrides as TRL's `trl sft` (script args + SFTConfig + ModelConfig), runs under
`accelerate launch`, resumes from the newest checkpoint in output_dir, and saves checkpoints that load as remote
code. Recipes: `falcon_h1r/training/recipes/` (tiny CPU recipe; the paper's 7B recipe).
"""

from __future__ import annotations

import logging

from trl import ModelConfig, SFTConfig, SFTTrainer

from falcon_h1r.training import data, recipe_run

logger = logging.getLogger(__name__)


def build_trainer(script_args, training_args: SFTConfig, model_args: ModelConfig) -> SFTTrainer:
    recipe_run.set_threads(script_args.torch_threads)
    training_args.chat_template_path = recipe_run.resolve_chat_template_path(training_args.chat_template_path)
    train = data.load_sft_dataset(
        script_args.dataset_name,
        script_args.dataset_train_split,
        script_args.dataset_config,
        script_args.dataset_num_examples,
        script_args.dataset_seed,
    )
    evaluation = None
    if training_args.eval_strategy != "no":
        evaluation = data.load_sft_dataset(
            script_args.dataset_name,
            script_args.dataset_test_split,
            script_args.dataset_config,
            script_args.eval_num_examples,
            script_args.dataset_seed,
        )
    return SFTTrainer(
        **recipe_run.trainer_inputs(model_args, training_args), train_dataset=train, eval_dataset=evaluation
    )


def main(argv: list[str] | None = None) -> int:
    script_args, training_args, model_args = recipe_run.parse(
        (recipe_run.FalconScriptArguments, SFTConfig, ModelConfig), argv, "falcon-h1r sft"
    )
    if script_args.dataset_name is None:
        raise SystemExit(
            "falcon-h1r sft: set dataset_name (in the recipe or --dataset_name); `synthetic` = the tiny task"
        )
    trainer = build_trainer(script_args, training_args, model_args)
    recipe_run.train_and_save(trainer, training_args, model_args.model_name_or_path, script_args.merge_lora)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
