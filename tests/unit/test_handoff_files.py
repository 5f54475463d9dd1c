"""Files kept from round to round: tendril_sdk.files.Reusable and the executor's Δ HandOff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tendril_diloco.errors import ExecutorError
from tendril_diloco.params import HandOff
from tendril_sdk.files import Reusable, handoff_folder, memory_backed


def _params(seed: int, shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = shapes or {"wte": (64, 16), "h.0.w": (16, 16), "ln.b": (16,), "scale": ()}
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def _same(path: Path, params: dict[str, torch.Tensor]) -> None:
    loaded = load_file(str(path))
    assert loaded.keys() == params.keys()
    for name, value in params.items():
        assert torch.equal(loaded[name], value), name


def test_reusable_files_take_turns_and_skip_the_linked_ones(memory_dir: Path) -> None:
    tmp_path = memory_dir
    files = Reusable(tmp_path, "u", count=3)
    first = files.take()
    assert first == tmp_path / "u-0"  # missing files are free
    first.write_bytes(b"0")
    assert files.take() == tmp_path / "u-1"
    (tmp_path / "u-1").write_bytes(b"1")
    os.link(tmp_path / "u-1", tmp_path / "held")  # someone still holds u-1
    assert files.take() == tmp_path / "u-2"
    assert files.take() == tmp_path / "u-0"
    # u-1 is held and u-0 was taken last: u-2 is the only one.
    assert files.take() == tmp_path / "u-2"
    os.link(tmp_path / "u-0", tmp_path / "held-too")
    assert files.take() is None  # u-2 was taken last, u-0 and u-1 are held
    (tmp_path / "held").unlink()
    assert files.take() == tmp_path / "u-1"
    with pytest.raises(ValueError, match="at least two"):
        Reusable(tmp_path, "u", count=1)


def test_handoff_writes_into_the_kept_file_in_place_and_links_it_whole(memory_dir: Path) -> None:
    tmp_path = memory_dir
    handoff = HandOff(tmp_path / "kept")
    inodes = []
    for r in range(4):
        params, path = _params(r), tmp_path / f"delta-{r}.safetensors"
        handoff.write(params, path)
        _same(path, params)
        inodes.append(os.stat(path).st_ino)
        path.unlink()  # as the executor does once the push is done
    assert inodes[2] == inodes[0] and inodes[3] == inodes[1] and inodes[0] != inodes[1]
    assert not [p for p in tmp_path.iterdir() if p.name != "kept"]  # no link or temp file left


def test_handoff_never_touches_a_file_the_bridge_still_links(memory_dir: Path) -> None:
    tmp_path = memory_dir
    handoff = HandOff(tmp_path / "kept")
    sent = _params(1)
    handoff.write(sent, tmp_path / "delta-0.safetensors")
    os.link(tmp_path / "delta-0.safetensors", tmp_path / "kept-by-bridge")  # keep_sent's link
    (tmp_path / "delta-0.safetensors").unlink()
    for r in range(1, 4):
        handoff.write(_params(10 + r), tmp_path / f"delta-{r}.safetensors")
        _same(tmp_path / f"delta-{r}.safetensors", _params(10 + r))
    _same(tmp_path / "kept-by-bridge", sent)  # the Δ kept for a resend is as it was sent


def test_handoff_writes_afresh_when_the_tensors_change(memory_dir: Path) -> None:
    tmp_path = memory_dir
    handoff = HandOff(tmp_path / "kept")
    for r, shapes in enumerate([{"a": (8, 8)}, {"a": (8, 8)}, {"a": (4, 8)}, {"a": (4, 8), "b": (3,)}, {"a": (4, 8)}]):
        params = _params(r, shapes)
        path = tmp_path / "delta.safetensors"
        handoff.write(params, path)
        _same(path, params)
        assert path.stat().st_size == len(path.read_bytes())
    bf16 = {"a": torch.ones(4, 8, dtype=torch.bfloat16)}
    handoff.write(bf16, tmp_path / "delta.safetensors")  # not fp32: never written in place
    assert torch.equal(load_file(str(tmp_path / "delta.safetensors"))["a"], bf16["a"])


def test_files_are_kept_only_on_a_file_system_held_in_memory(tmp_path: Path, memory_dir: Path) -> None:
    """On a disk a kept file's dirty pages would be written back every round: new files there."""
    assert memory_backed(memory_dir) and memory_backed(memory_dir / "not" / "made" / "yet")
    assert not memory_backed("/proc")
    if memory_backed(tmp_path):
        pytest.skip("the temporary folder is itself held in memory here")
    assert Reusable(tmp_path, "u").take() is None
    handoff, inodes = HandOff(tmp_path / "kept"), set()
    for r in range(3):
        params, path = _params(r), tmp_path / f"delta-{r}.safetensors"
        handoff.write(params, path)
        _same(path, params)
        assert os.stat(path).st_nlink == 1  # a file of its own, deleted with its name
        inodes.add(os.stat(path).st_ino)
    assert not (tmp_path / "kept").exists()


def test_the_handoff_folder_is_used_when_it_is_in_memory_and_the_files_fit(
    tmp_path: Path, memory_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """handoff/ (held in memory, room for 6 model-sized files, a quarter of the memory left) or updates/."""
    import tendril_sdk.files as files

    work = tmp_path / "work"
    (work / "updates").mkdir(parents=True)
    assert handoff_folder(work, 1000) == "updates"  # not offered
    (work / "handoff").symlink_to(memory_dir, target_is_directory=True)
    gib = 1024**3
    monkeypatch.setattr(files, "_meminfo_bytes", lambda: {"MemTotal": 16 * gib, "MemAvailable": 8 * gib})
    assert handoff_folder(work, 100 * 1024**2) == "handoff"
    # 6 × 1 GiB + 4 GiB (a quarter of 16) > 8 GiB available: updates/
    assert handoff_folder(work, gib) == "updates"
    monkeypatch.setattr(files, "_meminfo_bytes", lambda: {"MemTotal": 16 * gib, "MemAvailable": 12 * gib})
    free = os.statvfs(memory_dir).f_bavail * os.statvfs(memory_dir).f_frsize
    assert handoff_folder(work, free // 6 + 1) == "updates"  # the file system itself is too small
    monkeypatch.setattr(files, "_meminfo_bytes", dict)  # no /proc/meminfo: not risked
    assert handoff_folder(work, 1000) == "updates"
    monkeypatch.undo()
    # a handoff/ folder on a disk is no offer
    (work / "handoff").unlink()
    (work / "handoff").mkdir()
    if not memory_backed(work):
        assert handoff_folder(work, 1000) == "updates"


def test_a_kept_files_mapping_is_kept_while_the_file_stays_the_same(memory_dir: Path) -> None:
    files = Reusable(memory_dir, "u")
    path = files.take()
    assert path is not None
    path.write_bytes(bytes(8192))
    first = files.mapping(path, 8192)
    first[:4] = b"abcd"
    assert files.mapping(path, 8192) is first and path.read_bytes()[:4] == b"abcd"
    os.truncate(path, 4096)
    with pytest.raises(ValueError, match="holds 4096 bytes"):
        files.mapping(path, 8192)
    again = files.mapping(path, 4096)
    assert again is not first and first.closed
    path.unlink()
    path.write_bytes(bytes(4096))  # another file of that name: mapped afresh
    other = files.mapping(path, 4096)
    assert other is not again
    with pytest.raises(ValueError, match="not one of"):
        files.mapping(memory_dir / "elsewhere", 4096)
    files.close()
    assert other.closed


def test_updates_are_read_through_mappings_kept_by_file(tmp_path: Path, memory_dir: Path) -> None:
    """params.Updates: the same tensors as load_file; one mapping per kept file, used again while
    the file stays the same; a disk, another dtype or a broken header: load_file's reading."""
    from tendril_diloco.params import Updates

    updates = Updates()
    first, second = memory_dir / "round-0.safetensors", memory_dir / "round-1.safetensors"
    for k, path in enumerate((first, second)):
        save_file(_params(10 + k), str(memory_dir / f"update-{k}"))
        os.link(memory_dir / f"update-{k}", path)  # (a kept file linked at the path, as the bridge does)
    for _ in range(2):
        for k, path in enumerate((first, second)):
            got = updates.load(path)
            assert got.keys() == _params(0).keys()
            for name, value in _params(10 + k).items():
                assert torch.equal(got[name], value), name
            del got
    assert len(updates._maps) == 2
    # A file replaced by another (a file of its own now: load_params reads it) reads as it is now.
    save_file(_params(20), str(memory_dir / "new.safetensors"))
    os.replace(memory_dir / "new.safetensors", memory_dir / "update-0")
    assert torch.equal(updates.load(memory_dir / "update-0")["wte"], _params(20)["wte"])
    handoff = HandOff(memory_dir / "kept")
    handoff.write(_params(21), memory_dir / "d.safetensors")  # (a link of a kept file)
    assert torch.equal(updates.load(memory_dir / "d.safetensors")["wte"], _params(21)["wte"])
    (memory_dir / "d.safetensors").unlink()  # (the bridge is done with it)
    handoff.write(_params(22), memory_dir / "e.safetensors")
    handoff.write(_params(23), memory_dir / "d.safetensors")  # (the first kept file again, in place)
    assert os.stat(memory_dir / "d.safetensors").st_nlink == 2
    assert torch.equal(updates.load(memory_dir / "d.safetensors")["wte"], _params(23)["wte"])
    bf16 = memory_dir / "bf16.safetensors"
    save_file({"a": torch.ones(4, dtype=torch.bfloat16)}, str(bf16))
    assert updates.load(bf16)["a"].dtype == torch.float32  # (load_params converts)
    if not memory_backed(tmp_path):
        save_file(_params(30), str(tmp_path / "u.safetensors"))
        assert torch.equal(updates.load(tmp_path / "u.safetensors")["wte"], _params(30)["wte"])
    broken = memory_dir / "broken"
    broken.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    with pytest.raises(ExecutorError):
        updates.load(broken)
    updates.close()
    assert not updates._maps


def test_a_file_taken_with_hold_is_not_taken_again_until_released(memory_dir: Path) -> None:
    """A push's encoded payload is linked nowhere while it is sent: held, a third push at once
    gets no file (a new one then) rather than the one still being sent."""
    files = Reusable(memory_dir, "p")
    first = files.take(hold=True)
    second = files.take(hold=True)
    assert first is not None and second is not None and first != second
    assert files.take(hold=True) is None
    files.release(first)
    assert files.take(hold=True) == first
