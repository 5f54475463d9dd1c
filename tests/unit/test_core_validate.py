"""The request checks every servicer shares: ids, numbers, Durations, Timestamps, enums, Structs;
unparsable requests and huge inputs answered by the server factory."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from tendril.core import ids
from tendril.core.channel import open_channel
from tendril.core.errors import (
    MAX_ERROR_MESSAGE_BYTES,
    MAX_ERROR_METADATA_VALUE_BYTES,
    ErrorKind,
    TendrilError,
    bounded,
)
from tendril.core.server import Binding, ServiceServer
from tendril.core.validate import Checks
from tendril_proto.job.v1 import job_pb2
from tendril_proto.paramserver.v1 import paramserver_pb2, paramserver_pb2_grpc
from tendril_sdk.errors import error_metadata, error_reason


class _Error(TendrilError):
    service = "test"


CHECK = Checks(_Error)
REASON = "BAD_FIELD"


def _refused(call: Any) -> _Error:
    with pytest.raises(_Error) as err:
        call()
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == REASON
    return err.value


def test_ids_share_one_rule_per_kind_and_never_echo_a_huge_value() -> None:
    assert ids.JOB_ID.valid("..") and ids.JOB_ID.valid("a" * 64) and not ids.JOB_ID.valid("a" * 65)
    assert ids.RUN_ID.valid("demo-1") and not ids.RUN_ID.valid(".x") and not ids.RUN_ID.valid("a/b")
    assert ids.PEER_ID.valid("worker-host.lan") and ids.PEER_ID.valid("sched@site:1")
    assert not ids.PEER_ID.valid("w 1") and not ids.PEER_ID.valid("-w")
    assert ids.NAME.valid("slice-00001.safetensors") and not ids.NAME.valid(".hidden")
    assert not ids.NAME.valid("a\n")  # (a trailing newline is no name: the whole value must match)
    assert ids.KEY.valid("any thing") and not ids.KEY.valid("x" * 257) and not ids.KEY.valid("")
    assert ids.STREAM_ID.valid("run/update/3/fp32") and not ids.STREAM_ID.valid("a b")
    huge = "x" * (1 << 20)
    problem = ids.JOB_ID.problem(huge, "job_id")
    assert problem is not None and len(problem) < 300 and "1048576 characters" in problem
    assert ids.JOB_ID.problem("", "job_id") == f"job_id is empty; give a job id: {ids.JOB_ID.rule}"
    err = _refused(lambda: CHECK.id(ids.RUN_ID, huge, "run_id", REASON))
    assert err.metadata == {"field": "run_id"} and "run_id" in err.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0])
def test_numbers_must_be_finite_and_in_range(value: float) -> None:
    err = _refused(lambda: CHECK.number(value, "timeout_seconds", REASON, minimum=0.0, meaning="0: do not wait"))
    assert "timeout_seconds must be a finite number >= 0 (0: do not wait)" in err.message
    assert CHECK.number(0.0, "t", REASON, minimum=0.0) == 0.0
    _refused(lambda: CHECK.number(0.0, "weight", REASON, positive=True))
    _refused(lambda: CHECK.number(11.0, "x", REASON, maximum=10.0))


def test_durations() -> None:
    assert CHECK.duration(duration_pb2.Duration(seconds=1, nanos=500_000_000), "timeout", REASON) == 1.5
    for bad in (
        duration_pb2.Duration(seconds=1, nanos=2_000_000_000),  # nanos out of range
        duration_pb2.Duration(seconds=1, nanos=-5),  # the other sign
        duration_pb2.Duration(seconds=2**62),  # beyond 10 000 years
        duration_pb2.Duration(seconds=-3),  # negative
    ):
        _refused(lambda bad=bad: CHECK.duration(bad, "timeout", REASON))
    err = _refused(lambda: CHECK.duration(duration_pb2.Duration(seconds=10**9), "timeout", REASON, maximum=3600))
    assert "<= 3600" in err.message


def test_timestamps() -> None:
    assert CHECK.timestamp(timestamp_pb2.Timestamp(seconds=10, nanos=5), "deadline", REASON) == pytest.approx(10.0)
    for bad in (
        timestamp_pb2.Timestamp(seconds=10, nanos=2_000_000_000),
        timestamp_pb2.Timestamp(seconds=10, nanos=-1),
        timestamp_pb2.Timestamp(seconds=2**62),
        timestamp_pb2.Timestamp(seconds=-(2**40)),
    ):
        _refused(lambda bad=bad: CHECK.timestamp(bad, "deadline", REASON))


def test_enums() -> None:
    assert CHECK.enums([1, 3], job_pb2.JobState, "states", REASON) == [1, 3]
    err = _refused(lambda: CHECK.enums([1, 99], job_pb2.JobState, "states", REASON))
    assert "states 99 is not one of JOB_STATE_PENDING" in err.message
    _refused(lambda: CHECK.enum(0, job_pb2.JobState, "state", REASON))
    assert CHECK.enum(0, job_pb2.JobState, "state", REASON, unspecified=True) == 0


def test_structs_hold_only_finite_numbers() -> None:
    good = struct_pb2.Struct()
    good.update({"a": 1, "b": [1.5, {"c": "x"}]})
    assert CHECK.struct(good, "config", REASON) == {"a": 1.0, "b": [1.5, {"c": "x"}]}
    for bad_value, where in ((math.nan, "config.a"), ([1, math.inf], "config.a[1]"), ({"d": -math.inf}, "config.a.d")):
        bad = struct_pb2.Struct()
        bad.update({"a": bad_value})
        err = _refused(lambda bad=bad: CHECK.struct(bad, "config", REASON))
        assert err.message.startswith(f"{where} is not a finite number")


def test_bounded_keeps_head_and_tail() -> None:
    assert bounded("short", 100) == "short"
    text = "job_id 'xxxx" + "x" * 5000 + "' is not valid: use 1-64 characters"
    cut = bounded(text, 200)
    assert len(cut.encode()) <= 200 and cut.startswith("job_id 'xxx") and cut.endswith("use 1-64 characters")
    assert "characters cut" in cut
    wide = bounded("é" * 3000, 100)  # never splits a character
    assert len(wide.encode()) <= 100 and "\ufffd" not in wide


class _Servicer(paramserver_pb2_grpc.ParameterServerServiceServicer):
    async def GetRound(self, request: Any, context: Any) -> Any:
        # Echoes the input whole, in the message and the metadata, as a careless servicer would.
        raise _Error(
            ErrorKind.NOT_FOUND,
            f"run {request.run_id!r} is not open",
            reason="RUN_NOT_OPEN",
            metadata={"run_id": request.run_id},
        )

    async def WatchRound(self, request: Any, context: Any) -> Any:
        yield paramserver_pb2.WatchRoundResponse()


async def test_the_server_answers_unparsable_requests_and_bounds_its_errors() -> None:
    server = ServiceServer(
        "127.0.0.1:0",
        [
            Binding(
                "tendril.paramserver.v1.ParameterServerService",
                paramserver_pb2_grpc.add_ParameterServerServiceServicer_to_server,
                _Servicer(),
            )
        ],
        config_key="test.listen",
    )
    await server.start()
    try:
        async with open_channel(server.address, peer_id="tester") as channel:
            for method in ("GetRound", "WatchRound"):
                raw = (channel.unary_unary if method == "GetRound" else channel.unary_stream)(
                    f"/tendril.paramserver.v1.ParameterServerService/{method}",
                    request_serializer=lambda b: b,
                    response_deserializer=lambda b: b,
                )
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    call = raw(b"\xff\xff\xff", timeout=10)
                    if method == "GetRound":
                        await call
                    else:
                        async for _ in call:
                            pass
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad.value.details()
                assert "could not be parsed as a tendril.paramserver.v1." in (bad.value.details() or "")
                assert "DecodeError" not in (bad.value.details() or "")
            stub = paramserver_pb2_grpc.ParameterServerServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as huge:
                await stub.GetRound(paramserver_pb2.GetRoundRequest(run_id="x" * (1 << 20)), timeout=10)
            assert huge.value.code() == grpc.StatusCode.NOT_FOUND  # not "metadata size exceeds hard limit"
            details = huge.value.details() or ""
            assert len(details.encode()) <= MAX_ERROR_MESSAGE_BYTES and details.endswith("is not open")
            assert error_reason(huge.value) == "RUN_NOT_OPEN"
            assert len(error_metadata(huge.value)["run_id"].encode()) <= MAX_ERROR_METADATA_VALUE_BYTES
            # ... and the server still serves.
            async for _ in stub.WatchRound(paramserver_pb2.WatchRoundRequest(run_id="r"), timeout=10):
                break
    finally:
        await server.stop(0)
