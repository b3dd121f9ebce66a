"""`falcon-h1r deepconf "question" ...`: answer with DeepConf (many traces, confidence-filtered vote).

One question: a progress bar (traces done, tokens, current leader) on stderr, then a table of votes; ``--json``
prints one JSON object instead (answer, votes, traces, tokens, ...); ``--plot out.png`` draws every trace's
group confidence, coloured by answer, with the threshold.

Several questions (several arguments, or ``--questions-file`` with one question per line) are one workload: on
the transformers backend one batch of ``--max-batch`` rows (default 64) is kept full across questions
(`falcon_h1r.inference.scheduler`). It prints a line per question as it is answered and a summary; ``--json``
prints one object per question (with its ``question``) and a last ``{"summary": ...}`` object (total wall time,
tokens, row capacity).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from falcon_h1r import resolve_model, subcommand_parser
from falcon_h1r.inference.backends import BACKENDS, make_generator
from falcon_h1r.inference.confidence import CONFIDENCE_KINDS, running_group_confidences
from falcon_h1r.inference.deepconf import DeepConfConfig, DeepConfResult, Trace, run_deepconf
from falcon_h1r.inference.sampling import DEFAULT_MAX_NEW_TOKENS, SamplingConfig
from falcon_h1r.inference.scheduler import DEFAULT_CAPACITY, WorkloadResult, answer_all

DEEPCONF = DeepConfConfig()  # the defaults the flags show
SAMPLING = SamplingConfig()
DEEPCONF_FLAGS = ("mode", "budget", "warmup", "eta", "window", "tau", "confidence", "min_stop_tokens", "batch_size")
SAMPLING_FLAGS = ("temperature", "top_p", "top_k", "max_new_tokens", "seed")


def build_parser():
    p = subcommand_parser("deepconf", "Answer a question with DeepConf: sample many reasoning traces, stop "
                          "low-confidence ones early, and take a confidence-weighted vote.")  # fmt: skip
    p.add_argument("questions", nargs="*", metavar="question", help="question(s), formatted with the chat template")
    p.add_argument("--questions-file", default=None, metavar="FILE", help="more questions, one per line")
    p.add_argument("--backend", choices=BACKENDS, default="transformers", help="transformers (CPU/GPU) or vllm (GPU)")
    p.add_argument("--mode", choices=("online", "offline"), default=DEEPCONF.mode)
    p.add_argument("--budget", type=int, default=DEEPCONF.budget, help="most traces to sample (paper: 512)")
    p.add_argument("--warmup", type=int, default=DEEPCONF.warmup, help="online: warm-up traces that set the threshold")
    p.add_argument(
        "--eta",
        type=float,
        default=DEEPCONF.eta,
        help="percent of traces kept: 10 = DeepConf-low (threshold = 90th percentile of the warm-up lowest "
        "group confidences), 90 = DeepConf-high (10th percentile)",
    )
    p.add_argument("--window", type=int, default=DEEPCONF.window, help="group-confidence window in tokens")
    p.add_argument("--tau", type=float, default=DEEPCONF.tau, help="online: stop once the leader has this vote share")
    p.add_argument(
        "--confidence",
        choices=CONFIDENCE_KINDS,
        default=DEEPCONF.confidence,
        help="offline: trace confidence to filter by",
    )
    p.add_argument(
        "--min-stop-tokens", type=int, default=None, help="online: tokens before a trace may stop (default: window)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="online: traces sampled together after warm-up")
    p.add_argument("--temperature", type=float, default=SAMPLING.temperature)
    p.add_argument("--top-p", type=float, default=SAMPLING.top_p)
    p.add_argument("--top-k", type=int, default=SAMPLING.top_k)
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=SAMPLING.max_new_tokens,
        help=f"per trace (default: the checkpoint's generation_config.max_new_tokens, else {DEFAULT_MAX_NEW_TOKENS:,})",
    )
    p.add_argument("--seed", type=int, default=SAMPLING.seed)
    p.add_argument("--system", default=None, help="system prompt (default: the chat template's)")
    p.add_argument("--device", default=None, help="transformers: cpu / cuda (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16")
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="transformers: most traces decoded at once; several questions (either backend): most traces in flight "
        f"across them (default {DEFAULT_CAPACITY})",
    )
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm")
    p.add_argument("--data-parallel-size", type=int, default=1, help="vllm")
    p.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=engine_arg,
        help="vllm: another engine argument, e.g. gpu_memory_utilization=0.3 or max_model_len=8192 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (answer, votes, traces, tokens, ...)")
    p.add_argument("--plot", default=None, metavar="PNG", help="plot trace confidences to this PNG")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        questions = read_questions(args.questions, args.questions_file)
        config = DeepConfConfig.from_options(**{name: getattr(args, name) for name in DEEPCONF_FLAGS})
        sampling = SamplingConfig.from_options(**{name: getattr(args, name) for name in SAMPLING_FLAGS})
    except (ValueError, OSError) as e:
        print(f"falcon-h1r deepconf: {e}", file=sys.stderr)
        return 2
    workload = len(questions) > 1 or args.questions_file is not None
    if workload and args.plot:
        print("falcon-h1r deepconf: --plot draws one question's traces. Fix: ask one question.", file=sys.stderr)
        return 2
    try:
        generator = _generator(args, resolve_model(args.model), sampling, workload)
    except ImportError as e:
        print(f"falcon-h1r deepconf: {e}", file=sys.stderr)
        return 2
    try:
        if workload:
            answer_workload(generator, questions, config, args)
            return 0
        prompt_ids = generator.prompt_ids(questions[0], args.system)
        with _Progress(config.budget) as progress:
            result = run_deepconf(generator, prompt_ids, config, progress=progress)
    finally:
        if hasattr(generator, "close"):
            generator.close()
    if args.plot:
        plot_confidences(result, args.plot)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print_summary(result)
    return 0


def read_questions(positional: list[str], path: str | None) -> list[str]:
    questions = list(positional)
    if path is not None:
        lines = Path(path).read_text().splitlines()
        questions += [line.strip() for line in lines if line.strip()]
    if not questions:
        where = f"{path} has no non-empty line" if path else "no question given"
        raise ValueError(f"{where}. Fix: pass a question, or --questions-file with one question per line.")
    return questions


def answer_workload(generator, questions: list[str], config: DeepConfConfig, args) -> WorkloadResult:
    """Every question as one workload; prints each answer as it comes (JSON lines with --json), then a summary."""
    prompts = [generator.prompt_ids(q, args.system) for q in questions]

    def on_result(i: int, result: DeepConfResult) -> None:
        if args.json:
            print(json.dumps({"question": questions[i], **result.to_json()}), flush=True)
        else:
            print(f"[{i + 1}/{len(questions)}] {questions[i]} -> {result.answer}   traces {len(result.traces)}   "
                  f"tokens {result.tokens}   {result.wall_time:.1f}s", flush=True)  # fmt: skip

    workload = answer_all(generator, prompts, config, capacity=args.max_batch or DEFAULT_CAPACITY, on_result=on_result)
    summary = workload.summary()
    if args.json:
        print(json.dumps({"summary": summary}))
    else:
        print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    return workload


def _generator(args, model: str, sampling: SamplingConfig, workload: bool = False):
    return make_generator(
        args.backend,
        model,
        sampling=sampling,
        device=args.device,
        dtype=args.dtype,
        tensor_parallel_size=args.tensor_parallel_size,
        data_parallel_size=args.data_parallel_size,
        max_batch=None if workload else args.max_batch,  # a workload's --max-batch is its capacity, on either backend
        **dict(args.vllm_arg),
    )


def engine_arg(text: str) -> tuple[str, object]:
    """KEY=VALUE -> (key, value), the value read as JSON where it parses (numbers, true/false) and as text otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. gpu_memory_utilization=0.3")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


class _Progress:
    """rich progress bar on stderr: traces done of the budget, generated tokens, current leader."""

    def __init__(self, budget: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("traces"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[tokens]} tokens"),
            TextColumn("leader: {task.fields[leader]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._progress.add_task("deepconf", total=budget, tokens=0, leader="-")

    def __enter__(self):
        self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self._progress.__exit__(*exc)

    def __call__(self, traces: list[Trace], leader: str | None) -> None:
        tokens = sum(t.n_tokens for t in traces)
        self._progress.update(self._task, completed=len(traces), tokens=tokens, leader=leader or "-")


def print_summary(result: DeepConfResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    total = sum(v.weight for v in result.votes) or 1.0
    table = Table(title=f"DeepConf ({result.mode}) votes")
    for col in ("answer", "traces", "weight", "share"):
        table.add_column(col, justify="left" if col == "answer" else "right")
    for v in result.votes:
        table.add_row(v.answer, str(v.count), f"{v.weight:.2f}", f"{v.weight / total:.1%}")
    console.print(table)
    n_early = sum(t.stopped_early for t in result.traces)
    threshold = "-" if result.threshold is None else f"{result.threshold:.4f}"
    console.print(
        f"answer: [bold]{result.answer}[/bold]   traces: {len(result.traces)} ({n_early} stopped early)   "
        f"tokens: {result.tokens}   threshold: {threshold}   time: {result.wall_time:.1f}s"
    )
    variants = Table(title="voting variants")
    variants.add_column("variant")
    variants.add_column("answer")
    variants.add_column("votes", justify="right")
    for name, v in result.voting.items():
        variants.add_row(name, str(v["answer"]), str(v["n_votes"]))
    console.print(variants)


def plot_confidences(result: DeepConfResult, path: str) -> None:
    """Group confidence along every trace, one colour per answer (grey: no answer / stopped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answers = [v.answer for v in result.votes] + sorted(
        {t.answer for t in result.traces if t.answer is not None} - {v.answer for v in result.votes}
    )
    cmap = plt.get_cmap("tab10")
    colour = {a: cmap(i % 10) for i, a in enumerate(answers)}
    fig, ax = plt.subplots(figsize=(9, 5))
    labelled: set = set()
    for t in result.traces:
        if not t.confidences:
            continue
        g = running_group_confidences(t.confidences, result.config.window)
        key = t.answer if t.answer is not None else ("stopped early" if t.stopped_early else "no answer")
        c = colour.get(t.answer, "0.6" if t.stopped_early else "0.8")
        ax.plot(range(1, len(g) + 1), g, color=c, lw=1, alpha=0.8, ls="--" if t.stopped_early else "-",
                label=None if key in labelled else str(key))  # fmt: skip
        labelled.add(key)
    if result.threshold is not None:
        what = (
            "stop threshold"
            if result.mode == "online"
            else f"top-{result.config.eta:g}% cut ({result.config.confidence})"
        )
        ax.axhline(result.threshold, color="red", lw=1.5, label=what)
    ax.set_xlabel("generated tokens")
    ax.set_ylabel(f"group confidence (window {result.config.window})")
    ax.set_title(f"DeepConf {result.mode}: answer {result.answer}, {len(result.traces)} traces, {result.tokens} tokens")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
