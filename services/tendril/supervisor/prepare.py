"""Before any process starts: resolve the config, claim the state dir, check state and ports, write files.

The resolved config (worker id, absolute dirs, detected resources filled in) is what every
child reads (``--config-json <state_dir>/run/config.json``), so all of them agree on the
worker's identity and totals, and on what the registry record says.

Every problem found here is one line and exit status 2 (:class:`SupervisorError` or
:class:`~tendril.core.errors.StateError`): a state dir that takes no data (read-only, full,
not ours), a damaged database (:func:`tendril.core.state.check_state`), a port in use, a
container executor without a usable runtime (:func:`tendril.core.containers.check_runtimes`). Services
left running by a supervisor that was killed are stopped first (they hold the ports).
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import json
import os
from pathlib import Path
from typing import IO

from tendril.core.amounts import configured_total
from tendril.core.config import WorkerConfig
from tendril.core.containers import check_runtimes
from tendril.core.errors import CoreReason, StateError
from tendril.core.files import write_atomically
from tendril.core.logs import get_logger
from tendril.core.state import check_state, check_writable, not_writable
from tendril.supervisor.errors import SupervisorError, SupervisorReason
from tendril.supervisor.ports import check_ports
from tendril.supervisor.reaper import stop_leftovers
from tendril.supervisor.specs import ChildSpec, child_specs
from tendril.supervisor.statusfile import read_status

log = get_logger("tendril.supervisor")


@dataclasses.dataclass
class Prepared:
    """What the supervisor works with once the checks passed."""

    config: WorkerConfig  # resolved
    specs: list[ChildSpec]
    run_dir: Path
    logs_dir: Path
    config_json: Path
    status_json: Path
    lock: IO[str]  # held open (flock) for the supervisor's lifetime


def resolve(config: WorkerConfig) -> WorkerConfig:
    """A copy with worker id, absolute state/work dirs and detected resources filled in."""
    resolved = copy.deepcopy(config)
    resolved.worker.id = config.worker_id
    resolved.worker.state_dir = str(config.state_dir.absolute())
    resolved.worker.work_dir = str(config.work_dir.absolute())
    total = configured_total(config.resources, config.work_dir)
    resolved.resources.cpu = total.cpu
    resolved.resources.memory_gib = total.memory_gib
    resolved.resources.storage_gib = total.storage_gib
    resolved.resources.gpu = total.gpu
    return resolved


def _claim(run_dir: Path, state_dir: Path) -> IO[str]:
    """Lock the state dir so that two workers never share one ledger and job database."""
    path = run_dir / "supervisor.lock"
    try:
        lock = open(path, "a+")  # noqa: SIM115 - held for the process lifetime
    except OSError as exc:
        raise StateError(
            f"cannot open {path}: {exc.strerror}; give the worker's user write access to {state_dir} "
            "or set worker.state_dir (TENDRIL_WORKER_STATE_DIR) elsewhere",
            reason=CoreReason.STATE_NOT_WRITABLE,
            path=str(path),
        ) from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise SupervisorError(
            f"state dir {state_dir} is in use by a running worker (pid {holder}); stop it or set worker.state_dir "
            "(TENDRIL_WORKER_STATE_DIR) to another directory",
            reason=SupervisorReason.STATE_DIR_IN_USE,
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


# NOTE: a service killed with its supervisor shows as gone (a zombie) as soon as its main
# thread has exited, but holds its ports until its last thread has: up to ~1 s under load.
PORT_GRACE_SECONDS = 3.0


def _ended_uncleanly(status_json: Path) -> bool:
    """The last supervisor of this state dir did not stop cleanly (killed, host crash)."""
    try:
        return bool(read_status(status_json).get("state") not in ("stopped", "failed"))
    except (OSError, ValueError):
        return False


def prepare(config: WorkerConfig) -> Prepared:
    """Resolve, lock, check every port and write ``run/config.json``; raises SupervisorError."""
    resolved = resolve(config)
    check_runtimes(resolved)
    state_dir = Path(resolved.worker.state_dir)
    run_dir, logs_dir = state_dir / "run", state_dir / "logs"
    try:
        for folder in (state_dir, run_dir, logs_dir, Path(resolved.worker.work_dir)):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SupervisorError(
            f"cannot create {exc.filename}: {exc.strerror}; set worker.state_dir / worker.work_dir to a writable place",
            reason=SupervisorReason.DIR_NOT_WRITABLE,
        ) from exc
    check_writable(run_dir)  # a read-only or full disk is said as such, before the lock is tried
    lock = _claim(run_dir, state_dir)
    try:
        config_json = run_dir / "config.json"
        left = stop_leftovers(config_json)
        if left:
            log.warning("supervisor.stopped_leftovers", pids=left, why="services of a supervisor that was killed")
        check_state(state_dir, Path(resolved.worker.work_dir))
        specs = child_specs(resolved)
        check_ports(resolved, specs, grace=PORT_GRACE_SECONDS if _ended_uncleanly(run_dir / "status.json") else 0.0)
        try:
            write_atomically(config_json, json.dumps(resolved.to_dict(), indent=2), mode=0o600)
        except OSError as exc:
            raise not_writable(config_json, exc.strerror or str(exc), exc.errno) from exc
    except BaseException:
        lock.close()
        raise
    return Prepared(resolved, specs, run_dir, logs_dir, config_json, run_dir / "status.json", lock)
