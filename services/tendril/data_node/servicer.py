"""The data node's gRPC servicer: GetManifest and FetchSlice (slices, held-out slices, assets) over a
:class:`SliceStore`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import grpc

from tendril.core.server import CHUNK_BYTES
from tendril.data_node.manifest import DatasetManifest, SliceEntry
from tendril.data_node.store import SliceStore
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc


def manifest_proto(manifest: DatasetManifest, dataset_id: str) -> data_pb2.Manifest:
    """The wire form of a manifest, under the id the node serves it as."""
    whole = manifest.to_dict()
    whole["dataset_id"] = dataset_id
    return data_pb2.Manifest(
        dataset_id=dataset_id,
        slices=[_slice_info(s) for s in manifest.slices],
        tokenizer=manifest.tokenizer,
        seq_len=manifest.seq_len,
        vocab_size=manifest.vocab_size,
        task=manifest.task,
        eval_slices=[_slice_info(s) for s in manifest.eval_slices],
        assets=[
            data_pb2.AssetInfo(name=a.name, size_bytes=a.size_bytes, sha256=a.sha256, kind=a.kind)
            for a in manifest.assets
        ],
        manifest_json=json.dumps(whole, sort_keys=True),
    )


def _slice_info(s: SliceEntry) -> data_pb2.SliceInfo:
    return data_pb2.SliceInfo(name=s.name, size_bytes=s.size_bytes, sha256=s.sha256, num_sequences=s.num_sequences)


class DataNodeServicer(data_pb2_grpc.DataNodeServiceServicer):
    """Serves one prepared data set."""

    def __init__(self, store: SliceStore, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.store = store
        self.chunk_bytes = chunk_bytes
        self._manifest = manifest_proto(store.manifest, store.dataset_id)

    async def GetManifest(
        self, request: data_pb2.GetManifestRequest, context: grpc.aio.ServicerContext
    ) -> data_pb2.GetManifestResponse:
        self.store.check_dataset(request.dataset_id)
        return data_pb2.GetManifestResponse(manifest=self._manifest)

    async def FetchSlice(
        self, request: data_pb2.FetchSliceRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[data_pb2.FetchSliceResponse]:
        entry = self.store.resolve(request.dataset_id, request.slice_name, request.offset)
        # closing(): a cancelled stream releases its mmap at once, not when garbage collected.
        with contextlib.closing(self.store.chunks(entry, request.offset, self.chunk_bytes)) as chunks:
            for offset, data in chunks:
                yield data_pb2.FetchSliceResponse(offset=offset, data=data, total_bytes=entry.size_bytes)
