"""Held-out evaluation and export (tendril_models.evaluate / .export) and the `tendril model`
commands, on tiny gpt2 (causal-lm) and bert (sequence-classification) models built from configs
(no downloads), with a BPE tokenizer trained in the test."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tendril.cli import main as cli
from tendril.cli.model import evaluate_dir, generate_text
from tendril_models import DataSpec, ModelError, ModelSpec, get_task
from tendril_models.build import build_model
from tendril_models.evaluate import batches_of, evaluate
from tendril_models.export import export, load_theta, write_byte_tokenizer

SEQ = 16
N = 10
GPT2 = {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 16}
BERT = {
    "model_type": "bert",
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "hidden_size": 16,
    "intermediate_size": 32,
}


def _bpe(folder: Path) -> Path:
    """A BPE tokenizer trained here on a few lines (tokenizers), saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def _lm_data(vocab: int) -> DataSpec:
    return DataSpec.from_manifest(
        {
            "format": "tendril-dataset/2",
            "task": "causal-lm",
            "tensors": {
                "input_ids": {"dtype": "int32", "shape": [SEQ]},
                "attention_mask": {"dtype": "int8", "shape": [SEQ]},
            },
            "vocab_size": vocab,
            "seq_len": SEQ,
            "eot_id": 0,
            "pad_id": 1,
        }
    )


def _cls_data() -> DataSpec:
    return DataSpec.from_manifest(
        {
            "format": "tendril-dataset/2",
            "task": "sequence-classification",
            "tensors": {
                "input_ids": {"dtype": "int32", "shape": [SEQ]},
                "attention_mask": {"dtype": "int8", "shape": [SEQ]},
                "labels": {"dtype": "int64", "shape": []},
            },
            "vocab_size": 64,
            "seq_len": SEQ,
            "num_labels": 3,
            "label_names": ["a", "b", "c"],
        }
    )


def _lm_slice(vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (N, SEQ), generator=g, dtype=torch.int32)
    mask = torch.ones(N, SEQ, dtype=torch.int8)
    mask[0, SEQ - 4 :] = 0  # some padding: it must not count
    return {"input_ids": ids, "attention_mask": mask}


def _cls_slice(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(2, 64, (N, SEQ), generator=g, dtype=torch.int32),
        "attention_mask": torch.ones(N, SEQ, dtype=torch.int8),
        "labels": torch.randint(0, 3, (N,), generator=g, dtype=torch.int64),
    }


def test_lm_eval_loss_does_not_depend_on_batching_and_reports_perplexity() -> None:
    data = _lm_data(64)
    model = build_model(ModelSpec.from_dict({"task": "causal-lm", "config": GPT2}), data, seed=1)
    task = get_task("causal-lm")
    tensors = _lm_slice(64)
    small = evaluate(model, batches_of(tensors, 3), task, data=data)
    whole = evaluate(model, batches_of(tensors, N), task, data=data)
    assert set(small) == {"eval_loss", "eval_perplexity", "eval_examples"}
    assert small["eval_examples"] == N
    assert small["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-5)
    assert small["eval_perplexity"] == pytest.approx(math.exp(small["eval_loss"]), rel=1e-6)
    # an untrained model is about as good as chance: loss near ln(vocab)
    assert abs(small["eval_loss"] - math.log(64)) < 0.5
    assert model.training  # evaluate puts the model back as it found it


def test_classification_accuracy_is_the_share_of_right_answers() -> None:
    data = _cls_data()
    model = build_model(ModelSpec.from_dict({"task": "sequence-classification", "config": BERT}), data, seed=1)
    model.eval()
    tensors = _cls_slice()
    with torch.no_grad():
        predicted = model(input_ids=tensors["input_ids"].long(), attention_mask=tensors["attention_mask"].long()).logits
    right = float((predicted.argmax(-1) == tensors["labels"]).float().mean())
    got = evaluate(model, batches_of(tensors, 4), get_task("sequence-classification"), data=data)
    assert set(got) == {"eval_loss", "eval_accuracy", "eval_examples"}
    assert got["eval_accuracy"] == pytest.approx(right)
    assert math.isfinite(got["eval_loss"])


def test_evaluate_of_nothing_is_nan_not_an_error() -> None:
    data = _lm_data(64)
    model = build_model(ModelSpec.from_dict({"task": "causal-lm", "config": GPT2}), data, seed=1)
    got = evaluate(model, [], get_task("causal-lm"), data=data)
    assert math.isnan(got["eval_loss"]) and got["eval_examples"] == 0


def _theta(model: torch.nn.Module, path: Path, scale: float = 1.0) -> dict[str, torch.Tensor]:
    theta = {n: (p.detach() * scale).contiguous() for n, p in model.named_parameters()}
    save_file(theta, str(path))
    return theta


def test_export_round_trip_causal_lm_with_trained_tokenizer_and_generate(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer_dir = _bpe(tmp_path / "tok")
    vocab = json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"]
    data = _lm_data(len(vocab))
    spec = ModelSpec.from_dict({"task": "causal-lm", "config": GPT2})
    trained = build_model(spec, data, seed=3)
    theta = _theta(trained, tmp_path / "theta.safetensors", scale=0.5)  # θ differs from θ0
    model = build_model(spec, data, seed=3)
    load_theta(model, tmp_path / "theta.safetensors")
    out = export(model, tmp_path / "model", assets_dir=tokenizer_dir, eos_token_id=0, pad_token_id=1)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert not list(out.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(out)
    for name, p in loaded.named_parameters():
        assert torch.equal(p, theta[name]), name
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<pad>"
    text = generate_text(out, "the quick", max_new_tokens=5, temperature=0.0, seed=0)
    assert text.startswith("the quick") and len(text) > len("the quick")
    # exporting again replaces the folder whole
    export(model, tmp_path / "model", assets_dir=None)
    assert not (tmp_path / "model" / "tokenizer.json").exists()
    assert not list(tmp_path.glob(".model*"))


def test_export_round_trip_sequence_classification(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    data = _cls_data()
    spec = ModelSpec.from_dict({"task": "sequence-classification", "config": BERT})
    model = build_model(spec, data, seed=5)
    export(model, tmp_path / "model", assets_dir=None)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    batch = _cls_slice()
    model.eval()
    with torch.no_grad():
        a = model(input_ids=batch["input_ids"].long()).logits
        b = loaded(input_ids=batch["input_ids"].long()).logits
    assert torch.allclose(a, b)
    assert loaded.config.num_labels == 3


def test_load_theta_names_what_does_not_fit(tmp_path: Path) -> None:
    data = _lm_data(64)
    model = build_model(ModelSpec.from_dict({"task": "causal-lm", "config": GPT2}), data, seed=1)
    save_file({"not.a.parameter": torch.zeros(2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelError, match="do not fit the model"):
        load_theta(model, tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelError, match="cannot read parameters"):
        load_theta(model, tmp_path / "junk.safetensors")


def test_byte_tokenizer_ids_are_the_bytes(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    data = DataSpec.from_manifest({"seq_len": SEQ, "vocab_size": 257, "tokenizer": "bytes"})
    model = build_model(ModelSpec.from_dict({"task": "causal-lm", "config": GPT2}), data, seed=0)
    out = export(model, tmp_path / "model", assets_dir=write_byte_tokenizer(tmp_path / "bytes"), eos_token_id=256)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("héllo")["input_ids"] == list("héllo".encode())
    assert tok.eos_token_id == 256
    assert generate_text(out, "ab", max_new_tokens=3, temperature=1.0, seed=1).startswith("ab")


def _prepared(folder: Path, *, eval_slices: bool = True) -> Path:
    """A prepared classification data set folder (manifest v2) with a held-out slice."""
    folder.mkdir(parents=True)
    entries = {}
    for kind, seed in (("slice", 0), ("eval", 1)):
        name = f"{kind}-00000.safetensors"
        save_file(_cls_slice(seed), str(folder / name))
        entries[kind] = [{"name": name, "size_bytes": (folder / name).stat().st_size, "sha256": "", "num_sequences": N}]
    manifest: dict[str, Any] = {
        **_cls_data().to_dict(),
        "format": "tendril-dataset/2",
        "dataset_id": "cls",
        "slices": entries["slice"],
        "eval_slices": entries["eval"] if eval_slices else [],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_model_eval_command_scores_the_held_out_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _cls_data()
    model = build_model(ModelSpec.from_dict({"task": "sequence-classification", "config": BERT}), data, seed=5)
    export(model, tmp_path / "model", assets_dir=None)
    dataset = _prepared(tmp_path / "data")
    expected = evaluate(model, batches_of(_cls_slice(1), 8), get_task("sequence-classification"), data=data)
    got = evaluate_dir(tmp_path / "model", dataset, split="eval", batch_size=3, max_examples=0)
    assert got["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-5)
    assert got["eval_accuracy"] == pytest.approx(expected["eval_accuracy"])
    assert cli.run(["model", "eval", str(tmp_path / "model"), str(dataset), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["eval_examples"] == N
    assert cli.run(["model", "eval", str(tmp_path / "model"), str(dataset), "--max-examples", "4"]) == 0
    assert "4 examples of the held-out split" in capsys.readouterr().out


def test_model_commands_say_what_to_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _cls_data()
    model = build_model(ModelSpec.from_dict({"task": "sequence-classification", "config": BERT}), data, seed=5)
    export(model, tmp_path / "model", assets_dir=None)
    no_split = _prepared(tmp_path / "data", eval_slices=False)
    assert cli.run(["model", "eval", str(tmp_path / "model"), str(no_split)]) == 1
    assert "no held-out split" in capsys.readouterr().err
    assert cli.run(["model", "eval", str(tmp_path / "nowhere"), str(no_split)]) == 1
    assert "has no config.json" in capsys.readouterr().err
    assert cli.run(["model", "generate", str(tmp_path / "model"), "--prompt", "hi"]) == 1
    assert "not a causal language model" in capsys.readouterr().err
    lm = build_model(ModelSpec.from_dict({"task": "causal-lm", "config": GPT2}), _lm_data(64), seed=0)
    export(lm, tmp_path / "lm", assets_dir=None)
    assert cli.run(["model", "generate", str(tmp_path / "lm"), "--prompt", "hi"]) == 1
    assert "holds no tokenizer" in capsys.readouterr().err
