"""Restart delays: exponential from a base to a cap, back to the base once a child was stable."""

from __future__ import annotations

# NOTE: a child that served this long before it crashed is "stable": its next restart starts
# again from the base delay instead of continuing a crash loop's long delay.
STABLE_AFTER_SECONDS = 30.0


class Backoff:
    """``next()`` gives base, 2·base, 4·base, ... capped at ``cap``; ``reset()`` starts over."""

    def __init__(self, base: float, cap: float, stable_after: float = STABLE_AFTER_SECONDS) -> None:
        if base <= 0:
            raise ValueError(f"the base delay must be > 0, got {base}")
        self.base = base
        self.cap = max(cap, base)
        self.stable_after = stable_after
        self._failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self._failures)
        self._failures += 1
        return delay

    def reset(self) -> None:
        self._failures = 0

    def crashed_after(self, uptime: float) -> float:
        """The delay before restarting a child that ran ``uptime`` seconds and then crashed."""
        if uptime >= self.stable_after:
            self.reset()
        return self.next()
