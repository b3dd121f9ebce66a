"""Math answer grading on math-verify: the metric of the math tasks and the reward of math RL.

    strip_thinking(text)            answer part of a reasoning response (`falcon_h1r.eval.answers`)
    extract_boxed_answer(response)  last \\boxed{...} of the answer part, or None
    equivalent(a, b)                math-verify equivalence of two bare answers ("1/2" vs "0.5")
    is_correct(response, gold)      the response's answer (last \\boxed{}, else math-verify's extraction)
                                    is equivalent to `gold`; thinking stripped first

`falcon_h1r.eval.math` is this module under the name the design's contract gives it (an alias registered by
`falcon_h1r.eval`; no file of that name, so nothing in this folder shadows the standard library's `math`).

Threads and processes. math-verify bounds its parsing and comparison time with SIGALRM, which Python only
allows on the main thread of the main interpreter (elsewhere it raises). So:
- on a main thread (the usual case, including the main thread of a worker process) math-verify runs in
  this process with its own time limits (`timeout` seconds per parse / comparison, rounded up); note that
  this arms and then cancels SIGALRM, so it must not be mixed with a caller's own pending `signal.alarm`;
- on any other thread the call is sent to a small pool of grader subprocesses (started on first use,
  reused, at most `FALCON_H1R_MATH_WORKERS`, default 4), which run math-verify on their main thread with
  the same limits; the caller also waits at most `4 * timeout + 5` seconds and, past that, kills the
  worker and returns False. A grading that cannot finish is an incorrect answer, never an exception.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

from falcon_h1r.eval._math_core import (
    equivalent_impl,
    extract_boxed_answer,
    is_correct_impl,
    last_boxed,
    strip_thinking,
)

__all__ = ["equivalent", "extract_boxed_answer", "is_correct", "last_boxed", "strip_thinking"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
_WORKER_STARTUP_TIMEOUT = 120.0


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def is_correct(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True iff the response's final answer is mathematically equivalent to `gold` (math-verify).

    Thinking is stripped first; an unfinished `<think>` is never correct. The answer is the last
    `\\boxed{}` of the answer part, or, with none, what math-verify extracts from it. Safe on any thread.
    """
    if not isinstance(response, str) or not isinstance(gold, str):
        raise TypeError(f"is_correct expects two strings, got {type(response).__name__} and {type(gold).__name__}")
    if _on_main_thread():
        return _run_here(is_correct_impl, response, gold, timeout)
    return _POOL.call("is_correct", [response, gold], timeout)


def equivalent(a: str, b: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True iff two bare answers are mathematically equivalent (`a` is the reference). Safe on any thread."""
    if not isinstance(a, str) or not isinstance(b, str):
        raise TypeError(f"equivalent expects two strings, got {type(a).__name__} and {type(b).__name__}")
    if _on_main_thread():
        return _run_here(equivalent_impl, a, b, timeout)
    return _POOL.call("equivalent", [a, b], timeout)


def _run_here(fn, a: str, b: str, timeout: float) -> bool:
    try:
        return bool(fn(a, b, timeout))
    except Exception as exc:  # math-verify swallows most errors; anything left is an incorrect answer
        logger.debug("math grading failed: %s", exc)
        return False


class _Worker:
    def __init__(self) -> None:
        script = Path(__file__).resolve().with_name("_math_core.py")
        # -I: the worker sees neither this folder (its modules are the package's, not top-level ones) nor PYTHON*
        # variables; it needs only the standard library and math-verify.
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.ready = False

    def request(self, payload: dict, budget: float) -> dict | None:
        """Send one request; None if no reply arrives within `budget` seconds (worker startup not counted)."""
        if not self.ready:
            if self._read_line(time.monotonic() + _WORKER_STARTUP_TIMEOUT) is None:
                return None
            self.ready = True
        deadline = time.monotonic() + budget
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        line = self._read_line(deadline)
        return None if line is None else json.loads(line)

    def _read_line(self, deadline: float) -> str | None:

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                line = self.proc.stdout.readline()
                return line or None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass


class _WorkerPool:
    """Grader subprocesses shared by all non-main threads of this process."""

    def __init__(self) -> None:
        self.max_workers = max(1, int(os.environ.get("FALCON_H1R_MATH_WORKERS", "4")))
        self._idle: list[_Worker] = []
        self._count = 0
        self._cond = threading.Condition()

    def _acquire(self) -> _Worker:
        with self._cond:
            while not self._idle and self._count >= self.max_workers:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return _Worker()
        except Exception:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self._cond:
            if healthy:
                self._idle.append(worker)
            else:
                self._count -= 1
            self._cond.notify()

    def call(self, op: str, args: list[str], timeout: float) -> bool:
        try:
            worker = self._acquire()
        except Exception as exc:
            logger.warning("could not start a math grading worker (%s); answer graded as incorrect", exc)
            return False
        payload = {"op": op, "args": args, "timeout": float(timeout)}
        reply = None
        try:
            reply = worker.request(payload, 4 * float(timeout) + 5)
        finally:
            self._release(worker, healthy=reply is not None and worker.proc.poll() is None)
        if reply is None:
            logger.warning("math grading did not finish in time; answer graded as incorrect")
            return False
        return bool(reply.get("value", False))

    def reset_after_fork(self) -> None:
        """A forked child must not share its parent's worker pipes: it starts its own workers on demand."""
        self._idle = []
        self._count = 0
        self._cond = threading.Condition()

    def shutdown(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.kill()


_POOL = _WorkerPool()
atexit.register(_POOL.shutdown)
os.register_at_fork(after_in_child=_POOL.reset_after_fork)
