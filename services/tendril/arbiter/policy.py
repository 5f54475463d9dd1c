"""Which requests the worker answers, in what order, with what offer. Pure functions, no gRPC.

* :func:`problems` — what makes a request malformed (Solicit refuses it, the bus path drops it);
* :meth:`Policy.drop_reason` — why a well-formed request is not answered (deadline passed,
  scheduler not allowed, no configured executor, bid under the floor, does not fit);
* :func:`score` — bid / (25·gpu + cpu + 0.1·memory_gib + 0.01·storage_gib), highest first;
* :meth:`Policy.plan` — the offer: ``whole`` offers every free resource at max(price, bid),
  ``flexible`` offers what was asked at the bid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

from tendril.arbiter.model import Request
from tendril.core import ids, validate
from tendril.core.amounts import Amount
from tendril.core.config import WorkerConfig

STRATEGIES = ("whole", "flexible")


def weight(resources: Amount) -> float:
    """The resource units a request is scored per (GPUs weigh most)."""
    return 25.0 * resources.gpu + resources.cpu + 0.1 * resources.memory_gib + 0.01 * resources.storage_gib


def score(request: Request) -> float:
    """Bid per weighted resource unit. Well-formed requests always have a positive weight."""
    w = weight(request.resources)
    return request.bid / w if w > 0 else 0.0


def rank(requests: Iterable[Request]) -> list[Request]:
    """Highest score first; equal scores keep their arrival order."""
    return sorted(requests, key=score, reverse=True)


def problems(request: Request) -> list[str]:
    """What is wrong with a request's form (empty when it is well-formed)."""
    out = []
    if not request.request_id:
        out.append("request_id is empty")
    elif problem := ids.KEY.problem(request.request_id, "request_id"):
        out.append(problem)
    if not request.scheduler_id:
        out.append("scheduler.id is empty")
    elif problem := ids.PEER_ID.problem(request.scheduler_id, "scheduler.id"):
        out.append(problem)
    if not request.scheduler_address:
        out.append("scheduler.address is empty (the address of its AllocationService, host:port)")
    if not request.executors or any(not cls or not name for cls, name in request.executors):
        out.append("executors must list at least one {executor_class, name}, none empty")
    r = request.resources
    if not all(math.isfinite(v) and v >= 0 for v in (r.cpu, r.memory_gib, r.storage_gib)) or r.gpu < 0:
        out.append(f"resources must be finite and not negative (got {r})")
    elif weight(r) <= 0:
        out.append("resources ask for nothing; ask for some cpu, memory_gib, storage_gib or gpu")
    if not (math.isfinite(request.bid) and request.bid >= 0):
        out.append(f"bid must be a finite number >= 0 (got {request.bid})")
    if request.deadline is None:
        out.append("deadline is not set; give the instant after which the request is void")
    elif not validate.MIN_TIMESTAMP_SECONDS <= request.deadline <= validate.MAX_TIMESTAMP_SECONDS:
        out.append(f"deadline ({request.deadline:.0f} s since the epoch) is not a valid Timestamp (years 1 to 9999)")
    return out


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to reserve and offer for one request."""

    resources: Amount
    price: float


@dataclasses.dataclass(frozen=True)
class Policy:
    """The worker's answering rules, from its config."""

    executors: frozenset[tuple[str, str]]
    floor: float
    price: float
    strategy: str
    allowed_schedulers: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")

    @classmethod
    def from_config(cls, config: WorkerConfig) -> Policy:
        a = config.arbiter
        return cls(
            executors=frozenset((e.executor_class, e.name) for e in config.executors),
            floor=a.floor,
            price=a.price,
            strategy=a.strategy,
            allowed_schedulers=frozenset(a.allowed_schedulers),
        )

    def drop_reason(self, request: Request, free: Amount, now: float) -> str | None:
        """Why ``request`` gets no offer, or None when it is a candidate."""
        found = problems(request)
        if found:
            return "invalid request: " + "; ".join(found)
        assert request.deadline is not None
        if request.deadline <= now:
            return f"deadline passed {now - request.deadline:.3f} s before the arbiter read the request"
        if self.allowed_schedulers and request.scheduler_id not in self.allowed_schedulers:
            return f"scheduler {request.scheduler_id!r} is not in arbiter.allowed_schedulers"
        if not any(ex in self.executors for ex in request.executors):
            return (
                f"no configured executor among {_names(request.executors)} "
                f"(this worker runs {_names(sorted(self.executors))})"
            )
        if request.bid < self.floor:
            return f"bid {request.bid:g} is below the floor {self.floor:g}"
        if not request.resources.fits_in(free):
            return f"does not fit the free resources: {'; '.join(request.resources.shortfall(free))}"
        return None

    def plan(self, request: Request, free: Amount) -> Plan:
        """The offer for a request that fits ``free``."""
        if self.strategy == "whole":
            return Plan(free.clamped(), max(self.price, request.bid))
        return Plan(request.resources, request.bid)


def _names(executors: Sequence[tuple[str, str]] | Iterable[tuple[str, str]]) -> str:
    items = [f"{cls}/{name}" for cls, name in executors]
    return ", ".join(items) if items else "none"
