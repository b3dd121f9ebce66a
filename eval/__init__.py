"""falcon_h1r.eval: the graders (answers, math grading, the LiveCodeBench judge) and the lm-eval tasks.

Graders (import nothing of training / inference; the RL rewards and the metrics both use them):
    falcon_h1r.eval.answers         strip_thinking, extract_boxed_answer, AnswerGrouper, tally, majority_index
    falcon_h1r.eval.math_grading    is_correct, equivalent (also importable as `falcon_h1r.eval.math`)
    falcon_h1r.eval.livecodebench   grade, grade_response, grade_many, load_problems, build_prompt, extract_code
    falcon_h1r.eval.sandbox         Sandbox, SandboxLimits: isolated execution of untrusted programs
    falcon_h1r.eval.metrics         pass_at_k, sample_metrics (avg@k, pass@k, maj@k)
lm-eval tasks and the CLI:
    tasks_dir()                     the directory to pass to `lm_eval --include_path`
    falcon_h1r.eval.lm_eval_hooks   the tasks' Python hooks; falcon_h1r.eval.reasoning: lm-eval's stock tasks
    falcon_h1r.eval.cli             `falcon-h1r eval`

See README.md beside this file for the tasks, their protocol and the sandbox's limits.
"""

import sys
from pathlib import Path

from falcon_h1r.eval import math_grading

# The contract's name for the math grader. It is an alias, not a file: a `math.py` here would shadow the standard
# library's `math` for any script run from this folder (the grader's worker is one).
math = math_grading
sys.modules[f"{__name__}.math"] = math_grading


def tasks_dir() -> Path:
    """The directory to pass to `lm_eval --include_path`."""
    return Path(__file__).resolve().parent / "tasks"
