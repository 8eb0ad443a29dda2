"""Snapshot retention and the disk guard: keep the newest N snapshots, and never start what cannot fit.

Retention deletes a snapshot only when no step holds it: a flock on a folder, a lease on an
object store (see storage/folder.py and storage/s3.py for how each is proven).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..pg.catalog import TableSize
from ..errors import snapshot_space_error
from .manifest import Manifest, read_manifest
from ..storage import FOLDER_PREFIX, FolderStore, ObjectStore, SnapshotInUse, SnapshotLocation, folder_bytes, \
    folder_lock

__all__ = ["PruneReport", "SnapshotInUse", "SpaceEstimate", "check_free_space", "estimate_from_catalog",
           "estimate_from_manifests", "folder_bytes", "folder_lock", "prune", "snapshot_manifests"]


def _store(store: ObjectStore | Path | str) -> ObjectStore:
    return store if isinstance(store, ObjectStore) else FolderStore(store)


# Catalog sizes are bytes on disk; CSV text of the same rows is usually smaller, but numbers and
# timestamps can print longer than they are stored, so the estimate gets a wide margin. Values in
# TOAST are mostly documents and binaries: bytea prints as hex, twice its size, hence a wider one.
CATALOG_MARGIN = 1.5
TOAST_MARGIN = 2.5
MANIFEST_MARGIN = 1.1


@dataclass
class PruneReport:
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def snapshot_manifests(store: ObjectStore | Path) -> list[tuple[str, Manifest | None]]:
    """Every snapshot in the store by name, with its manifest (None: unfinished or unreadable)."""
    store = _store(store)
    found = []
    for name in store.snapshots():
        if not name.startswith(FOLDER_PREFIX):
            continue
        try:
            manifest = read_manifest(SnapshotLocation(store, name))
        except (ValueError, TypeError, KeyError):
            manifest = None
        found.append((name, manifest))
    return found


def prune(store: ObjectStore | Path, keep: int, *, protect: Iterable[str | Path] = ()) -> PruneReport:
    """Delete all but the `keep` most recently captured snapshots; 0 keeps everything.

    Snapshots without a manifest are captures that failed or are still running: deleted when no
    step holds them. `protect` names snapshots this step itself still needs.
    """
    store = _store(store)
    report = PruneReport()
    snapshots = snapshot_manifests(store)
    if keep <= 0:
        report.kept = [name for name, _ in snapshots]
        return report
    finished = sorted(((m.captured_at, name) for name, m in snapshots if m is not None), reverse=True)
    keep_names = {name for _, name in finished[:keep]} | {Path(p).name for p in protect}
    for name, _ in snapshots:
        if name in keep_names:
            report.kept.append(name)
            continue
        freed = store.remove_if_unused(name)
        if freed is None:
            report.in_use.append(name)
            continue
        report.deleted.append(name)
        report.freed_bytes += freed
    return report


@dataclass(frozen=True)
class SpaceEstimate:
    needed: int
    basis: str


def estimate_from_manifests(store: ObjectStore | Path, include: list[str], exclude: list[str]
                            ) -> SpaceEstimate | None:
    """The newest finished snapshot taken with the same selection, plus a margin for growth."""
    same = [m for _, m in snapshot_manifests(store) if m is not None and m.include == include and m.exclude == exclude]
    if not same:
        return None
    latest = max(same, key=lambda m: m.captured_at)
    # Stored bytes: the next capture is stored the same way. One stored plain, now compressed, is a high estimate.
    return SpaceEstimate(int(latest.stored_bytes * MANIFEST_MARGIN),
                         f"the {latest.partition} snapshot ({latest.stored_bytes:,} bytes stored) plus 10%")


def estimate_from_catalog(sizes: Iterable[TableSize]) -> SpaceEstimate:
    """From every leaf table's size in production: rows plus 50%, TOAST values two and a half times."""
    sizes = list(sizes)
    toast = sum(s.toast_bytes for s in sizes)
    rows = sum(s.bytes for s in sizes) - toast
    needed = int(rows * CATALOG_MARGIN + toast * TOAST_MARGIN)
    return SpaceEstimate(needed, f"the tables' size in production ({rows:,} bytes of rows plus 50%, "
                                 f"{toast:,} bytes of TOAST values times {TOAST_MARGIN})")


def check_free_space(snapshot: SnapshotLocation | Path, estimate: SpaceEstimate, reclaimable: int = 0) -> int | None:
    """Fail before any write when the estimate does not fit; returns the free bytes (None: an
    object store, which has no such limit to check)."""
    location = snapshot if isinstance(snapshot, SnapshotLocation) else SnapshotLocation.folder(snapshot)
    free = location.store.free_bytes(location.name)
    if free is None:
        return None
    free += reclaimable
    if estimate.needed > free:
        raise snapshot_space_error(
            f"Not enough space for the snapshot in {location.url}: it needs about {_mib(estimate.needed)} "
            f"({estimate.basis}) and {_mib(free)} is free, so nothing was written."
        )
    return free


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"
