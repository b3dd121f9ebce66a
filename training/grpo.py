"""`falcon-h1r grpo --config RECIPE.yaml [--key value ...]`: GRPO with TRL's GRPOTrainer and our rewards.

Same YAML keys and CLI overrides as TRL's `trl grpo` (script args + GRPOConfig + ModelConfig), plus
`reward_funcs` (names from `falcon_h1r.training.rewards`), runs under `accelerate launch`, resumes from the
newest checkpoint in output_dir, saves remote-code checkpoints, and can publish the result to the Hub.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, GRPOTrainer, ModelConfig

from falcon_h1r.model_card.publish import publish as publish_checkpoint
from falcon_h1r.training import data, recipe_run, rewards


@dataclass
class GRPOScriptArguments(recipe_run.FalconScriptArguments):
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_accuracy", "format"],
        metadata={"help": f"reward functions by name, from {sorted(rewards.REWARD_FUNCS)}"},
    )
    answer_column: str | None = field(default=None, metadata={"help": "dataset column holding the gold answer"})
    publish_repo_id: str | None = field(
        default=None, metadata={"help": "after training, publish output_dir to this Hub repo (with a model card)"}
    )
    publish_private: bool = field(default=True, metadata={"help": "create the Hub repo as private"})
    publish_dry_run: bool = field(default=False, metadata={"help": "stage and validate the upload, send nothing"})


@dataclass
class FalconGRPOConfig(GRPOConfig):
    """TRL's GRPOConfig plus the one knob of the Falcon-H1R RL stage that TRL lacks."""

    correct_sample_ce_coef: float = field(
        default=0.0,
        metadata={
            "help": "weight of an extra cross-entropy term on the correct completions (the first reward function "
            "scores 1.0), as in the Falcon-H1R RL stage; 0 turns it off"
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.correct_sample_ce_coef and (
            self.num_iterations != 1 or self.steps_per_generation > self.gradient_accumulation_steps
        ):
            raise ValueError(
                "correct_sample_ce_coef is applied as a shift of the correct completions' advantages, which gives "
                "the cross-entropy gradient exactly only on-policy. Fix: num_iterations 1 and steps_per_generation "
                f"<= gradient_accumulation_steps (got {self.num_iterations} and {self.steps_per_generation} > "
                f"{self.gradient_accumulation_steps}), or correct_sample_ce_coef 0."
            )


class FalconGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with `correct_sample_ce_coef`: c x the mean token cross-entropy of the correct completions.

    On-policy (every completion is trained on by the policy that sampled it), each token's policy-loss gradient is
    -A grad log p, the clip being inactive at ratio 1. Adding c to the advantage of every correct completion
    therefore adds -c grad log p on exactly the tokens the cross-entropy term covers, normalised as the policy loss
    is, at no extra forward pass. `FalconGRPOConfig` refuses the setting off-policy, where the two would differ.
    """

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._correct = rewards_per_func[:, 0] >= 1.0  # gathered: every process's completions, in process order
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        coef = getattr(self.args, "correct_sample_ce_coef", 0.0)
        if coef:
            n = output["advantages"].shape[0]
            start = self.accelerator.process_index * n
            correct = self._correct[start : start + n].to(output["advantages"].dtype)
            output["advantages"] = output["advantages"] + coef * (
                correct if output["advantages"].dim() == 1 else correct[:, None]
            )
        return output


def build_trainer(
    script_args: GRPOScriptArguments, training_args: FalconGRPOConfig, model_args: ModelConfig
) -> FalconGRPOTrainer:
    recipe_run.set_threads(script_args.torch_threads)
    train = data.load_grpo_dataset(
        script_args.dataset_name,
        script_args.dataset_train_split,
        script_args.dataset_config,
        script_args.dataset_num_examples,
        script_args.dataset_seed,
        script_args.answer_column,
    )
    return FalconGRPOTrainer(
        **recipe_run.trainer_inputs(model_args, training_args),
        reward_funcs=rewards.get_reward_funcs(script_args.reward_funcs),
        train_dataset=train,
    )


def publish(script_args: GRPOScriptArguments, checkpoint_dir: str) -> None:
    publish_checkpoint(
        checkpoint_dir,
        repo_id=script_args.publish_repo_id,
        private=script_args.publish_private,
        dry_run=script_args.publish_dry_run,
    )


def main(argv: list[str] | None = None) -> int:
    script_args, training_args, model_args = recipe_run.parse(
        (GRPOScriptArguments, FalconGRPOConfig, ModelConfig), argv, "falcon-h1r grpo"
    )
    if script_args.dataset_name is None:
        raise SystemExit(
            "falcon-h1r grpo: set dataset_name (in the recipe or --dataset_name); `synthetic` = the tiny task"
        )
    trainer = build_trainer(script_args, training_args, model_args)
    recipe_run.train_and_save(trainer, training_args, model_args.model_name_or_path, script_args.merge_lora)
    if script_args.publish_repo_id and trainer.accelerator.is_main_process:
        publish(script_args, training_args.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
