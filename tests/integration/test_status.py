"""`tendril status` and `tendril jobs` against a live worker (`tendril worker run`)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.integration.live_worker import (
    SCHEDULER,
    dispatch,
    job_log_has,
    live_worker,
    renewable_lease,
    run_cli,
    until,
    wait_all_serving,
)

pytestmark = pytest.mark.integration

CHILDREN = {"gateway", "lease", "job", "arbiter", "data_fetcher", "paramserver"}


async def test_status_shows_a_live_worker_and_a_killed_service(tmp_path: Path) -> None:
    # NOTE: a restart delay longer than the test keeps the killed service down while status looks.
    with live_worker(
        tmp_path,
        lease__renewable_seconds=120,
        supervisor__restart_backoff_seconds=120,
        supervisor__restart_backoff_max_seconds=120,
    ) as worker:
        await wait_all_serving(worker)
        config, toml = worker.config, str(worker.toml)
        lease = await renewable_lease(config, cpu=1.5)
        await dispatch(config, lease.lease_id, "status-job")

        done = await run_cli("status", "--config", toml, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        snap = json.loads(done.stdout)
        assert snap["schema"] == 1 and snap["ok"] is True and snap["location"] == "local"
        assert snap["worker_id"] == "worker-test"
        assert {s["name"] for s in snap["services"]} == CHILDREN
        for service in snap["services"]:
            assert service["health"] == "SERVING" and service["error"] == "", service
            assert service["restarts"] == 0 and service["pid"] == worker.child(service["name"])["pid"]
        assert snap["supervisor"]["alive"] is True and snap["supervisor"]["state"] == "serving"
        (row,) = [lease_row for lease_row in snap["leases"] if lease_row["lease_id"] == lease.lease_id]
        assert row["owner_id"] == SCHEDULER and row["kind"] == "renewable"
        assert 0 < row["expires_in_seconds"] <= 120 and row["resources"]["cpu"] == 1.5
        (job,) = snap["jobs"]
        assert (job["job_id"], job["state"], job["executor"]) == ("status-job", "running", "example/echo")
        assert job["lease_id"] == lease.lease_id and job["exit_code"] is None and job["age_seconds"] >= 0
        resources = snap["resources"]
        assert resources["total"]["cpu"] == 4 and resources["reserved"]["cpu"] == 1.5
        assert resources["free"]["cpu"] == 2.5 and resources["free"]["memory_gib"] == 7
        assert snap["data_cache"]["capacity_bytes"] == config.data_fetcher.cache_bytes
        assert snap["data_cache"]["hit_rate"] is None and snap["errors"] == {}

        text = await run_cli("status", "--config", toml)
        assert text.returncode == 0, text.stderr
        screen = text.stdout
        print(f"\n{screen}")
        assert "worker worker-test (local) — all serving" in screen
        assert lease.lease_id in screen and SCHEDULER in screen and "renewable" in screen
        assert "status-job" in screen and "running" in screen and "example/echo" in screen
        assert "Traceback" not in screen + text.stderr

        # The same worker as a remote one: same answers, restarts unknown.
        remote = await run_cli("status", "--worker", "127.0.0.1", "--config", toml, "--json")
        assert remote.returncode == 0, remote.stdout + remote.stderr
        far = json.loads(remote.stdout)
        assert far["location"] == "remote" and far["supervisor"] is None and "restarts are unknown" in far["note"]
        assert all(s["health"] == "SERVING" and s["restarts"] is None for s in far["services"])
        assert [j["job_id"] for j in far["jobs"]] == ["status-job"]

        # tendril jobs: list, logs, and a follow that ends with the job.
        listed = await run_cli("jobs", "list", "--config", toml, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [j["job_id"] for j in json.loads(listed.stdout)] == ["status-job"]
        await until(lambda: job_log_has(config, "status-job", "sleeping 600"), 30, "the executor's log line")
        logs = await run_cli("jobs", "logs", "status-job", "--config", toml)
        assert logs.returncode == 0, logs.stderr
        assert "[example] job status-job on worker worker-test" in logs.stdout
        tail = await run_cli("jobs", "logs", "status-job", "--tail", "1", "--config", toml)
        assert tail.stdout.strip().splitlines() == ["[example] sleeping 600 s"], tail.stdout
        short = await renewable_lease(config)
        await dispatch(config, short.lease_id, "short-job", job_config={"sleep_seconds": 2})
        followed = await run_cli("jobs", "logs", "short-job", "-f", "--config", toml)
        assert followed.returncode == 0, followed.stderr
        assert "[example] done, exiting with code 0" in followed.stdout
        missing = await run_cli("jobs", "logs", "no-such-job", "--config", toml)
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr and "Traceback" not in missing.stderr

        # One service killed (and kept down by the long restart delay): DOWN, exit status 1.
        old_pid = worker.child("paramserver")["pid"]
        os.kill(old_pid, signal.SIGKILL)
        await until(lambda: worker.child("paramserver").get("state") == "backoff", 30, "paramserver in backoff")
        down = await run_cli("status", "--config", toml, "--json")
        assert down.returncode == 1, down.stdout + down.stderr
        snap = json.loads(down.stdout)
        assert snap["ok"] is False
        (dead,) = [s for s in snap["services"] if s["name"] == "paramserver"]
        assert dead["health"] == "DOWN" and "UNAVAILABLE" in dead["error"]
        assert dead["state"] == "backoff" and dead["last_exit_code"] == -signal.SIGKILL
        assert all(s["health"] == "SERVING" for s in snap["services"] if s["name"] != "paramserver")
        screen = (await run_cli("status", "--config", toml)).stdout
        assert "1 of 6 NOT serving" in screen
        (line,) = [ln for ln in screen.splitlines() if ln.strip().startswith("paramserver")]
        assert "DOWN" in line and "supervisor: backoff" in line and "last exit SIGKILL" in line


async def test_status_of_a_worker_that_is_not_running(tmp_path: Path) -> None:
    from tendril.cli.config_template import render
    from tests.procs import worker_config

    toml = tmp_path / "worker.toml"
    toml.write_text(render(worker_config(tmp_path)))
    done = await run_cli("status", "--config", str(toml), "--timeout", "2")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "6 of 6 NOT serving" in done.stdout and "connection refused" in done.stdout
    assert "no supervisor status at" in done.stdout
    refused = await run_cli("jobs", "list", "--config", str(toml))
    assert refused.returncode == 1 and "connection refused" in refused.stderr
    bad = await run_cli("status", "--worker", "host:50053")
    assert bad.returncode == 2 and "not host:port" in bad.stderr
