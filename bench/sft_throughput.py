"""Our SFT recipe (TRL's SFTTrainer) against a bare PyTorch loop: same model, same batches, same optimizer.

    python bench/sft_throughput.py                                   # the embedded model's SFT recipe
    python bench/sft_throughput.py --recipe path.yaml --steps 40

Each engine runs in its own process with the recipe's thread count. The trainer's batches are collected once
(TRL's tokenization, packing and collator) and saved; the bare loop replays them with AdamW at the recipe's
learning rate and grad-norm clipping. Time per step is measured from the `--warmup`-th step on (the trainer's
callbacks; the loop's wall clock) and tokens/s counts the non-padding tokens of those steps. Median of
`--repeats` processes per engine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "training" / "recipes"


def build_trainer(recipe: str, init: str, output_dir: str, steps: int):
    from trl import ModelConfig, SFTConfig

    from falcon_h1r.training import recipe_run, sft

    argv = ["--config", recipe, "--model_name_or_path", init, "--output_dir", output_dir]
    argv += ["--max_steps", str(steps), "--save_strategy", "no", "--logging_steps", "1000"]
    argv += ["--dataset_num_examples", "4000"]
    script_args, training_args, model_args = recipe_run.parse(
        (recipe_run.FalconScriptArguments, SFTConfig, ModelConfig), argv, "bench"
    )
    return sft.build_trainer(script_args, training_args, model_args)


def tokens_in(batch: dict) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


def run_trainer(recipe: str, init: str, steps: int, warmup: int, batches_file: str) -> dict:
    import torch
    from transformers import TrainerCallback

    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(recipe, init, out, steps)
        batches: list[dict] = []  # what the trainer trained on, in order (its own tokenization, packing, collator)
        training_step = trainer.training_step

        def recording_step(model, inputs, *args, **kwargs):
            batches.append({k: v.clone() for k, v in inputs.items() if torch.is_tensor(v)})
            return training_step(model, inputs, *args, **kwargs)

        trainer.training_step = recording_step
        stamps: list[float] = []

        class Clock(TrainerCallback):
            def on_step_end(self, *args, **kwargs):
                stamps.append(time.perf_counter())

        trainer.add_callback(Clock())
        trainer.train()
    if not Path(batches_file).exists():
        torch.save(batches, batches_file)
    seconds = stamps[-1] - stamps[warmup - 1]
    return {"seconds": seconds, "steps": steps - warmup, "tokens": sum(tokens_in(b) for b in batches[warmup:])}


def run_bare(recipe: str, init: str, steps: int, warmup: int, batches_file: str) -> dict:
    import torch
    import yaml

    from falcon_h1r.modeling import FalconH1RForCausalLM

    cfg = yaml.safe_load(Path(recipe).read_text())
    torch.set_num_threads(cfg.get("torch_threads") or torch.get_num_threads())
    torch.manual_seed(cfg.get("seed", 42))
    model = FalconH1RForCausalLM.from_pretrained(init, dtype=torch.float32).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(cfg["learning_rate"]), weight_decay=cfg["weight_decay"])
    batches = torch.load(batches_file)[:steps]
    stamps = []
    for batch in batches:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    seconds = stamps[-1] - stamps[warmup - 1]
    return {"seconds": seconds, "steps": steps - warmup, "tokens": sum(tokens_in(b) for b in batches[warmup:])}


def worker(args) -> None:
    fn = run_trainer if args.worker == "trainer" else run_bare
    print(json.dumps(fn(args.recipe, args.init, args.steps, args.warmup, args.batches)))


def spawn(engine: str, args, batches: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, "--recipe", args.recipe, "--init", args.init]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batches", batches]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{engine} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(RECIPES / "tiny_sft.yaml"))
    parser.add_argument("--init", help="model to train from (default: a fresh random tiny init)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=["trainer", "bare"])
    parser.add_argument("--batches")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.init is None:
            from falcon_h1r.training.tiny import build_tiny_model

            args.init = str(Path(tmp) / "init")
            build_tiny_model(args.init)
        batches = str(Path(tmp) / "batches.pt")
        first = spawn("trainer", args, batches)  # also writes the batches the bare loop replays
        runs = {"trainer": [first], "bare": []}
        for i in range(args.repeats):
            runs["bare"].append(spawn("bare", args, batches))
            if i:
                runs["trainer"].append(spawn("trainer", args, batches))
        # the trainer's token count comes from the saved batches
        tokens = runs["bare"][0]["tokens"]
    print(
        f"recipe {Path(args.recipe).name}: {args.steps - args.warmup} timed steps after {args.warmup}, "
        f"{tokens} tokens, median of {args.repeats} processes, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}"
    )
    print("\n| engine | s/step | tokens/s | vs bare loop |\n|---|---|---|---|")
    rate = {k: tokens / statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    for k in ("bare", "trainer"):
        step = statistics.median(r["seconds"] for r in runs[k]) / (args.steps - args.warmup)
        print(
            f"| {'bare PyTorch loop' if k == 'bare' else 'SFTTrainer recipe'} | {step:.3f} | {rate[k]:,.0f} | "
            f"{rate[k] / rate['bare']:.2f}x |"
        )


if __name__ == "__main__":
    main()
