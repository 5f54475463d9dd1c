"""What a job bridge knows and does without the network (no gRPC here).

The job is the :class:`~tendril_sdk.job.JobDescriptor` its job.json was written from;
:class:`BridgeCore` answers the questions every RPC asks: where may this path go, what does
the job's config say, which run may the job act on, where does a fetched resource, a slice or
an update land. The servicer adds only the remote calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from tendril.bridge.errors import BridgeError
from tendril.bridge.fetch import Fetched, check_request, default_name, download, land_chunks
from tendril.bridge.files import landing
from tendril.bridge.paths import confine, relative_to
from tendril.bridge.resources import ResourceCache, place
from tendril.core import codecs, ids
from tendril.core.codecs import CODECS
from tendril.core.errors import ErrorKind
from tendril.core.logs import get_logger
from tendril.core.validate import Checks
from tendril_sdk.files import HANDOFF, Reusable
from tendril_sdk.job import JobDescriptor
from tendril_sdk.reasons import BridgeReason
from tendril_sdk.uris import DATA_SCHEME, DataAssetURI, parse_data_uri

ARTIFACTS = "artifacts"
DATA = "data"
UPDATES = "updates"
REUSED = ".reused"  # beside an update received: the files ReceiveUpdate receives into in place (reuse_files)
PARAMS = "params"
WORK_SUBDIRS = (ARTIFACTS, DATA, UPDATES, PARAMS)
# The bridge's copies of the updates it sent, until their round's update arrives: in the work dir,
# or in handoff/ for an update sent from there (a hard link needs the same file system).
SENT = ".sent"
DEFAULT_ROUND_TIMEOUT_SECONDS = 600.0
AGGREGATE_CLASS = "aggregate"  # the executor class whose jobs run a DiLoCo run on this worker's parameter server
EVAL_CLASS = "eval"  # the executor class whose jobs evaluate a run's θ: they watch the run's rounds, read-only

CHECK = Checks(BridgeError)
log = get_logger("tendril.bridge")

ProgressSink = Callable[[str, dict[str, float]], None]


class AssetSource(Protocol):
    """A data node's assets (the port; :class:`tendril.bridge.assets.DataNodeAssets` is the adapter)."""

    async def sha256(self, ref: DataAssetURI) -> str:
        """The sha256 the node's manifest lists for the asset (BridgeError when it has none)."""
        ...

    def chunks(self, ref: DataAssetURI) -> AsyncIterator[bytes]:
        """The asset's bytes."""
        ...


AssetSources = Callable[[str], AssetSource]  # the data node's address -> its assets


def fragment_run_id(run_id: str, fragment: int) -> str:
    """The parameter server's run of one fragment of θ in streaming sync."""
    return f"{run_id}-f{fragment}"


def _sent_stem(fragment: int | None, round_: int) -> str:
    return f"round-{round_}" if fragment is None else f"f{fragment}-round-{round_}"


@dataclasses.dataclass(frozen=True)
class SentUpdate:
    """The copy of an update the bridge sent, kept until its round's update arrives."""

    path: Path
    weight: float


class BridgeCore:
    """Path rules, config lookups and file placement for one job."""

    def __init__(
        self,
        job: JobDescriptor,
        on_progress: ProgressSink | None = None,
        *,
        fetch_roots: Sequence[Path] = (),
        resources: ResourceCache | None = None,
        handoff: Path | None = None,
    ) -> None:
        """``fetch_roots``: directories besides the work dir a file:// FetchResource may read (job.fetch_roots);
        ``resources``: the worker's cache of fetched resources (None: every fetch downloads); ``handoff``:
        the job's folder held in memory that its work dir links as handoff/ (tendril.job.workdir), if any."""
        self.job = job
        self.resources = resources
        self.root = job.work_dir
        # NOTE: paths under handoff/ are resolved in the folder the worker made, never through the
        # link in the work dir (the executor could point it anywhere).
        self.handoff = handoff.resolve() if handoff is not None and handoff.is_dir() else None
        self.fetch_roots = (Path(job.work_dir), *(Path(root) for root in fetch_roots))
        self._on_progress = on_progress
        # keyed by (fragment, round); fragment None: the run itself (every sync mode but streaming)
        self._sent: dict[tuple[int | None, int], SentUpdate] = self._load_sent()
        # keyed by (folder, stem): the kept files SendUpdate encodes into and ReceiveUpdate receives
        # into in place (reuse_files), see _take
        self._kept: dict[tuple[Path, str], Reusable] = {}

    # -- paths ---------------------------------------------------------------------------

    def resolve(self, relative: str, *, within: str = "", what: str = "path") -> Path:
        head, _, rest = relative.partition("/")
        if self.handoff is not None and head == HANDOFF and not within:
            return confine(self.handoff, rest, what=what)
        return confine(self.root, relative, within=within, what=what)

    def existing_file(self, relative: str, *, what: str = "path") -> Path:
        """A confined path that must name an existing regular file."""
        path = self.resolve(relative, what=what)
        if not path.is_file():
            raise BridgeError(
                ErrorKind.NOT_FOUND,
                f"{what} {relative!r} is not a file in the work dir; write it first, then call again",
                reason=BridgeReason.FILE_NOT_FOUND,
                metadata={"path": relative[:200]},
            )
        return path

    def relative(self, path: Path) -> str:
        if self.handoff is not None and self.handoff in path.parents:
            return f"{HANDOFF}/{relative_to(self.handoff, path)}"
        return relative_to(self.root, path)

    def update_dest(self, round_: int, relative: str) -> Path:
        return self.resolve(relative or f"{UPDATES}/round-{round_}.safetensors", what="path")

    def update_scratch(self, fragment: int | None, dest: Path) -> tuple[Path, Reusable] | None:
        """A kept fp32 file to receive (or decode) an update of ``fragment`` into in place, then
        linked at ``dest``; see :meth:`_take`."""
        return self._take(dest.parent, "update", fragment)

    def received_scratch(self, fragment: int | None, dest: Path, codec: str) -> tuple[Path, Reusable] | None:
        """A kept file to receive an update of ``fragment`` in ``codec`` (not fp32) into in place,
        before it is decoded; see :meth:`_take`."""
        return None if codec == "fp32" else self._take(dest.parent, f"received-{codec}", fragment)

    def payload_scratch(self, fragment: int | None, source: Path, codec: str) -> tuple[Path, Reusable] | None:
        """A kept file to encode ``source`` into with ``codec`` (not fp32) for a push, in place;
        see :meth:`_take`."""
        return None if codec == "fp32" else self._take(source.parent, f"payload-{codec}", fragment)

    def _take(self, beside: Path, kind: str, fragment: int | None) -> tuple[Path, Reusable] | None:
        """One of the kept files of ``kind`` (of ``fragment``) in ``.reused/`` of folder ``beside``,
        with the object that keeps it (and its mapping), held until released
        (``files.release(path)``); None when none is free or that folder is not held in memory
        (a new file then)."""
        folder = beside / REUSED
        stem = kind if fragment is None else f"{kind}-f{fragment}"
        files = self._kept.setdefault((folder, stem), Reusable(folder, stem))
        path = files.take(hold=True)
        return None if path is None else (path, files)

    def close(self) -> None:
        """Let go of the mappings of kept files (the job has ended: their memory goes with its folder)."""
        for files in self._kept.values():
            files.close()

    def _sent_folders(self) -> list[Path]:
        """Where copies of sent updates are kept: the work dir's, and handoff/'s."""
        return [self.root / SENT, *([self.handoff / SENT] if self.handoff is not None else [])]

    def params_dest(self, relative: str) -> Path:
        return self.resolve(relative or f"{PARAMS}/current.safetensors", what="path")

    # -- updates sent ----------------------------------------------------------------------

    def keep_sent(self, round_: int, path: Path, weight: float, fragment: int | None = None) -> None:
        """Keep a copy of the update sent for ``round_`` (a hard link: no byte copied), dropping older
        ones (of the same ``fragment`` of θ: in streaming sync each fragment's push is out on its own).

        The executor may delete its file once SendUpdate returned; the copy is what the bridge
        sends again when the parameter server lost the update (it restarted before the round
        closed). NOTE: the weight is kept beside it (``round-<r>.json``, written after the copy
        landed), so a bridge rebuilt after a JobService restart finds both (:meth:`_load_sent`).
        """
        folder = self.root / SENT
        if self.handoff is not None and self.handoff in Path(path).parents:
            folder = self.handoff / SENT  # (a hard link, not a copy: the update and its copy on one file system)
        folder.mkdir(mode=0o700, exist_ok=True)
        self.forget_sent(None, fragment)
        dest = folder / f"{_sent_stem(fragment, round_)}.safetensors"
        with landing(dest) as tmp:
            try:
                os.link(path, tmp)
            except OSError:  # a file system without hard links
                shutil.copyfile(path, tmp)
        with landing(dest.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({"round": round_, "weight": weight, "fragment": fragment}))
        self._sent[(fragment, round_)] = SentUpdate(dest, weight)

    def _load_sent(self) -> dict[tuple[int | None, int], SentUpdate]:
        """The copies a bridge of this job kept before (none for a new job)."""
        kept: dict[tuple[int | None, int], SentUpdate] = {}
        notes = [note for folder in self._sent_folders() if folder.is_dir() for note in folder.glob("*round-*.json")]
        for note in sorted(notes, key=lambda n: n.name):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                doc = json.loads(note.read_text())
                copy = note.with_suffix(".safetensors")
                fragment = doc.get("fragment")
                if copy.is_file():
                    kept[(None if fragment is None else int(fragment), int(doc["round"]))] = SentUpdate(
                        copy, float(doc["weight"])
                    )
        return kept

    def sent(self, round_: int, fragment: int | None = None) -> SentUpdate | None:
        return self._sent.get((fragment, round_))

    def forget_sent(self, round_: int | None, fragment: int | None = None) -> None:
        """Drop the copy kept for ``round_`` of ``fragment`` (``round_`` None: every copy of it)."""
        for kept in [k for k in self._sent if k[0] == fragment and (round_ is None or k[1] == round_)]:
            path = self._sent.pop(kept).path
            path.with_suffix(".json").unlink(missing_ok=True)
            path.unlink(missing_ok=True)

    # -- job config ----------------------------------------------------------------------

    def _config_text(self, key: str, purpose: str) -> str:
        value = self.job.config.get(key)
        if not isinstance(value, str) or not value:
            raise BridgeError(
                ErrorKind.FAILED_PRECONDITION,
                f"job {self.job.job_id} has no {key!r} in its config, needed {purpose}; "
                f"the scheduler must dispatch it with config.{key}",
                reason=BridgeReason.JOB_CONFIG_MISSING,
                metadata={"key": key},
            )
        return value

    def parameter_server(self) -> str:
        return self._config_text("parameter_server", "to reach the parameter server")

    def run_id(self, fragment: int | None = None) -> str:
        """The run at the parameter server; with ``fragment`` (streaming sync) that fragment's run,
        ``<run_id>-f<fragment>``, which must be one of the job's ``config.fragments``."""
        run_id = self._config_text("run_id", "to name the DiLoCo run at the parameter server")
        if fragment is None:
            return run_id
        count = self.job.config.get("fragments", 0)
        if not 0 <= fragment < self._fragments():
            raise BridgeError(
                ErrorKind.INVALID_ARGUMENT,
                f"fragment {fragment} is not one of job {self.job.job_id}'s fragments of θ "
                f"(its config.fragments is {count!r}; fragments are numbered from 0)",
                reason=BridgeReason.BAD_FRAGMENT,
            )
        return fragment_run_id(run_id, fragment)

    def _fragments(self) -> int:
        """The job's ``config.fragments`` (streaming sync); 0 when absent or not a whole number."""
        count = self.job.config.get("fragments", 0)
        if isinstance(count, float) and count.is_integer():  # a number that travelled in a protobuf Struct
            count = int(count)
        return count if isinstance(count, int) and not isinstance(count, bool) and count >= 1 else 0

    def _named_run(self, requested: str, run_id: str) -> str | None:
        """``requested`` when it is the job's run or one of its fragments' runs (streaming sync)."""
        if not requested:
            return run_id
        runs = {run_id, *(fragment_run_id(run_id, k) for k in range(self._fragments()))}
        return requested if requested in runs else None

    def own_run(self, requested: str) -> str:
        """The run this job may open, watch and close on its worker's parameter server.

        NOTE: the authority rule: only a job of executor class "aggregate", and only for the run
        its dispatch config names (and, in streaming sync, its fragments' runs
        ``<run_id>-f<k>``, k below ``config.fragments``); ``requested`` is empty (that run) or
        must be one of those.
        """
        executor_class = self.job.executor.executor_class
        if executor_class != AGGREGATE_CLASS:
            raise BridgeError(
                ErrorKind.PERMISSION_DENIED,
                f"job {self.job.job_id} is a {executor_class!r} job; only jobs of executor class "
                f"{AGGREGATE_CLASS!r} open, watch and close runs on this worker's parameter server",
                reason=BridgeReason.NOT_AGGREGATE_JOB,
            )
        run_id = self._config_text("run_id", "to name the run it aggregates")
        named = self._named_run(requested, run_id)
        if named is None:
            raise BridgeError(
                ErrorKind.PERMISSION_DENIED,
                f"job {self.job.job_id} aggregates run {run_id!r} (its config.run_id), not {requested!r}; "
                "a job acts only on the run its dispatch config names (leave run_id empty for it)",
                reason=BridgeReason.RUN_NOT_OWNED,
                metadata={"run_id": run_id[:128]},
            )
        return named

    def watched_run(self, requested: str) -> tuple[str, str | None]:
        """The run this job may watch and where: ``(run_id, None)`` for an aggregate job (its
        worker's own parameter server), ``(run_id, address)`` for an eval job (the run's
        parameter server its config names; watching changes nothing there).
        """
        if self.job.executor.executor_class != EVAL_CLASS:
            return self.own_run(requested), None
        run_id = self.run_id()
        named = self._named_run(requested, run_id)
        if named is None:
            raise BridgeError(
                ErrorKind.PERMISSION_DENIED,
                f"job {self.job.job_id} evaluates run {run_id!r} (its config.run_id), not {requested!r}; "
                "a job acts only on the run its dispatch config names (leave run_id empty for it)",
                reason=BridgeReason.RUN_NOT_OWNED,
                metadata={"run_id": run_id[:128]},
            )
        return named, self.parameter_server()

    def run_owner(self) -> str:
        """The job's owner (its scheduler) as the owner of the run it opens; "" when that is no peer id."""
        owner = self.job.owner_id
        return owner if ids.PEER_ID.valid(owner) else ""

    def codec(self) -> str:
        codec = self.job.config.get("codec", "fp32") or "fp32"
        if codec not in CODECS:
            raise BridgeError(
                ErrorKind.FAILED_PRECONDITION,
                f"job {self.job.job_id} has codec {codec!r}; use one of {', '.join(CODECS)}",
                reason=BridgeReason.JOB_CONFIG_BAD,
                metadata={"key": "codec"},
            )
        return str(codec)

    def codec_block_size(self) -> int | None:
        """The job's ``codec_block_size`` (int8/int4 block, sparse chunk); None (absent or 0): the codec's default."""
        raw = self.job.config.get("codec_block_size", 0) or 0
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
                raise codecs.CodecError(f"{raw!r} is not a whole number")
            if not raw:
                return None
            return codecs.get(self.codec()).check_block_size(int(raw))
        except codecs.CodecError as exc:
            raise BridgeError(
                ErrorKind.FAILED_PRECONDITION,
                f"job {self.job.job_id} has codec_block_size {raw!r}: {exc}",
                reason=BridgeReason.JOB_CONFIG_BAD,
                metadata={"key": "codec_block_size"},
            ) from exc

    def round_timeout(self, requested: float | None) -> float:
        """How long a ReceiveUpdate waits: ``requested`` (0: not at all), else the job's round timeout."""
        if requested is not None:
            return CHECK.number(
                requested,
                "timeout_seconds",
                BridgeReason.BAD_TIMEOUT,
                minimum=0.0,
                meaning="unset: the job's round timeout; 0: do not wait",
            )
        configured = self.job.config.get("round_timeout_seconds")
        if isinstance(configured, int | float) and configured > 0:
            return float(configured)
        return DEFAULT_ROUND_TIMEOUT_SECONDS

    def coordinator(self, purpose: str) -> str:
        if not self.job.coordinator_address:
            raise BridgeError(
                ErrorKind.FAILED_PRECONDITION,
                f"job {self.job.job_id} has no scheduler (it was dispatched without coordinator_address), "
                f"so there is nobody to {purpose}",
                reason=BridgeReason.NO_SCHEDULER,
            )
        return self.job.coordinator_address

    # -- files ---------------------------------------------------------------------------

    def data_node(self) -> str:
        return self._config_text("data_node", f"to fetch {DATA_SCHEME}:// resources from the data set's data node")

    async def fetch_resource(self, uri: str, dest: str, sha256: str, *, assets: AssetSources | None = None) -> Fetched:
        """Download ``uri`` into artifacts/ (``dest`` or the URI's file name); ``assets`` reaches the data
        node of a ``tendril-data://`` URI (at the job's ``config.data_node``)."""
        parsed = check_request(uri, sha256)
        name = dest or default_name(uri)
        if not name:
            raise BridgeError(
                ErrorKind.INVALID_ARGUMENT,
                f"uri {uri!r} ends without a file name; give dest (a path relative to artifacts/)",
                reason=BridgeReason.BAD_DEST,
            )
        target = self.resolve(name, within=ARTIFACTS, what="dest")
        cache = self.resources if sha256 else None
        if cache is not None:
            size = await asyncio.to_thread(cache.take, sha256, target)
            if size is not None:
                return Fetched(target, size, sha256.lower())
        if parsed.scheme == DATA_SCHEME:
            if assets is None:
                raise BridgeError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"uri {uri!r}: this bridge cannot reach data nodes",
                    reason=BridgeReason.BAD_URI,
                )
            return await self._fetch_asset(uri, target, sha256, assets(self.data_node()))
        stop = threading.Event()
        task = asyncio.ensure_future(self._download(uri, target, sha256, stop, cache))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # NOTE: the thread cannot be interrupted; it sees the flag at the next chunk and
            # removes its temporary file itself, so a cancelled fetch keeps nothing either.
            stop.set()
            raise

    async def _fetch_asset(self, uri: str, target: Path, sha256: str, source: AssetSource) -> Fetched:
        """Stream a data node's asset to ``target``, checked against the sha256 of the node's manifest."""
        ref = parse_data_uri(uri)
        listed = await source.sha256(ref)
        if sha256 and sha256.lower() != listed:
            raise BridgeError(
                ErrorKind.DATA_LOSS,
                f"{uri}: the data node's manifest lists sha256 {listed}, the request expects {sha256.lower()}; "
                "nothing was fetched (the data set's asset changed: fix or drop the expected sha256)",
                reason=BridgeReason.SHA256_MISMATCH,
                metadata={"expected": sha256.lower(), "got": listed},
            )
        if self.resources is not None and not sha256:  # NOTE: a request that named it looked already
            size = await asyncio.to_thread(self.resources.take, listed, target)
            if size is not None:
                return Fetched(target, size, listed)
        fetched = await land_chunks(uri, source.chunks(ref), target, sha256=listed)
        if self.resources is not None:
            try:
                await asyncio.to_thread(self.resources.keep, fetched.sha256, fetched.path)
            except OSError as exc:  # NOTE: a cache that cannot be written costs a later download only
                log.warning("resource.not_cached", uri=uri, error=str(exc))
        return fetched

    def _download(
        self, uri: str, target: Path, sha256: str, stop: threading.Event, cache: ResourceCache | None
    ) -> Awaitable[Fetched]:
        def run() -> Fetched:
            fetched = download(uri, target, sha256=sha256, roots=self.fetch_roots, stop=stop)
            if cache is not None:
                try:
                    cache.keep(fetched.sha256, fetched.path)
                except OSError as exc:  # NOTE: a cache that cannot be written costs a later download only
                    log.warning("resource.not_cached", uri=uri, error=str(exc))
            return fetched

        return asyncio.to_thread(run)

    def place_slice(self, cache_path: str, slice_name: str) -> Path:
        """Put a read-only view of a cached slice at data/<slice_name> (hard link, else copy)."""
        source = Path(cache_path)
        if not source.is_file():
            raise BridgeError(
                ErrorKind.UNAVAILABLE,
                f"the DataFetcher returned {cache_path}, which is not a file (evicted meanwhile?); "
                "call NextSlice again",
                reason=BridgeReason.SLICE_MISSING,
            )
        target = self.resolve(slice_name or source.name, within=DATA, what="slice name")
        # NOTE: a link shares the cache's inode, whose file the DataFetcher keeps read-only; a
        # copy (other file system) is made read-only.
        place(source, target)
        return target

    def report_progress(self, values: dict[str, float]) -> None:
        if self._on_progress is not None:
            self._on_progress(self.job.job_id, values)
