"""The data node of a job's data set, as the source of ``tendril-data://`` resources (the adapter).

GetManifest tells whether the node serves the URI's data set and which sha256 its asset has;
FetchSlice streams the asset by name. A node that does not answer is DATA_NODE_UNREACHABLE
(UNAVAILABLE: retry), a data set or asset it does not have is ASSET_NOT_FOUND (NOT_FOUND), a
stream that breaks off is resumed from the byte it reached, and RESOURCE_TRANSFER (UNAVAILABLE)
when it keeps breaking; any other refusal is passed on with
the node's own reason (:func:`~tendril.bridge.remotes.calling`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from tendril.bridge.errors import BridgeError
from tendril.bridge.remotes import Remotes, calling
from tendril.core.calls import CURABLE_CODES
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril_proto.data.v1 import data_pb2, data_pb2_grpc
from tendril_sdk.reasons import BridgeReason
from tendril_sdk.uris import DataAssetURI

MANIFEST_TIMEOUT_SECONDS = 10.0
RESUME_ATTEMPTS = 3  # a broken stream is resumed from its offset this many times in a row without progress
RESUME_PAUSE_SECONDS = 0.5  # times the attempt number
log = get_logger("tendril.bridge.assets")
_UNREACHABLE = CURABLE_CODES  # "not now" or a broken connection: retrying may cure it


class DataNodeAssets:
    """The assets of the data node at ``address`` (the job's ``config.data_node``)."""

    def __init__(self, remotes: Remotes, address: str) -> None:
        self.address = address
        self._stub = data_pb2_grpc.DataNodeServiceStub(remotes.channel(address))

    def _unreachable(self, ref: DataAssetURI, exc: grpc.aio.AioRpcError) -> BridgeError:
        return BridgeError(
            ErrorKind.UNAVAILABLE,
            f"{ref}: the data node at {self.address} does not answer ({exc.code().name}: {exc.details()}); "
            "check that `tendril data serve` runs there, then retry",
            reason=BridgeReason.DATA_NODE_UNREACHABLE,
            metadata={"data_node": self.address},
        )

    async def sha256(self, ref: DataAssetURI) -> str:
        """The sha256 the node's manifest lists for the asset; ASSET_NOT_FOUND when it has none of that name."""
        request = data_pb2.GetManifestRequest(dataset_id=ref.dataset_id)
        async with calling(f"data node at {self.address}"):
            try:
                reply = await self._stub.GetManifest(request, timeout=MANIFEST_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _UNREACHABLE:
                    raise self._unreachable(ref, exc) from exc
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    raise BridgeError(
                        ErrorKind.NOT_FOUND,
                        f"{ref}: the data node at {self.address} does not serve data set {ref.dataset_id!r} "
                        f"({exc.details()}); name the job's data set in the URI",
                        reason=BridgeReason.ASSET_NOT_FOUND,
                        metadata={"data_node": self.address},
                    ) from exc
                raise
        manifest = reply.manifest
        for asset in manifest.assets:
            if asset.name == ref.name:
                return str(asset.sha256).lower()
        names = ", ".join(f"{a.name} ({a.kind})" for a in manifest.assets) or "none"
        raise BridgeError(
            ErrorKind.NOT_FOUND,
            f"{ref}: data set {manifest.dataset_id!r} at the data node {self.address} has no asset {ref.name!r} "
            f"(its assets: {names}); add a model with `tendril data add-model DATASET_DIR MODEL_DIR` and restart "
            "the data node",
            reason=BridgeReason.ASSET_NOT_FOUND,
            metadata={"data_node": self.address},
        )

    async def chunks(self, ref: DataAssetURI) -> AsyncIterator[bytes]:
        """The asset's bytes in order; a stream that breaks off is resumed from the byte it reached
        (RESUME_ATTEMPTS times in a row without progress, then RESOURCE_TRANSFER)."""
        offset, failures = 0, 0
        while True:
            request = data_pb2.FetchSliceRequest(dataset_id=ref.dataset_id, slice_name=ref.name, offset=offset)
            call = self._stub.FetchSlice(request)
            try:
                async with calling(f"data node at {self.address}"):
                    try:
                        async for chunk in call:
                            if chunk.offset != offset:
                                raise BridgeError(
                                    ErrorKind.UNAVAILABLE,
                                    f"{ref}: the data node at {self.address} sent bytes from offset {chunk.offset}, "
                                    f"expected {offset}; nothing was kept, retry",
                                    reason=BridgeReason.RESOURCE_TRANSFER,
                                    metadata={"data_node": self.address},
                                )
                            offset += len(chunk.data)
                            failures = 0
                            yield chunk.data
                        return
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() is grpc.StatusCode.NOT_FOUND:
                            raise BridgeError(
                                ErrorKind.NOT_FOUND,
                                f"{ref}: the data node at {self.address} no longer serves it ({exc.details()})",
                                reason=BridgeReason.ASSET_NOT_FOUND,
                                metadata={"data_node": self.address},
                            ) from exc
                        if exc.code() not in _UNREACHABLE:
                            raise
                        failures += 1
                        if failures > RESUME_ATTEMPTS:
                            raise BridgeError(
                                ErrorKind.UNAVAILABLE,
                                f"{ref}: the stream from the data node at {self.address} broke off "
                                f"{failures} times at byte {offset} ({exc.code().name}: {exc.details()}); nothing was "
                                "kept, retry",
                                reason=BridgeReason.RESOURCE_TRANSFER,
                                metadata={"data_node": self.address},
                            ) from exc
                        log.info("bridge.asset_resumed", uri=str(ref), offset=offset, code=exc.code().name)
                        await asyncio.sleep(RESUME_PAUSE_SECONDS * failures)
            finally:
                call.cancel()
