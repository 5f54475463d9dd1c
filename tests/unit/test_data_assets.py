"""A checkpoint served by the data node: `tendril data add-model` packs it (SafeTensors only),
``tendril-data://<dataset_id>/<asset>`` URIs name it, the scheduler checks the URI against the
run's data set and fills its sha256 in, and the job bridge's FetchResource streams it from the
data node (sha256 from the manifest, resource cache) with the right status for each failure."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tendril.bridge import assets as assets_module
from tendril.bridge.assets import DataNodeAssets
from tendril.bridge.core import WORK_SUBDIRS, BridgeCore
from tendril.bridge.errors import BridgeError
from tendril.bridge.remotes import Remotes
from tendril.bridge.resources import ResourceCache
from tendril.core.errors import ErrorKind
from tendril.core.ports import free_port
from tendril.data_node import cli as data_cli
from tendril.data_node.corpus import stdlib_corpus
from tendril.data_node.errors import DataNodeError, DatasetReason
from tendril.data_node.manifest import load_manifest
from tendril.data_node.models import add_model, checkpoint_files
from tendril.data_node.prepare import PrepareOptions, prepare_dataset
from tendril.data_node.service import DataNode, DataNodeOptions
from tendril.data_node.tokenizer import ByteTokenizer
from tendril.scheduler.dispatch import model_source
from tendril.scheduler.errors import SchedulerError, SchedulerRunReason
from tendril.scheduler.evaluation import AssetRef
from tendril.scheduler.export import Exporter
from tendril.scheduler.run import Dataset
from tendril_models.errors import ModelError
from tendril_models.spec import ModelSpec
from tendril_proto.data.v1 import data_pb2
from tendril_sdk.job import ExecutorRef, JobDescriptor
from tendril_sdk.reasons import BridgeReason
from tendril_sdk.uris import DataAssetURI, parse_data_uri

SHA = "ab" * 32


# -- URIs ----------------------------------------------------------------------------------------


def test_a_data_uri_names_a_data_set_and_an_asset() -> None:
    ref = parse_data_uri("tendril-data://My_Data.v2/model.tar")
    assert ref == DataAssetURI("My_Data.v2", "model.tar")
    assert str(ref) == "tendril-data://My_Data.v2/model.tar"


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("http://x/model.tar", "is not a tendril-data"),
        ("tendril-data:///model.tar", "data set id ''"),
        ("tendril-data://.hidden/model.tar", "data set id '.hidden'"),
        ("tendril-data://ds", "asset name ''"),
        ("tendril-data://ds/", "asset name ''"),
        ("tendril-data://ds/a/model.tar", "asset name 'a/model.tar'"),
        ("tendril-data://ds/../model.tar", "asset name '../model.tar'"),
        ("tendril-data://ds/model.tar?x=1", "parts a tendril-data:// URI cannot have"),
        ("tendril-data://user@ds/model.tar", "parts a tendril-data:// URI cannot have"),
    ],
)
def test_a_bad_data_uri_says_what_to_write(uri: str, words: str) -> None:
    with pytest.raises(ValueError, match="tendril-data://<dataset_id>/<asset name>") as err:
        parse_data_uri(uri)
    assert words in str(err.value)


def test_a_model_spec_takes_a_data_uri_of_an_archive() -> None:
    spec = ModelSpec.from_dict({"task": "causal-lm", "source": "tendril-data://ds/model.tar"})
    assert spec.source == "tendril-data://ds/model.tar" and not spec.config
    with pytest.raises(ModelError, match=re.escape("asset name 'a/b.tar'")):
        ModelSpec.from_dict({"source": "tendril-data://ds/a/b.tar"})
    with pytest.raises(ModelError, match="is not an archive"):
        ModelSpec.from_dict({"source": "tendril-data://ds/model.safetensors"})
    with pytest.raises(ModelError, match="tendril-data://<dataset_id>/<asset name>"):
        ModelSpec.from_dict({"source": "ftp://host/model.tar"})


# -- packing -------------------------------------------------------------------------------------


def _checkpoint(folder: Path, *, weights: bool = True, pickle: bool = False, config: bool = True) -> Path:
    folder.mkdir(parents=True)
    if config:
        (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    if weights:
        (folder / "model.safetensors").write_bytes(b"weights" * 100)
    if pickle:
        (folder / "pytorch_model.bin").write_bytes(b"pickle")
        (folder / "training_args.pt").write_bytes(b"pickle")
    (folder / "tokenizer.json").write_text("{}")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_text("hidden")
    return folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    out = tmp_path / "data"
    options = PrepareOptions(seq_len=32, max_bytes=40_000, dataset_id="ds", progress=False, sequences_per_slice=256)
    prepare_dataset(stdlib_corpus(), out, ByteTokenizer(), options)
    return out


def test_add_model_packs_safetensors_and_lists_the_asset(tmp_path: Path, dataset: Path) -> None:
    model = _checkpoint(tmp_path / "ckpt", pickle=True)
    entry = add_model(dataset, model)
    assert (entry.name, entry.kind) == ("model.tar", "model")
    tar_path = dataset / "model.tar"
    assert entry.sha256 == hashlib.sha256(tar_path.read_bytes()).hexdigest()
    assert entry.size_bytes == tar_path.stat().st_size
    with tarfile.open(tar_path) as tar:
        # pickle weights and hidden files stay out; config, weights and tokenizer files go in
        assert sorted(tar.getnames()) == ["config.json", "model.safetensors", "tokenizer.json"]
        assert all(m.isfile() and m.mtime == 0 for m in tar.getmembers())
    manifest = load_manifest(dataset)
    assert manifest.asset("model") == entry
    assert manifest.asset("tokenizer") is not None  # the tokenizer asset stays
    assert not [p for p in dataset.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_add_model_refuses_pickle_only_and_incomplete_folders(tmp_path: Path, dataset: Path) -> None:
    before = (dataset / "manifest.json").read_text()
    cases = [
        (_checkpoint(tmp_path / "pickled", weights=False, pickle=True), DatasetReason.PICKLE_ONLY_MODEL, "pickle"),
        (_checkpoint(tmp_path / "noconfig", config=False), DatasetReason.BAD_MODEL, "no config.json"),
        (_checkpoint(tmp_path / "noweights", weights=False), DatasetReason.BAD_MODEL, "no SafeTensors weights"),
        (tmp_path / "missing", DatasetReason.MODEL_NOT_FOUND, "is not a folder"),
    ]
    for folder, reason, words in cases:
        with pytest.raises(DataNodeError) as err:
            add_model(dataset, folder)
        assert err.value.reason == reason and words in err.value.message, err.value.message
    with pytest.raises(DataNodeError) as err:
        checkpoint_files(tmp_path / "pickled")
    assert "save_pretrained(dir)" in err.value.message
    assert (dataset / "manifest.json").read_text() == before and not (dataset / "model.tar").exists()


def test_add_model_replaces_only_with_force_and_never_another_file(tmp_path: Path, dataset: Path) -> None:
    first = add_model(dataset, _checkpoint(tmp_path / "one"))
    two = _checkpoint(tmp_path / "two")
    (two / "generation_config.json").write_text("{}")
    with pytest.raises(DataNodeError) as err:
        add_model(dataset, two)
    assert err.value.reason == DatasetReason.MODEL_EXISTS and "--force" in err.value.message
    second = add_model(dataset, two, force=True)
    assert second.sha256 != first.sha256
    assert [a.name for a in load_manifest(dataset).assets].count("model.tar") == 1
    for name in ("tokenizer.tar", "slice-00000.safetensors"):
        with pytest.raises(DataNodeError) as err:
            add_model(dataset, two, name=name, force=True)
        assert err.value.reason in (DatasetReason.MODEL_EXISTS, DatasetReason.BAD_MODEL)
    with pytest.raises(DataNodeError, match=re.escape("ending in .tar")):
        add_model(dataset, two, name="../x.tar")
    other = add_model(dataset, two, name="base-model.tar")
    assert {a.name for a in load_manifest(dataset).assets} == {"tokenizer.tar", "model.tar", other.name}


def test_the_add_model_command_prints_the_uri_or_one_clear_line(
    tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pickled = _checkpoint(tmp_path / "pickled", weights=False, pickle=True)
    assert data_cli.main(["add-model", str(dataset), str(pickled)]) == 2
    assert "pickle weights only" in capsys.readouterr().err
    assert data_cli.main(["add-model", str(dataset), str(_checkpoint(tmp_path / "ok"))]) == 0
    assert 'source = "tendril-data://ds/model.tar"' in capsys.readouterr().out


# -- the scheduler -------------------------------------------------------------------------------


def _dataset(assets: tuple[AssetRef, ...] = (AssetRef("model.tar", 10, SHA, "model"),)) -> Dataset:
    return Dataset("ds", "127.0.0.1:1", (), 32, 257, assets=assets)


def test_the_scheduler_fills_the_sha256_of_a_data_source_from_the_manifest() -> None:
    model = {"task": "causal-lm", "config": {}, "source": "tendril-data://ds/model.tar", "sha256": ""}
    assert model_source(model, _dataset())["sha256"] == SHA
    assert model_source({**model, "sha256": SHA.upper()}, _dataset())["sha256"] == SHA
    other = {"task": "causal-lm", "config": {"model_type": "gpt2"}, "source": "", "sha256": ""}
    assert model_source(other, _dataset()) is other


@pytest.mark.parametrize(
    ("source", "sha256", "words"),
    [
        ("tendril-data://other/model.tar", "", "the run trains on 'ds'"),
        ("tendril-data://ds/missing.tar", "", "has no asset 'missing.tar' (its assets: model.tar (model))"),
        ("tendril-data://ds/model.tar", "cd" * 32, "differs from"),
    ],
)
def test_the_scheduler_refuses_a_data_source_that_does_not_fit_the_data_set(
    source: str, sha256: str, words: str
) -> None:
    with pytest.raises(SchedulerError) as err:
        model_source({"source": source, "sha256": sha256}, _dataset())
    assert err.value.reason == SchedulerRunReason.BAD_MODEL_SOURCE
    assert err.value.kind is ErrorKind.FAILED_PRECONDITION and words in err.value.message


async def test_the_export_never_takes_a_model_asset_for_the_tokenizer(tmp_path: Path) -> None:
    dataset = Dataset("ds", "127.0.0.1:1", (), 0, 0, assets=(AssetRef("model.tar", 10, SHA, "model"),))
    exporter = Exporter(tmp_path, dataset, {"model": {"task": "causal-lm"}}, channel=_no_channel, run_id="r")
    assert await exporter.assets_dir() is None
    assert await exporter.source_file() is None  # a spec without a tendril-data source fetches nothing


def _no_channel(address: str) -> object:
    raise AssertionError(f"nothing is fetched from {address}")


# -- the bridge ----------------------------------------------------------------------------------


def _core(tmp_path: Path, job_id: str, config: dict[str, object], cache: ResourceCache | None) -> BridgeCore:
    work = tmp_path / job_id
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir(parents=True)
    job = JobDescriptor(
        job_id=job_id,
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("train", "diloco"),
        config=config,
        work_dir=work,
        socket_path=work / "bridge.sock",
    )
    return BridgeCore(job, resources=cache)


@pytest.fixture
async def node(tmp_path: Path, dataset: Path) -> AsyncIterator[tuple[str, str]]:
    entry = add_model(dataset, _checkpoint(tmp_path / "ckpt"))
    server = DataNode(DataNodeOptions(folder=dataset, listen=f"127.0.0.1:{free_port()}"))
    await server.start()
    try:
        yield server.address, entry.sha256
    finally:
        await server.stop()


async def _fetch(core: BridgeCore, remotes: Remotes, uri: str, sha256: str = "") -> object:
    return await core.fetch_resource(uri, "", sha256, assets=lambda address: DataNodeAssets(remotes, address))


async def test_the_bridge_streams_a_data_node_asset_and_caches_it(tmp_path: Path, node: tuple[str, str]) -> None:
    address, sha = node
    cache = ResourceCache(tmp_path / "cache" / ".resources", 1 << 30)
    remotes = Remotes("worker-test")
    try:
        one = _core(tmp_path, "job-1", {"data_node": address}, cache)
        fetched = await one.fetch_resource(
            "tendril-data://ds/model.tar", "", "", assets=lambda a: DataNodeAssets(remotes, a)
        )
        assert fetched.path == one.root / "artifacts" / "model.tar" and fetched.sha256 == sha
        assert hashlib.sha256(fetched.path.read_bytes()).hexdigest() == sha
        assert (cache.root / sha).is_file()  # kept in the worker's resource cache
        # a second job that names the sha256 takes the cached file, even with the data node gone
        two = _core(tmp_path, "job-2", {"data_node": f"127.0.0.1:{free_port()}"}, cache)
        again = await two.fetch_resource(
            "tendril-data://ds/model.tar", "ckpt/model.tar", sha, assets=lambda a: DataNodeAssets(remotes, a)
        )
        assert again.path.read_bytes() == fetched.path.read_bytes()
    finally:
        await remotes.close()


async def test_the_bridge_answers_each_data_node_failure_with_its_status(tmp_path: Path, node: tuple[str, str]) -> None:
    address, sha = node
    remotes = Remotes("worker-test")
    core = _core(tmp_path, "job-1", {"data_node": address}, None)
    cases: list[tuple[BridgeCore, str, str, ErrorKind, str, str]] = [
        (
            core,
            "tendril-data://ds/nope.tar",
            "",
            ErrorKind.NOT_FOUND,
            BridgeReason.ASSET_NOT_FOUND,
            "model.tar (model)",
        ),
        (core, "tendril-data://other/model.tar", "", ErrorKind.NOT_FOUND, BridgeReason.ASSET_NOT_FOUND, "'other'"),
        (core, "tendril-data://ds/a/b.tar", "", ErrorKind.INVALID_ARGUMENT, BridgeReason.BAD_URI, "asset name"),
        (core, "tendril-data://ds/model.tar", "cd" * 32, ErrorKind.DATA_LOSS, BridgeReason.SHA256_MISMATCH, sha),
        (
            _core(tmp_path, "job-2", {}, None),
            "tendril-data://ds/model.tar",
            "",
            ErrorKind.FAILED_PRECONDITION,
            BridgeReason.JOB_CONFIG_MISSING,
            "data_node",
        ),
        (
            _core(tmp_path, "job-3", {"data_node": f"127.0.0.1:{free_port()}"}, None),
            "tendril-data://ds/model.tar",
            "",
            ErrorKind.UNAVAILABLE,
            BridgeReason.DATA_NODE_UNREACHABLE,
            "does not answer",
        ),
    ]
    try:
        for bridge, uri, expected, kind, reason, words in cases:
            with pytest.raises(BridgeError) as err:
                await _fetch(bridge, remotes, uri, expected)
            assert (err.value.kind, err.value.reason) == (kind, reason), (uri, err.value.message)
            assert words in err.value.message, err.value.message
            assert not [p for p in (bridge.root / "artifacts").rglob("*") if p.is_file()]  # nothing kept
    finally:
        await remotes.close()


class _Call:
    """A FetchSlice call of a fake data node: ``chunks`` from the request's offset, then ``error``."""

    def __init__(self, chunks: list[tuple[int, bytes]], error: grpc.StatusCode | None) -> None:
        self.chunks, self.error = chunks, error

    def __aiter__(self) -> AsyncIterator[data_pb2.FetchSliceResponse]:
        return self._run()

    async def _run(self) -> AsyncIterator[data_pb2.FetchSliceResponse]:
        for offset, data in self.chunks:
            yield data_pb2.FetchSliceResponse(offset=offset, data=data, total_bytes=6)
        if self.error is not None:
            raise grpc.aio.AioRpcError(self.error, grpc.aio.Metadata(), grpc.aio.Metadata(), details="cut")

    def cancel(self) -> bool:
        return True


class _Stub:
    def __init__(self, calls: list[_Call]) -> None:
        self.calls, self.offsets = calls, []

    def FetchSlice(self, request: data_pb2.FetchSliceRequest) -> _Call:
        self.offsets.append(request.offset)
        return self.calls.pop(0)


async def test_a_broken_asset_stream_resumes_from_the_byte_it_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets_module, "RESUME_PAUSE_SECONDS", 0.0)
    remotes = Remotes("worker-test")
    ref = DataAssetURI("ds", "model.tar")
    try:
        source = DataNodeAssets(remotes, "127.0.0.1:1")
        stub = _Stub(
            [
                _Call([(0, b"abc")], grpc.StatusCode.UNAVAILABLE),
                _Call([], grpc.StatusCode.UNAVAILABLE),
                _Call([(3, b"def")], None),
            ]
        )
        source._stub = stub  # type: ignore[assignment]
        assert b"".join([chunk async for chunk in source.chunks(ref)]) == b"abcdef"
        assert stub.offsets == [0, 3, 3]

        stub = _Stub([_Call([], grpc.StatusCode.UNAVAILABLE) for _ in range(assets_module.RESUME_ATTEMPTS + 1)])
        source._stub = stub  # type: ignore[assignment]
        with pytest.raises(BridgeError) as err:
            _ = [chunk async for chunk in source.chunks(ref)]
        assert (err.value.kind, err.value.reason) == (ErrorKind.UNAVAILABLE, BridgeReason.RESOURCE_TRANSFER)
        assert len(stub.offsets) == assets_module.RESUME_ATTEMPTS + 1

        source._stub = _Stub([_Call([(2, b"xyz")], None)])  # type: ignore[assignment]
        with pytest.raises(BridgeError, match="expected 0") as err:
            _ = [chunk async for chunk in source.chunks(ref)]
        assert err.value.reason == BridgeReason.RESOURCE_TRANSFER
    finally:
        await remotes.close()
