"""Container runtimes on this host: which one each container executor uses, and whether it answers.

An ``[[executors]]`` table with a ``container`` block (:class:`~tendril.core.config.ContainerConfig`)
names a runtime: ``podman``, ``docker`` or ``auto`` (podman when it answers, else docker; a
``rootfs`` executor takes podman only). A runtime is usable when its program is on ``PATH``
and ``<runtime> info`` answers (for docker: the daemon is reachable). :func:`check_runtimes`
runs at the worker's start (the supervisor, before any process starts, and the JobService
itself), so a worker that names a container executor on a host without a usable runtime
refuses to start with one line that names the executor and what is missing, instead of
failing its first dispatch.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Sequence

from tendril.core.config import CONTAINER_RUNTIMES, ContainerConfig, WorkerConfig
from tendril.core.errors import ConfigError

# `podman info` reads the storage and may take a second or two on a loaded host.
INFO_TIMEOUT_SECONDS = 30.0
INFO_FORMAT = {"podman": "{{.Host.OCIRuntime.Name}}", "docker": "{{.ServerVersion}}"}
DEBIAN_PACKAGE = {"podman": "podman", "docker": "docker.io"}


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A usable container runtime: its kind, its program and the options given before every subcommand."""

    kind: str  # "podman" or "docker"
    program: str  # absolute path
    global_args: tuple[str, ...] = ()

    def command(self, *args: str) -> list[str]:
        """argv of one call: the program, the global options, then ``args``."""
        return [self.program, *self.global_args, *args]


Which = Callable[[str], str | None]
Probe = Callable[[Sequence[str]], str | None]  # argv -> None when it answered, else why not


def probe(argv: Sequence[str]) -> str | None:
    """Run ``argv`` (an ``info`` call); None when it exits 0, else a short reason."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=INFO_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return f"`info` did not answer in {INFO_TIMEOUT_SECONDS:g} s"
    except OSError as exc:
        return f"cannot run {argv[0]}: {exc.strerror or exc}"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    said = lines[-1][:200] if lines else f"exit code {done.returncode}"
    return f"`info` failed: {said}"


class RuntimeFinder:
    """Finds and checks runtimes, each (kind, options) once."""

    def __init__(self, which: Which = shutil.which, run: Probe = probe) -> None:
        self._which = which
        self._run = run
        self._seen: dict[tuple[str, tuple[str, ...]], Runtime | str] = {}

    def usable(self, kind: str, global_args: Sequence[str] = ()) -> Runtime | str:
        """The runtime, or why it cannot be used here."""
        key = (kind, tuple(global_args))
        if key not in self._seen:
            program = self._which(kind)
            if program is None:
                self._seen[key] = "not installed (not on PATH)"
            else:
                runtime = Runtime(kind, program, tuple(global_args))
                why = self._run(runtime.command("info", "--format", INFO_FORMAT[kind]))
                self._seen[key] = runtime if why is None else why
        return self._seen[key]

    def find(self, container: ContainerConfig, executor: str) -> Runtime:
        """The runtime ``executor`` (class/name) runs in; ConfigError naming it and what is missing."""
        if container.runtime != "auto":
            kinds: tuple[str, ...] = (container.runtime,)
        elif container.rootfs:
            kinds = ("podman",)  # NOTE: docker has no --rootfs
        else:
            kinds = CONTAINER_RUNTIMES
        reasons = []
        for kind in kinds:
            found = self.usable(kind, container.runtime_args)
            if isinstance(found, Runtime):
                return found
            reasons.append(f"{kind}: {found}")
        wanted = " or ".join(kinds)
        raise ConfigError(
            f"executor {executor} runs in a container (runtime {container.runtime!r}) but this host has no usable "
            f"{wanted} ({'; '.join(reasons)}); install one (Debian: apt-get install {DEBIAN_PACKAGE[kinds[0]]}), "
            "start it, or remove the executor's container table",
            key="executors",
        )


def check_runtimes(config: WorkerConfig, finder: RuntimeFinder | None = None) -> dict[tuple[str, str], Runtime]:
    """The runtime of every container executor, keyed by (class, name); ConfigError for the first one without."""
    finder = finder or RuntimeFinder()
    found = {}
    for executor in config.executors:
        if executor.container is not None:
            ref = (executor.executor_class, executor.name)
            found[ref] = finder.find(executor.container, "/".join(ref))
    return found
