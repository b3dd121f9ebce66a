"""Held-out accuracy of a checkpoint on the synthetic arithmetic task (the table in the embedded TRAINING.md).

    python -m falcon_h1r.training.evaluate_tiny --model runs/tiny-sft --n 500 --samples 8 --json out.json

Greedy accuracy; with k samples per problem at the model's recommended sampling (temperature 0.6, top_p 0.95):
mean sampled accuracy, majority vote of k and pass@k, the lm-eval tasks' avg@k / maj@k / pass@k
(`falcon_h1r.eval.metrics.sample_metrics`: answers grouped by math equivalence). Graded by
`falcon_h1r.eval.math.is_correct` (the GRPO reward's grader); broken down by number of steps and by whether a
multiplication occurs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch
from transformers import AutoTokenizer

from falcon_h1r import RECOMMENDED_SAMPLING
from falcon_h1r.eval.answers import extract_boxed_answer
from falcon_h1r.eval.math_grading import equivalent, is_correct
from falcon_h1r.eval.metrics import sample_metrics
from falcon_h1r.modeling import FalconH1RForCausalLM
from falcon_h1r.training import synthetic_task


def generate(model, tokenizer, questions: list[str], do_sample: bool, batch_size: int, max_new_tokens: int, **kw):
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        for question in questions
    ]
    tokenizer.padding_side = "left"
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(
                **enc,
                do_sample=do_sample,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **kw,
            )
        out += tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return out


def _buckets(p: dict) -> list[str]:
    return ["all", f"{p['n_steps']} steps", "with *" if "*" in p["question"] else "only +/-"]


def _mean_by_bucket(problems: list[dict], values: list[float]) -> dict[str, float]:
    by: dict[str, list[float]] = defaultdict(list)
    for p, v in zip(problems, values, strict=True):
        for b in _buckets(p):
            by[b].append(v)
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(by.items())}


def grade(problems: list[dict], responses: list[str]) -> list[int]:
    return [int(is_correct(r, p["answer"])) for p, r in zip(problems, responses, strict=True)]


def evaluate(model_dir: str, n: int = 500, samples: int = 1, batch_size: int = 250, seed: int = 0) -> dict:
    model = FalconH1RForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    problems = synthetic_task.problems("eval", n)
    questions = [p["question"] for p in problems]
    t0 = time.time()
    greedy = generate(model, tokenizer, questions, False, batch_size, 128)
    result = {"model": model_dir, "n": n, "greedy": _mean_by_bucket(problems, grade(problems, greedy))}
    result["examples"] = [{"question": q, "response": r} for q, r in zip(questions[:3], greedy[:3])]
    gen = model.generation_config
    temperature = gen.temperature or RECOMMENDED_SAMPLING["temperature"]
    top_p = gen.top_p or RECOMMENDED_SAMPLING["top_p"]
    if samples:
        torch.manual_seed(seed)
        runs = [
            generate(model, tokenizer, questions, True, batch_size, 128, temperature=temperature, top_p=top_p)
            for _ in range(samples)
        ]
        correct = [grade(problems, run) for run in runs]
        metrics = [
            sample_metrics([c[i] for c in correct], [extract_boxed_answer(run[i]) for run in runs], same=equivalent)
            for i in range(len(problems))
        ]
        result["sampled_mean"] = _mean_by_bucket(problems, [m["avg@k"] for m in metrics])
        result[f"pass@{samples}"] = _mean_by_bucket(problems, [m["pass@k"] for m in metrics])
        result[f"majority@{samples}"] = _mean_by_bucket(problems, [m["maj@k"] for m in metrics])
    result["sampling"] = {"temperature": temperature, "top_p": top_p, "samples_per_problem": samples}
    result["seconds"] = round(time.time() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="held-out accuracy on the synthetic arithmetic task")
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--samples", type=int, default=8, help="sampled answers per problem at the model's T / top_p")
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the result here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate(args.model, args.n, args.samples, args.batch_size)
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
