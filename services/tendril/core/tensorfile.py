"""SafeTensors files, read and written in bounded pieces (never a whole model in memory).

A SafeTensors file is: 8 bytes little-endian header length N, N bytes of JSON (padded with
spaces to a multiple of 8), then the data section. The JSON maps each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (relative to the data section) plus an
optional ``"__metadata__"`` map of strings. A tensor stream's payload is exactly such a file.

Codec payloads (see :mod:`tendril.core.codecs`): every tensor holds the codec's wire dtype
(fp32: ``F32``, bf16: ``BF16``, int8: ``I8``, int4: ``U8``). A blockwise codec (int8, int4)
adds each tensor's fp32 block scales as a tensor ``<name>/__scales__``, and ``__metadata__``
holds ``tendril.codec`` (its name) and ``tendril.block_size``. The scales come first in the
data section so that every F32 tensor stays 4-byte aligned. A packed codec (int4: two values
per byte) stores each tensor as a flat ``U8`` tensor of ceil(numel / 2) bytes, so the file
stays valid SafeTensors; the tensors' own shapes are in ``__metadata__`` ``tendril.shapes``
(a JSON object: name -> list of dimensions), and :class:`TensorSpec` always carries the
tensor's own shape.

Values are read with ``pread`` into small buffers (no mmap), so a process that folds many
files keeps its resident memory at the size of one piece.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import secrets
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tendril.core import codecs
from tendril.core.codecs import CodecError

ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
SCALES_SUFFIX = "/__scales__"
META_CODEC = "tendril.codec"
META_BLOCK_SIZE = "tendril.block_size"
META_SHAPES = "tendril.shapes"  # packed codecs: {name: shape} of the tensors (their entries are flat bytes)
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Elements handled per piece when converting or folding: 4 MiB of fp32.
PIECE_ELEMENTS = 1 << 20


class TensorFileError(ValueError):
    """A file or payload is not a SafeTensors layout this code can use; the message says why."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One value tensor of a payload; offsets are relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int
    scales_begin: int = 0  # blockwise codecs only: byte range of the fp32 block scales
    scales_end: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where every tensor of a SafeTensors payload lies, and how its values are encoded."""

    tensors: tuple[TensorSpec, ...]  # value tensors (not scales), in data order
    codec: str  # a codec's name, or "mixed" (a plain file with other dtypes)
    block_size: int  # blockwise codecs only, else 0
    header_size: int  # 8 + JSON length: where the data section starts
    data_size: int
    # Informational (the codec and block size above are what counts): not compared.
    metadata: tuple[tuple[str, str], ...] = dataclasses.field(default=(), compare=False)

    @property
    def total_bytes(self) -> int:
        return self.header_size + self.data_size

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """name -> shape: what two payloads of the same model share whatever their codec."""
        return {t.name: t.shape for t in self.tensors}

    @property
    def numel(self) -> int:
        return sum(t.numel for t in self.tensors)


# -- parsing ------------------------------------------------------------------------------


def _entry(name: str, raw: Any) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(raw, dict):
        raise TensorFileError(f"tensor {name!r}: header entry is not an object")
    dtype, shape, offsets = raw.get("dtype"), raw.get("shape"), raw.get("data_offsets")
    if dtype not in ITEMSIZE:
        raise TensorFileError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise TensorFileError(f"tensor {name!r}: shape must be a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise TensorFileError(f"tensor {name!r}: data_offsets must be [begin, end] with begin <= end")
    if offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZE[dtype]:
        raise TensorFileError(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes do not hold {dtype} of shape {shape}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def parse_layout(header_json: bytes, *, header_size: int, file_size: int | None = None) -> Layout:
    """Layout from the JSON header of a payload (``header_size`` = 8 + its length)."""
    try:
        doc = json.loads(header_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TensorFileError(f"header is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise TensorFileError("header is not a JSON object")
    meta_raw = doc.pop("__metadata__", None) or {}
    if not isinstance(meta_raw, dict) or not all(isinstance(v, str) for v in meta_raw.values()):
        raise TensorFileError("__metadata__ must map strings to strings")
    entries = {name: _entry(name, raw) for name, raw in doc.items()}
    # SafeTensors forbids holes and overlaps: sorted by offset the tensors tile the data section.
    cursor = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != cursor:
            raise TensorFileError(f"tensor {name!r} starts at {begin}, expected {cursor} (holes or overlaps)")
        cursor = end
    data_size = cursor
    if file_size is not None and header_size + data_size != file_size:
        raise TensorFileError(f"file is {file_size} bytes but its header describes {header_size + data_size}")
    codec, block_size = _codec_of(entries, meta_raw)
    blockwise = _blockwise(codec)
    shapes = _packed_shapes(codec, block_size, entries, meta_raw)
    tensors = []
    for name, (dtype, shape, begin, end) in sorted(entries.items(), key=lambda kv: kv[1][2]):
        if blockwise and name.endswith(SCALES_SUFFIX):
            continue
        shape = shapes.get(name, shape)
        scales_begin = scales_end = 0
        if blockwise:
            scales = entries.get(name + SCALES_SUFFIX)
            want = (codecs.BY_NAME[codec].scale_count(math.prod(shape), block_size),)
            if scales is None or scales[0] != "F32" or scales[1] != want:
                raise TensorFileError(f"{codec} tensor {name!r} lacks its F32 scales of shape {list(want)}")
            scales_begin, scales_end = scales[2], scales[3]
        tensors.append(TensorSpec(name, dtype, shape, begin, end, scales_begin, scales_end))
    return Layout(tuple(tensors), codec, block_size, header_size, data_size, tuple(sorted(meta_raw.items())))


def _blockwise(codec: str) -> bool:
    known = codecs.BY_NAME.get(codec)
    return known is not None and known.blockwise


def _packed_shapes(
    codec: str, block_size: int, entries: dict[str, tuple[str, tuple[int, ...], int, int]], meta: dict[str, str]
) -> dict[str, tuple[int, ...]]:
    """A packed codec's tensor shapes from ``tendril.shapes``, each checked against its bytes."""
    wire = codecs.BY_NAME.get(codec)
    if wire is None or not wire.flat:
        return {}
    try:
        raw = json.loads(meta.get(META_SHAPES, ""))
    except json.JSONDecodeError as exc:
        raise TensorFileError(f"{codec} payload needs {META_SHAPES} (JSON: name -> shape): {exc}") from exc
    if not isinstance(raw, dict):
        raise TensorFileError(f"{codec} payload: {META_SHAPES} must be a JSON object of name -> shape")
    shapes = {}
    for name, (_, _, begin, end) in entries.items():
        if name.endswith(SCALES_SUFFIX):
            continue
        shape = raw.get(name)
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise TensorFileError(f"{codec} payload: {META_SHAPES} lacks the shape of tensor {name!r}")
        if end - begin != wire.tensor_bytes(math.prod(shape), block_size):
            raise TensorFileError(f"{codec} tensor {name!r}: {end - begin} bytes do not hold shape {shape}")
        shapes[name] = tuple(shape)
    return shapes


def _codec_of(entries: dict[str, tuple[str, tuple[int, ...], int, int]], meta: dict[str, str]) -> tuple[str, int]:
    named = codecs.BY_NAME.get(meta.get(META_CODEC, ""))
    if named is not None and named.blockwise:
        try:
            block_size = named.check_block_size(int(meta.get(META_BLOCK_SIZE, "")))
        except (ValueError, CodecError) as exc:
            raise TensorFileError(f"{named.name} payload has a bad {META_BLOCK_SIZE}: {exc}") from exc
        for name, (dtype, *_) in entries.items():
            want = "F32" if name.endswith(SCALES_SUFFIX) else named.wire_dtype
            if dtype != want:
                raise TensorFileError(f"{named.name} payload: tensor {name!r} is {dtype}, expected {want}")
        return named.name, block_size
    dtypes = {dtype for dtype, *_ in entries.values()}
    if not dtypes:
        return codecs.FP32.name, 0
    plain = [c for c in codecs.REGISTRY if not c.blockwise and dtypes == {c.wire_dtype}]
    return (plain[0].name, 0) if plain else ("mixed", 0)


def split_header(prefix: bytes) -> int | None:
    """Total header size (8 + JSON length) once ``prefix`` holds the first 8 bytes, else None."""
    if len(prefix) < 8:
        return None
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > MAX_HEADER_BYTES:
        raise TensorFileError(f"header of {length} bytes is larger than the {MAX_HEADER_BYTES} allowed")
    return 8 + length


def read_layout(path: str | os.PathLike[str]) -> Layout:
    """Layout of a SafeTensors file; raises TensorFileError when it is not one."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header_size = split_header(f.read(8))
        if header_size is None or header_size > size:
            raise TensorFileError(f"{path} is not a SafeTensors file (too short)")
        return parse_layout(f.read(header_size - 8), header_size=header_size, file_size=size)


# -- building -------------------------------------------------------------------------------


def plan_layout(shapes: Sequence[tuple[str, tuple[int, ...]]], codec: str, block_size: int = 0) -> tuple[Layout, bytes]:
    """Layout and header bytes of a ``codec`` payload holding ``shapes`` in this order."""
    wire = codecs.get(codec)
    if wire.blockwise:
        wire.check_block_size(block_size)
    else:
        block_size = 0
    dtype = wire.wire_dtype
    packed = wire.flat
    doc: dict[str, Any] = {}
    if wire.blockwise:
        doc["__metadata__"] = {META_CODEC: wire.name, META_BLOCK_SIZE: str(block_size)}
    if packed:
        doc["__metadata__"][META_SHAPES] = json.dumps(
            {name: list(shape) for name, shape in shapes}, separators=(",", ":")
        )
    cursor = 0
    scale_ranges: dict[str, tuple[int, int]] = {}
    if wire.blockwise:
        for name, shape in shapes:
            count = wire.scale_count(math.prod(shape), block_size)
            doc[name + SCALES_SUFFIX] = {"dtype": "F32", "shape": [count], "data_offsets": [cursor, cursor + 4 * count]}
            scale_ranges[name] = (cursor, cursor + 4 * count)
            cursor += 4 * count
    tensors = []
    for name, shape in shapes:
        if name in doc or name == "__metadata__":
            raise TensorFileError(f"tensor name {name!r} is used twice or reserved")
        size = wire.tensor_bytes(math.prod(shape), block_size)
        entry_shape = [size] if packed else list(shape)
        doc[name] = {"dtype": dtype, "shape": entry_shape, "data_offsets": [cursor, cursor + size]}
        sb, se = scale_ranges.get(name, (0, 0))
        tensors.append(TensorSpec(name, dtype, tuple(shape), cursor, cursor + size, sb, se))
        cursor += size
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    header = struct.pack("<Q", len(text)) + text
    meta = tuple(sorted(doc.get("__metadata__", {}).items()))
    return Layout(tuple(tensors), codec, block_size, len(header), cursor, meta), header


def float_shapes(layout: Layout) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor, after checking that all of them hold floats."""
    blockwise = _blockwise(layout.codec)
    bad = [f"{t.name} ({t.dtype})" for t in layout.tensors if not blockwise and t.dtype not in FLOAT_DTYPES]
    if bad:
        raise TensorFileError(
            f"only floating tensors (F32, F16, BF16, F64) can be encoded; leave out {', '.join(bad[:5])}"
        )
    return [(t.name, t.shape) for t in layout.tensors]


# -- bounded reads and writes ---------------------------------------------------------------------


def pread_into(fd: int, buffer: memoryview, offset: int) -> None:
    """Fill ``buffer`` from ``fd`` at ``offset`` (64-bit offsets; loops over short reads)."""
    done = 0
    while done < len(buffer):
        got = os.preadv(fd, [buffer[done:]], offset + done)
        if got <= 0:
            raise TensorFileError(f"file ended at byte {offset + done}, {len(buffer) - done} bytes short")
        done += got


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (loops over short writes)."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def read_array(fd: int, offset: int, dtype: npt.DTypeLike, count: int) -> np.ndarray:
    out = np.empty(count, dtype=dtype)
    pread_into(fd, memoryview(out.data).cast("B"), offset)
    return out


def pieces(numel: int, step: int = PIECE_ELEMENTS) -> Iterator[tuple[int, int]]:
    """[a, b) element ranges covering ``numel``; ``step`` keeps codec blocks whole."""
    for a in range(0, numel, step):
        yield a, min(numel, a + step)


def piece_step(*layouts: Layout) -> int:
    """Elements per piece: a multiple of every codec block size among ``layouts``."""
    unit = math.lcm(*(layout.block_size or 1 for layout in layouts))
    return max(1, PIECE_ELEMENTS // unit) * unit


def read_values(fd: int, layout: Layout, spec: TensorSpec, a: int, b: int) -> npt.NDArray[np.float32]:
    """Elements [a, b) of tensor ``spec`` as float32 (decoding its codec); a is block-aligned for blockwise codecs."""
    start = layout.header_size + spec.begin
    wire = codecs.BY_NAME.get(layout.codec)
    if wire is not None and wire.blockwise:
        bs = layout.block_size
        first, last = wire.scale_count(a, bs), wire.scale_count(b, bs)
        scales = read_array(fd, layout.header_size + spec.scales_begin + 4 * first, np.float32, last - first)
        if wire.sparse:
            (i0, i1), (c0, c1) = codecs.sparse_ranges(spec.numel, bs, a, b)
            parts = [read_array(fd, start + i0, np.uint8, i1 - i0), read_array(fd, start + c0, np.uint8, c1 - c0)]
            return wire.decode_count(np.concatenate(parts), scales, bs, b - a)
        offset = wire.nbytes(a)
        count = (wire.nbytes(b) - offset) // np.dtype(wire.array_dtype).itemsize
        quant = read_array(fd, start + offset, wire.array_dtype, count)
        return wire.decode_count(quant, scales, bs, b - a)
    # A plain tensor (of a codec payload or of a "mixed" file) is read by its own dtype.
    plain = next((c for c in codecs.REGISTRY if not c.blockwise and c.wire_dtype == spec.dtype), None)
    if plain is not None:
        raw = read_array(fd, start + plain.nbytes(a), plain.array_dtype, b - a)
        return plain.decode(raw, codecs.NO_SCALES, 0)
    if spec.dtype == "F16":
        return read_array(fd, start + 2 * a, np.float16, b - a).astype(np.float32)
    if spec.dtype == "F64":
        return read_array(fd, start + 8 * a, np.float64, b - a).astype(np.float32)
    raise TensorFileError(f"tensor {spec.name!r} holds {spec.dtype}, not floats")


def write_values(fd: int, layout: Layout, spec: TensorSpec, a: int, values: npt.NDArray[np.float32]) -> None:
    """Encode float32 ``values`` (elements from ``a``) into tensor ``spec`` of a codec payload."""
    _place_values(layout, spec, a, values, lambda offset, data: pwrite_all(fd, data, offset))


def _place_values(
    layout: Layout,
    spec: TensorSpec,
    a: int,
    values: npt.NDArray[np.float32],
    place: Callable[[int, memoryview], None],
) -> None:
    """Encode float32 ``values`` (elements from ``a``) of tensor ``spec``; ``place(offset, bytes)``
    puts each encoded run where it belongs in the payload (a file, a buffer)."""
    start = layout.header_size + spec.begin
    wire = codecs.BY_NAME.get(layout.codec)
    if wire is None:
        raise TensorFileError(f"cannot write values into a {layout.codec} payload")
    encoded, scales = wire.encode(values, layout.block_size)
    raw = memoryview(np.ascontiguousarray(encoded).view(np.uint8).reshape(-1))
    if wire.sparse:
        (i0, i1), (c0, _) = codecs.sparse_ranges(spec.numel, layout.block_size, a, a + values.size)
        place(start + i0, raw[: i1 - i0])
        place(start + c0, raw[i1 - i0 :])
    else:
        place(start + wire.nbytes(a), raw)
    if wire.blockwise:
        first = wire.scale_count(a, layout.block_size)
        place(layout.header_size + spec.scales_begin + 4 * first, memoryview(scales.view(np.uint8).reshape(-1)))


# -- whole files ----------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temp path beside ``path`` that is renamed over it when the block succeeds.

    On any failure the temp file is removed, so a half-written file is never left behind.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_payload(path: str | os.PathLike[str], layout: Layout, header: bytes) -> int:
    """Create ``path`` sized for ``layout`` with ``header`` written; returns an fd open for writing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, layout.total_bytes)
        pwrite_all(fd, header, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def convert_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    codec: str,
    *,
    block_size: int | None = None,
    check_finite: bool = True,
) -> Layout:
    """Re-encode the float SafeTensors file ``src`` as a ``codec`` payload at ``dst`` (atomically;
    ``block_size`` None: the codec's default)."""
    if block_size is None:
        block_size = codecs.get(codec).default_block_size
    src_layout = read_layout(src)
    layout, header = plan_layout(float_shapes(src_layout), codec, block_size)
    with atomic_output(dst) as tmp:
        fd = create_payload(tmp, layout, header)
        try:
            _recode(src, src_layout, layout, functools.partial(write_values, fd, layout), check_finite)
        finally:
            os.close(fd)
    return layout


def _recode(
    src: str | os.PathLike[str],
    src_layout: Layout,
    layout: Layout,
    put: Callable[[TensorSpec, int, npt.NDArray[np.float32]], None],
    check_finite: bool,
) -> None:
    """Every tensor of the file ``src`` read as float32, piece by piece, and handed to ``put``
    (its spec in ``layout``, the first element, the values); NaN/Inf refused with ``check_finite``."""
    step = piece_step(src_layout, layout)
    fd = os.open(src, os.O_RDONLY)
    try:
        for src_spec, spec in zip(src_layout.tensors, layout.tensors, strict=True):
            for a, b in pieces(spec.numel, step):
                values = read_values(fd, src_layout, src_spec, a, b)
                if check_finite and not codecs.all_finite(values):
                    raise CodecError(f"tensor {spec.name!r} holds NaN or Inf values; refusing to send it")
                put(spec, a, values)
    finally:
        os.close(fd)


def put_values(view: memoryview, layout: Layout, spec: TensorSpec, a: int, values: npt.NDArray[np.float32]) -> None:
    """:func:`write_values` into a payload in memory (``view``: its header and data)."""

    def place(offset: int, data: memoryview) -> None:
        view[offset : offset + len(data)] = data

    _place_values(layout, spec, a, values, place)


def encode_into(
    src: str | os.PathLike[str], out: memoryview, codec: str, block_size: int, *, check_finite: bool = True
) -> Layout:
    """:func:`convert_file` into a payload image in memory (``out``: exactly the payload's
    :func:`encoded_layout_of` total bytes, e.g. a mapping of a kept file)."""
    src_layout = read_layout(src)
    layout, header = plan_layout(float_shapes(src_layout), codec, block_size)
    if len(out) != layout.total_bytes:
        raise TensorFileError(f"encoding {src} as {codec} needs {layout.total_bytes} bytes, got {len(out)}")
    out = out.cast("B") if out.format != "B" else out
    out[: len(header)] = header
    _recode(src, src_layout, layout, functools.partial(put_values, out, layout), check_finite)
    return layout


def encoded_layout_of(src: str | os.PathLike[str], codec: str, block_size: int) -> Layout:
    """The layout of the ``codec`` payload :func:`encode_into` makes of the file ``src``."""
    return plan_layout(float_shapes(read_layout(src)), codec, block_size)[0]


def fp32_layout_of(src: Layout) -> tuple[Layout, bytes]:
    """The layout and header of the fp32 file holding the tensors of payload ``src``."""
    return plan_layout(float_shapes(src), "fp32")


def decode_into(src: str | os.PathLike[str], out: memoryview) -> Layout:
    """Decode the payload file ``src`` (any codec) into the fp32 SafeTensors image ``out`` (its
    header and data: exactly :func:`fp32_layout_of`'s total bytes, e.g. a mapping of a kept file)."""
    return encode_into(src, out, "fp32", 0, check_finite=False)


def sha256_file(path: str | os.PathLike[str], *, upto: int | None = None) -> hashlib._Hash:
    """A sha256 object fed with the first ``upto`` bytes of ``path`` (all of it when None)."""
    digest = hashlib.sha256()
    remaining = os.path.getsize(path) if upto is None else upto
    buffer = bytearray(8 * 1024 * 1024)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while remaining > 0:
            got = f.readinto(view[: min(len(view), remaining)])
            if not got:
                raise TensorFileError(f"{path} ended {remaining} bytes early")
            digest.update(view[:got])
            remaining -= got
    return digest


def all_finite(path: str | os.PathLike[str], layout: Layout) -> str | None:
    """Name of the first tensor holding NaN/Inf, or None when every value is finite."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for spec in layout.tensors:
            if _blockwise(layout.codec):
                # Blockwise values are finite by construction; only the scales can be NaN/Inf.
                count = (spec.scales_end - spec.scales_begin) // 4
                scales = read_array(fd, layout.header_size + spec.scales_begin, np.float32, count)
                if not codecs.all_finite(scales):
                    return spec.name
                continue
            for a, b in pieces(spec.numel):
                if not codecs.all_finite(read_values(fd, layout, spec, a, b)):
                    return spec.name
    finally:
        os.close(fd)
    return None
