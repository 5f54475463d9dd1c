"""Config layering: defaults < TOML file < TENDRIL_* env < --set; bad values and unknown keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tendril.core.config import WorkerConfig, config_from_json, load_config, parse_set_flags
from tendril.core.errors import ConfigError


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_layer() -> None:
    config = load_config(None, env={})
    assert config == WorkerConfig()
    assert config.job.listen == "127.0.0.1:50053"
    assert config.lease.renewable_seconds == 10.0


def test_each_layer_wins_over_the_one_before(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        "[lease]\nrenewable_seconds = 20\ntemporary_seconds = 2\nprune_interval_seconds = 0.5\n"
        '[worker]\nid = "w-file"\n',
    )
    env = {"TENDRIL_LEASE_RENEWABLE_SECONDS": "30", "TENDRIL_LEASE_TEMPORARY_SECONDS": "3"}
    config = load_config(path, env=env, overrides=parse_set_flags(["lease.renewable_seconds=40"]))
    assert config.lease.renewable_seconds == 40.0  # --set beats env and file
    assert config.lease.temporary_seconds == 3.0  # env beats file
    assert config.lease.prune_interval_seconds == 0.5  # file beats default
    assert config.worker.id == "w-file"
    assert config.job.max_concurrent_jobs == WorkerConfig().job.max_concurrent_jobs  # untouched default


def test_types_are_coerced_from_env_and_flags() -> None:
    env = {"TENDRIL_JOB_KEEP_WORK_DIRS": "yes", "TENDRIL_ARBITER_ALLOWED_SCHEDULERS": "s1, s2"}
    config = load_config(None, env=env, overrides={"job.max_concurrent_jobs": "7", "resources.gpu": "0"})
    assert config.job.keep_work_dirs is True
    assert config.arbiter.allowed_schedulers == ["s1", "s2"]
    assert config.job.max_concurrent_jobs == 7
    assert config.resources.gpu == 0


@pytest.mark.parametrize(
    ("env", "overrides", "key"),
    [
        ({"TENDRIL_JOB_MAX_CONCURRENT_JOBS": "many"}, {}, "job.max_concurrent_jobs"),
        ({}, {"job.keep_work_dirs": "perhaps"}, "job.keep_work_dirs"),
        ({}, {"lease.renewable_seconds": "-1"}, "lease.renewable_seconds"),
        ({}, {"job.listen": "nowhere"}, "job.listen"),
        ({}, {"arbiter.strategy": "greedy"}, "arbiter.strategy"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], overrides: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env=env, overrides=overrides)
    assert err.value.key == key
    assert key in err.value.message


def test_bad_value_in_the_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_toml(tmp_path, '[job]\nmax_concurrent_jobs = "four"\n'), env={})
    assert err.value.key == "job.max_concurrent_jobs"


@pytest.mark.parametrize(
    "text",
    [
        "[job]\nmax_jobs = 3\n",
        "[nonsense]\nx = 1\n",
        "[[executors]]\nclass = 'a'\nname = 'b'\ncommand = ['x']\nx = 1\n",
    ],
)
def test_unknown_keys_in_the_file_are_rejected(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_config(_toml(tmp_path, text), env={})


def test_unknown_set_flag_is_rejected_with_the_known_keys() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env={}, overrides=parse_set_flags(["job.max_jobs=3"]))
    assert "max_concurrent_jobs" in err.value.message  # the message lists what the section has
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_set_flags(["job.max_concurrent_jobs"])


def test_missing_and_broken_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tendril worker init"):
        load_config(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_toml(tmp_path, "[jobs\n"), env={})


def test_executors_come_from_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[[executors]]\nclass = "train"\nname = "mine"\ncommand = ["/bin/true"]\n')
    config = load_config(path, env={})
    assert [(e.executor_class, e.name) for e in config.executors] == [("train", "mine")]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"supervisor.start_timeout_seconds": "0"}, "supervisor.start_timeout_seconds"),
        ({"supervisor.stop_timeout_seconds": "-1"}, "supervisor.stop_timeout_seconds"),
        ({"supervisor.restart_backoff_seconds": "0"}, "supervisor.restart_backoff_seconds"),
        (
            {"supervisor.restart_backoff_seconds": "5", "supervisor.restart_backoff_max_seconds": "1"},
            "supervisor.restart_backoff_max_seconds",
        ),
    ],
)
def test_supervisor_section_is_checked(overrides: dict[str, str], key: str) -> None:
    # NOTE: checked while the config loads (it was checked later, by the supervisor's prepare step).
    with pytest.raises(ConfigError) as err:
        load_config(None, env={}, overrides=overrides)
    assert err.value.key == key


@pytest.mark.parametrize(
    ("text", "env", "flags", "says"),
    [
        ("[leases]\nrenewable_seconds = 20\n", {}, [], "section [leases] is now [lease]"),
        ("[parameter_server]\nlisten = '127.0.0.1:1'\n", {}, [], "section [parameter_server] is now [paramserver]"),
        ("", {"TENDRIL_LEASES_RENEWABLE_SECONDS": "20"}, [], "use TENDRIL_LEASE_RENEWABLE_SECONDS"),
        ("", {"TENDRIL_JOBS_MAX_CONCURRENT_JOBS": "2"}, [], "use TENDRIL_JOB_MAX_CONCURRENT_JOBS"),
        ("", {"TENDRIL_PARAMETER_SERVER_LISTEN": "127.0.0.1:1"}, [], "use TENDRIL_PARAMSERVER_LISTEN"),
        ("", {}, ["jobs.keep_work_dirs=true"], "use --set job.keep_work_dirs"),
    ],
)
def test_renamed_sections_are_refused_with_the_new_name(
    tmp_path: Path, text: str, env: dict[str, str], flags: list[str], says: str
) -> None:
    path = _toml(tmp_path, text) if text else None
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env, overrides=parse_set_flags(flags))
    assert says in err.value.message and "\n" not in err.value.message


def test_env_names_of_sections_with_underscores_map_to_their_keys() -> None:
    env = {
        "TENDRIL_DATA_FETCHER_CACHE_BYTES": "1024",
        "TENDRIL_WORKER_PORT_OFFSET": "7",
        # NOTE: not a config key (a variable of that shape set for another program): ignored, not an error.
        "TENDRIL_PARAMSERVER_ADDRESS": "127.0.0.1:9",
    }
    config = load_config(None, env=env)
    assert config.data_fetcher.cache_bytes == 1024 and config.worker.port_offset == 7


@pytest.mark.parametrize(
    ("env", "flags", "says"),
    [
        (
            {"TENDRIL_LEASE_RENEWABLE_SECONDS": "0"},
            [],
            "lease.renewable_seconds (from TENDRIL_LEASE_RENEWABLE_SECONDS)",
        ),
        ({}, ["lease.renewable_seconds=0"], "lease.renewable_seconds (from --set) must be > 0 (got '0')"),
        ({}, ["data_fetcher.prefetch=0"], "data_fetcher.prefetch (from --set) must be > 0"),
        ({}, ["telemetry.log_level=loud"], "'debug', 'info', 'warning' or 'error'"),
        ({}, ["telemetry.log_format=xml"], "'auto', 'json' or 'console'"),
        ({}, ["arbiter.window_seconds=nan"], "finite number"),
        ({}, ["resources.gpu=1.5"], "valid integer"),
        ({}, ["supervisor.restart_backoff_seconds=20"], "must be >= supervisor.restart_backoff_seconds (20.0)"),
    ],
)
def test_errors_name_where_the_value_came_from_and_what_is_accepted(
    env: dict[str, str], flags: list[str], says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, env=env, overrides=parse_set_flags(flags))
    assert says in err.value.message and "\n" not in err.value.message


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[job]\nkill_grace_seconds = -1\n")
    with pytest.raises(ConfigError, match=rf"job\.kill_grace_seconds \(from {re.escape(str(path))}\) must be > 0"):
        load_config(path, env={})
    path = _toml(tmp_path, "[[executors]]\nclass = 'a'\nname = 'b'\ncommand = []\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.key == "executors[0].command" and "at least 1 item" in err.value.message
    path = _toml(tmp_path, "[[executors]]\nclass = 'a'\nname = 'b'\ncommand = ['x']\n" * 2)
    with pytest.raises(ConfigError, match="executor a/b is configured twice"):
        load_config(path, env={})


def test_levels_and_lists_are_read_leniently() -> None:
    config = load_config(
        None, env={"TENDRIL_TELEMETRY_LOG_LEVEL": "WARNING"}, overrides={"arbiter.allowed_schedulers": "a, b,"}
    )
    assert config.telemetry.log_level == "warning" and config.arbiter.allowed_schedulers == ["a", "b"]


def test_the_json_a_child_reads_round_trips_and_is_checked() -> None:
    config = load_config(None, env={}, overrides={"job.max_concurrent_jobs": "2", "worker.id": "w"})
    assert config_from_json(json.loads(json.dumps(config.to_dict()))) == config
    data = config.to_dict()
    data["job"]["max_concurrent_jobs"] = 0
    with pytest.raises(ConfigError, match=r"job\.max_concurrent_jobs \(from config\.json\) must be > 0"):
        config_from_json(data)
