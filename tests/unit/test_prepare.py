"""`tendril data prepare`: deterministic slices, correct manifest, shapes, atomic output, CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tendril.core.errors import ErrorKind
from tendril.data_node import cli
from tendril.data_node.corpus import collect_files, stdlib_corpus, stdlib_root
from tendril.data_node.errors import DataNodeError
from tendril.data_node.manifest import MANIFEST_NAME, load_manifest
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.tokenizer import ByteTokenizer, load_tokenizer


def _corpus(root: Path) -> Path:
    src = root / "src"
    (src / "b").mkdir(parents=True)
    (src / "a.txt").write_text("hello world\n" * 40)
    (src / "b" / "c.txt").write_text("second document, with ünïcode\n" * 30)
    (src / "b" / "d.md").write_text("# third\n" * 50)
    (src / ".hidden").write_text("never read")
    return src


def _opts(**kw: object) -> PrepareOptions:
    # NOTE: no held-out split here, so the slices hold the whole token stream.
    base: dict[str, object] = {"seq_len": 16, "sequences_per_slice": 10, "progress": False, "eval_fraction": 0.0}
    base.update(kw)
    return PrepareOptions(**base)  # type: ignore[arg-type]


def _stream(src: Path) -> np.ndarray:
    """The byte tokenizer's token stream for a folder: each file's bytes then 256."""
    parts = []
    for path in collect_files(src):
        parts.append(np.frombuffer(path.read_bytes(), np.uint8).astype(np.int32))
        parts.append(np.asarray([256], np.int32))
    return np.concatenate(parts)


def test_slices_hold_the_token_stream_with_right_shapes_and_hashes(tmp_path: Path) -> None:
    src = _corpus(tmp_path)
    out = tmp_path / "ds"
    manifest = prepare_dataset(collect_files(src), out, ByteTokenizer(), _opts())
    stream = _stream(src)
    n_seq = len(stream) // 16
    assert manifest.num_sequences == n_seq
    assert [s.num_sequences for s in manifest.slices[:-1]] == [10] * (len(manifest.slices) - 1)
    assert 1 <= manifest.slices[-1].num_sequences <= 10
    got = []
    for entry in manifest.slices:
        data = (out / entry.name).read_bytes()
        assert len(data) == entry.size_bytes
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        ids = load_file(str(out / entry.name))["input_ids"]
        assert ids.dtype == np.int32 and ids.shape == (entry.num_sequences, 16)
        got.append(ids.reshape(-1))
    assert np.array_equal(np.concatenate(got), stream[: n_seq * 16])
    assert manifest.vocab_size == 257 and manifest.eot_id == 256 and manifest.tokenizer == "bytes"
    assert manifest.documents == 3
    on_disk = json.loads((out / MANIFEST_NAME).read_text())
    assert on_disk["slices"][0]["sha256"] == manifest.slices[0].sha256
    assert load_manifest(out) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]  # no temp folder left


def test_output_is_deterministic(tmp_path: Path) -> None:
    src = _corpus(tmp_path)
    one = prepare_dataset(collect_files(src), tmp_path / "one", ByteTokenizer(), _opts(dataset_id="x"))
    two = prepare_dataset(collect_files(src), tmp_path / "two", ByteTokenizer(), _opts(dataset_id="x"))
    assert one == two
    assert (tmp_path / "one" / MANIFEST_NAME).read_bytes() == (tmp_path / "two" / MANIFEST_NAME).read_bytes()


def test_max_bytes_reads_a_prefix(tmp_path: Path) -> None:
    src = _corpus(tmp_path)
    manifest = prepare_dataset(collect_files(src), tmp_path / "ds", ByteTokenizer(), _opts(max_bytes=100))
    assert manifest.source_bytes == 100 and manifest.documents == 1
    assert manifest.num_sequences == (100 + 1) // 16


def test_refuses_non_empty_out_unless_forced(tmp_path: Path) -> None:
    src = _corpus(tmp_path)
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(collect_files(src), out, ByteTokenizer(), _opts())
    assert err.value.kind is ErrorKind.ALREADY_EXISTS and "--force" in err.value.message
    assert (out / "keep.txt").exists()
    prepare_dataset(collect_files(src), out, ByteTokenizer(), _opts(force=True))
    assert not (out / "keep.txt").exists() and (out / MANIFEST_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "src"]


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.txt").write_text("abc")
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(collect_files(src), tmp_path / "ds", ByteTokenizer(), _opts(seq_len=64))
    assert err.value.reason == "SOURCE_TOO_SMALL"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"seq_len": 1}, "BAD_SEQ_LEN"),
        ({"sequences_per_slice": 0}, "BAD_SLICE_SIZE"),
        ({"dataset_id": "../evil"}, "BAD_DATASET_ID"),
        ({"max_bytes": 0}, "BAD_MAX_BYTES"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, kw: dict[str, object], reason: str) -> None:
    src = _corpus(tmp_path)
    with pytest.raises(DataNodeError) as err:
        prepare_dataset(collect_files(src), tmp_path / "ds", ByteTokenizer(), _opts(**kw))
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == reason


def test_hf_tokenizer_file(tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    src = _corpus(tmp_path)
    tok = tokenizers.Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|endoftext|>"])
    tok.train([str(p) for p in collect_files(src)], trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    hf = load_tokenizer(path)
    manifest = prepare_dataset(collect_files(src), tmp_path / "ds", hf, _opts(seq_len=4))
    assert manifest.tokenizer == "hf:tokenizer.json" and len(manifest.tokenizer_sha256) == 64
    assert manifest.eot_id == tok.token_to_id("<|endoftext|>")
    ids = np.concatenate([load_file(str(tmp_path / "ds" / s.name))["input_ids"].reshape(-1) for s in manifest.slices])
    assert ids.max() < manifest.vocab_size
    assert manifest.eot_id in ids  # documents are separated


def test_missing_tokenizer_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataNodeError) as err:
        load_tokenizer(tmp_path / "nope.json")
    assert err.value.kind is ErrorKind.NOT_FOUND


def test_collect_files_is_sorted_and_filters(tmp_path: Path) -> None:
    src = _corpus(tmp_path)
    assert [p.relative_to(src).as_posix() for p in collect_files(src)] == ["a.txt", "b/c.txt", "b/d.md"]
    assert [p.name for p in collect_files(src, [".md"])] == ["d.md"]
    with pytest.raises(DataNodeError) as err:
        collect_files(tmp_path / "missing")
    assert err.value.kind is ErrorKind.NOT_FOUND


def test_stdlib_corpus_is_python_sources_without_site_packages() -> None:
    files = stdlib_corpus()
    assert len(files) > 100
    assert all(p.suffix == ".py" for p in files)
    assert not any("site-packages" in p.parts for p in files)
    assert stdlib_root() / "os.py" in files


def test_cli_group_prepares_the_stdlib_subset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="tendril")
    cli.add_parser(parser.add_subparsers())
    out = tmp_path / "std"
    args = parser.parse_args(
        ["data", "prepare", "@stdlib", str(out), "--max-bytes", "200000", "--seq-len", "64", "--no-progress"]
    )
    assert args.func(args) == 0
    manifest = load_manifest(out)
    assert manifest.source_bytes == 200000 and manifest.seq_len == 64 and manifest.dataset_id == "std"
    assert "prepared data set 'std'" in capsys.readouterr().out
    serve = parser.parse_args(["data", "serve", str(out), "--listen", "127.0.0.1:0"])
    assert serve.func is cli.run_serve and serve.dir == out and serve.gateway == ""


def test_cli_main_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["prepare", str(tmp_path / "missing"), str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("tendril data: source") and "Traceback" not in err
