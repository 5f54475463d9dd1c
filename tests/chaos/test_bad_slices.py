"""Data integrity end to end: a DiLoCo run through the real network goes on when the data set
holds slices no trainer can read (they are skipped and counted in metrics.jsonl) and when the
slices cached on the workers are damaged under the DataFetcher (each is caught by the check
right before its hand-out, evicted and fetched again from the data node)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from tendril.scheduler.cluster import processes_under
from tendril.scheduler.demo import DemoSettings, prepare_data, run_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(300)]

EVERY = 3  # every 3rd training slice of the data set is made unreadable (8 in a row would end a job)


def _unreadable(folder: Path) -> set[str]:
    """Replace every EVERY-th training slice with bytes that are no SafeTensors file, keeping the
    manifest true to them (size, sha256): a data set that passes every check but cannot be read."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    names = set()
    for entry in manifest["slices"][::EVERY]:
        garbage = b"\xff" * entry["size_bytes"]
        (folder / entry["name"]).write_bytes(garbage)
        entry["sha256"] = hashlib.sha256(garbage).hexdigest()
        names.add(entry["name"])
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return names


def _damage_new(root: Path, dataset_id: str, seen: set[Path]) -> list[Path]:
    """Overwrite the header of each training slice file new in a worker's cache (held-out slices
    are left alone)."""
    damaged = []
    for path in sorted(root.glob(f"worker-*/**/cache/{dataset_id}/*slice-*")):
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        try:
            with open(path, "r+b") as f:
                f.write(b"\x00" * 16)
        except OSError:
            continue  # evicted or replaced meanwhile
        damaged.append(path)
    return damaged


async def _damage_cached(root: Path, dataset_id: str, stop: asyncio.Event, limit: int) -> list[Path]:
    """Damage slice files as they appear in the workers' caches, up to ``limit`` of them."""
    damaged: list[Path] = []
    seen: set[Path] = set()
    while not stop.is_set() and len(damaged) < limit:
        damaged += await asyncio.to_thread(_damage_new, root, dataset_id, seen)
        await asyncio.sleep(0.05)
    return damaged


async def test_unreadable_and_damaged_slices_do_not_stop_a_run(tmp_path: Path) -> None:
    settings = DemoSettings(
        out=tmp_path,
        workers=2,
        rounds=3,
        inner_steps=6,
        batch_size=8,
        max_bytes=300_000,
        sequences_per_slice=16,
        tokenizer="bytes",
        run_id="bad",
        timeout_seconds=240,
    )
    folder = prepare_data(settings)
    unreadable = _unreadable(folder)
    dataset_id = json.loads((folder / "manifest.json").read_text())["dataset_id"]

    stop = asyncio.Event()
    damaging = asyncio.create_task(_damage_cached(tmp_path / "run", dataset_id, stop, limit=6))
    try:
        result = await run_cluster(settings)
    finally:
        stop.set()
        damaged = await damaging
    logs = result.cluster_root / "logs"
    scheduler_log = (logs / "scheduler.log").read_text()[-3000:]
    assert result.scheduler_exit == 0, scheduler_log
    assert result.killed == [] and processes_under(tmp_path) == []

    lines = result.lines
    assert [line["round"] for line in lines] == [0, 1, 2]
    assert all(line["contributors"] == 2 for line in lines)
    skipped = sum(line["slices_skipped"] for line in lines)
    print(
        f"bad slices: {len(unreadable)} unreadable in the data set, {skipped} skipped by the trainers; "
        f"{len(damaged)} cached files damaged"
    )
    assert skipped >= 1, "every third slice is unreadable: some must have been handed out and skipped"

    # Every damaged cache file was either caught at its hand-out (evicted, fetched again) or had
    # already been handed out (then the trainer could not read it and skipped it).
    assert damaged, "the run cached slices on its workers"
    fetcher_logs = "".join(p.read_text() for p in result.cluster_root.glob("**/data_fetcher.log"))
    caught = fetcher_logs.count("cache.damaged")
    print(f"bad slices: {caught} damaged cache files caught at hand-out and fetched again")
    assert caught >= 1, "a damaged slice waiting in the cache is caught before its hand-out"
