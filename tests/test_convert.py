"""`falcon-h1r convert`: falcon_h1r <-> in-tree falcon_h1, bit-exact, streaming, refusing broken inputs."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from test_model_card_support import tiny_checkpoint

from falcon_h1r.model_card import safetensors_io
from falcon_h1r.model_card.checkpoint import add_interop_fields, remote_code
from falcon_h1r.model_card.convert import convert, main
from falcon_h1r.model_card.safetensors_io import CheckpointError, list_checkpoint_tensors


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


def read_all(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a folder through the reference safetensors reader."""
    out = {}
    for path in sorted({e.path for e in list_checkpoint_tensors(folder)[0]}):
        with safe_open(str(path), framework="pt") as f:
            out.update({name: f.get_tensor(name) for name in f.keys()})
    return out


def same_bits(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].view(torch.uint8).equal(b[k].view(torch.uint8))
        for k in a
    )


def test_round_trip_is_bit_exact_and_in_tree_loads(ckpt, tmp_path):
    from transformers import FalconH1ForCausalLM

    from falcon_h1r import FalconH1RForCausalLM

    original_cfg = json.loads((ckpt / "config.json").read_text())
    in_tree = convert(ckpt, tmp_path / "h1", to="falcon_h1", max_shard_size="3MB")  # re-sharded on the way
    back = convert(in_tree, tmp_path / "h1r", to="falcon_h1r", max_shard_size="100GB")

    h1_cfg = json.loads((in_tree / "config.json").read_text())
    assert (h1_cfg["model_type"], h1_cfg["architectures"], "auto_map" in h1_cfg) == (
        "falcon_h1",
        ["FalconH1ForCausalLM"],
        False,
    )
    assert not list(in_tree.glob("*.py"))
    assert len(list(in_tree.glob("model-*.safetensors"))) > 1
    # Bit-exact tensors (read back with the reference safetensors library) after both hops.
    source = read_all(ckpt)
    assert same_bits(source, read_all(in_tree))
    assert same_bits(source, read_all(back))
    # Config: identical except the layout keys and the explicit interop fields; a config vLLM serves faithfully (the
    # embedded model's) names vLLM's own architecture, so stock vLLM serves the folder.
    files, auto_map = remote_code()
    expected = {**add_interop_fields(original_cfg), "auto_map": auto_map, "architectures": ["FalconH1ForCausalLM"]}
    assert json.loads((back / "config.json").read_text()) == expected
    for f in files:
        assert (back / f.name).read_bytes() == f.read_bytes()
    for name in ("tokenizer.json", "generation_config.json"):
        assert (back / name).read_bytes() == (ckpt / name).read_bytes()

    # The in-tree class loads the falcon_h1 folder with nothing missing, and computes what our class computes.
    theirs, info = FalconH1ForCausalLM.from_pretrained(in_tree, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    ours = FalconH1RForCausalLM.from_pretrained(back)
    ids = torch.tensor([[5, 17, 42, 7, 99, 3, 11, 64]]) % theirs.config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours(ids).logits, rtol=1e-4, atol=1e-4)


def test_verbatim_copy_and_second_round_trip_are_identical_files(ckpt, tmp_path):
    a = convert(ckpt, tmp_path / "a", to="falcon_h1")
    b = convert(a, tmp_path / "b", to="falcon_h1r")
    c = convert(b, tmp_path / "c", to="falcon_h1")
    d = convert(c, tmp_path / "d", to="falcon_h1r")
    for x, y in ((a, c), (b, d)):
        assert sorted(p.name for p in x.iterdir()) == sorted(p.name for p in y.iterdir())
        for p in x.iterdir():
            assert p.read_bytes() == (y / p.name).read_bytes(), p.name
    weights = (
        "model.safetensors.index.json" if (ckpt / "model.safetensors.index.json").is_file() else "model.safetensors"
    )
    assert (a / weights).read_bytes() == (ckpt / weights).read_bytes()


def test_resharding_streams_in_bounded_memory(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors_io, "COPY_CHUNK", 256 * 1024)
    total = sum(e.nbytes for e in list_checkpoint_tensors(ckpt)[0])
    tracemalloc.start()
    try:
        convert(ckpt, tmp_path / "out", to="falcon_h1", max_shard_size="2MB")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # One copy chunk (plus headers/bookkeeping), never the model: a 7B conversion needs no model-sized buffer.
    assert peak < min(total / 2, 2 * 1024 * 1024), (peak, total)


def _sharded(ckpt: Path, tmp_path: Path) -> Path:
    return convert(ckpt, tmp_path / "sharded", to="falcon_h1r", max_shard_size="3MB")


def test_truncated_shard_is_refused_before_writing(ckpt, tmp_path):
    src = _sharded(ckpt, tmp_path)
    shard = sorted(src.glob("model-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=rf"{shard.name}.*truncated"):
        convert(src, tmp_path / "out", to="falcon_h1")
    assert not (tmp_path / "out").exists()


def test_missing_shard_and_index_mismatch_are_refused(ckpt, tmp_path):
    src = _sharded(ckpt, tmp_path)
    broken = tmp_path / "missing"
    shutil.copytree(src, broken)
    victim = sorted(broken.glob("model-*.safetensors"))[0]
    victim.unlink()
    with pytest.raises(CheckpointError, match=rf"{victim.name}.*missing"):
        convert(broken, tmp_path / "out1")

    mismatched = tmp_path / "mismatch"
    shutil.copytree(src, mismatched)
    index_path = mismatched / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    name = next(iter(index["weight_map"]))
    other = next(s for s in sorted(set(index["weight_map"].values())) if s != index["weight_map"][name])
    index["weight_map"][name] = other  # the index now claims a tensor lives in the wrong shard
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="does not match model.safetensors.index.json"):
        convert(mismatched, tmp_path / "out2")


def test_corrupt_header_and_non_falcon_config_are_refused(ckpt, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    weights = next(bad.glob("*.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[10:20] = b"\xff" * 10  # inside the JSON header
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="header"):
        convert(bad, tmp_path / "o1")
    cfg = json.loads((ckpt / "config.json").read_text())
    other = tmp_path / "llama"
    shutil.copytree(ckpt, other)
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(CheckpointError, match="model_type is 'llama'"):
        convert(other, tmp_path / "o2")


def test_cli_converts_and_reports_errors(ckpt, tmp_path, capsys):
    assert main([str(ckpt), str(tmp_path / "h1"), "--to", "falcon_h1"]) == 0
    assert "wrote falcon_h1 checkpoint" in capsys.readouterr().out
    assert main([str(ckpt), str(tmp_path / "h1"), "--to", "falcon_h1"]) == 1  # destination not empty
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(ckpt), str(tmp_path / "h1"), "--to", "falcon_h1", "--overwrite"]) == 0


def test_cli_hub_id_fails_clearly_offline(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # never reach the network from tests
    assert main(["acme/not-downloaded-model", str(tmp_path / "out")]) == 1
    assert "downloading it from the Hub failed" in capsys.readouterr().err
    assert main([str(tmp_path / "no-such-dir"), str(tmp_path / "out")]) == 1
    assert "not a checkpoint folder" in capsys.readouterr().err
