"""`falcon-h1r` entry point and the `generate` subcommand on the embedded checkpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoTokenizer

from falcon_h1r import FalconH1RForCausalLM, tiny_model_path
from falcon_h1r.cli import SUBCOMMANDS, main
from falcon_h1r.inference.prompting import chat_prompt


def test_top_level_help_lists_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "falcon_h1r.cli", "--help"], capture_output=True, text=True, check=True)
    for name in SUBCOMMANDS:
        assert f"  {name} " in out.stdout


def test_unknown_subcommand_is_a_clear_error(capsys) -> None:
    assert main(["genrate"]) == 2
    assert "unknown command 'genrate'" in capsys.readouterr().err


def test_generate_greedy_prints_what_the_model_generates(capsys) -> None:
    path = tiny_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = FalconH1RForCausalLM.from_pretrained(path).eval()
    ids = tokenizer(chat_prompt(tokenizer, "What is 3+4?"), return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        expected = tokenizer.decode(model.generate(ids, max_new_tokens=12, do_sample=False)[0, ids.shape[1] :])
    argv = ["generate", "What is 3+4?", "--temperature", "0", "--max-new-tokens", "12", "--no-stream"]
    assert main(argv) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_generate_compiled_gives_the_same_greedy_text(capsys) -> None:
    """--compile: static cache and a torch.compile'd decode step (Inductor on the CPU here), same tokens."""
    argv = ["generate", "What is 3+4?", "--temperature", "0", "--max-new-tokens", "12", "--no-stream"]
    assert main(argv) == 0
    eager = capsys.readouterr().out
    assert main([*argv, "--compile"]) == 0
    assert capsys.readouterr().out == eager


def test_generate_rejects_bad_sampling_flags() -> None:
    with pytest.raises(SystemExit, match="--top-p"):
        main(["generate", "hi", "--top-p", "0"])
