"""DeepConf on the embedded model as one workload: accuracy, tokens and wall time against majority voting.

    python bench/deepconf.py                                  # 200 held-out problems, budget 64, warm-up 16
    python bench/deepconf.py --online-etas 10,90 --json out.json

Every method answers all ``--n`` held-out problems of `falcon_h1r.training.synthetic_task.problems("eval", n)`
as one workload through `falcon_h1r.inference.scheduler` (transformers backend): at most ``--capacity`` rows
decode at once, a freed row starts the next trace of any question at once. Methods:
- offline workload: ``budget`` traces per problem, from which come
  * one sample: the mean accuracy of a single trace (averaged over the budget's traces), with 1/budget of the
    workload's tokens and time;
  * majority@budget: plain majority vote over the same traces (the workload's tokens and time);
  * DeepConf offline@budget: keep the top eta% by lowest group confidence, confidence-weighted vote;
  * every other voting variant (extra table);
- one online workload per ``--online-etas`` value: warm-up, threshold, early stop, consensus tau.
Per method: accuracy, generated tokens, the workload's wall time, and the median latency of one question
(admission to answer, inside the workload). Answers are graded with `falcon_h1r.eval.math.equivalent`.
Targets (issue): DeepConf-high online at most 60% of majority@budget's tokens and 65% of its wall time, accuracy
no lower than majority's minus 0.5 points.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded tiny model)")
    p.add_argument("--n", type=int, default=200, help="held-out problems")
    p.add_argument("--budget", type=int, default=64)
    p.add_argument("--warmup", type=int, default=16, help="N_init (the paper and the facts file: 16)")
    p.add_argument("--capacity", type=int, default=64, help="most rows decoding at once")
    p.add_argument("--batch-size", type=int, default=None, help="online: most final traces of a question at once")
    p.add_argument("--eta", type=float, default=10.0, help="offline filter: percent kept")
    p.add_argument("--online-etas", default="90,10", help="comma-separated etas of the online runs")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--tau", type=float, default=0.95)
    p.add_argument("--confidence", default="lowest")
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None, help="write per-problem records here")
    args = p.parse_args(argv)

    import torch

    from falcon_h1r import resolve_model
    from falcon_h1r.eval.math_grading import equivalent
    from falcon_h1r.inference.deepconf import DeepConfConfig
    from falcon_h1r.inference.hf_backend import TransformersTraceGenerator
    from falcon_h1r.inference.sampling import SamplingConfig
    from falcon_h1r.inference.scheduler import DeepConfScheduler
    from falcon_h1r.training.synthetic_task import problems

    torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    sampling = SamplingConfig.from_options(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    gen = TransformersTraceGenerator.from_pretrained(model, device=args.device, sampling=sampling)
    scheduler = DeepConfScheduler(gen, args.capacity)
    probs = problems("eval", args.n)
    prompts = [gen.prompt_ids(p["question"]) for p in probs]
    common = dict(budget=args.budget, window=args.window)
    configs = {
        "offline": DeepConfConfig.from_options(mode="offline", eta=args.eta, confidence=args.confidence, **common)
    }
    for eta in args.online_etas.split(","):
        configs[f"online eta {float(eta):g}"] = DeepConfConfig.from_options(
            mode="online", warmup=args.warmup, eta=float(eta), tau=args.tau, batch_size=args.batch_size, **common
        )

    def right(answer: str | None, gold: str) -> bool:
        return answer is not None and equivalent(gold, answer)

    workloads = {}
    for name, config in configs.items():
        print(f"{name}: {len(prompts)} problems ...", flush=True)
        workloads[name] = scheduler.run(prompts, config)
    records = []
    for i, prob in enumerate(probs):
        off = workloads["offline"].results[i]
        gold = prob["answer"]
        records.append(
            {
                "question": prob["question"],
                "gold": gold,
                "trace_correct": [right(t.raw_answer, gold) for t in off.traces],
                "variants": {name: right(v["answer"], gold) for name, v in off.voting.items()},
                **{name: {"answer": r.answer, "correct": right(r.answer, gold), "tokens": r.tokens,
                          "latency": r.wall_time, "traces": len(r.traces),
                          "stopped_early": sum(t.stopped_early for t in r.traces),
                          "consensus": r.stopped_by_consensus}
                   for name, r in ((n, w.results[i]) for n, w in workloads.items())},
            }
        )  # fmt: skip
    print(report(records, {n: w.summary() for n, w in workloads.items()}, args, model))
    if args.json:
        with open(args.json, "w") as f:
            summaries = {n: w.summary() for n, w in workloads.items()}
            json.dump({"args": vars(args), "model": str(model), "workloads": summaries, "records": records}, f)
    return 0


def report(records: list[dict], workloads: dict[str, dict], args, model: str) -> str:
    n = len(records)

    def acc(xs) -> str:
        return f"{100 * sum(xs) / max(1, len(xs)):.1f}%"

    def latency(name: str) -> float:
        return statistics.median(r[name]["latency"] for r in records)

    off = workloads["offline"]
    one = [sum(r["trace_correct"]) / len(r["trace_correct"]) for r in records]
    rows = [
        ("one sample (mean over traces)", acc(one), off["tokens"] / args.budget, off["wall_time"] / args.budget, None),
        (f"majority@{args.budget}", acc([r["variants"]["majority"] for r in records]), off["tokens"],
         off["wall_time"], latency("offline")),
        (f"DeepConf offline@{args.budget} (top {args.eta:g}%, {args.confidence})",
         acc([r["offline"]["correct"] for r in records]), off["tokens"], off["wall_time"], latency("offline")),
    ]  # fmt: skip
    notes = []
    for name, w in workloads.items():
        if name == "offline":
            continue
        on = [r[name] for r in records]
        eta = name.split()[-1]
        rows.append(
            (f"DeepConf online@{args.budget} (warm-up {args.warmup}, eta {eta}%, tau {args.tau:g})",
             acc([o["correct"] for o in on]), w["tokens"], w["wall_time"], latency(name))
        )  # fmt: skip
        traces = sum(o["traces"] for o in on)
        notes.append(
            f"online eta {eta}%: {traces / n:.1f} traces per problem, {sum(o['stopped_early'] for o in on)} of "
            f"{traces} traces stopped early, consensus on {sum(o['consensus'] for o in on)}/{n} problems, "
            f"{w['decode_steps']:,} decode steps."
        )
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    lines = [
        f"DeepConf bench: {n} held-out synthetic problems as one workload per method, at most {args.capacity} rows "
        f"decoding at once; model {model}, window {args.window}, T={args.temperature}, top_p={args.top_p}, "
        f"max_new_tokens={args.max_new_tokens}, seed {args.seed}, {args.threads} threads on {os.cpu_count()} "
        f"CPUs ({cpu}), {time.strftime('%Y-%m-%d')}",
        "",
        "| method | accuracy | generated tokens | tokens vs majority | workload wall time | wall vs majority "
        "| median question latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a, tok, wall, lat in rows:
        lat_text = "-" if lat is None else f"{lat:.1f} s"
        lines.append(
            f"| {name} | {a} | {tok:,.0f} | {tok / max(1, off['tokens']):.0%} | {wall:.1f} s | "
            f"{wall / off['wall_time']:.0%} | {lat_text} |"
        )
    lines += ["", *notes, "", "| offline voting variant (same traces) | accuracy |", "|---|---|"]
    for name in records[0]["variants"] if records else []:
        lines.append(f"| {name} | {acc([r['variants'][name] for r in records])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
