"""A round in memory: fold committed pushes into an fp32 accumulator, take the outer step.

Everything here runs on plain buffers (no I/O but reading and writing θ and momentum files),
block by block (:data:`BLOCK_ELEMENTS` values: a block and its temporaries stay in the CPU
cache, which makes the numpy passes 3× faster than pieces of a few MiB)::

    fold    acc  += float32(w) · decode(Δ)        once per committed push, in commit order
    close   g     = acc / float32(Σ w)
            buf, u = nesterov(θ, buf, g)          (outer.py: torch's arithmetic, bit for bit)
            û     = decode(encode(u))             the run's codec: what the workers apply
            acc  ← buf                            the accumulator becomes the momentum buffer
    save    θ'    = θ + û,  momentum' = buf       (after the update is served)

The accumulator holds the data section of θ's fp32 layout (tensor t at elements
[t.begin/4, t.end/4)), so it is written as the momentum file as it is.

# NOTE: the fold runs in commit order, not in worker-id order. A push's bytes are held in
# memory only until it commits (:mod:`.memory` budgets them): the accumulator is the only
# thing that grows with the round, so a fixed order would need every committed push held
# until the round closes (one model per worker). Float addition is not associative, so the
# aggregate now depends on the order of the commits, in its last bits: the same pushes
# committed in the same order give the same bits (every worker still gets the same update,
# the one the server applies), two orders may differ by an ulp of the sum. No exact
# order-independent sum fits the budget at this speed: the products w·Δ are exact in float64
# but their sum is not (the exponents of the addends differ), and exact or reproducible
# summation (a long accumulator, binned sums) costs several models of memory per run. A push
# that breaks off or fails its checks still leaves no trace: it is never added (its bytes
# wait in its staging buffer until it commits), so the aggregate of the pushes that
# committed is bit-identical with or without it.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from tendril.core import codecs, tensorfile
from tendril.core.kernels import KERNELS
from tendril.core.streaming import DEFAULT_DIGEST, Digest, new_hash
from tendril.core.tensorfile import Layout, TensorSpec
from tendril.paramserver.outer import Scratch, step_in_place

T = TypeVar("T")

F32 = npt.NDArray[np.float32]

BLOCK_ELEMENTS = 1 << 16  # values per block: 256 KiB of fp32, cache-sized
CLOSE_THREADS = max(1, min(2, os.cpu_count() or 1))  # threads of the outer step
UPDATE_BLOCK_SIZE = codecs.DEFAULT_BLOCK_SIZE  # block size of the int8/int4 updates the server encodes


def block_step(*layouts: Layout) -> int:
    """Values per block: a multiple of every codec block size among ``layouts``."""
    unit = math.lcm(*(layout.block_size or 1 for layout in layouts))
    return max(1, BLOCK_ELEMENTS // unit) * unit


def blocks(numel: int, step: int) -> Iterator[tuple[int, int]]:
    for a in range(0, numel, step):
        yield a, min(numel, a + step)


# -- payloads in memory -----------------------------------------------------------------------------


def _array(view: memoryview, dtype: npt.DTypeLike, offset: int, count: int) -> np.ndarray:
    return np.frombuffer(view, dtype=dtype, count=count, offset=offset)


def _encoded(view: memoryview, wire: codecs.Codec, start: int, a: int, b: int) -> np.ndarray:
    """The encoded elements holding values [a, b) of a tensor whose bytes start at ``start``
    (``a`` is block-aligned for a packed codec, so it starts on an element)."""
    first = wire.nbytes(a)
    return _array(
        view, wire.array_dtype, start + first, (wire.nbytes(b) - first) // np.dtype(wire.array_dtype).itemsize
    )


def _scales(view: memoryview, layout: Layout, spec: TensorSpec, wire: codecs.Codec, a: int, b: int) -> F32:
    first = wire.scale_count(a, layout.block_size)
    return _array(
        view,
        np.float32,
        layout.header_size + spec.scales_begin + 4 * first,
        wire.scale_count(b, layout.block_size) - first,
    )


def _sparse_range(view: memoryview, layout: Layout, spec: TensorSpec, a: int, b: int) -> npt.NDArray[np.uint8]:
    """The indices then the codes of values [a, b) of a sparse tensor (one array)."""
    start = layout.header_size + spec.begin
    (i0, i1), (c0, c1) = codecs.sparse_ranges(spec.numel, layout.block_size, a, b)
    return np.concatenate([_array(view, np.uint8, start + i0, i1 - i0), _array(view, np.uint8, start + c0, c1 - c0)])


def decode(view: memoryview, layout: Layout, spec: TensorSpec, a: int, b: int) -> F32:
    """Values [a, b) of a tensor of an in-memory payload as float32 (a view for fp32).

    ``a`` is block-aligned for blockwise codecs. The arithmetic is the codec's own decode
    (int8, int4: float32(q) · scale, one rounding), so this gives the same bits as
    :func:`tendril.core.tensorfile.read_values` on the same payload.
    """
    wire = codecs.BY_NAME[layout.codec]
    start = layout.header_size + spec.begin
    if wire.sparse:
        scales = _scales(view, layout, spec, wire, a, b)
        return wire.decode_count(_sparse_range(view, layout, spec, a, b), scales, layout.block_size, b - a)
    raw = _encoded(view, wire, start, a, b)
    if wire.unpack is not None:
        raw = wire.unpack(raw)[: b - a]
    if wire.blockwise:
        bs = layout.block_size
        first = a // bs
        scales = _array(
            view, np.float32, layout.header_size + spec.scales_begin + 4 * first, codecs.int8_scale_count(b, bs) - first
        )
        whole = (b - a) // bs * bs
        out = np.empty(b - a, dtype=np.float32)
        if whole:
            np.multiply(
                raw[:whole].reshape(-1, bs),
                scales[: whole // bs, None],
                out=out[:whole].reshape(-1, bs),
                dtype=np.float32,
            )
        if whole < b - a:
            np.multiply(raw[whole:], scales[-1], out=out[whole:], dtype=np.float32)
        return out
    return wire.decode(raw, codecs.NO_SCALES, 0)


def first_non_finite(view: memoryview, layout: Layout) -> str | None:
    """Name of the first tensor of a payload holding NaN/Inf, or None when every value is finite."""
    wire = codecs.BY_NAME[layout.codec]
    if wire.blockwise:
        for spec in layout.tensors:
            # Blockwise (and sparse) values are finite by construction; only the scales can be NaN/Inf.
            count = (spec.scales_end - spec.scales_begin) // 4
            if not codecs.all_finite(_array(view, np.float32, layout.header_size + spec.scales_begin, count)):
                return spec.name
        return None

    def first_bad(part: list[tuple[TensorSpec, int, int]]) -> str | None:
        for spec, a, b in part:
            raw = _encoded(view, wire, layout.header_size + spec.begin, a, b)
            if not codecs.encoded_all_finite(wire, raw):
                return spec.name
        return None

    work = [(spec, a, b) for spec in layout.tensors for a, b in blocks(spec.numel, BLOCK_ELEMENTS)]
    # (the parts are consecutive: the first one that found a bad tensor found the first one)
    return next((name for name in in_parts(work, first_bad) if name is not None), None)


# NOTE: a push is checked and folded as the round's last one arrives, while its workers wait
# for the update: the blocks are shared among CLOSE_THREADS threads, as the outer step's are
# (the kernels and numpy release the GIL). On 2 cores, one thread left the other core idle for
# 0.3-0.4 s of a 1.2 s round at 400 MB (`perf record` of the sync bench).
_PARTS = concurrent.futures.ThreadPoolExecutor(max(1, CLOSE_THREADS - 1), thread_name_prefix="fold")


def in_parts(work: list[tuple[TensorSpec, int, int]], run: Callable[[list[tuple[TensorSpec, int, int]]], T]) -> list[T]:
    """``run`` over ``work`` cut into up to CLOSE_THREADS consecutive parts at once (the first on
    this thread); the results in the parts' order. The first error raised is raised here, once
    every part has ended."""
    parts = _split(work, CLOSE_THREADS if len(work) >= 4 * CLOSE_THREADS else 1)
    if len(parts) <= 1:
        return [run(part) for part in parts]
    others = [_PARTS.submit(run, part) for part in parts[1:]]
    try:
        first = run(parts[0])
    finally:
        concurrent.futures.wait(others)
    return [first, *(done.result() for done in others)]


def bad_indices(view: memoryview, layout: Layout) -> str | None:
    """``tensor: what is wrong`` for the first tensor of a sparse payload whose indices lie outside
    their chunks or repeat, None when all are right (and for every other codec)."""
    wire = codecs.BY_NAME[layout.codec]
    if not wire.sparse:
        return None
    for spec in layout.tensors:
        problem = codecs.sparse_check(_sparse_range(view, layout, spec, 0, spec.numel), spec.numel, layout.block_size)
        if problem is not None:
            return f"{spec.name}: {problem}"
    return None


def payload_layout(view: memoryview) -> Layout:
    """The layout an in-memory SafeTensors payload declares (TensorFileError when it is not one)."""
    header_size = tensorfile.split_header(bytes(view[:8]))
    if header_size is None or header_size > len(view):
        raise tensorfile.TensorFileError("the payload is too short for its SafeTensors header")
    return tensorfile.parse_layout(bytes(view[8:header_size]), header_size=header_size, file_size=len(view))


def encode_into(view: memoryview, layout: Layout, spec: TensorSpec, a: int, values: F32) -> None:
    """Encode float32 ``values`` (elements from ``a``, block-aligned) into a payload in memory."""
    wire = codecs.BY_NAME[layout.codec]
    if wire.sparse:
        # NOTE: the server never produces sparse payloads: a sparse run's updates are served as
        # wire.update_codec (new_payload and the pulls map it).
        raise ValueError("the parameter server does not encode sparse payloads")
    tensorfile.put_values(view, layout, spec, a, values)


def fp32_values(view: memoryview, layout: Layout, spec: TensorSpec, a: int, b: int) -> F32:
    """A writable float32 view of values [a, b) of a tensor of an fp32 payload in memory."""
    return _array(view, np.float32, layout.header_size + spec.begin + 4 * a, b - a)


def new_payload(shapes: list[tuple[str, tuple[int, ...]]], codec: str) -> tuple[Layout, bytes]:
    """Layout and header of a payload the server produces in ``codec``'s update codec (sparse:
    int8; int8, int4: blocks of UPDATE_BLOCK_SIZE)."""
    wire = codecs.BY_NAME[codecs.BY_NAME[codec].update_codec]
    return tensorfile.plan_layout(shapes, wire.name, UPDATE_BLOCK_SIZE if wire.blockwise else 0)


def convert(src: memoryview, src_layout: Layout, dst: memoryview, dst_layout: Layout, header: bytes) -> None:
    """Re-encode a payload in memory as another codec (the same tensors, ``dst_layout``)."""
    dst[: len(header)] = header
    by_name = {t.name: t for t in src_layout.tensors}
    step = block_step(src_layout, dst_layout)
    for spec in dst_layout.tensors:
        for a, b in blocks(spec.numel, step):
            encode_into(dst, dst_layout, spec, a, decode(src, src_layout, by_name[spec.name], a, b))


def digest(view: memoryview) -> Digest:
    """The stream digest (the default algorithm, xxh3-128) of a payload the server serves from memory."""
    hasher = new_hash(DEFAULT_DIGEST)
    hasher.update(view)
    return Digest(DEFAULT_DIGEST, hasher.hexdigest())


# -- the accumulator --------------------------------------------------------------------------------------


class Accumulator:
    """Σ float32(wᵢ)·Δᵢ of a round's committed pushes, over θ's fp32 data section.

    ``buffer`` may hold anything (a pooled buffer holds its last use's bytes): the first fold
    writes 0 + float32(w)·Δ over every value (the same bits as adding to zeros), never reading it.
    """

    def __init__(self, theta: Layout, buffer: memoryview) -> None:
        self.layout = theta
        self.values: F32 = np.frombuffer(buffer, dtype=np.float32, count=theta.numel)
        self.empty = True  # no fold has written it yet: its bytes are not a sum
        self.weight = 0.0
        self.workers: list[str] = []
        self.spoiled = False  # changed by a fold or a close that did not finish: cannot be used

    @property
    def nbytes(self) -> int:
        return self.values.nbytes

    def tensor(self, spec: TensorSpec) -> F32:
        return self.values[spec.begin // 4 : spec.end // 4]

    def fold(
        self,
        worker_id: str,
        weight: float,
        payload: memoryview,
        layout: Layout,
        *,
        consumed: Callable[[int, int], None] | None = None,
    ) -> None:
        """acc += float32(weight) · decode(payload), tensor by tensor, block by block.

        ``consumed(start, end)`` is told each byte range of the payload once it is added.
        """
        self.spoiled = True  # until the last block is added
        w = np.float32(weight)
        by_name = {t.name: t for t in layout.tensors}
        step = block_step(layout)
        scratch = np.empty(step, dtype=np.float32)
        wire = codecs.BY_NAME[layout.codec]
        first = self.empty
        if first and wire.sparse:
            self.values.fill(0)  # only the kept values are added below
            first = False
        zero = np.float32(0)
        if wire.sparse:
            for spec in self.layout.tensors:
                source = by_name[spec.name]
                # Only the kept values are added (their positions are unique: bad_indices).
                positions, values, _ = codecs.sparse_parts(
                    _sparse_range(payload, layout, source, 0, spec.numel),
                    _scales(payload, layout, source, wire, 0, spec.numel),
                    layout.block_size,
                )
                self.tensor(spec)[positions] += values * w
                if consumed is not None:
                    consumed(layout.header_size + source.begin, layout.header_size + source.end)
        else:

            def run(part: list[tuple[TensorSpec, int, int]]) -> None:
                product = scratch if len(part) == len(work) else np.empty(step, dtype=np.float32)
                for spec, a, b in part:
                    acc = self.tensor(spec)
                    source = by_name[spec.name]
                    start = layout.header_size + source.begin
                    values = decode(payload, layout, source, a, b)
                    # (the first fold: 0 + w·Δ, exactly what adding it to zeros gives, -0.0 included)
                    if KERNELS is not None:
                        # (a payload whose tensors start off float32's alignment: copied, see codecs.for_kernel)
                        KERNELS.fold(acc[a:b], codecs.for_kernel(values, np.float32), float(w), first)
                    else:
                        np.multiply(values, w, out=product[: b - a])
                        np.add(zero if first else acc[a:b], product[: b - a], out=acc[a:b])
                    if consumed is not None:
                        consumed(start + wire.nbytes(a), start + wire.nbytes(b))

            work = [(spec, a, b) for spec in self.layout.tensors for a, b in blocks(spec.numel, step)]
            in_parts(work, run)
        self.weight += float(weight)
        self.workers.append(worker_id)
        self.empty = False
        self.spoiled = False


# -- closing a round ------------------------------------------------------------------------------------------


class _Reader:
    """Blocks of an fp32 file (θ or momentum) read with pread into one scratch buffer."""

    def __init__(self, path: Path) -> None:
        self.layout = tensorfile.read_layout(path)
        if self.layout.codec != "fp32":
            raise tensorfile.TensorFileError(f"{path} is not an fp32 payload")
        self.specs = {t.name: t for t in self.layout.tensors}
        self.fd = os.open(path, os.O_RDONLY)
        self.scratch = np.empty(0, dtype=np.float32)

    def read(self, name: str, a: int, b: int) -> F32:
        if self.scratch.size < b - a:
            self.scratch = np.empty(b - a, dtype=np.float32)
        out = self.scratch[: b - a]
        tensorfile.pread_into(
            self.fd, memoryview(out).cast("B"), self.layout.header_size + self.specs[name].begin + 4 * a
        )
        return out

    def close(self) -> None:
        os.close(self.fd)


def close_round(
    *,
    acc: Accumulator,
    theta: Path,
    momentum: Path | None,
    lr: float,
    mu: float,
    update: memoryview,
    update_layout: Layout,
    update_header: bytes,
) -> None:
    """The outer step: the update u (encoded as ``update_layout``) into ``update``; acc becomes the buffer.

    Raises before changing ``acc`` when θ or the momentum file cannot be opened; a failure
    after that leaves ``acc.spoiled`` set (the round's pushes are lost).
    """
    if not acc.workers:
        raise ValueError("a round cannot close without contributions")
    weight = np.float32(acc.weight)
    direct = update_layout.codec == "fp32"
    step = block_step(update_layout)
    out_specs = {t.name: t for t in update_layout.tensors}
    work = [(spec, a, b) for spec in acc.layout.tensors for a, b in blocks(spec.numel, step)]
    parts = _split(work, CLOSE_THREADS if len(work) >= 4 * CLOSE_THREADS else 1)
    readers: list[tuple[_Reader, _Reader | None]] = []
    try:
        for _ in parts:
            theta_reader = _Reader(theta)
            readers.append((theta_reader, None))
            if momentum is not None:
                readers[-1] = (theta_reader, _Reader(momentum))

        def run(
            part: list[tuple[TensorSpec, int, int]], theta_reader: _Reader, momentum_reader: _Reader | None
        ) -> None:
            scratch = Scratch(step)
            for spec, a, b in part:
                buf = momentum_reader.read(spec.name, a, b) if momentum_reader is not None else None
                out = out_specs[spec.name]
                # fp32: u goes straight into the served payload; other codecs encode it from scratch.
                u = fp32_values(update, update_layout, out, a, b) if direct else scratch.update[: b - a]
                theta_block = theta_reader.read(spec.name, a, b)
                step_in_place(theta_block, buf, acc.tensor(spec)[a:b], u, weight=weight, lr=lr, mu=mu, scratch=scratch)
                if not direct:
                    encode_into(update, update_layout, out, a, u)

        update[: len(update_header)] = update_header
        acc.spoiled = True  # until the last block is done
        if len(parts) == 1:
            run(parts[0], *readers[0])
        else:
            # NOTE: nothing else runs while a round closes (its workers wait for the update): the
            # outer step takes every core (numpy releases the GIL in each block's passes).
            with concurrent.futures.ThreadPoolExecutor(len(parts), thread_name_prefix="outer-step") as pool:
                for done in [pool.submit(run, part, *pair) for part, pair in zip(parts, readers, strict=True)]:
                    done.result()
        acc.spoiled = False
    finally:
        for theta_reader, momentum_reader in readers:
            theta_reader.close()
            if momentum_reader is not None:
                momentum_reader.close()


def _split(work: list[tuple[TensorSpec, int, int]], count: int) -> list[list[tuple[TensorSpec, int, int]]]:
    """``work`` cut into ``count`` consecutive parts of about as many values each."""
    total = sum(b - a for _, a, b in work)
    parts: list[list[tuple[TensorSpec, int, int]]] = [[] for _ in range(count)]
    done = 0
    for item in work:
        parts[min(count - 1, done * count // max(total, 1))].append(item)
        done += item[2] - item[1]
    return [part for part in parts if part]


def write_checkpoint(
    acc: Accumulator,
    *,
    theta: Path,
    update: memoryview,
    update_layout: Layout,
    out_theta: Path,
    out_momentum: Path,
) -> Digest:
    """θ' = θ + decode(u) and the momentum buffer (acc after :func:`close_round`), atomically each.

    Returns the digest of the θ' file (hashed as it is written). θ' is exactly what a worker
    holds after applying the served update: the same decode, one float32 add.
    """
    shapes = [(t.name, t.shape) for t in acc.layout.tensors]
    layout, header = tensorfile.plan_layout(shapes, "fp32")
    update_specs = {t.name: t for t in update_layout.tensors}
    step = block_step(update_layout)
    theta_reader = _Reader(theta)
    hasher = new_hash(DEFAULT_DIGEST)
    hasher.update(header)
    try:
        with tensorfile.atomic_output(out_theta) as tmp_theta, tensorfile.atomic_output(out_momentum) as tmp_momentum:
            fd = tensorfile.create_payload(tmp_theta, layout, header)
            try:
                new = np.empty(step, dtype=np.float32)
                for spec, out in zip(acc.layout.tensors, layout.tensors, strict=True):
                    for a, b in blocks(spec.numel, step):
                        values = new[: b - a]
                        u = decode(update, update_layout, update_specs[spec.name], a, b)
                        np.add(theta_reader.read(spec.name, a, b), u, out=values)
                        tensorfile.pwrite_all(fd, values.data, layout.header_size + out.begin + 4 * a)
                        hasher.update(values.data)
                os.fsync(fd)
            finally:
                os.close(fd)
            fd = tensorfile.create_payload(tmp_momentum, layout, header)
            try:
                tensorfile.pwrite_all(fd, memoryview(acc.values).cast("B"), layout.header_size)
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        theta_reader.close()
    return Digest(DEFAULT_DIGEST, hasher.hexdigest())


def write_fp32(path: Path, payload: memoryview, layout: Layout) -> Layout:
    """Store an in-memory payload of any codec as an fp32 SafeTensors file (atomically)."""
    out_layout, header = tensorfile.plan_layout(tensorfile.float_shapes(layout), "fp32")
    with tensorfile.atomic_output(path) as tmp:
        fd = tensorfile.create_payload(tmp, out_layout, header)
        try:
            if layout.codec == "fp32" and layout.data_size == out_layout.data_size:
                # The same tensors in the same order: the data section as it is.
                data = payload[layout.header_size :]
                tensorfile.pwrite_all(fd, data, out_layout.header_size)
            else:
                by_name = {t.name: t for t in layout.tensors}
                for spec in out_layout.tensors:
                    for a, b in blocks(spec.numel, block_step(layout)):
                        values = decode(payload, layout, by_name[spec.name], a, b)
                        tensorfile.pwrite_all(fd, values.data, out_layout.header_size + spec.begin + 4 * a)
            os.fsync(fd)
        finally:
            os.close(fd)
    return out_layout
