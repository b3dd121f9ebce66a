"""Loading and saving: in-tree checkpoints, remote code without the package, 7B shapes, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_configs import model_pair, tiny_fields
from transformers import AutoConfig, AutoModelForCausalLM, FalconH1Config, FalconH1ForCausalLM

from falcon_h1r import FalconH1RConfig, FalconH1RForCausalLM, FalconH1RModel
from falcon_h1r.modeling import REMOTE_CODE_FILES

# Falcon-H1R-7B shapes (facts file: paper Table 8 + checkpoint index).
FALCON_H1R_7B = dict(
    vocab_size=130048, hidden_size=3072, intermediate_size=12288, num_hidden_layers=44, num_attention_heads=12,
    num_key_value_heads=2, head_dim=128, mamba_d_ssm=3072, mamba_n_heads=24, mamba_d_head=128, mamba_d_state=256,
    mamba_n_groups=1, mamba_d_conv=4, mamba_chunk_size=128, mamba_rms_norm=True, max_position_embeddings=262144,
)  # fmt: skip


def test_falcon_h1r_7b_shapes_match_in_tree_names_and_count() -> None:
    with torch.device("meta"):
        ours = FalconH1RForCausalLM(FalconH1RConfig(**FALCON_H1R_7B))
        ref = FalconH1ForCausalLM(FalconH1Config(**FALCON_H1R_7B))
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert len(ours_shapes) == 751
    assert sum(p.numel() for p in ours.parameters()) == 7_585_648_736


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("num_key_value_heads", dict(num_attention_heads=4, num_key_value_heads=3)),
        ("mamba_d_head", dict(mamba_d_ssm=64, mamba_n_heads=8, mamba_d_head=4)),
        ("mamba_d_head", dict(mamba_d_ssm=60, mamba_n_heads=8)),
        ("mamba_n_groups", dict(mamba_n_heads=8, mamba_n_groups=3)),
        ("ssm_multipliers", dict(ssm_multipliers=[1.0, 1.0, 1.0])),
        ("mlp_multipliers", dict(mlp_multipliers=[1.0])),
        ("hidden_size", dict(hidden_size=-8)),
        ("mamba_d_state", dict(mamba_d_state=0)),
        ("time_step_limit", dict(time_step_limit=(0.1, 0.01))),
        ("head_dim", dict(head_dim=15)),
        ("embedding_multiplier", dict(embedding_multiplier=float("nan"))),
    ],
)
def test_invalid_config_names_the_field(field: str, overrides: dict) -> None:
    with pytest.raises(ValueError, match=rf"FalconH1RConfig\.{field}: .*Fix:"):
        FalconH1RConfig(**tiny_fields(**overrides))


@pytest.fixture
def native_checkpoint(tmp_path: Path) -> tuple[Path, FalconH1ForCausalLM]:
    _, ref = model_pair(tiny_fields(), seed=20)
    ref.save_pretrained(tmp_path / "native")
    return tmp_path / "native", ref


def test_in_tree_checkpoint_loads_unchanged_and_saves_as_remote_code(native_checkpoint, tmp_path: Path) -> None:
    native_dir, ref = native_checkpoint
    assert json.loads((native_dir / "config.json").read_text())["model_type"] == "falcon_h1"
    ours = FalconH1RForCausalLM.from_pretrained(native_dir).eval()
    input_ids = torch.randint(1, 97, (2, 17))
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids).logits, ref(input_ids).logits, rtol=1e-5, atol=1e-6)
    ours.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["model_type"] == "falcon_h1r"
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_falcon_h1r.FalconH1RForCausalLM"
    for path in REMOTE_CODE_FILES:  # transformers copies the model file and, recursively, what it imports
        assert (tmp_path / "ours" / path.name).read_bytes() == path.read_bytes()
    # importing falcon_h1r registered the Auto classes: no trust_remote_code needed locally
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "ours"), FalconH1RConfig)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "ours")
    assert isinstance(again, FalconH1RForCausalLM)
    # ... and back: the in-tree class reads our folder (same tensor names, same config fields)
    back = FalconH1ForCausalLM.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids).logits, ref(input_ids).logits, rtol=1e-5, atol=1e-6)
    base = FalconH1RModel.from_pretrained(tmp_path / "ours")
    assert isinstance(base, FalconH1RModel)


def test_remote_code_loads_where_the_package_cannot_be_imported(tmp_path: Path) -> None:
    ours, _ = model_pair(tiny_fields(), seed=21)
    ours.save_pretrained(tmp_path / "hub")
    input_ids = torch.randint(1, 97, (2, 12))
    mask = torch.ones_like(input_ids)
    mask[1, :5] = 0  # a left-padded row: the masked paths run in the remote code too
    with torch.no_grad():
        expected = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "logits": ours(input_ids).logits,
            "greedy": ours.generate(input_ids, attention_mask=mask, max_new_tokens=6, do_sample=False),
        }
    torch.save(expected, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys
        class NoFalconH1R:  # make `import falcon_h1r` fail, as on a machine without the package
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "falcon_h1r":
                    raise ImportError("falcon_h1r is blocked in this test")
        sys.meta_path.insert(0, NoFalconH1R())
        import torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(tmp_path / "hub")!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert not any(m.startswith("falcon_h1r") for m in sys.modules)
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        with torch.no_grad():
            logits = model(expected["input_ids"]).logits
        torch.testing.assert_close(logits, expected["logits"], rtol=1e-5, atol=1e-6)
        greedy = model.generate(
            expected["input_ids"], attention_mask=expected["attention_mask"], max_new_tokens=6, do_sample=False
        )
        assert torch.equal(greedy, expected["greedy"]), (greedy, expected["greedy"])
        print("same greedy tokens", tuple(greedy.shape))
        """
    )
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same greedy tokens (2, 18)" in result.stdout


def _save_tiny(tmp_path: Path) -> Path:
    ours, _ = model_pair(tiny_fields(), seed=22)
    ours.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_truncated_safetensors_is_refused(tmp_path: Path) -> None:
    ckpt = _save_tiny(tmp_path)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match="model.safetensors is not a complete safetensors file"):
        FalconH1RForCausalLM.from_pretrained(ckpt)


@pytest.mark.parametrize("damage", ["missing", "misshaped"])
def test_missing_or_misshaped_tensor_is_refused(tmp_path: Path, damage: str) -> None:
    ckpt = _save_tiny(tmp_path)
    tensors = load_file(ckpt / "model.safetensors")
    if damage == "missing":
        del tensors["model.layers.1.mamba.A_log"]
        expected = r"missing tensors \['model.layers.1.mamba.A_log'\]"
    else:
        tensors["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(16, 48)
        expected = r"wrong shapes .*k_proj.weight: \(16, 48\) != \(32, 48\)"
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=expected):
        FalconH1RForCausalLM.from_pretrained(ckpt)


def test_loading_info_reports_missing_tensors_instead_of_refusing(tmp_path: Path) -> None:
    """Who asks for `output_loading_info` reads the missing tensors there (as with in-tree); so does a model built from
    an explicit state dict. Mis-shaped tensors stay refused."""
    ckpt = _save_tiny(tmp_path)
    tensors = load_file(ckpt / "model.safetensors")
    del tensors["model.layers.1.mamba.A_log"]
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    _, info = FalconH1RForCausalLM.from_pretrained(ckpt, output_loading_info=True)
    assert info["missing_keys"] == {"model.layers.1.mamba.A_log"} or list(info["missing_keys"]) == [
        "model.layers.1.mamba.A_log"
    ]
    config = FalconH1RConfig(**tiny_fields())
    model = FalconH1RForCausalLM.from_pretrained(None, config=config, state_dict={})
    assert not any(p.is_meta for p in model.parameters())
    tensors["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(16, 48)
    save_file(tensors, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="wrong shapes"):
        FalconH1RForCausalLM.from_pretrained(ckpt, output_loading_info=True)


def test_missing_shard_is_refused(tmp_path: Path) -> None:
    ours, _ = model_pair(tiny_fields(), seed=23)
    ours.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    shards = sorted((tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()
    with pytest.raises(ValueError, match="listed in model.safetensors.index.json but missing"):
        FalconH1RForCausalLM.from_pretrained(tmp_path / "sharded")
