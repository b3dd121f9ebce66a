"""`falcon-h1r card` and `falcon-h1r publish`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from falcon_h1r import subcommand_parser
from falcon_h1r.model_card.card import CardOptions, render_card
from falcon_h1r.model_card.checkpoint import checkpoint_argument
from falcon_h1r.model_card.publish import PublishError, publish
from falcon_h1r.model_card.safetensors_io import CheckpointError
from falcon_h1r.model_card.validate import StagedFolderError


def _checkpoint_parser(name: str, description: str) -> argparse.ArgumentParser:
    parser = subcommand_parser(name, description)
    parser.add_argument(
        "checkpoint", nargs="?", default=None, help="checkpoint folder or Hub id (same as --model; default: embedded)"
    )
    parser.add_argument("--results", default=None, help="lm-eval results JSON (or the --output_path folder)")
    meta = parser.add_argument_group("card metadata (default: inferred from the checkpoint)")
    meta.add_argument("--license", default=None, help="e.g. apache-2.0 (default: the base model's / apache-2.0)")
    meta.add_argument("--base-model", default=None, help="Hub id of the model this was fine-tuned from")
    meta.add_argument("--dataset", action="append", default=None, help="Hub id of a training dataset (repeatable)")
    meta.add_argument("--language", action="append", default=None, help="language code (repeatable; default en)")
    meta.add_argument("--tag", action="append", default=[], help="extra tag (repeatable)")
    return parser


def _options(args: argparse.Namespace, repo_id: str | None):
    return CardOptions(
        repo_id=repo_id,
        license=args.license,
        base_model=args.base_model,
        datasets=args.dataset,
        languages=args.language,
        extra_tags=args.tag,
    )


def card_main(argv: list[str] | None = None) -> int:
    parser = _checkpoint_parser("card", "Render the model card (README.md) of a Falcon-H1R checkpoint.")
    parser.add_argument("-o", "--output", default=None, help="write the card here (default: print it)")
    parser.add_argument("--repo-id", default=None, help="Hub id used in the usage snippets (default: your-org/NAME)")
    args = parser.parse_args(argv)
    try:
        text = render_card(
            checkpoint_argument(args.checkpoint, args.model, parser), args.results, _options(args, args.repo_id)
        )
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"falcon-h1r card: error: {exc}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def publish_main(argv: list[str] | None = None) -> int:
    parser = _checkpoint_parser(
        "publish",
        "Stage a complete Hub folder (sharded safetensors, remote code, tokenizer, generation config, card), "
        "validate it by loading it in a fresh Python without falcon_h1r, then create the repo and upload.",
    )
    parser.add_argument("--repo-id", required=True, help="ORG/NAME on the Hugging Face Hub")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", default=None, help="branch to upload to (created if missing; default main)")
    parser.add_argument("--dry-run", action="store_true", help="stage and validate, print the files, upload nothing")
    parser.add_argument("--staging-dir", default=None, help="where to stage (default ~/.cache/falcon_h1r/publish/...)")
    parser.add_argument("--max-shard-size", default="5GB", help="safetensors shard size (default 5GB)")
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved `hf auth login`)")
    args = parser.parse_args(argv)
    try:
        publish(
            checkpoint_argument(args.checkpoint, args.model, parser),
            args.repo_id,
            private=args.private,
            revision=args.revision,
            dry_run=args.dry_run,
            token=args.token,
            results=args.results,
            staging_dir=args.staging_dir,
            max_shard_size=args.max_shard_size,
            card_options=_options(args, args.repo_id),
        )
    except (PublishError, StagedFolderError, CheckpointError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"falcon-h1r publish: error: {exc}", file=sys.stderr)
        return 1
    return 0
