"""`accelerate launch --config_file cpu_ddp2.yaml` (two processes, gloo DDP) on the tiny SFT recipe matches one process
with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from falcon_h1r.training import recipe_run, sft
from falcon_h1r.training.tiny import MICRO_CONFIG, build_tiny_model

RECIPES = Path(recipe_run.__file__).resolve().parent / "recipes"


def free_port() -> int:
    # a fixed rendezvous port would collide with any other distributed run on the machine
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(out: Path, step: int) -> list[float]:
    history = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())["log_history"]
    return [e["loss"] for e in history if "loss" in e]


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    if shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists():
        pytest.fail("accelerate's launcher is not installed next to this Python")
    init = tmp_path / "init"
    build_tiny_model(init, seed=0, **MICRO_CONFIG)
    common_args = [
        "--config", str(RECIPES / "tiny_sft.yaml"),
        "--model_name_or_path", str(init),
        "--dataset_num_examples", "128",
        "--max_length", "192",
        "--learning_rate", "5e-3",
        "--warmup_steps", "0",
        "--max_steps", "4",
        "--save_steps", "4",
        "--logging_steps", "1",
        "--torch_threads", "1",
        "--disable_tqdm", "true",
    ]  # fmt: skip

    ddp_out = tmp_path / "ddp"
    launcher = str(Path(sys.executable).with_name("accelerate"))
    cmd = [
        launcher, "launch", "--config_file", str(RECIPES / "accelerate" / "cpu_ddp2.yaml"), "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "falcon_h1r.cli", "sft", *common_args,
        "--output_dir", str(ddp_out), "--per_device_train_batch_size", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 processes (MULTI_CPU)" in run.stdout, run.stdout[-3000:]  # two real processes in one gloo group

    single_out = tmp_path / "single"
    assert sft.main([*common_args, "--output_dir", str(single_out), "--per_device_train_batch_size", "2"]) == 0

    ddp, single = losses(ddp_out, 4), losses(single_out, 4)
    assert len(ddp) == len(single) == 4
    for a, b in zip(ddp, single):
        assert abs(a - b) <= 0.02 * b, (ddp, single)
