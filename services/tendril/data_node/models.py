"""``tendril data add-model``: a checkpoint folder packed into a prepared data set as an asset.

The folder is what ``save_pretrained`` writes: ``config.json``, SafeTensors weights
(``model.safetensors``, or ``model.safetensors.index.json`` and its shards), and whatever else
lies beside them (generation config, tokenizer files, model code). It becomes one tar
(``model.tar`` by default, fixed metadata: the same files give the same bytes) listed in the
manifest's ``assets`` with ``kind: "model"`` and its sha256, so the data node serves it by name
and a job fetches it as ``tendril-data://<dataset_id>/model.tar``.

Pickle weights (``pytorch_model.bin``, ``*.pt``, ``*.ckpt``, ...) are never packed: loading
them can run code. A folder that has only those is refused with the way out
(``save_pretrained`` writes ``model.safetensors``). Hidden files are left out.

The manifest is rewritten atomically (a temporary file renamed over it); a data node already
serving the folder reads the new asset when it is started again.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tarfile
from pathlib import Path

from tendril.core.errors import ErrorKind
from tendril.core.files import file_sha256
from tendril.data_node.errors import DataNodeError, DatasetReason
from tendril.data_node.manifest import FORMAT, MANIFEST_NAME, AssetEntry, is_valid_name, load_manifest

MODEL_ASSET = "model.tar"
MODEL_KIND = "model"
CONFIG_NAME = "config.json"
SAFETENSORS_SUFFIX = ".safetensors"
# Weights saved with pickle (torch.save): never packed, never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _error(kind: ErrorKind, message: str, reason: DatasetReason) -> DataNodeError:
    return DataNodeError(kind, message, reason=reason)


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The files of ``model_dir`` that go into the tar (sorted); DataNodeError when it is no usable checkpoint."""
    if not model_dir.is_dir():
        raise _error(
            ErrorKind.NOT_FOUND,
            f"{model_dir} is not a folder; give the folder a model was saved to with save_pretrained(dir)",
            DatasetReason.MODEL_NOT_FOUND,
        )
    files, pickles = [], []
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.name.lower().endswith(PICKLE_SUFFIXES):
            pickles.append(relative.as_posix())
            continue
        files.append(path)
    names = {p.relative_to(model_dir).as_posix() for p in files}
    if CONFIG_NAME not in names:
        raise _error(
            ErrorKind.INVALID_ARGUMENT,
            f"{model_dir} has no {CONFIG_NAME}; give the folder a model was saved to with save_pretrained(dir)",
            DatasetReason.BAD_MODEL,
        )
    try:
        config = json.loads((model_dir / CONFIG_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise _error(
            ErrorKind.INVALID_ARGUMENT, f"{model_dir / CONFIG_NAME} is not JSON: {exc}", DatasetReason.BAD_MODEL
        ) from exc
    if not isinstance(config, dict):
        raise _error(
            ErrorKind.INVALID_ARGUMENT, f"{model_dir / CONFIG_NAME} is not a JSON object", DatasetReason.BAD_MODEL
        )
    if not any(name.endswith(SAFETENSORS_SUFFIX) for name in names):
        if pickles:
            raise _error(
                ErrorKind.INVALID_ARGUMENT,
                f"{model_dir} holds pickle weights only ({', '.join(pickles[:5])}); Tendril ships SafeTensors "
                "weights only (loading pickle can run code): load the model once where you trust the file and save "
                "it with save_pretrained(dir), which writes model.safetensors, then add that folder",
                DatasetReason.PICKLE_ONLY_MODEL,
            )
        raise _error(
            ErrorKind.INVALID_ARGUMENT,
            f"{model_dir} has no SafeTensors weights (model.safetensors, or model.safetensors.index.json and its "
            "shards); save the model with save_pretrained(dir)",
            DatasetReason.BAD_MODEL,
        )
    return files


def pack_checkpoint(model_dir: Path, target: Path) -> list[str]:
    """Write ``model_dir``'s checkpoint files as a tar at ``target`` (streamed, fixed metadata); their names."""
    files = checkpoint_files(model_dir)
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(model_dir).as_posix())
            # NOTE: a symbolic link (a Hugging Face cache snapshot is made of them) is packed as
            # the file it points to; the archive itself holds plain files only.
            with path.open("rb") as data:
                info.size, info.mode, info.mtime = os.fstat(data.fileno()).st_size, 0o644, 0
                tar.addfile(info, data)
    return [p.relative_to(model_dir).as_posix() for p in files]


def add_model(dataset_dir: Path, model_dir: Path, *, name: str = MODEL_ASSET, force: bool = False) -> AssetEntry:
    """Pack ``model_dir`` into ``dataset_dir`` as asset ``name`` (kind "model") and list it in the manifest."""
    manifest = load_manifest(dataset_dir)
    if not is_valid_name(name) or not name.endswith(".tar") or name == MANIFEST_NAME:
        raise _error(
            ErrorKind.INVALID_ARGUMENT,
            f"--name {name!r} must be a plain file name ending in .tar (letters, digits, '.', '_', '-')",
            DatasetReason.BAD_MODEL,
        )
    if manifest.format != FORMAT:
        raise _error(
            ErrorKind.FAILED_PRECONDITION,
            f"{dataset_dir} is a {manifest.format} data set, which carries no assets; prepare it again with "
            "`tendril data prepare`",
            DatasetReason.BAD_MANIFEST,
        )
    taken = next((f for f in manifest.files if f.name == name), None)
    if taken is not None and not (force and isinstance(taken, AssetEntry) and taken.kind == MODEL_KIND):
        what = "model asset" if isinstance(taken, AssetEntry) and taken.kind == MODEL_KIND else "file"
        raise _error(
            ErrorKind.ALREADY_EXISTS,
            f"the data set already has a {what} named {name}; "
            + ("add --force to replace it" if what == "model asset" else "choose another --name"),
            DatasetReason.MODEL_EXISTS,
        )
    tmp = dataset_dir / f".{name}.tmp-{secrets.token_hex(4)}"
    manifest_tmp = dataset_dir / f".{MANIFEST_NAME}.tmp-{secrets.token_hex(4)}"
    try:
        pack_checkpoint(model_dir, tmp)
        entry = AssetEntry(name, tmp.stat().st_size, file_sha256(tmp), MODEL_KIND)
        # NOTE: the manifest is edited as JSON, not rewritten from the parsed form, so that keys
        # this version does not know survive.
        raw = json.loads((dataset_dir / MANIFEST_NAME).read_text())
        assets = [a for a in raw.get("assets", []) if not (isinstance(a, dict) and a.get("name") == name)]
        raw["assets"] = [
            *assets,
            {"name": entry.name, "size_bytes": entry.size_bytes, "sha256": entry.sha256, "kind": entry.kind},
        ]
        manifest_tmp.write_text(json.dumps(raw, indent=2) + "\n")
        os.replace(tmp, dataset_dir / name)
        os.replace(manifest_tmp, dataset_dir / MANIFEST_NAME)
    finally:
        for leftover in (tmp, manifest_tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return entry
