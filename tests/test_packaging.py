"""What CI's two venvs and the shipped remote code rely on: the lowest-versions constraints file agrees with
pyproject's lower bounds, and the embedded checkpoint's remote-code files are the ones in modeling/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from falcon_h1r.modeling import REMOTE_CODE_FILES

ROOT = Path(__file__).resolve().parents[1]
REMOTE_CODE = [path.name for path in REMOTE_CODE_FILES]


def _lower_bounds() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = {}
    for dep in deps:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([^,]+)(?:,.*)?", dep)
        if match:
            bounds[match[1].lower()] = match[2]
    return bounds


def test_lowest_constraints_are_pyprojects_lower_bounds() -> None:
    pins = dict(
        line.split("==") for line in (ROOT / ".ci/constraints-lowest.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip
    assert set(pins) == {"transformers", "trl", "lm-eval", "peft", "datasets", "accelerate"}
    bounds = _lower_bounds()
    assert {name: bounds.get(name) for name in pins} == pins


@pytest.mark.parametrize("name", REMOTE_CODE)
def test_embedded_checkpoint_ships_the_modeling_files(name: str) -> None:
    shipped = ROOT / "falcon_h1r/tiny_model" / name
    assert shipped.read_bytes() == (ROOT / "modeling" / name).read_bytes(), (
        f"{shipped} differs from modeling/{name}; `trust_remote_code=True` on the embedded model runs the copy. "
        f"Fix: cp modeling/{name} falcon_h1r/tiny_model/"
    )


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "falcon_h1r/tiny_model").glob("*.yaml")))
def test_embedded_checkpoint_ships_the_recipes_it_was_trained_with(name: str) -> None:
    shipped = ROOT / "falcon_h1r/tiny_model" / name
    assert shipped.read_bytes() == (ROOT / "training/recipes" / name).read_bytes(), (
        f"{shipped} differs from training/recipes/{name}: the embedded model's folder must carry the recipe as run. "
        "Fix: retrain with the changed recipe (TRAINING.md), or restore the recipe."
    )
