"""tendril.core.calls: the channel pool, the one rule for remote errors, following a stream.

Channels are fakes and time is injected: nothing here opens a socket or waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from tendril.bridge.errors import BridgeError
from tendril.bridge.remotes import calling
from tendril.core.calls import CURABLE_CODES, ChannelPool, follow, peer_unreachable, remote_error, upstream_code
from tendril.core.errors import ErrorKind, TendrilError, kind_for_status
from tendril.core.tensorstream import TensorStreamError, TensorStreamReason
from tendril.data_fetcher.clients import upstream_error
from tendril.data_fetcher.errors import FetcherReason
from tendril_sdk import BridgeReason
from tendril_sdk.retry import RetryPolicy
from tests.unit.test_sdk_retry import FakeTime, rpc_error

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class FakeChannel:
    def __init__(self, address: str, peer_id: str) -> None:
        self.address = address
        self.peer_id = peer_id
        self.closes: list[float | None] = []  # the grace of each close()

    async def close(self, grace: float | None = None) -> None:
        self.closes.append(grace)


class Opener:
    def __init__(self) -> None:
        self.opened: list[FakeChannel] = []

    def __call__(self, address: str, *, peer_id: str) -> FakeChannel:
        channel = FakeChannel(address, peer_id)
        self.opened.append(channel)
        return channel


async def settle() -> None:
    """Let the pool's background closes run."""
    for _ in range(3):
        await asyncio.sleep(0)


def pool_of(opener: Opener, **kwargs: Any) -> ChannelPool:
    return ChannelPool("worker-1", opener=opener, **kwargs)


# -- ChannelPool ---------------------------------------------------------------------------------


async def test_one_channel_per_address_named_as_the_peer() -> None:
    opener = Opener()
    pool = pool_of(opener)
    a = pool.channel("a:1")
    assert pool.channel("a:1") is a
    with pool.using("a:1") as held:
        assert held is a
    b = pool.channel("b:1")
    assert [c.address for c in opener.opened] == ["a:1", "b:1"] and {c.peer_id for c in opener.opened} == {"worker-1"}
    assert pool.addresses == ["a:1", "b:1"] and b is not a
    await pool.close(grace=0.5)
    assert a.closes == [0.5] and b.closes == [0.5] and pool.addresses == []


async def test_the_least_recently_used_channel_is_closed_beyond_the_bound() -> None:
    opener = Opener()
    pool = pool_of(opener, max_channels=2, close_grace=7.0)
    a, b = pool.channel("a:1"), pool.channel("b:1")
    pool.channel("a:1")  # a is now the most recently used
    c = pool.channel("c:1")
    await settle()
    assert pool.addresses == ["a:1", "c:1"]
    assert b.closes == [7.0] and a.closes == [] and c.closes == []
    assert pool.channel("b:1") is not b  # dialled afresh
    await pool.close()


async def test_an_unreachable_peer_is_dialled_afresh_and_a_held_channel_outlives_its_retirement() -> None:
    opener = Opener()
    pool = pool_of(opener, close_grace=3.0)
    with pool.using("s:1") as streaming:  # e.g. a stream that goes on on the old channel
        with pytest.raises(grpc.aio.AioRpcError), pool.using("s:1"):
            raise rpc_error(UNAVAILABLE, "connection refused")
        fresh = pool.channel("s:1")
        assert fresh is not streaming
        await settle()
        assert streaming.closes == []  # never closed under a block that holds it
    await settle()
    assert streaming.closes == [3.0] and fresh.closes == []
    await pool.close()


async def test_a_peer_that_answered_keeps_its_channel() -> None:
    opener = Opener()
    pool = pool_of(opener)
    for error in (
        rpc_error(UNAVAILABLE, "stopping", reason="FETCHER_STOPPING"),  # a Tendril service answering UNAVAILABLE
        rpc_error(grpc.StatusCode.NOT_FOUND, "no such job"),
        rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "slow"),
    ):
        with pytest.raises(grpc.aio.AioRpcError), pool.using("s:1"):
            raise error
    assert len(opener.opened) == 1 and pool.addresses == ["s:1"]
    assert peer_unreachable(rpc_error(UNAVAILABLE)) and not peer_unreachable(rpc_error(UNAVAILABLE, reason="X_Y"))
    assert not peer_unreachable(ValueError("not a call"))
    await pool.close()


async def test_retire_and_close_reach_retired_channels_too() -> None:
    opener = Opener()
    pool = pool_of(opener, close_grace=30.0)
    with pool.using("w:1") as held:
        pool.retire("w:1")
        pool.retire("w:1")  # nothing left to retire: no error
        await pool.close(grace=0.1)  # a retired channel still held is closed as well
    assert held.closes == [0.1]
    pool.channel("x:1")
    pool.retire("x:1")
    await pool.close(grace=0.2)  # its grace close (30 s) is cut short
    assert opener.opened[-1].closes[-1] == 0.2
    with pytest.raises(ValueError, match="max_channels"):
        ChannelPool("w", max_channels=0)


# -- remote_error --------------------------------------------------------------------------------


class Err(TendrilError):
    service = "test"

    def __init__(self, kind: ErrorKind, message: str, *, reason: str, metadata: dict[str, str]) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)


def test_kinds_of_codes_without_an_error_kind() -> None:
    assert kind_for_status(grpc.StatusCode.CANCELLED) is ErrorKind.UNAVAILABLE
    assert kind_for_status(grpc.StatusCode.UNKNOWN) is ErrorKind.UNAVAILABLE
    assert kind_for_status(grpc.StatusCode.UNIMPLEMENTED) is ErrorKind.FAILED_PRECONDITION
    assert kind_for_status(grpc.StatusCode.DEADLINE_EXCEEDED) is ErrorKind.DEADLINE_EXCEEDED
    assert kind_for_status(grpc.StatusCode.OK) is ErrorKind.INTERNAL  # never a failure: a bug


def test_a_peers_answer_is_passed_on_with_its_kind_reason_and_metadata() -> None:
    error = remote_error(
        rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "round 0 is closed", reason="ROUND_CLOSED"),
        "parameter server at p:1",
        Err,
        address="p:1",
        no_reason="UNUSED",
    )
    assert error.kind is ErrorKind.FAILED_PRECONDITION and error.reason == "ROUND_CLOSED"
    assert error.message == "parameter server at p:1 answered FAILED_PRECONDITION: round 0 is closed"
    assert error.metadata == {
        "k": "v",  # the peer's own
        "peer": "p:1",
        "upstream_code": "FAILED_PRECONDITION",
        "upstream_reason": "ROUND_CLOSED",
    }


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (grpc.StatusCode.UNAVAILABLE, ErrorKind.UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ErrorKind.DEADLINE_EXCEEDED),
        (grpc.StatusCode.CANCELLED, ErrorKind.UNAVAILABLE),
        (grpc.StatusCode.INTERNAL, ErrorKind.INTERNAL),
        (grpc.StatusCode.UNIMPLEMENTED, ErrorKind.FAILED_PRECONDITION),
        (grpc.StatusCode.PERMISSION_DENIED, ErrorKind.PERMISSION_DENIED),
    ],
)
def test_a_peer_without_a_reason_gets_the_services_reason_and_keeps_its_codes_kind(
    code: grpc.StatusCode, kind: ErrorKind
) -> None:
    error = remote_error(rpc_error(code, "boom"), "scheduler at s:1", Err, no_reason=lambda k, c: f"REMOTE_{c.name}")
    assert error.kind is kind and error.reason == f"REMOTE_{code.name}"
    assert error.metadata == {"upstream_code": code.name}
    if code in CURABLE_CODES:
        assert error.message == f"scheduler at s:1 did not answer ({code.name}: boom); check that it runs, then retry"
    else:
        assert error.message == f"scheduler at s:1 answered {code.name}: boom"
    with pytest.raises(ValueError, match="needs a reason"):  # a service error always names a declared reason
        remote_error(rpc_error(code), "x", Err)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (grpc.StatusCode.UNAVAILABLE, "", ErrorKind.UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", ErrorKind.UNAVAILABLE),
        (grpc.StatusCode.INTERNAL, "", ErrorKind.UNAVAILABLE),  # RST_STREAM
        (grpc.StatusCode.UNAVAILABLE, "NO_DATASET", ErrorKind.UNAVAILABLE),
        (grpc.StatusCode.ABORTED, "TAKEN_OVER", ErrorKind.UNAVAILABLE),
        (grpc.StatusCode.NOT_FOUND, "UNKNOWN_JOB", ErrorKind.NOT_FOUND),
        (grpc.StatusCode.INVALID_ARGUMENT, "", ErrorKind.INVALID_ARGUMENT),
    ],
)
def test_in_the_services_own_words_what_a_retry_may_cure_is_unavailable(
    code: grpc.StatusCode, reason: str, kind: ErrorKind
) -> None:
    def own(k: ErrorKind, c: grpc.StatusCode) -> str:
        return "PEER_DOWN" if k is ErrorKind.UNAVAILABLE else "PEER_REFUSED"

    error = remote_error(rpc_error(code, "why", reason=reason), "LeaseService at l:1", Err, address="l:1", reason=own)
    assert error.kind is kind
    assert error.reason == ("PEER_DOWN" if kind is ErrorKind.UNAVAILABLE else "PEER_REFUSED")
    expected = {"peer": "l:1", "upstream_code": code.name} | ({"upstream_reason": reason} if reason else {})
    assert error.metadata == expected  # the peer's own metadata describes its reason, not ours
    refused = remote_error(rpc_error(code, reason=reason), "p", Err, reason=own, refused=ErrorKind.FAILED_PRECONDITION)
    assert refused.kind is (ErrorKind.UNAVAILABLE if kind is ErrorKind.UNAVAILABLE else ErrorKind.FAILED_PRECONDITION)


def test_the_data_fetcher_keeps_its_contract() -> None:
    down = upstream_error("data node", "d:1", rpc_error(grpc.StatusCode.CANCELLED, "stopping"))
    assert down.kind is ErrorKind.UNAVAILABLE and down.reason == FetcherReason.UPSTREAM_UNAVAILABLE and down.retryable
    refused = upstream_error(
        "scheduler", "s:1", rpc_error(grpc.StatusCode.PERMISSION_DENIED, "not yours", reason="WRONG_WORKER")
    )
    assert refused.kind is ErrorKind.FAILED_PRECONDITION and refused.reason == FetcherReason.UPSTREAM_REFUSED
    assert refused.metadata == {"peer": "s:1", "upstream_code": "PERMISSION_DENIED", "upstream_reason": "WRONG_WORKER"}
    assert refused.message == "scheduler at s:1 answered PERMISSION_DENIED: not yours" and not refused.retryable


async def test_the_bridge_passes_peers_on_and_names_a_silent_one_by_its_code() -> None:
    async def fail(error: Exception) -> BridgeError:
        with pytest.raises(BridgeError) as err:
            async with calling("DataFetcher at f:1"):
                raise error
        return err.value

    refused = await fail(
        rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "closed", reason=BridgeReason.UPSTREAM_REFUSED.value)
    )
    assert refused.reason == BridgeReason.UPSTREAM_REFUSED and refused.metadata["k"] == "v"
    cancelled = await fail(rpc_error(grpc.StatusCode.CANCELLED, "stopping"))
    assert cancelled.kind is ErrorKind.UNAVAILABLE and cancelled.reason == BridgeReason.REMOTE_CANCELLED
    # A tensor stream that failed without a reason keeps the peer's code for REMOTE_<CODE>.
    stream = remote_error(
        rpc_error(grpc.StatusCode.UNKNOWN), "push", TensorStreamError, no_reason=TensorStreamReason.RPC_FAILED
    )
    assert upstream_code(stream) is grpc.StatusCode.UNKNOWN
    passed = await fail(stream)
    assert passed.kind is ErrorKind.UNAVAILABLE and passed.reason == BridgeReason.REMOTE_UNKNOWN


# -- follow --------------------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))


Step = Callable[[Callable[[], None]], Any]


def script(*steps: str) -> tuple[Callable[[Callable[[], None]], Any], list[str]]:
    """A stream opener playing ``steps``: "down" (UNAVAILABLE before it is live), "live-cut"
    (live, then INTERNAL), "ended" (ends cleanly without going live), "bad" (INVALID_ARGUMENT),
    "done" (returns a result)."""
    todo, seen = list(steps), []

    async def open_once(live: Callable[[], None]) -> str | None:
        step = todo.pop(0)
        seen.append(step)
        if step == "down":
            raise rpc_error(UNAVAILABLE, "connection refused")
        if step == "live-cut":
            live()
            raise rpc_error(grpc.StatusCode.INTERNAL, "RST_STREAM")
        if step == "bad":
            raise rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "no")
        if step == "ended":
            return None
        return "result"

    return open_once, seen


POLICY = RetryPolicy(codes=CURABLE_CODES, attempts=None, initial_backoff=0.1, max_backoff=0.4)


async def test_follow_reopens_with_backoff_and_starts_over_after_a_healthy_stream() -> None:
    fake, log, breaks = FakeTime(), Log(), []
    open_once, seen = script("down", "down", "ended", "down", "live-cut", "down", "done")
    result = await follow(
        open_once,
        name="leases",
        peer="LeaseService at l:1",
        policy=POLICY,
        log=log,
        on_break=lambda: breaks.append(1),
        sleep=fake.sleep,
        clock=fake.clock,
    )
    assert result == "result" and len(seen) == 7
    assert fake.sleeps == [0.1, 0.2, 0.4, 0.4, 0.1, 0.2]  # reset by the live stream
    assert len(breaks) == 6
    assert [e for lvl, e, _ in log.lines if lvl == "info"] == ["leases.watching"]
    broken = [kw for lvl, e, kw in log.lines if e == "leases.watch_broken"]
    assert [kw["code"] for kw in broken] == [
        "UNAVAILABLE",
        "UNAVAILABLE",
        "OK",
        "UNAVAILABLE",
        "INTERNAL",
        "UNAVAILABLE",
    ]
    assert broken[0] == {
        "peer": "LeaseService at l:1",
        "retry_in": 0.1,
        "code": "UNAVAILABLE",
        "details": "connection refused",
    }


async def test_follow_raises_what_the_policy_does_not_retry_and_past_its_limits() -> None:
    fake = FakeTime()
    open_once, seen = script("down", "bad")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await follow(open_once, name="bus", peer="g", policy=POLICY, log=Log(), sleep=fake.sleep, clock=fake.clock)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and seen == ["down", "bad"]

    limited = RetryPolicy(codes=CURABLE_CODES, attempts=3, initial_backoff=1.0, max_backoff=1.0)
    open_once, seen = script("down", "down", "live-cut", "down", "down", "down")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await follow(open_once, name="bus", peer="g", policy=limited, log=Log(), sleep=fake.sleep, clock=fake.clock)
    assert err.value.code() == UNAVAILABLE and len(seen) == 6  # 2 breaks, a healthy stream, then 3 in a row

    timed = RetryPolicy(codes=CURABLE_CODES, attempts=None, deadline=2.5, initial_backoff=1.0, max_backoff=1.0)
    open_once, seen = script("down", "down", "down", "down")
    with pytest.raises(grpc.aio.AioRpcError):
        await follow(open_once, name="bus", peer="g", policy=timed, log=Log(), sleep=fake.sleep, clock=fake.clock)
    assert len(seen) == 3  # waits of 1 s and 1 s fit in 2.5 s, a third would not
