"""Model card: renders for the embedded model with/without lm-eval results; metadata round-trips via huggingface_hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from test_model_card_support import LM_EVAL_RESULTS, tiny_checkpoint, write_results

from falcon_h1r.model_card.card import CardOptions, build_card
from falcon_h1r.model_card.cli import card_main
from falcon_h1r.model_card.results import load_results, parse_results


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory)


def reload(card: ModelCard, tmp_path: Path) -> ModelCard:
    path = tmp_path / "README.md"
    path.write_text(str(card))
    return ModelCard.load(path)


def test_card_without_results_reads_the_config(ckpt, tmp_path):
    cfg = json.loads((ckpt / "config.json").read_text())
    card = build_card(ckpt, options=CardOptions(repo_id="acme/falcon-h1r-tiny"))
    text = str(card)
    assert f"| hidden size | {cfg['hidden_size']} |" in text
    assert f"| decoder layers (all hybrid) | {cfg['num_hidden_layers']} |" in text
    assert f"{cfg['mamba_n_heads']} x {cfg['mamba_d_head']}" in text
    assert 'model_id = "acme/falcon-h1r-tiny"' in text and "trust_remote_code=True" in text
    assert "vllm serve acme/falcon-h1r-tiny --trust-remote-code --reasoning-parser deepseek_r1" in text
    assert "falcon-h1r deepconf --model acme/falcon-h1r-tiny" in text and "SFTTrainer(" in text
    assert "No evaluation results were attached" in text and "model-index" not in text
    assert "test-size model" in text  # the embedded model is tiny and says so

    loaded = reload(card, tmp_path)
    assert loaded.data.to_dict() == card.data.to_dict()
    meta = loaded.data.to_dict()
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert meta["license"] == "apache-2.0" and meta["language"] == ["en"]
    assert {"falcon-h1r", "custom_code"} <= set(meta["tags"])


def test_card_with_lm_eval_results_round_trips_model_index(ckpt, tmp_path):
    results = write_results(tmp_path)
    card = build_card(ckpt, results, CardOptions(repo_id="acme/falcon-h1r-tiny", base_model="tiiuae/Falcon-H1R-7B"))
    loaded = reload(card, tmp_path)
    assert loaded.data.to_dict() == card.data.to_dict()
    # The Hub's own parser reads our model-index back into the same numbers.
    raw = yaml.safe_load(str(card).split("---")[1])
    name, parsed = model_index_to_eval_results(raw["model-index"])
    assert name == "falcon-h1r-tiny"
    by_task = {(r.dataset_name, r.metric_name): r for r in parsed}
    aime = by_task[("aime25", "exact_match")]
    assert (aime.metric_value, aime.dataset_type, aime.dataset_split) == (0.8313, "math-ai/aime25", "test")
    assert aime.metric_args == {"problems": 30, "samples_per_problem": 16, "temperature": 0.6, "top_p": 0.95,
                                "max_new_tokens": 65536, "do_sample": True, "num_fewshot": 0}  # fmt: skip
    toy = by_task[("toy_math", "exact_match (maj)")]
    assert toy.metric_value == 0.6667 and toy.dataset_type == "toy_math"  # "json" is not a Hub dataset id
    text = str(card)
    assert "| aime25 | exact_match | 0.8313 | 0.0512 | 30 | 16 | 0.6 | 0.95 | 65536 | 0 |" in text
    assert "| toy_math | exact_match (maj) | 0.6667 | 0.3333 | 3 | 2 | 0.6 | 0.95 | 64 | 0 |" in text
    # A Falcon base model brings the Falcon LLM license and the base_model link.
    meta = loaded.data.to_dict()
    assert meta["base_model"] == "tiiuae/Falcon-H1R-7B" and meta["license"] == "other"
    assert meta["license_name"] == "falcon-llm-license"


def test_results_parser_pairs_stderr_and_protocol(tmp_path):
    rows = {(r.task, r.metric, r.filter): r for r in parse_results(LM_EVAL_RESULTS)}
    assert set(rows) == {("aime25", "exact_match", "none"), ("toy_math", "exact_match", "maj")}
    assert rows[("aime25", "exact_match", "none")].stderr == 0.0512
    assert rows[("toy_math", "exact_match", "maj")].repeats == 2
    # A folder (lm_eval --output_path) resolves to the results file inside it.
    write_results(tmp_path)
    assert len(load_results(tmp_path)) == 2
    with pytest.raises(ValueError, match="not an lm-eval results JSON"):
        parse_results({"aime25": 0.8})


def test_card_reads_recipe_and_trainer_state(ckpt, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ckpt, run)
    (run / "recipe.yaml").write_text(
        "model_name_or_path: tiiuae/Falcon-H1R-7B\ndataset_name: open-r1/Mixture-of-Thoughts\n"
        "learning_rate: 1.024e-3\nnum_train_epochs: 3\nlr_scheduler_type: linear\n"
    )
    (run / "trainer_state.json").write_text(
        json.dumps({"global_step": 120, "epoch": 3.0, "log_history": [{"loss": 2.5}, {"loss": 0.75}]})
    )
    card = build_card(run)
    text = str(card)
    for row in ("| learning_rate | 0.001024 |", "| lr_scheduler_type | linear |", "| optimizer steps | 120 |",
                "| final logged training loss | 0.75 |"):  # fmt: skip
        assert row in text
    meta = card.data.to_dict()
    assert meta["base_model"] == "tiiuae/Falcon-H1R-7B"
    assert meta["datasets"] == ["open-r1/Mixture-of-Thoughts"]


def test_card_cli_writes_readme(ckpt, tmp_path, capsys):
    results = write_results(tmp_path)
    out = tmp_path / "README.md"
    assert card_main([str(ckpt), "--results", str(results), "-o", str(out), "--repo-id", "acme/x"]) == 0
    assert ModelCard.load(out).data.to_dict()["model-index"][0]["name"] == "x"
    assert card_main([str(ckpt), "--results", str(tmp_path / "nope.json")]) == 1
    assert "no such results file" in capsys.readouterr().err


def test_card_flags_limited_evaluations(ckpt):
    import copy

    data = copy.deepcopy(LM_EVAL_RESULTS)
    data["n-samples"]["aime25"] = {"original": 30, "effective": 5}  # as written by lm-eval with --limit 5
    text = str(build_card(ckpt, parse_results(data)))
    assert "| aime25 | exact_match | 0.8313 | 0.0512 | 5 of 30 | 16 |" in text
    assert "Evaluated on a subset of the problems (lm-eval --limit) for: aime25;" in text
