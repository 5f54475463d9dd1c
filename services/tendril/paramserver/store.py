"""A run's state on disk, under ``<state_dir>/paramserver/<run_id>/``.

::

    state.json                       config, round, phase, which θ/momentum files, served updates
    theta-<r>.safetensors            θ at the start of round r (fp32)
    momentum-<r>.safetensors         the Nesterov buffer after round r-1 (absent before round 1)
    updates/round-<r>.<codec>.safetensors   the outer update u of round r, per wire codec
    rounds/<r>/partial/<id>.part     pushes being received (dropped when round r closes)
    rounds/<r>/committed/<id>.safetensors + <id>.json   committed pushes of the open round
    params/<id>.part                 θ0 offers being received

Every file appears atomically (written beside, then renamed); ``state.json`` is renamed last,
so after a crash it always points at complete files, and files it does not point at are
left-overs that :meth:`RunStore.sweep` removes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from tendril.core.errors import ErrorKind
from tendril.core.files import write_atomically
from tendril.paramserver.errors import ParameterServerError, ParamserverReason
from tendril.paramserver.rounds import RunConfig

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STATE_VERSION = 1


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ParameterServerError(
            ErrorKind.INVALID_ARGUMENT,
            f"run_id {run_id!r} is not a valid run id: use 1-128 of A-Z a-z 0-9 . _ - (not starting with . _ -)",
            reason=ParamserverReason.BAD_RUN_ID,
        )
    return run_id


def file_key(text: str) -> str:
    """A file-name-safe key for a worker or stream id (ids never become paths themselves)."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclasses.dataclass
class UpdateRecord:
    """A served round update."""

    contributors: int
    weight: float


@dataclasses.dataclass
class SavedState:
    """What ``state.json`` holds."""

    config: RunConfig
    round: int = 0
    finished: bool = False
    closed: bool = False  # CloseJob was called (pulls are still served)
    theta_round: int | None = None  # None: no θ0 yet
    has_momentum: bool = False
    updates: dict[int, UpdateRecord] = dataclasses.field(default_factory=dict)

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
                "updates": {str(r): dataclasses.asdict(u) for r, u in self.updates.items()},
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> SavedState:
        doc: dict[str, Any] = json.loads(text)
        if doc.get("version") != STATE_VERSION:
            raise ValueError(f"state version {doc.get('version')} is not {STATE_VERSION}")
        return cls(
            config=RunConfig(**doc["config"]),
            round=int(doc["round"]),
            finished=bool(doc["finished"]),
            closed=bool(doc["closed"]),
            theta_round=doc["theta_round"],
            has_momentum=bool(doc["has_momentum"]),
            updates={int(r): UpdateRecord(**u) for r, u in doc["updates"].items()},
        )


@dataclasses.dataclass(frozen=True)
class CommittedPush:
    """A push that counts in its round."""

    worker_id: str
    weight: float
    path: Path


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

    def update(self, round: int, codec: str) -> Path:
        return self.dir / "updates" / f"round-{round}.{codec}.safetensors"

    def round_dir(self, round: int) -> Path:
        return self.dir / "rounds" / str(round)

    def partial(self, round: int, stream_id: str) -> Path:
        return self.round_dir(round) / "partial" / f"{file_key(stream_id)}.part"

    def committed(self, round: int, worker_id: str) -> Path:
        return self.round_dir(round) / "committed" / f"{file_key(worker_id)}.safetensors"

    def params_partial(self, stream_id: str) -> Path:
        return self.dir / "params" / f"{file_key(stream_id)}.part"

    # -- state --
    def exists(self) -> bool:
        return self.state_path.exists()

    def save(self, state: SavedState) -> None:
        write_atomically(self.state_path, state.to_json())

    def load(self) -> SavedState:
        return SavedState.from_json(self.state_path.read_text())

    def mark_committed(self, round: int, worker_id: str, weight: float, stream_id: str) -> None:
        """Record a committed push (its payload is already in place); this is the commit point."""
        path = self.committed(round, worker_id)
        meta = {"worker_id": worker_id, "weight": weight, "stream_id": stream_id}
        write_atomically(path.with_suffix(".json"), json.dumps(meta))

    def committed_pushes(self, round: int) -> list[CommittedPush]:
        """Committed pushes of ``round`` found on disk (after a restart)."""
        folder = self.round_dir(round) / "committed"
        found = []
        for meta_path in sorted(folder.glob("*.json")) if folder.exists() else []:
            meta = json.loads(meta_path.read_text())
            payload = meta_path.with_suffix(".safetensors")
            if payload.exists():
                found.append(CommittedPush(meta["worker_id"], float(meta["weight"]), payload))
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
        updates = self.dir / "updates"
        for path in updates.iterdir() if updates.exists() else []:
            parts = path.name.split(".")
            round_text = parts[0].removeprefix("round-")
            if not round_text.isdigit() or int(round_text) not in state.updates or path.name.startswith("."):
                path.unlink(missing_ok=True)

    def purge(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def saved_runs(root: Path) -> list[str]:
    """Run ids with a saved state under ``root``."""
    if not root.exists():
        return []
    return sorted(p.parent.name for p in root.glob("*/state.json") if _RUN_ID.match(p.parent.name))


def parameter_error(run_id: str) -> ParameterServerError:
    return ParameterServerError(
        ErrorKind.FAILED_PRECONDITION,
        f"run {run_id} has no parameters yet: push θ0 first (PushParameters; bridge PublishParameters)",
        reason=ParamserverReason.NO_PARAMETERS,
        metadata={"run_id": run_id},
    )
