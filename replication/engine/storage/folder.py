"""Snapshots in a local (or mounted) folder: one sub-folder per snapshot, one file per object.

Folders are locked with flock on a `.lock` file inside them: a capture holds it exclusively, a
load holds it shared, and pruning deletes a folder only if it can take it exclusively without
waiting. So nothing a step of any run is still writing or loading is ever deleted. flock works
between processes and containers on one host sharing a volume; on a network filesystem that
does not honour it, keep `snapshot.keep` well above the number of runs that may overlap.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .files import CHUNK, AtomicWriter, ensure_private_dir, fsync_dir, fsync_file, write_atomically
from .base import ObjectStore, ObjectWriter, SnapshotInUse, StoredObject

LOCK_NAME = ".lock"


class _FileWriter(ObjectWriter):
    def __init__(self, path: Path):
        self._writer = AtomicWriter(path, sync=False)

    def write(self, data) -> None:
        self._writer.write(data)

    def commit(self) -> StoredObject:
        try:
            self._writer.commit()
        except BaseException:
            self._writer.abort()
            raise
        return StoredObject(self._writer.bytes, self._writer.sha256)

    def abort(self) -> None:
        self._writer.abort()


@contextmanager
def folder_lock(folder: Path, *, exclusive: bool, wait: bool = True) -> Iterator[None]:
    """Hold the folder's lock: exclusive to write or delete it, shared to read it.

    A folder this call created and that holds nothing but the lock afterwards (the capture
    failed before writing) is removed again, so a refused run leaves nothing behind.
    """
    created = not folder.exists()
    ensure_private_dir(folder)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, flags if wait else flags | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SnapshotInUse(str(folder)) from None
        yield
    finally:
        os.close(fd)
        if created and folder.is_dir() and [p.name for p in folder.iterdir()] == [LOCK_NAME]:
            shutil.rmtree(folder, ignore_errors=True)


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


class FolderStore(ObjectStore):
    kind = "folder"
    stable_while_leased = True

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def location(self, name: str = "") -> str:
        return str(self.root / name) if name else str(self.root)

    def writer(self, name: str, file: str) -> ObjectWriter:
        return _FileWriter(ensure_private_dir(self.path(name)) / file)

    def read(self, name: str, file: str) -> Iterator[bytes]:
        handle = open(self.path(name) / file, "rb")  # FileNotFoundError here, before the first chunk is asked for

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        return chunks()

    def put(self, name: str, file: str, data: bytes) -> None:
        write_atomically(ensure_private_dir(self.path(name)) / file, [data])

    def get(self, name: str, file: str) -> bytes | None:
        try:
            return (self.path(name) / file).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def files(self, name: str) -> dict[str, int]:
        folder = self.path(name)
        if not folder.is_dir():
            return {}
        found = {}
        for path in folder.iterdir():
            if path.name == LOCK_NAME or not path.is_file():
                continue
            try:
                found[path.name] = path.stat().st_size
            except FileNotFoundError:
                continue
        return found

    def delete(self, name: str, files: list[str]) -> None:
        for file in files:
            (self.path(name) / file).unlink(missing_ok=True)
        if files and self.path(name).is_dir():
            fsync_dir(self.path(name))

    def snapshots(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def sync(self, name: str, files: list[str]) -> None:
        # Synced once at the end, not file by file: on a schema of a thousand tables a sync per file
        # costs more than the data. The manifest names the files only after this.
        for file in files:
            fsync_file(self.path(name) / file)
        fsync_dir(self.path(name))

    def lease(self, name: str, *, exclusive: bool):
        return folder_lock(self.path(name), exclusive=exclusive)

    def remove_if_unused(self, name: str) -> int | None:
        folder = self.path(name)
        try:
            with folder_lock(folder, exclusive=True, wait=False):
                size = folder_bytes(folder)
                shutil.rmtree(folder)
        except SnapshotInUse:
            return None
        return size

    def free_bytes(self, name: str) -> int | None:
        probe = self.path(name)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free
