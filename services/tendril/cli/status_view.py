"""The one screen `tendril status` prints, from a :class:`~tendril.cli.status_model.Snapshot`.

Plain text, fixed-width columns, no colours (it is also read in logs and over ssh). No grpc.
"""

from __future__ import annotations

import datetime
import signal
from collections.abc import Sequence

from tendril.cli.status_model import Amount, CacheStats, Capacity, JobRow, LeaseRow, ServiceHealth, Snapshot

NONE = "-"
PROGRESS_WIDTH = 48
FIRST_FIGURES = ("round", "loss", "eval_loss", "eval_perplexity", "eval_accuracy")


def duration(seconds: float) -> str:
    """3.2s, 4m05s, 2h07m, 3d04h."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def size(count: float) -> str:
    """Bytes with a binary unit: 512 B, 1.5 KiB, 2.0 GiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def number(value: float) -> str:
    """A figure without trailing zeros: 4, 0.5, 12.25."""
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def exit_text(code: int | None) -> str:
    if code is None:
        return NONE
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


def clock(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [str(row[-1])]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def amount_text(res: Amount) -> str:
    return f"cpu {number(res.cpu)}, mem {number(res.memory_gib)} GiB, disk {number(res.storage_gib)} GiB, gpu {res.gpu}"


def progress_text(progress: dict[str, float]) -> str:
    """``round=1 loss=2.58 batches=177 ...``: the figures that matter most first, then the rest by name."""
    keys = [k for k in FIRST_FIGURES if k in progress] + sorted(k for k in progress if k not in FIRST_FIGURES)
    text = " ".join(f"{k}={number(progress[k])}" for k in keys) or NONE
    return text if len(text) <= PROGRESS_WIDTH else text[: PROGRESS_WIDTH - 1] + "…"


def service_lines(services: Sequence[ServiceHealth]) -> list[str]:
    rows = []
    for s in services:
        restarts = NONE if s.restarts is None else str(s.restarts)
        detail = []
        if s.state is not None and s.state != "serving":
            detail.append(f"supervisor: {s.state}")
        if s.last_exit_code is not None and (s.restarts or not s.serving):
            detail.append(f"last exit {exit_text(s.last_exit_code)}")
        if s.error:
            detail.append(s.error)
        pid = NONE if s.pid is None else str(s.pid)
        rows.append([s.name, s.address, s.health, pid, restarts, "; ".join(detail)])
    return table(["SERVICE", "ADDRESS", "HEALTH", "PID", "RESTARTS", "DETAIL"], rows)


def capacity_lines(cap: Capacity) -> list[str]:
    rows = [
        [name, number(a.cpu), number(a.memory_gib), number(a.storage_gib), str(a.gpu)]
        for name, a in (("total", cap.total), ("reserved", cap.reserved), ("free", cap.free))
    ]
    return table(["", "CPU", "MEMORY GiB", "STORAGE GiB", "GPU"], rows)


def expires_text(seconds: float) -> str:
    return f"expired {duration(-seconds)} ago" if seconds < 0 else duration(seconds)


def lease_lines(leases: Sequence[LeaseRow]) -> list[str]:
    rows = [
        [
            lease.lease_id,
            lease.owner_id,
            lease.kind,
            expires_text(lease.expires_in_seconds),
            amount_text(lease.resources),
        ]
        for lease in leases
    ]
    return table(["LEASE", "OWNER", "KIND", "EXPIRES IN", "RESOURCES"], rows)


def job_lines(jobs: Sequence[JobRow]) -> list[str]:
    rows = []
    for job in jobs:
        ended = "" if job.exit_code is None else f" ({exit_text(job.exit_code)})"
        rows.append(
            [job.job_id, job.state + ended, job.executor, duration(job.age_seconds), progress_text(job.progress)]
        )
    return table(["JOB", "STATE", "EXECUTOR", "AGE", "PROGRESS"], rows)


def cache_lines(cache: CacheStats) -> list[str]:
    rate = NONE if cache.hit_rate is None else f"{cache.hit_rate:.0%}"
    return [
        f"  cached {size(cache.cached_bytes)} of {size(cache.capacity_bytes)}, hits {cache.hits}, "
        f"misses {cache.misses} (hit rate {rate}), evictions {cache.evictions}",
        f"  downloaded {size(cache.downloaded_bytes)}, resumed {cache.resumed_fetches}, "
        f"sha256 mismatches {cache.sha256_mismatches}, open jobs {cache.open_jobs}, "
        f"waited {duration(cache.wait_seconds)}",
    ]


def _section(title: str, body: list[str] | None, error: str | None, empty: str) -> list[str]:
    lines = ["", title]
    if body is None:
        lines.append(f"  unavailable: {error or 'service not part of this worker'}")
    elif not body:
        lines.append(f"  {empty}")
    else:
        lines += body
    return lines


def header(snap: Snapshot) -> list[str]:
    serving = sum(s.serving for s in snap.services)
    verdict = "all serving" if snap.ok else f"{len(snap.services) - serving} of {len(snap.services)} NOT serving"
    lines = [f"worker {snap.worker_id} ({snap.location}) — {verdict}"]
    sup = snap.supervisor
    if sup is not None:
        state = sup.state if sup.alive else f"{sup.state}, not running"
        registered = "registered in the gateway" if sup.registered else "not registered in the gateway"
        lines.append(
            f"supervisor pid {sup.pid} {state}, serving since {clock(sup.serving_at)}, {registered} ({sup.status_path})"
        )
    if snap.note:
        lines.append(f"note: {snap.note}")
    return lines


def render(snap: Snapshot) -> str:
    """The whole screen, ending in a newline."""
    lines = header(snap)
    lines += ["", "SERVICES", *service_lines(snap.services)]
    lines += _section(
        "RESOURCES",
        capacity_lines(snap.capacity) if snap.capacity else None,
        snap.errors.get("lease"),
        "",
    )
    leases = snap.leases
    lines += _section(
        f"LEASES ({len(leases)})" if leases is not None else "LEASES",
        lease_lines(leases) if leases else leases,
        snap.errors.get("lease"),
        "none",
    )
    jobs = snap.jobs
    lines += _section(
        f"JOBS ({len(jobs)}, newest first)" if jobs is not None else "JOBS",
        job_lines(jobs) if jobs else jobs,
        snap.errors.get("job"),
        "none",
    )
    lines += _section(
        "DATA CACHE",
        cache_lines(snap.data_cache) if snap.data_cache else None,
        snap.errors.get("data_cache"),
        "",
    )
    return "\n".join(lines) + "\n"
