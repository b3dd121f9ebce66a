"""The shipped embedded model: small, complete, loads as remote code config, and still solves held-out problems."""

from __future__ import annotations

import json

import torch
from transformers import AutoTokenizer

import falcon_h1r
from falcon_h1r.modeling import FalconH1RForCausalLM
from falcon_h1r.training import evaluate_tiny, rewards, synthetic_task

# The shipped model (one SFT stage, then GRPO; see TRAINING.md) scores 89/100 here and 92.0% on 500; its SFT
# starting point 77/100 (76.2% on 500), and an untrained checkpoint 0 (no well-formed answer). The floor sits
# above the SFT model, so this also checks that the shipped weights are the GRPO ones.
GREEDY_FLOOR_ON_100 = 0.84


def test_embedded_checkpoint_files():
    path = falcon_h1r.tiny_model_path()
    assert (path / "model.safetensors").stat().st_size <= 25 * 2**20
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "falcon_h1r" and "AutoModelForCausalLM" in config["auto_map"]
    assert (path / "modeling_falcon_h1r.py").exists() and (path / "TRAINING.md").exists()
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["temperature"] == 0.6 and generation["top_p"] == 0.95
    for recipe in ("tiny_sft.yaml", "tiny_grpo.yaml"):  # what built it
        assert (path / recipe).exists()


def test_embedded_model_solves_held_out_problems_in_format():
    path = falcon_h1r.tiny_model_path()
    model = FalconH1RForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    problems = synthetic_task.problems("eval", 100)
    torch.set_num_threads(1)
    responses = evaluate_tiny.generate(model, tokenizer, [p["question"] for p in problems], False, 100, 128)
    assert all(rewards.is_well_formed(r) for r in responses)
    accuracy = sum(evaluate_tiny.grade(problems, responses)) / len(problems)
    assert GREEDY_FLOOR_ON_100 <= accuracy < 1.0, accuracy
