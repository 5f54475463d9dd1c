"""Fetching a model's ``source`` checkpoint through the job bridge (FetchResource) into the work dir.

An archive URI (.tar, .tar.gz, .tgz, .zip) is fetched as one file (its ``sha256`` checked by
the bridge) and unpacked safely. Any other URI names a checkpoint folder written by
``save_pretrained``; its files are fetched one by one: ``config.json``, then
``model.safetensors`` (``sha256`` checked against it when given) or
``model.safetensors.index.json`` and the shards it lists, ``generation_config.json`` when there
is one, and the model code ``config.json``'s ``auto_map`` names when remote code is trusted.
Pickle weights are never fetched.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from tendril_models.archive import checkpoint_root, is_archive, unpack
from tendril_models.errors import ModelError, ModelReason
from tendril_models.spec import ModelSpec

if TYPE_CHECKING:
    from tendril_sdk import BridgeClient

__all__ = ["CHECKPOINT_DIR", "fetch_checkpoint"]

CHECKPOINT_DIR = "checkpoint"  # under the job's artifacts/: the fetched (and unpacked) checkpoint
OPTIONAL_FILES = ("generation_config.json",)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


def _remote_modules(config: dict[str, object]) -> list[str]:
    """The .py files ``auto_map`` names ("modeling_x.XForCausalLM" or "repo--modeling_x.X")."""
    names: set[str] = set()
    auto_map = config.get("auto_map")
    if isinstance(auto_map, dict):
        for value in auto_map.values():
            for ref in value if isinstance(value, list) else [value]:
                if isinstance(ref, str) and "." in ref:
                    module = ref.split("--")[-1].rsplit(".", 1)[0]
                    if module and "/" not in module and ".." not in module:
                        names.add(module.replace(".", "/") + ".py")
    return sorted(names)


class _Fetcher:
    def __init__(self, bridge: BridgeClient, spec: ModelSpec) -> None:
        self.bridge = bridge
        self.spec = spec

    async def get(self, uri: str, dest: str, *, sha256: str = "", required: bool = True) -> Path | None:
        from tendril_sdk import BridgeError

        try:
            fetched = await self.bridge.fetch_resource(uri, dest=dest, sha256=sha256)
        except BridgeError as exc:
            if exc.code.name == "NOT_FOUND":
                if not required:
                    return None
                raise ModelError(
                    f"model source {self.spec.source}: {exc.message}", reason=ModelReason.CHECKPOINT_NOT_FOUND
                ) from exc
            raise ModelError(
                f"model source {self.spec.source} cannot be fetched: {exc.message}",
                reason=ModelReason.SOURCE_UNAVAILABLE,
            ) from exc
        return fetched.path


async def fetch_checkpoint(bridge: BridgeClient, spec: ModelSpec, *, trust_remote_code: bool = False) -> Path | None:
    """The local folder of ``spec.source`` (None when the spec builds from a config)."""
    if not spec.source:
        return None
    fetcher = _Fetcher(bridge, spec)
    folder = bridge.work_dir / "artifacts" / CHECKPOINT_DIR
    shutil.rmtree(folder, ignore_errors=True)
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(spec.source).path)).name
    if is_archive(name):
        archive = await fetcher.get(spec.source, f"{CHECKPOINT_DIR}.download/{name}", sha256=spec.sha256)
        assert archive is not None
        try:
            return unpack(archive, folder)
        finally:
            shutil.rmtree(archive.parent, ignore_errors=True)
    base = spec.source
    config_path = await fetcher.get(_join(base, "config.json"), f"{CHECKPOINT_DIR}/config.json")
    assert config_path is not None
    weights = await fetcher.get(
        _join(base, "model.safetensors"), f"{CHECKPOINT_DIR}/model.safetensors", sha256=spec.sha256, required=False
    )
    if weights is None:
        index = await fetcher.get(
            _join(base, "model.safetensors.index.json"),
            f"{CHECKPOINT_DIR}/model.safetensors.index.json",
            required=False,
        )
        if index is None:
            raise ModelError(
                f"model source {spec.source} has no model.safetensors (nor model.safetensors.index.json); Tendril "
                "loads SafeTensors weights only (pickle .bin weights can run code when loaded): load the model once "
                "where you trust the file and save it with save_pretrained(dir), which writes model.safetensors",
                reason=ModelReason.CHECKPOINT_NOT_FOUND,
            )
        try:
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelError(
                f"model source {spec.source}: model.safetensors.index.json is not a SafeTensors index: {exc}",
                reason=ModelReason.BAD_CHECKPOINT,
            ) from exc
        for shard in shards:
            if not isinstance(shard, str) or "/" in shard or not shard.endswith(".safetensors"):
                raise ModelError(
                    f"model source {spec.source}: the index names shard {str(shard)[:200]!r}, not a .safetensors file "
                    "beside it",
                    reason=ModelReason.BAD_CHECKPOINT,
                )
            await fetcher.get(_join(base, shard), f"{CHECKPOINT_DIR}/{shard}")
    for optional in OPTIONAL_FILES:
        await fetcher.get(_join(base, optional), f"{CHECKPOINT_DIR}/{optional}", required=False)
    if trust_remote_code:
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError):
            config = {}
        for module in _remote_modules(config if isinstance(config, dict) else {}):
            await fetcher.get(_join(base, module), f"{CHECKPOINT_DIR}/{module}")
    return checkpoint_root(folder)
