"""Reasoning settings for lm-eval's own generative tasks (gsm8k, hendrycks_math, bbh, mmlu_pro, ...).

lm-eval's stock tasks stop generation at strings such as "Question:" or "\\n\\n" and score the raw text,
which cuts a reasoning model off inside its `<think>` block and scores its scratch work. `apply_reasoning`
changes a loaded task in place: sampling at the protocol's temperature/top_p, no stop sequence but the
end of turn (`until: []`), a long generation budget, and `strip_thinking` as the first step of every filter
pipeline, so lm-eval's own extraction and metrics see only the final answer. The raw responses stay in the
logged samples. `falcon-h1r eval` applies it to every generative task that is not one of ours.
"""

from __future__ import annotations

from lm_eval.api.filter import Filter

from falcon_h1r import RECOMMENDED_SAMPLING
from falcon_h1r.eval.answers import strip_thinking

PROTOCOL_TEMPERATURE = RECOMMENDED_SAMPLING["temperature"]
PROTOCOL_TOP_P = RECOMMENDED_SAMPLING["top_p"]
DEFAULT_MAX_GEN_TOKS = 32768


class StripThinkingFilter(Filter):
    """Replace each response by its answer part (everything after the last `</think>`)."""

    def apply(self, resps, docs):
        return [[strip_thinking(r) for r in group] for group in resps]


def is_ours(task) -> bool:
    return str(task.config.task).startswith("falcon_h1r_")


def apply_reasoning(
    task,
    *,
    max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
    temperature: float = PROTOCOL_TEMPERATURE,
    top_p: float = PROTOCOL_TOP_P,
) -> bool:
    """Give a loaded lm-eval generative task reasoning settings; False (unchanged) for other output types."""
    if task.get_config("output_type") != "generate_until":
        return False
    task.set_config(
        key="generation_kwargs",
        value={
            "until": [],
            "do_sample": True,
            "temperature": temperature,
            "top_p": top_p,
            "max_gen_toks": max_gen_toks,
        },
        update=True,
    )
    for ensemble in task._filters:  # lm-eval keeps the built filter pipelines here (0.4.x)
        if not ensemble.filters or ensemble.filters[0] is not StripThinkingFilter:
            ensemble.filters.insert(0, StripThinkingFilter)
    return True
