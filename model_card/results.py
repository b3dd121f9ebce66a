"""Read lm-evaluation-harness results JSON (what `lm_eval --output_path` / `falcon-h1r eval` write).

Layout (lm_eval.result_schema.EvalResults): `results[task]["<metric>,<filter>"]` = value, with
`"<metric>_stderr,<filter>"` beside it; `configs[task]` holds the task YAML as run (dataset, split,
`generation_kwargs` with temperature / top_p / max_gen_toks, `repeats` = samples per problem);
`n-samples[task]["effective"]` = problems evaluated; `n-shot[task]` = few-shot examples.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NOT_METRICS = {"alias", "name", "sample_len", "sample_count", "samples"}


@dataclass(frozen=True)
class MetricResult:
    """One metric of one task, with the protocol it was measured under."""

    task: str
    alias: str
    metric: str
    filter: str
    value: float
    stderr: float | None
    dataset_path: str | None = None
    dataset_name: str | None = None
    split: str | None = None
    problems: int | None = None  # documents evaluated
    problems_total: int | None = None  # documents in the split (more than `problems` when run with --limit)
    repeats: int | None = None  # samples per problem (avg@k / pass@1 over k)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    do_sample: bool | None = None
    num_fewshot: int | None = None

    def protocol(self) -> dict[str, Any]:
        """The non-empty protocol fields, keyed as in the card's evaluation table and model-index args."""
        fields = {
            "problems": self.problems,
            "problems_total": self.problems_total if self.problems_total != self.problems else None,
            "samples_per_problem": self.repeats,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_tokens,
            "do_sample": self.do_sample,
            "num_fewshot": self.num_fewshot,
        }
        return {k: v for k, v in fields.items() if v is not None}


def find_results_file(path: str | Path) -> Path:
    """A results JSON itself, or the newest `results_*.json` below a folder (lm_eval's --output_path)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(path.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
        raise FileNotFoundError(f"{path}: no results_*.json inside; pass the file written by lm_eval --output_path")
    raise FileNotFoundError(f"{path}: no such results file or folder")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def parse_results(data: dict[str, Any]) -> list[MetricResult]:
    """Flatten an lm-eval results dict into MetricResults (stderr attached, protocol from the task config)."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ValueError(
            "not an lm-eval results JSON (no 'results' mapping); pass the results_*.json written by "
            "`lm_eval --output_path ...` or `falcon-h1r eval`"
        )
    configs, n_samples, n_shot = data.get("configs", {}), data.get("n-samples", {}), data.get("n-shot", {})
    run_gen = data.get("config", {}).get("gen_kwargs") if isinstance(data.get("config"), dict) else None
    run_gen = run_gen if isinstance(run_gen, dict) else {}
    out: list[MetricResult] = []
    for task, metrics in data["results"].items():
        if not isinstance(metrics, dict):
            continue
        cfg = configs.get(task, {}) or {}
        gen = {**run_gen, **(cfg.get("generation_kwargs") or {})}
        samples = n_samples.get(task, {}) if isinstance(n_samples.get(task), dict) else {}
        for key, value in metrics.items():
            metric, _, filt = key.partition(",")
            if metric in _NOT_METRICS or metric.endswith("_stderr") or _number(value) is None:
                continue
            stderr = _number(metrics.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr"))
            out.append(
                MetricResult(
                    task=task,
                    alias=str(metrics.get("alias", task)).strip(" -") or task,
                    metric=metric,
                    filter=filt or "none",
                    value=float(value),
                    stderr=stderr,
                    dataset_path=cfg.get("dataset_path"),
                    dataset_name=cfg.get("dataset_name"),
                    split=cfg.get("test_split"),
                    problems=samples.get("effective"),
                    problems_total=samples.get("original"),
                    repeats=cfg.get("repeats"),
                    temperature=_number(gen.get("temperature")),
                    top_p=_number(gen.get("top_p")),
                    max_tokens=gen.get("max_gen_toks", gen.get("max_new_tokens")),
                    do_sample=gen.get("do_sample"),
                    num_fewshot=n_shot.get(task, cfg.get("num_fewshot")),
                )
            )
    return out


def load_results(path: str | Path) -> list[MetricResult]:
    file = find_results_file(path)
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON ({exc})") from exc
    return parse_results(data)
