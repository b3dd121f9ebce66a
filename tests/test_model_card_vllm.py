"""vLLM plugin without vLLM: the registration seam, the entry point, and the config fields vLLM's Falcon-H1 reads."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from test_model_card_support import tiny_checkpoint

from falcon_h1r.model_card import vllm_plugin
from falcon_h1r.model_card.convert import convert
from falcon_h1r.model_card.vllm_plugin import VLLM_DEFAULTED_FIELDS, VLLM_REQUIRED_FIELDS, vllm_config_problems


class StandInRegistry:
    """Same two methods as vLLM's `_ModelRegistry`, enforcing the same argument rules (registry.py)."""

    def __init__(self, archs: dict[str, tuple[str, str]]):
        self.models = dict(archs)
        self.calls: list[tuple[str, str]] = []

    def get_supported_archs(self):
        return self.models.keys()

    def register_model(self, model_arch, model_cls) -> None:
        if not isinstance(model_arch, str):
            raise TypeError(f"`model_arch` should be a string, not a {type(model_arch)}")
        if not isinstance(model_cls, str) or len(model_cls.split(":")) != 2:
            raise ValueError("Expected a string in the format `<module>:<class>`")
        self.calls.append((model_arch, model_cls))
        self.models[model_arch] = tuple(model_cls.split(":"))


# vLLM's own table entry for the in-tree model: "FalconH1ForCausalLM": ("falcon_h1", "FalconH1ForCausalLM"),
# resolved under vllm.model_executor.models.
IN_TREE = {"FalconH1ForCausalLM": ("vllm.model_executor.models.falcon_h1", "FalconH1ForCausalLM")}


def test_register_maps_our_architecture_once():
    registry = StandInRegistry(IN_TREE)
    vllm_plugin.register(registry)
    vllm_plugin.register(registry)  # vLLM calls general plugins in every process; the second call is a no-op
    assert registry.calls == [("FalconH1RForCausalLM", "falcon_h1r.model_card.vllm_model:FalconH1RForCausalLM")]


def test_entry_point_is_installed():
    plugins = {ep.name: ep for ep in entry_points(group="vllm.general_plugins")}
    assert plugins["falcon_h1r"].load() is vllm_plugin.register


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


def test_loaded_configs_carry_every_field_vllm_reads(ckpt, tmp_path):
    from transformers import FalconH1Config

    from falcon_h1r import FalconH1RConfig

    ours = FalconH1RConfig.from_pretrained(ckpt)  # what vLLM gets through trust_remote_code
    in_tree = FalconH1Config.from_pretrained(convert(ckpt, tmp_path / "h1", to="falcon_h1"))  # without the plugin
    for config in (ours, in_tree):
        errors, _ = vllm_config_problems(config)
        assert errors == []
        for name in VLLM_REQUIRED_FIELDS + VLLM_DEFAULTED_FIELDS:
            assert getattr(config, name, None) is not None, name
        assert "rope_theta" in config.rope_parameters
        assert config.head_dim == ours.head_dim  # explicit in the converted file, not re-derived
    raw = json.loads((tmp_path / "h1" / "config.json").read_text())
    assert raw["head_dim"] == ours.head_dim and raw["rope_theta"] == ours.rope_parameters["rope_theta"]


def test_problems_name_the_field():
    base = {name: 1 for name in VLLM_REQUIRED_FIELDS + VLLM_DEFAULTED_FIELDS}
    base.update(hidden_act="silu", mlp_multipliers=[1.0, 1.0], ssm_multipliers=[1.0] * 5,
                rope_parameters={"rope_type": "default", "rope_theta": 1e11})  # fmt: skip
    assert vllm_config_problems(base) == ([], [])
    errors, _ = vllm_config_problems({k: v for k, v in base.items() if k != "head_dim"})
    assert any("'head_dim'" in e for e in errors)
    errors, _ = vllm_config_problems({**base, "attention_bias": True, "mamba_d_head": "auto"})
    assert any("attention_bias" in e for e in errors) and any("mamba_d_head" in e for e in errors)
    _, warnings = vllm_config_problems({**base, "mamba_rms_norm": True, "mamba_norm_before_gate": True})
    assert any("norm_before_gate" in w for w in warnings)
    _, warnings = vllm_config_problems({**base, "time_step_limit": [0.0, {"__float__": "Infinity"}]})
    assert warnings == []
    _, warnings = vllm_config_problems({**base, "time_step_limit": [0.001, 0.1]})
    assert any("time_step_limit" in w for w in warnings)
