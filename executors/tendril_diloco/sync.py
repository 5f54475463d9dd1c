"""Sync modes of a worker: when the outer update of a round reaches the parameters it trains.

* ``blocking`` (the default): at round r's sync point the worker pushes Δ_r = θ_r − θ_local,
  waits for the parameter server's outer update u_r and continues from θ_{r+1} = θ_r + u_r.
* ``overlapped``: a one-step-delayed outer update. The worker pushes Δ_r and goes on training
  round r+1 at once from a proxy point θ_pushed, while its bridge pushes Δ_r and pulls u_r in
  the background. Until u_r arrives a proxy outer step stands in for it
  (:mod:`tendril_diloco.eager`: ``eager``, θ_pushed = θ_r + û_r, the run's outer step on a mix
  of the worker's fresh Δ and the others' of the round before; ``local``, θ_pushed = θ_r − Δ_r,
  the worker's local θ); when u_r arrives that stand-in is replaced by the real update:
  θ_local += θ_{r+1} − θ_pushed. The inner steps made meanwhile are kept (rebased onto
  θ_{r+1}) and count in Δ_{r+1}, which is measured from θ_{r+1}.
* ``streaming``: θ in F fragments (:mod:`tendril_diloco.fragments`), each with a run of its own
  at the parameter server, pushed at staggered points of a round and synced like ``overlapped``,
  fragment by fragment.

The worker keeps two copies: the *synchronized* θ_r, always θ0 + u_0 + … + u_{r−1} added in
the order and precision the parameter server adds them (so it equals the server's θ bit for
bit), and the model's local θ, which differs from it only by the inner progress not synced
yet. The last round of a run syncs blocking, so the run ends with every worker at the
server's final θ.

# NOTE: the proxy moves only where the inner steps made before u_r arrives start; every
# worker's synchronized θ stays the server's, whichever proxy it uses.
"""

from __future__ import annotations

import enum

from tendril_diloco.params import Params, _same_names


class SyncMode(enum.StrEnum):
    BLOCKING = "blocking"
    OVERLAPPED = "overlapped"
    STREAMING = "streaming"


SYNC_MODES = tuple(m.value for m in SyncMode)


def correction(synced_next: Params, pushed: Params) -> Params:
    """What the local θ gains when round r's update arrives: θ_{r+1} − θ_pushed.

    ``pushed`` is the point the worker trained on from after it pushed Δ_r (its local θ, θ_r − Δ_r,
    with the ``local`` proxy: the correction is then u_r + Δ_r up to rounding; θ_r + û_r with the
    ``eager`` one); ``synced_next`` is θ_{r+1} = θ_r + u_r. It is computed from the two copies so
    that the local θ lands exactly on θ_{r+1} plus its new inner progress.
    """
    _same_names(synced_next, pushed, "the synchronized parameters", "the parameters pushed")
    return {name: synced_next[name] - pushed[name] for name in synced_next}


def rebase(local: Params, synced_next: Params, pushed: Params) -> Params:
    """The local θ after round r's update arrived: θ_{r+1} + (θ_local − θ_pushed)."""
    fix = correction(synced_next, pushed)
    _same_names(local, fix, "the local parameters", "the correction")
    return {name: (local[name] + fix[name]).contiguous() for name in local}


def overlaps(mode: str, round_index: int, rounds: int) -> bool:
    """Whether round ``round_index``'s sync runs in the background (never the run's last round)."""
    return mode == SyncMode.OVERLAPPED and round_index + 1 < rounds
