"""Container executors: the ``<runtime> run`` command line around an executor's argv (no gRPC here).

An executor whose ``[[executors]]`` table has a ``container`` block runs as
``<runtime> run --rm --name <name> ... <image or --rootfs PATH:O> <argv>`` under its shim, in
place of the bare argv; everything else about the job (shim, bridge, log, exit code,
re-adoption) stays as it is. What the container gets:

* the job's work dir bind-mounted at the same path, and as its working directory, so
  ``{SOCKET_PATH}``, ``{WORK_DIR}`` and ``{JOB_JSON}`` mean inside what they mean outside;
* the environment a plain executor gets, passed by name (``--env NAME``: the runtime reads the
  value from its own environment, which the shim sets), so no value — the bridge token — is on
  a command line; ``CUDA_VISIBLE_DEVICES`` is renumbered (``0..n-1``) because only the job's
  GPUs are passed in (podman: ``--device nvidia.com/gpu=<id>`` through CDI; docker:
  ``--gpus "device=<ids>"``);
* no network (``--network none``: a loopback only; the bridge is a Unix socket in the work
  dir), no capabilities and no new privileges;
* the worker's user and group (``--user uid:gid``; rootless podman also ``--userns keep-id``),
  so the files it writes in the work dir belong to the worker's user;
* the lease's CPUs and memory as limits (``--cpus``, ``--memory``) unless ``limits = false``;
* podman: the worker's own open-files and process limits (``--ulimit``), never more, since
  a runtime's defaults can exceed what the worker may grant.

Stopping: SIGTERM to the shim reaches ``<runtime> run``, which passes it to the container (its
default signal proxy); the kill after the grace period kills ``<runtime> run``; the shim then
runs :func:`remove_argv` (``rm --force``), which kills and removes the container, whatever
ended it. The container's name is derived from the job id and its work dir
(:func:`container_name`), so that JobService can also remove it when the shim is gone (a
killed shim, a restart that cannot re-adopt, a stray work dir).
"""

from __future__ import annotations

import hashlib
import os
import resource
from collections.abc import Mapping, Sequence
from pathlib import Path

from tendril.core.config import ContainerConfig, WorkerConfig
from tendril.core.containers import Runtime, RuntimeFinder, check_runtimes
from tendril.core.errors import ConfigError
from tendril.job.gpus import CUDA_ENV

NAME_PREFIX = "tendril-"
LABEL_JOB = "tendril.job"
LABEL_WORK_DIR = "tendril.work_dir"
# NOTE: rootful podman lowers its own process limit to this before it starts the container,
# and the container may not get more than its starter has.
PODMAN_NPROC_CAP = 32768
MIN_MEMORY_MIB = 6  # docker's smallest --memory


def container_name(job_id: str, work_dir: Path) -> str:
    """``tendril-<job id>-<8 hex of the work dir>``: unique per host (two workers may share a job id)."""
    digest = hashlib.sha256(os.fsencode(work_dir)).hexdigest()[:8]
    return f"{NAME_PREFIX}{job_id}-{digest}"


def _rlimit_arg(name: str, which: int, cap: int | None = None) -> list[str]:
    soft, hard = resource.getrlimit(which)
    limits = []
    for value in (soft, hard):
        if value == resource.RLIM_INFINITY:
            value = cap if cap is not None else -1
        elif cap is not None:
            value = min(value, cap)
        limits.append(value)
    if -1 in limits:
        return []  # unlimited: the runtime's default is within it
    return ["--ulimit", f"{name}={limits[0]}:{limits[1]}"]


def run_argv(
    runtime: Runtime,
    container: ContainerConfig,
    argv: Sequence[str],
    *,
    name: str,
    job_id: str,
    work_dir: Path,
    env_names: Sequence[str],
    devices: Sequence[str] = (),
    cpus: float = 0.0,
    memory_gib: float = 0.0,
    uid: int | None = None,
    gid: int | None = None,
) -> list[str]:
    """The full command line that runs ``argv`` in a container (see the module docstring)."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    podman = runtime.kind == "podman"
    args = runtime.command("run", "--rm", "--name", name)
    args += ["--label", f"{LABEL_JOB}={job_id}", "--label", f"{LABEL_WORK_DIR}={work_dir}"]
    args += ["--pull", "never", "--network", "none", "--cap-drop", "all", "--security-opt", "no-new-privileges"]
    # NOTE: the output reaches <runtime> run's stdout/stderr, which the shim points at the job's
    # log; the runtime keeps no second copy (podman: passthrough hands over the file itself).
    args += ["--log-driver", "passthrough" if podman else "none"]
    args += ["--mount", f"type=bind,source={work_dir},target={work_dir}", "--workdir", str(work_dir)]
    if podman and uid != 0:
        args += ["--userns", "keep-id"]  # rootless: our uid is the same uid inside
    args += ["--user", f"{uid}:{gid}"]
    for env_name in sorted(env_names):
        args += ["--env", env_name]
    if devices:
        if podman:
            for device in devices:
                args += ["--device", f"nvidia.com/gpu={device}"]
        else:
            args += ["--gpus", f'"device={",".join(devices)}"']  # NOTE: quoted, or the list splits at its comma
    if container.limits and cpus > 0:
        args += ["--cpus", f"{cpus:g}"]
    if container.limits and memory_gib > 0:
        args += ["--memory", f"{max(MIN_MEMORY_MIB, int(memory_gib * 1024))}m"]
    if podman:
        args += _rlimit_arg("nofile", resource.RLIMIT_NOFILE)
        args += _rlimit_arg("nproc", resource.RLIMIT_NPROC, PODMAN_NPROC_CAP)
    if container.init:
        args.append("--init")
    args += container.run_args
    if container.rootfs:
        # NOTE: as an overlay (":O"): the executor's writes outside its work dir are thrown away
        # with the container, and the tree itself (the host's "/", say) is never changed.
        args += ["--rootfs", f"{container.rootfs}:O"]
    else:
        args += [container.image]
    return args + list(argv)


def container_env(env: Mapping[str, str], devices: Sequence[str]) -> dict[str, str]:
    """The executor's environment for a container: its GPUs renumbered, since only they are passed in."""
    out = dict(env)
    out[CUDA_ENV] = ",".join(str(i) for i in range(len(devices)))
    return out


def remove_argv(runtime: Runtime, name: str) -> list[str]:
    """Kill (SIGKILL, no wait) and remove the container; no error when it is already gone (podman)."""
    if runtime.kind == "podman":
        return runtime.command("rm", "--force", "--time", "0", "--ignore", name)
    return runtime.command("rm", "--force", name)


class Containers:
    """The container executors of a worker and their runtimes, found at start (ConfigError when one has none)."""

    def __init__(self, config: WorkerConfig, finder: RuntimeFinder | None = None) -> None:
        self.runtimes = check_runtimes(config, finder)
        self._plain = {(ex.executor_class, ex.name) for ex in config.executors if ex.container is None}
        if self.runtimes and "," in str(config.work_dir):
            raise ConfigError(
                f"worker.work_dir {str(config.work_dir)!r} has a ',', which a container bind mount cannot name; "
                "choose a work dir without one for container executors",
                key="worker.work_dir",
            )

    def runtime_of(self, executor_class: str, name: str) -> Runtime | None:
        """The runtime of a container executor; None for a plain one."""
        return self.runtimes.get((executor_class, name))

    def cleanup(self, job_id: str, work_dir: Path, executor: tuple[str, str] | None = None) -> list[list[str]]:
        """The commands that remove a job's container whatever state it is in; none for a plain executor.

        ``executor`` unknown (a stray work dir) or no longer configured: one per runtime in use.
        """
        name = container_name(job_id, work_dir)
        if executor is not None and executor in self.runtimes:
            return [remove_argv(self.runtimes[executor], name)]
        if executor is not None and executor in self._plain:
            return []
        return [remove_argv(runtime, name) for runtime in dict.fromkeys(self.runtimes.values())]
