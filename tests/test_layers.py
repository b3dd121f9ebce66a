"""Imports point one way (DESIGN.md, "Layers"): modeling <- package root <- graders <- parts (training, inference,
eval's lm-eval tasks, model_card) <- CLIs. Read from the source with `ast`, so a cycle cannot come back unnoticed,
not even hidden inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> its subpackage's name under falcon_h1r ("" for the package root)
FOLDERS = {f: f for f in ("modeling", "eval", "training", "inference", "model_card")} | {"falcon_h1r": ""}

LAYERS = ("modeling", "root", "graders", "parts", "cli")
# Answer extraction and equivalence, thinking stripping, math grading, the code judge, the sample metrics and the
# one vote: what the RL rewards, DeepConf and the lm-eval tasks share. They import nothing above them.
GRADERS = {
    "falcon_h1r.eval",
    "falcon_h1r.eval._math_core",
    "falcon_h1r.eval._sandbox_harness",
    "falcon_h1r.eval.answers",
    "falcon_h1r.eval.lcb_data",
    "falcon_h1r.eval.livecodebench",
    "falcon_h1r.eval.math_grading",
    "falcon_h1r.eval.metrics",
    "falcon_h1r.eval.sandbox",
}
EVAL_TASKS = {"falcon_h1r.eval.lm_eval_hooks", "falcon_h1r.eval.reasoning"}
# The subcommands' modules (falcon_h1r.cli.SUBCOMMANDS) and the dispatcher. Nothing of the package imports them.
CLIS = {
    "falcon_h1r.cli",
    "falcon_h1r.eval.cli",
    "falcon_h1r.inference.deepconf_cli",
    "falcon_h1r.inference.generate_cli",
    "falcon_h1r.model_card.cli",
    "falcon_h1r.model_card.convert",
    "falcon_h1r.training.grpo",
    "falcon_h1r.training.sft",
}
# Imports across two parts of the same layer, each with its reason. Nothing else crosses between parts.
PEER_IMPORTS = {
    # the falcon_h1r_arith task evaluates on the held-out split of the embedded model's synthetic task, which
    # imports nothing of the package
    ("falcon_h1r.eval.lm_eval_hooks", "falcon_h1r.training.synthetic_task"),
}
# Imports of the package kept inside a function, each because importing it is a cost only some runs pay.
LAZY_IMPORTS = {
    # registers the lm-eval model falcon_h1r_deepconf, importing lm_eval; only `--deepconf` needs it
    ("falcon_h1r.eval.cli", "falcon_h1r.inference.lm_eval_deepconf"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, sub in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "tiny_model" in path.parts:  # verbatim copies of modeling/
                continue
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(["falcon_h1r", *([sub] if sub else []), *parts])] = path
    return out


MODULES = _modules()


def part_of(module: str) -> str:
    names = module.split(".")
    return names[1] if len(names) > 1 and names[1] in FOLDERS else "falcon_h1r"


def layer_of(module: str) -> str:
    if module in CLIS:
        return "cli"
    if part_of(module) == "modeling":
        return "modeling"
    if module == "falcon_h1r":
        return "root"
    if module in GRADERS:
        return "graders"
    return "parts"


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported package module, line, inside a function) for every import of ours in `module`'s source."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import sub` imports the submodule when there is one
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in child.names]
            for name in names:
                if name.split(".")[0] != "falcon_h1r":
                    continue
                while name not in MODULES and "." in name:  # falcon_h1r.eval.math: the alias of math_grading
                    name = name.rsplit(".", 1)[0]
                found.append((name, child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    return found


def test_every_eval_module_is_placed_in_a_layer():
    eval_modules = {m for m in MODULES if part_of(m) == "eval"}
    assert eval_modules - GRADERS - EVAL_TASKS - CLIS == set(), "new eval module: a grader, a task hook or a CLI?"
    assert GRADERS | EVAL_TASKS | CLIS <= set(MODULES), "a listed module no longer exists"


def test_the_cli_table_is_the_cli_layer():
    from falcon_h1r.cli import SUBCOMMANDS

    assert {target.split(":")[0] for target, _ in SUBCOMMANDS.values()} | {"falcon_h1r.cli"} == CLIS


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str):
    here = layer_of(module)
    wrong = []
    for target, line, _ in imports_of(module):
        there = layer_of(target)
        if target == module or (module, target) in PEER_IMPORTS:
            continue
        if there == "cli":
            wrong.append(f"line {line}: {target} is a CLI module; nothing imports one (move what it shares down)")
        elif LAYERS.index(there) > LAYERS.index(here):
            wrong.append(f"line {line}: {target} ({there}) is above {module} ({here})")
        elif there == here == "parts" and part_of(target) != part_of(module):
            wrong.append(f"line {line}: {target} is another part ({part_of(target)}); share it from a lower layer")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_of_the_package_hides_in_a_function(module: str):
    """Lazy imports of heavy optional dependencies (vllm, lm_eval, ...) are fine; an import of another part of the
    package inside a function hid a cycle, except the listed ones, which defer lm_eval."""
    hidden = [
        f"line {line}: {target}"
        for target, line, inside in imports_of(module)
        if inside and part_of(target) != part_of(module) and (module, target) not in LAZY_IMPORTS
    ]
    assert not hidden, "\n".join(hidden)


def test_modeling_imports_only_itself():
    for module in (m for m in MODULES if part_of(m) == "modeling"):
        assert {part_of(t) for t, _, _ in imports_of(module)} <= {"modeling"}, module
