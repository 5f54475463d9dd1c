"""When to try a gRPC call again, and how long to wait first.

This module is the one definition of both for Tendril's Python code, executors and worker:

* :data:`TRANSIENT_CODES` — status codes that say "not now" rather than "no";
  :data:`STREAM_BREAK_CODES` — what a long-lived stream reports when its connection breaks.
* :class:`Backoff` — exponential delays (initial, cap, multiplier, jitter) with ``next()`` and
  ``reset()``; plain and synchronous, so a restart loop or a reconnect loop uses it as well as
  :func:`retry`.
* :class:`RetryPolicy` — which failures to retry (status codes and/or ErrorInfo reasons), how
  often (attempts) and for how long (an overall deadline), with which backoff.
* :func:`retry` — runs an async call under a policy.

Clock, sleep and randomness are parameters, so tests run without waiting and get the same
delays every time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from tendril_sdk.errors import BridgeError, error_reason

__all__ = [
    "NO_RETRY",
    "STREAM_BREAK_CODES",
    "TRANSIENT_CODES",
    "Backoff",
    "RetryPolicy",
    "retry",
]

T = TypeVar("T")

# NOTE: the codes gRPC documents as "the service is (for now) unable to do it; the same call
# may succeed later": the peer is down or restarting (UNAVAILABLE), it ran out of time
# (DEADLINE_EXCEEDED), or it gave up on a conflict (ABORTED). Whether retrying is safe also
# depends on the call: a policy picks its codes from these.
TRANSIENT_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
    }
)

# NOTE: a stream whose peer stops mid-call, or whose connection is reset (RST_STREAM), ends
# with one of these rather than UNAVAILABLE. Add them to a policy for long-lived or
# resumable streams, where they mean "reconnect" and not "the server refused".
STREAM_BREAK_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class Backoff:
    """Exponential delays: ``initial``, ``initial·multiplier``, ... capped at ``cap``.

    ``jitter`` (0 to 1) spreads each delay uniformly over ``[d·(1 − jitter), d·(1 + jitter))``
    so that many clients that failed together do not retry together; 0 gives exact delays.
    ``next()`` returns the next delay and advances; ``reset()`` starts over (call it after a
    success). For something that runs a while before it fails (a process, a stream), give
    ``stable_after`` and call ``failed_after(seconds it ran)``: a run that lasted that long
    counts as healthy, so the delays start over instead of continuing a crash loop's long ones.
    """

    def __init__(
        self,
        initial: float = 0.2,
        cap: float = 5.0,
        *,
        multiplier: float = 2.0,
        jitter: float = 0.0,
        stable_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if initial <= 0:
            raise ValueError(f"the initial delay must be > 0 seconds, got {initial}")
        if cap < initial:
            raise ValueError(f"the cap ({cap} s) must be >= the initial delay ({initial} s)")
        if multiplier < 1:
            raise ValueError(f"the multiplier must be >= 1, got {multiplier}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        if stable_after is not None and stable_after < 0:
            raise ValueError(f"stable_after must be >= 0 seconds, got {stable_after}")
        self.initial = initial
        self.cap = cap
        self.multiplier = multiplier
        self.jitter = jitter
        self.stable_after = stable_after
        self._rand = rand
        self._failures = 0
        self._delay = initial

    @property
    def failures(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._failures

    def peek(self) -> float:
        """The next delay before jitter, without advancing."""
        return self._delay

    def next(self) -> float:
        """The delay to wait now; the one after it is ``multiplier`` times longer (up to ``cap``)."""
        delay = self._delay
        # NOTE: kept as the running delay, not initial·multiplier**n, which overflows after many failures.
        self._delay = min(self.cap, self._delay * self.multiplier)
        self._failures += 1
        if self.jitter:
            delay *= 1.0 + self.jitter * (2.0 * self._rand() - 1.0)
        return delay

    def reset(self) -> None:
        """Start again from ``initial``."""
        self._failures = 0
        self._delay = self.initial

    def failed_after(self, seconds: float) -> float:
        """The delay after a run that lasted ``seconds`` and then failed.

        A run of at least ``stable_after`` seconds was healthy: the delays start over from
        ``initial``. Without ``stable_after`` this is :meth:`next`.
        """
        if self.stable_after is not None and seconds >= self.stable_after:
            self.reset()
        return self.next()


def _status(error: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """(code, ErrorInfo reason) of a gRPC failure or a :class:`BridgeError`; None for anything else."""
    if isinstance(error, BridgeError):
        return error.code, str(error.reason)
    if isinstance(error, grpc.RpcError) and callable(getattr(error, "code", None)):
        code = error.code()
        if isinstance(code, grpc.StatusCode):
            return code, error_reason(error)
    return None


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Which failures to retry and for how long.

    A failure is retried when its status code is in ``codes`` or its ErrorInfo reason is in
    ``reasons`` (or ``retry_if`` says so, for errors that are not gRPC errors), and when both
    limits allow another try: ``attempts`` counts every try including the first, ``deadline``
    is the seconds all tries and waits may take together (a wait that would end past it is
    not started). ``None`` leaves a limit off; set at least one unless retrying forever is
    what you want. Delays come from a fresh :meth:`backoff` per call.
    """

    codes: frozenset[grpc.StatusCode] = TRANSIENT_CODES
    reasons: frozenset[str] = frozenset()
    attempts: int | None = 5
    deadline: float | None = None
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.0
    retry_if: Callable[[BaseException], bool] | None = None

    def __post_init__(self) -> None:
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be >= 1 (the first try counts), got {self.attempts}")
        if self.deadline is not None and self.deadline < 0:
            raise ValueError(f"deadline must be >= 0 seconds, got {self.deadline}")
        # Accept any iterable (a set, a list of BridgeReason members) but keep the frozen type.
        object.__setattr__(self, "codes", frozenset(self.codes))
        object.__setattr__(self, "reasons", frozenset(str(r) for r in self.reasons))
        self.backoff()  # checks the backoff settings now rather than at the first failure

    def backoff(self, rand: Callable[[], float] = random.random) -> Backoff:
        """A new :class:`Backoff` with this policy's delays."""
        return Backoff(
            self.initial_backoff, self.max_backoff, multiplier=self.multiplier, jitter=self.jitter, rand=rand
        )

    def retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is a failure this policy retries (the limits aside)."""
        status = _status(error)
        if status is not None:
            code, reason = status
            if code in self.codes or (reason and reason in self.reasons):
                return True
        return self.retry_if is not None and self.retry_if(error)


# One try, whatever happens.
NO_RETRY = RetryPolicy(codes=frozenset(), attempts=1)


async def retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """``await call()`` until it succeeds, fails in a way ``policy`` does not retry, or runs out.

    ``call`` makes a fresh attempt each time it is called (pass a lambda or a function, not a
    coroutine object). The last failure is raised as it was. ``on_retry(error, attempt,
    delay)`` is called before each wait (attempt counts from 1) — the place to log.
    """
    backoff = policy.backoff(rand)
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as error:
            if not policy.retryable(error):
                raise
            if policy.attempts is not None and attempt >= policy.attempts:
                raise
            delay = backoff.next()
            if policy.deadline is not None and clock() + delay - started > policy.deadline:
                raise
            if on_retry is not None:
                on_retry(error, attempt, delay)
        await sleep(delay)
