"""Where a worker in delayed sync (overlapped, streaming) trains on from while a round's update
travels: the proxy outer step (``training.delayed_proxy``).

* ``eager`` (the default): the eager update of Kale, Douillard and Donchev ("Eager Updates For
  Overlapped Communication and Computation in DiLoCo", arXiv 2502.12996). At round r's push the
  worker applies the run's *outer optimizer* (Nesterov SGD with the run's outer lr and momentum,
  as the parameter server steps) to a proxy outer gradient, the average it would get if every
  other worker sent what it sent last round::

      ĝ_r = Δ̄_{r−1} + (Δ_r^m − Δ_{r−1}^m) / M

  (Δ̄: the averaged Δ the server stepped with; Δ^m: this worker's Δ as sent; M: the workers
  that contributed to round r−1, the update's ``contributors``). It trains round r+1 from
  θ_r + û_r, û_r the outer step with the server's momentum buffer m_{r−1} and ĝ_r. When there
  is no round before (the first round, or after θ was fetched again) ĝ_r = Δ_r^m, the worker's
  own Δ standing in for everyone's.
* ``local``: the worker's own step −Δ_r stands in for the outer update (outer lr 1, no
  momentum): it trains on from its local θ, θ_r − Δ_r.

With either, the rebase is exact: the point trained on from is remembered, and when u_r comes
θ_local += θ_{r+1} − θ_proxy (:func:`tendril_diloco.sync.rebase`). The proxy only moves where
the inner steps made meanwhile start; the synchronized θ stays the parameter server's bit for bit.

The server's momentum buffer is rebuilt from the updates received. The server steps (torch's
``SGD(nesterov=True)``) m_r = μ·m_{r−1} + Δ̄_r, u_r = −lr·(Δ̄_r + μ·m_r), so from u_r::

    Δ̄_r = (−u_r / lr − μ²·m_{r−1}) / (1 + μ),   m_r = μ·m_{r−1} + Δ̄_r

(m_{−1} = 0: torch's first step takes m_0 = Δ̄_0). The rebuilt buffer differs from the server's
by rounding (and by what a lossy codec dropped from u), which moves the proxy point only. A worker
that starts mid-run (it joined late, the run was resumed, or it fetched θ again after a missed
update) rebuilds it from scratch: assuming m = 0 where the server's m is M, the error of the
rebuilt buffer is −μ/(1+μ)·M after the first update and shrinks by μ/(1+μ) (0.47 at μ = 0.9)
with every update after it.

# NOTE: memory: the eager proxy keeps three θ-sized fp32 copies on the worker besides those of
# ``local`` (the rebuilt momentum buffer, Δ̄_{r−1} − Δ_{r−1}^m/M, and the Δ_r sent until its
# update comes); with streaming sync they are per fragment, the same in all. θ is the
# parameters that train: for a LoRA fine-tune the adapter only.
"""

from __future__ import annotations

import enum
import math

import torch

from tendril_diloco.params import Params, _same_names


class DelayedProxy(enum.StrEnum):
    EAGER = "eager"
    LOCAL = "local"


DELAYED_PROXIES = tuple(p.value for p in DelayedProxy)


class EagerProxy:
    """One run's (one fragment's) eager outer step on a worker: the rebuilt server momentum and
    the stale average; no I/O."""

    def __init__(self, *, lr: float, momentum: float) -> None:
        if lr <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"an eager proxy needs outer lr > 0 and 0 <= momentum < 1, got {lr} and {momentum}")
        self.lr = lr
        self.mu = momentum
        self.momentum: Params | None = None  # the server's buffer after the last update received
        self.base: Params | None = None  # Δ̄_{r−1} − Δ_{r−1}^m / M: ĝ_r = base + Δ_r^m / M
        self.workers = 0  # M: the contributors of that round
        self._sent: Params | None = None  # Δ_r^m, pushed, its update not received yet

    def reset(self) -> None:
        """Forget the server's state (θ was fetched again: the rounds between are unknown)."""
        self.momentum, self.base, self.workers, self._sent = None, None, 0, None

    def gradient(self, delta: Params) -> Params:
        """ĝ_r: the proxy of round r's averaged Δ, from this worker's Δ_r (``delta``)."""
        if self.base is None or self.workers < 1:
            return dict(delta)
        _same_names(self.base, delta, "the last round's average", "the Δ pushed")
        return {name: self.base[name] + delta[name] / self.workers for name in delta}

    def step(self, gradient: Params) -> Params:
        """û: the outer step the server would make with ``gradient`` (its momentum as rebuilt)."""
        out = {}
        for name, g in gradient.items():
            m = self.momentum[name] if self.momentum is not None else None
            buf = g if m is None else m * self.mu + g
            out[name] = -self.lr * torch.add(g, buf, alpha=self.mu)
        return out

    def point(self, synced: Params, delta: Params) -> Params:
        """θ_r + û_r, where round r+1 trains from until u_r comes; remembers Δ_r (as sent)."""
        _same_names(synced, delta, "the synchronized parameters", "the Δ pushed")
        update = self.step(self.gradient(delta))
        self._sent = delta
        return {name: (synced[name] + update[name]).contiguous() for name in synced}

    def arrived(self, update: Params, contributors: int) -> None:
        """Round r's update u_r came: rebuild Δ̄_r and the server's m_r from it."""
        mu, lr = self.mu, self.lr
        mean, momentum = {}, {}
        for name, u in update.items():
            m = self.momentum[name] if self.momentum is not None else None
            scaled = -u.to(torch.float32) / lr
            if m is None:
                mean[name] = scaled / (1 + mu)
                momentum[name] = mean[name]
            else:
                mean[name] = (scaled - (mu * mu) * m) / (1 + mu)
                momentum[name] = m * mu + mean[name]
        self.momentum = momentum
        sent, self._sent = self._sent, None
        if sent is None or contributors < 1 or sent.keys() != mean.keys():
            self.base, self.workers = None, 0  # this worker's part of the average is not known
            return
        self.base = {name: mean[name] - sent[name] / contributors for name in mean}
        self.workers = contributors


def make_proxy(proxy: str, *, lr: float | None, momentum: float | None) -> EagerProxy | None:
    """The eager proxy for ``proxy = "eager"`` when the run's outer lr and momentum are known;
    None: the ``local`` proxy (the worker's local θ)."""
    if proxy != DelayedProxy.EAGER or lr is None or momentum is None:
        return None
    return EagerProxy(lr=lr, momentum=momentum)


def miss(synced_next: Params, pushed: Params, update: Params) -> float:
    """‖θ_{r+1} − θ_pushed‖ / ‖u_r‖: how far the proxy point was from where the outer step went,
    relative to the step (0: exact; the ``local`` proxy's is ‖u_r + Δ_r‖ / ‖u_r‖)."""
    # NOTE: logged with every rebase, so one pass per tensor and no float64 copies of θ: a
    # tensor's norm in its own precision is plenty for a diagnostic.
    off = sum(float(torch.linalg.vector_norm(synced_next[name] - pushed[name])) ** 2 for name in pushed)
    step = sum(float(torch.linalg.vector_norm(update[name])) ** 2 for name in pushed)
    return math.sqrt(off / step) if step > 0 else 0.0
