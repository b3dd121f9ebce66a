"""`falcon-h1r eval`: lm-eval's simple_evaluate with our tasks on the embedded model, results JSON."""

from __future__ import annotations

import argparse
import json
import sys

import pytest
from test_eval_lcb_data import write_release

from falcon_h1r.eval import cli


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def test_backend_model_args():
    name, margs = cli.model_spec(parse("--backend", "vllm", "--tensor-parallel-size", "2", "--data-parallel-size", "4",
                                       "--model-args", "max_model_len=70000,gpu_memory_utilization=0.85"), "M")  # fmt: skip
    assert name == "vllm"
    assert margs["tensor_parallel_size"] == 2 and margs["data_parallel_size"] == 4
    assert margs["max_model_len"] == 70000 and margs["gpu_memory_utilization"] == 0.85  # typed as lm-eval types them
    assert margs["pretrained"] == "M" and margs["enable_prefix_caching"] is False  # HYBRID_ENGINE_DEFAULTS
    name, margs = cli.model_spec(parse(), "M")
    assert name == "hf" and margs == {"pretrained": "M", "dtype": "auto"}


def test_deepconf_backend(monkeypatch):
    name, margs = cli.model_spec(parse("--deepconf", "--backend", "vllm", "--tensor-parallel-size", "2"), "M")
    assert name == "falcon_h1r_deepconf"
    assert margs["backend"] == "vllm" and margs["tensor_parallel_size"] == 2
    monkeypatch.setitem(sys.modules, "falcon_h1r.inference.lm_eval_deepconf", None)  # as if it were absent
    with pytest.raises(SystemExit, match="DeepConf lm-eval model is unavailable"):
        cli.model_spec(parse("--deepconf"), "M")


def test_unknown_task_is_reported():
    with pytest.raises(ValueError, match="did you mean falcon_h1r_aime24"):
        cli.main(["--tasks", "falcon_h1r_aime2024"])
    assert cli._expand_tasks("math, falcon_h1r_arith") == [
        "falcon_h1r_aime24", "falcon_h1r_aime25", "falcon_h1r_hmmt25", "falcon_h1r_math500", "falcon_h1r_arith",
    ]  # fmt: skip


def test_eval_on_the_embedded_model_writes_results(tmp_path, capsys):
    import falcon_h1r

    if not (falcon_h1r.tiny_model_path() / "config.json").is_file():
        pytest.skip("the embedded tiny model has not been built yet")
    lcb = write_release(tmp_path / "lcb")
    out = tmp_path / "results.json"
    code = cli.main([
        "--tasks", "falcon_h1r_arith,falcon_h1r_lcb_v6",
        "--limit", "2",
        "--samples", "2",
        "--max-gen-toks", "8",
        "--batch-size", "8",
        "--metadata", json.dumps({"lcb_data_dir": str(lcb), "arith_n": 3}),
        "--output", str(out),
        "--log-samples",
    ])  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "falcon_h1r_arith" in table and "avg@k" in table
    results = json.loads(out.read_text())
    for task in ("falcon_h1r_arith", "falcon_h1r_lcb_v6"):
        assert 0.0 <= results["results"][task]["avg@k,all_samples"] <= 1.0
        assert results["configs"][task]["repeats"] == 2
        assert results["n-samples"][task]["effective"] == 2
    assert results["config"]["model_args"]["pretrained"] == str(falcon_h1r.tiny_model_path())

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(falcon_h1r.tiny_model_path())
    longest_token = max(len(tok.decode([i])) for i in range(len(tok)))  # characters one token can decode to
    rows = [json.loads(line) for line in out.with_suffix(".samples.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows} == {"falcon_h1r_arith", "falcon_h1r_lcb_v6"}
    for row in rows:
        prompt = row["arguments"][0][0]
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
        responses = row["resps"][0]
        assert len(responses) == 2
        # the budget holds although the checkpoint's generation_config says max_new_tokens=256
        assert all(len(r) <= 8 * longest_token for r in responses), responses
