"""What our vLLM plugin registers for `FalconH1RForCausalLM`: vLLM's own Falcon-H1, refusing a checkpoint it would
serve wrongly. vLLM implements one gate order (`mamba_norm_before_gate: false`, the published Falcon-H1 family's) and
no `time_step_limit`; a checkpoint with another setting would load and answer, with tokens that differ from
transformers' from the first few on. Imported by vLLM (in each of its processes) only when it builds such a model.
"""

from __future__ import annotations

import os

from vllm.model_executor.models.falcon_h1 import FalconH1ForCausalLM

from falcon_h1r.model_card.vllm_plugin import vllm_config_problems

ALLOW_ENV = "FALCON_H1R_VLLM_ALLOW_MISMATCH"


def refuse_unfaithful(hf_config) -> None:
    errors, mismatches = vllm_config_problems(hf_config)
    if os.environ.get(ALLOW_ENV) == "1":
        mismatches = []
    if errors or mismatches:
        raise ValueError(
            "falcon-h1r: vLLM cannot serve this checkpoint faithfully: "
            + "; ".join(errors + mismatches)
            + ". Fix: serve it with transformers (`falcon-h1r deepconf --backend transformers`), or train/convert a "
            f"checkpoint with mamba_norm_before_gate=false and no time_step_limit ({ALLOW_ENV}=1 serves it anyway)."
        )


class FalconH1RForCausalLM(FalconH1ForCausalLM):
    @classmethod
    def get_mamba_state_shape_from_config(cls, vllm_config):  # the first thing vLLM asks, in the main process
        refuse_unfaithful(vllm_config.model_config.hf_config)
        return super().get_mamba_state_shape_from_config(vllm_config)

    def __init__(self, *, vllm_config, prefix: str = ""):
        refuse_unfaithful(vllm_config.model_config.hf_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
