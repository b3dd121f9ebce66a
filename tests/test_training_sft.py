"""SFT entry point on a micro Falcon-H1R: loss goes down, packed == unpacked, resume after a kill, LoRA."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from trl import ModelConfig, SFTConfig, SFTTrainer

from falcon_h1r.modeling import FalconH1RForCausalLM
from falcon_h1r.training import data, recipe_run, sft
from falcon_h1r.training.tiny import MICRO_CONFIG, build_tiny_model

RECIPES = Path(recipe_run.__file__).resolve().parent / "recipes"


@pytest.fixture(scope="module")
def micro_init(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("micro") / "init"
    build_tiny_model(path, seed=0, **MICRO_CONFIG)
    return path


def sft_args(init: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config", str(RECIPES / "tiny_sft.yaml"),
        "--model_name_or_path", str(init),
        "--output_dir", str(out),
        "--dataset_num_examples", "96",
        "--max_length", "256",
        "--per_device_train_batch_size", "2",
        "--learning_rate", "1e-2",
        "--warmup_steps", "0",
        "--torch_threads", "1",
        "--logging_steps", "1",
        "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


def log_history(checkpoint: Path) -> list[dict]:
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


def test_sft_loss_goes_down_and_saves_remote_code(micro_init, tmp_path):
    out = tmp_path / "sft"
    assert sft.main(sft_args(micro_init, out, "--max_steps", "8", "--save_steps", "8")) == 0
    losses = [e["loss"] for e in log_history(out / "checkpoint-8") if "loss" in e]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < 0.75 * losses[0], losses
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "falcon_h1r" and "AutoModelForCausalLM" in config["auto_map"]
    assert (out / "modeling_falcon_h1r.py").exists() and (out / "chat_template.jinja").exists()
    trained = load_file(out / "model.safetensors")
    reloaded = FalconH1RForCausalLM.from_pretrained(out).state_dict()
    assert all(torch.equal(trained[k], reloaded[k]) for k in trained)


def _trainer(init: Path, out: Path, dataset, **overrides) -> SFTTrainer:
    args = SFTConfig(
        output_dir=str(out),
        assistant_only_loss=True,
        max_length=2048,
        bf16=False,
        report_to="none",
        dataloader_num_workers=0,
        **overrides,
    )
    model_args = ModelConfig(model_name_or_path=str(init), dtype="float32")
    return SFTTrainer(
        model=recipe_run.load_model(model_args),
        args=args,
        train_dataset=dataset,
        processing_class=recipe_run.load_tokenizer(model_args),
    )


def test_bfd_packed_loss_equals_unpacked(micro_init, tmp_path):
    torch.manual_seed(0)
    dataset = data.synthetic_sft("train", 8)
    packed = _trainer(
        micro_init, tmp_path / "p", dataset, packing=True, packing_strategy="bfd", per_device_train_batch_size=1
    )
    plain = _trainer(micro_init, tmp_path / "u", dataset, packing=False, per_device_train_batch_size=8)
    packed_batch = next(iter(packed.get_train_dataloader()))
    plain_batch = next(iter(plain.get_train_dataloader()))
    # one padding-free row holding all 8 conversations, positions restarting at 0 for each
    assert packed_batch["input_ids"].shape[0] == 1 and "attention_mask" not in packed_batch
    assert int((packed_batch["position_ids"] == 0).sum()) == 8
    assert plain_batch["input_ids"].shape[0] == 8 and "attention_mask" in plain_batch
    n_packed = int((packed_batch["labels"] != -100).sum())
    n_plain = int((plain_batch["labels"][:, 1:] != -100).sum())
    assert n_packed == n_plain > 0
    model = packed.model.eval()
    with torch.no_grad():
        loss_packed = model(**packed_batch).loss
        loss_plain = model(**plain_batch).loss
    torch.testing.assert_close(loss_packed, loss_plain, rtol=1e-5, atol=1e-5)


def test_resume_after_killed_run_matches_uninterrupted(micro_init, tmp_path):
    extra = ("--max_steps", "8", "--save_steps", "3", "--save_total_limit", "5")
    reference = tmp_path / "reference"
    assert sft.main(sft_args(micro_init, reference, *extra)) == 0

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "falcon_h1r.cli", "sft", *sft_args(micro_init, killed, *extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (killed / "checkpoint-3" / "trainer_state.json").exists():
        assert proc.poll() is None or (killed / "checkpoint-3").exists(), "the run died before its first checkpoint"
        assert time.time() < deadline, "no checkpoint-3 within 240 s"
        time.sleep(0.05)
    time.sleep(0.5)  # let checkpoint-3 finish writing
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the state a kill right after checkpoint-3 leaves: drop whatever the run wrote later
    for path in killed.iterdir():
        if path.name != "checkpoint-3":
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    # tag the saved history: a resumed run carries it on, a run that started over would not
    state_file = killed / "checkpoint-3" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["resume_marker"] = 1
    state_file.write_text(json.dumps(state))

    assert sft.main(sft_args(micro_init, killed, *extra)) == 0  # same command again: resumes from checkpoint-3
    history = log_history(killed / "checkpoint-8")
    assert history[0].get("resume_marker") == 1
    assert [e["step"] for e in history if "loss" in e] == list(range(1, 9))
    ref_weights, resumed_weights = load_file(reference / "model.safetensors"), load_file(killed / "model.safetensors")
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, rtol=1e-5, atol=1e-6)


def test_output_dir_of_another_run_is_not_resumed(micro_init, tmp_path):
    """Checkpoints left by a run from another model are refused (resuming them would train the wrong weights)."""
    out = tmp_path / "out"
    assert sft.main(sft_args(micro_init, out, "--max_steps", "2", "--save_steps", "2")) == 0
    other = tmp_path / "other-init"
    build_tiny_model(other, seed=1, **MICRO_CONFIG)
    with pytest.raises(SystemExit, match="started from .*--resume_from_checkpoint false"):
        sft.main(sft_args(other, out, "--max_steps", "3", "--save_steps", "3"))
    fresh = sft_args(other, out, "--max_steps", "3", "--save_steps", "3", "--resume_from_checkpoint", "false")
    assert sft.main(fresh) == 0
    assert [e["step"] for e in log_history(out / "checkpoint-3") if "loss" in e] == [1, 2, 3]  # started over


def test_lora_fine_tune_saves_merges_and_reloads(micro_init, tmp_path):
    out = tmp_path / "lora"
    args = sft_args(
        micro_init, out, "--max_steps", "3", "--save_steps", "3", "--use_peft", "--lora_r", "4", "--lora_alpha", "8"
    )
    assert sft.main(args) == 0
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert set(adapter_config["target_modules"]) == set(recipe_run.SAFE_LORA_TARGETS)

    ids = torch.tensor([[1, 40, 41, 42, 43, 2, 44, 45]])
    base = FalconH1RForCausalLM.from_pretrained(micro_init).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        adapted_logits = PeftModel.from_pretrained(base, out / "adapter").eval()(ids).logits
        merged_logits = FalconH1RForCausalLM.from_pretrained(out).eval()(ids).logits
    assert not torch.allclose(adapted_logits, base_logits, atol=1e-4)  # the adapter learned something
    torch.testing.assert_close(merged_logits, adapted_logits, rtol=1e-4, atol=1e-4)
    assert "lora" not in " ".join(load_file(out / "model.safetensors"))  # a plain full checkpoint


def test_lora_refuses_unsafe_targets():
    with pytest.raises(ValueError, match="out_proj"):
        recipe_run.peft_config(ModelConfig(use_peft=True, lora_target_modules=["in_proj", "out_proj"]))
