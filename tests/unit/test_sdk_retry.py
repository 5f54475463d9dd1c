"""tendril_sdk.retry: transient codes, Backoff, RetryPolicy and retry(), with an injected clock,
sleep and randomness (nothing here waits)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tendril_sdk import (
    NO_RETRY,
    STREAM_BREAK_CODES,
    TRANSIENT_CODES,
    Backoff,
    BridgeError,
    BridgeReason,
    RetryPolicy,
    retry,
)


def rpc_error(code: grpc.StatusCode, details: str = "x", reason: str = "") -> grpc.aio.AioRpcError:
    """An AioRpcError as a client sees it, with a rich status carrying ``reason`` when given."""
    trailing = grpc.aio.Metadata()
    if reason:
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="tendril.dev", metadata={"k": "v"}))
        status = rpc_status.to_status(
            status_pb2.Status(code=getattr(code_pb2, code.name), message=details, details=[detail])
        )
        trailing = grpc.aio.Metadata(*status.trailing_metadata)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=details)


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errors: list[BaseException], result: str = "ok") -> tuple[list[int], object]:
    """A call that raises each of ``errors`` in turn, then returns ``result``; counts its calls."""
    calls = [0]

    async def call() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return calls, call


def test_the_transient_sets() -> None:
    assert {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    } == TRANSIENT_CODES
    assert STREAM_BREAK_CODES.isdisjoint(TRANSIENT_CODES)
    for answer in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
        assert answer not in TRANSIENT_CODES | STREAM_BREAK_CODES


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.25, 2.0)
    assert [backoff.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert backoff.failures == 6 and backoff.peek() == 2.0
    backoff.reset()
    assert backoff.failures == 0 and backoff.next() == 0.25
    triple = Backoff(1.0, 10.0, multiplier=3.0)
    assert [triple.next() for _ in range(4)] == [1.0, 3.0, 9.0, 10.0]
    flat = Backoff(1.0, 1.0, multiplier=1.0)
    assert {flat.next() for _ in range(3)} == {1.0}


def test_backoff_starts_over_after_a_stable_run() -> None:
    backoff = Backoff(0.5, 4.0, stable_after=30.0)
    assert [backoff.failed_after(2.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.failed_after(30.0) == 0.5  # it ran long enough to count as healthy
    assert backoff.failed_after(29.9) == 1.0  # a short run goes on from there
    plain = Backoff(0.5, 4.0)  # no stable_after: every run continues the delays
    assert [plain.failed_after(1e9) for _ in range(3)] == [0.5, 1.0, 2.0]


def test_backoff_stays_finite_after_many_failures() -> None:
    backoff = Backoff(0.1, 30.0)
    for _ in range(5000):
        delay = backoff.next()
    assert delay == 30.0


def test_backoff_jitter_spreads_around_the_delay() -> None:
    draws = iter([0.0, 0.5, 0.999999, 0.25])
    backoff = Backoff(1.0, 8.0, jitter=0.5, rand=lambda: next(draws))
    delays = [backoff.next() for _ in range(4)]
    # base 1, 2, 4, 8 scaled by 1 + 0.5·(2u − 1): u=0 → ×0.5, u=0.5 → ×1, u→1 → ×1.5, u=0.25 → ×0.75
    assert delays[0] == pytest.approx(0.5) and delays[1] == pytest.approx(2.0)
    assert delays[2] == pytest.approx(6.0, rel=1e-5) and delays[3] == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"initial": 0}, "initial delay"),
        ({"initial": 2, "cap": 1}, "cap"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"stable_after": -1}, "stable_after"),
    ],
)
def test_backoff_refuses_bad_settings(kwargs: dict[str, float], needle: str) -> None:
    args = {"initial": 1.0, "cap": 5.0, **kwargs}
    with pytest.raises(ValueError, match=needle):
        Backoff(args.pop("initial"), args.pop("cap"), **args)


def test_policy_classifies_by_code_reason_and_predicate() -> None:
    policy = RetryPolicy(codes=frozenset({grpc.StatusCode.UNAVAILABLE}), reasons=[BridgeReason.RUN_NOT_OPEN])  # type: ignore[arg-type]
    assert policy.reasons == {"RUN_NOT_OPEN"} and isinstance(policy.reasons, frozenset)
    assert policy.retryable(rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert policy.retryable(rpc_error(grpc.StatusCode.NOT_FOUND, reason="RUN_NOT_OPEN"))
    assert not policy.retryable(rpc_error(grpc.StatusCode.NOT_FOUND, reason="FILE_NOT_FOUND"))
    assert not policy.retryable(rpc_error(grpc.StatusCode.NOT_FOUND))
    assert policy.retryable(BridgeError(grpc.StatusCode.NOT_FOUND, "not yet", reason="RUN_NOT_OPEN"))
    assert not policy.retryable(BridgeError(grpc.StatusCode.FAILED_PRECONDITION, "no"))
    assert not policy.retryable(OSError("disk"))
    custom = RetryPolicy(codes=frozenset(), retry_if=lambda e: isinstance(e, ConnectionError))
    assert custom.retryable(ConnectionResetError()) and not custom.retryable(ValueError())
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="cap"):
        RetryPolicy(initial_backoff=3, max_backoff=1)


async def test_retry_returns_after_transient_failures_with_backoff() -> None:
    time = FakeTime()
    calls, call = failing([rpc_error(grpc.StatusCode.UNAVAILABLE), rpc_error(grpc.StatusCode.ABORTED)])
    seen: list[tuple[str, int, float]] = []
    result = await retry(
        call,  # type: ignore[arg-type]
        RetryPolicy(initial_backoff=0.5, max_backoff=4.0),
        on_retry=lambda err, attempt, delay: seen.append((err.code().name, attempt, delay)),  # type: ignore[attr-defined]
        sleep=time.sleep,
        clock=time.clock,
    )
    assert result == "ok" and calls == [3]
    assert time.sleeps == [0.5, 1.0]
    assert seen == [("UNAVAILABLE", 1, 0.5), ("ABORTED", 2, 1.0)]


async def test_retry_raises_answers_at_once() -> None:
    time = FakeTime()
    refused = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, reason="ROUND_CLOSED")
    calls, call = failing([refused])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await retry(call, RetryPolicy(), sleep=time.sleep, clock=time.clock)  # type: ignore[arg-type]
    assert err.value is refused and calls == [1] and time.sleeps == []


async def test_retry_stops_after_its_attempts() -> None:
    time = FakeTime()
    errors: list[BaseException] = [rpc_error(grpc.StatusCode.UNAVAILABLE, f"try {i}") for i in range(10)]
    calls, call = failing(errors)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await retry(call, RetryPolicy(attempts=3), sleep=time.sleep, clock=time.clock)  # type: ignore[arg-type]
    assert calls == [3] and err.value.details() == "try 2" and len(time.sleeps) == 2
    calls, call = failing([rpc_error(grpc.StatusCode.UNAVAILABLE)])
    with pytest.raises(grpc.aio.AioRpcError):
        await retry(call, NO_RETRY, sleep=time.sleep, clock=time.clock)  # type: ignore[arg-type]
    assert calls == [1]


async def test_retry_never_waits_past_its_deadline() -> None:
    time = FakeTime()
    errors: list[BaseException] = [rpc_error(grpc.StatusCode.UNAVAILABLE) for _ in range(100)]
    calls, call = failing(errors)
    policy = RetryPolicy(attempts=None, deadline=10.0, initial_backoff=1.0, max_backoff=4.0)
    with pytest.raises(grpc.aio.AioRpcError):
        await retry(call, policy, sleep=time.sleep, clock=time.clock)  # type: ignore[arg-type]
    # waits 1 + 2 + 4 = 7 s; the next 4 s wait would end at 11 s > 10 s, so it gives up instead
    assert time.sleeps == [1.0, 2.0, 4.0] and calls == [4]


async def test_retry_uses_the_injected_randomness() -> None:
    time = FakeTime()
    calls, call = failing([rpc_error(grpc.StatusCode.UNAVAILABLE)] * 2)
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=10.0, jitter=0.5)
    await retry(call, policy, sleep=time.sleep, clock=time.clock, rand=lambda: 0.0)  # type: ignore[arg-type]
    assert time.sleeps == [0.5, 1.0] and calls == [3]
