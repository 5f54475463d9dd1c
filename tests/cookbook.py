"""The runnable ```sh blocks of a Markdown cookbook (docs/GRPCURL.md) and how CI runs them.

Every ```sh block is preceded by an HTML comment that says what CI does with it (the comment
is invisible on a rendered page)::

    <!-- run: expect="tendril.job.v1.JobService" exit=0 wait=20 capture="LEASE_ID=offer.leaseId" -->
    <!-- skip: needs certificates from `tendril certs` -->

``run`` attributes (shlex syntax): ``expect`` (repeatable) a snippet stdout+stderr must
contain; ``exit`` the expected exit status (default 0; grpcurl exits 64 + the gRPC status
code on an error); ``wait`` seconds to retry the block until it passes (state that converges,
e.g. a log line an executor has yet to print); ``capture`` ``VAR=json.path`` to read from the
block's JSON output into a variable later blocks use; ``env`` variables the test must provide.
A ``skip`` needs a reason. A block without a comment is an error: every command in the
cookbook is either run by CI or says why not.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

FENCE = re.compile(r"^```sh\s*$")
MARKER = re.compile(r"^<!--\s*(run|skip):(.*?)-->\s*$")
ADDRESS = re.compile(r"\b127\.0\.0\.1:(\d+)\b")
# The addresses the cookbook's commands use (a worker on the default ports, the reference
# scheduler's default port); the test maps each to where that service really listens.
DOCUMENTED_PORTS = {
    50050: "gateway",
    50051: "arbiter",
    50052: "lease",
    50053: "job",
    50054: "data_fetcher",
    50055: "paramserver",
    50060: "scheduler",
}
# Variables the test provides itself (from the running hello-1 executor); others must be captured.
PROVIDED_ENV = {"SOCKET_PATH", "TENDRIL_BRIDGE_TOKEN"}


class CookbookError(ValueError):
    """The document breaks the marker rules."""


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    skip: str = ""  # reason; empty = run it
    expect: list[str] = dataclasses.field(default_factory=list)
    exit: int = 0
    wait: float = 0.0
    capture: dict[str, str] = dataclasses.field(default_factory=dict)  # VAR -> dotted JSON path
    env: list[str] = dataclasses.field(default_factory=list)

    @property
    def ports(self) -> set[int]:
        return {int(p) for p in ADDRESS.findall(self.code)}


def _parse_run(block: Block, text: str, where: str) -> None:
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep:
            raise CookbookError(f"{where}: attribute {item!r} is not key=value")
        if key == "expect":
            block.expect.append(value)
        elif key == "exit":
            block.exit = int(value)
        elif key == "wait":
            block.wait = float(value)
        elif key == "capture":
            var, eq, path = value.partition("=")
            if not eq or not var.isidentifier() or not path:
                raise CookbookError(f"{where}: capture {value!r} is not VAR=json.path")
            block.capture[var] = path
        elif key == "env":
            block.env += value.split()
        else:
            raise CookbookError(f"{where}: unknown attribute {key!r}")


def parse(path: Path) -> list[Block]:
    """Every ```sh block of ``path`` with its marker; raises CookbookError on a block without one."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not FENCE.match(lines[i]):
            i += 1
            continue
        start = i
        where = f"{path.name}:{start + 1}"
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise CookbookError(f"{where}: ```sh block is not closed")
        block = Block(start + 1, "\n".join(lines[start + 1 : end]) + "\n")
        marker = MARKER.match(lines[start - 1]) if start > 0 else None
        if marker is None:
            raise CookbookError(f"{where}: put <!-- run: ... --> or <!-- skip: why --> on the line above the block")
        kind, text = marker.group(1), marker.group(2).strip()
        if kind == "skip":
            if not text:
                raise CookbookError(f"{where}: a skipped block needs a reason")
            block.skip = text
        else:
            _parse_run(block, text, where)
            if not block.expect:
                raise CookbookError(f"{where}: a run block needs at least one expect=... snippet")
        blocks.append(block)
        i = end + 1
    return blocks


def substitute(code: str, ports: dict[int, str]) -> str:
    """The block with each documented 127.0.0.1:PORT replaced by where that service really listens."""

    def replace(match: re.Match[str]) -> str:
        port = int(match.group(1))
        if port not in ports:
            raise CookbookError(f"127.0.0.1:{port} is no known service address of the cookbook")
        return ports[port]

    return ADDRESS.sub(replace, code)


def json_path(data: object, path: str) -> str:
    """``offer.leaseId`` / ``jobs.0.jobId`` in parsed JSON."""
    value = data
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]  # type: ignore[index]
    return str(value)
