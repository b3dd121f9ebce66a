"""falcon_h1r.eval: lm-eval tasks, math grading and the LiveCodeBench judge."""

from pathlib import Path


def tasks_dir() -> Path:
    """The directory to pass to `lm_eval --include_path`."""
    return Path(__file__).resolve().parent / "tasks"
