"""falcon_h1r.eval: lm-eval tasks, math grading and the LiveCodeBench judge.

    tasks_dir()                     the directory to pass to `lm_eval --include_path`
    falcon_h1r.eval.math            strip_thinking, extract_boxed_answer, equivalent, is_correct
    falcon_h1r.eval.livecodebench   grade, grade_many, load_problems, build_prompt, extract_code
    falcon_h1r.eval.sandbox         Sandbox, SandboxLimits: isolated execution of untrusted programs
    falcon_h1r.eval.cli             `falcon-h1r eval`

See README.md beside this file for the tasks, their protocol and the sandbox's limits.
"""

from pathlib import Path


def tasks_dir() -> Path:
    """The directory to pass to `lm_eval --include_path`."""
    return Path(__file__).resolve().parent / "tasks"
