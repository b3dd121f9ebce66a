"""GRPO entry point: two steps on a micro Falcon-H1R with the real rewards (math-verify + format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from falcon_h1r.training import grpo, recipe_run
from falcon_h1r.training.tiny import MICRO_CONFIG, build_tiny_model

RECIPES = Path(recipe_run.__file__).resolve().parent / "recipes"


@pytest.fixture(scope="module")
def micro_init(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("micro_grpo") / "init"
    build_tiny_model(path, seed=0, **MICRO_CONFIG)
    return path


def test_grpo_two_steps_with_real_rewards_then_publish_dry_run(micro_init, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where the publisher stages the Hub folder
    out = tmp_path / "grpo"
    argv = [
        "--config", str(RECIPES / "tiny_grpo.yaml"),
        "--model_name_or_path", str(micro_init),
        "--output_dir", str(out),
        "--dataset_name", "synthetic",
        "--dataset_num_examples", "16",
        "--num_generations", "4",
        "--per_device_train_batch_size", "8",
        "--max_completion_length", "24",
        "--max_steps", "2",
        "--save_steps", "2",
        "--warmup_steps", "0",
        "--torch_threads", "1",
        "--disable_tqdm", "true",
        "--publish_repo_id", "someone/tiny-grpo",
        "--publish_dry_run", "true",
    ]  # fmt: skip
    assert grpo.main(argv) == 0
    history = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]
    steps = [e for e in history if "reward" in e]
    assert len(steps) == 2
    for entry in steps:
        # both real rewards ran on every completion: a random model never closes </think>, so the format
        # reward is the penalty and no answer is right
        assert entry["rewards/format_reward/mean"] == -1.0
        assert entry["rewards/math_accuracy_reward/mean"] == 0.0
        assert entry["completions/mean_length"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "falcon_h1r" and "auto_map" in config
    staged = tmp_path / "cache" / "falcon_h1r" / "publish" / "someone--tiny-grpo"
    assert (staged / "README.md").exists() and (staged / "config.json").exists()  # staged + validated, not sent


def test_grpo_rejects_unknown_reward(micro_init, tmp_path):
    argv = ["--config", str(RECIPES / "tiny_grpo.yaml"), "--model_name_or_path", str(micro_init)]
    argv += ["--dataset_name", "synthetic"]
    with pytest.raises(ValueError, match="unknown reward"):
        grpo.main([*argv, "--output_dir", str(tmp_path), "--reward_funcs", "accuracy", "--dataset_num_examples", "4"])


def test_cross_entropy_on_correct_samples_is_the_advantage_shift(tmp_path):
    """correct_sample_ce_coef adds c to the correct completions' advantages; on-policy that changes the gradient by
    exactly c x the gradient of the correct completions' token cross-entropy (up to the loss's normaliser)."""
    import torch

    import falcon_h1r

    torch.manual_seed(0)
    argv = [
        "--config", str(RECIPES / "tiny_grpo.yaml"),
        "--model_name_or_path", str(falcon_h1r.tiny_model_path()),
        "--dataset_name", "synthetic", "--dataset_num_examples", "8", "--dataset_seed", "5",
        "--output_dir", str(tmp_path), "--per_device_train_batch_size", "16", "--temperature", "1.0",
        "--max_completion_length", "96", "--correct_sample_ce_coef", "0.5", "--torch_threads", "1",
    ]  # fmt: skip
    script_args, training_args, model_args = recipe_run.parse(
        (grpo.GRPOScriptArguments, grpo.FalconGRPOConfig, grpo.ModelConfig), argv, "test"
    )
    trainer = grpo.build_trainer(script_args, training_args, model_args)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test does not run
    model = trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    correct = trainer._correct[: inputs["advantages"].shape[0]].float()
    assert 0 < correct.sum() < len(correct), "the batch needs right and wrong completions"

    def gradient(loss_fn) -> torch.Tensor:
        model.zero_grad()
        loss_fn().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    def policy_loss(advantages):
        return lambda: trainer.compute_loss(model, {**inputs, "advantages": advantages})

    def correct_cross_entropy():
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        logps = trainer._get_per_token_logps_and_entropies(model, ids, mask, inputs["completion_ids"].shape[1])[0]
        return -(logps * inputs["completion_mask"] * correct[:, None]).sum()

    shifted = gradient(policy_loss(inputs["advantages"]))
    plain = gradient(policy_loss(inputs["advantages"] - 0.5 * correct))
    cross_entropy = gradient(correct_cross_entropy)
    difference = shifted - plain
    assert torch.nn.functional.cosine_similarity(difference, cross_entropy, dim=0) > 0.999
    assert difference.norm() > 1e-3 * shifted.norm()


def test_select_prompts_keeps_exactly_the_prompts_the_model_does_not_always_solve(tmp_path):
    """At a near-zero temperature every sample is the greedy answer: the kept prompts are the ones greedy gets
    wrong, checked against the evaluation's own greedy grading; the kept file trains as a GRPO dataset."""
    import torch
    from transformers import AutoTokenizer

    import falcon_h1r
    from falcon_h1r.modeling import FalconH1RForCausalLM
    from falcon_h1r.training import data, evaluate_tiny, select_prompts, synthetic_task

    torch.set_num_threads(1)
    path = falcon_h1r.tiny_model_path()
    out = tmp_path / "unsolved"
    argv = ["--model", str(path), "--dataset_num_examples", "40", "--dataset_seed", "3", "--samples", "2"]
    assert select_prompts.main([*argv, "--temperature", "1e-4", "--output", str(out)]) == 0
    kept = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    problems = synthetic_task.problems("train", 40, 3)
    model = FalconH1RForCausalLM.from_pretrained(path).eval()
    greedy = evaluate_tiny.generate(model, AutoTokenizer.from_pretrained(path), [p["question"] for p in problems],
                                    False, 40, 96)  # fmt: skip
    wrong = {p["question"] for p, ok in zip(problems, evaluate_tiny.grade(problems, greedy)) if not ok}
    assert {r["prompt"][-1]["content"] for r in kept} == wrong and 0 < len(wrong) < 40
    assert all(r["solved"] == 0 for r in kept)
    summary = json.loads((out / "selection.json").read_text())
    assert summary["prompts"] == 40 and summary["kept"] == len(kept)
    ds = data.load_grpo_dataset(str(out))
    assert len(ds) == len(kept) and {"prompt", "answer", "solved"} <= set(ds.column_names)
