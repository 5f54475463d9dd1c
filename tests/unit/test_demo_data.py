"""`make demo`'s own pieces: the JSONL corpus, the BPE data set, job.toml's [training.model]."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from tendril.data_node.manifest import load_manifest
from tendril.scheduler.demo import MODELS, DemoSettings, demo_corpus, job_toml, prepare_data

pytest.importorskip("tokenizers")


def test_the_demo_prepares_a_jsonl_corpus_with_a_trained_bpe(tmp_path: Path) -> None:
    settings = DemoSettings(out=tmp_path, max_bytes=150_000, sequences_per_slice=64, vocab_size=600)
    corpus = demo_corpus(settings)
    records = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert records and all(set(r) == {"text"} and r["text"].strip() for r in records)
    assert sum(len(r["text"].encode()) for r in records) <= 150_000 + 2 * len(records)
    folder = prepare_data(settings)
    m = load_manifest(folder)
    assert m.tokenizer == "bpe" and m.vocab_size == 600 and m.eval_slices
    assert [a.name for a in m.assets] == ["tokenizer.tar"]
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert prepare_data(settings) == folder and (folder / "manifest.json").stat().st_mtime_ns == stamp  # kept
    prepare_data(DemoSettings(out=tmp_path, max_bytes=150_000, sequences_per_slice=64, tokenizer="bytes"))
    assert load_manifest(folder).tokenizer == "bytes"  # other settings: prepared again


@pytest.mark.parametrize("model", sorted(MODELS))
def test_job_toml_names_the_architecture_in_the_new_model_table(tmp_path: Path, model: str) -> None:
    text = job_toml(DemoSettings(out=tmp_path, model=model), listen="127.0.0.1:1", gateway="g:2", data_node="d:3")
    table = tomllib.loads(text)["training"]["model"]
    assert table == {"task": "causal-lm", "config": MODELS[model]}
    assert table["config"]["model_type"] == model
    spec = pytest.importorskip("tendril_models.spec")
    assert spec.ModelSpec.from_dict(table).config["model_type"] == model


def test_the_demo_checks_the_held_out_loss_against_a_uniform_guess() -> None:
    import math

    from tendril.scheduler.demo import LOSS_TARGET, loss_ratio

    lines = [{"loss_mean": 6.5, "eval_loss": 6.4}, {"loss_mean": 5.7, "eval_loss": 5.2}]
    ratio, words = loss_ratio(lines, 2048)
    assert ratio == pytest.approx(5.2 / math.log(2048)) and ratio < LOSS_TARGET and "uniform" in words
    ratio, words = loss_ratio([{"loss_mean": 6.0}, {"loss_mean": 5.4}], 2048)  # no held-out losses
    assert ratio == pytest.approx(0.9) and "training" in words
