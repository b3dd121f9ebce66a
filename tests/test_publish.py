"""`falcon-h1r publish`: stage + validate end to end (dry run), corrupted folders rejected before any upload,
and the upload path refusing clearly offline / without a token. Never touches the network."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from test_model_card_support import tiny_checkpoint, write_results

from falcon_h1r.cli import main as cli_main
from falcon_h1r.model_card import publish as publish_module
from falcon_h1r.model_card.checkpoint import remote_code
from falcon_h1r.model_card.publish import PublishError, publish
from falcon_h1r.model_card.stage import stage_folder
from falcon_h1r.model_card.validate import BLOCKER, StagedFolderError, run_sanitized, static_problems, validate_folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def staged(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("staged") / "hub"
    stage_folder(ckpt, out, max_shard_size="4MB")
    return out


def test_publish_dry_run_end_to_end(ckpt, tmp_path, capsys):
    """The CLI stages, loads the folder in a fresh Python without falcon_h1r, generates, and lists the files."""
    results = write_results(tmp_path)
    stage = tmp_path / "stage"
    argv = ["publish", str(ckpt), "--repo-id", "acme/falcon-h1r-tiny", "--dry-run", "--staging-dir", str(stage),
            "--max-shard-size", "4MB", "--results", str(results)]  # fmt: skip
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "ok: FalconH1RForCausalLM from transformers_modules" in out
    assert "dry run: not uploading" in out and "model.safetensors.index.json" in out

    shards = sorted(stage.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2
    index = json.loads((stage / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    cfg = json.loads((stage / "config.json").read_text())
    files, auto_map = remote_code()
    # the embedded model has the published gate order, so the name is vLLM's own: stock vLLM serves it unaided
    assert (cfg["model_type"], cfg["architectures"], cfg["auto_map"]) == (
        "falcon_h1r",
        ["FalconH1ForCausalLM"],
        auto_map,
    )
    for f in files:
        assert (stage / f.name).read_bytes() == f.read_bytes()  # remote code shipped verbatim
    gen = json.loads((stage / "generation_config.json").read_text())
    assert (gen["do_sample"], gen["temperature"], gen["top_p"]) == (True, 0.6, 0.95)
    meta = ModelCard.load(stage / "README.md").data.to_dict()
    assert meta["model-index"][0]["name"] == "falcon-h1r-tiny"
    for name, size in [
        (p.name, p.stat().st_size) for p in stage.iterdir() if p.is_file() and not p.name.startswith(".")
    ]:
        assert name in out and f"{size:,} B" in out


def _copy(staged: Path, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(staged, folder)
    return folder


def test_corrupted_staged_folders_are_rejected(staged, tmp_path):
    truncated = _copy(staged, tmp_path, "truncated")
    shard = sorted(truncated.glob("model-*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:-4096])
    with pytest.raises(StagedFolderError, match=rf"{shard.name}.*truncated"):
        validate_folder(truncated)

    no_modeling = _copy(staged, tmp_path, "no_modeling")
    (no_modeling / "modeling_falcon_h1r.py").unlink()
    with pytest.raises(StagedFolderError, match=r"modeling_falcon_h1r\.py, which is missing"):
        validate_folder(no_modeling)

    leaky = _copy(staged, tmp_path, "leaky")
    path = leaky / "configuration_falcon_h1r.py"
    path.write_text("from falcon_h1r.modeling import FalconH1RConfig  # noqa\n" + path.read_text())
    with pytest.raises(StagedFolderError, match="imports falcon_h1r, which Hub users do not have"):
        validate_folder(leaky)

    no_template = _copy(staged, tmp_path, "no_template")
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    tok_cfg = json.loads((no_template / "tokenizer_config.json").read_text())
    tok_cfg.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    with pytest.raises(StagedFolderError, match="no chat template"):
        validate_folder(no_template)


def test_load_check_catches_weights_the_static_checks_cannot(staged, tmp_path):
    """A tensor dropped consistently from shard and index passes the static checks; loading finds the hole."""
    from safetensors.torch import load_file, save_file

    holed = _copy(staged, tmp_path, "holed")
    index_path = holed / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    victim = next(n for n in sorted(index["weight_map"]) if n.endswith("mamba.in_proj.weight"))
    shard = holed / index["weight_map"].pop(victim)
    tensors = load_file(shard)
    del tensors[victim]
    save_file(tensors, shard, metadata={"format": "pt"})
    index_path.write_text(json.dumps(index))
    problems, _ = static_problems(holed)
    assert problems == []
    with pytest.raises(StagedFolderError, match=re.escape(victim)):
        validate_folder(holed)


def test_the_load_check_python_cannot_import_falcon_h1r():
    proc = run_sanitized(BLOCKER + "import falcon_h1r\n", timeout=60)
    assert proc.returncode != 0
    assert "blocked by the publish check" in proc.stderr


def test_corrupted_folder_is_never_uploaded(ckpt, tmp_path, monkeypatch):
    """Through publish() itself: staging that yields a broken folder stops before the upload step."""
    uploads = []
    monkeypatch.setattr(publish_module, "_upload", lambda *a, **k: uploads.append((a, k)) or "url")
    monkeypatch.setattr(publish_module, "_offline", lambda: False)
    real_stage = publish_module.stage_folder

    def stage_then_corrupt(*args, **kwargs):
        files = real_stage(*args, **kwargs)
        (Path(args[1]) / "modeling_falcon_h1r.py").unlink()
        return [f for f in files if f.exists()]

    monkeypatch.setattr(publish_module, "stage_folder", stage_then_corrupt)
    with pytest.raises(StagedFolderError):
        publish(ckpt, "acme/x", token="hf_not_a_real_token", staging_dir=tmp_path / "s")
    assert uploads == []


def test_upload_path_refuses_offline_and_without_token(ckpt, tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE is set"):
        publish(ckpt, "acme/x", staging_dir=tmp_path / "s1")
    assert not (tmp_path / "s1").exists()  # refused before staging anything

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(hub_constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish(ckpt, "acme/x", staging_dir=tmp_path / "s2")
    with pytest.raises(PublishError, match="ORG/NAME"):
        publish(ckpt, "not-a-namespace", dry_run=True)


def test_staging_never_empties_a_foreign_folder(ckpt, tmp_path):
    foreign = tmp_path / "home-like"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing to empty it"):
        stage_folder(ckpt, foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    ours = tmp_path / "ours"
    first = stage_folder(ckpt, ours, max_shard_size="4MB")
    (ours / ".cache").mkdir()  # huggingface_hub's resume state survives re-staging
    second = stage_folder(ckpt, ours, max_shard_size="8MB")
    assert (ours / ".cache").is_dir() and len(second) < len(first)
    assert not [p for p in second if p.name.startswith(".")]


@pytest.mark.parametrize("field", [{"mamba_norm_before_gate": True}, {"time_step_limit": [0.0, 10.0]}])
def test_a_config_vllm_serves_differently_keeps_our_architecture_name(ckpt, staged, tmp_path, field):
    """Stock vLLM would run its Falcon-H1 on such a checkpoint and answer differently from transformers; under our
    name it finds no model class (and falls back to its generic backend, which our remote code refuses)."""
    from falcon_h1r.model_card.checkpoint import rewrite_config

    cfg = json.loads((ckpt / "config.json").read_text()) | field
    assert rewrite_config(cfg, "falcon_h1r")["architectures"] == ["FalconH1RForCausalLM"]
    assert rewrite_config(cfg, "falcon_h1")["architectures"] == ["FalconH1ForCausalLM"]
    folder = _copy(staged, tmp_path, "mismatch")  # a staged folder whose config was edited afterwards
    cfg = json.loads((folder / "config.json").read_text()) | field
    (folder / "config.json").write_text(json.dumps(cfg))
    problems, _ = static_problems(folder)
    assert any("architectures ['FalconH1RForCausalLM']" in p for p in problems)
