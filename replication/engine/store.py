"""Where snapshots live: one folder per partition, and whether an existing one can be reused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ReplicationError
from .manifest import Manifest, manifest_path
from .verify import verify_snapshot

FOLDER_PREFIX = "prod_snapshot_"


def snapshot_folder_name(partition: str) -> str:
    """`2026-11-25` -> `prod_snapshot_20261125`, the name a cron script would use too."""
    return f"{FOLDER_PREFIX}{partition.replace('-', '')}"


def snapshot_path(root: Path, partition: str) -> Path:
    return root / snapshot_folder_name(partition)


@dataclass(frozen=True)
class ReuseDecision:
    """The verified manifest to reuse, or None and the reason a fresh capture is needed."""

    manifest: Manifest | None
    reason: str

    @property
    def reusable(self) -> bool:
        return self.manifest is not None


def reuse_decision(
    snapshot_dir: Path, include: list[str], exclude: list[str], *, need_checksums: bool
) -> ReuseDecision:
    """Reuse only a complete, intact snapshot taken with the same selection (and checksums, if asked)."""
    if not manifest_path(snapshot_dir).exists():
        return ReuseDecision(None, "no finished snapshot of this partition exists")
    try:
        manifest = verify_snapshot(snapshot_dir)
    except ReplicationError as exc:
        return ReuseDecision(None, f"the existing snapshot does not verify: {exc}")
    if manifest.include != list(include) or manifest.exclude != list(exclude):
        return ReuseDecision(None, "the existing snapshot was taken with another table selection")
    if need_checksums and any(not t.content_checksum for t in manifest.tables):
        return ReuseDecision(None, "the existing snapshot has no content checksums")
    return ReuseDecision(manifest, "the snapshot of this partition exists and verifies")
