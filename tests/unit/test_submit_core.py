"""The submit core with doubles for the network: the best offer is taken, a lost worker's job is
retried elsewhere (counted against ``retries``), results arrive once, a cancel cancels the job."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tendril.scheduler.allocation import Endpoints, OfferIn
from tendril.submit import core
from tendril.submit.errors import SubmitError, SubmitReason, WorkerLost
from tendril.submit.jobfile import load_job_text
from tendril.submit.offers import OfferBox, choose
from tendril.submit.ports import Ended, FileEntry, Manifest

ENDPOINTS = Endpoints("lease", "job", "")


def _offer(worker: str, price: float = 1.0, expires: float = 0.0, request: str = "r") -> OfferIn:
    return OfferIn(request, worker, f"lease-{worker}", ENDPOINTS, expires, price)


def test_choose_prefers_unlost_workers_then_the_lowest_price() -> None:
    offers = [_offer("a", 2.0), _offer("b", 1.0), _offer("c", 0.5)]
    assert choose(offers).worker_id == "c"  # type: ignore[union-attr]
    assert choose(offers, avoid={"c"}).worker_id == "b"  # type: ignore[union-attr]
    assert choose([]) is None


async def test_the_box_answers_every_offer_of_a_window_and_takes_the_best() -> None:
    box = OfferBox(window=0.05)
    box.open("r")
    answers = await asyncio.gather(box.consider(_offer("a", 2.0)), box.consider(_offer("b", 1.0)))
    assert [a[0] for a in answers] == [False, True]
    taken, seen = await box.taken()
    assert (taken.worker_id, seen) == ("b", 2)
    assert (await box.consider(_offer("c", 0.1)))[0] is False  # the request is closed


class FakeWorker:
    def __init__(self, net: FakeNetwork, worker_id: str) -> None:
        self.net = net
        self.worker_id = worker_id
        self.cancelled: list[str] = []

    async def confirm(self) -> None:
        return None

    async def keep(self) -> None:
        await asyncio.Event().wait()

    async def release(self) -> None:
        self.net.released.append(self.worker_id)

    async def dispatch(self, job_id: str, executor: Any, config: Any, timeout_seconds: float) -> None:
        self.net.dispatched.append((self.worker_id, job_id))

    async def wait_end(self, job_id: str) -> Ended:
        if self.worker_id in self.net.dies:
            raise WorkerLost(f"{self.worker_id} died")
        if self.net.hang:
            await asyncio.Event().wait()
        return Ended("SUCCEEDED", 0, "")

    async def follow(self, job_id: str, emit: Any) -> None:
        emit(core.LogText(job_id, "hi\n"))

    async def cancel(self, job_id: str, reason: str) -> None:
        self.cancelled.append(job_id)
        self.net.cancels.append(job_id)

    async def manifest(self, job_id: str) -> Manifest:
        digest = hashlib.sha256(b"42").hexdigest()
        return Manifest(job_id, (FileEntry("answer.txt", 2, digest),))

    async def chunks(self, job_id: str, path: str, offset: int) -> AsyncIterator[tuple[int, bytes]]:
        yield offset, b"42"[offset:]

    async def delete_results(self, job_id: str) -> None:
        self.net.deleted.append(job_id)


class FakeNetwork:
    def __init__(self, box: OfferBox, workers: list[str], dies: set[str], hang: bool = False) -> None:
        self.box = box
        self.workers = workers
        self.dies = dies
        self.hang = hang
        self.dispatched: list[tuple[str, str]] = []
        self.released: list[str] = []
        self.cancels: list[str] = []
        self.deleted: list[str] = []

    async def publish(self, request_id: str, *args: Any) -> None:
        async def offer_all() -> None:
            await asyncio.gather(
                *(self.box.consider(_offer(w, 1.0 + i, request=request_id)) for i, w in enumerate(self.workers))
            )

        asyncio.get_running_loop().create_task(offer_all())

    def worker(self, offer: OfferIn) -> FakeWorker:
        return FakeWorker(self, offer.worker_id)


def _job(retries: int) -> Any:
    return load_job_text(
        f'retries = {retries}\n[executor]\nclass = "x"\nname = "y"\n[network]\noffer_window_seconds = 0.01'
    )


async def _submit(tmp_path: Path, dies: set[str], retries: int) -> tuple[FakeNetwork, list[Any], Any]:
    box = OfferBox(window=0.01)
    net = FakeNetwork(box, ["a", "b", "c"], dies)
    events: list[Any] = []
    sub = core.Submission(_job(retries), net, box, tmp_path / "out", emit=events.append)
    try:
        return net, events, await sub.run()
    except SubmitError as exc:
        return net, events, exc


async def test_a_lost_worker_is_retried_elsewhere_and_results_arrive_once(tmp_path: Path) -> None:
    net, events, done = await _submit(tmp_path, {"a"}, retries=2)
    assert isinstance(done, core.Done) and done.succeeded
    assert [w for w, _ in net.dispatched] == ["a", "b"]
    assert [j[-3:] for _, j in net.dispatched] == ["-a0", "-a1"]
    assert [type(e).__name__ for e in events].count("Retry") == 1
    assert (tmp_path / "out" / "answer.txt").read_bytes() == b"42"
    assert os.listdir(tmp_path) == ["out"]
    assert net.deleted == [done.job_id] and net.released == ["a", "b"]


async def test_retries_are_counted(tmp_path: Path) -> None:
    net, _, error = await _submit(tmp_path, {"a", "b"}, retries=1)
    assert isinstance(error, SubmitError) and error.reason == SubmitReason.RETRIES_EXHAUSTED
    assert [w for w, _ in net.dispatched] == ["a", "b"]
    assert not (tmp_path / "out").exists()


async def test_cancelling_a_submission_cancels_its_job_and_releases_the_lease(tmp_path: Path) -> None:
    box = OfferBox(window=0.01)
    net = FakeNetwork(box, ["a"], set(), hang=True)
    task = asyncio.create_task(core.Submission(_job(2), net, box, tmp_path / "out").run())
    for _ in range(500):
        if net.dispatched:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert net.cancels == [net.dispatched[0][1]] and net.released == ["a"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[executor]\nclass = "x"\nname = "y"\ncolour = 1', "executor.colour"),
        ('retries = "2"\n[executor]\nclass = "x"\nname = "y"', "retries"),
        ('name = "a/b"\n[executor]\nclass = "x"\nname = "y"', "name"),
        ('[executor]\nclass = "x"\nname = "y"\n[config]\nx = nan', "NaN"),
        ("[executor\n", "not valid TOML"),
        ("retries = 1", "executor"),
    ],
)
def test_a_bad_job_file_is_refused_naming_the_key(text: str, says: str) -> None:
    with pytest.raises(SubmitError) as err:
        load_job_text(text)
    assert err.value.reason == SubmitReason.BAD_JOB_FILE and says in err.value.message, err.value.message


def test_a_job_file_keeps_its_config_and_defaults() -> None:
    job = load_job_text('[executor]\nclass = "x"\nname = "y"\n[config]\nzero = 0\nnested = { a = [1, 2] }')
    assert job.config == {"zero": 0, "nested": {"a": [1, 2]}}
    assert (job.retries, job.name, job.network.gateway) == (2, "job", "127.0.0.1:50050")
