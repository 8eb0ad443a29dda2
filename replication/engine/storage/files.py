"""Private, crash-safe files: snapshots hold production data."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
CHUNK = 1 << 20


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)  # mkdir's mode is masked by umask, and an old folder keeps its mode
    return path


def fsync_dir(path: Path) -> None:
    fsync_file(path)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


class AtomicWriter:
    """Writes to a hidden temporary file and moves it into place only on success.

    Readers see the old file or the whole new one, never a torn one; the data is fsynced before
    the rename so a crash cannot leave a renamed file with missing blocks. `sync=False` leaves
    both fsyncs to the caller, who writes many files and syncs them all before anything names them.
    """

    def __init__(self, path: Path, *, sync: bool = True):
        self.path = path
        self.sync = sync
        self.tmp = temp_name(path)
        self.bytes = 0
        self._sha = hashlib.sha256()
        self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        self._buffer = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            view = memoryview(self._buffer)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._sha.update(self._buffer)
            self.bytes += len(self._buffer)
            self._buffer = bytearray()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def commit(self) -> None:
        self._flush()
        if self.sync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.tmp, self.path)
        if self.sync:
            fsync_dir(self.path.parent)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "AtomicWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.commit()
        except BaseException:
            # A full disk surfaces here, at the last flush or fsync: close and remove the temporary.
            self.abort()
            raise


def write_atomically(path: Path, chunks: Iterable[bytes]) -> str:
    with AtomicWriter(path) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return writer.sha256


def sha256_of(path: Path) -> tuple[str, int]:
    """Stream a file through sha256; returns the digest and the byte count."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
