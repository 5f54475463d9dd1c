"""BridgeCore without gRPC: FetchResource (file and http), slice placement, job config lookups."""

from __future__ import annotations

import hashlib
import http.server
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tendril.bridge.core import WORK_SUBDIRS, BridgeCore
from tendril.bridge.errors import BridgeError
from tendril.core.errors import ErrorKind
from tendril_sdk.job import ExecutorRef, JobDescriptor

PAYLOAD = b"tendril resource\n" * 1000


def _core(tmp_path: Path, *, roots: tuple[Path, ...] | None = None, **config: object) -> BridgeCore:
    """A job's bridge core; file:// fetches may read ``roots`` (default: the tests' source dirs)."""
    work = tmp_path / "job-1"
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir(parents=True)
    job = JobDescriptor(
        job_id="job-1",
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("example", "echo"),
        config=dict(config),
        work_dir=work,
        socket_path=work / "bridge.sock",
    )
    if roots is None:
        roots = (tmp_path / "src dir", Path("/nonexistent"), Path("/tmp"))
    return BridgeCore(job, fetch_roots=roots)


def _leftovers(core: BridgeCore) -> list[str]:
    return sorted(p.name for p in (core.root / "artifacts").rglob("*"))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src dir" / "model.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "weights.bin").write_bytes(PAYLOAD)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_fetch_file_with_default_name_and_sha(tmp_path: Path, source: Path) -> None:
    core = _core(tmp_path)
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    uri = "file://" + str(source).replace(" ", "%20")
    fetched = await core.fetch_resource(uri, "", digest.upper())
    assert core.relative(fetched.path) == "artifacts/model.bin"
    assert fetched.path.read_bytes() == PAYLOAD and fetched.size_bytes == len(PAYLOAD) and fetched.sha256 == digest
    nested = await core.fetch_resource(uri, "models/v1/m.bin", "")
    assert core.relative(nested.path) == "artifacts/models/v1/m.bin"


async def test_sha_mismatch_keeps_nothing(tmp_path: Path, source: Path) -> None:
    core = _core(tmp_path)
    with pytest.raises(BridgeError) as err:
        await core.fetch_resource(f"file://{source}", "m.bin", "0" * 64)
    assert err.value.kind is ErrorKind.DATA_LOSS and err.value.reason == "SHA256_MISMATCH"
    assert _leftovers(core) == []


@pytest.mark.parametrize(
    ("uri", "dest", "sha", "kind"),
    [
        ("file:///nonexistent/x.bin", "", "", ErrorKind.NOT_FOUND),
        ("ftp://host/x.bin", "", "", ErrorKind.INVALID_ARGUMENT),
        ("x.bin", "", "", ErrorKind.INVALID_ARGUMENT),
        ("file://otherhost/x.bin", "", "", ErrorKind.INVALID_ARGUMENT),
        ("file:///tmp", "", "", ErrorKind.INVALID_ARGUMENT),
        ("SRC", "../escape.bin", "", ErrorKind.INVALID_ARGUMENT),
        ("SRC", "/abs.bin", "", ErrorKind.INVALID_ARGUMENT),
        ("SRC", "", "abc", ErrorKind.INVALID_ARGUMENT),
        ("http://127.0.0.1:1/", "", "", ErrorKind.INVALID_ARGUMENT),
        ("http://127.0.0.1:1/x.bin", "", "", ErrorKind.UNAVAILABLE),
    ],
)
async def test_bad_fetches(tmp_path: Path, source: Path, uri: str, dest: str, sha: str, kind: ErrorKind) -> None:
    core = _core(tmp_path)
    with pytest.raises(BridgeError) as err:
        await core.fetch_resource(uri.replace("SRC", f"file://{source}"), dest, sha)
    assert err.value.kind is kind, err.value.message
    assert _leftovers(core) == []


async def test_dest_through_a_symlink_out_of_the_work_dir_is_refused(tmp_path: Path, source: Path) -> None:
    core = _core(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, core.root / "artifacts" / "out")
    with pytest.raises(BridgeError) as err:
        await core.fetch_resource(f"file://{source}", "out/x.bin", "")
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "file:///etc/no-such-file", "file:///etc/../etc/hostname"])
async def test_file_fetches_stay_inside_the_work_dir_by_default(tmp_path: Path, uri: str) -> None:
    core = _core(tmp_path, roots=())
    with pytest.raises(BridgeError) as err:
        await core.fetch_resource(uri, "x.bin", "")
    # Refused the same way whether the file exists or not: nothing to learn about it.
    assert err.value.kind is ErrorKind.PERMISSION_DENIED and err.value.reason == "RESOURCE_OUTSIDE_ROOTS"
    assert "job.fetch_roots" in err.value.message
    assert _leftovers(core) == []


async def test_file_fetches_from_the_work_dir_and_configured_roots(tmp_path: Path, source: Path) -> None:
    core = _core(tmp_path, roots=())
    inside = core.root / "data" / "own.bin"
    inside.write_bytes(PAYLOAD)
    assert (await core.fetch_resource(f"file://{inside}", "own.bin", "")).path.read_bytes() == PAYLOAD
    with pytest.raises(BridgeError):
        await core.fetch_resource(f"file://{source}", "m.bin", "")
    allowed = _core(tmp_path / "other", roots=(source.parent,))
    assert (await allowed.fetch_resource(f"file://{source}", "m.bin", "")).size_bytes == len(PAYLOAD)


async def test_a_symlink_in_the_work_dir_does_not_lead_out_of_the_roots(tmp_path: Path, source: Path) -> None:
    core = _core(tmp_path, roots=())
    link = core.root / "data" / "sneaky.bin"
    os.symlink(source, link)
    with pytest.raises(BridgeError) as err:
        await core.fetch_resource(f"file://{link}", "x.bin", "")
    assert err.value.reason == "RESOURCE_OUTSIDE_ROOTS"
    fifo = core.root / "data" / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(BridgeError) as err:
        await core.fetch_resource(f"file://{fifo}", "x.bin", "")
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT and err.value.reason == "BAD_URI"


async def test_fetch_http_and_http_errors(tmp_path: Path, http_root: str) -> None:
    core = _core(tmp_path)
    fetched = await core.fetch_resource(f"{http_root}/weights.bin", "", hashlib.sha256(PAYLOAD).hexdigest())
    assert fetched.path.read_bytes() == PAYLOAD
    with pytest.raises(BridgeError) as missing:
        await core.fetch_resource(f"{http_root}/absent.bin", "", "")
    assert missing.value.kind is ErrorKind.NOT_FOUND and "404" in missing.value.message
    assert _leftovers(core) == ["weights.bin"]


def test_place_slice_links_read_only_and_replaces(tmp_path: Path) -> None:
    core = _core(tmp_path)
    cache = tmp_path / "cache" / "abc-slice-00000.safetensors"
    cache.parent.mkdir()
    cache.write_bytes(b"slice bytes")
    os.chmod(cache, 0o444)
    target = core.place_slice(str(cache), "slice-00000.safetensors")
    assert core.relative(target) == "data/slice-00000.safetensors"
    assert os.stat(target).st_ino == os.stat(cache).st_ino, "a hard link, no copy"
    again = core.place_slice(str(cache), "slice-00000.safetensors")
    assert again == target and target.read_bytes() == b"slice bytes"
    with pytest.raises(BridgeError) as escape:
        core.place_slice(str(cache), "../slice.bin")
    assert escape.value.kind is ErrorKind.INVALID_ARGUMENT
    with pytest.raises(BridgeError) as gone:
        core.place_slice(str(tmp_path / "evicted"), "s.bin")
    assert gone.value.kind is ErrorKind.UNAVAILABLE


def test_place_slice_copies_read_only_when_linking_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = _core(tmp_path)
    cache = tmp_path / "c.bin"
    cache.write_bytes(b"xyz")

    def no_link(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    target = core.place_slice(str(cache), "c.bin")
    assert target.read_bytes() == b"xyz"
    assert stat.S_IMODE(target.stat().st_mode) == 0o444
    assert os.stat(target).st_ino != os.stat(cache).st_ino


def test_config_lookups(tmp_path: Path) -> None:
    bare = _core(tmp_path / "a")
    for lookup in (bare.parameter_server, bare.run_id):
        with pytest.raises(BridgeError) as err:
            lookup()
        assert err.value.kind is ErrorKind.FAILED_PRECONDITION and "config" in err.value.message
    with pytest.raises(BridgeError) as no_scheduler:
        bare.coordinator("report progress to")
    assert no_scheduler.value.reason == "NO_SCHEDULER" and "no scheduler" in no_scheduler.value.message
    assert bare.codec() == "fp32" and bare.round_timeout(None) == 600.0 and bare.round_timeout(3) == 3
    assert bare.round_timeout(0) == 0  # zero means zero: do not wait
    full = _core(tmp_path / "b", parameter_server="h:1", run_id="r", codec="int8", round_timeout_seconds=42)
    assert (full.parameter_server(), full.run_id(), full.codec(), full.round_timeout(None)) == ("h:1", "r", "int8", 42)
    with pytest.raises(BridgeError):
        _core(tmp_path / "c", codec="fp8").codec()
    assert full.relative(full.update_dest(3, "")) == "updates/round-3.safetensors"
    assert full.relative(full.params_dest("")) == "params/current.safetensors"


def test_codec_block_size_is_the_jobs_or_the_codecs_default(tmp_path: Path) -> None:
    assert _core(tmp_path / "a", codec="int8").codec_block_size() is None
    assert _core(tmp_path / "b", codec="sparse", codec_block_size=2048).codec_block_size() == 2048
    for i, (codec, size) in enumerate([("int4", 255), ("sparse", 32), ("int8", 2.5), ("int8", "big")]):
        with pytest.raises(BridgeError) as err:
            _core(tmp_path / f"bad{i}", codec=codec, codec_block_size=size).codec_block_size()
        assert err.value.reason == "JOB_CONFIG_BAD" and err.value.metadata == {"key": "codec_block_size"}


def test_sent_copies_survive_into_a_rebuilt_bridge(tmp_path: Path) -> None:
    """A bridge rebuilt after a JobService restart finds the copies (and weights) its predecessor kept."""
    core = _core(tmp_path)
    update = core.root / "updates" / "delta.safetensors"
    update.write_bytes(b"delta of round 3")
    core.keep_sent(3, update, 128.0)
    update.unlink()  # the executor may delete its file once SendUpdate returned
    rebuilt = BridgeCore(core.job)
    kept = rebuilt.sent(3)
    assert kept is not None and kept.weight == 128.0 and kept.path.read_bytes() == b"delta of round 3"
    assert rebuilt.sent(2) is None
    rebuilt.forget_sent(3)
    assert sorted(p.name for p in (core.root / ".sent").iterdir()) == []
    assert BridgeCore(core.job).sent(3) is None


def test_a_sent_copy_without_its_note_is_not_resent(tmp_path: Path) -> None:
    core = _core(tmp_path)
    (core.root / ".sent").mkdir()
    (core.root / ".sent" / "round-1.safetensors").write_bytes(b"half kept")
    (core.root / ".sent" / "round-2.json").write_text('{"round": 2, "weight": 1.0}')  # its copy is gone
    assert BridgeCore(core.job).sent(1) is None and BridgeCore(core.job).sent(2) is None


def _job_of(tmp_path: Path, executor_class: str, **config: object) -> BridgeCore:
    core = _core(tmp_path, **config)
    job = core.job
    return BridgeCore(
        JobDescriptor(
            job_id=job.job_id,
            worker_id=job.worker_id,
            lease_id=job.lease_id,
            owner_id=job.owner_id,
            executor=ExecutorRef(executor_class, "diloco"),
            config=dict(job.config),
            work_dir=job.work_dir,
            socket_path=job.socket_path,
        )
    )


def test_watched_run_aggregate_on_its_own_server_eval_on_the_runs(tmp_path: Path) -> None:
    config = {"run_id": "run-1", "parameter_server": "10.0.0.5:50054"}
    assert _job_of(tmp_path / "a", "aggregate", **config).watched_run("") == ("run-1", None)
    evaluation = _job_of(tmp_path / "e", "eval", **config)
    assert evaluation.watched_run("") == ("run-1", "10.0.0.5:50054")
    assert evaluation.watched_run("run-1") == ("run-1", "10.0.0.5:50054")
    with pytest.raises(BridgeError) as other:
        evaluation.watched_run("run-2")
    assert other.value.reason == "RUN_NOT_OWNED"
    with pytest.raises(BridgeError) as train:
        _job_of(tmp_path / "t", "train", **config).watched_run("")
    assert train.value.reason == "NOT_AGGREGATE_JOB"
    with pytest.raises(BridgeError) as no_ps:
        _job_of(tmp_path / "n", "eval", run_id="run-1").watched_run("")
    assert no_ps.value.reason == "JOB_CONFIG_MISSING"


def test_a_fragment_names_its_own_run_and_keeps_its_own_sent_copy(tmp_path: Path) -> None:
    """Streaming sync: fragment k of run R is the run R-f<k> (below config.fragments only), and
    each fragment's sent copy is kept beside the others' (a rebuilt bridge finds each)."""
    core = _core(tmp_path, run_id="run-9", fragments=2)
    assert core.run_id() == "run-9" and core.run_id(0) == "run-9-f0" and core.run_id(1) == "run-9-f1"
    for bad in (_core(tmp_path / "a", run_id="run-9", fragments=2), _core(tmp_path / "b", run_id="run-9")):
        with pytest.raises(BridgeError) as err:
            bad.run_id(2)
        assert err.value.kind == ErrorKind.INVALID_ARGUMENT and err.value.reason == "BAD_FRAGMENT"
        assert "config.fragments" in err.value.message
    update = core.root / "updates" / "delta.safetensors"
    update.write_bytes(b"x" * 16)
    core.keep_sent(4, update, 8.0, 1)
    core.keep_sent(5, update, 16.0, 0)  # fragment 0's push does not drop fragment 1's copy
    core.keep_sent(3, update, 4.0)
    rebuilt = BridgeCore(core.job)
    kept = (rebuilt.sent(4, 1), rebuilt.sent(5, 0), rebuilt.sent(3))
    assert [k.weight if k else None for k in kept] == [8.0, 16.0, 4.0]
    assert rebuilt.sent(4) is None and rebuilt.sent(5, 1) is None
    rebuilt.forget_sent(4, 1)
    assert BridgeCore(core.job).sent(4, 1) is None and BridgeCore(core.job).sent(5, 0) is not None


def test_an_aggregate_job_owns_its_fragments_runs(tmp_path: Path) -> None:
    """Streaming sync: the aggregate job may open, watch and close <run_id>-f<k> for k below
    config.fragments (a float after a protobuf Struct counts), and no other run."""
    work = tmp_path / "job-agg"
    for sub in WORK_SUBDIRS:
        (work / sub).mkdir(parents=True)
    job = JobDescriptor(
        job_id="agg",
        worker_id="worker-test",
        lease_id="L1",
        owner_id="sched",
        executor=ExecutorRef("aggregate", "diloco"),
        config={"run_id": "run-9", "fragments": 2.0},
        work_dir=work,
        socket_path=work / "bridge.sock",
    )
    core = BridgeCore(job)
    assert core.own_run("") == "run-9" and core.own_run("run-9-f1") == "run-9-f1"
    assert core.watched_run("run-9-f0") == ("run-9-f0", None)
    for other in ("run-9-f2", "run-8-f0", "run-9-fx"):
        with pytest.raises(BridgeError) as err:
            core.own_run(other)
        assert err.value.reason == "RUN_NOT_OWNED"


def test_an_update_sent_from_handoff_is_kept_beside_it_and_found_again(tmp_path: Path, memory_dir: Path) -> None:
    """The copy of an update sent from handoff/ (another file system than the work dir) is a hard
    link in handoff/.sent, not a copy on the disk; a rebuilt bridge finds it; updates received in
    place into handoff/ are kept in handoff/.reused."""
    job = _core(tmp_path).job
    (job.work_dir / "handoff").symlink_to(memory_dir, target_is_directory=True)
    core = BridgeCore(job, handoff=memory_dir)
    update = core.resolve("handoff/delta-00003.safetensors")
    assert update == memory_dir.resolve() / "delta-00003.safetensors"
    assert core.relative(update) == "handoff/delta-00003.safetensors"
    update.write_bytes(b"delta of round 3")
    core.keep_sent(3, update, 64.0)
    kept = core.sent(3)
    assert kept is not None and kept.path.parent == memory_dir / ".sent"
    assert os.stat(kept.path).st_ino == os.stat(update).st_ino
    assert not (core.root / ".sent").exists() or not list((core.root / ".sent").iterdir())
    update.unlink()
    rebuilt = BridgeCore(core.job, handoff=memory_dir)
    again = rebuilt.sent(3)
    assert again is not None and again.weight == 64.0 and again.path.read_bytes() == b"delta of round 3"
    rebuilt.forget_sent(3)
    assert list((memory_dir / ".sent").iterdir()) == []
    # Only the folder the worker made counts: the link itself leads nowhere else.
    with pytest.raises(BridgeError, match="symbolic link"):
        BridgeCore(job).resolve("handoff/delta-00004.safetensors")
    (job.work_dir / "handoff").unlink()
    (job.work_dir / "handoff").symlink_to(tmp_path, target_is_directory=True)
    assert core.resolve("handoff/x.safetensors") == memory_dir.resolve() / "x.safetensors"
    with pytest.raises(BridgeError):
        core.resolve("handoff/../job.json")
    scratch = core.update_scratch(None, core.resolve("handoff/round-3.safetensors"))
    assert scratch is not None and scratch[0].parent == memory_dir / ".reused"
    on_disk = core.update_scratch(None, core.resolve("updates/round-3.safetensors"))
    if on_disk is not None:  # (the work dir itself is in memory here)
        assert on_disk[0].parent == core.root.resolve() / "updates" / ".reused"
