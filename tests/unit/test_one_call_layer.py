"""Each mechanism of calling a peer is defined once; this scan fails when a second copy appears.

* Which status codes are worth a retry: ``TRANSIENT_CODES`` / ``STREAM_BREAK_CODES`` in
  ``tendril_sdk/retry.py`` (and ``CURABLE_CODES``, their union, in ``tendril/core/calls.py``).
  A literal set, tuple or list of two or more status codes that names one of them is a copy.
  A check of one code (``code == UNAVAILABLE``) or one extra code added to the sets is not.
* Exponential backoff: ``tendril_sdk.retry.Backoff``. ``x * 2 ** n``, ``min(cap, d * 2)`` or
  ``d *= 2`` elsewhere is a copy.
* Cached channels: ``tendril.core.calls.ChannelPool``. ``open_channel(...)`` stored into a
  dict (``d[a] = open_channel(...)``, ``d.setdefault(a, open_channel(...))``) is a copy, as
  is a channel made other than by ``tendril.core.channel.open_channel``.
* Reading a peer's error: ``tendril_sdk.errors`` reads ErrorInfo (``rpc_status.from_call``),
  ``tendril.core.calls.remote_error`` turns a status into a service's error (the one user of
  ``kind_for_status`` and ``STATUS_CODES`` besides ``tendril.core.errors``).

Scanned: services/ and executors/, and the SDK outside its retry and errors modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tendril_sdk.retry import STREAM_BREAK_CODES, TRANSIENT_CODES

ROOT = Path(__file__).resolve().parents[2]
SCANNED = (ROOT / "services", ROOT / "executors", ROOT / "clients" / "python" / "tendril_sdk")
SDK = ROOT / "clients" / "python" / "tendril_sdk"
CORE = ROOT / "services" / "tendril" / "core"
# Where each mechanism is defined (and may be spelled out).
HOME = {
    "codes": {SDK / "retry.py"},
    "backoff": {SDK / "retry.py"},
    "channels": {CORE / "calls.py", CORE / "channel.py"},
    "error_info": {SDK / "errors.py"},
    "status_kind": {CORE / "errors.py", CORE / "calls.py"},
}
# NOTE: the SDK's bridge client cannot import the worker: it makes its one channel itself.
CHANNEL_MAKERS_OUTSIDE_THE_WORKER = {SDK / "bridge.py"}
CURABLE_NAMES = {code.name for code in TRANSIENT_CODES | STREAM_BREAK_CODES}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _status_code(node: ast.AST) -> str | None:
    name = _dotted(node)
    return name.rsplit(".", 1)[1] if ".StatusCode." in f".{name}" and name.count(".") >= 1 else None


def _callee(node: ast.Call) -> str:
    return _dotted(node.func).rsplit(".", 1)[-1]


def _is_two(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value == 2


def findings(source: str) -> list[tuple[str, int, str]]:
    """(mechanism, line, what) for every copy of a mechanism in ``source``, by line."""
    return sorted(set(_copies(ast.parse(source))), key=lambda f: (f[1], f[0]))


def _copies(tree: ast.Module) -> Iterator[tuple[str, int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Set | ast.Tuple | ast.List):
            codes = [c for c in (_status_code(e) for e in node.elts) if c is not None]
            if len(codes) >= 2 and CURABLE_NAMES & set(codes):
                yield "codes", node.lineno, f"a set of status codes {sorted(codes)}"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            if _is_two(node.left) and not isinstance(node.right, ast.Constant):
                yield "backoff", node.lineno, "2 ** n"
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult) and _is_two(node.value):
            yield "backoff", node.lineno, "*= 2"
        elif isinstance(node, ast.Call):
            callee = _callee(node)
            if callee == "min" and any(
                isinstance(a, ast.BinOp) and isinstance(a.op, ast.Mult) and (_is_two(a.left) or _is_two(a.right))
                for a in node.args
            ):
                yield "backoff", node.lineno, "min(cap, delay * 2)"
            elif callee == "setdefault" and any(
                isinstance(a, ast.Call) and _callee(a) == "open_channel" for a in node.args
            ):
                yield "channels", node.lineno, "a dict of open_channel(...)"
            elif callee in {"insecure_channel", "secure_channel"}:
                yield "channel_maker", node.lineno, f"grpc.aio.{callee}"
            elif callee == "from_call" and _dotted(node.func).endswith("rpc_status.from_call"):
                yield "error_info", node.lineno, "rpc_status.from_call"
            elif callee == "kind_for_status":
                yield "status_kind", node.lineno, "kind_for_status(...)"
        elif isinstance(node, ast.Name) and node.id == "STATUS_CODES" and isinstance(node.ctx, ast.Load):
            yield "status_kind", node.lineno, "a map over STATUS_CODES"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
            yield from _channel_caches(node)


def _channel_caches(scope: ast.FunctionDef | ast.AsyncFunctionDef | ast.Module) -> Iterator[tuple[str, int, str]]:
    """``d[a] = open_channel(...)``, or ``ch = open_channel(...)`` then ``d[a] = ch``, in one scope."""
    channels: set[str] = set()
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and _callee(node.value) == "open_channel":
            channels |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(scope):
        if not isinstance(node, ast.Assign) or not any(isinstance(t, ast.Subscript) for t in node.targets):
            continue
        value = node.value
        if (isinstance(value, ast.Call) and _callee(value) == "open_channel") or (
            isinstance(value, ast.Name) and value.id in channels
        ):
            yield "channels", node.lineno, "a dict of open_channel(...)"


def _scanned() -> Iterator[Path]:
    for root in SCANNED:
        yield from sorted(root.rglob("*.py"))


def test_each_mechanism_is_defined_once() -> None:
    copies = []
    for path in _scanned():
        for mechanism, line, what in findings(path.read_text()):
            if mechanism == "channel_maker":
                if path in HOME["channels"] or path in CHANNEL_MAKERS_OUTSIDE_THE_WORKER:
                    continue
                mechanism = "channels"
            elif path in HOME[mechanism]:
                continue
            copies.append(f"{path.relative_to(ROOT)}:{line}: {what} ({mechanism})")
    assert not copies, "defined again outside its one place (see this test's docstring):\n" + "\n".join(copies)


def test_the_scan_finds_every_kind_of_copy() -> None:
    copies = {
        "if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED): pass": "codes",
        "RETRY = {StatusCode.ABORTED, StatusCode.INTERNAL}": "codes",
        "delay = min(cap, delay * 2)": "backoff",
        "delay = base * 2 ** failures": "backoff",
        "delay *= 2": "backoff",
        "self._channels[address] = open_channel(address, peer_id=p)": "channels",
        "channel = self._channels[address] = open_channel(address)": "channels",
        "self._channels.setdefault(address, open_channel(address))": "channels",
        "def f(self, a):\n    channel = open_channel(a)\n    self._channels[a] = channel\n": "channels",
        "KIND = {code: kind for kind, code in STATUS_CODES.items()}": "status_kind",
        "ch = grpc.aio.insecure_channel(address)": "channel_maker",
        "status = rpc_status.from_call(err)": "error_info",
        "kind = kind_for_status(err.code())": "status_kind",
    }
    for source, mechanism in copies.items():
        assert [m for m, _, _ in findings(source)] == [mechanism], source


def test_the_scan_leaves_single_checks_alone() -> None:
    fine = [
        "if exc.code() == grpc.StatusCode.UNAVAILABLE: pass",
        "if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED): pass",
        "codes = TRANSIENT_CODES | {grpc.StatusCode.NOT_FOUND}",
        "codes = TRANSIENT_CODES - {grpc.StatusCode.DEADLINE_EXCEEDED}",
        "MIB = 2 ** 20",
        "wait = max(0.05, (expires_at - now()) * 2 / 3)",
        "channel = open_channel(address, peer_id=p)",
        "async with open_channel(address) as channel: pass",
    ]
    for source in fine:
        assert list(findings(source)) == [], source
