"""Container executors: the runtime's command lines, the runtime check at start, and the start/stop/clean-up
path through JobManager with a fake runtime on PATH (it records its argv and runs the command itself)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from tendril.cli.main import run as cli_run
from tendril.core.config import ContainerConfig, ExecutorConfig, WorkerConfig, load_config
from tendril.core.containers import Runtime, RuntimeFinder, check_runtimes
from tendril.core.errors import ConfigError
from tendril.job import gpus
from tendril.job.container import Containers, container_env, container_name, remove_argv, run_argv
from tendril.job.core import JobManager
from tendril.job.model import JobState
from tendril.job.store import JobStore
from tests.unit.test_jobs_core import OWNER, PRINT_ENV, SLEEPER, STUBBORN, FakeLeases, Harness, _wait_file
from tests.unit.test_jobs_readopt import Crashable

PODMAN = Runtime("podman", "/usr/bin/podman", ("--runtime", "runc"))
DOCKER = Runtime("docker", "/usr/bin/docker")
WORK = Path("/srv/tendril/work/job-j1")
ENV_NAMES = ["SOCKET_PATH", "TENDRIL_BRIDGE_TOKEN", "WORK_DIR", "CUDA_VISIBLE_DEVICES"]


def _after(args: list[str], flag: str) -> list[str]:
    """Every value that follows ``flag``."""
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def _argv(runtime: Runtime, container: ContainerConfig, **kw: object) -> list[str]:
    options: dict[str, object] = {
        "name": container_name("j1", WORK),
        "job_id": "j1",
        "work_dir": WORK,
        "env_names": ENV_NAMES,
        "uid": 1000,
        "gid": 1001,
    }
    options.update(kw)
    return run_argv(runtime, container, ["python", "-m", "ex", "--socket", str(WORK / "bridge.sock")], **options)  # type: ignore[arg-type]


def test_podman_argv_mounts_the_work_dir_passes_env_by_name_and_has_no_network() -> None:
    container = ContainerConfig(rootfs="/", run_args=["-v", "/data:/data:ro"], init=True)
    args = _argv(PODMAN, container, devices=("2", "3"), cpus=1.5, memory_gib=0.5)
    assert args[:4] == ["/usr/bin/podman", "--runtime", "runc", "run"], "global options before the subcommand"
    assert _after(args, "--name") == [container_name("j1", WORK)]
    assert _after(args, "--network") == ["none"]
    assert _after(args, "--mount") == [f"type=bind,source={WORK},target={WORK}"]
    assert _after(args, "--workdir") == [str(WORK)]
    assert _after(args, "--user") == ["1000:1001"] and _after(args, "--userns") == ["keep-id"]
    assert _after(args, "--env") == sorted(ENV_NAMES), "names only: the values (the token) stay off the command line"
    assert _after(args, "--device") == ["nvidia.com/gpu=2", "nvidia.com/gpu=3"]
    assert _after(args, "--cpus") == ["1.5"] and _after(args, "--memory") == ["512m"]
    assert _after(args, "--cap-drop") == ["all"] and _after(args, "--pull") == ["never"]
    assert _after(args, "--log-driver") == ["passthrough"] and "--init" in args and "--rm" in args
    assert _after(args, "--label") == ["tendril.job=j1", f"tendril.work_dir={WORK}"]
    nofile = [u for u in _after(args, "--ulimit") if u.startswith("nofile=")]
    assert len(nofile) == 1 and int(nofile[0].split(":")[1]) <= 1 << 30
    # the operator's options after Tendril's own, then the rootfs as an overlay, then the command
    tail = args[args.index("/data:/data:ro") - 1 :]
    assert tail == [
        "-v",
        "/data:/data:ro",
        "--rootfs",
        "/:O",
        "python",
        "-m",
        "ex",
        "--socket",
        str(WORK / "bridge.sock"),
    ]


def test_docker_argv_uses_the_image_and_gpus_flag_and_root_needs_no_userns() -> None:
    args = _argv(
        DOCKER, ContainerConfig(image="localhost/ex:1", runtime="docker"), devices=("0", "GPU-ab"), uid=0, gid=0
    )
    assert args[:2] == ["/usr/bin/docker", "run"]
    assert _after(args, "--gpus") == ['"device=0,GPU-ab"'], "quoted, or docker splits the list at its comma"
    assert "--device" not in args and "--userns" not in args and _after(args, "--user") == ["0:0"]
    assert _after(args, "--log-driver") == ["none"] and "--ulimit" not in args and "--init" not in args
    assert args[args.index("localhost/ex:1") + 1 :] == ["python", "-m", "ex", "--socket", str(WORK / "bridge.sock")]
    assert "--cpus" not in args and "--memory" not in args, "a lease without CPUs or memory sets no limit"


def test_limits_can_be_turned_off_and_rootful_podman_keeps_ids() -> None:
    args = _argv(PODMAN, ContainerConfig(rootfs="/", limits=False), cpus=2, memory_gib=4, uid=0, gid=0)
    assert "--cpus" not in args and "--memory" not in args and "--userns" not in args
    assert "--device" not in args, "a job without GPUs gets none"


def test_container_env_renumbers_the_jobs_gpus() -> None:
    env = {gpus.CUDA_ENV: "2,3", "X": "1"}
    assert container_env(env, ("2", "3")) == {gpus.CUDA_ENV: "0,1", "X": "1"}
    assert container_env({gpus.CUDA_ENV: ""}, ())[gpus.CUDA_ENV] == ""


def test_names_follow_the_job_and_work_dir_and_removal_kills_at_once() -> None:
    name = container_name("job.A_1-x", WORK)
    assert name == container_name("job.A_1-x", WORK) and name.startswith("tendril-job.A_1-x-")
    assert name != container_name("job.A_1-x", Path("/other/job-job.A_1-x")), "two workers on a host never clash"
    assert remove_argv(PODMAN, name) == [
        *PODMAN.command("rm", "--force", "--time", "0", "--ignore"),
        name,
    ], "no 10 s stop timeout, no error when --rm was first"
    assert remove_argv(DOCKER, name) == ["/usr/bin/docker", "rm", "--force", name]


def test_container_config_needs_exactly_one_of_image_and_rootfs() -> None:
    for bad in ({}, {"image": "x", "rootfs": "/"}, {"rootfs": "rel/path"}, {"rootfs": "/", "runtime": "docker"}):
        with pytest.raises(ValidationError):
            ContainerConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ContainerConfig(image="x", runtime="lxc")  # type: ignore[arg-type]


def test_container_table_loads_from_worker_toml(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(
        '[[executors]]\nclass = "example"\nname = "boxed"\ncommand = ["{PYTHON}", "-m", "tendril_example"]\n'
        'container = { runtime = "podman", rootfs = "/", runtime_args = ["--runtime", "runc"] }\n'
    )
    (executor,) = load_config(path, env={}).executors
    assert executor.container == ContainerConfig(runtime="podman", rootfs="/", runtime_args=["--runtime", "runc"])
    path.write_text(path.read_text().replace("rootfs", "rootfz"))
    with pytest.raises(ConfigError, match="rootfz"):
        load_config(path, env={})


def _finder(installed: dict[str, str | None]) -> tuple[RuntimeFinder, list[list[str]]]:
    """A finder over fake programs: kind -> None (answers) or why `info` fails; missing kinds are not installed."""
    calls: list[list[str]] = []

    def probe(argv: Sequence[str]) -> str | None:
        calls.append(list(argv))
        return installed[Path(argv[0]).name]

    return RuntimeFinder(lambda kind: f"/usr/bin/{kind}" if kind in installed else None, probe), calls


def _config(*containers: ContainerConfig) -> WorkerConfig:
    return WorkerConfig(
        executors=[ExecutorConfig("c", f"e{i}", ["x"], container=c) for i, c in enumerate(containers)]
        + [ExecutorConfig("p", "plain", ["x"])]
    )


def test_auto_takes_podman_then_docker_and_each_runtime_is_asked_once() -> None:
    finder, calls = _finder({"podman": "`info` failed: boom", "docker": None})
    found = check_runtimes(_config(ContainerConfig(image="i"), ContainerConfig(image="j")), finder)
    assert found == {("c", "e0"): DOCKER, ("c", "e1"): DOCKER}
    assert calls == [["/usr/bin/podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
                     ["/usr/bin/docker", "info", "--format", "{{.ServerVersion}}"]]  # fmt: skip
    finder, calls = _finder({"podman": None, "docker": None})
    assert check_runtimes(_config(ContainerConfig(image="i", runtime_args=["--runtime", "runc"])), finder) == {
        ("c", "e0"): PODMAN
    }
    assert calls[0][:3] == ["/usr/bin/podman", "--runtime", "runc"], "the runtime's options apply to the check too"


def test_a_missing_runtime_is_one_line_naming_the_executor_and_the_runtime() -> None:
    finder, _ = _finder({"docker": "`info` failed: Cannot connect to the Docker daemon"})
    with pytest.raises(ConfigError) as caught:
        check_runtimes(_config(ContainerConfig(image="i")), finder)
    message = caught.value.message
    assert "\n" not in message and "executor c/e0" in message and "podman or docker" in message
    assert "podman: not installed" in message and "Cannot connect to the Docker daemon" in message
    finder, _ = _finder({"docker": None})
    with pytest.raises(ConfigError, match=r"executor c/e0 .* no usable podman \(podman: not installed"):
        check_runtimes(_config(ContainerConfig(rootfs="/")), finder)  # docker has no --rootfs
    assert check_runtimes(_config(), finder) == {}, "no container executor: nothing is asked"


def test_worker_run_refuses_to_start_without_a_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(
        f'[worker]\nstate_dir = "{tmp_path / "state"}"\nwork_dir = "{tmp_path / "work"}"\n'
        '[[executors]]\nclass = "example"\nname = "boxed"\ncommand = ["x"]\n'
        'container = { runtime = "podman", image = "localhost/ex:1" }\n'
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli_run(["worker", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("tendril: executor example/boxed runs in a container"), err
    assert "no usable podman (podman: not installed" in err
    assert not (tmp_path / "state" / "run").exists(), "refused before anything started"
    config = load_config(path, env={})
    with pytest.raises(ConfigError, match="executor example/boxed"):
        JobManager(config, JobStore(tmp_path / "jobs.db"), FakeLeases(), None)  # type: ignore[arg-type]


def test_cleanup_targets_the_jobs_runtime_only_when_known() -> None:
    finder, _ = _finder({"podman": None, "docker": None})
    config = _config(
        ContainerConfig(rootfs="/", runtime_args=["--runtime", "runc"]), ContainerConfig(image="i", runtime="docker")
    )
    containers = Containers(config, finder)
    name = container_name("j1", WORK)
    assert containers.cleanup("j1", WORK, ("c", "e0")) == [remove_argv(PODMAN, name)]
    assert containers.cleanup("j1", WORK, ("p", "plain")) == []
    assert containers.cleanup("j1", WORK, None) == [remove_argv(PODMAN, name), remove_argv(DOCKER, name)]
    assert containers.cleanup("j1", WORK, ("gone", "x")) == containers.cleanup("j1", WORK, None)
    assert Containers(WorkerConfig(), finder).cleanup("j1", WORK) == [], "no container executors: nothing to sweep"


# -- the whole path with a fake runtime ------------------------------------------------------------

FAKE_RUNTIME = """\
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_RUNTIME_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
sub = next(a for a in args if a in ("info", "run", "rm"))
if sub != "run":
    sys.exit(0)
# Like a container: only the variables named with --env, in --workdir; the command after the rootfs.
names = [args[i + 1] for i, a in enumerate(args) if a == "--env"]
env = {n: os.environ[n] for n in names if n in os.environ}
os.chdir(args[args.index("--workdir") + 1])
command = args[args.index("--rootfs") + 2 :]
os.execve(command[0], command, env)
"""


@pytest.fixture
def fake_podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "podman"
    program.write_text(f"#!{sys.executable}\n{FAKE_RUNTIME}")
    program.chmod(0o755)
    log = tmp_path / "runtime.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_RUNTIME_LOG", str(log))
    yield log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _container_harness(tmp_path: Path, **overrides: object) -> Harness:
    h = Harness(tmp_path / "h", **overrides)
    py = sys.executable
    boxed = ContainerConfig(runtime="podman", rootfs="/", runtime_args=["--runtime", "runc"])
    h.config.executors += [
        ExecutorConfig("t", "boxed-env", [py, "-c", PRINT_ENV, "{SOCKET_PATH}"], env={"EXTRA": "x"}, container=boxed),
        ExecutorConfig("t", "boxed-sleep", [py, "-c", SLEEPER], container=boxed),
        ExecutorConfig("t", "boxed-stubborn", [py, "-c", STUBBORN], container=boxed),
    ]
    h.manager = JobManager(h.config, h.store, h.leases, h.start_bridge)
    return h


async def test_a_container_job_runs_with_its_env_and_its_container_is_removed(
    tmp_path: Path, fake_podman: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(gpus.CUDA_ENV, "5,6")  # the worker was given GPUs 5 and 6
    h = _container_harness(tmp_path, resources__gpu=2)
    assert _calls(fake_podman)[0][-3:] == ["info", "--format", "{{.Host.OCIRuntime.Name}}"], "checked at start"
    h.leases.add("G", gpus=1)
    record = await h.dispatch("c1", "boxed-env", lease_id="G", config={})
    work_dir = Path(record.work_dir)
    ended = await h.wait_end("c1")
    assert ended.state is JobState.SUCCEEDED and ended.exit_code == 0, ended.reason
    log = h.manager.workdirs.open_log("c1", record.work_dir)
    assert log is not None
    text = log.read().decode()
    seen = json.loads(text.splitlines()[0])
    token = h.bridges[0].token
    assert seen["TENDRIL_BRIDGE_TOKEN"] == token and seen["EXTRA"] == "x", "the executor's env reaches it by name"
    assert seen["WORK_DIR"] == str(work_dir) and f"cwd={work_dir}" in text
    assert seen["CUDA_VISIBLE_DEVICES"] == "0", "its one GPU, numbered from 0 inside"
    calls = _calls(fake_podman)
    runs = [c for c in calls if "run" in c]
    (run,) = runs
    name = container_name("c1", work_dir)
    assert _after(run, "--name") == [name] and _after(run, "--network") == ["none"]
    assert _after(run, "--device") == ["nvidia.com/gpu=5"], "the lease's GPU by its host id"
    assert all(token not in arg for c in calls for arg in c), "the token is on no command line"
    assert calls[-1] == ["--runtime", "runc", "rm", "--force", "--time", "0", "--ignore", name], (
        "the shim removes the container after the executor ended"
    )


async def test_cancel_stops_the_container_job_and_removes_its_container(tmp_path: Path, fake_podman: Path) -> None:
    h = _container_harness(tmp_path)
    record = await h.dispatch("c2", "boxed-sleep")
    work_dir = Path(record.work_dir)
    await _wait_file(work_dir / "pids")
    began = time.monotonic()
    ended = await h.manager.cancel("sched-1", "c2", "enough")
    assert ended.state is JobState.CANCELLED and time.monotonic() - began < 15
    assert _calls(fake_podman)[-1][-1] == container_name("c2", work_dir), "removed after the stop"
    assert h.manager.running == 0


async def test_an_executor_that_ignores_sigterm_is_killed_then_its_container_removed(
    tmp_path: Path, fake_podman: Path
) -> None:
    h = _container_harness(tmp_path, job__kill_grace_seconds=0.5)
    record = await h.dispatch("c4", "boxed-stubborn")
    work_dir = Path(record.work_dir)
    await _wait_file(work_dir / "pids")
    ended = await h.manager.cancel(OWNER, "c4")
    assert ended.state is JobState.CANCELLED and ended.exit_code == -signal.SIGKILL, "killed after the grace"
    assert _calls(fake_podman)[-1][-1] == container_name("c4", work_dir)


async def test_a_killed_shim_still_gets_its_container_removed(tmp_path: Path, fake_podman: Path) -> None:
    h = _container_harness(tmp_path)
    record = await h.dispatch("c3", "boxed-sleep")
    work_dir = Path(record.work_dir)
    await _wait_file(work_dir / "pids")
    run = h.manager._runs["c3"]
    os.kill(run.process.shim_pid, signal.SIGKILL)  # the shim cannot clean up: JobService does
    ended = await h.wait_end("c3")
    assert ended.state is JobState.FAILED
    removals = [c for c in _calls(fake_podman) if "rm" in c]
    assert removals and removals[-1][-1] == container_name("c3", work_dir)


async def test_a_restart_that_cannot_readopt_removes_the_container_and_a_readopted_one_keeps_it(
    tmp_path: Path, fake_podman: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Crashable(tmp_path / "r")
    boxed = ContainerConfig(runtime="podman", rootfs="/")
    h.config.executors.append(ExecutorConfig("t", "boxed-sleep", [sys.executable, "-c", SLEEPER], container=boxed))
    h.manager = JobManager(h.config, h.store, h.leases, h.start_bridge)
    await h.dispatch("r-lost", name="boxed-sleep")
    await h.dispatch("r-kept", name="boxed-sleep")
    for job_id in ("r-lost", "r-kept"):
        await _wait_file(h.work(job_id) / "pids")
    lost = h.store.runtime("r-lost")
    assert lost is not None
    await h.crash(monkeypatch)
    os.kill(lost.shim_pid, signal.SIGKILL)
    before = len(_calls(fake_podman))
    fresh = await h.restart()
    assert fresh.get("r-lost").state is JobState.FAILED
    removed = [c[-1] for c in _calls(fake_podman)[before:] if "rm" in c]
    assert removed == [container_name("r-lost", h.work("r-lost"))], "only the job that could not be re-adopted"
    assert fresh.get("r-kept").state is JobState.RUNNING
    await fresh.cancel(OWNER, "r-kept")
    assert _calls(fake_podman)[-1][-1] == container_name("r-kept", h.work("r-kept")), "its shim removed it at the end"
