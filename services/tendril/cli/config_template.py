"""Render a WorkerConfig as a commented TOML file (what `tendril worker init` writes).

The sections, keys, defaults and sentences all come from the section classes in
:mod:`tendril.core.config` (each field's description). Rendering any config (not only the
defaults) is also how tests write a worker.toml.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from typing import Any

from tendril.core.config import WorkerConfig, config_keys, description, env_var

WIDTH = 100

HEADER = """\
# Tendril worker configuration, written by `tendril worker init`.
#
# Layers, later ones win: built-in defaults < this file < TENDRIL_SECTION_KEY environment
# variables (named after each key) < `tendril worker run --set section.key=value`. Every key
# is shown with its default value; delete a line to keep the default. Lists in env vars and
# --set are comma-separated.
"""

CONTAINER_EXAMPLE = """\
# An executor may run in a container (podman or docker; docs/EXECUTORS.md, "Executors in
# containers"): the job's work dir mounted at its own path, no network, the lease's GPUs, CPUs
# and memory. A worker whose host has no usable runtime for it refuses to start.
# [[executors]]
# class = "example"
# name = "boxed"
# command = ["{PYTHON}", "-m", "tendril_example", "--socket", "{SOCKET_PATH}"]
# container = { runtime = "auto", rootfs = "/" }   # or image = "localhost/my-executor:1"
# # more keys: runtime_args = ["--runtime", "runc"], run_args = [...], init = false, limits = true
"""


def toml_value(value: Any) -> str:
    """One TOML value (the subset the config uses: str, bool, int, float, list, table)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # NOTE: a JSON string literal is a valid TOML basic string (same escapes, \uXXXX).
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, WIDTH - 2)]


def render(config: WorkerConfig | None = None) -> str:
    """The commented TOML text of ``config`` (default: the built-in defaults)."""
    config = config or WorkerConfig()
    lines = HEADER.splitlines()
    for section in dataclasses.fields(config):
        if section.name == "executors":
            continue
        value = getattr(config, section.name)
        lines += ["", *_comment((type(value).__doc__ or "").strip()), f"[{section.name}]"]
        for field in dataclasses.fields(value):
            key = f"{section.name}.{field.name}"
            lines += _comment(description(key))
            lines.append(f"{field.name} = {toml_value(getattr(value, field.name))}  # env {env_var(key)}")
    lines += ["", *_comment(description("executors"))]
    for executor in config.executors:
        lines += [
            "[[executors]]",
            f"class = {toml_value(executor.executor_class)}",
            f"name = {toml_value(executor.name)}",
            f"command = {toml_value(executor.command)}",
            f"env = {toml_value(executor.env)}",
            *([f"container = {toml_value(dataclasses.asdict(executor.container))}"] if executor.container else []),
            "",
        ]
    lines += CONTAINER_EXAMPLE.splitlines()
    return "\n".join(lines).rstrip("\n") + "\n"


def markdown_table(config: WorkerConfig | None = None) -> str:
    """The keys as a Markdown table (key, default, env variable, meaning) for the README."""
    config = config or WorkerConfig()
    rows = ["| key | default | env | what it does |", "|---|---|---|---|"]
    for key in config_keys():
        section, _, name = key.partition(".")
        default = toml_value(getattr(getattr(config, section), name)).replace("|", "\\|")
        meaning = description(key).replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{key}` | `{default}` | `{env_var(key)}` | {meaning} |")
    return "\n".join(rows) + "\n"
