"""Whether an existing snapshot of a partition can be reused instead of capturing production again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ReplicationError
from .manifest import Manifest
from ..storage import SnapshotLocation, as_location
from .verify import verify_snapshot


@dataclass(frozen=True)
class ReuseDecision:
    """The verified manifest to reuse, or None and the reason a fresh capture is needed."""

    manifest: Manifest | None
    reason: str

    @property
    def reusable(self) -> bool:
        return self.manifest is not None


def reuse_decision(snapshot: SnapshotLocation | Path, include: list[str], exclude: list[str], *, need_checksums: bool
                   ) -> ReuseDecision:
    """Reuse only a complete, intact snapshot taken with the same selection (and checksums, if asked).

    Compression and encryption are recorded per object, so a snapshot stored under other settings
    is still reused: recapturing a past day would replace it with today's data.
    """
    location = as_location(snapshot)
    if location.read_manifest_bytes() is None:
        return ReuseDecision(None, "no finished snapshot of this partition exists")
    try:
        manifest = verify_snapshot(location)
    except ReplicationError as exc:
        return ReuseDecision(None, f"the existing snapshot does not verify: {exc}")
    if manifest.include != list(include) or manifest.exclude != list(exclude):
        return ReuseDecision(None, "the existing snapshot was taken with another table selection")
    if need_checksums and any(not t.content_checksum for t in manifest.tables):
        return ReuseDecision(None, "the existing snapshot has no content checksums")
    return ReuseDecision(manifest, "the snapshot of this partition exists and verifies")

