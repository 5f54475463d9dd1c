"""Gateway registry limits and ownership (cores, no gRPC): record size cap, List pages that fit
one message, per-record owners and secrets, per-caller token buckets."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2

from tendril.core.errors import ErrorKind
from tendril.core.server import MAX_MESSAGE_BYTES
from tendril.core.timeutil import to_timestamp
from tendril.gateway.errors import GatewayError, GatewayReason
from tendril.gateway.limits import Rate, RateLimiter
from tendril.gateway.registry import (
    DEFAULT_MAX_RECORD_BYTES,
    DEFAULT_PAGE_SIZE,
    MAX_NAME_LENGTH,
    Caller,
    Registry,
    max_page_size,
    secret_hash,
)
from tendril_proto.gateway.v1 import gateway_pb2


class Clock:
    def __init__(self) -> None:
        self.t = 5_000.0

    def __call__(self) -> float:
        return self.t


def _refused(call, kind: ErrorKind, reason: GatewayReason) -> GatewayError:  # type: ignore[no-untyped-def]
    with pytest.raises(GatewayError) as caught:
        call()
    assert caught.value.kind == kind and caught.value.reason == reason, caught.value
    return caught.value


# -- size cap and pages ----------------------------------------------------------------------------


def test_a_record_over_the_cap_is_refused_with_its_size_and_the_limit() -> None:
    reg = Registry(max_record_bytes=2048)
    reg.put_as("worker", "ok", None, 10, size=2048)
    err = _refused(
        lambda: reg.put_as("worker", "big", None, 10, size=2049),
        ErrorKind.INVALID_ARGUMENT,
        GatewayReason.RECORD_TOO_LARGE,
    )
    assert err.metadata["size"] == "2049" and err.metadata["limit"] == "2048"
    assert "2048 bytes" in err.message and "reference" in err.message
    assert [e.id for e in reg.records()] == ["ok"]


@pytest.mark.parametrize("cap", [1024, DEFAULT_MAX_RECORD_BYTES, 1024 * 1024, 4 * 1024 * 1024])
def test_a_full_page_of_records_at_the_cap_fits_one_message(cap: int) -> None:
    """The worst page: every record exactly at the cap (owner and 256-character names included),
    every field the gateway adds at its largest, and a next_page_token of the longest names."""
    size = max_page_size(cap, MAX_MESSAGE_BYTES)
    name = "k" * MAX_NAME_LENGTH
    record = gateway_pb2.Record(
        kind=name, id=name, ttl_seconds=86400.0, owner="o" * MAX_NAME_LENGTH, payload=any_pb2.Any(type_url="t")
    )
    record.payload.value = b"x" * cap
    record.payload.value = b"x" * (cap - (record.ByteSize() - cap))  # about the cap, within the varints
    while record.ByteSize() > cap:  # the largest record that is not over the cap (length varints jump)
        record.payload.value = b"x" * (len(record.payload.value) - 1)
    assert cap - 4 <= record.ByteSize() <= cap
    record.expires_at.CopyFrom(to_timestamp(253402300799.999))
    record.version = 2**64 - 1
    reg = Registry(max_record_bytes=cap, max_page=size)
    reg.put_as(name, name, None, 1, size=cap)
    page = gateway_pb2.ListResponse(records=[record] * size)
    page.next_page_token = "t" * 2048
    assert page.ByteSize() <= MAX_MESSAGE_BYTES
    if cap >= DEFAULT_MAX_RECORD_BYTES:  # and, at caps where the fixed overhead is small, about as large as fits
        assert gateway_pb2.ListResponse(records=[record] * (size + 2)).ByteSize() > MAX_MESSAGE_BYTES


def test_pages_are_ordered_sized_and_tokens_stable_under_changes() -> None:
    reg = Registry(max_page=3)
    for i in range(7):
        reg.put("worker", f"w{i}", None, 10)
    reg.put("dataset", "d", None, 10)
    first, token = reg.page("worker", page_size=3)
    assert [e.id for e in first] == ["w0", "w1", "w2"] and token
    # changes between pages: one before the cursor added, the cursor record deleted, one after added
    reg.put("worker", "w00", None, 10)
    reg.delete("worker", "w2")
    reg.put("worker", "w35", None, 10)
    second, token = reg.page("worker", page_size=3, page_token=token)
    assert [e.id for e in second] == ["w3", "w35", "w4"]
    third, token = reg.page("worker", page_size=100, page_token=token)  # lowered to the maximum, 3
    assert [e.id for e in third] == ["w5", "w6"] and token == ""
    everything, token = reg.page()
    assert [(e.kind, e.id) for e in everything] == [("dataset", "d"), ("worker", "w0"), ("worker", "w00")]
    assert token


def test_default_page_size_and_an_empty_registry() -> None:
    reg = Registry()
    assert reg.page() == ([], "")
    for i in range(DEFAULT_PAGE_SIZE + 1):
        reg.put("k", f"{i:04d}", None, 10)
    page, token = reg.page("k")
    assert len(page) == DEFAULT_PAGE_SIZE and token
    rest, token = reg.page("k", page_token=token)
    assert [e.id for e in rest] == [f"{DEFAULT_PAGE_SIZE:04d}"] and token == ""


@pytest.mark.parametrize("token", ["garbage", "!!!", "bnVsbA", "WzEsMiwzXQ"])  # "null", "[1,2,3]"
def test_a_page_token_that_was_not_given_is_refused(token: str) -> None:
    reg = Registry()
    reg.put("k", "a", None, 10)
    _refused(lambda: reg.page("k", page_token=token), ErrorKind.INVALID_ARGUMENT, GatewayReason.PAGE_TOKEN_INVALID)


def test_a_page_token_of_another_kind_is_refused() -> None:
    reg = Registry(max_page=1)
    reg.put("a", "1", None, 10)
    reg.put("a", "2", None, 10)
    _, token = reg.page("a")
    _refused(lambda: reg.page("b", page_token=token), ErrorKind.INVALID_ARGUMENT, GatewayReason.PAGE_TOKEN_INVALID)


# -- ownership -------------------------------------------------------------------------------------


def test_the_first_put_returns_a_secret_that_later_puts_and_the_delete_must_present() -> None:
    reg = Registry()
    made = reg.put_as("worker", "w", "v1", 10, caller=Caller())
    assert len(made.secret) >= 43  # 256 bits, base64url
    assert made.entry.secret_sha256 == secret_hash(made.secret) and made.entry.owner == ""
    again = reg.put_as("worker", "w", "v2", 10, caller=Caller(secret=made.secret))
    assert again.secret == "" and again.entry.version == 2 and again.entry.secret_sha256 == made.entry.secret_sha256
    for other in (Caller(), Caller(secret="guess"), Caller(identity="someone", secret="")):
        err = _refused(
            lambda other=other: reg.put_as("worker", "w", "evil", 10, caller=other),
            ErrorKind.PERMISSION_DENIED,
            GatewayReason.RECORD_NOT_OWNED,
        )
        assert "only its owner" in err.message
        _refused(
            lambda other=other: reg.delete("worker", "w", caller=other),
            ErrorKind.PERMISSION_DENIED,
            GatewayReason.RECORD_NOT_OWNED,
        )
    assert reg.get("worker", "w").payload == "v2"
    reg.delete("worker", "w", caller=Caller(secret=made.secret))
    _refused(lambda: reg.get("worker", "w"), ErrorKind.NOT_FOUND, GatewayReason.RECORD_NOT_FOUND)


def test_an_expired_record_may_be_claimed_anew_and_the_old_secret_no_longer_works() -> None:
    clock = Clock()
    reg = Registry(clock=clock)
    old = reg.put_as("worker", "w", "a", 5, caller=Caller()).secret
    clock.t += 6
    taken = reg.put_as("worker", "w", "b", 5, caller=Caller())  # another caller, no secret
    assert taken.secret and taken.secret != old and taken.entry.version == 1
    _refused(
        lambda: reg.put_as("worker", "w", "a", 5, caller=Caller(secret=old)),
        ErrorKind.PERMISSION_DENIED,
        GatewayReason.RECORD_NOT_OWNED,
    )
    # the owner that presents a stale secret for a record that is gone gets a fresh one
    clock.t += 6
    back = reg.put_as("worker", "w", "a", 5, caller=Caller(secret=old))
    assert back.secret not in ("", old) and back.entry.secret_sha256 == secret_hash(back.secret)


def test_under_mtls_the_certificate_name_owns_the_record_and_no_secret_is_made() -> None:
    reg = Registry()
    made = reg.put_as("worker", "w", "a", 10, caller=Caller(identity="worker-a"))
    assert made.secret == "" and made.entry.owner == "worker-a" and made.entry.secret_sha256 == b""
    reg.put_as("worker", "w", "b", 10, caller=Caller(identity="worker-a"))
    _refused(
        lambda: reg.put_as("worker", "w", "c", 10, caller=Caller(identity="worker-b")),
        ErrorKind.PERMISSION_DENIED,
        GatewayReason.RECORD_NOT_OWNED,
    )
    _refused(
        lambda: reg.delete("worker", "w", caller=Caller(identity="worker-b")),
        ErrorKind.PERMISSION_DENIED,
        GatewayReason.RECORD_NOT_OWNED,
    )
    reg.delete("worker", "w", caller=Caller(identity="worker-a"))


# -- rate limits -----------------------------------------------------------------------------------


def test_a_caller_gets_its_burst_then_waits_for_tokens_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter("Put", Rate(rate=2.0, burst=3.0), clock=clock)
    for _ in range(3):
        limiter.take("a")
    err = _refused(lambda: limiter.take("a"), ErrorKind.RESOURCE_EXHAUSTED, GatewayReason.RATE_LIMITED)
    assert err.retry_delay == pytest.approx(0.5)
    assert "Put" in err.message and err.metadata["caller"] == "a"
    limiter.take("b")  # another caller has its own bucket
    clock.t += 0.25
    assert limiter.wait_time("a") == pytest.approx(0.25)  # half a token back; a refusal takes none
    clock.t += 0.25
    limiter.take("a")
    clock.t += 100
    for _ in range(3):  # refilled to the burst, not beyond
        limiter.take("a")
    assert limiter.wait_time("a") > 0
    assert limiter.refused == 1


def test_the_bucket_table_is_bounded() -> None:
    limiter = RateLimiter("Publish", Rate(rate=1.0, burst=1.0), max_callers=10)
    for i in range(1000):
        limiter.take(f"forged-{i}")
    assert len(limiter) == 10


def test_a_rate_needs_positive_values() -> None:
    with pytest.raises(ValueError):
        Rate(rate=0.0, burst=1.0)
    with pytest.raises(ValueError):
        Rate(rate=1.0, burst=0.5)
