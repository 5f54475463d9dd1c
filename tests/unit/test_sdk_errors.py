"""tendril_sdk.errors and tendril_sdk.reasons: the reason of a rich status, BridgeError, and the
reason catalogues as a client imports them.

That the catalogues are well formed, documented in the protos and used (never spelled as
literals) by the worker, the bridge and the executors is checked in test_error_reasons.py.
"""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import tendril_sdk
from tendril.bridge.errors import BridgeError as WorkerBridgeError
from tendril.bridge.remotes import calling
from tendril.core.errors import ErrorKind
from tendril.core.interceptors import rich_status
from tendril.core.tensorstream import TensorStreamError, TensorStreamReason
from tendril_sdk import BridgeError, BridgeReason, LeaseReason, error_metadata, error_reason, errors, reasons
from tests.unit.test_sdk_retry import rpc_error


def test_error_reason_and_metadata_of_a_rich_status() -> None:
    err = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "round 3 closed", reason="ROUND_CLOSED")
    assert error_reason(err) == "ROUND_CLOSED" and error_metadata(err) == {"k": "v"}
    plain = rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")
    assert error_reason(plain) == "" and error_metadata(plain) == {}
    assert error_reason(grpc.RpcError()) == ""


def test_a_detail_whose_code_disagrees_is_ignored() -> None:
    rich = rpc_error(grpc.StatusCode.NOT_FOUND, "x", reason="RUN_NOT_OPEN")
    forged = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), rich.trailing_metadata(), "x")
    assert error_reason(forged) == ""


def test_bridge_error_from_a_failed_call() -> None:
    err = BridgeError.from_rpc_error(
        rpc_error(grpc.StatusCode.NOT_FOUND, "run r1 is not open", reason="RUN_NOT_OPEN"), method="PublishParameters"
    )
    assert err.code is grpc.StatusCode.NOT_FOUND and err.message == "run r1 is not open"
    assert err.reason is BridgeReason.RUN_NOT_OPEN and err.reason == "RUN_NOT_OPEN"
    assert err.metadata == {"k": "v"} and err.method == "PublishParameters"
    assert str(err) == "PublishParameters: NOT_FOUND: run r1 is not open"
    unknown = BridgeError.from_rpc_error(rpc_error(grpc.StatusCode.ABORTED, "x", reason="SOMETHING_NEW"))
    assert unknown.reason == "SOMETHING_NEW" and not isinstance(unknown.reason, BridgeReason)
    bare = BridgeError.from_rpc_error(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, ""))
    assert bare.reason == "" and bare.message == "DEADLINE_EXCEEDED"


def test_every_catalogue_is_exported_and_matches_the_wire_string() -> None:
    """A scheduler or client matches any service's reasons from the SDK alone."""
    catalogues = {name for name in reasons.__all__ if name.endswith("Reason")}
    assert catalogues == set(reasons.__all__) and len(catalogues) >= 10
    assert all(getattr(tendril_sdk, name) is getattr(reasons, name) for name in catalogues)
    assert catalogues <= set(tendril_sdk.__all__)
    assert errors.BridgeReason is BridgeReason  # where it was first documented
    err = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "lease L1 expired", reason="LEASE_EXPIRED")
    assert error_reason(err) == LeaseReason.LEASE_EXPIRED


def test_every_code_has_a_remote_reason() -> None:
    for code in grpc.StatusCode:
        if code is not grpc.StatusCode.OK:
            assert BridgeReason.remote(code) == f"REMOTE_{code.name}"
    assert BridgeReason.parse("ROUND_CLOSED") is BridgeReason.ROUND_CLOSED and BridgeReason.parse("NEW") == "NEW"


def test_the_worker_bridge_answers_the_plain_wire_string() -> None:
    error = WorkerBridgeError(ErrorKind.FAILED_PRECONDITION, "no scheduler", reason=BridgeReason.NO_SCHEDULER)
    assert type(error.reason) is str and error.reason == "NO_SCHEDULER"
    status = rich_status(error)
    detail = rpc_status.status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert detail.details[0].Unpack(info) and info.reason == "NO_SCHEDULER"


async def test_a_peer_without_a_reason_is_answered_as_remote_code() -> None:
    """Tensor-stream failures name the status as their reason when the peer gave none; the bridge
    answers REMOTE_<CODE> for those, as for any peer, and passes real reasons on."""

    async def fail(error: Exception) -> None:
        async with calling("parameter server at 127.0.0.1:1"):
            raise error

    with pytest.raises(WorkerBridgeError) as err:
        await fail(
            TensorStreamError(ErrorKind.UNAVAILABLE, "push: connection refused", reason=TensorStreamReason.RPC_FAILED)
        )
    assert err.value.reason == BridgeReason.REMOTE_UNAVAILABLE and err.value.kind is ErrorKind.UNAVAILABLE
    assert err.value.message == "push: connection refused"
    with pytest.raises(WorkerBridgeError) as err:
        await fail(TensorStreamError(ErrorKind.FAILED_PRECONDITION, "push: round 2 closed", reason="ROUND_CLOSED"))
    assert err.value.reason == BridgeReason.ROUND_CLOSED and err.value.kind is ErrorKind.FAILED_PRECONDITION
    with pytest.raises(WorkerBridgeError) as err:
        await fail(grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata()))
    assert err.value.reason == BridgeReason.REMOTE_DEADLINE_EXCEEDED
