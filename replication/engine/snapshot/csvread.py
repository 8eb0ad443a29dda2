"""Reading snapshot files in bounded memory, whatever the size of a value.

A snapshot file is COPY's CSV: a field may hold up to a gigabyte, line breaks included. Python's
csv module stops at 128 KiB per field by default and, past that, holds each row whole (as the
line it read and again as the parsed fields), so no reader here hands a whole file, or a whole
huge field, to it:

- `column_hashes` streams a file for the masked-values check: ordinary rows go through the csv
  module a block of whole rows at a time (its speed), and a row that does not fit in a block is
  walked field by field in chunks, each value hashed as it streams past;
- `head` reads at most a fixed number of bytes from the start, for a preview of a few rows with
  every value cut short.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

READ_BYTES = 1 << 20
# Rows up to this size are parsed by the csv module in blocks; a larger row is streamed.
BLOCK_ROW_BYTES = 8 << 20
_UNQUOTED_END = re.compile(rb"[,\n]")

# Block parsing hands the csv module fields up to a block's size: its limit must not be what
# decides whether a snapshot can be read.
if csv.field_size_limit() < 4 * BLOCK_ROW_BYTES:
    csv.field_size_limit(4 * BLOCK_ROW_BYTES)


@dataclass
class FieldValue:
    """One field as far as it was kept: its first bytes, its size, its digest if asked for."""

    prefix: bytearray = field(default_factory=bytearray)
    size: int = 0
    digest: str | None = None


class _Stream:
    """A file read in chunks, with the unread rest of the current chunk at hand."""

    def __init__(self, handle: BinaryIO, limit: int | None = None):
        self.handle = handle
        self.buffer = b""
        self.pos = 0
        self.remaining = limit  # bytes this stream may still read from the file, None: no bound

    def fill(self) -> bool:
        """Read another chunk, keeping what is unread; False at the end (of the file or the bound)."""
        size = READ_BYTES if self.remaining is None else min(READ_BYTES, self.remaining)
        chunk = self.handle.read(size) if size > 0 else b""
        if self.remaining is not None:
            self.remaining -= len(chunk)
        if not chunk:
            return False
        self.buffer = self.buffer[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> int | None:
        if self.pos >= len(self.buffer) and not self.fill():
            return None
        return self.buffer[self.pos]


def _read_field(stream: _Stream, keep: int, hasher) -> tuple[FieldValue, int | None]:
    """One field from the stream's position: (its value, the byte that ended it or None at the end)."""
    value = FieldValue()

    def take(piece: bytes) -> None:
        value.size += len(piece)
        if len(value.prefix) < keep:
            value.prefix += piece[: keep - len(value.prefix)]
        if hasher is not None:
            hasher.update(piece)

    if stream.peek() == 0x22:  # a quoted field: up to the quote that is not doubled
        stream.pos += 1
        while True:
            end = stream.buffer.find(b'"', stream.pos)
            if end < 0:
                take(stream.buffer[stream.pos:])
                stream.pos = len(stream.buffer)
                if not stream.fill():
                    return value, None
                continue
            take(stream.buffer[stream.pos:end])
            stream.pos = end + 1
            if stream.peek() == 0x22:
                take(b'"')
                stream.pos += 1
                continue
            break
    while True:  # unquoted, or what follows the closing quote: up to a comma or the line's end
        match = _UNQUOTED_END.search(stream.buffer, stream.pos)
        if match is None:
            take(stream.buffer[stream.pos:])
            stream.pos = len(stream.buffer)
            if not stream.fill():
                return value, None
            continue
        take(stream.buffer[stream.pos:match.start()])
        stream.pos = match.end()
        return value, stream.buffer[match.start()]


def _read_row(stream: _Stream, keep: int, hashed: Collection[int]) -> tuple[list[FieldValue] | None, bool]:
    """The next row, field by field, and whether its line ended (False: the stream did); None at the end."""
    if stream.peek() is None:
        return None, False
    fields = []
    while True:
        hasher = hashlib.sha256() if len(fields) in hashed else None
        value, ended_by = _read_field(stream, keep, hasher)
        if hasher is not None:
            value.digest = hasher.hexdigest()
        fields.append(value)
        if ended_by != 0x2C:  # a line break or the end
            return fields, ended_by == 0x0A


@contextmanager
def _opened(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    """A path is opened and closed here; an open file (a decoded snapshot object) is closed here too."""
    handle = open(source, "rb") if isinstance(source, (str, Path)) else source
    try:
        yield handle
    finally:
        handle.close()


def head(source: Path | BinaryIO, rows: int, max_bytes: int, keep: int) -> tuple[list[str], list[list[str]]]:
    """The header and up to `rows` rows from the first `max_bytes` of a file, each value cut to `keep` bytes.

    A row the bound cuts off is left out; a value that was cut ends in "…".
    """
    with _opened(source) as handle:
        stream = _Stream(handle, max_bytes)
        header, complete = _read_row(stream, keep, ())
        found: list[list[FieldValue]] = []
        while complete and len(found) < rows:
            row, complete = _read_row(stream, keep, ())
            if row is None or not complete:
                break
            found.append(row)
    return [_shown(v) for v in header or []], [[_shown(v) for v in row] for row in found]


def _shown(value: FieldValue) -> str:
    text = bytes(value.prefix).decode("utf-8", errors="ignore")
    return text + "…" if value.size > len(value.prefix) else text


def column_hashes(source: Path | BinaryIO, positions: list[int]) -> Iterator[list[str | None]]:
    """Per data row, the sha256 (hex) of each field at `positions`; None for an empty field (NULL or '')."""
    wanted = set(positions)
    with _opened(source) as handle:
        stream = _Stream(handle)
        header_seen = False
        while True:
            block = _whole_rows(stream)
            if block:
                reader = csv.reader(io.StringIO(block.decode("utf-8"), newline=""))
                if not header_seen:
                    next(reader, None)
                    header_seen = True
                for row in reader:
                    yield [_digest(row[p].encode("utf-8")) if row[p] != "" else None for p in positions]
                continue
            if stream.peek() is None:
                return
            # A row larger than a block: walked field by field, each value hashed as it streams by.
            row, _ = _read_row(stream, 0, wanted)
            if not header_seen:
                header_seen = True
                continue
            yield [row[p].digest if row[p].size else None for p in positions]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _whole_rows(stream: _Stream) -> bytes:
    """As many whole rows as the buffer holds, taken out of it; b"" when not even one fits a block.

    A line break ends a row when the quotes before it pair up: inside a quoted value, an odd
    number of quote characters has been seen.
    """
    while True:
        pending = stream.buffer[stream.pos:]
        cut = _last_row_end(pending)
        if cut >= 0:
            stream.pos += cut + 1
            return pending[: cut + 1]
        if len(pending) > BLOCK_ROW_BYTES or not stream.fill():
            return b""


def _last_row_end(data: bytes) -> int:
    end = data.rfind(b"\n")
    for _ in range(8):  # a few tries; past that the streaming reader is as good
        if end < 0:
            return -1
        if data.count(b'"', 0, end) % 2 == 0:
            return end
        end = data.rfind(b"\n", 0, end)
    return -1
