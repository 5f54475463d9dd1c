"""The DiLoCo trainer writes each round's Δ in a worker thread, not on its event loop: with
overlapped sync the push runs beside the next round's first steps."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from tendril_diloco.config import parse_config
from tendril_diloco.params import HandOff
from tendril_diloco.trainer import Trainer

from .test_diloco_executor import _config, _FakeBridge


@pytest.mark.parametrize("sync", ["blocking", "overlapped"])
async def test_delta_is_written_off_the_event_loop_and_pushed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: str
) -> None:
    saved: dict[str, bool] = {}  # Δ file -> written on the loop's thread
    written: dict[str, dict[str, torch.Tensor]] = {}

    write = HandOff.write

    def recording_write(self: HandOff, params: Any, path: Path) -> None:
        if path.name.startswith("delta-"):
            saved[path.name] = threading.current_thread() is threading.main_thread()
            written[path.name] = {k: v.clone() for k, v in params.items()}
        write(self, params, path)

    monkeypatch.setattr(HandOff, "write", recording_write)
    bridge = _FakeBridge(tmp_path)
    trainer = Trainer(parse_config(_config(sync=sync)), bridge, log=lambda *a, **k: None)  # type: ignore[arg-type]
    await trainer.run()
    assert sorted(saved) == ["delta-00000.safetensors", "delta-00001.safetensors"]
    assert not any(saved.values()), saved  # every Δ written in a worker thread
    for r in (0, 1):  # what was pushed is the Δ written, whole
        pushed, kept = bridge.deltas[r], written[f"delta-{r:05d}.safetensors"]
        assert all(torch.equal(pushed[k], kept[k]) for k in kept)
    assert not list((tmp_path / "updates").glob("delta-*"))  # removed after the push
