"""tendril_models: tiny models of five tasks built from configs and loaded from save_pretrained folders
(no downloads), named slice tensors fed to them, and the clear errors of bad input."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tendril_models import DataSpec, ModelError, ModelReason, ModelSpec, get_task
from tendril_models.archive import unpack
from tendril_models.batches import accepted_inputs, load_slice, model_inputs
from tendril_models.build import build_model, remote_code_allowed
from tendril_models.source import fetch_checkpoint

SEQ = 16
VOCAB = 64
N = 6

TINY: dict[str, dict[str, Any]] = {
    "gpt2": {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 16},
    "llama": {
        "model_type": "llama",
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "hidden_size": 16,
        "intermediate_size": 32,
    },
    "bert": {
        "model_type": "bert",
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "hidden_size": 16,
        "intermediate_size": 32,
    },
    "t5": {"model_type": "t5", "num_layers": 1, "num_heads": 2, "d_model": 16, "d_kv": 8, "d_ff": 32},
    "vit": {
        "model_type": "vit",
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "hidden_size": 16,
        "intermediate_size": 32,
        "patch_size": 4,
    },
}


def _text(task: str, *, labels: str = "") -> DataSpec:
    tensors: dict[str, Any] = {
        "input_ids": {"dtype": "int32", "shape": [SEQ]},
        "attention_mask": {"dtype": "int8", "shape": [SEQ]},
    }
    if labels == "seq":
        tensors["labels"] = {"dtype": "int32", "shape": [SEQ]}
    elif labels == "class":
        tensors["labels"] = {"dtype": "int64", "shape": []}
    return DataSpec.from_manifest(
        {
            "format": "tendril-dataset/2",
            "task": task,
            "tensors": tensors,
            "vocab_size": VOCAB,
            "seq_len": SEQ,
            "pad_id": 1,
            "eot_id": 0,
            "num_labels": 3 if labels == "class" else 0,
            "label_names": ["a", "b", "c"] if labels == "class" else [],
        }
    )


IMAGE = DataSpec.from_manifest(
    {
        "format": "tendril-dataset/2",
        "task": "image-classification",
        "tensors": {
            "pixel_values": {"dtype": "float32", "shape": [3, 8, 8]},
            "labels": {"dtype": "int64", "shape": []},
        },
        "num_labels": 2,
    }
)


def _slice(data: DataSpec) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for name, info in data.tensors.items():
        shape = (N, *info["shape"])
        if name == "pixel_values":
            out[name] = torch.rand(shape, generator=g)
        elif name == "attention_mask":
            mask = torch.ones(shape, dtype=torch.int8)
            mask[:, -3:] = 0  # padding at the end
            out[name] = mask
        elif name == "labels" and not info["shape"]:
            out[name] = torch.randint(0, data.num_labels, shape, generator=g)
        else:
            out[name] = torch.randint(2, VOCAB, shape, generator=g).to(torch.int32)
    return out


CASES = [
    ("gpt2", "causal-lm", _text("causal-lm")),
    ("llama", "causal-lm", _text("causal-lm")),
    ("bert", "masked-lm", _text("masked-lm")),
    ("bert", "sequence-classification", _text("sequence-classification", labels="class")),
    ("t5", "seq2seq-lm", _text("seq2seq-lm", labels="seq")),
    ("vit", "image-classification", IMAGE),
]


def _loss(model: torch.nn.Module, data: DataSpec, task_name: str) -> torch.Tensor:
    task = get_task(task_name)
    kwargs = model_inputs(
        _slice(data),
        task,
        accepts=accepted_inputs(model),
        pad_id=data.pad_id,
        vocab_size=data.vocab_size,
        generator=torch.Generator().manual_seed(1),
    )
    return model(**kwargs).loss


@pytest.mark.parametrize(("arch", "task", "data"), CASES, ids=[f"{a}-{t}" for a, t, _ in CASES])
def test_build_train_save_and_load(arch: str, task: str, data: DataSpec, tmp_path: Path) -> None:
    spec = ModelSpec.from_dict({"task": task, "config": TINY[arch]})
    model = build_model(spec, data, seed=7)
    again = build_model(spec, data, seed=7)
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(a, b), f"θ0 differs at {name} for the same seed"
    if "input_ids" in data.tensors:
        assert model.config.vocab_size == VOCAB
    if task.endswith("classification"):
        assert model.config.num_labels == data.num_labels
    loss = _loss(model, data, task)
    assert torch.isfinite(loss)
    loss.backward()

    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    source = ModelSpec.from_dict({"task": task, "source": (tmp_path / "ckpt").as_uri()})
    loaded = build_model(source, data, seed=0, checkpoint_dir=tmp_path / "ckpt")
    assert type(loaded) is type(model)
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters(), strict=True):
        assert torch.equal(a, b), f"{name} differs after save_pretrained + build_model"


def test_causal_labels_mask_padding() -> None:
    batch = {"input_ids": torch.tensor([[5, 6, 1]], dtype=torch.int32), "attention_mask": torch.tensor([[1, 1, 0]])}
    out = model_inputs(batch, get_task("causal-lm"))
    assert out["input_ids"].dtype == torch.int64
    assert out["labels"].tolist() == [[5, 6, -100]]


def test_optional_tensors_the_model_does_not_take_are_left_out() -> None:
    batch = {
        "input_ids": torch.ones(2, 4, dtype=torch.int32),
        "labels": torch.tensor([0, 1]),
        "token_type_ids": torch.zeros(2, 4),
    }
    out = model_inputs(batch, get_task("sequence-classification"), accepts={"input_ids", "labels"})
    assert set(out) == {"input_ids", "labels"}


def test_missing_input_names_what_is_missing() -> None:
    with pytest.raises(ModelError) as err:
        model_inputs({"input_ids": torch.ones(2, 4)}, get_task("sequence-classification"))
    assert err.value.reason == ModelReason.INPUT_MISSING
    assert "labels" in err.value.message


def test_bad_task_names_the_accepted_ones() -> None:
    with pytest.raises(ModelError) as err:
        ModelSpec.from_dict({"task": "translation", "config": TINY["t5"]})
    assert err.value.reason == ModelReason.BAD_TASK
    assert "causal-lm" in err.value.message and "image-classification" in err.value.message


def test_the_data_set_must_have_the_tasks_inputs() -> None:
    masked = ModelSpec.from_dict({"task": "masked-lm", "config": TINY["bert"]})
    build_model(masked, _text("causal-lm"), seed=0)  # a text data set trains a masked LM too
    classify = ModelSpec.from_dict({"task": "sequence-classification", "config": TINY["bert"]})
    with pytest.raises(ModelError) as err:
        build_model(classify, _text("causal-lm"), seed=0)
    assert err.value.reason == ModelReason.INPUT_MISSING
    assert "['labels']" in err.value.message and "--task sequence-classification" in err.value.message


def test_pickle_only_checkpoint_is_refused(tmp_path: Path) -> None:
    data = _text("causal-lm")
    model = build_model(ModelSpec.from_dict({"config": TINY["gpt2"]}), data, seed=0)
    model.config.save_pretrained(tmp_path / "ckpt")
    torch.save(model.state_dict(), tmp_path / "ckpt" / "pytorch_model.bin")
    source = ModelSpec.from_dict({"source": (tmp_path / "ckpt").as_uri()})
    with pytest.raises(ModelError) as err:
        build_model(source, data, seed=0, checkpoint_dir=tmp_path / "ckpt")
    assert err.value.reason == ModelReason.PICKLE_ONLY_CHECKPOINT
    assert "SafeTensors" in err.value.message


def test_missing_checkpoint_and_remote_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _text("causal-lm")
    source = ModelSpec.from_dict({"source": "http://example.invalid/m.tar.gz"})
    with pytest.raises(ModelError) as err:
        build_model(source, data, seed=0, checkpoint_dir=tmp_path / "nothing")
    assert err.value.reason == ModelReason.CHECKPOINT_NOT_FOUND
    trusting = ModelSpec.from_dict({"source": "http://example.invalid/m.tar.gz", "trust_remote_code": True})
    with pytest.raises(ModelError) as err:
        build_model(trusting, data, seed=0, checkpoint_dir=tmp_path)
    assert err.value.reason == ModelReason.REMOTE_CODE_REFUSED
    assert "job.allow_remote_code" in err.value.message
    monkeypatch.setenv("TENDRIL_ALLOW_REMOTE_CODE", "1")
    assert remote_code_allowed()
    monkeypatch.setenv("TENDRIL_ALLOW_REMOTE_CODE", "0")
    assert not remote_code_allowed()


def test_checkpoint_with_auto_map_needs_trust(tmp_path: Path) -> None:
    data = _text("causal-lm")
    model = build_model(ModelSpec.from_dict({"config": TINY["gpt2"]}), data, seed=0)
    model.config.auto_map = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    model.save_pretrained(tmp_path)
    with pytest.raises(ModelError) as err:
        build_model(ModelSpec.from_dict({"source": tmp_path.as_uri()}), data, seed=0, checkpoint_dir=tmp_path)
    assert err.value.reason == ModelReason.REMOTE_CODE_REFUSED
    assert "trust_remote_code" in err.value.message


def test_data_too_big_for_the_model(tmp_path: Path) -> None:
    data = _text("causal-lm")
    with pytest.raises(ModelError) as err:
        build_model(ModelSpec.from_dict({"config": {**TINY["gpt2"], "vocab_size": 10}}), data, seed=0)
    assert err.value.reason == ModelReason.BAD_MODEL_CONFIG and "64 ids" in err.value.message
    with pytest.raises(ModelError) as err:
        build_model(ModelSpec.from_dict({"config": {**TINY["gpt2"], "n_positions": 8}}), data, seed=0)
    assert "16 tokens" in err.value.message


def test_model_spec_forms() -> None:
    old = ModelSpec.from_dict({"n_layer": 2.0, "n_head": 2, "n_embd": 64, "vocab_size": 257})
    assert old.task == "causal-lm"
    assert old.config == {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "vocab_size": 257}
    assert isinstance(old.config["n_layer"], int)
    assert ModelSpec.from_dict({}).model_config["model_type"] == "gpt2"
    spec = ModelSpec.from_dict({"task": "masked-lm", "source": "https://h/m.zip", "sha256": "AB" * 32})
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert spec.sha256 == "ab" * 32
    for bad in (
        {"task": "causal-lm", "n_layer": 2},
        {"config": {"n_layer": 2}},
        {"config": TINY["gpt2"], "source": "file:///m"},
        {"source": "ftp://h/m.tar"},
        {"source": "file:///m", "sha256": "xyz"},
        {"config": TINY["gpt2"], "trust_remote_code": "yes"},
    ):
        with pytest.raises(ModelError) as err:
            ModelSpec.from_dict(bad)
        assert err.value.reason == ModelReason.BAD_MODEL_CONFIG, bad


def test_data_spec_reads_v1_and_v2_manifests() -> None:
    v1 = DataSpec.from_manifest(
        {
            "format": "tendril-dataset/1",
            "tokenizer": "bytes",
            "vocab_size": 257,
            "eot_id": 256,
            "seq_len": 32,
            "tensor": "input_ids",
            "dtype": "int32",
            "slices": [],
        }
    )
    assert v1.task == "causal-lm"
    assert v1.tensors == {"input_ids": {"dtype": "int32", "shape": [32]}}
    assert (v1.vocab_size, v1.seq_len, v1.eot_id, v1.pad_id) == (257, 32, 256, -1)
    v2 = _text("sequence-classification", labels="class")
    assert DataSpec.from_dict(v2.to_dict()) == v2
    assert v2.label_names == ("a", "b", "c")
    with pytest.raises(ModelError) as err:
        DataSpec.from_dict({"task": "causal-lm", "tensors": {"input_ids": {"dtype": "str", "shape": [3]}}})
    assert err.value.reason == ModelReason.BAD_DATA_SPEC


def test_load_slice(tmp_path: Path) -> None:
    good = tmp_path / "slice-00000.safetensors"
    save_file(
        {"input_ids": torch.ones(3, 4, dtype=torch.int32), "labels": torch.zeros(3, dtype=torch.int64)}, str(good)
    )
    assert set(load_slice(good)) == {"input_ids", "labels"}
    bad = tmp_path / "slice-00001.safetensors"
    bad.write_bytes(b"not tensors")
    with pytest.raises(ModelError) as err:
        load_slice(bad)
    assert err.value.reason == ModelReason.BAD_SLICE
    uneven = tmp_path / "slice-00002.safetensors"
    save_file({"input_ids": torch.ones(3, 4), "labels": torch.zeros(2)}, str(uneven))
    with pytest.raises(ModelError):
        load_slice(uneven)


def _checkpoint(tmp_path: Path) -> Path:
    model = build_model(ModelSpec.from_dict({"config": TINY["llama"]}), _text("causal-lm"), seed=3)
    model.save_pretrained(tmp_path / "src" / "tiny-llama")
    return tmp_path / "src" / "tiny-llama"


def test_unpack_tar_and_zip(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path)
    tar = tmp_path / "m.tar.gz"
    with tarfile.open(tar, "w:gz") as archive:
        archive.add(src, arcname="tiny-llama")
    root = unpack(tar, tmp_path / "out-tar")
    assert (root / "config.json").is_file() and root.name == "tiny-llama"
    spec = ModelSpec.from_dict({"source": tar.as_uri()})
    build_model(spec, _text("causal-lm"), seed=0, checkpoint_dir=root)
    zipped = tmp_path / "m.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for f in src.iterdir():
            archive.write(f, f.name)
    assert (unpack(zipped, tmp_path / "out-zip") / "model.safetensors").is_file()
    assert unpack(src, tmp_path / "unused") == src


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt"])
def test_unpack_refuses_members_outside(tmp_path: Path, member: str) -> None:
    tar = tmp_path / "evil.tar"
    with tarfile.open(tar, "w") as archive:
        info = tarfile.TarInfo(member)
        info.size = 4
        archive.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(ModelError) as err:
        unpack(tar, tmp_path / "out")
    assert err.value.reason == ModelReason.BAD_ARCHIVE
    assert not (tmp_path / "evil.txt").exists()
    zipped = tmp_path / "evil.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(member, "evil")
    with pytest.raises(ModelError) as err:
        unpack(zipped, tmp_path / "out")
    assert err.value.reason == ModelReason.BAD_ARCHIVE


def test_unpack_refuses_links_and_garbage(tmp_path: Path) -> None:
    tar = tmp_path / "link.tar"
    with tarfile.open(tar, "w") as archive:
        info = tarfile.TarInfo("config.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(ModelError) as err:
        unpack(tar, tmp_path / "out")
    assert err.value.reason == ModelReason.BAD_ARCHIVE
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(ModelError) as err:
        unpack(junk, tmp_path / "out2")
    assert err.value.reason == ModelReason.BAD_ARCHIVE


class _Bridge:
    """FetchResource over a dict of URI -> local file, as the job bridge would answer."""

    def __init__(self, work_dir: Path, files: dict[str, Path]) -> None:
        self.work_dir = work_dir
        self.files = files
        self.fetched: list[str] = []

    async def fetch_resource(self, uri: str, *, dest: str = "", sha256: str = "") -> Any:
        import grpc

        from tendril_sdk import BridgeError, FetchedResource

        self.fetched.append(uri)
        if uri not in self.files:
            raise BridgeError(grpc.StatusCode.NOT_FOUND, f"{uri}: HTTP 404 Not Found", reason="RESOURCE_HTTP_ERROR")
        data = self.files[uri].read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 and sha256 != digest:
            raise BridgeError(grpc.StatusCode.DATA_LOSS, f"{uri}: sha256 is {digest}", reason="SHA256_MISMATCH")
        target = self.work_dir / "artifacts" / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return FetchedResource(target, f"artifacts/{dest}", len(data), digest)


async def test_fetch_a_checkpoint_folder_file_by_file(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path)
    base = "http://models.example/tiny-llama"
    files = {f"{base}/{f.name}": f for f in src.iterdir()}
    bridge = _Bridge(tmp_path / "job", files)
    weights_sha = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    spec = ModelSpec.from_dict({"source": base, "sha256": weights_sha})
    folder = await fetch_checkpoint(bridge, spec)  # type: ignore[arg-type]
    assert folder is not None and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    build_model(spec, _text("causal-lm"), seed=0, checkpoint_dir=folder)
    assert not any(uri.endswith(".bin") for uri in bridge.fetched), "pickle weights are never fetched"
    wrong = ModelSpec.from_dict({"source": base, "sha256": "0" * 64})
    with pytest.raises(ModelError) as err:
        await fetch_checkpoint(bridge, wrong)  # type: ignore[arg-type]
    assert err.value.reason == ModelReason.SOURCE_UNAVAILABLE and "sha256" in err.value.message
    # A folder with pickle weights only, and one with nothing at all.
    no_weights = {k: v for k, v in files.items() if not k.endswith(".safetensors")}
    with pytest.raises(ModelError) as err:
        await fetch_checkpoint(_Bridge(tmp_path / "job2", no_weights), spec)  # type: ignore[arg-type]
    assert err.value.reason == ModelReason.CHECKPOINT_NOT_FOUND and "SafeTensors weights only" in err.value.message
    with pytest.raises(ModelError) as err:
        await fetch_checkpoint(_Bridge(tmp_path / "job3", {}), spec)  # type: ignore[arg-type]
    assert err.value.reason == ModelReason.CHECKPOINT_NOT_FOUND and "config.json" in err.value.message


async def test_fetch_an_archive_and_unpack_it(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path)
    tar = tmp_path / "tiny.tgz"
    with tarfile.open(tar, "w:gz") as archive:
        archive.add(src, arcname="tiny-llama")
    uri = "https://models.example/tiny.tgz"
    bridge = _Bridge(tmp_path / "job", {uri: tar})
    spec = ModelSpec.from_dict({"source": uri, "sha256": hashlib.sha256(tar.read_bytes()).hexdigest()})
    folder = await fetch_checkpoint(bridge, spec)  # type: ignore[arg-type]
    assert folder is not None and folder.name == "tiny-llama" and (folder / "model.safetensors").is_file()
    assert not (tmp_path / "job" / "artifacts" / "checkpoint.download").exists(), "the archive is not kept"
    assert await fetch_checkpoint(bridge, ModelSpec()) is None  # type: ignore[arg-type]


def test_the_scheduler_reads_model_specs_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tendril_models, tendril.scheduler.jobconfig, tendril.scheduler.dispatch; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
