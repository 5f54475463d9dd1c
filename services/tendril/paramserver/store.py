"""A run's checkpoint on disk, under ``<state_dir>/paramserver/<run_id>/``.

::

    state.json                       config, round, phase, which θ/momentum files
    theta-<r>.safetensors            θ at the start of round r (fp32)
    momentum-<r>.safetensors         the Nesterov buffer after round r-1 (absent before round 1)
    rounds/<r>/committed/<key>.json  a record per committed push of round r (worker, weight):
                                     the pushes themselves live in memory only

Every file appears atomically (written beside, then renamed); ``state.json`` is renamed last,
so after a crash it always points at complete files, and files it does not point at are
left-overs that :meth:`RunStore.sweep` removes. A round writes θ and the momentum buffer once
(2 × the model), after its update is served; the commit records tell a restarted server which
workers' pushes of the open round it lost (they are told to push again: ``PUSH_LOST``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.files import write_atomically
from tendril.core.ids import RUN_ID
from tendril.paramserver.errors import ParameterServerError, ParamserverReason
from tendril.paramserver.rounds import RunConfig

STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1 also listed the served updates, which lived on disk then


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is a :data:`~tendril.core.ids.RUN_ID` (it names the run's folder)."""
    problem = RUN_ID.problem(run_id, "run_id")
    if problem is not None:
        raise ParameterServerError(
            ErrorKind.INVALID_ARGUMENT, problem, reason=ParamserverReason.BAD_RUN_ID, metadata={"field": "run_id"}
        )
    return run_id


def file_key(text: str) -> str:
    """A file-name-safe key for a worker or stream id (ids never become paths themselves)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclasses.dataclass
class UpdateRecord:
    """A closed round's update: who made it up."""

    contributors: int
    weight: float


@dataclasses.dataclass
class SavedState:
    """What ``state.json`` holds: the last checkpoint (the round it starts, its θ and momentum)."""

    config: RunConfig
    round: int = 0
    finished: bool = False
    closed: bool = False  # CloseJob was called (pulls are still served)
    theta_round: int | None = None  # None: no θ0 yet
    has_momentum: bool = False
    owner_id: str = ""  # the scheduler that owns the run (OpenJob's owner_id): it may name the expected workers
    expected: tuple[str, ...] = ()  # the workers the owner expects each round (SetExpectedWorkers); empty: by count

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": STATE_VERSION,
                "config": self.config.to_dict(),
                "round": self.round,
                "finished": self.finished,
                "closed": self.closed,
                "theta_round": self.theta_round,
                "has_momentum": self.has_momentum,
                "owner_id": self.owner_id,
                "expected": list(self.expected),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> SavedState:
        doc: dict[str, Any] = json.loads(text)
        if doc.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"state version {doc.get('version')} is not one of {READABLE_VERSIONS}")
        return cls(
            config=RunConfig(**doc["config"]),
            round=int(doc["round"]),
            finished=bool(doc["finished"]),
            closed=bool(doc["closed"]),
            theta_round=doc["theta_round"],
            has_momentum=bool(doc["has_momentum"]),
            owner_id=str(doc.get("owner_id", "")),
            expected=tuple(str(w) for w in doc.get("expected", ())),
        )


class RunStore:
    """Paths and atomic state of one run."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.run_id = check_run_id(run_id)
        self.dir = root / run_id
        self.state_path = self.dir / "state.json"

    # -- paths --
    def theta(self, round: int) -> Path:
        return self.dir / f"theta-{round}.safetensors"

    def momentum(self, round: int) -> Path:
        return self.dir / f"momentum-{round}.safetensors"

    def round_dir(self, round: int) -> Path:
        return self.dir / "rounds" / str(round)

    def commit_record(self, round: int, worker_id: str) -> Path:
        return self.round_dir(round) / "committed" / f"{file_key(worker_id)}.json"

    # -- state --
    def exists(self) -> bool:
        return self.state_path.exists()

    def save(self, state: SavedState) -> None:
        write_atomically(self.state_path, state.to_json())

    def load(self) -> SavedState:
        return SavedState.from_json(self.state_path.read_text())

    def mark_committed(self, round: int, worker_id: str, weight: float, stream_id: str) -> None:
        """Record a committed push (its bytes are already in the round's accumulator)."""
        meta = {"worker_id": worker_id, "weight": weight, "stream_id": stream_id}
        write_atomically(self.commit_record(round, worker_id), json.dumps(meta))

    def committed_workers(self, round: int) -> dict[str, float]:
        """Workers whose push of ``round`` was committed, by the records on disk (after a restart)."""
        folder = self.round_dir(round) / "committed"
        found = {}
        for path in sorted(folder.glob("*.json")) if folder.exists() else []:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                meta = json.loads(path.read_text())
                found[str(meta["worker_id"])] = float(meta["weight"])
        return found

    def sweep(self, state: SavedState) -> None:
        """Remove files the state does not point at: old θ/momentum, rounds, updates, temp files."""
        if not self.dir.exists():
            return
        keep = set()
        if state.theta_round is not None:
            keep.add(self.theta(state.theta_round).name)
            if state.has_momentum:
                keep.add(self.momentum(state.theta_round).name)
        for path in self.dir.glob("*.safetensors"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        for path in self.dir.glob(".*.tmp"):
            path.unlink(missing_ok=True)
        rounds = self.dir / "rounds"
        for folder in rounds.iterdir() if rounds.exists() else []:
            if not folder.name.isdigit() or int(folder.name) != state.round or state.finished:
                shutil.rmtree(folder, ignore_errors=True)
        # Served updates and θ0 offers were files before they lived in memory.
        for left_over in ("updates", "params"):
            shutil.rmtree(self.dir / left_over, ignore_errors=True)

    def purge(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def saved_runs(root: Path) -> list[str]:
    """Run ids with a saved state under ``root``."""
    if not root.exists():
        return []
    return sorted(p.parent.name for p in root.glob("*/state.json") if RUN_ID.valid(p.parent.name))


def parameter_error(run_id: str) -> ParameterServerError:
    return ParameterServerError(
        ErrorKind.FAILED_PRECONDITION,
        f"run {run_id} has no parameters yet: push θ0 first (PushParameters; bridge PublishParameters)",
        reason=ParamserverReason.NO_PARAMETERS,
        metadata={"run_id": run_id},
    )
