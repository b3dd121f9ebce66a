"""Drop the GRPO prompts a model already always solves, as the Falcon-H1R RL stage did (8/8 by the SFT model).

    python -m falcon_h1r.training.select_prompts --model runs/tiny-sft --dataset_name synthetic \
        --dataset_num_examples 3000 --dataset_seed 777 --samples 8 --output runs/grpo-prompts

A prompt whose k samples are all correct gives a GRPO group with equal rewards: zero advantage, no gradient,
and the step's batch is smaller for it. The model samples k answers per prompt at the RL temperature (TRL's
transformers generation, the chat template of the model's tokenizer), the reward's grader scores them
(`falcon_h1r.training.rewards`, the first of --reward_funcs), and the prompts solved fewer than k times are
written to OUTPUT/train.jsonl with a `solved` column (how many of the k were right). `--dataset_name OUTPUT`
then trains on them.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from transformers import AutoTokenizer

from falcon_h1r import resolve_model
from falcon_h1r.modeling import FalconH1RForCausalLM
from falcon_h1r.training import data, rewards


def sample(model, tokenizer, prompts: list[list[dict]], k: int, batch_size: int, max_new_tokens: int, **kw) -> list:
    """k sampled completions per prompt, grouped per prompt."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    tokenizer.padding_side = "left"
    out: list[str] = []
    rows = [t for t in texts for _ in range(k)]
    for i in range(0, len(rows), batch_size):
        enc = tokenizer(rows[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**enc, do_sample=True, max_new_tokens=max_new_tokens, **kw)
        out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [out[i * k : (i + 1) * k] for i in range(len(prompts))]


def select(args: argparse.Namespace) -> dict:
    path = resolve_model(args.model)
    model = FalconH1RForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    reward = rewards.get_reward_funcs(args.reward_funcs[:1])[0]
    ds = data.load_grpo_dataset(
        args.dataset_name,
        args.dataset_train_split,
        args.dataset_config,
        args.dataset_num_examples,
        args.dataset_seed,
        args.answer_column,
    )
    torch.manual_seed(args.seed)
    rows = list(ds)
    completions = sample(
        model,
        tokenizer,
        [r["prompt"] for r in rows],
        args.samples,
        args.batch_size,
        args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        pad_token_id=tokenizer.pad_token_id,
    )
    kept = []
    for row, group in zip(rows, completions, strict=True):
        extra = {key: [row[key]] * len(group) for key in row if key != "prompt"}
        scores = reward(completions=group, **extra)
        solved = sum(1 for s in scores if s is not None and s >= 1.0)
        if solved < args.samples:
            kept.append({**row, "solved": solved})
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    summary = {
        "prompts": len(rows),
        "kept": len(kept),
        "solved_histogram_of_kept": dict(sorted(Counter(r["solved"] for r in kept).items())),
        "samples": args.samples,
        "temperature": args.temperature,
    }
    if "n_steps" in ds.column_names:
        summary["kept_by_n_steps"] = dict(sorted(Counter(r["n_steps"] for r in kept).items()))
    (out / "selection.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the model RL starts from (the SFT checkpoint)")
    parser.add_argument("--output", required=True, help="folder for train.jsonl (a dataset_name for grpo)")
    parser.add_argument("--dataset_name", default="synthetic")
    parser.add_argument("--dataset_config", default=None)
    parser.add_argument("--dataset_train_split", default="train")
    parser.add_argument("--dataset_num_examples", type=int, default=None)
    parser.add_argument("--dataset_seed", type=int, default=None)
    parser.add_argument("--answer_column", default=None, help="dataset column holding the gold answer")
    parser.add_argument("--reward_funcs", nargs="+", default=["math_accuracy"], help="the first one grades")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.85, help="the RL sampling temperature")
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(select(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
