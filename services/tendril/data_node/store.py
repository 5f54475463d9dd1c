"""The data node's core (no gRPC): one prepared data set on disk, served read-only.

It serves every file the manifest lists by name: training slices, held-out (``eval-*``)
slices and assets (``tokenizer.tar`` / ``processor.tar``). Requests name files; a name is only
ever looked up in the manifest, never joined onto a path
as given, so ``../`` and absolute paths cannot reach outside the data set folder.
Chunks are cut from a memoryview of an mmap of the slice file (no read buffers in between).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path

from tendril.core.errors import ErrorKind
from tendril.core.files import file_sha256
from tendril.data_node.errors import DataNodeError, DataNodeReason, DatasetReason
from tendril.data_node.manifest import AssetEntry, DatasetManifest, SliceEntry, is_valid_name, load_manifest

FileEntry = SliceEntry | AssetEntry


class SliceStore:
    """A prepared data set folder; checks every file of the manifest when opened."""

    def __init__(self, folder: Path, *, dataset_id: str | None = None, verify: bool = False) -> None:
        self.folder = folder
        self.manifest: DatasetManifest = load_manifest(folder)
        if dataset_id is not None and not is_valid_name(dataset_id):
            raise DataNodeError(
                ErrorKind.INVALID_ARGUMENT,
                f"--dataset-id {dataset_id!r} is not a plain name (letters, digits, '.', '_', '-')",
                reason=DatasetReason.BAD_DATASET_ID,
            )
        # NOTE: --dataset-id lets one prepared folder be served under another id; the manifest
        # handed out then carries that id, so clients see one consistent name.
        self.dataset_id = dataset_id or self.manifest.dataset_id
        for entry in self.manifest.files:
            self._check_file(entry, verify=verify)

    def _check_file(self, entry: FileEntry, *, verify: bool) -> None:
        path = self.folder / entry.name
        if not path.is_file():
            raise DataNodeError(
                ErrorKind.FAILED_PRECONDITION,
                f"{path} is listed in the manifest but missing; prepare the data set again",
                reason=DatasetReason.SLICE_FILE_MISSING,
            )
        size = path.stat().st_size
        if size != entry.size_bytes:
            raise DataNodeError(
                ErrorKind.FAILED_PRECONDITION,
                f"{path} has {size} bytes, the manifest says {entry.size_bytes}; prepare the data set again",
                reason=DatasetReason.SLICE_FILE_DAMAGED,
            )
        if verify and file_sha256(path) != entry.sha256:
            raise DataNodeError(
                ErrorKind.FAILED_PRECONDITION,
                f"{path} does not match its sha256 in the manifest; prepare the data set again",
                reason=DatasetReason.SLICE_FILE_DAMAGED,
            )

    def check_dataset(self, dataset_id: str) -> None:
        """An empty id means "the one you serve"; any other must be ours."""
        if dataset_id and dataset_id != self.dataset_id:
            raise DataNodeError(
                ErrorKind.NOT_FOUND,
                f"this data node serves data set {self.dataset_id!r}, not {dataset_id!r}; "
                "look the data set up in the gateway registry (kind 'dataset') to find its node",
                reason=DataNodeReason.DATASET_NOT_FOUND,
                metadata={"served": self.dataset_id, "requested": dataset_id},
            )

    def resolve(self, dataset_id: str, name: str, offset: int) -> FileEntry:
        """The manifest entry (slice, held-out slice or asset) for a FetchSlice request, or the error that fits it."""
        self.check_dataset(dataset_id)
        if not name:
            raise DataNodeError(
                ErrorKind.INVALID_ARGUMENT,
                "slice_name is required, e.g. 'slice-00000.safetensors'",
                reason=DataNodeReason.NO_SLICE,
            )
        if not is_valid_name(name):
            raise DataNodeError(
                ErrorKind.INVALID_ARGUMENT,
                f"slice_name {name!r} is not a plain file name; use a name from GetManifest",
                reason=DataNodeReason.BAD_SLICE_NAME,
            )
        entry = self.manifest.file(name)
        if entry is None:
            m = self.manifest
            raise DataNodeError(
                ErrorKind.NOT_FOUND,
                f"data set {self.dataset_id!r} has no slice or asset {name!r}; GetManifest lists its "
                f"{len(m.slices)} slices, {len(m.eval_slices)} eval slices and {len(m.assets)} assets",
                reason=DataNodeReason.SLICE_NOT_FOUND,
            )
        if offset > entry.size_bytes:
            raise DataNodeError(
                ErrorKind.OUT_OF_RANGE,
                f"offset {offset} is past the end of {name} ({entry.size_bytes} bytes); resume from an offset "
                "no larger than the file size",
                reason=DataNodeReason.OFFSET_OUT_OF_RANGE,
                metadata={"size_bytes": str(entry.size_bytes)},
            )
        return entry

    def chunks(self, entry: FileEntry, offset: int, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
        """(offset, bytes) chunks of a slice from ``offset`` to its end."""
        with (
            open(self.folder / entry.name, "rb") as f,
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm,
            memoryview(mm) as view,
        ):
            # NOTE: chunks are cut on the event loop (a worker-thread hop per chunk halved the
            # throughput here); asking the kernel to read the rest ahead keeps page faults from
            # stalling the loop when the file is not in the page cache yet.
            page = offset - offset % mmap.PAGESIZE
            if page < len(mm):
                mm.madvise(mmap.MADV_SEQUENTIAL)
                mm.madvise(mmap.MADV_WILLNEED, page, len(mm) - page)
            for start in range(offset, len(view), chunk_bytes):
                # NOTE: protobuf bytes fields refuse memoryviews, so each chunk is copied once here.
                yield start, bytes(view[start : start + chunk_bytes])
