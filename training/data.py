"""Datasets in TRL's conversational formats, with the Falcon-H1R `<think>` structure.

- SFT rows: ``{"messages": [..., {"role": "assistant", "content": "<think>\\n...\\n</think>\\n\\nanswer"}]}``
  (conversational language modeling: works with ``assistant_only_loss=True`` and our chat template, which puts
  the loss on the last assistant turn only).
- GRPO rows: ``{"prompt": [{"role": "user", ...}], "answer": "gold"}`` for math, or with ``tests`` (and
  optionally ``func_name``) for code; extra columns reach the reward functions as keyword arguments.

`load_sft_dataset` / `load_grpo_dataset` accept ``synthetic`` (the embedded model's arithmetic task, generated
locally) or anything `datasets.load_dataset` accepts, and normalise common column layouts.
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from falcon_h1r.training import synthetic_task

SYNTHETIC = "synthetic"
QUESTION_COLUMNS = ("question", "problem", "prompt", "query", "input")
ANSWER_COLUMNS = ("answer", "solution", "ground_truth", "gold", "final_answer", "target")
REASONING_COLUMNS = ("reasoning", "reasoning_content", "thinking", "think", "cot")
RESPONSE_COLUMNS = ("response", "completion", "output", "generation")


def think_completion(reasoning: str, answer: str) -> str:
    """The assistant text: reasoning inside <think>, then the final answer."""
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer.strip()}"


def boxed(answer: str) -> str:
    return "\\boxed{" + answer + "}"


def sft_row(question: str, reasoning: str, answer: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": "user", "content": question},
        {"role": "assistant", "content": think_completion(reasoning, answer)},
    ]
    return {"messages": messages}


def grpo_row(question: str, gold: str, system: str | None = None) -> dict:
    prompt = [{"role": "system", "content": system}] if system else []
    return {"prompt": prompt + [{"role": "user", "content": question}], "answer": gold}


def synthetic_sft(split: str, n: int, seed: int | None = None) -> Dataset:
    rows = [
        sft_row(p["question"], p["reasoning"], boxed(p["trace_answer"]))
        for p in synthetic_task.problems(split, n, seed)
    ]
    return Dataset.from_list(rows)


def synthetic_grpo(split: str, n: int, seed: int | None = None) -> Dataset:
    rows = [
        {**grpo_row(p["question"], p["answer"]), "n_steps": p["n_steps"]}
        for p in synthetic_task.problems(split, n, seed)
    ]
    return Dataset.from_list(rows)


def _first(row: dict, names: tuple[str, ...]) -> Any:
    for name in names:
        if row.get(name) not in (None, ""):
            return row[name]
    return None


def to_sft_messages(row: dict) -> dict:
    """One row of a common layout -> {"messages": [...]}; raises naming the columns it needs."""
    if "messages" in row:
        return {"messages": row["messages"]}
    if isinstance(row.get("prompt"), list) and isinstance(row.get("completion"), list):
        return {"messages": row["prompt"] + row["completion"]}
    question = _first(row, QUESTION_COLUMNS)
    response = _first(row, RESPONSE_COLUMNS)
    if question is not None and response is not None:
        reasoning = _first(row, REASONING_COLUMNS)
        content = think_completion(reasoning, response) if reasoning is not None else response
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": content}]}
    reasoning, answer = _first(row, REASONING_COLUMNS), _first(row, ANSWER_COLUMNS)
    if question is not None and reasoning is not None and answer is not None:
        return sft_row(question, reasoning, str(answer))
    raise ValueError(
        f"cannot build SFT messages from columns {sorted(row)}: provide `messages`, or `prompt`+`completion` "
        f"(conversational), or a question column {QUESTION_COLUMNS} with a response column {RESPONSE_COLUMNS} "
        f"or reasoning {REASONING_COLUMNS} + answer {ANSWER_COLUMNS}"
    )


def to_grpo_prompt(row: dict, answer_column: str | None = None) -> dict:
    """One row -> {"prompt": [...], "answer": gold, ...other columns kept for the rewards}."""
    out = {k: v for k, v in row.items() if k not in ("prompt", "messages")}
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        out["prompt"] = prompt
    elif isinstance(row.get("messages"), list):
        out["prompt"] = [m for m in row["messages"] if m["role"] != "assistant"]
    else:
        question = _first(row, QUESTION_COLUMNS)
        if question is None:
            raise ValueError(f"no prompt in columns {sorted(row)}: provide `prompt` or one of {QUESTION_COLUMNS}")
        out["prompt"] = [{"role": "user", "content": question}]
    gold = row.get(answer_column) if answer_column else _first(row, ANSWER_COLUMNS)
    if gold is not None:
        out["answer"] = str(gold)
    elif "tests" not in row:
        raise ValueError(
            f"no gold answer in columns {sorted(row)}: name it with `answer_column`, use one of {ANSWER_COLUMNS}, "
            "or give `tests` for code problems"
        )
    return out


def _load(name: str, config: str | None, split: str, num_examples: int | None) -> Dataset:
    """A Hub / local dataset split, cut to its first `num_examples` rows when given."""
    from datasets import load_dataset

    ds = load_dataset(name, config, split=split)
    return ds if num_examples is None else ds.select(range(min(num_examples, len(ds))))


def _require_rows(ds: Dataset, name: str, split: str) -> Dataset:
    if len(ds) == 0:
        raise ValueError(f"dataset {name!r} split {split!r} is empty; check the name, split and size")
    return ds


def load_sft_dataset(
    name: str, split: str = "train", config: str | None = None, num_examples: int | None = None, seed: int | None = None
) -> Dataset:
    if name == SYNTHETIC:
        return _require_rows(synthetic_sft(split, num_examples or 10_000, seed), name, split)
    ds = _load(name, config, split, num_examples)
    if "messages" not in ds.column_names:
        ds = ds.map(to_sft_messages, remove_columns=ds.column_names)
    return _require_rows(ds, name, split)


def load_grpo_dataset(
    name: str,
    split: str = "train",
    config: str | None = None,
    num_examples: int | None = None,
    seed: int | None = None,
    answer_column: str | None = None,
) -> Dataset:
    if name == SYNTHETIC:
        return _require_rows(synthetic_grpo(split, num_examples or 2_000, seed), name, split)
    ds = _load(name, config, split, num_examples)
    ds = ds.map(
        lambda row: to_grpo_prompt(row, answer_column),
        remove_columns=["messages"] if "messages" in ds.column_names else None,
    )
    return _require_rows(ds, name, split)
