"""Reading executor logs: tail by lines, incremental reads, cut UTF-8."""

from __future__ import annotations

import io
from pathlib import Path

from tendril.job.joblog import BLOCK_BYTES, LogReader, tail_offset


def _tail(data: bytes, lines: int) -> bytes:
    f = io.BytesIO(data)
    return data[tail_offset(f, lines) :]


def test_tail_counts_lines_not_the_final_newline() -> None:
    assert _tail(b"a\nb\nc\n", 1) == b"c\n"
    assert _tail(b"a\nb\nc\n", 2) == b"b\nc\n"
    assert _tail(b"a\nb\nc", 1) == b"c"
    assert _tail(b"a\nb\nc", 5) == b"a\nb\nc"
    assert _tail(b"", 3) == b""
    assert _tail(b"a\n\n\nb\n", 2) == b"\nb\n"


def test_tail_across_blocks() -> None:
    lines = [f"line {i:06d} ".encode() + b"x" * 100 + b"\n" for i in range(2000)]
    data = b"".join(lines)
    assert len(data) > 3 * BLOCK_BYTES
    assert _tail(data, 700) == b"".join(lines[-700:])


def test_reader_follows_appends_and_joins_cut_characters(tmp_path: Path) -> None:
    path = tmp_path / "executor.log"
    path.write_bytes(b"old\nnew 1\n")
    reader = LogReader(open(path, "rb"), tail_lines=1)  # noqa: SIM115 - LogReader.close closes it
    assert reader.read() == ("new 1\n", 6)
    assert reader.read() == ("", 0)
    euro = "€".encode()
    with open(path, "ab") as f:
        f.write(b"x" + euro[:1])
    assert reader.read() == ("x", 2)
    with open(path, "ab") as f:
        f.write(euro[1:] + b"\xff\n")
    text, _ = reader.read()
    assert text == "€\ufffd\n"
    path.unlink()  # the work dir goes away; an open reader still sees what was written
    assert reader.read() == ("", 0)
    assert reader.finish() == ""
    reader.close()
