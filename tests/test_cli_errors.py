"""Every subcommand answers a wrong path with one line that names the problem and the fix (exit status != 0),
not a traceback."""

from __future__ import annotations

import pytest

from falcon_h1r import cli

BAD_INPUTS = [
    ["generate", "--model", "/nonexistent", "hi"],
    ["deepconf", "--model", "/nonexistent", "1+1"],
    ["deepconf", "--model", "tests", "1+1"],  # a folder without config.json
    ["sft", "--config", "missing.yaml"],
    ["sft"],
    ["grpo", "--config", "missing.yaml"],
    ["eval", "--model", "/nonexistent", "--tasks", "falcon_h1r_arith"],
    ["eval", "--tasks", "no_such_task"],
    ["card", "--model", "/nonexistent"],
    ["publish", "--model", "/nonexistent", "--repo-id", "org/name"],
    ["convert", "/nonexistent", "out"],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=" ".join)
def test_bad_input_is_one_line_with_the_fix(argv: list[str], capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path.parent if argv[-2:] == ["tests", "1+1"] else tmp_path)
    (tmp_path.parent / "tests").mkdir(exist_ok=True)
    assert cli.main(argv) != 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"falcon-h1r {argv[0]}: ") and "Fix" in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
