"""`falcon-h1r` command line: one subcommand per job, each implemented next to the code it drives.

The table maps a subcommand to `module:function`; the module is imported only when that subcommand
runs, so `falcon-h1r --help` stays instant. Each function takes the remaining argv (list[str]) and
returns an exit code; it builds its own parser with `falcon_h1r.subcommand_parser` (the shared `--model`).
Nothing imports this module (it names the subcommands; they import the layers below). Bad input (`ValueError`,
whose messages name the problem and the fix, `UsageError` among them) and missing files or Hub repos (`OSError`)
end in one line; FALCON_H1R_TRACEBACK=1 shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

from falcon_h1r import __version__

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("falcon_h1r.inference.generate_cli:main", "generate text from a prompt (chat template, streaming)"),
    "deepconf": (
        "falcon_h1r.inference.deepconf_cli:main",
        "answer with DeepConf: many traces, confidence-filtered vote",
    ),
    "sft": ("falcon_h1r.training.sft:main", "supervised fine-tuning with TRL's SFTTrainer (YAML recipe)"),
    "grpo": ("falcon_h1r.training.grpo:main", "GRPO reinforcement learning with TRL's GRPOTrainer (YAML recipe)"),
    "eval": ("falcon_h1r.eval.cli:main", "evaluate with lm-eval on AIME / MATH-500 / LiveCodeBench / ..."),
    "card": ("falcon_h1r.model_card.cli:card_main", "render a model card (README.md) for a checkpoint"),
    "publish": ("falcon_h1r.model_card.cli:publish_main", "stage, validate and upload a checkpoint to the Hub"),
    "convert": ("falcon_h1r.model_card.convert:main", "convert between in-tree falcon_h1 and falcon_h1r remote code"),
}


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    return (
        "usage: falcon-h1r <command> [options]\n\n"
        "Falcon-H1R: load, fine-tune, evaluate, serve and publish. Every command defaults --model to the\n"
        "embedded tiny Falcon-H1R, so it runs offline on a CPU.\n\n"
        f"commands:\n{rows}\n\n"
        "Run `falcon-h1r <command> --help` for a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"falcon-h1r: unknown command {name!r}; choose one of: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module_name, func_name = SUBCOMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except (ValueError, OSError) as err:  # bad input, or a missing file / Hub repo: one line, not a traceback
        if os.environ.get("FALCON_H1R_TRACEBACK") == "1":
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, OSError):
            message += " Fix: check the files, folders and Hub ids given (FALCON_H1R_TRACEBACK=1 shows the traceback)."
        print(f"falcon-h1r {name}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
