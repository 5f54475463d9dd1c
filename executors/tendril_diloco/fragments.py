"""Fragments of θ for streaming sync (Streaming DiLoCo, Douillard et al., arXiv 2501.18512).

θ is split into F fragments, each synced on its own schedule: every round of H inner steps,
fragment f ≥ 1 is pushed after f·H/F of the round's batches and fragment 0 at the round's sync
point, so that at most one fragment travels at a time and each travels while training goes on.
Each fragment keeps its own synchronized copy and, while its push is out, the local θ it pushed;
when its update arrives only its tensors are rebased (θ_local[f] += θ_{r+1}[f] − θ_pushed[f],
the overlapped correction of :mod:`tendril_diloco.sync` restricted to the fragment), so the
synchronized θ of every fragment stays the parameter server's, bit for bit. Where a fragment
trains on from while its update travels is its proxy (:mod:`tendril_diloco.eager`): with the
``eager`` one each fragment keeps its own rebuilt outer momentum, as its run at the server does.

The split depends only on the tensors' names, shapes and dtypes: the names in natural order
(digit runs compared as numbers, so ``h.2`` comes before ``h.10`` and a model's repeated layers
stay in depth order), cut into F contiguous groups whose largest holds as few bytes as possible.
Every party that knows θ's names and shapes derives the same fragments, whatever the order of
its own dict.

# NOTE: contiguous groups (a run of whole layers each) rather than the paper's strided ones:
# a fragment is then one stretch of the model, which is what a worker that streams its layers
# would push; the paper finds both within noise of each other at the sizes measured.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence

import torch

from tendril_diloco.eager import EagerProxy
from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_diloco.params import Params, _same_names, apply_update, compute_delta
from tendril_diloco.sync import rebase

Fragment = tuple[str, ...]
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key of a tensor name: digit runs compare as numbers (``h.2`` < ``h.10``)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(name) if part)


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def split(params: Mapping[str, torch.Tensor], count: int) -> tuple[Fragment, ...]:
    """θ's names in ``count`` contiguous fragments (natural name order) of about equal bytes.

    The largest fragment is as small as a contiguous split allows (it is never smaller than
    the largest tensor); every tensor is in exactly one fragment and none is empty.
    """
    names = sorted(params, key=natural_key)
    if count < 1 or count > len(names):
        raise ExecutorError(
            f"fragments must be between 1 and the number of tensors in θ ({len(names)}), got {count}",
            reason=ExecutorReason.BAD_JOB_CONFIG,
        )
    sizes = [tensor_bytes(params[name]) for name in names]
    low, high = max(sizes), sum(sizes)
    while low < high:  # the smallest byte budget a greedy contiguous split into ≤ count groups meets
        mid = (low + high) // 2
        if _groups_needed(sizes, mid) <= count:
            high = mid
        else:
            low = mid + 1
    return tuple(tuple(names[i] for i in group) for group in _cut(sizes, low, count))


def _groups_needed(sizes: Sequence[int], budget: int) -> int:
    groups, held = 1, 0
    for size in sizes:
        if held and held + size > budget:
            groups, held = groups + 1, 0
        held += size
    return groups


def _cut(sizes: Sequence[int], budget: int, count: int) -> list[list[int]]:
    """Greedy groups within ``budget``, cut early where the tensors left are just enough for the
    groups left (so there are exactly ``count``, none empty)."""
    groups: list[list[int]] = [[]]
    held = 0
    for i, size in enumerate(sizes):
        left_after = len(sizes) - i  # tensors not placed yet, this one included
        groups_left = count - len(groups)
        if groups[-1] and (held + size > budget or left_after == groups_left):
            groups.append([])
            held = 0
        groups[-1].append(i)
        held += size
    return groups


def push_points(inner_steps: int, count: int) -> tuple[int, ...]:
    """Batches into a round after which each fragment is pushed: f·H/F for fragment f ≥ 1 (at
    least 1), H — the round's sync point — for fragment 0."""
    if inner_steps < 1 or count < 1:
        raise ExecutorError(
            f"a streaming schedule needs inner_steps ≥ 1 and fragments ≥ 1, got {inner_steps} and {count}",
            reason=ExecutorReason.BAD_JOB_CONFIG,
        )
    return tuple(inner_steps if f == 0 else max(1, f * inner_steps // count) for f in range(count))


def due(points: Sequence[int], batches: int, *, at_sync_point: bool, last_round: bool, pushed: set[int]) -> list[int]:
    """The fragments to push after ``batches`` batches of a round, in fragment order.

    A fragment is due once its point is reached; at the round's sync point (it may come before
    the planned H when the scheduler shortens a round) every fragment not pushed yet is due. In
    the run's last round every fragment waits for the sync point, so that the run ends with all
    of θ synced (the worker ends at the parameter server's final θ).
    """
    if at_sync_point:
        return [f for f in range(len(points)) if f not in pushed]
    if last_round:
        return []
    return [f for f, point in enumerate(points) if f not in pushed and f != 0 and batches >= point]


def take(params: Mapping[str, torch.Tensor], fragment: Fragment) -> Params:
    """The tensors of one fragment."""
    return {name: params[name] for name in fragment}


def merge(parts: Sequence[Mapping[str, torch.Tensor]]) -> Params:
    """The fragments' tensors as one θ; a name in two fragments is refused."""
    out: Params = {}
    for part in parts:
        twice = sorted(set(out) & set(part))
        if twice:
            raise ExecutorError(
                f"fragments overlap: {twice[:3]} appear in more than one", reason=ExecutorReason.TENSOR_NAMES
            )
        out.update(part)
    return out


@dataclasses.dataclass
class FragmentState:
    """One fragment's synchronized θ, its round, the θ its tensors trained on from since its push
    while its update travels (the local θ pushed, or the proxy point), and its eager proxy."""

    names: Fragment
    synced: Params
    round: int = 0
    pushed: Params | None = None
    proxy: EagerProxy | None = None  # None: the local proxy


class Fragments:
    """A worker's bookkeeping of θ's fragments in streaming sync (no I/O: the trainer moves bytes)."""

    def __init__(
        self,
        theta: Mapping[str, torch.Tensor],
        count: int,
        *,
        round_index: int = 0,
        proxy: Callable[[], EagerProxy | None] | None = None,
    ) -> None:
        """``proxy`` makes each fragment's eager proxy (None, or one that returns None: local)."""
        self.groups = split(theta, count)
        self.states = [
            FragmentState(group, take(theta, group), round_index, proxy=proxy() if proxy is not None else None)
            for group in self.groups
        ]

    def __len__(self) -> int:
        return len(self.states)

    def push(self, index: int, local: Mapping[str, torch.Tensor]) -> tuple[int, Params]:
        """Δ of fragment ``index`` from the local θ: (its round, Δ); remembers the θ pushed.

        A fragment whose update of the round before has not been applied cannot push again.
        """
        state = self.states[index]
        if state.pushed is not None:
            raise ExecutorError(
                f"fragment {index} pushed round {state.round} and its update has not come yet",
                reason=ExecutorReason.FRAGMENT_ORDER,
            )
        part = take(local, state.names)
        state.pushed = {name: value.clone() for name, value in part.items()}
        return state.round, compute_delta(state.synced, part)

    def proxy_point(self, index: int, sent: Params) -> Params | None:
        """Where fragment ``index``'s tensors train on from until its update comes: with the eager
        proxy θ_r + û_r from its Δ as ``sent`` (it becomes the θ pushed, the rebase's reference);
        None with the local proxy (they go on from the local θ pushed)."""
        state = self.states[index]
        if state.proxy is None or state.pushed is None:
            return None
        state.pushed = state.proxy.point(state.synced, sent)
        return state.pushed

    def arrived(
        self, index: int, update: Mapping[str, torch.Tensor], local: Params, *, contributors: int = 0
    ) -> Params:
        """Apply fragment ``index``'s outer update: its synchronized θ steps (θ_{r+1} = θ_r + u_r, as
        the server adds it) and the local θ's tensors of the fragment are rebased onto it; the
        other fragments' tensors are returned untouched. The eager proxy rebuilds the fragment's
        outer momentum from the update (``contributors``: the workers averaged in it)."""
        state = self.states[index]
        if state.pushed is None:
            raise ExecutorError(
                f"an update of fragment {index} came, but it has no push out", reason=ExecutorReason.FRAGMENT_ORDER
            )
        if state.proxy is not None:
            state.proxy.arrived(dict(update), contributors)
        synced_next = apply_update(state.synced, dict(update))
        part = rebase(take(local, state.names), synced_next, state.pushed)
        state.synced, state.pushed, state.round = synced_next, None, state.round + 1
        out = dict(local)
        out.update(part)
        return out

    def reset(self, index: int, theta: Mapping[str, torch.Tensor], round_index: int) -> None:
        """Take fragment ``index``'s run's current θ and round (joining the run, or after its update
        was missed); a push still out is forgotten."""
        state = self.states[index]
        part = take(theta, state.names)
        _same_names(part, state.synced, "the fetched fragment", f"fragment {index}")
        state.synced, state.pushed, state.round = dict(part), None, round_index
        if state.proxy is not None:
            state.proxy.reset()

    def synced(self) -> Params:
        """The whole synchronized θ, the fragments merged by name."""
        return merge([state.synced for state in self.states])

    def sizes(self) -> list[int]:
        """Bytes of each fragment (fp32)."""
        return [sum(tensor_bytes(v) for v in state.synced.values()) for state in self.states]

    def balance(self) -> float:
        """The largest fragment's bytes over an equal share (1.0: perfectly even)."""
        sizes = self.sizes()
        return max(sizes) / (sum(sizes) / len(sizes)) if sum(sizes) else math.nan
