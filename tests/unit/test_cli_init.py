"""`tendril worker init`: the commented worker.toml covers every key and loads back to the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tendril.cli.config_template import config_keys, env_var, markdown_table, render, toml_value
from tendril.cli.main import run
from tendril.core.config import WorkerConfig, description, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_every_key_has_a_sentence() -> None:
    # The sentence is the field's attribute docstring in services/tendril/core/config.py.
    missing = [key for key in [*config_keys(), "executors"] if not description(key).endswith(".")]
    assert not missing, f"config keys without a sentence under their field: {missing}"


def test_init_writes_the_shipped_file_and_it_loads_back_to_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "worker.toml"
    assert run(["worker", "init", str(path)]) == 0
    text = path.read_text()
    assert text == (ROOT / "deploy" / "worker.toml").read_text(), "regenerate deploy/worker.toml with worker init"
    assert load_config(path, env={}) == WorkerConfig()
    for key in config_keys():
        section, _, name = key.partition(".")
        assert f"[{section}]" in text
        assert f"\n{name} = " in text and env_var(key) in text


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "worker.toml"
    path.write_text("# mine\n")
    assert run(["worker", "init", str(path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert path.read_text() == "# mine\n"
    assert run(["worker", "init", str(path), "--force"]) == 0
    assert load_config(path, env={}) == WorkerConfig()
    assert [p.name for p in tmp_path.iterdir()] == ["worker.toml"]  # no temp file left behind


def test_render_round_trips_a_non_default_config(tmp_path: Path) -> None:
    config = load_config(
        None,
        env={},
        overrides={
            # (worker ids are peer ids, tendril.core.ids: the quoting is exercised on a free-form key)
            "worker.id": "w-1",
            "arbiter.topic": 'w "quoted" \\ topic',
            "arbiter.allowed_schedulers": "a,b",
            "job.keep_work_dirs": "true",
            "data_fetcher.cache_bytes": str(5 * 1024**3),
        },
    )
    config.executors[0].env = {"A": "1"}
    path = tmp_path / "w.toml"
    path.write_text(render(config))
    assert load_config(path, env={}) == config


def test_toml_values() -> None:
    assert toml_value(True) == "true"
    assert toml_value(0.25) == "0.25"
    assert toml_value(["a", 1]) == '["a", 1]'
    assert toml_value({"k": "v"}) == '{"k" = "v"}'
    with pytest.raises(TypeError):
        toml_value(object())


def test_readme_config_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- config-table:begin")
    start = readme.index("\n", begin) + 1
    end = readme.index("<!-- config-table:end -->")
    assert readme[start:end] == markdown_table(), "regenerate the README table from config_template.markdown_table()"
