"""Per-caller rate limits of the gateway: one token bucket per caller identity and operation.

No gRPC here; the clock is injectable. A caller may do ``burst`` operations at once and
``rate`` per second on average; one over that is refused with RESOURCE_EXHAUSTED
RATE_LIMITED and the seconds after which a token is back (sent as google.rpc.RetryInfo).

The identity is what the servicer derives from the call (certificate name under mTLS, else the
self-declared peer id, else the caller's host). Without mTLS a caller can name itself anew on
every call, so the limits bound well-behaved but runaway peers (a loop that Puts without
sleeping), not a deliberate attacker; mTLS makes them per certificate.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable

from tendril.core.errors import ErrorKind
from tendril.gateway.errors import GatewayError, GatewayReason

# NOTE: the bucket table is bounded so callers that each come once (or forge a new name on
# every call) cannot grow the gateway's memory; the least recently seen bucket goes first, and
# a caller whose bucket went comes back with a full one.
MAX_CALLERS = 100_000


@dataclasses.dataclass(frozen=True)
class Rate:
    """``rate`` operations per second on average, ``burst`` at once."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not self.rate > 0 or not self.burst >= 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got {self.rate}/s burst {self.burst}")


@dataclasses.dataclass(frozen=True)
class GatewayLimits:
    """What one gateway allows (the embedded gateway reads them from ``[gateway]``; a standalone
    one from the flags of ``tendril gateway run``)."""

    max_record_bytes: int = 65536
    put: Rate = Rate(20.0, 100.0)
    publish: Rate = Rate(100.0, 500.0)


class RateLimiter:
    """Token buckets per caller for one operation (``what``: "Put", "Publish")."""

    def __init__(
        self,
        what: str,
        limit: Rate,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        self.what = what
        self.limit = limit
        self._clock = clock
        self._max_callers = max_callers
        # caller -> (tokens, when counted)
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self.refused = 0

    def wait_time(self, caller: str) -> float:
        """Take one token for ``caller``: 0.0 when there was one, else the seconds until there is."""
        now = self._clock()
        tokens, then = self._buckets.pop(caller, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + (now - then) * self.limit.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.limit.rate
        self._buckets[caller] = (tokens, now)
        if len(self._buckets) > self._max_callers:
            self._buckets.popitem(last=False)
        return wait

    def take(self, caller: str) -> None:
        """Take one token for ``caller`` or raise RESOURCE_EXHAUSTED RATE_LIMITED with the wait."""
        wait = self.wait_time(caller)
        if wait > 0:
            self.refused += 1
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"{caller or 'this caller'} calls {self.what} faster than {self.limit.rate:g}/s "
                f"(burst {self.limit.burst:g}); retry in {wait:.3f} s (RetryInfo) and slow down",
                reason=GatewayReason.RATE_LIMITED,
                metadata={"caller": caller, "rate": f"{self.limit.rate:g}", "burst": f"{self.limit.burst:g}"},
                retry_delay=wait,
            )

    def __len__(self) -> int:
        return len(self._buckets)
