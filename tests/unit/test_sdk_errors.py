"""tendril_sdk.errors: the reason of a rich status, BridgeError, and BridgeReason against the
reasons the worker's services really raise."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tendril.bridge.errors import BridgeError as WorkerBridgeError
from tendril.bridge.remotes import calling
from tendril.core.errors import ErrorKind
from tendril.core.interceptors import rich_status
from tendril.core.tensorstream import TensorStreamError, TensorStreamReason
from tendril_sdk import BridgeError, BridgeReason, error_metadata, error_reason
from tests.unit.test_sdk_retry import rpc_error

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services" / "tendril"


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


def test_every_member_is_its_wire_string_and_every_code_has_a_remote_reason() -> None:
    for member in BridgeReason:
        assert member.value == member.name and re.fullmatch(r"[A-Z][A-Z0-9_]+", member.value)
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


def test_the_bridge_raises_only_declared_reasons() -> None:
    """No reason literal in the bridge's code: each is a BridgeReason member."""
    literals = []
    for path in (SERVICES / "bridge").rglob("*.py"):
        literals += [f"{path.name}: {m}" for m in re.findall(r'reason="[A-Z_]+"', path.read_text())]
    assert not literals, literals


def test_every_declared_reason_is_raised_somewhere() -> None:
    """A reason renamed or removed in a service makes its BridgeReason member stale: caught here."""
    source = "\n".join(p.read_text() for p in SERVICES.rglob("*.py"))
    stale = [
        m.value
        for m in BridgeReason
        if not m.value.startswith("REMOTE_") and f'"{m.value}"' not in source and f"BridgeReason.{m.name}" not in source
    ]
    assert not stale, f"BridgeReason members no service raises: {stale}"


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
