"""Answer extraction and math-verify grading, free of package imports.

This file is imported by `falcon_h1r.eval.math_grading` (and `falcon_h1r.eval.answers`) and is also run as a
script (`python -I _math_core.py`) to serve grading requests from threads other than the main one (see
`falcon_h1r.eval.math_grading`). Keep it free of `falcon_h1r` imports: the worker must start without importing
torch/transformers.
"""

from __future__ import annotations

import json
import logging
import math
import sys

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_BOXED_COMMANDS = ("\\boxed", "\\fbox")


def strip_thinking(text: str) -> str:
    """The answer part of a reasoning response (surrounding whitespace stripped).

    Everything up to and including the last `</think>` is dropped. A `<think>` that is opened and never
    closed means the response ran out of budget inside its reasoning: there is no answer, so "" is returned.
    Text without think tags is returned as is.
    """
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1].strip()
    if THINK_OPEN in text:
        return ""
    return text.strip()


def _balanced_group(text: str, start: int) -> str | None:
    """Contents of the `{...}` group opening at `text[start]`, nested braces included; None if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        escaped = i > 0 and text[i - 1] == "\\"  # \{ and \} are literal braces, not groups
        if ch == "{" and not escaped:
            depth += 1
        elif ch == "}" and not escaped:
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """Contents of the last complete `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed 5`) in `text`."""
    positions = sorted(
        (i for cmd in _BOXED_COMMANDS for i in _find_all(text, cmd)),
        reverse=True,
    )
    for pos in positions:
        cmd = next(c for c in _BOXED_COMMANDS if text.startswith(c, pos))
        j = pos + len(cmd)
        if j < len(text) and text[j] == "{":
            inner = _balanced_group(text, j)
            if inner is not None:
                return inner.strip()
        elif j < len(text) and text[j] == " ":  # "\boxed 5": the next whitespace-free token
            token = text[j + 1 :].split(maxsplit=1)
            if token:
                return token[0].rstrip("$.,;")
    return None


def _find_all(text: str, sub: str) -> list[int]:
    out, i = [], text.find(sub)
    while i != -1:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


def extract_boxed_answer(response: str) -> str | None:
    """The last `\\boxed{...}` of the response's answer part (thinking stripped), or None."""
    return last_boxed(strip_thinking(response))


# --------------------------------------------------------------------------- math-verify
def _timeout_arg(timeout: float | None) -> int | None:
    """math-verify takes whole seconds; None disables its SIGALRM-based limit."""
    return None if timeout is None else max(1, math.ceil(timeout))


def _parse_answer(answer: str, timeout: float | None):
    """Parse a bare answer ("1/2", "\\frac{1}{2}", "0.5", "$x=3$", "\\boxed{7}") with math-verify."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    answer = answer.strip()
    if not answer:
        return []
    t = _timeout_arg(timeout)
    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    has_delims = "$" in answer or "\\boxed" in answer or "\\(" in answer or "\\[" in answer
    parsed = parse(answer if has_delims else f"${answer}$", configs, parsing_timeout=t)
    if not parsed and not has_delims:
        parsed = parse(answer, configs, parsing_timeout=t)
    return parsed


def _parse_response(answer_part: str, timeout: float | None):
    """Parse a response's answer part: its last \\boxed{} if any, else math-verify's own extraction."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    boxed = last_boxed(answer_part)
    if boxed is not None:
        return _parse_answer(boxed, timeout)
    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse(answer_part, configs, parsing_timeout=_timeout_arg(timeout))


def _verify(gold, pred, timeout: float | None) -> bool:
    from math_verify import verify

    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=_timeout_arg(timeout)))


def equivalent_impl(a: str, b: str, timeout: float | None) -> bool:
    """math-verify equivalence of two bare answers, `a` taken as the reference."""
    if a.strip() == b.strip() and a.strip():
        return True
    return _verify(_parse_answer(a, timeout), _parse_answer(b, timeout), timeout)


def is_correct_impl(response: str, gold: str, timeout: float | None) -> bool:
    answer_part = strip_thinking(response)
    if not answer_part:
        return False
    return _verify(_parse_answer(gold, timeout), _parse_response(answer_part, timeout), timeout)


OPS = {"is_correct": is_correct_impl, "equivalent": equivalent_impl}


def serve(stdin=None, stdout=None) -> None:
    """Worker loop: one JSON request per line -> one JSON reply per line. Runs on its main thread, so
    math-verify's SIGALRM timeouts work here."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401  (paid before "ready": the caller's timeout covers grading only)

    stdout.write(json.dumps({"ready": True}) + "\n")
    stdout.flush()
    for line in stdin:
        try:
            req = json.loads(line)
            value = bool(OPS[req["op"]](*req["args"], req.get("timeout")))
            reply = {"value": value}
        except Exception as exc:  # never let one bad input kill the worker
            reply = {"value": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve()
