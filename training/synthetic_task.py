"""The synthetic reasoning task that trains the embedded tiny Falcon-H1R.

Multi-step integer arithmetic, e.g. ``(52+91)*9-17+40``, answered with a chain of thought inside ``<think>``
(``52+91=143. 143*9=1287. 1287+40=1327. 1327-17=1310.``) and ``\\boxed{1310}``.

Design choices (they decide what the tiny model can show):
- 2-4 operations; values stay in 0..~1100 (no negatives, products below 1000) so a few-million-parameter
  model gets clearly good but not perfect: multiplications with carries are the hard steps.
- A run of additions/subtractions commutes. The reference reasoning usually goes left to right, but in
  REORDER_PROB of the runs it applies the terms in another valid order (intermediates stay >= 0). The same
  question thus has several correct chains: greedy decoding follows the common one, sampled traces sometimes
  take other paths and make less correlated mistakes, which leaves room for voting and confidence filtering.
  (Always reordering made the chains much harder to learn for a tiny model: it must track used terms.)
- The teacher whose traces SFT imitates has one habit: on four-operation questions it stops one step short in
  STOP_SHORT_PROB of its traces and boxes the value it reached (``trace_answer``; ``answer`` stays the true
  value). SFT on these traces copies the habit, so greedy decoding of the SFT model stops short on those
  questions, while its samples sometimes finish the chain, which a verifier reward can build on. The traces are
  deliberately not filtered against ``answer``; the habit stands in for flaws an answer filter cannot see
  (TRAINING.md). It has its own random stream, so questions and gold answers do not depend on it.
- Splits are disjoint by construction: a question belongs to ``eval`` iff a stable hash of its text falls in
  the eval bucket, so no seed or size can leak eval questions into training. Each split also has its own
  default seed.
"""

from __future__ import annotations

import itertools
import random
import zlib

SPLITS = ("train", "eval")
DEFAULT_SEEDS = {"train": 1234, "eval": 5678}
EVAL_BUCKETS = 10  # one hash bucket in ten belongs to eval
REORDER_PROB = 0.25
STOP_SHORT_PROB = 0.7

Op = tuple[str, int]


def _in_split(question: str, split: str) -> bool:
    is_eval = zlib.crc32(question.encode()) % EVAL_BUCKETS == 0
    return is_eval if split == "eval" else not is_eval


def _sample_ops(rng: random.Random) -> tuple[int, list[Op]]:
    """A start value and 2-4 operations keeping every intermediate value non-negative."""
    n_ops = rng.choice((2, 2, 3, 3, 4))
    value = rng.randint(1, 99)
    start = value
    ops: list[Op] = []
    for i in range(n_ops):
        can_mul = i > 0 and 2 <= value <= 499 and ops[-1][0] != "*"
        kind = rng.choices(("+", "-", "*"), weights=(4, 3, 3 if can_mul else 0))[0]
        if kind == "-" and value < 2:
            kind = "+"
        if kind == "*":
            k = rng.randint(2, min(9, 999 // value))
            ops.append(("*", k))
            value *= k
        elif kind == "-":
            b = rng.randint(1, min(99, value))
            ops.append(("-", b))
            value -= b
        else:
            b = rng.randint(1, 99)
            ops.append(("+", b))
            value += b
    return start, ops


def render_question(start: int, ops: list[Op]) -> str:
    """Left-to-right evaluation written with standard precedence (parentheses where needed)."""
    expr, has_additive = str(start), False
    for kind, x in ops:
        if kind == "*":
            expr = f"({expr})*{x}" if has_additive else f"{expr}*{x}"
            has_additive = False
        else:
            expr += f"{kind}{x}"
            has_additive = True
    return expr


def _segments(start: int, ops: list[Op]) -> list[tuple[str, list[Op]]]:
    """Split the ops into multiplications and commuting runs of +/- terms."""
    segs: list[tuple[str, list[Op]]] = []
    for op in ops:
        if op[0] == "*":
            segs.append(("*", [op]))
        elif segs and segs[-1][0] == "+-":
            segs[-1][1].append(op)
        else:
            segs.append(("+-", [op]))
    return segs


def _valid_orders(value: int, run: list[Op]) -> list[tuple[Op, ...]]:
    """Orders of a +/- run whose intermediate values all stay >= 0 (deduplicated)."""
    orders = []
    for perm in dict.fromkeys(itertools.permutations(run)):
        v, ok = value, True
        for kind, x in perm:
            v = v + x if kind == "+" else v - x
            ok = ok and v >= 0
        if ok:
            orders.append(perm)
    return orders


def solve(start: int, ops: list[Op], rng: random.Random | None = None) -> tuple[str, int]:
    """A chain of thought and the answer; with `rng`, a commuting run sometimes goes in another valid order."""
    value, steps = start, []
    for kind, run in _segments(start, ops):
        order = tuple(run)
        if kind == "+-" and rng is not None and len(run) > 1 and rng.random() < REORDER_PROB:
            order = rng.choice(_valid_orders(value, run))
        for op, x in order:
            new = value * x if op == "*" else value + x if op == "+" else value - x
            steps.append(f"{value}{op}{x}={new}.")
            value = new
    return " ".join(steps), value


def stop_one_step_short(reasoning: str) -> tuple[str, int]:
    """The teacher's habit: the chain without its last step, and the value it then reached."""
    steps = reasoning.split(" ")[:-1]
    return " ".join(steps), int(steps[-1].rsplit("=", 1)[1].rstrip("."))


def problems(split: str, n: int, seed: int | None = None) -> list[dict]:
    """`n` distinct problems of `split` ("train" or "eval"): dicts with question, answer (the true value),
    reasoning (the teacher's chain), trace_answer (the value that chain ends on) and n_steps."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    seed = DEFAULT_SEEDS[split] if seed is None else seed
    rng, habit_rng = random.Random(seed), random.Random(f"teacher-habit-{seed}")
    seen: set[str] = set()
    out: list[dict] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct {split} problems; ask for fewer")
        start, ops = _sample_ops(rng)
        question = render_question(start, ops)
        if question in seen or not _in_split(question, split):
            continue
        seen.add(question)
        reasoning, answer = solve(start, ops, rng)
        trace_answer = answer
        if len(ops) == 4 and habit_rng.random() < STOP_SHORT_PROB:
            reasoning, trace_answer = stop_one_step_short(reasoning)
        out.append(
            {
                "question": question,
                "answer": str(answer),
                "reasoning": reasoning,
                "trace_answer": str(trace_answer),
                "n_steps": len(ops),
            }
        )
    return out


def evaluate_expression(question: str) -> int:
    """Reference value of a question (used by tests to check the generator against Python's arithmetic)."""
    if not set(question) <= set("0123456789+-*()"):
        raise ValueError(f"not a task question: {question!r}")
    return int(eval(question, {"__builtins__": {}}, {}))  # noqa: S307 - charset checked above
