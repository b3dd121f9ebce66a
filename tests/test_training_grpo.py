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
    with pytest.raises(ValueError, match="unknown reward"):
        grpo.main([*argv, "--output_dir", str(tmp_path), "--reward_funcs", "accuracy", "--dataset_num_examples", "4"])
