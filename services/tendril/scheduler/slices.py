"""Which data slice a training job gets next: owner affinity, stealing, epochs.

Every training job holds one of ``slots`` ownership slots; the k-th slice of the reading
order belongs to slot k mod slots. The reading order is the data set's, or a permutation of it
fixed by a seed (so that each round mixes every part of a data set that was cut from sorted
files, and a loss curve shows learning rather than which files came up).

A job first takes the unused slices of its own slot (so each worker keeps reading "its" part
of the data set, which its cache already holds after the first epoch).
When its own are used up it takes an unused slice of the slot that has the most left — the
slowest worker, or a slot whose worker is gone — from the far end, away from the slices that
slot's owner reads next. When no slice of the epoch is unused, a new epoch begins.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

from tendril.core.errors import ErrorKind
from tendril.scheduler.errors import SchedulerError, SchedulerReason, SchedulerRunReason


@dataclasses.dataclass(frozen=True)
class SliceRef:
    """One slice file of the data set."""

    name: str
    size_bytes: int
    sha256: str
    num_sequences: int = 0


@dataclasses.dataclass(frozen=True)
class Assignment:
    """A slice handed to a job."""

    slice: SliceRef
    epoch: int
    stolen_from: int | None  # the slot it belonged to when it was not the job's own


class SliceAssigner:
    """Hands out slices to jobs; not thread-safe (one asyncio loop owns it)."""

    def __init__(self, slices: Sequence[SliceRef], slots: int, *, seed: int | None = None) -> None:
        if not slices:
            raise SchedulerError(
                ErrorKind.FAILED_PRECONDITION, "the data set has no slices", reason=SchedulerRunReason.EMPTY_DATASET
            )
        if slots < 1:
            raise SchedulerError(ErrorKind.INVALID_ARGUMENT, "slots must be >= 1", reason=SchedulerRunReason.BAD_SLOTS)
        self.slices = list(slices)
        self.slots = slots
        self.order = list(range(len(self.slices)))
        if seed is not None:
            random.Random(seed).shuffle(self.order)
        self._owner = {index: position % slots for position, index in enumerate(self.order)}
        self.epoch = 0
        self._used: set[int] = set()
        self._slot_of: dict[str, int] = {}  # job -> its ownership slot
        self._extra: set[str] = set()  # jobs beyond the slot count: they own nothing and only steal

    def owned(self, slot: int) -> list[int]:
        """Slice indexes owned by a slot, in reading order."""
        return self.order[slot :: self.slots]

    def join(self, job: str, prefer: int | None = None) -> int | None:
        """Give a job a slot (``prefer`` when it is free, else a freed one first); None when every
        slot is taken (it only steals)."""
        if job in self._slot_of:
            return self._slot_of[job]
        if job in self._extra:
            return None
        taken = set(self._slot_of.values())
        if prefer is not None and 0 <= prefer < self.slots and prefer not in taken:
            self._slot_of[job] = prefer
            return prefer
        for slot in range(self.slots):
            if slot not in taken:
                self._slot_of[job] = slot
                return slot
        self._extra.add(job)
        return None

    def leave(self, job: str) -> None:
        """Free a job's slot: its unused slices become anyone's to take."""
        self._slot_of.pop(job, None)
        self._extra.discard(job)

    def restore(self, epoch: int, used: Iterable[str]) -> None:
        """Continue an epoch: the slices named in ``used`` were handed out in it (unknown names are ignored)."""
        index = {ref.name: i for i, ref in enumerate(self.slices)}
        self.epoch = epoch
        self._used = {index[name] for name in used if name in index}

    def slot_of(self, job: str) -> int | None:
        return self._slot_of.get(job)

    def unused(self, slot: int) -> list[int]:
        return [i for i in self.owned(slot) if i not in self._used]

    def assign(self, job: str, cached: Iterable[str] = ()) -> Assignment:
        """The next slice for ``job`` (which must have joined); prefers slices it has cached."""
        if job not in self._slot_of and job not in self._extra:
            raise SchedulerError(
                ErrorKind.NOT_FOUND,
                f"job {job!r} has no data slot; it is not a training job of this run",
                reason=SchedulerReason.UNKNOWN_JOB,
            )
        if len(self._used) >= len(self.slices):
            self.epoch += 1
            self._used.clear()
        cached_names = set(cached)
        slot = self._slot_of.get(job)
        if slot is not None:
            own = self.unused(slot)
            if own:
                pick = next((i for i in own if self.slices[i].name in cached_names), own[0])
                return self._take(pick, None)
        victim = max(range(self.slots), key=lambda s: (len(self.unused(s)), s))
        left = self.unused(victim)
        # Cached slices anywhere beat the victim's far end: they cost no download.
        anywhere = [i for i in self.order if i not in self._used and self.slices[i].name in cached_names]
        pick = anywhere[0] if anywhere else left[-1]
        return self._take(pick, self._owner[pick])

    def _take(self, index: int, stolen_from: int | None) -> Assignment:
        self._used.add(index)
        return Assignment(self.slices[index], self.epoch, stolen_from)
