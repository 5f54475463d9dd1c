"""Running a guide of docs/ as written: its fenced blocks, its hosts and ports turned into this
machine's, its commands run as `python -m tendril.cli ...` (used by the guide tests)."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path

BLOCK = re.compile(r"```(sh|toml|json)\n(.*?)```", re.S)


def blocks(guide: Path) -> list[tuple[str, str]]:
    """``(language, body)`` of every ```sh, ```toml and ```json block, in order."""
    return [(kind, body) for kind, body in BLOCK.findall(guide.read_text())]


def commands(guide_blocks: list[tuple[str, str]]) -> list[str]:
    """The non-blank lines of the ```sh blocks, in order."""
    return [line for kind, body in guide_blocks if kind == "sh" for line in body.splitlines() if line.strip()]


def localise(text: str, ports: dict[str, str]) -> str:
    """The guide's hosts and ports -> this machine's (``ports``: the guide's port -> a free address)."""
    for port, address in ports.items():
        text = re.sub(rf"(?:0\.0\.0\.0|10\.0\.0\.\d+|127\.0\.0\.1):{port}\b", address, text)
    return re.sub(r"\b(?:0\.0\.0\.0|10\.0\.0\.\d+)\b", "127.0.0.1", text)


def worker_toml(text: str, name: str, offset: int, root: Path, ports: dict[str, str]) -> str:
    """The guide's worker.toml for one of several workers on this host: its own id, port offset and dirs."""
    config = localise(text, ports).replace('id = "worker-a"', f'id = "{name}"')
    extra = f'port_offset = {offset}\nstate_dir = "{root / name / "state"}"\nwork_dir = "{root / name / "work"}"\n'
    return config.replace("[worker]\n", f"[worker]\n{extra}", 1)


async def run(args: str | list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """A command to its end, off the event loop (a str runs in the shell)."""
    return await asyncio.to_thread(
        subprocess.run, args, shell=isinstance(args, str), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def argv(command: str) -> list[str]:
    """``tendril ...`` -> this interpreter running the CLI."""
    words = shlex.split(command)
    assert words[0] == "tendril", command
    return [sys.executable, "-m", "tendril.cli", *words[1:]]


def server(command: str) -> tuple[int, str]:
    """A guide's ``tendril gateway run`` or ``tendril data serve`` line (localised): the tier the
    cluster stops it in, and the address to wait on, its own ``--listen`` (not an address it
    merely names, such as a data node's ``--gateway``)."""
    words = shlex.split(command)
    assert "--listen" in words, f"a server line without --listen: {command}"
    tier = 0 if words[1:3] == ["gateway", "run"] else 1
    return tier, words[words.index("--listen") + 1]
