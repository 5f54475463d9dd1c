"""The operator and author docs name only RPCs, types and error reasons that exist; the grpcurl
cookbook's markers are complete and well-formed (its commands run in tests/integration)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

import tendril_proto
from tests.cookbook import DOCUMENTED_PORTS, PROVIDED_ENV, CookbookError, json_path, parse, substitute
from tests.unit.test_error_reasons import declared_reasons

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
COOKBOOK = DOCS / "GRPCURL.md"
CHECKED = ("GRPCURL.md", "SCHEDULER_GUIDE.md", "OPERATIONS.md")
RPC = re.compile(r"\b([A-Z]\w*Service)[./]([A-Z]\w*)\b")
QUALIFIED = re.compile(r"\btendril\.[a-z]+\.v1\.[A-Za-z_.]+[A-Za-z]")
CODE_SPAN = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`")


def _proto_modules() -> list[ModuleType]:
    modules: list[ModuleType] = []
    for info in pkgutil.walk_packages(tendril_proto.__path__, "tendril_proto."):
        if info.name.endswith("_pb2"):
            modules.append(importlib.import_module(info.name))
    return modules


def _known() -> tuple[dict[str, set[str]], set[str], set[str]]:
    """Service name -> methods; fully qualified names of services, methods, messages; enum values."""
    methods: dict[str, set[str]] = {}
    names: set[str] = set()
    enum_values: set[str] = set()

    def message(desc: Any) -> None:
        names.add(desc.full_name)
        for nested in desc.nested_types:
            message(nested)
        for enum in desc.enum_types:
            enum_values.update(v.name for v in enum.values)

    for module in [*_proto_modules(), health_pb2]:
        file: Any = module.DESCRIPTOR
        for service in file.services_by_name.values():
            methods.setdefault(service.name, set()).update(service.methods_by_name)
            names.add(service.full_name)
            names.update(f"{service.full_name}.{m}" for m in service.methods_by_name)
        for desc in file.message_types_by_name.values():
            message(desc)
        for enum in file.enum_types_by_name.values():
            names.add(enum.full_name)
            enum_values.update(v.name for v in enum.values)
    return methods, names, enum_values


def _reasons() -> set[str]:
    """The declared reasons (the bridge's and the executors' included): code spells none as a literal."""
    return declared_reasons()


@pytest.mark.parametrize("doc", CHECKED)
def test_rpcs_and_types_named_in_the_docs_exist(doc: str) -> None:
    text = (DOCS / doc).read_text()
    methods, names, _ = _known()
    wrong = [f"{s}.{m}" for s, m in RPC.findall(text) if m not in methods.get(s, set())]
    wrong += [n for n in QUALIFIED.findall(text) if n not in names and n.rsplit(".", 1)[0] not in names]
    assert not wrong, f"{doc} names RPCs or types the protos do not have: {sorted(set(wrong))}"


@pytest.mark.parametrize("doc", CHECKED)
def test_upper_snake_words_in_the_docs_are_real(doc: str) -> None:
    """Every `SOME_NAME` is an error reason the code raises, a proto enum value, or a status code."""
    _, _, enum_values = _known()
    known = _reasons() | enum_values | {code.name for code in grpc.StatusCode}
    env_like = re.compile(r"^(TENDRIL|GLIBC|OTEL|XDG|HF)_")
    words = {w for w in CODE_SPAN.findall((DOCS / doc).read_text()) if not env_like.match(w)}
    unknown = sorted(w for w in words - known if w not in {"SOCKET_PATH", "WORK_DIR", "JOB_JSON"})
    assert not unknown, f"{doc}: not an error reason, enum value or status code: {unknown}"


def test_cookbook_blocks_are_all_marked_and_runnable() -> None:
    blocks = parse(COOKBOOK)
    run = [b for b in blocks if not b.skip]
    assert len(run) >= 25 and len(blocks) - len(run) <= 3
    captured: set[str] = set()
    for block in run:
        assert block.ports <= set(DOCUMENTED_PORTS), f"GRPCURL.md:{block.line}: unknown port {block.ports}"
        assert block.code.startswith(".venv/bin/grpcurl "), f"GRPCURL.md:{block.line}: use .venv/bin/grpcurl"
        needed = set(block.env) - captured - PROVIDED_ENV
        assert not needed, f"GRPCURL.md:{block.line}: {needed} is set by no earlier block"
        for var in re.findall(r"\$([A-Z_]+)", block.code):
            assert var in block.env, f"GRPCURL.md:{block.line}: uses ${var} but does not declare env={var}"
        captured |= set(block.capture)
    assert captured == {"LEASE_ID"}


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("```sh\nls\n```\n", "put <!-- run"),
        ("<!-- skip: -->\n```sh\nls\n```\n", "needs a reason"),
        ("<!-- run: exit=1 -->\n```sh\nls\n```\n", "at least one expect"),
        ('<!-- run: expect="x" color=red -->\n```sh\nls\n```\n', "unknown attribute"),
        ('<!-- run: expect="x" capture="A" -->\n```sh\nls\n```\n', "not VAR=json.path"),
        ('<!-- run: expect="x" -->\n```sh\nls\n', "not closed"),
    ],
)
def test_bad_markers_are_refused(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(CookbookError, match=re.escape(error)):
        parse(_doc(tmp_path, "intro\n\n" + text))


def test_marker_attributes(tmp_path: Path) -> None:
    text = (
        '<!-- run: expect="a b" expect=\'"c"\' exit=69 wait=5 capture="X=offer.leaseId" env="Y Z" -->\n'
        "```sh\necho 127.0.0.1:50052 $Y\n```\n\n```json\n{}\n```\n"
    )
    (block,) = parse(_doc(tmp_path, text))
    assert block.expect == ["a b", '"c"'] and block.exit == 69 and block.wait == 5
    assert block.capture == {"X": "offer.leaseId"} and block.env == ["Y", "Z"] and block.ports == {50052}
    assert substitute(block.code, {50052: "127.0.0.1:40001"}) == "echo 127.0.0.1:40001 $Y\n"
    with pytest.raises(CookbookError, match=re.escape("127.0.0.1:50052 is no known service address")):
        substitute(block.code, {})


def test_json_path() -> None:
    assert json_path({"offer": {"leaseId": "l1"}}, "offer.leaseId") == "l1"
    assert json_path({"jobs": [{"jobId": "j"}]}, "jobs.0.jobId") == "j"
