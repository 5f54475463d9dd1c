"""Error reasons are declared once, documented in the protos and matched by name.

* (a) The code under SCANNED (the services, the bridge included; the executors; the SDK) never
  spells a reason as a string literal: not as ``reason=``, not as the ``reason`` parameter of a
  helper or the positional reason of an error type, not compared with ``error_info_reason(...)``
  or ``.reason``; and no literal anywhere equals a declared reason.
* (b) Every member of a wire catalogue (``tendril_sdk.reasons``, BridgeReason included) is
  listed in an "Errors:" paragraph of the protos of its area, under the status code the code
  raises it with; those paragraphs name only declared reasons, and every RPC has one.
  BridgeReason declares exactly what a bridge answers: its own reasons, REMOTE_<CODE>, and the
  reasons of the services behind it that it passes on.
* (c) Catalogues are StrEnums named ``*Reason`` whose members are UPPER_SNAKE, equal to their
  values and unique.

Catalogues outside ``tendril_sdk.reasons`` (start-up checks, command-line tools, retries a
service hides, an executor's own failures) never reach the wire and are checked by (a) and (c)
only.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tendril.core.errors import ErrorKind, TendrilError
from tendril.core.tensorstream import TensorStreamReason

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services" / "tendril"
EXECUTORS = ROOT / "executors"
SDK = ROOT / "clients" / "python" / "tendril_sdk"
PROTOS = ROOT / "protos" / "tendril"
WIRE_MODULE = SDK / "reasons.py"
# Folders whose children are top-level import names (``services/tendril`` is ``tendril``).
SOURCE_ROOTS = (ROOT / "services", ROOT / "executors", ROOT / "clients" / "python")

# Code whose reasons must be declared.
SCANNED = (SERVICES, EXECUTORS, SDK)

# Wire catalogue (service package) -> the protos whose "Errors:" paragraphs document it.
DOCUMENTED_IN = {
    "ArbiterReason": ("arbiter/v1/arbiter.proto",),  # tendril.arbiter
    "GatewayReason": ("gateway/v1/gateway.proto",),  # tendril.gateway
    "LeaseReason": ("lease/v1/lease.proto",),  # tendril.lease
    "JobReason": ("job/v1/job.proto",),  # tendril.job
    "FetcherReason": ("data/v1/data.proto",),  # tendril.data_fetcher
    "DataNodeReason": ("data/v1/data.proto",),  # tendril.data_node
    "ParamserverReason": ("paramserver/v1/paramserver.proto",),  # tendril.paramserver
    "StreamReason": ("tensor/v1/tensor.proto", "paramserver/v1/paramserver.proto"),  # tendril.core.streaming
    "SchedulerReason": ("scheduler/v1/scheduler.proto",),  # tendril.scheduler (served RPCs)
    "SubmitReason": ("submit/v1/submit.proto",),  # tendril.submit
    # tendril.bridge; JobService answers Dispatch with BRIDGE_SOCKET_FAILED (no bridge to call yet).
    "BridgeReason": ("bridge/v1/bridge.proto", "job/v1/job.proto"),
}
# The wire catalogues of the services behind a job bridge, whose reasons it passes on as they
# are, and the tensor-stream client's own reasons (it sends and fetches for the bridge).
BRIDGE_PEERS = ("FetcherReason", "ParamserverReason", "StreamReason", "SchedulerReason")

# Calls whose ``reason=`` is no error reason but words for people: log lines (a structlog key),
# metric labels, a job record's reason (JobStore.transition), proto messages (Cancel, Offer).
NOT_ERROR_CALLS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "labels", "transition"})
NOT_ERROR_SUFFIXES = ("Request", "Response")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^[A-Z][A-Z0-9]+$")
ERROR_ITEM = re.compile(r"^(?P<code>[A-Z_]+) (?P<reasons>[A-Z0-9_]+(?:, [A-Z0-9_]+)*): \S")


# -- the catalogues ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Catalogue:
    name: str
    path: Path
    line: int
    bases: tuple[str, ...]
    members: tuple[tuple[str, object], ...]  # (name, value) in order, duplicates kept

    @property
    def wire(self) -> bool:
        return self.path == WIRE_MODULE


def _scanned_files() -> Iterator[Path]:
    for root in SCANNED:
        yield from sorted(root.rglob("*.py"))


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _catalogues_in(tree: ast.Module, path: Path) -> list[Catalogue]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name.endswith("Reason"):
            members = tuple(
                (stmt.targets[0].id, stmt.value.value if isinstance(stmt.value, ast.Constant) else None)
                for stmt in node.body
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            )
            bases = tuple(ast.unparse(base) for base in node.bases)
            found.append(Catalogue(node.name, path, node.lineno, bases, members))
    return found


@functools.cache
def catalogues() -> tuple[Catalogue, ...]:
    return tuple(c for path in _scanned_files() for c in _catalogues_in(_tree(path), path))


def declared_reasons() -> set[str]:
    """Every declared reason string (what the wire and the logs may carry)."""
    return {str(value) for c in catalogues() for _, value in c.members}


def _wire() -> dict[str, Catalogue]:
    return {c.name: c for c in catalogues() if c.wire}


# -- (a) no literal reasons ----------------------------------------------------------------------


def _has_literal(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.JoinedStr) or (isinstance(n, ast.Constant) and isinstance(n.value, str))
        for n in ast.walk(node)
    )


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _passes_reason_to_an_error(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True when the function hands its ``reason`` parameter to an error type (``XError(..., reason=reason)``)."""
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and (_callee(node) or "").endswith("Error"):
            values = [*node.args, *(kw.value for kw in node.keywords)]
            if any(isinstance(v, ast.Name) and v.id == "reason" for v in values):
                return True
    return False


def _reason_parameters(tree: ast.Module) -> dict[str, int]:
    """The module's error helpers (a ``reason`` parameter that becomes an error's) -> its position."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names = [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
            if "reason" in names and _passes_reason_to_an_error(node):
                bound = 1 if names[0] in ("self", "cls") else 0
                found[node.name] = names.index("reason") - bound
    return found


def _reads_reason(node: ast.AST) -> bool:
    if isinstance(node, ast.Call):
        return _callee(node) in ("error_info_reason", "error_reason")
    return isinstance(node, ast.Attribute) and node.attr == "reason"


def literal_reasons(source: str, where: str, declared: set[str]) -> list[str]:
    """What in ``source`` spells a reason as a string literal (empty: nothing)."""
    tree = ast.parse(source, where)
    params = _reason_parameters(tree)
    catalogue_lines = {
        line
        for c in _catalogues_in(tree, Path(where))
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.lineno == c.line
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)
    }
    found = []
    for node in ast.walk(tree):
        at = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            name = _callee(node)
            for kw in node.keywords:
                words = name in NOT_ERROR_CALLS or (name or "").endswith(NOT_ERROR_SUFFIXES)
                if kw.arg == "reason" and not words and _has_literal(kw.value):
                    found.append(f"{at}: reason={ast.unparse(kw.value)}")
            if name and name.endswith("Error"):
                found += [
                    f"{at}: {name}({arg.value!r}, ...)"
                    for arg in node.args
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and UPPER_SNAKE.match(arg.value)
                ]
            position = params.get(name or "")
            if position is not None and position < len(node.args) and _has_literal(node.args[position]):
                found.append(f"{at}: {name}(..., {ast.unparse(node.args[position])}) passes its reason as a literal")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_reads_reason(s) for s in sides) and any(_has_literal(s) for s in sides if not _reads_reason(s)):
                found.append(f"{at}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in declared
            and node.lineno not in catalogue_lines
        ):
            found.append(f"{at}: the literal {node.value!r} is a declared reason")
    return found


def test_no_reason_is_spelled_as_a_literal() -> None:
    declared = declared_reasons()
    found = [
        problem
        for path in _scanned_files()
        for problem in literal_reasons(path.read_text(), str(path.relative_to(ROOT)), declared)
    ]
    assert not found, "use the members of the reason catalogues (tendril_sdk.reasons, <package>/errors.py):\n" + (
        "\n".join(found)
    )


def test_the_scan_finds_every_kind_of_literal_reason() -> None:
    declared = {"RUN_NOT_OPEN"}
    spelled = {
        "keyword": 'raise LeaseError(ErrorKind.NOT_FOUND, "gone", reason="LEASE_GONE")',
        "f-string": 'raise LeaseError(ErrorKind.INVALID_ARGUMENT, "m", reason=f"{field.upper()}_MISSING")',
        "either literal": 'raise JobError(kind, "m", reason="A_B" if up else Reason.C)',
        "positional": 'raise StreamError("BAD_THING", "the message")',
        "helper": 'def _bad(message, reason):\n    return XError(K, message, reason=reason)\n_bad("m", "NEW_REASON")',
        "method helper": (
            "class M:\n"
            "    def _refuse(self, kind, reason, m):\n"
            "        return XError(kind, m, reason=reason)\n"
            '    def f(self):\n        raise self._refuse(k, "X_Y", "m")'
        ),
        "comparison": 'ok = error_info_reason(err) == "LEASE_NOT_CONFIRMED"',
        "attribute": 'if exc.reason != "JOB_NOT_OPEN": raise',
        "membership": 'retry = error_info_reason(err) in {"SOME_REASON"}',
        "declared value": 'RETRYABLE_REASONS = {"RUN_NOT_OPEN"}',
    }
    for what, source in spelled.items():
        assert literal_reasons(source, what, declared), f"the scan misses a literal reason ({what}): {source}"
    clean = (
        "class LeaseReason(enum.StrEnum):\n"
        '    RUN_NOT_OPEN = "RUN_NOT_OPEN"\n'
        'raise LeaseError(ErrorKind.NOT_FOUND, "gone", reason=LeaseReason.RUN_NOT_OPEN)\n'
        "ok = error_info_reason(err) == LeaseReason.RUN_NOT_OPEN\n"
        'log.warning("child.kill", reason="stop budget used up")\n'
        "def _drop(item, reason):\n    finish(item, reason)\n"
        '_drop(item, "the arbiter is stopping")\n'
        'OFFERS.labels(result="offered", reason="")\n'
        'job_pb2.CancelRequest(job_id="j", reason="done trying")\n'
    )
    assert literal_reasons(clean, "clean", declared) == []


# -- (b) documented in the protos ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ErrorItem:
    proto: str
    where: str  # the rpc or message the paragraph documents
    code: str
    reason: str


def _comment_blocks(text: str) -> Iterator[tuple[list[str], str]]:
    """(comment lines without "// ", the declaration after them) for every comment block."""
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            block.append(stripped[2:].removeprefix(" "))
        else:
            if block and stripped:
                yield block, stripped
            block = []


def _errors_paragraph(block: list[str]) -> list[str] | None:
    """The items of a block's "Errors:" paragraph (continuations joined); None when it has none."""
    for i, line in enumerate(block):
        if line == "Errors: none of its own.":
            return []
        if line == "Errors:":
            items: list[str] = []
            for item in block[i + 1 :]:
                if not item:
                    break
                if item.startswith("    ") and items:
                    items[-1] += " " + item.strip()
                else:
                    items.append(item)
            return items
    return None


def _declared_name(declaration: str) -> str:
    m = re.match(r"^(?:rpc|message|service|enum)\s+(\w+)", declaration)
    return m.group(1) if m else declaration


@functools.cache
def documented(proto: str) -> tuple[tuple[ErrorItem, ...], tuple[str, ...]]:
    """(items of every "Errors:" paragraph, problems: rpcs without one, malformed items)."""
    items, problems = [], []
    for block, declaration in _comment_blocks((PROTOS / proto).read_text()):
        where = _declared_name(declaration)
        paragraph = _errors_paragraph(block)
        if paragraph is None:
            if declaration.startswith("rpc "):
                problems.append(f"{proto}: rpc {where} has no 'Errors:' paragraph (or 'Errors: none of its own.')")
            continue
        for text in paragraph:
            m = ERROR_ITEM.match(text.strip()) if text.startswith("  ") else None
            if m is None:
                problems.append(f"{proto} {where}: not an '  CODE REASON[, REASON]: when' item: {text!r}")
                continue
            items += [ErrorItem(proto, where, m["code"], r) for r in m["reasons"].split(", ")]
    return tuple(items), tuple(problems)


def _all_protos() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def _raised_with_codes() -> set[tuple[str, str, str]]:
    """(catalogue, member, ErrorKind) of every call that names both, e.g. XError(ErrorKind.K, m, reason=R.M)."""
    wire = set(_wire())
    found = set()
    for path in _scanned_files():
        for node in ast.walk(_tree(path)):
            if not isinstance(node, ast.Call):
                continue
            values = [*node.args, *(kw.value for kw in node.keywords)]
            attrs = [v for v in values if isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name)]
            kinds = [a.attr for a in attrs if a.value.id == "ErrorKind"]
            reasons = [(a.value.id, a.attr) for a in attrs if a.value.id in wire]
            if len(kinds) == 1:
                found |= {(catalogue, member, kinds[0]) for catalogue, member in reasons}
    return found


def test_every_wire_catalogue_has_its_protos() -> None:
    wire = _wire()
    assert set(wire) == set(DOCUMENTED_IN), "map every catalogue of tendril_sdk.reasons to its protos"
    for name, protos in DOCUMENTED_IN.items():
        missing = [p for p in protos if not (PROTOS / p).is_file()]
        assert not missing, f"{name}: no such proto {missing}"
    local = [c.name for c in catalogues() if not c.wire and c.name in DOCUMENTED_IN]
    assert not local, f"catalogues mapped to protos must live in tendril_sdk.reasons: {local}"


def test_every_rpc_has_a_well_formed_errors_paragraph() -> None:
    problems = [p for proto in _all_protos() for p in documented(proto)[1]]
    assert not problems, "\n".join(problems)


def test_every_wire_reason_is_documented_in_its_protos() -> None:
    missing = []
    for name, catalogue in _wire().items():
        listed = {item.reason for proto in DOCUMENTED_IN[name] for item in documented(proto)[0]}
        missing += [
            f"{name}.{member} (in {', '.join(DOCUMENTED_IN[name])})"
            for member, _ in catalogue.members
            if member not in listed
        ]
    assert not missing, "reasons no 'Errors:' paragraph lists:\n" + "\n".join(missing)


def test_the_protos_document_only_declared_reasons_and_real_codes() -> None:
    codes = {code.name for code in grpc.StatusCode}
    wrong = []
    for proto in _all_protos():
        known = {m for name, protos in DOCUMENTED_IN.items() if proto in protos for m, _ in _wire()[name].members}
        for item in documented(proto)[0]:
            if item.code not in codes:
                wrong.append(f"{proto} {item.where}: {item.code} is not a status code")
            if item.reason not in known:
                wrong.append(f"{proto} {item.where}: {item.reason} is no reason of this area's catalogues")
    assert not wrong, "\n".join(wrong)


def test_the_documented_codes_are_the_raised_ones() -> None:
    raised = _raised_with_codes()
    assert len(raised) > 50, "the scan for raise sites found too little; has the error call shape changed?"
    documented_pairs = {
        (item.reason, item.code) for protos in DOCUMENTED_IN.values() for p in protos for item in documented(p)[0]
    }
    undocumented = sorted(
        f"{catalogue}.{member} with {kind}"
        for catalogue, member, kind in raised
        if (member, kind) not in documented_pairs
    )
    assert not undocumented, "raised with a status code its protos do not list:\n" + "\n".join(undocumented)


def _bridge_raises() -> set[str]:
    """The BridgeReason members the bridge's own code names (``BridgeReason.X``)."""
    return {
        node.attr
        for path in sorted((SERVICES / "bridge").rglob("*.py"))
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "BridgeReason"
    }


def test_the_bridge_declares_what_it_answers_and_nothing_else() -> None:
    """A BridgeReason member is the bridge's own, a REMOTE_<CODE>, or a reason of a service behind
    it; a reason renamed or removed there makes its member stale, and one the bridge's sends and
    fetches add must be declared for executors to match it."""
    wire = _wire()
    members = {m for m, _ in wire["BridgeReason"].members}
    remote = {f"REMOTE_{code.name}" for code in grpc.StatusCode if code is not grpc.StatusCode.OK}
    peers = {m for name in BRIDGE_PEERS for m, _ in wire[name].members} | {r.value for r in TensorStreamReason}
    stale = sorted(members - _bridge_raises() - remote - peers)
    assert not stale, f"BridgeReason members neither the bridge nor a service behind it answers: {stale}"
    assert {m for m in members if m.startswith("REMOTE_")} == remote, "one REMOTE_<CODE> per status code but OK"
    # RPC_FAILED never leaves the bridge: it answers REMOTE_<CODE> instead (tendril.bridge.remotes).
    own_client = {r.value for r in TensorStreamReason if r is not TensorStreamReason.RPC_FAILED}
    assert not own_client - members, f"the bridge's sends and fetches answer {sorted(own_client - members)}"


def test_an_error_needs_a_reason() -> None:
    """No fallback to the status name: every raise names a declared reason (the scan above proves it)."""
    with pytest.raises(ValueError, match="needs a reason"):
        TendrilError(ErrorKind.NOT_FOUND, "gone", reason="")
    assert TendrilError(ErrorKind.NOT_FOUND, "gone", reason="GONE").reason == "GONE"


# -- (c) well-formed catalogues ------------------------------------------------------------------


def test_catalogues_are_str_enums_of_upper_snake_names_equal_to_their_values() -> None:
    found = catalogues()
    assert len(found) >= 10, "the catalogue scan found too little"
    wrong = []
    names = [c.name for c in found]
    wrong += [f"{n} is declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for c in found:
        where = f"{c.path.relative_to(ROOT)}:{c.line} {c.name}"
        if c.bases not in (("enum.StrEnum",), ("StrEnum",)):
            wrong.append(f"{where}: derive from enum.StrEnum (members must compare equal to the wire strings)")
        if not c.members:
            wrong.append(f"{where}: no members")
        member_names = [m for m, _ in c.members]
        values = [v for _, v in c.members]
        wrong += [
            f"{where}: {m} is declared twice" for m in sorted({m for m in member_names if member_names.count(m) > 1})
        ]
        wrong += [
            f"{where}: value {v!r} is used twice" for v in sorted({str(v) for v in values if values.count(v) > 1})
        ]
        for member, value in c.members:
            if not UPPER_SNAKE.match(member):
                wrong.append(f"{where}.{member}: not UPPER_SNAKE")
            if value != member:
                wrong.append(f"{where}.{member}: its value {value!r} must be its name")
    assert not wrong, "\n".join(wrong)


def test_the_catalogues_import_as_scanned() -> None:
    """The AST view above is what Python sees (no aliases, nothing computed)."""
    import importlib

    for c in catalogues():
        root = next(r for r in SOURCE_ROOTS if c.path.is_relative_to(r))
        module = ".".join(c.path.relative_to(root).with_suffix("").parts)
        enum_type = getattr(importlib.import_module(module), c.name)
        assert [(m.name, m.value) for m in enum_type] == list(c.members), c.name
