"""Reading an executor's log: the last N lines, then new output as it is written (no gRPC here)."""

from __future__ import annotations

import codecs
from typing import BinaryIO

BLOCK_BYTES = 64 * 1024


def tail_offset(f: BinaryIO, lines: int) -> int:
    """Byte offset where the last ``lines`` lines of ``f`` start (0 when it has fewer).

    A final newline ends the last line; it does not start an empty one.
    """
    end = f.seek(0, 2)
    if lines <= 0 or end == 0:
        return 0
    pos = end
    seen = 0
    while pos > 0:
        size = min(BLOCK_BYTES, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            if pos + index == end - 1:
                continue  # the newline that ends the file
            seen += 1
            if seen == lines:
                return pos + index + 1
    return 0


class LogReader:
    """Reads a log from an offset in UTF-8 text pieces (undecodable bytes replaced).

    The file stays open, so a reader keeps working after the work dir (and the file's name)
    is removed at the end of the job.
    """

    def __init__(self, f: BinaryIO, tail_lines: int = 0) -> None:
        self._f = f
        self._offset = tail_offset(f, tail_lines) if tail_lines else 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def read(self) -> tuple[str, int]:
        """The next piece of text written since the last call, and how many bytes it took.

        ``(_, 0)`` means nothing new; the text can be "" while bytes were read (half a
        character waits for its other half).
        """
        self._f.seek(self._offset)
        data = self._f.read(BLOCK_BYTES)
        self._offset += len(data)
        return self._decoder.decode(data), len(data)

    def finish(self) -> str:
        """What the decoder still holds at the end (a replacement for a cut character)."""
        return self._decoder.decode(b"", final=True)

    def close(self) -> None:
        self._f.close()
