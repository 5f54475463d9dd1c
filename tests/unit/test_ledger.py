"""The lease ledger core: reserve/fit, confirm (owner's first renewal or the arbiter), renew, release, expiry,
owners, restart, races."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tendril.core.amounts import Amount, configured_total
from tendril.core.config import ResourcesSection
from tendril.core.errors import ErrorKind
from tendril.core.fanout import SubscriptionOverflow
from tendril.core.resources import detect_gpus
from tendril.lease.errors import LeaseError
from tendril.lease.ledger import Ledger
from tendril.lease.model import LeaseEventType, LeaseKind

WORKER = "worker-a"
TOTAL = Amount(cpu=4, memory_gib=8, storage_gib=50, gpu=1)


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def ledger(path: Path, clock: Clock, **kw: object) -> Ledger:
    args: dict[str, object] = {
        "total": TOTAL,
        "worker_id": WORKER,
        "temporary_seconds": 0.5,
        "renewable_seconds": 10.0,
        "clock": clock,
    }
    args.update(kw)
    return Ledger(path / "leases.db", **args)  # type: ignore[arg-type]


def kind_of(excinfo: pytest.ExceptionInfo[LeaseError]) -> ErrorKind:
    return excinfo.value.kind


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_reserve_confirm_renew_release(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    lease = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=2, memory_gib=1), price=100, request_id="r1")
    assert lease.kind is LeaseKind.TEMPORARY
    assert lease.expires_at == pytest.approx(clock.t + 0.5)
    assert led.capacity()[2] == Amount(cpu=2, memory_gib=7, storage_gib=50, gpu=1)

    confirmed = led.confirm(WORKER, lease.lease_id)
    assert confirmed.kind is LeaseKind.RENEWABLE
    assert confirmed.expires_at == pytest.approx(clock.t + 10)

    clock.advance(4)
    renewed = led.renew("sched", lease.lease_id)
    assert renewed.expires_at == pytest.approx(clock.t + 10)  # now + renewable, never further
    renewed_again = led.renew("sched", lease.lease_id)
    assert renewed_again.expires_at == pytest.approx(clock.t + 10)

    released = led.release("sched", lease.lease_id)
    assert released.lease_id == lease.lease_id
    assert led.capacity()[2] == TOTAL
    with pytest.raises(LeaseError) as gone:
        led.get(lease.lease_id)
    assert kind_of(gone) is ErrorKind.NOT_FOUND
    assert "released" in gone.value.message


def test_fit_and_resource_exhausted(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    led.reserve(WORKER, owner_id="s1", resources=Amount(cpu=3), price=1)
    with pytest.raises(LeaseError) as no_room:
        led.reserve(WORKER, owner_id="s2", resources=Amount(cpu=2), price=1)
    assert kind_of(no_room) is ErrorKind.RESOURCE_EXHAUSTED
    assert "cpu 2 > 1 free" in no_room.value.message
    with pytest.raises(LeaseError) as gpus:
        led.reserve(WORKER, owner_id="s2", resources=Amount(gpu=2), price=1)
    assert kind_of(gpus) is ErrorKind.RESOURCE_EXHAUSTED
    # exactly what is left fits; float sums do not get in the way
    for _ in range(10):
        led.reserve(WORKER, owner_id="s3", resources=Amount(cpu=0.1), price=1)
    _, reserved, free = led.capacity()
    assert reserved.cpu == pytest.approx(4.0)
    assert free.cpu == pytest.approx(0.0)


def test_bad_input_codes(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    cases = [
        (lambda: led.reserve("", owner_id="s", resources=Amount(cpu=1), price=1), ErrorKind.UNAUTHENTICATED),
        (lambda: led.reserve("sched", owner_id="s", resources=Amount(cpu=1), price=1), ErrorKind.PERMISSION_DENIED),
        (lambda: led.reserve(WORKER, owner_id="", resources=Amount(cpu=1), price=1), ErrorKind.INVALID_ARGUMENT),
        (lambda: led.reserve(WORKER, owner_id="s", resources=Amount(), price=1), ErrorKind.INVALID_ARGUMENT),
        (lambda: led.reserve(WORKER, owner_id="s", resources=Amount(cpu=-1), price=1), ErrorKind.INVALID_ARGUMENT),
        (lambda: led.reserve(WORKER, owner_id="s", resources=Amount(cpu=1), price=-1), ErrorKind.INVALID_ARGUMENT),
        (
            lambda: led.reserve(WORKER, owner_id="s", resources=Amount(cpu=1), price=1, ttl_seconds=11),
            ErrorKind.INVALID_ARGUMENT,
        ),
        (lambda: led.get(""), ErrorKind.INVALID_ARGUMENT),
        (lambda: led.get("lease-nope"), ErrorKind.NOT_FOUND),
        (lambda: led.renew("s", ""), ErrorKind.INVALID_ARGUMENT),
        (lambda: led.renew("s", "lease-nope"), ErrorKind.NOT_FOUND),
        (lambda: led.release("s", "lease-nope"), ErrorKind.NOT_FOUND),
        (lambda: led.confirm(WORKER, "lease-nope"), ErrorKind.NOT_FOUND),
    ]
    for call, kind in cases:
        with pytest.raises(LeaseError) as err:
            call()
        assert err.value.kind is kind, (err.value, kind)
        assert err.value.message


def test_owner_checks(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    lease = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=1), price=1)
    with pytest.raises(LeaseError) as not_worker:
        led.confirm("sched", lease.lease_id)
    assert kind_of(not_worker) is ErrorKind.PERMISSION_DENIED
    led.confirm(WORKER, lease.lease_id)
    with pytest.raises(LeaseError) as other:
        led.renew("intruder", lease.lease_id)
    assert kind_of(other) is ErrorKind.PERMISSION_DENIED
    assert "sched" in other.value.message
    with pytest.raises(LeaseError) as other_release:
        led.release("intruder", lease.lease_id)
    assert kind_of(other_release) is ErrorKind.PERMISSION_DENIED
    assert led.get(lease.lease_id).owner_id == "sched"
    # the worker itself (its arbiter) may release any lease
    led.release(WORKER, lease.lease_id)
    assert led.leases() == []


def test_renew_expired_is_failed_precondition(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    temp = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=1), price=1)
    led.confirm(WORKER, temp.lease_id)

    clock.advance(10.01)
    with pytest.raises(LeaseError) as expired:
        led.renew("sched", temp.lease_id)
    assert kind_of(expired) is ErrorKind.FAILED_PRECONDITION
    assert expired.value.reason == "LEASE_EXPIRED"
    assert "new offer" in expired.value.message
    with pytest.raises(LeaseError) as expired_other:
        led.renew("intruder", temp.lease_id)
    assert kind_of(expired_other) is ErrorKind.PERMISSION_DENIED


async def test_owner_first_renew_confirms_then_arbiter_confirm_changes_nothing(tmp_path: Path, clock: Clock) -> None:
    """The scheduler renews as it answers ACCEPTED; the arbiter's Confirm may land after that."""
    led = ledger(tmp_path, clock)
    events = led.watch()
    temp = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=1), price=1, request_id="r1")
    with pytest.raises(LeaseError) as intruder:
        led.renew("intruder", temp.lease_id)
    assert kind_of(intruder) is ErrorKind.PERMISSION_DENIED
    assert led.get(temp.lease_id).kind is LeaseKind.TEMPORARY, "only the owner's renewal is an acceptance"
    clock.advance(0.1)
    renewed = led.renew("sched", temp.lease_id)
    assert renewed.kind is LeaseKind.RENEWABLE
    assert renewed.expires_at == pytest.approx(clock.t + 10)
    clock.advance(0.2)
    confirmed = led.confirm(WORKER, temp.lease_id)  # the ACCEPTED reached the arbiter late
    assert confirmed == renewed, "a confirm after the owner's renewal changes nothing (expiry included)"
    assert led.confirm(WORKER, temp.lease_id) == renewed
    clock.advance(1)
    assert led.renew("sched", temp.lease_id).expires_at == pytest.approx(clock.t + 10)
    assert [(ev.type, ev.lease.kind) for ev in [await events.get() for _ in range(3)]] == [
        (LeaseEventType.RESERVED, LeaseKind.TEMPORARY),
        (LeaseEventType.CONFIRMED, LeaseKind.RENEWABLE),
        (LeaseEventType.RENEWED, LeaseKind.RENEWABLE),
    ]
    assert len(events) == 0, "exactly one CONFIRMED, however many confirmations"


async def test_arbiter_confirm_first_is_idempotent(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    temp = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=1), price=1)
    events = led.watch()
    first = led.confirm(WORKER, temp.lease_id)
    assert first.kind is LeaseKind.RENEWABLE and first.expires_at == pytest.approx(clock.t + 10)
    clock.advance(0.5)
    assert led.confirm(WORKER, temp.lease_id) == first
    assert led.renew("sched", temp.lease_id).expires_at == pytest.approx(clock.t + 10)
    assert [(await events.get()).type for _ in range(3)] == [
        LeaseEventType.EXISTING,
        LeaseEventType.CONFIRMED,
        LeaseEventType.RENEWED,
    ]
    assert len(events) == 0


def test_withdrawn_or_rejected_offer_never_comes_back(tmp_path: Path, clock: Clock) -> None:
    """The arbiter releases on REJECTED or no answer in time; a renewal after that finds nothing."""
    led = ledger(tmp_path, clock)
    temp = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=4), price=1)
    led.release(WORKER, temp.lease_id)
    with pytest.raises(LeaseError) as late:
        led.renew("sched", temp.lease_id)
    assert kind_of(late) is ErrorKind.NOT_FOUND and late.value.reason == "LEASE_NOT_FOUND"
    assert "released" in late.value.message
    with pytest.raises(LeaseError) as late_confirm:
        led.confirm(WORKER, temp.lease_id)
    assert kind_of(late_confirm) is ErrorKind.NOT_FOUND
    assert led.leases() == [] and led.capacity()[1] == Amount()
    # the other order: the owner renewed, then the arbiter gave up on the offer and released it
    other = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=4), price=1)
    led.renew("sched", other.lease_id)
    led.release(WORKER, other.lease_id)
    with pytest.raises(LeaseError) as gone:
        led.renew("sched", other.lease_id)
    assert kind_of(gone) is ErrorKind.NOT_FOUND
    assert led.capacity()[1] == Amount(), "the released resources stay free"


def test_temporary_lease_expires_before_the_owner_renews(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    temp = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=1), price=1)
    clock.advance(0.51)
    for call in (lambda: led.renew("sched", temp.lease_id), lambda: led.confirm(WORKER, temp.lease_id)):
        with pytest.raises(LeaseError) as expired:
            call()
        assert kind_of(expired) is ErrorKind.FAILED_PRECONDITION and expired.value.reason == "LEASE_EXPIRED"
    assert led.leases() == []


def test_owner_renew_and_arbiter_confirm_racing(tmp_path: Path) -> None:
    """Both at once, from two threads, many times: both succeed and the lease ends up renewable."""
    led = Ledger(
        tmp_path / "leases.db",
        total=Amount(cpu=1000),
        worker_id=WORKER,
        temporary_seconds=30,
        renewable_seconds=60,
    )
    errors: list[BaseException] = []

    def call(start: threading.Barrier, fn, *args) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        try:
            assert fn(*args).kind is LeaseKind.RENEWABLE
        except BaseException as exc:  # collected and checked below: a thread's exception is lost otherwise
            errors.append(exc)

    for _ in range(50):
        lease = led.reserve(WORKER, owner_id="sched", resources=Amount(cpu=1), price=1)
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=call, args=(start, led.renew, "sched", lease.lease_id)),
            threading.Thread(target=call, args=(start, led.confirm, WORKER, lease.lease_id)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert led.get(lease.lease_id).kind is LeaseKind.RENEWABLE
    assert errors == []
    led.close()


def test_expiry_frees_resources_and_emits_events(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    temp = led.reserve(WORKER, owner_id="s1", resources=Amount(cpu=4), price=1)
    kept = led.reserve(WORKER, owner_id="s2", resources=Amount(gpu=1), price=1)
    led.confirm(WORKER, kept.lease_id)
    clock.advance(0.6)
    expired = led.prune()
    assert [lease.lease_id for lease in expired] == [temp.lease_id]
    assert [lease.lease_id for lease in led.leases()] == [kept.lease_id]
    assert led.capacity()[2].cpu == 4
    # a new reservation sees the freed cpu even before the pruner runs
    again = led.reserve(WORKER, owner_id="s3", resources=Amount(cpu=4), price=1)
    clock.advance(0.6)
    assert led.reserve(WORKER, owner_id="s4", resources=Amount(cpu=4), price=1).lease_id != again.lease_id


async def test_watch_existing_then_changes_with_owner_filter(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    first = led.reserve(WORKER, owner_id="s1", resources=Amount(cpu=1), price=1)
    led.reserve(WORKER, owner_id="s2", resources=Amount(cpu=1), price=1)
    everything = led.watch()
    only_s1 = led.watch("s1")
    led.confirm(WORKER, first.lease_id)
    led.renew("s1", first.lease_id)
    third = led.reserve(WORKER, owner_id="s2", resources=Amount(cpu=1), price=1)
    led.release(WORKER, third.lease_id)
    clock.advance(20)
    led.prune()

    async def take(sub, n):  # type: ignore[no-untyped-def]
        return [(ev.type, ev.lease.owner_id) for ev in [await sub.get() for _ in range(n)]]

    assert await take(everything, 8) == [
        (LeaseEventType.EXISTING, "s1"),
        (LeaseEventType.EXISTING, "s2"),
        (LeaseEventType.CONFIRMED, "s1"),
        (LeaseEventType.RENEWED, "s1"),
        (LeaseEventType.RESERVED, "s2"),
        (LeaseEventType.RELEASED, "s2"),
        (LeaseEventType.EXPIRED, "s2"),
        (LeaseEventType.EXPIRED, "s1"),
    ]
    assert await take(only_s1, 4) == [
        (LeaseEventType.EXISTING, "s1"),
        (LeaseEventType.CONFIRMED, "s1"),
        (LeaseEventType.RENEWED, "s1"),
        (LeaseEventType.EXPIRED, "s1"),
    ]
    assert len(everything) == 0 and len(only_s1) == 0


async def test_slow_watcher_is_cut_off_not_silently_wrong(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock, watch_queue=3)
    slow = led.watch()
    for _ in range(4):
        led.reserve(WORKER, owner_id="s", resources=Amount(cpu=0.5), price=1)
    with pytest.raises(SubscriptionOverflow):
        await slow.get()
    # a new watch starts over with the full picture
    fresh = led.watch()
    assert len(fresh) == 4


def test_restart_keeps_unexpired_and_drops_expired(tmp_path: Path, clock: Clock) -> None:
    led = ledger(tmp_path, clock)
    short = led.reserve(WORKER, owner_id="s1", resources=Amount(cpu=1), price=1)
    long = led.reserve(WORKER, owner_id="s2", resources=Amount(cpu=2, gpu=1), price=7, request_id="r2")
    led.confirm(WORKER, long.lease_id)
    long = led.renew("s2", long.lease_id)
    # no close(): the process is "killed"; a second ledger opens the same file
    clock.advance(1.0)
    reopened = ledger(tmp_path, clock)
    assert [lease.lease_id for lease in reopened.leases()] == [long.lease_id]
    assert reopened.get(long.lease_id) == long
    assert reopened.capacity()[1] == Amount(cpu=2, gpu=1)
    with pytest.raises(LeaseError) as expired:
        reopened.renew("s1", short.lease_id)
    assert expired.value.reason == "LEASE_EXPIRED"
    assert reopened.renew("s2", long.lease_id).expires_at == pytest.approx(clock.t + 10)
    reopened.close()
    led.close()


def test_concurrent_reservations_never_overlap(tmp_path: Path) -> None:
    led = Ledger(
        tmp_path / "leases.db",
        total=Amount(cpu=8, memory_gib=16, storage_gib=10, gpu=2),
        worker_id=WORKER,
        temporary_seconds=30,
        renewable_seconds=60,
    )
    granted: list[Amount] = []
    refused = 0
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        nonlocal refused
        start.wait()
        for i in range(25):
            want = Amount(cpu=1 + (i + n) % 3, memory_gib=1.5, gpu=(i + n) % 2)
            try:
                led.reserve(WORKER, owner_id=f"s{n}", resources=want, price=1)
            except LeaseError as exc:
                assert exc.kind is ErrorKind.RESOURCE_EXHAUSTED
                with lock:
                    refused += 1
            else:
                with lock:
                    granted.append(want)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = Amount()
    for amount in granted:
        total = total + amount
    assert total.fits_in(led.total), total
    assert refused > 0 and granted
    # the ledger's own view and the database agree
    reserved = led.capacity()[1]
    assert (reserved.cpu, reserved.memory_gib, reserved.gpu) == pytest.approx((total.cpu, total.memory_gib, total.gpu))
    assert len(led.leases()) == len(granted)
    led.close()
    reopened = Ledger(
        tmp_path / "leases.db", total=led.total, worker_id=WORKER, temporary_seconds=30, renewable_seconds=60
    )
    assert len(reopened.leases()) == len(granted)
    reopened.close()


def test_total_detects_negative_values(tmp_path: Path) -> None:
    fixed = configured_total(ResourcesSection(cpu=3, memory_gib=2, storage_gib=1, gpu=0), tmp_path)
    assert fixed == Amount(3, 2, 1, 0)
    detected = configured_total(ResourcesSection(cpu=-1, memory_gib=4, storage_gib=-1, gpu=-1), tmp_path)
    assert detected.cpu >= 1 and detected.memory_gib == 4 and detected.storage_gib > 0
    assert detected.gpu == len(detect_gpus()[0])  # NVML's count, never invented
