"""The trained model as a directory people use: ``<out_dir>/model/`` holds config.json +
model.safetensors (``save_pretrained``) and the tokenizer or image processor the data set was
prepared with, so ``AutoModelFor<Task>.from_pretrained(<out_dir>/model)`` loads it. A LoRA run
(``[training.finetune]``) exports its adapter to ``<out_dir>/adapter/`` (adapter_config.json +
adapter_model.safetensors and the tokenizer: ``PeftModel.from_pretrained(base, <out_dir>/adapter)``),
and with ``merge = true`` also the base with the adapter merged into it to ``<out_dir>/model/``.

θ comes from the parameter server (PullParameters), the architecture from the run's model spec
(the same one every training job builds), the tokenizer from the data set's asset, fetched
from the data node (FetchSlice by name) and sha256-checked; a ``tendril-data://`` source
checkpoint is fetched from the data node the same way. The export runs at the end of the
run and every ``[evaluation] export_every_rounds`` rounds; torch and transformers are imported
only here, inside the functions, so a scheduler that never exports does not load them.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tarfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc

from tendril.core.logs import get_logger
from tendril.core.tensorstream import TensorStreamError
from tendril.scheduler.evaluation import AssetRef, data_summary, model_spec
from tendril.scheduler.fragments import pull_theta
from tendril.scheduler.run import Dataset
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_sdk.uris import DATA_SCHEME, parse_data_uri

log = get_logger("tendril.scheduler.export")

MODEL_DIR = "model"
ADAPTER_DIR = "adapter"  # a LoRA run's adapter
WORK_DIR = ".export"  # under out_dir: the fetched assets and the θ being exported
ASSET_KINDS = ("tokenizer", "processor")
MODEL_KIND = "model"  # a checkpoint added with `tendril data add-model`: never the tokenizer
BYTES = "bytes"  # the manifest's name of Tendril's byte tokenizer
FETCH_TIMEOUT_SECONDS = 120.0


class ExportError(Exception):
    """The model could not be exported; the run goes on (model.safetensors is still written)."""


async def fetch_asset(channel: grpc.aio.Channel, dataset: Dataset, asset: AssetRef, dest: Path) -> Path:
    """Stream one asset file of the data set from its data node into ``dest`` (sha256-checked)."""
    stub = data_pb2_grpc.DataNodeServiceStub(channel)
    digest = hashlib.sha256()
    part = dest.with_name(f".{dest.name}.part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with part.open("wb") as out:
            request = data_pb2.FetchSliceRequest(dataset_id=dataset.dataset_id, slice_name=asset.name)
            async for chunk in stub.FetchSlice(request, timeout=FETCH_TIMEOUT_SECONDS):
                out.write(chunk.data)
                digest.update(chunk.data)
    except grpc.aio.AioRpcError as exc:
        part.unlink(missing_ok=True)
        raise ExportError(
            f"cannot fetch {asset.name} from the data node at {dataset.data_node_address}: "
            f"{exc.code().name} {exc.details()}"
        ) from exc
    if asset.sha256 and digest.hexdigest() != asset.sha256.lower():
        part.unlink(missing_ok=True)
        raise ExportError(f"{asset.name} from the data node does not match its sha256 in the manifest")
    part.replace(dest)
    return dest


def unpack_tar(archive: Path, into: Path) -> Path:
    """Extract a tar (safely: no links, nothing outside ``into``); returns the folder holding its files."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ExportError(f"{archive.name} is not a readable tar archive: {exc}") from exc
    entries = [p for p in into.iterdir() if not p.name.startswith(".")]
    # NOTE: a tar of a folder (tokenizer/...) and a tar of its files both work.
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into


def fetch_source(uri: str, sha256: str, into: Path) -> Path:
    """A checkpoint named by ``file://`` or ``http(s)://`` as a local file or folder (blocking)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        path = Path(urllib.parse.unquote(parsed.path))
        if not path.exists():
            raise ExportError(f"model source {uri}: no such file or folder on the scheduler's host")
        local = path
    elif parsed.scheme in ("http", "https"):
        into.mkdir(parents=True, exist_ok=True)
        local = into / (Path(parsed.path).name or "checkpoint")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(uri, timeout=FETCH_TIMEOUT_SECONDS) as source, local.open("wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
        except OSError as exc:
            raise ExportError(f"model source {uri}: download failed ({exc})") from exc
        if sha256 and digest.hexdigest() != sha256.lower():
            raise ExportError(f"model source {uri}: sha256 is {digest.hexdigest()}, expected {sha256.lower()}")
    else:
        raise ExportError(
            f"model source {uri}: the scheduler exports models from file://, http(s):// and {DATA_SCHEME}:// "
            "sources only"
        )
    from tendril_models.archive import checkpoint_root, unpack

    return checkpoint_root(local) if local.is_dir() else unpack(local, into / "unpacked")


def byte_tokenizer(folder: Path) -> Path:
    """Tendril's byte tokenizer as a tokenizer.json in ``folder`` (blocking).

    NOTE: tendril_models is imported here, in the worker thread: importing torch on the event
    loop would stall the scheduler for seconds, long enough for its leases to run out.
    """
    from tendril_models.export import write_byte_tokenizer

    return write_byte_tokenizer(folder)


def write_model(
    theta: Path,
    out_dir: Path,
    *,
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    seed: int,
    assets_dir: Path | None,
    work: Path,
    source_file: Path | None = None,
    finetune: Mapping[str, Any] | None = None,
) -> Path:
    """Build the run's model, load θ into it and export it (blocking: torch). ``source_file``: the
    source checkpoint already fetched (a data node's asset), else the source URI is fetched here.

    ``finetune`` (a LoRA run): θ is the adapter; it is exported to ``out_dir/adapter`` and, when
    the spec says ``merge``, the merged model to ``out_dir/model``. Returns the folder written
    (the adapter's for a LoRA run); ``out_dir`` is the run's out dir for a LoRA run, else the
    model's folder itself.
    """
    from tendril_models.archive import unpack
    from tendril_models.build import build_model
    from tendril_models.export import export, load_theta
    from tendril_models.finetune import FinetuneSpec
    from tendril_models.spec import DataSpec, ModelSpec

    spec = ModelSpec.from_dict(model_spec(model))
    data_spec = DataSpec.from_dict(data)
    lora = FinetuneSpec.from_dict(finetune) if finetune is not None else None
    if source_file is not None:
        checkpoint: Path | None = unpack(source_file, work / "source" / "unpacked")
    else:
        checkpoint = fetch_source(spec.source, spec.sha256, work / "source") if spec.source else None
    built = build_model(
        spec, data_spec, seed=seed, checkpoint_dir=checkpoint, allow_remote_code=spec.trust_remote_code, finetune=lora
    )
    load_theta(built, theta)
    tokens = {"eos_token_id": data_spec.eot_id, "pad_token_id": data_spec.pad_id}
    if lora is None:
        return export(built, out_dir, assets_dir=assets_dir, **tokens)
    adapter = export(built, out_dir / ADAPTER_DIR, assets_dir=assets_dir, **tokens)
    if lora.merge:
        export(built.merge_and_unload(), out_dir / MODEL_DIR, assets_dir=assets_dir, **tokens)
    return adapter


class Exporter:
    """Exports the run's model to ``<out_dir>/model/``; one export at a time."""

    def __init__(
        self,
        out_dir: Path,
        dataset: Dataset,
        train: Mapping[str, Any],
        *,
        channel: Callable[[str], grpc.aio.Channel],
        run_id: str,
    ) -> None:
        self.out_dir = out_dir
        self.dataset = dataset
        self.train = dict(train)
        self.channel = channel
        self.run_id = run_id
        self.work = out_dir / WORK_DIR
        self._assets: Path | None = None
        self._assets_read = False
        self._source: Path | None = None  # the tendril-data:// source checkpoint, once fetched
        self._lock = asyncio.Lock()
        self.exported_round: int | None = None  # the round after which θ was last exported

    async def assets_dir(self) -> Path | None:
        """The data set's tokenizer or processor folder (fetched once); None when it has none."""
        if self._assets_read:
            return self._assets
        asset = next((a for a in self.dataset.assets if a.kind in ASSET_KINDS), None)
        if asset is None:
            asset = next((a for a in self.dataset.assets if a.name.endswith(".tar") and a.kind != MODEL_KIND), None)
        if asset is not None:
            tar = await fetch_asset(
                self.channel(self.dataset.data_node_address), self.dataset, asset, self.work / asset.name
            )
            self._assets = await asyncio.to_thread(unpack_tar, tar, self.work / "assets")
        elif self.dataset.tokenizer == BYTES:
            # NOTE: a data set of Tendril's byte tokenizer that carries no tokenizer file.
            self._assets = await asyncio.to_thread(byte_tokenizer, self.work / "assets")
        self._assets_read = True
        return self._assets

    async def export_theta(self, theta: Path, theta_round: int) -> Path:
        """Export θ stored at ``theta`` (θ that starts round ``theta_round``: after round ``theta_round - 1``)."""
        async with self._lock:
            return await self._export(theta, theta_round)

    async def export_now(self, parameter_server: str) -> Path:
        """Pull the run's current θ from the parameter server and export it."""
        async with self._lock:  # NOTE: one pull and export at a time: they share the θ file
            theta = self.work / "theta.safetensors"
            self.work.mkdir(parents=True, exist_ok=True)
            try:
                theta_round = await pull_theta(
                    self.channel(parameter_server),
                    run_id=self.run_id,
                    fragments=int(self.train.get("fragments", 0)),
                    dest=theta,
                )
            except TensorStreamError as exc:
                raise ExportError(f"cannot pull θ from the parameter server: {exc.message}") from exc
            return await self._export(theta, theta_round)

    async def source_file(self) -> Path | None:
        """The run's ``tendril-data://`` source checkpoint, fetched from the data node once; None for other sources."""
        source = str(model_spec(self.train["model"]).get("source", ""))
        if not source.startswith(f"{DATA_SCHEME}:"):
            return None
        if self._source is None:
            name = parse_data_uri(source).name
            asset = next((a for a in self.dataset.assets if a.name == name), None)
            if asset is None:
                raise ExportError(f"model source {source}: the data set lists no asset {name!r}")
            self._source = await fetch_asset(
                self.channel(self.dataset.data_node_address), self.dataset, asset, self.work / "source" / asset.name
            )
        return self._source

    async def _export(self, theta: Path, theta_round: int) -> Path:
        assets = await self.assets_dir()
        source = await self.source_file()
        finetune = self.train.get("finetune")
        path = await asyncio.to_thread(
            write_model,
            theta,
            self.out_dir if finetune is not None else self.out_dir / MODEL_DIR,
            model=self.train["model"],
            data=data_summary(self.train, self.dataset),
            seed=int(self.train.get("seed", 0)),
            assets_dir=assets,
            work=self.work,
            source_file=source,
            finetune=finetune,
        )
        self.exported_round = theta_round - 1
        log.info(
            "model.exported",
            path=str(path),
            after_round=theta_round - 1,
            tokenizer=bool(assets),
            adapter=finetune is not None,
        )
        return path

    async def try_export(self, export: Callable[[], Any], *, when: str) -> bool:
        """Run one export; a failure is logged (the run goes on), never raised."""
        try:
            await export()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("model.export_failed", when=when, error=str(exc) or repr(exc))
            return False
        return True
