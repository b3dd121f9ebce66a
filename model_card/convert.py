"""`falcon-h1r convert [SRC] DST [--to falcon_h1r|falcon_h1]`: switch a checkpoint between the two layouts.

SRC (or `--model`, as in every subcommand) defaults to the embedded checkpoint.

- `falcon_h1r` (default): our remote-code layout: config model_type `falcon_h1r`, architectures
  `FalconH1RForCausalLM`, `auto_map`, and the modeling files copied next to the weights, so the folder loads
  with `trust_remote_code=True` anywhere.
- `falcon_h1`: transformers' in-tree layout (e.g. `tiiuae/Falcon-H1R-7B` as published), loadable by
  `transformers.FalconH1ForCausalLM`, vLLM and llama.cpp's converter without our package.

Weights are validated (missing/truncated shards, index mismatch), then copied byte for byte: shard files
verbatim by default, or re-sharded tensor by tensor with `--max-shard-size`. Memory stays at one copy
buffer, so a 7B conversion needs no more RAM than a tiny one, and the round trip is bit-exact.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from falcon_h1r import subcommand_parser
from falcon_h1r.model_card.checkpoint import (
    checkpoint_argument,
    copy_tokenizer_and_generation,
    load_config,
    remote_code,
    rewrite_config,
    write_config,
)
from falcon_h1r.model_card.safetensors_io import (
    INDEX_NAME,
    SINGLE_NAME,
    CheckpointError,
    copy_file,
    list_checkpoint_tensors,
    progress_bar,
    write_sharded,
)


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    to: str = "falcon_h1r",
    max_shard_size: str | int | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert checkpoint folder `src` into `dst` in layout `to`; returns `dst`."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ValueError(f"source and destination are the same folder ({src}); choose a new destination")
    cfg = load_config(src)
    entries, metadata = list_checkpoint_tensors(src)  # validates every weight file before anything is written
    if dst.exists() and any(dst.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{dst} exists and is not empty; pass overwrite=True (--overwrite) or pick a new folder"
            )
        shutil.rmtree(dst)
    dst.mkdir(parents=True, exist_ok=True)

    write_config(rewrite_config(cfg, to), dst)
    if max_shard_size is None:
        # Keep the source's file layout: shard files are copied verbatim (validated above).
        sharded = (src / INDEX_NAME).is_file()
        names = [INDEX_NAME, *sorted({e.path.name for e in entries})] if sharded else [SINGLE_NAME]
        with progress_bar(sum((src / n).stat().st_size for n in names), "copying weights") as bar:
            for name in names:
                copy_file(src / name, dst / name, bar)
    else:
        write_sharded(entries, dst, max_shard_size, metadata)
    copy_tokenizer_and_generation(src, dst)
    if to == "falcon_h1r":
        for path in remote_code()[0]:
            shutil.copyfile(path, dst / path.name)
    return dst


def main(argv: list[str] | None = None) -> int:
    parser = subcommand_parser(
        "convert",
        "Convert a checkpoint between transformers' in-tree falcon_h1 layout and the falcon_h1r remote-code layout "
        "(weights copied byte for byte; round trip is bit-exact).",
    )
    parser.add_argument(
        "src",
        nargs="?",
        default=None,
        help="checkpoint folder (config.json + safetensors weights) or Hub id, e.g. tiiuae/Falcon-H1R-7B "
        "(same as --model; default: the embedded checkpoint)",
    )
    parser.add_argument("dst", help="output folder (must not exist or be empty, unless --overwrite)")
    parser.add_argument(
        "--to",
        choices=["falcon_h1r", "falcon_h1"],
        default="falcon_h1r",
        help="target layout: falcon_h1r = remote code + auto_map (default); falcon_h1 = in-tree transformers "
        "(for vLLM without the plugin, llama.cpp's convert_hf_to_gguf.py, plain transformers)",
    )
    parser.add_argument(
        "--max-shard-size",
        default=None,
        help="re-shard the weights, e.g. 5GB (default: keep the source's shard files verbatim)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty destination folder")
    args = parser.parse_args(argv)
    try:
        src = checkpoint_argument(args.src, args.model, parser)
        out = convert(src, args.dst, to=args.to, max_shard_size=args.max_shard_size, overwrite=args.overwrite)
    except (CheckpointError, FileExistsError, ValueError) as exc:
        print(f"falcon-h1r convert: error: {exc}", file=sys.stderr)
        return 1
    files = sorted(p for p in out.iterdir() if p.is_file())
    print(f"wrote {args.to} checkpoint to {out} ({len(files)} files, {sum(p.stat().st_size for p in files):,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
