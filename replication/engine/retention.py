"""Snapshot retention and the disk guard: keep the newest N snapshots, and never start what cannot fit.

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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import TableSize
from .errors import snapshot_space_error
from .manifest import Manifest, read_manifest
from .store import FOLDER_PREFIX

LOCK_NAME = ".lock"
# Catalog sizes are bytes on disk; CSV text of the same rows is usually smaller, but numbers and
# timestamps can print longer than they are stored, so the estimate gets a wide margin. Values in
# TOAST are mostly documents and binaries: bytea prints as hex, twice its size, hence a wider one.
CATALOG_MARGIN = 1.5
TOAST_MARGIN = 2.5
MANIFEST_MARGIN = 1.1


class SnapshotInUse(Exception):
    """Another step holds the folder's lock."""


@contextmanager
def folder_lock(folder: Path, *, exclusive: bool, wait: bool = True) -> Iterator[None]:
    """Hold the folder's lock: exclusive to write or delete it, shared to read it.

    A folder this call created and that holds nothing but the lock afterwards (the capture
    failed before writing) is removed again, so a refused run leaves nothing behind.
    """
    created = not folder.exists()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
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


@dataclass
class PruneReport:
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def snapshot_folders(root: Path) -> list[tuple[Path, Manifest | None]]:
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        if path.is_dir() and path.name.startswith(FOLDER_PREFIX):
            try:
                manifest = read_manifest(path)
            except (ValueError, TypeError, KeyError):
                manifest = None
            found.append((path, manifest))
    return found


def prune(root: Path, keep: int, *, protect: tuple[Path, ...] = ()) -> PruneReport:
    """Delete all but the `keep` most recently captured snapshots; 0 keeps everything.

    Folders without a manifest are captures that failed or are still running: deleted when no
    step holds them. `protect` names folders this step itself still needs.
    """
    report = PruneReport()
    if keep <= 0:
        report.kept = [path.name for path, _ in snapshot_folders(root)]
        return report
    folders = snapshot_folders(root)
    finished = sorted(((m.captured_at, p) for p, m in folders if m is not None), reverse=True)
    keep_paths = {p for _, p in finished[:keep]} | set(protect)
    for path, _ in folders:
        if path in keep_paths:
            report.kept.append(path.name)
            continue
        try:
            with folder_lock(path, exclusive=True, wait=False):
                size = folder_bytes(path)
                shutil.rmtree(path)
        except SnapshotInUse:
            report.in_use.append(path.name)
            continue
        report.deleted.append(path.name)
        report.freed_bytes += size
    return report


@dataclass(frozen=True)
class SpaceEstimate:
    needed: int
    basis: str


def estimate_from_manifests(root: Path, include: list[str], exclude: list[str]) -> SpaceEstimate | None:
    """The newest finished snapshot taken with the same selection, plus a margin for growth."""
    same = [m for _, m in snapshot_folders(root) if m is not None and m.include == include and m.exclude == exclude]
    if not same:
        return None
    latest = max(same, key=lambda m: m.captured_at)
    return SpaceEstimate(int(latest.total_bytes * MANIFEST_MARGIN),
                         f"the {latest.partition} snapshot ({latest.total_bytes:,} bytes) plus 10%")


def estimate_from_catalog(sizes: Iterable[TableSize]) -> SpaceEstimate:
    """From every leaf table's size in production: rows plus 50%, TOAST values two and a half times."""
    sizes = list(sizes)
    toast = sum(s.toast_bytes for s in sizes)
    rows = sum(s.bytes for s in sizes) - toast
    needed = int(rows * CATALOG_MARGIN + toast * TOAST_MARGIN)
    return SpaceEstimate(needed, f"the tables' size in production ({rows:,} bytes of rows plus 50%, "
                                 f"{toast:,} bytes of TOAST values times {TOAST_MARGIN})")


def check_free_space(folder: Path, estimate: SpaceEstimate, reclaimable: int = 0) -> int:
    """Fail before any write when the estimate does not fit; returns the free bytes."""
    probe = folder if folder.exists() else folder.parent
    free = shutil.disk_usage(probe).free + reclaimable
    if estimate.needed > free:
        raise snapshot_space_error(
            f"Not enough space for the snapshot in {folder}: it needs about {_mib(estimate.needed)} "
            f"({estimate.basis}) and {_mib(free)} is free, so nothing was written."
        )
    return free


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"
