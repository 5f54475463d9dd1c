"""``<state_dir>/run/status.json``: what the supervisor runs right now (read by tools, tests).

Written atomically (temp file + rename) on every change, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from tendril.core.files import write_atomically


@dataclasses.dataclass
class ChildStatus:
    """One child as the status file shows it."""

    name: str
    module: str
    address: str
    log: str
    state: str = "pending"  # pending, starting, serving, backoff, stopping, stopped, failed
    pid: int | None = None
    restarts: int = 0
    hung_kills: int = 0  # killed while running: no health answer, or a stalled loop reported
    last_exit_code: int | None = None
    started_at: float | None = None
    serving_since: float | None = None
    ready: bool = True  # False while it says it cannot do its work (the JobService: disk, jobs.db)
    unready_since: float | None = None


@dataclasses.dataclass
class SupervisorStatus:
    """The whole status file."""

    worker_id: str
    supervisor_pid: int
    state_dir: str
    state: str = "starting"  # starting, serving, stopping, stopped, failed
    started_at: float = dataclasses.field(default_factory=time.time)
    serving_at: float | None = None
    registered: bool = False
    children: dict[str, ChildStatus] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def write_status(path: Path, status: SupervisorStatus) -> None:
    write_atomically(path, json.dumps(status.to_dict(), indent=2))


def read_status(path: Path) -> dict[str, Any]:
    with open(path) as f:
        data: dict[str, Any] = json.load(f)
    return data
