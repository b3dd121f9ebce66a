"""DeepConf on the embedded model: accuracy and generated tokens against plain majority voting.

    python bench/deepconf.py                      # 200 held-out synthetic problems, budget 64, warm-up 16
    python bench/deepconf.py --online-etas 10,90 --json out.json   # DeepConf-low and -high online
    python bench/deepconf.py --shard 0/2 --json a.json & python bench/deepconf.py --shard 1/2 --json b.json
    python bench/deepconf.py --report a.json b.json                 # two processes, one merged table

For each held-out problem of `falcon_h1r.training.synthetic_task.problems("eval", n)`:
- offline run: ``budget`` traces, from which come
  * one sample: the mean accuracy of a single trace (averaged over the budget's traces, so the estimate
    has low variance), with the tokens and time of one trace (the run's totals / budget);
  * majority@budget: plain majority vote over the same traces (same tokens and time);
  * DeepConf offline@budget: keep the top eta% by lowest group confidence, confidence-weighted vote;
  * every other voting variant (extra table);
- online runs: DeepConf online with the same budget (warm-up, threshold, early stop, consensus tau), one
  per ``--online-etas`` value.
Answers are graded with `falcon_h1r.eval.math.equivalent`. Prints markdown tables; the target is online
DeepConf with >= 40% fewer tokens than majority@budget at accuracy within one point of it or better.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint (default: the embedded tiny model)")
    p.add_argument("--n", type=int, default=200, help="held-out problems")
    p.add_argument("--budget", type=int, default=64)
    p.add_argument("--warmup", type=int, default=16, help="N_init (the paper and the facts file: 16)")
    p.add_argument("--batch-size", type=int, default=8, help="online traces sampled together after warm-up")
    p.add_argument("--eta", type=float, default=10.0, help="offline filter and online threshold: percent kept")
    p.add_argument("--online-etas", default=None, help="comma-separated etas for online runs (default: --eta)")
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
    p.add_argument("--shard", default="0/1", help="i/n: run problems i, i+n, ... (parallel processes; see --report)")
    p.add_argument("--report", nargs="+", default=None, help="print the table of these --json files (shards) merged")
    args = p.parse_args(argv)
    if args.report:
        runs = [json.loads(Path(path).read_text()) for path in args.report]
        records = [r for run in runs for r in run["records"]]
        print(report(records, argparse.Namespace(**runs[0]["args"]), runs[0]["model"]))
        return 0
    shard, n_shards = (int(x) for x in args.shard.split("/"))

    import torch
    from tqdm import tqdm

    from falcon_h1r import resolve_model
    from falcon_h1r.eval.math_grading import equivalent
    from falcon_h1r.inference.deepconf import DeepConfConfig, run_deepconf
    from falcon_h1r.inference.hf_backend import TransformersTraceGenerator
    from falcon_h1r.inference.sampling import SamplingConfig
    from falcon_h1r.training.synthetic_task import problems

    torch.set_num_threads(args.threads)
    model = resolve_model(args.model)
    sampling = SamplingConfig.from_options(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    gen = TransformersTraceGenerator.from_pretrained(model, device=args.device, sampling=sampling)
    offline_cfg = DeepConfConfig.from_options(
        mode="offline", budget=args.budget, eta=args.eta, window=args.window, confidence=args.confidence
    )
    etas = [float(e) for e in args.online_etas.split(",")] if args.online_etas else [args.eta]
    online_cfgs = {
        eta: DeepConfConfig.from_options(
            mode="online",
            budget=args.budget,
            warmup=args.warmup,
            eta=eta,
            window=args.window,
            tau=args.tau,
            batch_size=args.batch_size,
        )
        for eta in etas
    }

    def right(answer: str | None, gold: str) -> bool:
        return answer is not None and equivalent(gold, answer)

    records = []
    for prob in tqdm(problems("eval", args.n)[shard::n_shards], desc="problems"):
        ids = gen.prompt_ids(prob["question"])
        off = run_deepconf(gen, ids, offline_cfg)
        ons = {eta: run_deepconf(gen, ids, cfg) for eta, cfg in online_cfgs.items()}
        gold = prob["answer"]
        records.append(
            {
                "question": prob["question"],
                "gold": gold,
                "trace_correct": [right(t.raw_answer, gold) for t in off.traces],
                "variants": {name: right(v["answer"], gold) for name, v in off.voting.items()},
                "offline": {"answer": off.answer, "correct": right(off.answer, gold), "tokens": off.tokens,
                            "wall": off.wall_time},
                "online": {f"{eta:g}": {"answer": on.answer, "correct": right(on.answer, gold),
                                         "tokens": on.tokens, "wall": on.wall_time, "traces": len(on.traces),
                                         "stopped_early": sum(t.stopped_early for t in on.traces),
                                         "consensus": on.stopped_by_consensus}
                           for eta, on in ons.items()},
            }
        )  # fmt: skip
    print(report(records, args, model))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "model": str(model), "records": records}, f, indent=1)
    return 0


def report(records: list[dict], args, model: str) -> str:
    n = len(records)
    off_tokens = sum(r["offline"]["tokens"] for r in records)
    off_wall = sum(r["offline"]["wall"] for r in records)

    def acc(xs) -> str:
        return f"{100 * sum(xs) / max(1, len(xs)):.1f}%"

    one = [sum(r["trace_correct"]) / len(r["trace_correct"]) for r in records]
    rows = [
        ("one sample (mean over traces)", acc(one), off_tokens / args.budget, off_wall / args.budget),
        (f"majority@{args.budget}", acc([r["variants"]["majority"] for r in records]), off_tokens, off_wall),
        (f"DeepConf offline@{args.budget} (top {args.eta:g}%, {args.confidence})",
         acc([r["offline"]["correct"] for r in records]), off_tokens, off_wall),
    ]  # fmt: skip
    notes = []
    for eta in records[0]["online"] if records else []:
        on = [r["online"][eta] for r in records]
        tokens, wall = sum(o["tokens"] for o in on), sum(o["wall"] for o in on)
        rows.append(
            (f"DeepConf online@{args.budget} (warm-up {args.warmup}, eta {eta}%, tau {args.tau:g})",
             acc([o["correct"] for o in on]), tokens, wall)
        )  # fmt: skip
        traces = sum(o["traces"] for o in on)
        notes.append(
            f"online eta {eta}%: {traces / n:.1f} traces per problem, {sum(o['stopped_early'] for o in on)} of "
            f"{traces} traces stopped early, consensus on {sum(o['consensus'] for o in on)}/{n} problems, "
            f"{1 - tokens / max(1, off_tokens):.0%} fewer tokens than majority@{args.budget}."
        )
    lines = [
        f"DeepConf bench: {n} held-out synthetic problems, model {model}, window {args.window}, "
        f"T={args.temperature}, top_p={args.top_p}, max_new_tokens={args.max_new_tokens}, seed {args.seed}, "
        f"{args.threads} threads, {time.strftime('%Y-%m-%d')}",
        "",
        "| method | accuracy | generated tokens | tokens vs majority | wall time |",
        "|---|---|---|---|---|",
    ]
    for name, a, tok, wall in rows:
        lines.append(f"| {name} | {a} | {tok:,.0f} | {tok / max(1, off_tokens):.0%} | {wall:.1f} s |")
    lines += ["", *notes, "", "| offline voting variant (same traces) | accuracy |", "|---|---|"]
    for name in records[0]["variants"] if records else []:
        lines.append(f"| {name} | {acc([r['variants'][name] for r in records])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
