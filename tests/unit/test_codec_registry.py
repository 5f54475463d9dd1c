"""The codec registry is the one declaration of the codecs: it matches the proto enum, and no
other module under services/ or executors/ spells a list of codec names."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import tendril_sdk
from tendril.core import codecs, streaming, tensorfile
from tendril.core.codecs import CodecError
from tendril.core.streaming import StreamError
from tendril_proto.tensor.v1 import tensor_pb2

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_MODULE = ROOT / "services" / "tendril" / "core" / "codecs.py"


def test_registry_and_proto_enum_agree() -> None:
    enum_values = {v.number for v in tensor_pb2.Codec.DESCRIPTOR.values if v.number != tensor_pb2.CODEC_UNSPECIFIED}
    assert set(codecs.BY_PROTO) == enum_values, "every enum value but UNSPECIFIED has a codec, and vice versa"
    assert len(codecs.BY_PROTO) == len(codecs.REGISTRY) == len(codecs.BY_NAME), "names and values are unique"
    for codec in codecs.REGISTRY:
        assert tensor_pb2.Codec.Name(codec.proto) == f"CODEC_{codec.name.upper()}"
        assert codecs.get(codec.name) is codec and codecs.from_proto(codec.proto) is codec
        assert streaming.codec_from_proto(streaming.codec_to_proto(codec.name)) == codec.name
    assert codecs.from_proto(tensor_pb2.CODEC_UNSPECIFIED).name == "fp32"
    assert codecs.CODECS == ("fp32", "bf16", "int8", "int4", "sparse")
    assert codecs.NAMES == "fp32, bf16, int8, int4, sparse"
    assert tuple(tendril_sdk.CODECS) == codecs.CODECS  # the SDK reads the same proto enum


def test_unknown_codecs_are_refused_naming_the_known_ones() -> None:
    with pytest.raises(CodecError, match="use one of fp32, bf16, int8, int4, sparse"):
        codecs.get("fp8")
    with pytest.raises(CodecError, match="CODEC_FP32, CODEC_BF16, CODEC_INT8, CODEC_INT4, CODEC_SPARSE"):
        codecs.from_proto(99)
    with pytest.raises(StreamError) as err:
        streaming.codec_to_proto("fp8")
    assert err.value.reason == "BAD_CODEC" and "fp32, bf16, int8, int4, sparse" in err.value.message


@pytest.mark.parametrize("codec", codecs.REGISTRY, ids=lambda c: c.name)
def test_properties_match_what_the_codec_does(codec: codecs.Codec) -> None:
    # NOTE: packed codecs (int4) hold several values per element and sparse ones a few values
    # per chunk: tensor_bytes, not one itemsize per value.
    if not codec.sparse:
        assert codec.nbytes(1000) == -(-1000 // codec.values_per_element) * tensorfile.ITEMSIZE[codec.wire_dtype]
    values = np.random.default_rng(3).standard_normal(1000).astype(np.float32) * 3
    encoded, scales = codec.encode(values, 64)
    assert encoded.dtype == codec.array_dtype and encoded.nbytes == codec.tensor_bytes(values.size, 64)
    assert scales.size == (codec.scale_count(values.size, 64) if codec.blockwise else 0)
    back = codec.decode_count(encoded, scales, 64, values.size)
    assert back.dtype == np.float32
    assert np.array_equal(back, values) is not codec.lossy
    layout, _ = tensorfile.plan_layout([("w", (1000,))], codec.name, 64)
    assert (layout.codec, layout.tensors[0].dtype) == (codec.name, codec.wire_dtype)


def codec_lists(source: str) -> list[int]:
    """Lines of tuples, lists, sets and dicts (keys) holding two or more codec name literals."""
    names = set(codecs.CODECS)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [key for key in node.keys if key is not None]
        else:
            continue
        literals = [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]
        if len(literals) >= 2:
            found.append(node.lineno)
    return sorted(found)


def test_the_scan_finds_codec_lists() -> None:
    assert codec_lists('A = ("fp32", "bf16")\nB: Literal["int8", "bf16"]\nC = {"fp32": 1, "int8": 2}\n') == [1, 2, 3]
    assert codec_lists('x in ["fp32", "no"]\nMIXED = ("no", "fp16", "bf16")\n') == []


def test_no_other_module_spells_a_codec_list() -> None:
    offenders = []
    for folder in ("services", "executors"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == REGISTRY_MODULE:
                continue
            for line in codec_lists(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert not offenders, f"declare codecs only in tendril.core.codecs (REGISTRY); lists found at {offenders}"
