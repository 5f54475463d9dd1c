"""θ as named fp32 CPU tensors: snapshots, the pseudo-gradient Δ, applying the outer update.

Names are the model's ``named_parameters()`` — tied weights (GPT-2's lm_head and wte) appear
once, so the SafeTensors files never hold a shared tensor twice. θ is the parameters that
train (:func:`tendril_models.finetune.trainable_parameters`): every one of a model trained
whole, only the adapter's of a LoRA fine-tune, whose frozen base never travels.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import mmap
import os
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import xxhash
from safetensors.torch import load_file, save_file

from tendril_diloco.errors import ExecutorError, ExecutorReason
from tendril_models.finetune import trainable_parameters
from tendril_sdk.files import Reusable, memory_backed

Params = dict[str, torch.Tensor]


def snapshot(model: torch.nn.Module) -> Params:
    """A detached fp32 CPU copy of every trainable parameter."""
    return {name: p.detach().to("cpu", torch.float32).clone() for name, p in trainable_parameters(model).items()}


def compute_delta(start: Params, current: Params) -> Params:
    """Δ = θ_round_start − θ_local (the pseudo-gradient the parameter server averages)."""
    _same_names(start, current, "the round-start parameters", "the local parameters")
    return {name: (start[name] - current[name]).contiguous() for name in start}


def apply_update(start: Params, update: Params, *, in_place: bool = False) -> Params:
    """θ_new = θ_round_start + u (u is the parameter server's outer update).

    ``in_place``: add u into ``start``'s own tensors and return them (for a caller that drops
    θ_round_start for θ_new, as the trainer does each round). Every shape is checked before the
    first tensor changes, so a bad update leaves ``start`` as it was.
    """
    _same_names(start, update, "the model", "the outer update")
    for name, value in start.items():
        u = update[name]
        if u.shape != value.shape:
            raise ExecutorError(
                f"outer update tensor {name} has shape {tuple(u.shape)}, the model has {tuple(value.shape)}",
                reason=ExecutorReason.UPDATE_SHAPE,
            )
    # NOTE: in place saves a model-sized allocation a round, and its page faults: 0.18 s of θ + u at
    # 400 MB in `python -m bench --only sync` went to a new tensor per round.
    if in_place:
        return {name: _add_into(value, update[name].to(torch.float32)) for name, value in start.items()}
    return {name: value + update[name].to(torch.float32) for name, value in start.items()}


def _add_into(value: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """value += u, one float32 add per element (the same bits as ``value.add_(u)``).

    # NOTE: on the CPU with numpy, not torch: torch's add runs on its OpenMP pool, whose threads
    # then spin-wait for more work (libgomp's default) while the bridge, the other workers and a
    # parameter server on the same cores finish the round. In `python -m bench --only sync` at
    # 40 MB those spinning threads were 10 % of the CPU samples of the timed rounds. The update
    # is applied once a round; one thread adds 400 MB in 0.05-0.08 s.
    """
    if value.device.type != "cpu" or u.device.type != "cpu" or value.dtype != torch.float32 or value.requires_grad:
        return value.add_(u)
    target = value.detach().numpy()
    np.add(target, u.detach().contiguous().numpy().reshape(target.shape), out=target)
    return value


def load_into(model: torch.nn.Module, params: Params) -> None:
    """Copy θ into the model's parameters in place (the optimizer keeps its state)."""
    current = trainable_parameters(model)
    _same_names(params, current, "the parameter file", "the model")
    with torch.no_grad():
        for name, p in current.items():
            value = params[name]
            if value.shape != p.shape:
                raise ExecutorError(
                    f"parameter {name} has shape {tuple(value.shape)}, the model has {tuple(p.shape)}",
                    reason=ExecutorReason.PARAM_SHAPE,
                )
            p.copy_(value.to(p.device, p.dtype))


def save_params(params: Params, path: Path) -> None:
    """Write fp32 SafeTensors atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in params.items()}, str(tmp))
    os.replace(tmp, path)


# NOTE: a SafeTensors file starts with the byte count of its JSON header, little-endian
# (https://github.com/huggingface/safetensors#format).
_HEADER_LENGTH_BYTES = 8
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit on a header


class HandOff:
    """Δ files for the bridge to push, written in place into files kept from earlier rounds.

    Each Δ goes into the next free file of ``folder`` (:class:`tendril_sdk.Reusable`: none that
    another name still links, such as the copy the bridge keeps of an update it sent, for a
    resend), as SafeTensors from ``save_file`` the first time and with the same header after
    that (only the tensors' bytes are written again), and is then hard-linked at the path
    asked for, atomically: a reader of that path never sees half a file. Where the work dir is
    not held in memory (see :mod:`tendril_sdk.files`: on a disk the kept files' pages would be
    written back every round), when no kept file is free, or when the tensors' names or shapes
    changed, Δ is a new file as :func:`save_params` writes it.
    """

    def __init__(self, folder: Path, stem: str = "delta") -> None:
        self.files = Reusable(folder, stem)

    def write(self, params: Params, path: Path) -> str:
        """Write ``params`` (fp32) and link the file at ``path`` (replacing what is there); returns
        the file's digest (``xxh3-128:<hex>``, for SendUpdate's ``digest``) when it was written in
        place, where it is hashed piece by piece right after each piece is written, "" otherwise."""
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = self.files.take()
        if kept is None:
            save_params(params, path)
            return ""
        kept.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in params.items()}
        digest = _rewrite(kept, tensors, self.files)
        if digest is None:
            save_params(tensors, kept)
            self.files.fill_from(kept)
            digest = ""
        link = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.link")
        os.link(kept, link)
        try:
            os.replace(link, path)
        except BaseException:
            link.unlink(missing_ok=True)
            raise
        return digest


# Bytes written, then hashed while they are still in the cache.
_PIECE_BYTES = 1 << 20


def _rewrite(slot: Path, tensors: Mapping[str, torch.Tensor], files: Reusable | None = None) -> str | None:
    """Write ``tensors`` into ``slot`` in place when it holds exactly their layout (names,
    fp32, shapes) and no other name links it; None when it cannot be (nothing was written).
    With ``files`` (whose kept file ``slot`` is), through the mapping it keeps of it, and the
    file's digest is returned (``xxh3-128:<hex>``; "" without ``files``)."""
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors.values()):
        return None
    try:
        fd = os.open(slot, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if info.st_nlink != 1:
            return None
        head = os.pread(fd, _HEADER_LENGTH_BYTES, 0)
        if len(head) != _HEADER_LENGTH_BYTES:
            return None
        length = int.from_bytes(head, "little")
        if length > _MAX_HEADER_BYTES:
            return None
        try:
            header = json.loads(os.pread(fd, length, _HEADER_LENGTH_BYTES))
        except ValueError:
            return None
        header.pop("__metadata__", None)
        if not isinstance(header, dict) or header.keys() != tensors.keys():
            return None
        base = _HEADER_LENGTH_BYTES + length
        places = []
        end = base
        for name, tensor in tensors.items():
            entry = header[name]
            if not isinstance(entry, dict) or entry.get("dtype") != "F32" or entry.get("shape") != list(tensor.shape):
                return None
            a, b = entry["data_offsets"]
            if b - a != tensor.numel() * 4:
                return None
            places.append((base + a, tensor))
            end = max(end, base + b)
        if info.st_size != end:
            return None
        if files is None:
            for offset, tensor in places:
                _pwrite_all(fd, memoryview(tensor.reshape(-1).numpy()).cast("B"), offset)
            return ""
        mapped = files.mapping(slot, end)
        hasher = xxhash.xxh3_128(mapped[:base])
        at = base
        for offset, tensor in sorted(places, key=lambda place: place[0]):
            data = memoryview(tensor.reshape(-1).numpy()).cast("B")
            if offset != at:  # (a gap in the data: hash the file as it is once written)
                hasher = None
            for a in range(0, len(data), _PIECE_BYTES):
                piece = data[a : a + _PIECE_BYTES]
                mapped[offset + a : offset + a + len(piece)] = piece
                if hasher is not None:
                    hasher.update(piece)
            at = offset + len(data)
        if hasher is None or at != end:
            hasher = xxhash.xxh3_128(memoryview(mapped)[:end])
        return f"xxh3-128:{hasher.hexdigest()}"
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class Updates:
    """Updates read through mappings kept from round to round (by file), where they are held in memory.

    # NOTE: a bridge that receives with ``reuse_files`` links one of the same two kept files at
    # every round's path (tendril_sdk.files.Reusable). safetensors maps a file afresh for every
    # load, and reading 400 MB through a new mapping of a tmpfs file (4 KiB pages) took 0.07-0.08 s
    # of θ + u in the sync bench against 0.03-0.04 s from a file on ext4 (large folios); a mapping
    # kept from the round before is read at memory speed. The tensors are views of the file:
    # they must be let go of before the bridge is asked for a later update (as with any mapping
    # of a reused file, see ReceiveUpdate's ``reuse_files``). Elsewhere (a disk, a file of its
    # own rather than a link of a kept one, another dtype than fp32, a header that does not
    # check out) :func:`load_params` reads the file.
    """

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self._maps: collections.OrderedDict[tuple[int, int, int], mmap.mmap] = collections.OrderedDict()
        self._memory: dict[Path, bool] = {}

    def load(self, path: Path) -> Params:
        folder = path.parent
        if folder not in self._memory:
            self._memory[folder] = memory_backed(folder)
        if not self._memory[folder]:
            return load_params(path)
        try:
            info = os.stat(path)
            if info.st_nlink < 2:  # (not a link of a kept file: a new file, read once)
                return load_params(path)
            mapping = self._mapping(path, (info.st_dev, info.st_ino, info.st_size))
            tensors = _mapped_tensors(mapping)
        except (OSError, ValueError):
            tensors = None
        return load_params(path) if tensors is None else tensors

    def _mapping(self, path: Path, key: tuple[int, int, int]) -> mmap.mmap:
        mapping = self._maps.get(key)
        if mapping is not None:
            self._maps.move_to_end(key)
            return mapping
        fd = os.open(path, os.O_RDONLY)
        try:
            mapping = mmap.mmap(
                fd, key[2], flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), prot=mmap.PROT_READ
            )
        finally:
            os.close(fd)
        self._maps[key] = mapping
        while len(self._maps) > self.count:
            _, old = self._maps.popitem(last=False)
            with contextlib.suppress(BufferError):  # (tensors still held keep it until they go)
                old.close()
        return mapping

    def close(self) -> None:
        while self._maps:
            _, old = self._maps.popitem()
            with contextlib.suppress(BufferError):
                old.close()


def _mapped_tensors(mapping: mmap.mmap) -> Params | None:
    """The fp32 tensors of a SafeTensors file as views of ``mapping``; None when it holds any other
    dtype or its header does not check out."""
    size = len(mapping)
    if size < _HEADER_LENGTH_BYTES:
        return None
    length = int.from_bytes(mapping[:_HEADER_LENGTH_BYTES], "little")
    if length > min(_MAX_HEADER_BYTES, size - _HEADER_LENGTH_BYTES):
        return None
    header = json.loads(mapping[_HEADER_LENGTH_BYTES : _HEADER_LENGTH_BYTES + length])
    if not isinstance(header, dict):
        return None
    header.pop("__metadata__", None)
    base = _HEADER_LENGTH_BYTES + length
    out: Params = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (a read-only buffer: the tensors are only read)
        for name, entry in header.items():
            if not isinstance(entry, dict) or entry.get("dtype") != "F32":
                return None
            shape, (a, b) = entry.get("shape"), entry.get("data_offsets", (0, -1))
            count = math.prod(shape) if isinstance(shape, list) else -1
            if count < 0 or b - a != 4 * count or a < 0 or base + b > size or (base + a) % 4:
                return None
            flat = torch.frombuffer(mapping, dtype=torch.float32, count=count, offset=base + a) if count else None
            out[name] = flat.reshape(shape) if flat is not None else torch.zeros(shape, dtype=torch.float32)
    return out


def load_params(path: Path) -> Params:
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError, not an OSError
        raise ExecutorError(f"cannot read tensors from {path}: {exc}", reason=ExecutorReason.BAD_TENSOR_FILE) from exc
    return {k: v.to(torch.float32) for k, v in tensors.items()}


def _same_names(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], a_name: str, b_name: str) -> None:
    if a.keys() != b.keys():
        missing = sorted(set(a) - set(b))[:3]
        extra = sorted(set(b) - set(a))[:3]
        raise ExecutorError(
            f"{a_name} and {b_name} name different tensors (only in the first: {missing}, only in the second: {extra})",
            reason=ExecutorReason.TENSOR_NAMES,
        )
