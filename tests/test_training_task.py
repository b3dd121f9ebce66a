"""The synthetic task, the tokenizer + chat template, and the dataset formatting (fast, no training)."""

from __future__ import annotations

import re

import pytest
from transformers import AutoTokenizer
from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

import falcon_h1r
from falcon_h1r.training import data, synthetic_task
from falcon_h1r.training.tokenizer import build_tokenizer

STEP = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)\.$")


def test_problems_are_correct_deterministic_and_disjoint():
    train = synthetic_task.problems("train", 3000)
    evaluation = synthetic_task.problems("eval", 500)
    assert train == synthetic_task.problems("train", 3000)
    assert {p["question"] for p in train}.isdisjoint(p["question"] for p in evaluation)
    # another seed of train still never produces an eval question (hash partition)
    other = synthetic_task.problems("train", 3000, seed=99)
    assert {p["question"] for p in other}.isdisjoint(p["question"] for p in evaluation)
    for p in train[:1000] + evaluation:
        assert int(p["answer"]) == synthetic_task.evaluate_expression(p["question"]) >= 0
        steps = p["reasoning"].split(" ")
        assert p["n_steps"] == len(re.findall(r"[+\-*]", p["question"]))
        for step in steps:  # every written step is true arithmetic, and the chain ends on its trace answer
            a, op, b, c = STEP.match(step).groups()
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == int(c) >= 0
        assert steps[-1].endswith(f"={p['trace_answer']}.")
        stopped_short = len(steps) == p["n_steps"] - 1
        assert stopped_short or (len(steps) == p["n_steps"] and p["trace_answer"] == p["answer"])
        assert not stopped_short or p["n_steps"] == 4  # the teacher's habit is on four-step questions only
    assert {p["n_steps"] for p in evaluation} == {2, 3, 4}
    assert 0.25 < sum("*" in p["question"] for p in evaluation) / len(evaluation) < 0.6


def test_teacher_stops_four_step_chains_short_at_its_rate_without_changing_questions(monkeypatch):
    train = synthetic_task.problems("train", 3000)
    four = [p for p in train if p["n_steps"] == 4]
    short = [p for p in four if len(p["reasoning"].split(" ")) == 3]
    assert abs(len(short) / len(four) - synthetic_task.STOP_SHORT_PROB) < 0.06, len(short) / len(four)
    # the habit draws from its own stream: without it, the same questions, answers and (full) chains
    monkeypatch.setattr(synthetic_task, "STOP_SHORT_PROB", 0.0)
    honest = synthetic_task.problems("train", 3000)
    assert [(p["question"], p["answer"]) for p in train] == [(q["question"], q["answer"]) for q in honest]
    assert all(q["trace_answer"] == q["answer"] for q in honest)
    honest_chain = {q["question"]: q["reasoning"] for q in honest}
    assert all(honest_chain[p["question"]].startswith(p["reasoning"] + " ") for p in short)
    assert synthetic_task.stop_one_step_short("1+2=3. 3*4=12. 12-5=7.") == ("1+2=3. 3*4=12.", 12)


def test_reasoning_paths_vary_for_commuting_steps():
    p = [q for q in synthetic_task.problems("train", 500) if q["n_steps"] == 4 and "*" not in q["question"]][0]
    # recover start/ops from the question and draw several chains: more than one valid order appears
    import random

    start, ops = int(re.match(r"\d+", p["question"]).group()), re.findall(r"([+\-])(\d+)", p["question"])
    ops = [(k, int(x)) for k, x in ops]
    chains = {synthetic_task.solve(start, ops, random.Random(s))[0] for s in range(30)}
    assert len(chains) > 1
    assert {synthetic_task.solve(start, ops, random.Random(s))[1] for s in range(30)} == {int(p["answer"])}


def test_bad_split_and_size():
    with pytest.raises(ValueError, match="unknown split"):
        synthetic_task.problems("test", 3)
    with pytest.raises(ValueError, match="n must be"):
        synthetic_task.problems("train", -1)


def test_tokenizer_is_lossless_and_template_marks_last_assistant_turn():
    tok = build_tokenizer()
    text = "héllo ∑ π 😀 \\boxed{12} <think>a</think>\r\n\tsystems"
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text  # <think>/\boxed{ are not special
    assert has_generation_markers(tok.chat_template) and is_chat_template_stop_token_trained(tok)

    messages = [
        {"role": "user", "content": "1+2"},
        {"role": "assistant", "content": "<think>\n1+2=3.\n</think>\n\n\\boxed{3}"},
        {"role": "user", "content": "3*4"},
        {"role": "assistant", "content": "\\boxed{12}", "reasoning_content": "3*4=12."},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False)
    assert rendered.startswith(
        "<|im_start|>system\nYou are Falcon. Reason inside <think></think>, then answer.<|im_end|>\n"
    )
    assert "<think>\n1+2=3.\n</think>" in rendered  # earlier turns keep their thinking
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    trained = tok.decode([i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m])
    assert trained == "<think>\n3*4=12.\n</think>\n\n\\boxed{12}<|im_end|>"  # loss on the last turn only

    custom = tok.apply_chat_template([{"role": "system", "content": "S"}, *messages[:1]], tokenize=False)
    assert custom.startswith("<|im_start|>system\nS<|im_end|>\n") and "Falcon" not in custom
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\n1+2<|im_end|>\n<|im_start|>assistant\n")


def test_embedded_checkpoint_carries_this_tokenizer():
    shipped = AutoTokenizer.from_pretrained(falcon_h1r.tiny_model_path())
    fresh = build_tokenizer()
    assert shipped.get_vocab() == fresh.get_vocab()
    assert shipped.chat_template == fresh.chat_template
    assert shipped.eos_token == "<|im_end|>" and shipped.pad_token == "<|pad|>"


def test_dataset_formatting():
    row = data.synthetic_sft("train", 2)[0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert re.fullmatch(r"<think>\n.+\n</think>\n\n\\boxed\{\d+\}", row["messages"][1]["content"], re.S)
    grpo = data.synthetic_grpo("eval", 2)[0]
    assert grpo["prompt"][0]["role"] == "user" and grpo["answer"].isdigit()

    assert data.to_sft_messages({"problem": "q", "reasoning": "r", "answer": "4"})["messages"][1]["content"] == (
        "<think>\nr\n</think>\n\n4"
    )
    assert data.to_sft_messages({"question": "q", "response": "final"})["messages"][1]["content"] == "final"
    conv = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}
    assert len(data.to_sft_messages(conv)["messages"]) == 2
    with pytest.raises(ValueError, match="cannot build SFT messages"):
        data.to_sft_messages({"text": "x"})
    assert data.to_grpo_prompt({"problem": "q", "solution": "7"})["answer"] == "7"
    assert data.to_grpo_prompt({"prompt": "q", "gold_value": 3}, answer_column="gold_value")["answer"] == "3"
    with pytest.raises(ValueError, match="no gold answer"):
        data.to_grpo_prompt({"problem": "q"})
