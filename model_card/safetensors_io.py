"""Byte-level safetensors access: validate headers, list tensors, write shards by streaming bytes.

Conversion and staging never need the tensors as numbers: parameter names and bytes are identical between
the in-tree `falcon_h1` layout and ours, so tensors are copied byte for byte from the source files. That makes
every copy bit-exact by construction and keeps memory at one copy buffer, whatever the model size.
Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of JSON
header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data buffer.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# Bytes per element; dtypes not listed (sub-byte formats) skip the size check but keep the offset checks.
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit
COPY_CHUNK = 64 * 1024 * 1024
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder or weight file is unusable; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor inside a safetensors file, located by absolute byte offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path
    start: int  # absolute offset of the first byte in `path`
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsFile:
    path: Path
    metadata: dict[str, str]
    tensors: list[TensorEntry]  # in file order


def read_safetensors(path: str | Path) -> SafetensorsFile:
    """Parse and validate one file's header against its size; raise CheckpointError on any inconsistency.

    Catches truncated downloads/copies (buffer shorter than the header promises), trailing garbage,
    overlapping or gapped tensors, and shape/dtype/byte-count mismatches, without reading tensor data.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: weight file is missing. Fix: restore it (re-download or re-save the checkpoint)."
        )
    size = path.stat().st_size
    redo = "Fix: re-download or re-save this file (it is truncated or corrupt)."
    if size < 8:
        raise CheckpointError(f"{path}: only {size} bytes, not a safetensors file. {redo}")
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise CheckpointError(f"{path}: header length {header_len} does not fit in a {size}-byte file. {redo}")
        raw = f.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: header is not valid JSON ({exc}). {redo}") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object. {redo}")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    entries: list[TensorEntry] = []
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(d) for d in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}. {redo}") from exc
        if not 0 <= begin <= end:
            raise CheckpointError(f"{path}: tensor {name!r} has invalid data_offsets {[begin, end]}. {redo}")
        width = DTYPE_BYTES.get(dtype)
        if width is not None and (end - begin) != math.prod(shape) * width:
            raise CheckpointError(
                f"{path}: tensor {name!r} ({dtype}, shape {list(shape)}) should take {math.prod(shape) * width} "
                f"bytes but its offsets span {end - begin}. {redo}"
            )
        entries.append(TensorEntry(name, dtype, shape, path, data_start + begin, end - begin))
    entries.sort(key=lambda e: e.start)
    cursor = data_start
    for entry in entries:
        if entry.start != cursor:
            raise CheckpointError(f"{path}: tensor {entry.name!r} overlaps or leaves a gap in the data buffer. {redo}")
        cursor += entry.nbytes
    if cursor != size:
        kind = "truncated" if size < cursor else "longer than its header says"
        raise CheckpointError(f"{path}: file is {kind}: header describes {cursor} bytes, file has {size}. {redo}")
    return SafetensorsFile(path, dict(metadata), entries)


def list_checkpoint_tensors(folder: str | Path) -> tuple[list[TensorEntry], dict[str, str]]:
    """Every tensor of a checkpoint folder (single file or sharded with index), validated; plus file metadata.

    The index must agree exactly with the shards: every indexed tensor present in the shard it names, no
    shard missing, no tensor in a shard that the index does not list there.
    """
    folder = Path(folder)
    index_path, single_path = folder / INDEX_NAME, folder / SINGLE_NAME
    if index_path.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{index_path}: not a valid safetensors index (needs a 'weight_map'). Fix: re-save it."
            ) from exc
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(
                f"{folder}: shard(s) {', '.join(missing)} listed in {INDEX_NAME} are missing. "
                "Fix: download or copy every shard of the checkpoint."
            )
        entries: list[TensorEntry] = []
        metadata: dict[str, str] = {}
        for shard in shards:
            parsed = read_safetensors(folder / shard)
            metadata = metadata or parsed.metadata
            in_file = {e.name for e in parsed.tensors}
            expected = {name for name, s in weight_map.items() if s == shard}
            if in_file != expected:
                absent, extra = sorted(expected - in_file), sorted(in_file - expected)
                raise CheckpointError(
                    f"{folder / shard}: does not match {INDEX_NAME}: "
                    + (f"missing {len(absent)} indexed tensor(s) (e.g. {absent[:3]}) " if absent else "")
                    + (f"holds {len(extra)} tensor(s) the index does not list here (e.g. {extra[:3]})" if extra else "")
                    + ". Fix: re-save the checkpoint so index and shards agree."
                )
            entries.extend(parsed.tensors)
        return entries, metadata
    if single_path.is_file():
        parsed = read_safetensors(single_path)
        return list(parsed.tensors), parsed.metadata
    if any(folder.glob("model-*-of-*.safetensors")):
        raise CheckpointError(f"{folder}: sharded weights without {INDEX_NAME}. Fix: restore the index file.")
    if any(folder.glob("pytorch_model*.bin")):
        raise CheckpointError(
            f"{folder}: only PyTorch .bin weights found; safetensors are required. "
            "Fix: load it and re-save with `model.save_pretrained(dir)` (safetensors is the default)."
        )
    raise CheckpointError(
        f"{folder}: no model.safetensors or {INDEX_NAME} found. Fix: point at a saved checkpoint folder."
    )


def parse_size(size: str | int) -> int:
    """'5GB' / '500MB' / '2GiB' / int -> bytes (decimal units as transformers' max_shard_size, binary with 'i')."""
    if isinstance(size, int):
        return size
    text = size.strip().upper()
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            try:
                return int(float(text[: -len(unit)]) * factor)
            except ValueError:
                break
    if text.isdigit():
        return int(text)
    raise ValueError(f"max shard size {size!r} is not a size; use e.g. '5GB', '500MB' or a number of bytes")


def _header_bytes(entries: list[TensorEntry], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for e in entries:
        header[e.name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)  # keep the data buffer 8-byte aligned, as safetensors does


def progress_bar(total: int, desc: str):
    """A byte-count tqdm bar, shown only for copies big enough to take a while (>= 256 MB)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=total < 256 * 2**20)


def copy_range(src: Path, start: int, nbytes: int, out: BinaryIO, bar: Any = None) -> None:
    """Stream `nbytes` bytes of `src` from offset `start` into `out`, one COPY_CHUNK at a time."""
    with src.open("rb") as f:
        f.seek(start)
        left = nbytes
        while left:
            chunk = f.read(min(COPY_CHUNK, left))
            if not chunk:
                raise CheckpointError(f"{src}: ended {left} bytes early while copying. Fix: re-save the file.")
            out.write(chunk)
            left -= len(chunk)
            if bar is not None:
                bar.update(len(chunk))


def copy_file(src: Path, dst: Path, bar: Any = None) -> None:
    with dst.open("wb") as out:
        copy_range(src, 0, src.stat().st_size, out, bar)


def _write_file(path: Path, entries: list[TensorEntry], metadata: dict[str, str], bar: Any) -> None:
    header = _header_bytes(entries, metadata)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(header)))
        out.write(header)
        for e in entries:
            copy_range(e.path, e.start, e.nbytes, out, bar)


def plan_shards(entries: Iterable[TensorEntry], max_shard_bytes: int) -> list[list[TensorEntry]]:
    """Greedy split in the given order; a tensor larger than the limit gets a shard of its own."""
    shards: list[list[TensorEntry]] = [[]]
    used = 0
    for e in entries:
        if shards[-1] and used + e.nbytes > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(e)
        used += e.nbytes
    return shards


def write_sharded(
    entries: list[TensorEntry],
    dst: str | Path,
    max_shard_size: str | int = "5GB",
    metadata: dict[str, str] | None = None,
) -> list[Path]:
    """Write `model-0000i-of-0000N.safetensors` shards plus `model.safetensors.index.json` into `dst`.

    Always writes the index (even for one shard) so every published folder has the same layout. Tensor
    bytes are streamed from their source files; nothing is held in memory beyond one copy chunk.
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise CheckpointError("duplicate tensor names across the source files. Fix: re-save the checkpoint.")
    metadata = {"format": "pt", **(metadata or {})}
    shards = plan_shards(entries, parse_size(max_shard_size))
    written: list[Path] = []
    weight_map: dict[str, str] = {}
    with progress_bar(sum(e.nbytes for e in entries), f"writing {len(shards)} shard(s)") as bar:
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            _write_file(dst / name, shard, metadata, bar)
            written.append(dst / name)
            weight_map.update({e.name: name for e in shard})
    index = {"metadata": {"total_size": sum(e.nbytes for e in entries)}, "weight_map": dict(sorted(weight_map.items()))}
    (dst / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    written.append(dst / INDEX_NAME)
    return written
