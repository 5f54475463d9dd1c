"""The codec registry: how tensor values travel on the wire, declared once.

:data:`REGISTRY` holds every codec: its name (job.toml, the APIs, error messages), its
``tendril.tensor.v1.Codec`` value, the SafeTensors dtype of its encoded values, its
encode/decode functions and properties. Everything else derives from it: the names
(:data:`CODECS`), lookups by name (:func:`get`) and by proto value (:func:`from_proto`), the
dtype checks of :mod:`tendril.core.tensorfile` and :mod:`tendril.core.streaming`, the
job.toml field and the demo's ``--codec`` choices. Adding a codec is one :class:`Codec`
entry here, its encode/decode functions and its value in the proto enum.

Everything here is numpy on flat float32 arrays, so services never need torch. Decoding
always gives float32 (accumulation is always fp32).

* fp32: the values unchanged.
* bf16: the upper 16 bits of an fp32, rounded to nearest, ties to even (what
  ``torch.Tensor.to(torch.bfloat16)`` does); NaN stays a (quiet) NaN.
* int8: the flat tensor is cut into blocks of ``block_size`` values (the last one may be
  shorter); each block stores one fp32 scale = absmax / 127 and its values as
  round(x / scale) in [-127, 127]. The error of a value is at most scale / 2.
* int4: blocks and scales as int8 with scale = absmax / 7 and values round(x / scale) in
  [-7, 7] (-8 is never written), packed two per byte: value 2i of a tensor is the low nibble
  of its byte i, value 2i+1 the high nibble, each a 4-bit two's complement; a tensor of odd
  length ends with a byte whose high nibble is 0. Packing is per tensor (each tensor starts on
  a byte) and the block size must be even, so every block starts on a byte too and a range of
  whole blocks decodes on its own. The wire dtype is ``U8`` and a tensor's bytes hold
  ceil(numel / 2) (:meth:`Codec.nbytes`); the tensor's own shape travels in the stream header
  and, in a SafeTensors file, in ``__metadata__`` ``tendril.shapes`` (see
  :mod:`tendril.core.tensorfile`). 8× fewer bytes than fp32 for the values, plus 4 bytes per
  block for the scales (at the default block of 256: 7.8×).
* sparse (SparseLoCo): per chunk of ``block_size`` values (default 4096, 64..32768) the
  SPARSE_TOP_K = 64 largest |x| (ties to the lower index; zeros never kept: their slots hold
  index 0xFFFF), each at one of two magnitudes per chunk (the middle element by rank of the
  kept values' high and low halves) with its sign: 2 bits a value, four to a byte, plus a
  uint16 index within its chunk. A tensor's bytes are every slot's index, then every slot's
  code (:func:`sparse_encode`); its scales are (low, high) per chunk. Flat ``U8`` tensors like
  int4. Decoding and encoding again gives the same values. The parameter server serves such a
  run's updates as int8 (:attr:`Codec.update_codec`); the worker's decayed accumulator stands in
  for outer momentum (:attr:`Codec.replaces_momentum`).

Rounding is ``np.rint`` (half to even) on float32 ``x / scale``, so any implementation with
IEEE float32 division and half-to-even rounding (``torch.round``) encodes the same bits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from tendril.core.kernels import KERNELS
from tendril_proto.tensor.v1 import tensor_pb2

DEFAULT_BLOCK_SIZE = 256
MAX_BLOCK_SIZE = 1 << 20
INT8_MAX = 127

F32 = npt.NDArray[np.float32]
# (flat fp32 values, block size) -> (encoded values, fp32 scale per block: empty unless blockwise)
Encode = Callable[[F32, int], tuple[npt.NDArray[Any], F32]]
# (encoded values, scales, block size) -> flat fp32 values
Decode = Callable[[npt.NDArray[Any], F32, int], F32]


class CodecError(ValueError):
    """A codec was asked for something it cannot do (unknown name, non-finite values, ...)."""


@dataclasses.dataclass(frozen=True)
class Codec:
    """One wire codec."""

    name: str  # as job.toml, the APIs and the messages spell it
    proto: tensor_pb2.Codec  # its tendril.tensor.v1.Codec value
    wire_dtype: str  # SafeTensors dtype of the encoded values
    array_dtype: type[np.generic]  # numpy dtype of the encoded values (bf16: its uint16 bit patterns)
    lossy: bool
    # One fp32 scale per block of ``block_size`` values, stored as the tensor
    # ``<name>/__scales__``, with the codec and the block size in the file's __metadata__.
    blockwise: bool
    encode: Encode
    # Decoding may give up to ``values_per_element - 1`` values past the end (a packed tail);
    # :meth:`decode_count` cuts them off.
    decode: Decode
    values_per_element: int = 1  # int4: two values per byte
    # A packed codec's encoded elements -> one integer per value (values_per_element per
    # element), which the blockwise decode multiplies by the scales.
    unpack: Callable[[npt.NDArray[Any]], npt.NDArray[Any]] | None = None
    default_block_size: int = DEFAULT_BLOCK_SIZE  # what senders use unless told otherwise
    # Sparse: a tensor's bytes are its kept values' indices then their 2-bit codes, two fp32
    # magnitudes per chunk of ``block_size`` values as its scales (see the module docstring).
    sparse: bool = False
    # The codec the parameter server serves a run's updates in (a sum of sparse pushes is not
    # sparse in the same chunks; it travels as int8).
    serve_as: str = ""
    # The worker's decayed error-feedback accumulator stands in for outer momentum (SparseLoCo):
    # runs of this codec usually set outer_momentum = 0.
    replaces_momentum: bool = False

    @property
    def update_codec(self) -> str:
        """The codec the parameter server encodes this codec's runs' updates in."""
        return self.serve_as or self.name

    @property
    def flat(self) -> bool:
        """Whether a tensor travels as flat bytes (its shape in the header or ``tendril.shapes``)."""
        return self.values_per_element > 1 or self.sparse

    def tensor_bytes(self, numel: int, block_size: int) -> int:
        """Encoded bytes of a tensor of ``numel`` values (not its scales)."""
        if self.sparse:
            slots = sparse_slots(numel, block_size)
            return 2 * slots + -(-slots // 4)
        return self.nbytes(numel)

    def scale_count(self, numel: int, block_size: int) -> int:
        """fp32 scales of a tensor of ``numel`` values (blockwise codecs)."""
        return (2 if self.sparse else 1) * int8_scale_count(numel, block_size)

    def nbytes(self, count: int) -> int:
        """Bytes of ``count`` encoded values (for a packed codec: of a tensor of ``count`` values,
        or the offset of value ``count`` when ``count`` is a multiple of the block size)."""
        return -(-count // self.values_per_element) * np.dtype(self.array_dtype).itemsize

    def decode_count(self, encoded: npt.NDArray[Any], scales: F32, block_size: int, count: int) -> F32:
        """The first ``count`` decoded values of ``encoded``."""
        return self.decode(encoded, scales, block_size)[:count]

    def check_block_size(self, block_size: int) -> int:
        check_block_size(block_size)
        if self.values_per_element > 1 and block_size % self.values_per_element:
            raise CodecError(f"{self.name} needs a block size that is a multiple of {self.values_per_element}")
        if self.sparse and not SPARSE_TOP_K <= block_size <= SPARSE_MAX_CHUNK:
            raise CodecError(f"{self.name} needs a chunk (block size) of {SPARSE_TOP_K}..{SPARSE_MAX_CHUNK} values")
        return block_size


def for_kernel(values: Any, dtype: Any) -> npt.NDArray[Any]:
    """``values`` as a flat, C-contiguous and aligned array of ``dtype``: what the C loops take.

    # NOTE: aligned too, not only contiguous: a payload's tensors start where its sender's header
    # ends, which a hostile or odd writer may leave at any byte; such a view is copied here
    # (numpy itself reads misaligned arrays), so the kernels never see one.
    """
    return np.require(np.asarray(values, dtype=dtype).reshape(-1), dtype=dtype, requirements=["C", "A"])


def all_finite(values: npt.NDArray[Any]) -> bool:
    """Whether no value of a float array is NaN or Inf (one pass, no temporary, for float32)."""
    if KERNELS is not None and values.dtype == np.float32:
        return bool(KERNELS.all_finite(for_kernel(values, np.float32)))
    return bool(np.isfinite(values).all())


def encoded_all_finite(wire: Codec, raw: npt.NDArray[Any]) -> bool:
    """Whether the encoded values of a codec that is not blockwise (fp32, bf16), as its array dtype,
    hold no NaN or Inf: read on the bits, nothing decoded (bf16: all exponent bits set)."""
    if wire.name == "bf16":
        return not bool(((raw & np.uint16(0x7F80)) == np.uint16(0x7F80)).any())
    return all_finite(raw)


# -- bf16 -------------------------------------------------------------------------------


def _elementwise(kernel: Callable[[Any, Any], None], values: npt.NDArray[Any], src: Any, dst: Any) -> Any:
    """``kernel(src_buffer, dst_buffer)`` over ``values`` as ``src``, into a new ``dst`` array of its shape."""
    flat = for_kernel(values, src)
    out = np.empty(flat.size, dtype=dst)
    kernel(flat, out)
    return out.reshape(np.shape(values))


def bf16_from_fp32(values: F32) -> npt.NDArray[np.uint16]:
    """fp32 -> bf16 bit patterns (uint16), round to nearest even."""
    if KERNELS is not None:
        return _elementwise(KERNELS.bf16_encode, values, np.float32, np.uint16)
    return _bf16_from_fp32(values)


def _bf16_from_fp32(values: F32) -> npt.NDArray[np.uint16]:
    """The numpy reference of :func:`bf16_from_fp32`."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds to nearest and breaks ties to even; a
    # carry into the exponent is right (it rounds up to the next binade or to inf).
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    nan = np.isnan(values)
    if nan.any():
        # Rounding could carry a NaN's payload into inf; keep it a quiet NaN instead.
        rounded[nan] = (bits[nan] >> np.uint32(16)) | np.uint32(0x0040)
    return rounded.astype(np.uint16)


def fp32_from_bf16(bits: npt.NDArray[np.uint16]) -> F32:
    """bf16 bit patterns -> fp32 (exact)."""
    if KERNELS is not None:
        return _elementwise(KERNELS.bf16_decode, bits, np.uint16, np.float32)
    return _fp32_from_bf16(bits)


def _fp32_from_bf16(bits: npt.NDArray[np.uint16]) -> F32:
    """The numpy reference of :func:`fp32_from_bf16`."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


# -- int8 blockwise absmax ------------------------------------------------------------------


def int8_scale_count(numel: int, block_size: int) -> int:
    """Number of blocks (and so of fp32 scales) of a tensor of ``numel`` values."""
    return -(-numel // block_size)


def int8_encode(values: F32, block_size: int) -> tuple[npt.NDArray[np.int8], F32]:
    """Flat fp32 -> (int8 values, fp32 scale per block). Values must be finite."""
    return _absmax_quantize(values, block_size, INT8_MAX, "int8")


def int8_decode(quant: npt.NDArray[np.int8], scales: F32, block_size: int) -> F32:
    """(int8 values, fp32 scale per block) -> flat fp32."""
    if KERNELS is not None:
        src = for_kernel(quant, np.int8)
        out = np.empty(src.size, dtype=np.float32)
        KERNELS.blockwise_decode(src, for_kernel(scales, np.float32), block_size, out)
        return out
    return _int8_decode(quant, scales, block_size)


def _int8_decode(quant: npt.NDArray[np.int8], scales: F32, block_size: int) -> F32:
    """The numpy reference of :func:`int8_decode`."""
    flat = np.asarray(quant, dtype=np.int8).reshape(-1)
    expanded = np.repeat(np.asarray(scales, dtype=np.float32), block_size)[: flat.size]
    return (flat.astype(np.float32) * expanded).astype(np.float32)


# -- int4 blockwise absmax, two values per byte ----------------------------------------------------

INT4_MAX = 7


def _absmax_quantize(values: F32, block_size: int, limit: int, name: str) -> tuple[npt.NDArray[np.int8], F32]:
    if KERNELS is not None:
        src = for_kernel(values, np.float32)
        quant = np.empty(src.size, dtype=np.int8)
        scales = np.empty(int8_scale_count(src.size, block_size), dtype=np.float32)
        if not KERNELS.absmax_quantize(src, quant, scales, block_size, limit):
            raise CodecError(f"{name} cannot encode NaN or Inf values")
        return quant, scales
    return _absmax_quantize_numpy(values, block_size, limit, name)


def _absmax_quantize_numpy(values: F32, block_size: int, limit: int, name: str) -> tuple[npt.NDArray[np.int8], F32]:
    """The numpy reference of :func:`_absmax_quantize`."""
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if not np.isfinite(flat).all():
        raise CodecError(f"{name} cannot encode NaN or Inf values")
    blocks = int8_scale_count(flat.size, block_size)
    padded = flat
    if blocks * block_size != flat.size:
        padded = np.zeros(blocks * block_size, dtype=np.float32)
        padded[: flat.size] = flat
    grid = padded.reshape(blocks, block_size)
    absmax = np.abs(grid).max(axis=1) if blocks else np.zeros(0, dtype=np.float32)
    scales = (absmax / np.float32(limit)).astype(np.float32)
    # An all-zero block has scale 0; divide by 1 there so its values stay 0.
    safe = np.where(scales > 0, scales, np.float32(1.0))
    quant = np.rint(grid / safe[:, None])
    np.clip(quant, -limit, limit, out=quant)
    return quant.astype(np.int8).reshape(-1)[: flat.size], scales


def pack_int4(quant: npt.NDArray[np.int8]) -> npt.NDArray[np.uint8]:
    """Values in [-8, 7] -> bytes, value 2i in the low nibble of byte i (odd tail: high nibble 0)."""
    if KERNELS is not None:
        src = for_kernel(quant, np.int8)
        out = np.empty((src.size + 1) // 2, dtype=np.uint8)
        KERNELS.pack_int4(src, out)
        return out
    return _pack_int4(quant)


def _pack_int4(quant: npt.NDArray[np.int8]) -> npt.NDArray[np.uint8]:
    """The numpy reference of :func:`pack_int4`."""
    nibbles = np.asarray(quant, dtype=np.int8).view(np.uint8) & np.uint8(0x0F)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << np.uint8(4))).astype(np.uint8)


def unpack_int4(packed: npt.NDArray[np.uint8]) -> npt.NDArray[np.int8]:
    """Bytes -> 2 × len(packed) values in [-8, 7] (sign-extended nibbles, low nibble first)."""
    if KERNELS is not None:
        src = for_kernel(packed, np.uint8)
        out = np.empty(2 * src.size, dtype=np.int8)
        KERNELS.unpack_int4(src, out)
        return out
    return _unpack_int4(packed)


def _unpack_int4(packed: npt.NDArray[np.uint8]) -> npt.NDArray[np.int8]:
    """The numpy reference of :func:`unpack_int4`."""
    raw = np.asarray(packed, dtype=np.uint8)
    out = np.empty(2 * raw.size, dtype=np.uint8)
    out[0::2] = raw & np.uint8(0x0F)
    out[1::2] = raw >> np.uint8(4)
    # Sign-extend 4-bit two's complement: (n ^ 8) - 8.
    return ((out ^ np.uint8(8)).view(np.int8) - np.int8(8)).astype(np.int8)


def int4_encode(values: F32, block_size: int) -> tuple[npt.NDArray[np.uint8], F32]:
    """Flat fp32 -> (packed int4 bytes, fp32 scale per block). Values must be finite."""
    quant, scales = _absmax_quantize(values, block_size, INT4_MAX, "int4")
    return pack_int4(quant), scales


def int4_decode(packed: npt.NDArray[np.uint8], scales: F32, block_size: int) -> F32:
    """(packed int4 bytes, fp32 scale per block) -> 2 × len(packed) fp32 values (an odd tail's
    last value is a 0 that is not part of the tensor)."""
    return int8_decode(unpack_int4(packed), scales, block_size)


# -- sparse: chunk-wise top-k, 2-bit values ---------------------------------------------------------

SPARSE_TOP_K = 64  # values kept per chunk (a multiple of 4: every full chunk's codes start on a byte)
SPARSE_CHUNK = 4096  # the default chunk: 64 of 4096 values = 1.56 % density
SPARSE_MAX_CHUNK = 32768  # local indices are uint16, and 0xFFFF marks an unused slot
SPARSE_UNUSED = 0xFFFF


def sparse_slots(numel: int, chunk: int) -> int:
    """Kept-value slots of a tensor: SPARSE_TOP_K per full chunk, at most that many in the last."""
    full, tail = divmod(numel, chunk)
    return full * SPARSE_TOP_K + min(SPARSE_TOP_K, tail)


def sparse_encode(values: F32, chunk: int) -> tuple[npt.NDArray[np.uint8], F32]:
    """Flat fp32 (a whole tensor, or whole chunks of one) -> (indices then codes as bytes, scales).

    Per chunk: the SPARSE_TOP_K largest |x| (ties: the lower index), zeros never kept (their
    slots get index 0xFFFF); the kept values sorted by |x| descending split into a high half
    (the first ceil(m/2)) and a low half, each quantized to the magnitude of its middle element
    (an order statistic: no arithmetic, so any implementation picks the same bits); a value is
    2 bits, sign (bit 0, 1 = negative) and level (bit 1, 1 = high), four to a byte, the first
    value in the lowest bits. Scales: (low, high) magnitude per chunk. Values must be finite.
    """
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if chunk < SPARSE_TOP_K:
        raise CodecError(f"sparse needs a chunk (block size) of at least {SPARSE_TOP_K} values")
    kernel = getattr(KERNELS, "sparse_encode", None)
    if kernel is not None and chunk <= SPARSE_MAX_CHUNK:
        slots, chunks = sparse_slots(flat.size, chunk), int8_scale_count(flat.size, chunk)
        out = np.empty(2 * slots + -(-slots // 4), dtype=np.uint8)
        scales_out = np.empty(2 * chunks, dtype=np.float32)
        if not kernel(
            for_kernel(flat, np.float32),
            chunk,
            SPARSE_TOP_K,
            out[: 2 * slots].view(np.uint16),
            out[2 * slots :],
            scales_out,
        ):
            raise CodecError("sparse cannot encode NaN or Inf values")
        return out, scales_out
    return _sparse_encode_numpy(flat, chunk)


def _sparse_encode_numpy(flat: F32, chunk: int) -> tuple[npt.NDArray[np.uint8], F32]:
    """:func:`sparse_encode` in numpy (the reference the kernel is held to)."""
    if not all_finite(flat):
        raise CodecError("sparse cannot encode NaN or Inf values")
    n = flat.size
    chunks = int8_scale_count(n, chunk)
    slots = sparse_slots(n, chunk)
    indices = np.full(slots, SPARSE_UNUSED, dtype=np.uint16)
    codes = np.zeros(slots, dtype=np.uint8)
    scales = np.zeros(2 * chunks, dtype=np.float32)
    if chunks:
        padded = np.zeros(chunks * chunk, dtype=np.float32)
        padded[:n] = flat
        grid = padded.reshape(chunks, chunk)
        magnitude = np.abs(grid)
        # NOTE: one unique key per value, |x| first (non-negative floats order as their bits),
        # then the lower index: an O(chunk) partition finds the top k with the ties settled as a
        # stable sort by |x| descending would, and only the k kept are sorted.
        keys = (magnitude.view(np.uint32).astype(np.uint64) << np.uint64(16)) | (
            np.uint64(0xFFFF) - np.arange(chunk, dtype=np.uint64)
        )
        top = SPARSE_TOP_K
        picked = np.argpartition(keys, chunk - top, axis=1)[:, chunk - top :]
        order = np.take_along_axis(
            picked, np.argsort(np.take_along_axis(keys, picked, axis=1), axis=1)[:, ::-1], axis=1
        )
        kept_mag = np.take_along_axis(magnitude, order, axis=1)
        kept_val = np.take_along_axis(grid, order, axis=1)
        m = np.count_nonzero(kept_mag, axis=1)  # zeros are never kept (they sort last)
        high = (m + 1) // 2
        rows = np.arange(chunks)
        last = top - 1
        hi = kept_mag[rows, np.minimum(high // 2, last)]
        lo = np.where(m > high, kept_mag[rows, np.minimum(high + (m - high) // 2, last)], np.float32(0))
        hi = np.where(m > 0, hi, np.float32(0))
        scales[0::2], scales[1::2] = lo, hi
        rank = np.arange(top)[None, :]
        used = rank < m[:, None]
        level = (rank < high[:, None]).astype(np.uint8) << np.uint8(1)
        code = np.where(used, level | (kept_val < 0).astype(np.uint8), np.uint8(0)).astype(np.uint8)
        index = np.where(used, order, SPARSE_UNUSED).astype(np.uint16)
        indices[:] = index.reshape(-1)[:slots]
        codes[:] = code.reshape(-1)[:slots]
    return np.concatenate([indices.view(np.uint8), _pack2(codes)]), scales


def _pack2(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    padded = np.zeros(-(-codes.size // 4) * 4, dtype=np.uint8)
    padded[: codes.size] = codes
    quad = padded.reshape(-1, 4)
    return (quad[:, 0] | (quad[:, 1] << 2) | (quad[:, 2] << 4) | (quad[:, 3] << 6)).astype(np.uint8)


def _unpack2(packed: npt.NDArray[np.uint8], count: int) -> npt.NDArray[np.uint8]:
    raw = np.asarray(packed, dtype=np.uint8)
    out = np.empty((raw.size, 4), dtype=np.uint8)
    for i in range(4):
        out[:, i] = (raw >> np.uint8(2 * i)) & np.uint8(3)
    return out.reshape(-1)[:count]


def sparse_parts(encoded: npt.NDArray[np.uint8], scales: F32, chunk: int) -> tuple[npt.NDArray[np.int64], F32, int]:
    """(positions in the range, their values, the range's chunks) of an encoded range of whole chunks."""
    chunks = np.asarray(scales).size // 2
    slots = (encoded.size * 4) // 9  # 2 bytes of index + 1/4 byte of code per slot, codes padded
    while 2 * slots + -(-slots // 4) > encoded.size:
        slots -= 1
    indices = np.asarray(encoded[: 2 * slots]).view(np.uint16).astype(np.int64)
    codes = _unpack2(encoded[2 * slots :], slots)
    slot_chunk = np.arange(slots) // SPARSE_TOP_K
    used = indices != SPARSE_UNUSED
    pairs = np.asarray(scales, dtype=np.float32).reshape(chunks, 2)
    magnitude = pairs[slot_chunk[used], (codes[used] >> np.uint8(1)).astype(np.int64)]
    values = np.where(codes[used] & np.uint8(1), -magnitude, magnitude).astype(np.float32)
    return slot_chunk[used] * chunk + indices[used], values, chunks


def sparse_decode(encoded: npt.NDArray[np.uint8], scales: F32, chunk: int) -> F32:
    """An encoded range of whole chunks -> dense fp32 of chunks × chunk values (cut with decode_count)."""
    positions, values, chunks = sparse_parts(encoded, scales, chunk)
    out = np.zeros(chunks * chunk, dtype=np.float32)
    out[positions] = values
    return out


def sparse_ranges(numel: int, chunk: int, a: int, b: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Byte ranges, within a tensor's bytes, of the indices and of the codes of values [a, b)
    (``a`` chunk-aligned; ``b`` chunk-aligned or the tensor's end)."""
    total, first, last = sparse_slots(numel, chunk), sparse_slots(a, chunk), sparse_slots(b, chunk)
    return (2 * first, 2 * last), (2 * total + first // 4, 2 * total + -(-last // 4))


def sparse_check(encoded: npt.NDArray[np.uint8], numel: int, chunk: int) -> str | None:
    """What is wrong with a tensor's indices (out of its chunk, repeated), or None."""
    slots = sparse_slots(numel, chunk)
    indices = np.asarray(encoded[: 2 * slots]).view(np.uint16).astype(np.int64)
    slot_chunk = np.arange(slots) // SPARSE_TOP_K
    used = indices != SPARSE_UNUSED
    length = np.minimum(chunk, numel - slot_chunk * chunk)
    if (indices[used] >= length[used]).any():
        return "an index lies outside its chunk"
    # NOTE: a repeat can only lie within one chunk (the index check above keeps each chunk's
    # positions in its own range), so each chunk's SPARSE_TOP_K slots are sorted and compared
    # with their neighbours (unused slots, 0xFFFF, left out): at 100M values about 25× faster than
    # np.unique over every position (0.18 s a tensor), which the parameter server paid per push.
    raw = np.asarray(encoded[: 2 * slots]).view(np.uint16)
    whole = slots - slots % SPARSE_TOP_K
    rows = np.sort(raw[:whole].reshape(-1, SPARSE_TOP_K), axis=1)
    if ((rows[:, 1:] == rows[:, :-1]) & (rows[:, 1:] != SPARSE_UNUSED)).any():
        return "an index is repeated"
    tail = np.sort(raw[whole:])  # the last chunk's slots when it has fewer than SPARSE_TOP_K
    if ((tail[1:] == tail[:-1]) & (tail[1:] != SPARSE_UNUSED)).any():
        return "an index is repeated"
    return None


# -- the registry --------------------------------------------------------------------------------

NO_SCALES: F32 = np.zeros(0, dtype=np.float32)

REGISTRY: tuple[Codec, ...] = (
    Codec(
        "fp32",
        tensor_pb2.CODEC_FP32,
        "F32",
        np.float32,
        lossy=False,
        blockwise=False,
        encode=lambda values, _: (np.ascontiguousarray(values, dtype=np.float32), NO_SCALES),
        decode=lambda values, _scales, _: np.asarray(values, dtype=np.float32),
    ),
    Codec(
        "bf16",
        tensor_pb2.CODEC_BF16,
        "BF16",
        np.uint16,
        lossy=True,
        blockwise=False,
        encode=lambda values, _: (bf16_from_fp32(values), NO_SCALES),
        decode=lambda bits, _scales, _: fp32_from_bf16(bits),
    ),
    Codec(
        "int8", tensor_pb2.CODEC_INT8, "I8", np.int8, lossy=True, blockwise=True, encode=int8_encode, decode=int8_decode
    ),
    Codec(
        "int4",
        tensor_pb2.CODEC_INT4,
        "U8",
        np.uint8,
        lossy=True,
        blockwise=True,
        encode=int4_encode,
        decode=int4_decode,
        values_per_element=2,
        unpack=unpack_int4,
    ),
    Codec(
        "sparse",
        tensor_pb2.CODEC_SPARSE,
        "U8",
        np.uint8,
        lossy=True,
        blockwise=True,
        encode=sparse_encode,
        decode=sparse_decode,
        default_block_size=SPARSE_CHUNK,
        sparse=True,
        serve_as="int8",
        replaces_momentum=True,
    ),
)
BY_NAME: dict[str, Codec] = {codec.name: codec for codec in REGISTRY}
BY_PROTO: dict[int, Codec] = {codec.proto: codec for codec in REGISTRY}
CODECS: tuple[str, ...] = tuple(BY_NAME)  # the names, in registry order
FP32 = BY_NAME["fp32"]  # what accumulation uses and what CODEC_UNSPECIFIED means
NAMES = ", ".join(CODECS)  # for messages: "fp32, bf16, int8, int4, sparse"
PROTO_NAMES = ", ".join(tensor_pb2.Codec.Name(codec.proto) for codec in REGISTRY)


def get(name: str) -> Codec:
    """The codec called ``name``; CodecError naming the known ones otherwise."""
    codec = BY_NAME.get(name)
    if codec is None:
        raise CodecError(f"unknown codec {name!r}: use one of {NAMES}")
    return codec


def from_proto(value: int) -> Codec:
    """The codec of a ``tendril.tensor.v1.Codec`` value; CODEC_UNSPECIFIED means fp32."""
    if value == tensor_pb2.CODEC_UNSPECIFIED:
        return FP32
    codec = BY_PROTO.get(value)
    if codec is None:
        raise CodecError(f"unknown codec value {value}: use one of {PROTO_NAMES}")
    return codec


def check_codec(codec: str) -> str:
    return get(codec).name


def check_block_size(block_size: int) -> int:
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise CodecError(f"block size {block_size} is out of range 1..{MAX_BLOCK_SIZE}")
    return block_size
