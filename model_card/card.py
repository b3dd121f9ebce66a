"""Render a model card (README.md) for a checkpoint with huggingface_hub's ModelCard / ModelCardData.

Everything on the card is read from the checkpoint folder (config.json, safetensors headers, recipe YAML,
trainer_state.json, an existing README's metadata) and, optionally, an lm-eval results JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from falcon_h1r.model_card.checkpoint import load_config, parameter_summary, remote_code, rewrite_config
from falcon_h1r.model_card.results import MetricResult, find_results_file, load_results
from falcon_h1r.model_card.safetensors_io import list_checkpoint_tensors
from falcon_h1r.model_card.snippets import RECOMMENDED_SAMPLING, render_snippets
from falcon_h1r.model_card.vllm_plugin import vllm_config_problems

TEMPLATE = Path(__file__).with_name("card_template.md.jinja")
RECIPE_NAMES = ("recipe.yaml", "recipe.yml", "training_recipe.yaml", "training_config.yaml")
DEFAULT_TAGS = ["falcon-h1", "falcon-h1r", "hybrid", "mamba2", "reasoning", "custom_code"]
FALCON_LICENSE = {
    "license": "other",
    "license_name": "falcon-llm-license",
    "license_link": "https://falconllm.tii.ae/falcon-terms-and-conditions.html",
}
TINY_PARAMS = 100_000_000  # below this the card says it is a test-size model


@dataclass
class CardOptions:
    """Metadata the checkpoint cannot tell; None = infer (existing README metadata, recipe, defaults)."""

    repo_id: str | None = None
    license: str | None = None
    base_model: str | None = None
    datasets: list[str] | None = None
    languages: list[str] | None = None
    extra_tags: list[str] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict) and "__float__" in value:  # transformers' JSON encoding of inf/nan
        return str(value["__float__"])
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def architecture_rows(cfg: dict[str, Any], n_params: int, dtypes: list[str]) -> list[tuple[str, str]]:
    g = cfg.get
    heads, kv = g("num_attention_heads"), g("num_key_value_heads")
    head_dim = g("head_dim") or (g("hidden_size") // heads if heads else None)
    rope = g("rope_parameters") or {}
    norm = "none (y * silu(z))"
    if g("mamba_rms_norm"):
        norm = "gated RMSNorm, " + ("norm then gate" if g("mamba_norm_before_gate") else "gate then norm")
    rows = [
        ("parameters", f"{n_params:,} ({n_params / 1e9:.3g}B)" if n_params >= 1e8 else f"{n_params:,}"),
        ("weights dtype", ", ".join(dtypes)),
        ("decoder layers (all hybrid)", g("num_hidden_layers")),
        ("hidden size", g("hidden_size")),
        ("attention heads (query / key-value)", f"{heads} / {kv}"),
        ("attention head dim", head_dim),
        ("RoPE theta", rope.get("rope_theta", g("rope_theta"))),
        ("max position embeddings", g("max_position_embeddings")),
        ("MLP intermediate size (SwiGLU)", g("intermediate_size")),
        ("vocabulary", f"{g('vocab_size')} ({'tied' if g('tie_word_embeddings') else 'untied'} embeddings)"),
        ("Mamba-2 inner size (d_ssm)", g("mamba_d_ssm")),
        ("Mamba-2 heads x head dim", f"{g('mamba_n_heads')} x {g('mamba_d_head')}"),
        ("Mamba-2 state size / groups", f"{g('mamba_d_state')} / {g('mamba_n_groups')}"),
        ("Mamba-2 conv kernel / chunk size", f"{g('mamba_d_conv')} / {g('mamba_chunk_size')}"),
        ("Mamba-2 output norm", norm),
        ("dt clamp (time_step_limit)", g("time_step_limit")),
        ("embedding / lm_head multipliers", f"{_fmt(g('embedding_multiplier'))} / {_fmt(g('lm_head_multiplier'))}"),
        (
            "attention in / out / key multipliers",
            f"{_fmt(g('attention_in_multiplier'))} / {_fmt(g('attention_out_multiplier'))} / {_fmt(g('key_multiplier'))}",
        ),
        ("SSM in / out multipliers", f"{_fmt(g('ssm_in_multiplier'))} / {_fmt(g('ssm_out_multiplier'))}"),
        ("SSM multipliers [z, x, B, C, dt]", g("ssm_multipliers")),
        ("MLP multipliers [gate, down]", g("mlp_multipliers")),
    ]
    return [(name, _fmt(value)) for name, value in rows]


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [row for k, v in data.items() for row in _flatten(v, f"{prefix}{k}.")]
    if isinstance(data, list) and all(not isinstance(v, (dict, list)) for v in data):
        return [(prefix[:-1], _fmt(data))]
    if isinstance(data, (dict, list)):
        return []
    return [(prefix[:-1], _fmt(data))]


def training_summary(folder: Path) -> tuple[list[tuple[str, str]], list[str], dict[str, Any]]:
    """(rows, source files, raw recipe) from the recipe YAML and trainer_state.json saved with the run."""
    rows: list[tuple[str, str]] = []
    sources: list[str] = []
    recipe: dict[str, Any] = {}
    candidates = [folder / n for n in RECIPE_NAMES if (folder / n).is_file()]
    candidates = candidates or sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    for path in candidates[:1]:
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(loaded, dict):
            recipe = loaded
            rows += _flatten(loaded)
            sources.append(path.name)
    state_path = folder / "trainer_state.json"
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except json.JSONDecodeError:
            state = {}
        losses = [e["loss"] for e in state.get("log_history", []) if isinstance(e.get("loss"), (int, float))]
        facts = [
            ("optimizer steps", state.get("global_step")),
            ("epochs", state.get("epoch")),
            ("train batch size per device", state.get("train_batch_size")),
            ("final logged training loss", losses[-1] if losses else None),
        ]
        rows += [(k, _fmt(v)) for k, v in facts if v is not None]
        sources.append(state_path.name)
    return rows, sources, recipe


def _existing_metadata(folder: Path) -> dict[str, Any]:
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    try:
        return ModelCard.load(readme).data.to_dict()
    except Exception:  # a README without valid YAML metadata: nothing to inherit
        return {}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _hub_ids(values: list[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str) and v.count("/") == 1 and not Path(v).exists()]


def eval_results_for_index(results: list[MetricResult]) -> list[EvalResult]:
    out = []
    for r in results:
        dataset_type = r.dataset_path if r.dataset_path and r.dataset_path.count("/") == 1 else r.task
        out.append(
            EvalResult(
                task_type="text-generation",
                task_name="Text Generation",
                dataset_type=dataset_type,
                dataset_name=r.alias,
                dataset_config=r.dataset_name,
                dataset_split=r.split,
                metric_type=r.metric,
                metric_name=r.metric if r.filter == "none" else f"{r.metric} ({r.filter})",
                metric_value=r.value,
                metric_args=r.protocol() or None,
                source_name="lm-evaluation-harness",
                source_url="https://github.com/EleutherAI/lm-evaluation-harness",
            )
        )
    return out


def _eval_rows(results: list[MetricResult]) -> list[dict[str, str]]:
    def show(value: Any) -> str:
        return "–" if value is None else _fmt(value)

    return [
        {
            "task": r.alias,
            "metric": r.metric if r.filter == "none" else f"{r.metric} ({r.filter})",
            "value": f"{r.value:.4f}",
            "stderr": "–" if r.stderr is None else f"{r.stderr:.4f}",
            "problems": show(r.problems)
            + (f" of {r.problems_total}" if r.problems_total not in (None, r.problems) else ""),
            "samples": show(r.repeats),
            "temperature": show(r.temperature),
            "top_p": show(r.top_p),
            "max_tokens": show(r.max_tokens),
            "fewshot": show(r.num_fewshot),
        }
        for r in results
    ]


def build_card(
    checkpoint: str | Path, results: str | Path | list[MetricResult] | None = None, options: CardOptions | None = None
) -> ModelCard:
    """The model card of `checkpoint` (optionally with lm-eval results) as a huggingface_hub ModelCard."""
    folder = Path(checkpoint)
    options = options or CardOptions()
    cfg = load_config(folder)
    entries, _ = list_checkpoint_tensors(folder)
    n_params, dtypes = parameter_summary(entries)
    training_rows, training_sources, recipe = training_summary(folder)
    existing = _existing_metadata(folder)

    eval_source = None
    if results is None:
        metric_results: list[MetricResult] = []
    elif isinstance(results, list):
        metric_results = results
    else:
        eval_source = find_results_file(results).name
        metric_results = load_results(results)

    base_model = options.base_model or existing.get("base_model")
    if base_model is None:
        base_model = next(iter(_hub_ids([recipe.get("model_name_or_path")])), None)
    datasets = options.datasets or _as_list(existing.get("datasets"))
    if not datasets:
        datasets = _hub_ids(_as_list(recipe.get("dataset_name")) + _as_list(recipe.get("datasets")))
    license_fields: dict[str, Any] = {"license": options.license or existing.get("license")}
    if license_fields["license"] is None:
        falcon_base = any(b.startswith("tiiuae/") for b in _as_list(base_model))
        license_fields = dict(FALCON_LICENSE) if falcon_base else {"license": "apache-2.0"}
    elif license_fields["license"] == "other":
        license_fields.update({k: existing.get(k) for k in ("license_name", "license_link") if existing.get(k)})

    repo_id = options.repo_id or f"your-org/{folder.resolve().name}"
    model_name = repo_id.split("/")[-1]
    tags = list(dict.fromkeys(DEFAULT_TAGS + _as_list(existing.get("tags")) + list(options.extra_tags)))
    card_data = ModelCardData(
        language=options.languages or _as_list(existing.get("language")) or ["en"],
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=tags,
        base_model=base_model,
        datasets=datasets or None,
        model_name=model_name if metric_results else None,  # only the model-index uses it
        eval_results=eval_results_for_index(metric_results) or None,
        **license_fields,
    )
    vllm_errors, vllm_warnings = vllm_config_problems(rewrite_config(cfg, "falcon_h1r"))  # the config we stage
    limitations = [
        "A reasoning model thinks at length before answering; budget many tokens per answer and expect long "
        "latencies on hard problems. It can still reach confident wrong answers: verify important results.",
        "Scores depend on the sampling protocol in the evaluation table (samples per problem, temperature, "
        "token budget); they are not comparable with greedy decoding or different budgets.",
        "Loading needs `trust_remote_code=True` (or the `falcon-h1r` package). On GPU, install the Mamba-2 "
        'kernels (`pip install "falcon-h1r[cuda]"`) for speed; without them a pure-PyTorch scan runs.',
    ]
    if n_params < TINY_PARAMS:
        limitations.insert(
            0,
            f"This is a test-size model ({n_params:,} parameters) trained for the falcon-h1r package's own "
            "tests and demos; it is not a useful assistant.",
        )
    subset = sorted({r.alias for r in metric_results if r.problems_total not in (None, r.problems)})
    if subset:
        limitations.append(
            f"Evaluated on a subset of the problems (lm-eval --limit) for: {', '.join(subset)}; "
            "those scores are not comparable with full-benchmark numbers."
        )
    if base_model:
        limitations.append(f"It inherits the biases, data limitations and license terms of {base_model}.")
    summary = (
        f"A Falcon-H1R causal language model: {cfg.get('num_hidden_layers')} parallel-hybrid layers "
        f"(attention and Mamba-2 side by side), {n_params:,} parameters, answering in a `<think>` ... `</think>` "
        "reasoning block followed by the final answer (ChatML chat template)."
    )
    if base_model:
        summary += f" Fine-tuned from [{base_model}](https://huggingface.co/{base_model})."
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        summary=summary,
        remote_files=[p.name for p in remote_code()[0]],
        arch_rows=architecture_rows(cfg, n_params, dtypes),
        training_rows=training_rows,
        training_sources=training_sources,
        recipe_names=[f"`{n}`" for n in RECIPE_NAMES],
        eval_rows=_eval_rows(metric_results),
        eval_source=eval_source,
        vllm_warnings=vllm_errors + vllm_warnings,
        limitations=limitations,
        temperature=RECOMMENDED_SAMPLING["temperature"],
        top_p=RECOMMENDED_SAMPLING["top_p"],
        **render_snippets(repo_id),
    )


def render_card(
    checkpoint: str | Path, results: str | Path | list[MetricResult] | None = None, options: CardOptions | None = None
) -> str:
    return str(build_card(checkpoint, results, options))
