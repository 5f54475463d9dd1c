"""`tendril data prepare` v2: every reader, tokenizer choice, task, the held-out split, assets."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tendril.core.errors import ErrorKind
from tendril.data_node import cli
from tendril.data_node.errors import DataNodeError
from tendril.data_node.manifest import FORMAT, MANIFEST_NAME, load_manifest
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.sources import Source
from tendril.data_node.tokenizer import ByteTokenizer, load_tokenizer, train_bpe

pytest.importorskip("tokenizers")
pa = pytest.importorskip("pyarrow")

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "a",
    "cat",
    "sleeps",
    "in",
    "the",
    "warm",
    "sun",
]


def _sentences(n: int) -> list[str]:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(5 + i % 7)) for i in range(n)]


def _records(n: int) -> list[dict[str, object]]:
    return [
        {"text": t, "label": ["pos", "neg", "mid"][i % 3], "summary": t.split()[0]} for i, t in enumerate(_sentences(n))
    ]


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _opts(**kw: object) -> PrepareOptions:
    base: dict[str, object] = {"seq_len": 16, "sequences_per_slice": 8, "progress": False, "eval_fraction": 0.1}
    base.update(kw)
    return PrepareOptions(**base)  # type: ignore[arg-type]


def _all(out: Path, names: list[str]) -> dict[str, np.ndarray]:
    parts = [load_file(str(out / n)) for n in names]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _check_files(out: Path) -> None:
    """Every file the manifest lists is there with its size and hash, and holds the listed tensors."""
    import hashlib

    manifest = load_manifest(out)
    for entry in manifest.files:
        data = (out / entry.name).read_bytes()
        assert len(data) == entry.size_bytes and hashlib.sha256(data).hexdigest() == entry.sha256
    for entry in (*manifest.slices, *manifest.eval_slices):
        tensors = load_file(str(out / entry.name))
        assert set(tensors) == set(manifest.tensors)
        for name, spec in manifest.tensors.items():
            assert str(tensors[name].dtype) == spec.dtype
            assert tensors[name].shape == (entry.num_sequences, *spec.shape)


def _text_of_jsonl_stream(out: Path) -> np.ndarray:
    m = load_manifest(out)
    return _all(out, [s.name for s in m.slices])["input_ids"]


# -- readers ------------------------------------------------------------------------------


def test_jsonl_reader_takes_the_named_field(tmp_path: Path) -> None:
    rows = [{"body": t, "other": 1} for t in _sentences(60)]
    src = _jsonl(tmp_path / "c.jsonl", rows)
    m = prepare_dataset(Source.open(src), tmp_path / "ds", ByteTokenizer(), _opts(text_field="body", eval_fraction=0))
    stream = np.concatenate([[*t.encode(), 256] for t in _sentences(60)])
    ids = _text_of_jsonl_stream(tmp_path / "ds")
    assert np.array_equal(ids.reshape(-1), stream[: ids.size])
    assert m.documents == 60 and m.format == FORMAT and m.task == "causal-lm"
    _check_files(tmp_path / "ds")


def test_jsonl_errors_name_the_line_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(Source.open(bad), tmp_path / "ds", ByteTokenizer(), _opts())
    assert err.value.reason == "BAD_SOURCE" and "bad.jsonl:2" in err.value.message
    src = _jsonl(tmp_path / "c.jsonl", [{"body": "x"}])
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(Source.open(src), tmp_path / "ds", ByteTokenizer(), _opts())
    assert err.value.reason == "FIELD_MISSING" and "--text-field" in err.value.message and "body" in err.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "c.jsonl"]


def test_csv_and_parquet_give_the_same_data_set_as_jsonl(tmp_path: Path) -> None:
    import pyarrow.csv
    import pyarrow.parquet

    rows = _records(90)
    table = pa.Table.from_pylist(rows)
    pyarrow.parquet.write_table(table, tmp_path / "c.parquet", row_group_size=7)
    pyarrow.csv.write_csv(table, tmp_path / "c.csv")
    _jsonl(tmp_path / "c.jsonl", rows)
    got = {}
    for name in ("c.jsonl", "c.csv", "c.parquet"):
        out = tmp_path / f"ds-{name}"
        m = prepare_dataset(Source.open(tmp_path / name), out, ByteTokenizer(), _opts(dataset_id="x"))
        got[name] = (m.slices, m.eval_slices)
        _check_files(out)
    assert got["c.jsonl"] == got["c.csv"] == got["c.parquet"]


def test_datasets_folder_and_its_splits(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = _records(90)
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": ds, "test": ds.select(range(10))}).save_to_disk(str(tmp_path / "two"))
    _jsonl(tmp_path / "c.jsonl", rows)
    ref = prepare_dataset(Source.open(tmp_path / "c.jsonl"), tmp_path / "ref", ByteTokenizer(), _opts(dataset_id="x"))
    one = prepare_dataset(Source.open(tmp_path / "one"), tmp_path / "a", ByteTokenizer(), _opts(dataset_id="x"))
    two = prepare_dataset(Source.open(tmp_path / "two"), tmp_path / "b", ByteTokenizer(), _opts(dataset_id="x"))
    assert ref.slices == one.slices == two.slices
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(Source.open(tmp_path / "two", split="dev"), tmp_path / "c", ByteTokenizer(), _opts())
    assert err.value.reason == "BAD_SOURCE" and "test, train" in err.value.message


def test_text_files_for_a_record_task_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello " * 100)
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(
            Source.open(tmp_path / "a.txt"), tmp_path / "ds", ByteTokenizer(), _opts(task="sequence-classification")
        )
    assert err.value.reason == "BAD_TASK"
    # masked-lm reads plain text (it needs a tokenizer with a mask token: not the byte one)
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(Source.open(tmp_path / "a.txt"), tmp_path / "ds", ByteTokenizer(), _opts(task="masked-lm"))
    assert err.value.reason == "BAD_TOKENIZER" and "mask token" in err.value.message
    m = prepare_dataset(
        Source.open(tmp_path / "a.txt"), tmp_path / "ds", None, _opts(task="masked-lm", train_bpe_vocab=270)
    )
    assert m.task == "masked-lm" and m.mask_id == 2 and set(m.tensors) == {"input_ids", "attention_mask"}


# -- the held-out split ------------------------------------------------------------------------


def test_held_out_examples_are_never_in_the_training_slices(tmp_path: Path) -> None:
    # each record is 7 bytes + end-of-text = exactly one sequence of 8, so sequence i is record i
    rows = [{"text": f"{i:07d}"} for i in range(400)]
    src = _jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "ds"
    m = prepare_dataset(Source.open(src), out, ByteTokenizer(), _opts(eval_fraction=0.05, seq_len=8))
    assert m.eval_slices and all(s.name.startswith("eval-") for s in m.eval_slices)
    assert all(s.name.startswith("slice-") for s in m.slices)

    def numbers(names: list[str]) -> list[int]:
        return [int(bytes(r[:7].astype(np.uint8)).decode()) for r in _all(out, names)["input_ids"]]

    train = numbers([s.name for s in m.slices])
    held = numbers([s.name for s in m.eval_slices])
    assert held == list(range(0, 400, 20))  # example 0, then every 20th
    assert not set(held) & set(train) and sorted(held + train) == list(range(400))
    assert m.num_sequences == 380 and m.eval_sequences == 20
    _check_files(out)
    # the default keeps 2 %, at least one slice
    m2 = prepare_dataset(Source.open(src), tmp_path / "d2", ByteTokenizer(), PrepareOptions(seq_len=8, progress=False))
    assert len(m2.eval_slices) == 1 and m2.eval_sequences == 8


def test_eval_fraction_out_of_range_is_refused(tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "c.jsonl", _records(10))
    for bad in (-0.1, 1.0):
        with pytest.raises(DataNodeError) as err:
            prepare_dataset(Source.open(src), tmp_path / "ds", ByteTokenizer(), _opts(eval_fraction=bad))
        assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == "BAD_EVAL_FRACTION"


# -- tokenizers ----------------------------------------------------------------------------------


def _trained_dir(tmp_path: Path) -> Path:
    """A tokenizer trained here with the tokenizers package and saved as a Hugging Face folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(_sentences(200), trainer)
    wrapper = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    folder = tmp_path / "tok"
    wrapper.save_pretrained(str(folder))
    return folder


def test_tokenizer_folder_is_loaded_and_shipped_as_an_asset(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    folder = _trained_dir(tmp_path)
    tok = load_tokenizer(folder)
    assert tok.name == "hf" and tok.eot_id == AutoTokenizer.from_pretrained(str(folder)).convert_tokens_to_ids("[SEP]")
    src = _jsonl(tmp_path / "c.jsonl", _records(120))
    out = tmp_path / "ds"
    m = prepare_dataset(Source.open(src), out, tok, _opts(task="masked-lm", seq_len=8))
    assert set(m.tensors) == {"input_ids", "attention_mask"} and m.pad_id == 1 and m.mask_id == 4
    batch = _all(out, [s.name for s in m.slices])
    assert batch["input_ids"].max() < m.vocab_size
    assert np.all(batch["input_ids"][batch["attention_mask"] == 0] == m.pad_id)
    (asset,) = m.assets
    assert asset.kind == "tokenizer" and asset.name == "tokenizer.tar" and m.tokenizer_sha256 == asset.sha256
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out / "tokenizer.tar") as tar:
        tar.extractall(unpacked, filter="data")
    again = AutoTokenizer.from_pretrained(str(unpacked))
    assert (
        again("the quick fox")["input_ids"] == AutoTokenizer.from_pretrained(str(folder))("the quick fox")["input_ids"]
    )
    _check_files(out)


def test_missing_or_bad_tokenizer_folder(tmp_path: Path) -> None:
    with pytest.raises(DataNodeError) as err:
        load_tokenizer(tmp_path / "nope")
    assert err.value.kind is ErrorKind.NOT_FOUND and err.value.reason == "TOKENIZER_NOT_FOUND"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNodeError) as err:
        load_tokenizer(tmp_path / "empty")
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == "BAD_TOKENIZER"


def test_bpe_trained_at_prepare_is_deterministic_and_shipped(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    src = _jsonl(tmp_path / "c.jsonl", _records(300))
    one = prepare_dataset(Source.open(src), tmp_path / "one", None, _opts(train_bpe_vocab=300, dataset_id="x"))
    two = prepare_dataset(Source.open(src), tmp_path / "two", None, _opts(train_bpe_vocab=300, dataset_id="x"))
    assert one == two
    assert one.tokenizer == "bpe" and one.vocab_size <= 300 and (one.eot_id, one.pad_id) == (0, -1)
    with tarfile.open(tmp_path / "one" / "tokenizer.tar") as tar:
        tar.extractall(tmp_path / "tok", filter="data")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == 1 and tok.mask_token_id == 2
    ids = _text_of_jsonl_stream(tmp_path / "one")
    text = tok.decode(ids.reshape(-1)[:200].tolist())
    assert "quick brown" in text or "lazy dog" in text
    with pytest.raises(DataNodeError) as err:
        train_bpe(["abc"], 100)
    assert err.value.reason == "BAD_VOCAB_SIZE"


def test_byte_tokenizer_asset_encodes_like_the_byte_tokenizer(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    (tmp_path / "a.txt").write_text("héllo wörld\n\tünïcode ✓ " * 30)
    out = tmp_path / "ds"
    m = prepare_dataset(Source.open(tmp_path / "a.txt"), out, ByteTokenizer(), _opts())
    with tarfile.open(out / "tokenizer.tar") as tar:
        tar.extractall(tmp_path / "tok", filter="data")
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    text = "héllo wörld\n\tünïcode ✓ "
    assert tok(text, add_special_tokens=False)["input_ids"] == ByteTokenizer().encode(text).tolist()
    assert tok.eos_token_id == m.eot_id == 256 and len(tok) == m.vocab_size
    assert tok.decode(ByteTokenizer().encode(text).tolist()) == text


# -- tasks -----------------------------------------------------------------------------------------


def test_sequence_classification_labels(tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "c.jsonl", _records(60))
    out = tmp_path / "ds"
    m = prepare_dataset(Source.open(src), out, ByteTokenizer(), _opts(task="sequence-classification", seq_len=24))
    assert m.num_labels == 3 and m.label_names == ("mid", "neg", "pos")
    assert {k: (v.dtype, v.shape) for k, v in m.tensors.items()} == {
        "input_ids": ("int32", (24,)),
        "attention_mask": ("int8", (24,)),
        "labels": ("int32", ()),
    }
    held = _all(out, [s.name for s in m.eval_slices])
    assert held["labels"][0] == m.label_names.index("pos")  # record 0 is "pos" and is held out
    train = _all(out, [s.name for s in m.slices])
    assert set(train["labels"].tolist()) == {0, 1, 2}
    first_len = int(held["attention_mask"][0].sum())
    assert first_len == min(24, len(_records(1)[0]["text"]) + 1)  # text bytes + end-of-text
    _check_files(out)
    # integer labels are kept as they are
    _jsonl(tmp_path / "i.jsonl", [{"text": "x y", "label": i % 5} for i in range(20)])
    m2 = prepare_dataset(
        Source.open(tmp_path / "i.jsonl"), tmp_path / "d2", ByteTokenizer(), _opts(task="sequence-classification")
    )
    assert m2.num_labels == 5 and m2.label_names == ("0", "1", "2", "3", "4")
    _jsonl(tmp_path / "b.jsonl", [{"text": "x", "label": 1.5}])
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(
            Source.open(tmp_path / "b.jsonl"), tmp_path / "d3", ByteTokenizer(), _opts(task="sequence-classification")
        )
    assert err.value.reason == "BAD_LABEL"


def test_seq2seq_targets_become_labels(tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "c.jsonl", _records(40))
    out = tmp_path / "ds"
    m = prepare_dataset(
        Source.open(src), out, ByteTokenizer(), _opts(task="seq2seq-lm", target_field="summary", target_len=10)
    )
    assert m.tensors["labels"].shape == (10,) and m.tensors["input_ids"].shape == (16,)
    held = _all(out, [s.name for s in m.eval_slices])
    first = _records(1)[0]["summary"]
    assert isinstance(first, str)
    expected = [*first.encode(), 256] + [-100] * (10 - len(first) - 1)
    assert held["labels"][0].tolist() == expected
    _check_files(out)


def _png(color: tuple[int, int, int], size: int = 12) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size + 3), color).save(buf, format="PNG")
    return buf.getvalue()


def test_images_resized_or_processed(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(30):
        color = (255, 0, 0) if i % 2 else (0, 0, 255)
        (tmp_path / "img" / f"{i}.png").write_bytes(_png(color))
        rows.append({"image": f"img/{i}.png", "label": "red" if i % 2 else "blue"})
    src = _jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "ds"
    m = prepare_dataset(Source.open(src), out, None, _opts(task="image-classification", image_size=8))
    assert m.tensors["pixel_values"].shape == (3, 8, 8) and m.label_names == ("blue", "red") and not m.assets
    held = _all(out, [s.name for s in m.eval_slices])
    assert held["labels"][0] == 0 and np.allclose(held["pixel_values"][0][2], 1.0)  # blue, scaled to [-1, 1]
    assert np.allclose(held["pixel_values"][0][0], -1.0)
    _check_files(out)
    # image bytes in Parquet, and a processor folder shipped as an asset
    import pyarrow.parquet

    transformers = pytest.importorskip("transformers")
    table = pa.Table.from_pylist([{"img": _png((0, 255, 0)), "label": i % 2} for i in range(12)])
    pyarrow.parquet.write_table(table, tmp_path / "p.parquet")
    transformers.ViTImageProcessor(size={"height": 6, "width": 6}).save_pretrained(str(tmp_path / "proc"))
    m2 = prepare_dataset(
        Source.open(tmp_path / "p.parquet"),
        tmp_path / "d2",
        None,
        _opts(task="image-classification", image_field="img", processor=tmp_path / "proc"),
    )
    assert m2.tensors["pixel_values"].shape == (3, 6, 6) and [a.name for a in m2.assets] == ["processor.tar"]
    _check_files(tmp_path / "d2")
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(
            Source.open(tmp_path / "p.parquet"),
            tmp_path / "d3",
            None,
            _opts(task="image-classification", image_field="img", processor=tmp_path / "nope"),
        )
    assert err.value.reason == "PROCESSOR_NOT_FOUND"


# -- manifests ------------------------------------------------------------------------------------


def test_a_v1_manifest_is_still_read(tmp_path: Path) -> None:
    import hashlib

    from safetensors.numpy import save

    data = save({"input_ids": np.zeros((4, 8), np.int32)})
    (tmp_path / "slice-00000.safetensors").write_bytes(data)
    v1 = {
        "format": "tendril-dataset/1", "dataset_id": "old", "tokenizer": "bytes", "tokenizer_sha256": "",
        "vocab_size": 257, "eot_id": 256, "seq_len": 8, "tensor": "input_ids", "dtype": "int32",
        "slices": [{"name": "slice-00000.safetensors", "size_bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(), "num_sequences": 4}],
    }  # fmt: skip
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(v1))
    m = load_manifest(tmp_path)
    assert m.task == "causal-lm" and m.eval_slices == () and m.assets == ()
    assert {k: (v.dtype, v.shape) for k, v in m.tensors.items()} == {"input_ids": ("int32", (8,))}
    assert m.format == "tendril-dataset/1" and m.to_dict()["format"] == FORMAT


def test_cli_prepares_jsonl_with_a_trained_bpe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _jsonl(tmp_path / "c.jsonl", _records(200))
    parser = argparse.ArgumentParser(prog="tendril")
    cli.add_parser(parser.add_subparsers())
    out = tmp_path / "ds"
    args = parser.parse_args(
        ["data", "prepare", str(src), str(out), "--train-tokenizer", "bpe", "--vocab-size", "300", "--seq-len", "16",
         "--no-progress"]
    )  # fmt: skip
    assert args.func(args) == 0
    m = load_manifest(out)
    assert m.tokenizer == "bpe" and m.eval_slices and "held out" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "prepare", str(src), str(out), "--task", "nope"])
