"""Config layering: defaults < TOML file < TENDRIL_* env < --set; bad values and unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tendril.core.config import WorkerConfig, load_config, parse_set_flags
from tendril.core.errors import ConfigError
from tendril.supervisor.prepare import check_supervisor_section


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
    config = load_config(None, env={}, overrides=overrides)
    with pytest.raises(ConfigError) as err:
        check_supervisor_section(config)
    assert err.value.key == key
