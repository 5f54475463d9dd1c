"""A model's tokenizer: fetched through the job bridge like its checkpoint, loaded with transformers.

A tokenizer URI names an archive (.tar, .tar.gz, .tgz, .zip, e.g. the ``model.tar`` that
``tendril data add-model`` packs with the tokenizer files beside the weights), fetched as one
file and unpacked safely, or a folder written by ``save_pretrained``, whose tokenizer files
(:data:`TOKENIZER_FILES`, those it has) are fetched one by one. It is loaded with
``AutoTokenizer.from_pretrained`` from the local folder only; tokenizer code shipped with it runs
only when remote code is trusted (as for the model).
"""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from tendril_models.archive import checkpoint_root, is_archive, unpack
from tendril_models.errors import ModelError, ModelReason

if TYPE_CHECKING:
    from tendril_sdk import BridgeClient

__all__ = ["TOKENIZER_DIR", "TOKENIZER_FILES", "fetch_tokenizer", "has_tokenizer", "load_tokenizer"]

TOKENIZER_DIR = "tokenizer"  # under the job's artifacts/: a tokenizer fetched apart from its model
# What save_pretrained writes for the tokenizers transformers ships (fast and slow ones).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)
# The files of which at least one must be there: the vocabulary itself.
_VOCABULARY = (
    "tokenizer.json",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)


def has_tokenizer(folder: Path) -> bool:
    """Whether ``folder`` holds a tokenizer's vocabulary (a file of :data:`TOKENIZER_FILES` that is one)."""
    return any((folder / name).is_file() for name in _VOCABULARY)


async def _fetch_optional(bridge: BridgeClient, uri: str, dest: str) -> Path | None:
    from tendril_sdk import BridgeError

    try:
        return (await bridge.fetch_resource(uri, dest=dest)).path
    except BridgeError as exc:
        if exc.code.name == "NOT_FOUND":
            return None
        raise ModelError(
            f"tokenizer {uri} cannot be fetched: {exc.message}", reason=ModelReason.SOURCE_UNAVAILABLE
        ) from exc


async def fetch_tokenizer(bridge: BridgeClient, uri: str, *, sha256: str = "") -> Path:
    """The local folder of the tokenizer at ``uri`` (under ``artifacts/tokenizer``); ModelError when it has none."""
    folder = bridge.work_dir / "artifacts" / TOKENIZER_DIR
    shutil.rmtree(folder, ignore_errors=True)
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(uri).path)).name
    if is_archive(name):
        from tendril_sdk import BridgeError

        try:
            fetched = await bridge.fetch_resource(uri, dest=f"{TOKENIZER_DIR}.download/{name}", sha256=sha256)
        except BridgeError as exc:
            missing = exc.code.name == "NOT_FOUND"
            reason = ModelReason.TOKENIZER_NOT_FOUND if missing else ModelReason.SOURCE_UNAVAILABLE
            raise ModelError(f"tokenizer {uri} cannot be fetched: {exc.message}", reason=reason) from exc
        try:
            root = unpack(fetched.path, folder)
        finally:
            shutil.rmtree(fetched.path.parent, ignore_errors=True)
    else:
        base = uri.rstrip("/")
        for file in TOKENIZER_FILES:
            await _fetch_optional(bridge, f"{base}/{urllib.parse.quote(file)}", f"{TOKENIZER_DIR}/{file}")
        root = checkpoint_root(folder) if folder.is_dir() else folder
    if not has_tokenizer(root):
        raise ModelError(
            f"tokenizer {uri} has no tokenizer files ({', '.join(_VOCABULARY)}); save one with "
            "tokenizer.save_pretrained(dir) and give that folder (or an archive of it)",
            reason=ModelReason.TOKENIZER_NOT_FOUND,
        )
    return root


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False, where: str = "") -> Any:
    """``AutoTokenizer.from_pretrained(folder)``, local files only; ModelError saying what is wrong."""
    from transformers import AutoTokenizer

    where = where or str(folder)
    if not has_tokenizer(folder):
        raise ModelError(
            f"{where} has no tokenizer files ({', '.join(_VOCABULARY)}); save the tokenizer beside the model "
            "with tokenizer.save_pretrained(dir), or give the tokenizer's own URI",
            reason=ModelReason.TOKENIZER_NOT_FOUND,
        )
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ModelError(
            f"the tokenizer of {where} cannot be loaded: {str(exc)[:500]}", reason=ModelReason.BAD_TOKENIZER
        ) from exc
