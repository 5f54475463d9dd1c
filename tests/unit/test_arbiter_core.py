"""Arbiter core without gRPC: windows, scoring, filters, strategies, and the decision loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from tendril.arbiter.engine import Arbiter, Grant, LeaseGone, NoRoom, OfferSpec, PortError, PortTimeout
from tendril.arbiter.model import OfferState, Request
from tendril.arbiter.policy import Policy, problems, rank, score, weight
from tendril.arbiter.window import Windower
from tendril.core.amounts import Amount

TRAIN = ("train", "diloco")
TOTAL = Amount(cpu=8, memory_gib=32, storage_gib=100, gpu=1)


def req(
    rid: str = "r1",
    *,
    sched: str = "s1",
    bid: float = 200.0,
    cpu: float = 2,
    mem: float = 4,
    sto: float = 10,
    gpu: int = 0,
    executors: tuple[tuple[str, str], ...] = (TRAIN,),
    deadline: float | None = None,
) -> Request:
    return Request(
        request_id=rid,
        scheduler_id=sched,
        scheduler_address=f"{sched}:1",
        resources=Amount(cpu, mem, sto, gpu),
        executors=executors,
        bid=bid,
        deadline=time.time() + 60 if deadline is None else deadline,
    )


def policy(strategy: str = "whole", **kw: object) -> Policy:
    args: dict[str, object] = {
        "executors": frozenset({TRAIN, ("example", "echo")}),
        "floor": 100.0,
        "price": 150.0,
        "strategy": strategy,
    }
    args.update(kw)
    return Policy(**args)  # type: ignore[arg-type]


# -- scoring --------------------------------------------------------------------------------


def test_score_weights_gpu_most() -> None:
    assert weight(Amount(cpu=1, memory_gib=10, storage_gib=100, gpu=1)) == pytest.approx(25 + 1 + 1 + 1)
    assert score(req(bid=280, cpu=1, mem=10, sto=100, gpu=1)) == pytest.approx(10.0)
    cheap_gpu = req("gpu", bid=300, cpu=1, mem=0, sto=0, gpu=1)  # 300 / 26
    rich_cpu = req("cpu", bid=100, cpu=4, mem=0, sto=0)  # 100 / 4
    mid = req("mid", bid=100, cpu=8, mem=0, sto=0)  # 100 / 8
    assert [r.request_id for r in rank([mid, cheap_gpu, rich_cpu])] == ["cpu", "mid", "gpu"]


def test_rank_is_stable_for_equal_scores() -> None:
    a, b, c = req("a"), req("b"), req("c")
    assert [r.request_id for r in rank([b, a, c])] == ["b", "a", "c"]


# -- filters --------------------------------------------------------------------------------


def test_drop_reasons() -> None:
    now = time.time()
    p = policy()
    free = Amount(cpu=4, memory_gib=8, storage_gib=50, gpu=0)
    assert p.drop_reason(req(), free, now) is None
    assert "deadline passed" in (p.drop_reason(req(deadline=now - 1), free, now) or "")
    assert "no configured executor" in (p.drop_reason(req(executors=(("train", "other"),)), free, now) or "")
    assert p.drop_reason(req(executors=(("train", "other"), ("example", "echo"))), free, now) is None  # any one
    assert "below the floor" in (p.drop_reason(req(bid=99.9), free, now) or "")
    assert p.drop_reason(req(bid=100), free, now) is None  # the floor itself is enough
    assert "cpu 5 > 4 free" in (p.drop_reason(req(cpu=5), free, now) or "")
    assert "gpu 1 > 0 free" in (p.drop_reason(req(gpu=1), free, now) or "")
    allowed = policy(allowed_schedulers=frozenset({"good"}))
    assert "allowed_schedulers" in (allowed.drop_reason(req(sched="evil"), free, now) or "")
    assert allowed.drop_reason(req(sched="good"), free, now) is None
    assert "invalid request" in (p.drop_reason(_no_deadline(), free, now) or "")


def _no_deadline() -> Request:
    r = req()
    return Request(r.request_id, r.scheduler_id, r.scheduler_address, r.resources, r.executors, r.bid, None)


def test_problems_name_each_field() -> None:
    bad = Request("", "", "", Amount(cpu=-1), (), float("nan"), None)
    found = " | ".join(problems(bad))
    for word in ("request_id", "scheduler.id", "scheduler.address", "executors", "not negative", "bid", "deadline"):
        assert word in found, word
    nothing = Request("r", "s", "a:1", Amount(), (TRAIN,), 1, time.time() + 5)
    assert "ask for nothing" in " ".join(problems(nothing))
    assert problems(req()) == []


# -- strategies -----------------------------------------------------------------------------


def test_whole_offers_everything_free_at_max_of_price_and_bid() -> None:
    free = Amount(cpu=6, memory_gib=20, storage_gib=80, gpu=1)
    assert policy("whole").plan(req(bid=120), free).price == 150
    assert policy("whole").plan(req(bid=220), free).price == 220
    assert policy("whole").plan(req(bid=220), free).resources == free


def test_flexible_offers_what_was_asked_at_the_bid() -> None:
    plan = policy("flexible").plan(req(bid=120, cpu=2, mem=4, sto=10), TOTAL)
    assert plan.resources == Amount(2, 4, 10, 0) and plan.price == 120


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError):
        policy("greedy")


# -- windows --------------------------------------------------------------------------------


async def test_window_closes_at_size() -> None:
    w: Windower[int] = Windower(size=3, seconds=10)
    for i in range(7):
        w.put(i)
    start = time.monotonic()
    assert await w.next() == [0, 1, 2]
    assert await w.next() == [3, 4, 5]
    assert time.monotonic() - start < 1  # full windows do not wait


async def test_window_closes_after_its_time() -> None:
    w: Windower[str] = Windower(size=100, seconds=0.15)
    w.put("a")

    async def later() -> None:
        await asyncio.sleep(0.05)
        w.put("b")
        await asyncio.sleep(0.5)
        w.put("late")

    task = asyncio.create_task(later())
    start = time.monotonic()
    assert await w.next() == ["a", "b"]
    assert 0.1 <= time.monotonic() - start < 0.45
    assert await w.next() == ["late"]
    await task


async def test_window_input_is_bounded() -> None:
    w: Windower[int] = Windower(size=2, seconds=1, capacity=3)
    assert [w.put(i) for i in range(5)] == [None, None, None, 0, 1]
    assert len(w) == 3


# -- the decision loop, with in-memory ports ------------------------------------------------


class FakeLeases:
    def __init__(self, total: Amount = TOTAL) -> None:
        self.total = total
        self.live: dict[str, Amount] = {}
        self.log: list[tuple[str, str]] = []
        self.n = 0
        self.fail_capacity = False
        self.gone_at_confirm = False  # the owner released the lease before the arbiter's Confirm

    def free(self) -> Amount:
        used = Amount()
        for amount in self.live.values():
            used = used + amount
        return (self.total - used).clamped()

    async def capacity(self) -> tuple[Amount, Amount]:
        if self.fail_capacity:
            raise PortError("UNAVAILABLE: connection refused")
        return self.total, self.free()

    async def reserve(self, *, owner_id: str, resources: Amount, price: float, request_id: str) -> Grant:
        if not resources.fits_in(self.free()):
            raise NoRoom("does not fit")
        self.n += 1
        lease_id = f"lease-{self.n}"
        self.live[lease_id] = resources
        self.log.append(("reserve", lease_id))
        return Grant(lease_id, time.time() + 0.5)

    async def confirm(self, lease_id: str) -> None:
        self.log.append(("confirm", lease_id))
        if self.gone_at_confirm:
            self.live.pop(lease_id, None)
            raise LeaseGone(f"NOT_FOUND: lease {lease_id} not found")

    async def release(self, lease_id: str) -> None:
        self.live.pop(lease_id, None)
        self.log.append(("release", lease_id))


class FakeSchedulers:
    def __init__(self, leases: FakeLeases, answer: str = "accept") -> None:
        self.leases = leases
        self.answer = answer
        self.offers: list[tuple[str, OfferSpec, float]] = []

    async def offer(self, address: str, spec: OfferSpec, timeout: float) -> tuple[bool, str]:
        # the reservation exists before the offer leaves the worker
        assert spec.lease_id in self.leases.live
        self.offers.append((address, spec, timeout))
        self.leases.log.append(("offer", spec.lease_id))
        if self.answer == "accept":
            return True, "welcome"
        if self.answer == "reject":
            return False, "have enough"
        if self.answer == "timeout":
            await asyncio.sleep(timeout)
            raise PortTimeout("DEADLINE_EXCEEDED")
        raise PortError("UNAVAILABLE: scheduler gone")


def arbiter(
    strategy: str = "whole", answer: str = "accept", **kw: object
) -> tuple[Arbiter, FakeLeases, FakeSchedulers]:
    leases = FakeLeases()
    scheds = FakeSchedulers(leases, answer)
    args: dict[str, object] = {"window_size": 100, "window_seconds": 0.05, "offer_timeout_seconds": 0.3}
    args.update(kw)
    return Arbiter(policy(strategy), leases, scheds, **args), leases, scheds  # type: ignore[arg-type]


async def run_until(arb: Arbiter, *futures: asyncio.Future) -> list:  # type: ignore[type-arg]
    task = asyncio.create_task(arb.run())
    try:
        return list(await asyncio.wait_for(asyncio.gather(*futures), 5))
    finally:
        task.cancel()


async def test_accepted_offer_reserves_first_then_confirms() -> None:
    arb, leases, scheds = arbiter("whole")
    (record,) = await run_until(arb, arb.submit(req(bid=120), "bus"))
    assert record.state is OfferState.ACCEPTED and record.reason == "welcome"
    assert leases.log == [("reserve", "lease-1"), ("offer", "lease-1"), ("confirm", "lease-1")]
    assert record.resources == TOTAL and record.price == 150  # whole worker at max(price, bid)
    address, spec, timeout = scheds.offers[0]
    assert address == "s1:1" and spec.worker_total == TOTAL
    assert 0 < timeout <= 0.3 and spec.expires_at <= time.time() + 0.5
    assert arb.history.newest(10)[0] is record


async def test_an_offer_whose_lease_its_owner_already_released_counts_as_accepted() -> None:
    arb, leases, _ = arbiter("whole")
    leases.gone_at_confirm = True  # accepted, renewed (which confirms), used and released at once
    (record,) = await run_until(arb, arb.submit(req(bid=120), "bus"))
    assert record.state is OfferState.ACCEPTED and "released by its owner" in record.reason
    assert ("release", "lease-1") not in leases.log  # nothing is left to release


async def test_rejected_or_failed_or_silent_offers_release_at_once() -> None:
    for answer, state in (
        ("reject", OfferState.REJECTED),
        ("error", OfferState.FAILED),
        ("timeout", OfferState.TIMED_OUT),
    ):
        arb, leases, _ = arbiter("flexible", answer)
        (record,) = await run_until(arb, arb.submit(req(), "solicit"))
        assert record.state is state, answer
        assert leases.log[-1] == ("release", "lease-1")
        assert leases.live == {}
        assert record.decided_at is not None


async def test_window_ranks_and_whole_strategy_serves_only_the_best() -> None:
    arb, _, scheds = arbiter("whole")
    futures = [
        arb.submit(req("low", bid=110, cpu=4), "bus"),
        arb.submit(req("high", bid=500, cpu=1), "bus"),
        arb.submit(req("mid", bid=300, cpu=2), "bus"),
    ]
    low, high, mid = await run_until(arb, *futures)
    assert high.state is OfferState.ACCEPTED
    assert low.state is mid.state is OfferState.DROPPED
    assert "higher-scored" in low.reason
    assert len(scheds.offers) == 1


async def test_flexible_strategy_packs_requests_in_score_order() -> None:
    arb, _, _ = arbiter("flexible")
    futures = [
        arb.submit(req("a", bid=200, cpu=5), "bus"),  # 200/(5+0.4+0.1)
        arb.submit(req("b", bid=400, cpu=4), "bus"),  # best
        arb.submit(req("c", bid=150, cpu=2), "bus"),
    ]
    a, b, c = await run_until(arb, *futures)
    assert b.state is OfferState.ACCEPTED and c.state is OfferState.ACCEPTED
    assert a.state is OfferState.DROPPED and "does not fit" in a.reason
    assert b.price == 400 and b.resources == Amount(4, 4, 10, 0)
    assert sum(r.resources.cpu for r in (b, c)) <= TOTAL.cpu


async def test_drops_are_recorded_with_reasons() -> None:
    arb, _, scheds = arbiter("whole")
    futures = [
        arb.submit(req("late", deadline=time.time() - 1), "bus"),
        arb.submit(req("cheap", bid=10), "bus"),
        arb.submit(req("big", cpu=64), "bus"),
        arb.submit(req("odd", executors=(("train", "nope"),)), "bus"),
        arb.submit(req("twice"), "bus"),
        arb.submit(req("twice"), "bus"),
    ]
    records = await run_until(arb, *futures)
    states = {r.request_id + ("#2" if i == 5 else ""): (r.state, r.reason) for i, r in enumerate(records)}
    assert states["late"][0] is OfferState.DROPPED and "deadline" in states["late"][1]
    assert "floor" in states["cheap"][1]
    assert "does not fit" in states["big"][1]
    assert "executor" in states["odd"][1]
    assert states["twice"][0] is OfferState.ACCEPTED
    assert "duplicate" in states["twice#2"][1]
    listed = arb.history.newest(100)
    assert len(listed) == 6 and sum(r.state is OfferState.DROPPED for r in listed) == 5
    assert len(scheds.offers) == 1
    # an offered request id stays taken afterwards
    (again,) = await run_until(arb, arb.submit(req("twice"), "solicit"))
    assert again.state is OfferState.DROPPED and "already offered" in again.reason


async def test_lease_service_down_drops_the_window() -> None:
    arb, leases, scheds = arbiter()
    leases.fail_capacity = True
    (record,) = await run_until(arb, arb.submit(req(), "bus"))
    assert record.state is OfferState.DROPPED and "lease service unavailable" in record.reason
    assert scheds.offers == []


class FakeJobs:
    def __init__(self) -> None:
        self.why = ""

    async def cannot_run(self) -> str:
        return self.why


async def test_a_worker_that_cannot_run_jobs_makes_no_offer_and_nothing_is_reserved() -> None:
    jobs = FakeJobs()
    arb, leases, scheds = arbiter(jobs=jobs)
    jobs.why = "its JobService reports NOT_SERVING"
    (record,) = await run_until(arb, arb.submit(req(), "bus"))
    assert record.state is OfferState.DROPPED
    assert record.reason == "this worker cannot run jobs now: its JobService reports NOT_SERVING"
    assert scheds.offers == [] and leases.log == []
    jobs.why = ""  # back: offers as before
    (record,) = await run_until(arb, arb.submit(req("r2"), "bus"))
    assert record.state is OfferState.ACCEPTED and len(scheds.offers) == 1


async def test_stop_drops_waiting_requests_and_refuses_new_ones() -> None:
    arb, _, _ = arbiter(window_seconds=10)
    future = arb.submit(req(), "bus")
    await arb.stop(grace=1)
    assert future.result().state is OfferState.DROPPED
    with pytest.raises(Exception, match="stopping"):
        arb.submit(req("r2"), "bus")
