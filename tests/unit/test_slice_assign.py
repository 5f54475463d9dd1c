"""Slice assignment: owner affinity, stealing from the slowest, cached preference, epochs, slots."""

from __future__ import annotations

import pytest

from tendril.scheduler.errors import SchedulerError
from tendril.scheduler.slices import SliceAssigner, SliceRef


def _slices(n: int) -> list[SliceRef]:
    return [SliceRef(f"slice-{i:05d}.safetensors", 100 + i, f"{i:064x}", 10) for i in range(n)]


def _names(assigner: SliceAssigner, job: str, k: int) -> list[str]:
    return [assigner.assign(job).slice.name for _ in range(k)]


def test_each_job_reads_its_own_share_first() -> None:
    a = SliceAssigner(_slices(6), slots=2)
    assert a.join("a") == 0 and a.join("b") == 1
    assert _names(a, "a", 3) == ["slice-00000.safetensors", "slice-00002.safetensors", "slice-00004.safetensors"]
    got = a.assign("b")
    assert got.slice.name == "slice-00001.safetensors" and got.stolen_from is None and got.epoch == 0


def test_fast_job_steals_from_the_far_end_of_the_slowest() -> None:
    a = SliceAssigner(_slices(9), slots=3)
    for job in ("fast", "mid", "slow"):
        a.join(job)
    _names(a, "fast", 3)  # 0, 3, 6: its own share is used
    a.assign("mid")  # 1
    stolen = a.assign("fast")
    # slot 2 ("slow") has 3 unused slices (2, 5, 8), slot 1 has 2: steal slow's last one.
    assert stolen.slice.name == "slice-00008.safetensors" and stolen.stolen_from == 2
    assert a.assign("slow").slice.name == "slice-00002.safetensors"


def test_new_epoch_when_every_slice_is_used() -> None:
    a = SliceAssigner(_slices(3), slots=1)
    a.join("only")
    first = [a.assign("only") for _ in range(3)]
    assert {x.epoch for x in first} == {0}
    again = a.assign("only")
    assert again.epoch == 1 and again.slice.name == "slice-00000.safetensors"
    assert a.epoch == 1


def test_cached_slices_are_preferred() -> None:
    a = SliceAssigner(_slices(6), slots=2)
    a.join("a")
    a.join("b")
    assert a.assign("a", cached=["slice-00004.safetensors"]).slice.name == "slice-00004.safetensors"
    _names(a, "a", 2)  # 0, 2: own share done
    # b's share is 1, 3, 5; a has 3 cached, so it steals that instead of the far end (5).
    got = a.assign("a", cached=["slice-00003.safetensors"])
    assert got.slice.name == "slice-00003.safetensors" and got.stolen_from == 1


def test_a_leaving_job_frees_its_slot_for_a_replacement() -> None:
    a = SliceAssigner(_slices(4), slots=2)
    a.join("a")
    a.join("b")
    a.assign("b")  # 1
    a.leave("b")
    with pytest.raises(SchedulerError) as err:
        a.assign("b")
    assert err.value.reason == "UNKNOWN_JOB"
    assert a.join("c") == 1
    assert a.assign("c").slice.name == "slice-00003.safetensors"  # continues b's share


def test_jobs_beyond_the_slots_only_steal() -> None:
    a = SliceAssigner(_slices(4), slots=1)
    a.join("a")
    assert a.join("extra") is None
    got = a.assign("extra")
    assert got.stolen_from == 0 and got.slice.name == "slice-00003.safetensors"


def test_every_slice_is_used_once_per_epoch() -> None:
    a = SliceAssigner(_slices(10), slots=3)
    for job in ("a", "b", "c"):
        a.join(job)
    order = ["a", "a", "b", "a", "c", "a", "a", "b", "a", "a"]
    names = [a.assign(job).slice.name for job in order]
    assert sorted(names) == sorted(s.name for s in _slices(10))
    assert a.assign("c").epoch == 1


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(SchedulerError) as err:
        SliceAssigner([], slots=2)
    assert err.value.reason == "EMPTY_DATASET"


def test_a_seed_mixes_the_reading_order_the_same_way_every_time() -> None:
    a, b = SliceAssigner(_slices(12), slots=3, seed=5), SliceAssigner(_slices(12), slots=3, seed=5)
    assert a.order == b.order and a.order != list(range(12)) and sorted(a.order) == list(range(12))
    shares = [set(a.owned(slot)) for slot in range(3)]
    assert set.union(*shares) == set(range(12)) and sum(len(x) for x in shares) == 12
    for job in ("x", "y", "z"):
        a.join(job)
    got = [a.assign(job).slice.name for job in ("x", "y", "z") * 4]
    assert sorted(got) == sorted(s.name for s in _slices(12))
    assert got[0] == f"slice-{a.order[0]:05d}.safetensors"
