"""Log rotation (copy, then truncate, under a writer that keeps appending) and pruning of saved job logs."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from tendril.core import logfiles
from tendril.core.config import load_config
from tendril.supervisor.housekeeping import Housekeeping


def test_rotation_keeps_backups_and_the_writer_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    # A writer like a service: a file opened once for appending (the supervisor hands it over).
    writer = open(log, "ab", buffering=0)  # noqa: SIM115
    try:
        for generation in range(5):
            writer.write(f"generation {generation}\n".encode() * 200)
            assert logfiles.rotate(log, max_bytes=1000, backups=2)
            assert log.stat().st_size == 0
        writer.write(b"after\n")
    finally:
        writer.close()
    # The writer's next line lands at the start of the emptied file, not after a hole.
    assert log.read_bytes() == b"after\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log", "job.log.1", "job.log.2"]
    assert logfiles.backup(log, 1).read_text().startswith("generation 4")
    assert logfiles.backup(log, 2).read_text().startswith("generation 3")
    assert not logfiles.rotate(log, max_bytes=1000, backups=2)  # under the limit
    assert not logfiles.rotate(log, max_bytes=0, backups=2)  # 0: never
    assert not logfiles.rotate(tmp_path / "absent.log", max_bytes=1, backups=2)


def test_rotation_under_a_busy_writer_keeps_its_lines_in_order_without_holes(tmp_path: Path) -> None:
    log = tmp_path / "busy.log"
    log.touch()
    # The writer appends 20000 lines, says so on stdout, waits for stdin to close and appends a
    # last line: rotations run only while it is busy, so that last line must land in the file.
    script = (
        "import sys, time\n"
        f"f = open({str(log)!r}, 'ab', buffering=0)\n"
        "for i in range(20000):\n"
        "    f.write(b'line %06d\\n' % i)\n"
        "    if i % 200 == 0:\n"
        "        time.sleep(0.0005)\n"
        "print('looped', flush=True)\n"
        "sys.stdin.read()\n"
        "f.write(b'line 020000\\n')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    rotations = 0
    deadline = time.monotonic() + 60
    # NOTE: the writer pauses now and then so that rotations interleave with its writes even when
    # a busy machine would otherwise run its whole loop in one time slice.
    while not select.select([proc.stdout], [], [], 0)[0] and time.monotonic() < deadline:
        rotations += logfiles.rotate(log, max_bytes=20_000, backups=50)
        time.sleep(0.001)
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    files = [*(logfiles.backup(log, i) for i in range(50, 0, -1)), log]
    data = b"".join(path.read_bytes() for path in files if path.exists())
    numbers = [int(line[5:]) for line in data.decode().splitlines() if len(line) == 11]
    assert rotations >= 2
    # No hole of zeros (the writer appends at the new end), the order kept, the last line there;
    # only what was written in the instant of each truncation may be missing.
    assert b"\0" not in data
    assert numbers == sorted(numbers) and numbers[-1] == 20000
    assert len(numbers) >= 10000


def test_prune_by_age_then_by_total_size(tmp_path: Path) -> None:
    now = time.time()
    for name, age_days, size in [
        ("job-a.log", 20, 10),
        ("job-b.log", 3, 400),
        ("job-c.log", 2, 400),
        ("job-d.log", 1, 400),
    ]:
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age_days * 86400, now - age_days * 86400))
    (tmp_path / ".job-e.log.part").write_bytes(b"x" * 1000)  # being written: never pruned
    (tmp_path / "job.log").write_bytes(b"x" * 1000)  # the JobService's own log: not a job's
    removed = logfiles.prune(tmp_path, "job-*.log", max_age_seconds=14 * 86400, max_total_bytes=900, now=now)
    assert removed == logfiles.Pruned(files=2, bytes=410)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".job-e.log.part", "job-c.log", "job-d.log", "job.log"]
    assert logfiles.prune(tmp_path, "job-*.log", max_age_seconds=0, max_total_bytes=0) == logfiles.Pruned()


async def test_housekeeping_rotates_and_prunes_at_start_and_then_periodically(tmp_path: Path) -> None:
    config = load_config(
        None,
        env={},
        overrides={"supervisor.log_max_mib": "1", "supervisor.log_backups": "1", "job.keep_logs_days": "1"},
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    service_log = logs / "job.log"
    service_log.write_bytes(b"x" * (2 << 20))
    old = logs / "job-old.log"
    old.write_text("old job")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    keeper = Housekeeping(config, logs, [service_log], rotate_seconds=0.05, prune_seconds=0.05)
    keeper.once()
    assert service_log.stat().st_size == 0 and (logs / "job.log.1").stat().st_size == 2 << 20
    assert not old.exists()
    task = asyncio.create_task(keeper.run())
    try:
        service_log.write_bytes(b"y" * (1 << 20))
        old.write_text("old again")
        os.utime(old, (time.time() - 2 * 86400,) * 2)
        deadline = time.monotonic() + 10
        while service_log.stat().st_size or old.exists():
            assert time.monotonic() < deadline, "housekeeping did not run again within 10 s"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert service_log.stat().st_size == 0 and (logs / "job.log.1").read_bytes()[:1] == b"y"
    assert not old.exists() and not (logs / "job.log.2").exists()
