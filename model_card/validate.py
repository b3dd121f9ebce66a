"""Validate a staged Hub folder before any upload.

1. Static checks (fast, no model load): config and auto_map, every remote-code module present, self-contained
   (no `falcon_h1r` import, relative imports resolvable) and identical to the package's files, weights
   consistent (index vs shards, truncation), tokenizer with chat template, generation config, card metadata.
2. Load check: a fresh `python -I` in an empty temp dir, with `falcon_h1r` blocked from import, runs the card's
   transformers snippet on the folder (trust_remote_code, a few new tokens), then verifies that the model class
   came from the folder's remote code and that every loaded tensor equals the staged bytes (nothing randomly
   initialised). This is what a Hub user without our package will run.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from falcon_h1r.model_card.checkpoint import GENERATION_FILE, chat_template_of, remote_code, remote_code_architecture
from falcon_h1r.model_card.safetensors_io import INDEX_NAME, CheckpointError, list_checkpoint_tensors
from falcon_h1r.model_card.snippets import RECOMMENDED_SAMPLING, render_snippets
from falcon_h1r.model_card.vllm_plugin import VLLM_DEFAULTED_FIELDS, VLLM_REQUIRED_FIELDS, vllm_config_problems

MARKER = "FALCON_H1R_LOAD_CHECK "


class StagedFolderError(ValueError):
    """The staged folder would not work for Hub users; `problems` lists every reason."""

    def __init__(self, folder: Path, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"staged folder {folder} failed validation (nothing was uploaded):\n{lines}")


@dataclass
class LoadCheck:
    model_class: str
    module: str
    new_tokens: int
    text: str
    seconds: float


@dataclass
class ValidationReport:
    warnings: list[str] = field(default_factory=list)
    load: LoadCheck | None = None


def _remote_code_problems(folder: Path, auto_map: dict[str, str]) -> list[str]:
    problems = []
    modules = {ref.split("--")[-1].rsplit(".", 1)[0] for ref in auto_map.values()}
    for module in sorted(modules):
        if not (folder / f"{module}.py").is_file():
            problems.append(f"auto_map points at {module}.py, which is missing from the folder")
    for path in sorted(folder.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except SyntaxError as exc:
            problems.append(f"{path.name} does not parse: {exc}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                if not (folder / f"{node.module.split('.')[0]}.py").is_file():
                    problems.append(f"{path.name} imports .{node.module}, which is not in the folder")
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n == "falcon_h1r" or n.startswith("falcon_h1r.") for n in names):
                problems.append(f"{path.name} imports falcon_h1r, which Hub users do not have")
    files, _ = remote_code()
    for src in files:
        staged = folder / src.name
        if staged.is_file() and staged.read_bytes() != src.read_bytes():
            problems.append(f"{src.name} differs from the package's remote code; re-stage the folder")
    return problems


def static_problems(folder: str | Path) -> tuple[list[str], list[str]]:
    """(problems, warnings) found without loading the model."""
    folder = Path(folder)
    problems: list[str] = []
    warnings: list[str] = []
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"config.json unreadable: {exc}"], warnings
    architecture = remote_code_architecture(cfg)
    if cfg.get("model_type") != "falcon_h1r" or cfg.get("architectures") != [architecture]:
        problems.append(
            f"config.json must say model_type 'falcon_h1r' and architectures [{architecture!r}] (the name stock vLLM "
            "serves faithfully, or ours where it cannot); re-stage the folder"
        )
    auto_map = cfg.get("auto_map") or {}
    for key in ("AutoConfig", "AutoModelForCausalLM"):
        if key not in auto_map:
            problems.append(f"config.json auto_map has no {key}; trust_remote_code loading needs it")
    problems += _remote_code_problems(folder, auto_map)
    if not (folder / INDEX_NAME).is_file():
        problems.append(f"{INDEX_NAME} is missing (the staged weights are always sharded with an index)")
    try:
        list_checkpoint_tensors(folder)
    except CheckpointError as exc:
        problems.append(str(exc))
    if chat_template_of(folder) is None:
        problems.append("no chat template (chat_template.jinja or tokenizer_config.json 'chat_template')")
    if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        problems.append("no tokenizer files (tokenizer.json / tokenizer.model / vocab.json)")
    try:
        gen = json.loads((folder / GENERATION_FILE).read_text())
        for key, value in RECOMMENDED_SAMPLING.items():
            if gen.get(key) != value:
                warnings.append(f"generation_config.json {key}={gen.get(key)} (recommended {value})")
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"{GENERATION_FILE} unreadable: {exc}")
    if not (folder / "README.md").is_file():
        problems.append("README.md (model card) is missing")
    else:
        from huggingface_hub import ModelCard

        try:
            data = ModelCard.load(folder / "README.md").data.to_dict()
            if data.get("library_name") != "transformers" or data.get("pipeline_tag") != "text-generation":
                problems.append("README.md metadata needs library_name transformers and pipeline_tag text-generation")
        except Exception as exc:  # huggingface_hub raises several types for bad YAML
            problems.append(f"README.md metadata does not parse: {exc}")
    errors, vllm_warnings = vllm_config_problems(cfg)
    warnings += [f"vLLM: {m}" for m in errors + vllm_warnings]
    return problems, warnings


BLOCKER = """\
import importlib.abc, json, os, sys


class _BlockFalconH1R(importlib.abc.MetaPathFinder):
    # Hub users do not have our package: any attempt to import it must fail, as it would for them.
    def find_spec(self, name, path=None, target=None):
        if name == "falcon_h1r" or name.startswith("falcon_h1r."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the publish check)", name=name)
        return None


sys.meta_path.insert(0, _BlockFalconH1R())
"""

_PRELUDE = (
    BLOCKER
    + """
import torch

torch.manual_seed(0)
"""
)

_POSTLUDE = """
problems = []
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "falcon_h1r")
if leaked:
    problems.append(f"falcon_h1r modules were imported: {leaked}")
cls = type(model)
if not cls.__module__.startswith("transformers_modules."):
    problems.append(f"{cls.__qualname__} came from {cls.__module__}, not from the folder's remote code")
from safetensors import safe_open

state = model.state_dict()
weight_map = json.load(open(os.path.join(model_id, "model.safetensors.index.json")))["weight_map"]
by_shard = {}
for name, shard in weight_map.items():
    by_shard.setdefault(shard, []).append(name)
seen = set()
for shard, names in sorted(by_shard.items()):
    with safe_open(os.path.join(model_id, shard), framework="pt") as f:
        for name in names:
            if name not in state:
                problems.append(f"{shard}: tensor {name} is not a parameter of the loaded model")
                continue
            seen.add(name)
            ref, got = f.get_tensor(name), state[name].detach().cpu()
            if got.shape != ref.shape or not torch.equal(got.to(ref.dtype), ref):
                problems.append(f"loaded {name} differs from the staged tensor")
tied = bool(getattr(model.config, "tie_word_embeddings", False))
missing = sorted(n for n in state if n not in seen and not (tied and n == "lm_head.weight"))
if missing:
    problems.append(f"{len(missing)} model tensor(s) not in the checkpoint (randomly initialised): {missing[:5]}")
for name in FIELDS:
    if getattr(model.config, name, None) is None:
        problems.append(f"loaded config has no {name} (vLLM's Falcon-H1 reads it)")
new_tokens = int(output.shape[1] - inputs["input_ids"].shape[1])
if new_tokens < 1:
    problems.append("generate() produced no new tokens")
text = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
report = {"problems": problems, "model_class": cls.__qualname__, "module": cls.__module__,
          "new_tokens": new_tokens, "text": text}
print(MARKER + json.dumps(report))
"""


def load_check_script(folder: str | Path, max_new_tokens: int = 4) -> str:
    """The script the fresh interpreter runs: blocker, the card's transformers snippet, then the checks."""
    snippet = render_snippets(str(Path(folder).resolve()), max_new_tokens)["transformers_snippet"]
    fields = list(VLLM_REQUIRED_FIELDS + VLLM_DEFAULTED_FIELDS)
    return f"{_PRELUDE}\n{snippet}\nMARKER = {MARKER!r}\nFIELDS = {fields!r}\n{_POSTLUDE}"


def run_sanitized(script: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `script` in `python -I` (no user site, no PYTHON* env, no cwd on sys.path) from an empty temp dir.

    Offline (everything it needs is local), with a fresh dynamic-module cache so no stale copy of the remote
    code is reused. The script itself starts with BLOCKER, because an editable install of falcon_h1r is still
    importable from site-packages even in isolated mode.
    """
    with tempfile.TemporaryDirectory(prefix="falcon-h1r-loadcheck-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(Path(tmp) / "modules"))
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return subprocess.run(
            [sys.executable, "-I", "-c", script], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
        )


def load_check(folder: str | Path, *, max_new_tokens: int = 4, timeout: float = 3600.0) -> LoadCheck:
    """Run the load check in a fresh interpreter; raise StagedFolderError with its findings on failure."""
    folder = Path(folder).resolve()
    start = time.perf_counter()
    try:
        proc = run_sanitized(load_check_script(folder, max_new_tokens), timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise StagedFolderError(folder, [f"loading and generating took more than {timeout:.0f} s"]) from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise StagedFolderError(
            folder, [f"loading with trust_remote_code in a fresh Python (no falcon_h1r) failed:\n{tail}"]
        )
    report = json.loads(lines[-1][len(MARKER) :])
    if report["problems"]:
        raise StagedFolderError(folder, report["problems"])
    return LoadCheck(
        model_class=report["model_class"],
        module=report["module"],
        new_tokens=report["new_tokens"],
        text=report["text"],
        seconds=time.perf_counter() - start,
    )


def validate_folder(folder: str | Path, *, load: bool = True, timeout: float = 3600.0) -> ValidationReport:
    """Static checks, then (unless load=False) the fresh-interpreter load check. Raises StagedFolderError."""
    problems, warnings = static_problems(folder)
    if problems:
        raise StagedFolderError(Path(folder), problems)
    report = ValidationReport(warnings=warnings)
    if load:
        report.load = load_check(folder, timeout=timeout)
    return report
