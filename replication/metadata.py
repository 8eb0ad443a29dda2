"""What a person wants to see about a copy in the Dagster UI: tables, rows, bytes, speed, proof."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import dagster as dg

from .engine.snapshot.csvread import head
from .engine.load import LoadReport
from .engine.snapshot.manifest import Manifest, TableEntry
from .engine.privacy.scrub import hidden_columns
from .engine.snapshot.retention import PruneReport
from .engine.storage import FOLDER_PREFIX, ObjectStore, SnapshotLocation

PREVIEW_ROWS = 10
PREVIEW_CELL_CHARS = 40
# The preview reads at most this much of the file: ten rows of a table whose values run to
# hundreds of megabytes must not cost the step their size.
PREVIEW_BYTES = 256 << 10
# Up to this many tables, each gets its own rows/<table> and bytes/<table> numbers, which the asset
# page plots across partitions; a schema of hundreds of tables gets its summary table only.
PER_TABLE_METADATA_MAX = 25

def _per_table_schema(*extra: dg.TableColumn) -> dg.TableSchema:
    """The columns every per-table summary shares, then what only that summary has."""
    shared = [dg.TableColumn("table", "string"), dg.TableColumn("rows", "int"), dg.TableColumn("bytes", "int"),
              dg.TableColumn("seconds", "float"), dg.TableColumn("rows_per_second", "float")]
    return dg.TableSchema(columns=[*shared, *extra])


SNAPSHOT_TABLE_SCHEMA = _per_table_schema(dg.TableColumn("sha256", "string"))
LOAD_TABLE_SCHEMA = _per_table_schema(dg.TableColumn("rebuild_seconds", "float"), dg.TableColumn("checksum", "string"))


def _rate(rows: int, seconds: float) -> float:
    return round(rows / seconds, 1) if seconds > 0 else 0.0


def per_table_numbers(items: list[tuple[str, int, int]]) -> dict[str, dg.MetadataValue]:
    """Numeric rows and bytes per table, so the UI plots each across partitions; none past PER_TABLE_METADATA_MAX."""
    numbers: dict[str, dg.MetadataValue] = {}
    if len(items) > PER_TABLE_METADATA_MAX:
        return numbers
    for key, rows, size in items:
        numbers[f"rows/{key}"] = dg.MetadataValue.int(rows)
        numbers[f"bytes/{key}"] = dg.MetadataValue.int(size)
    return numbers


def disk_metadata(store: ObjectStore) -> dict[str, dg.MetadataValue]:
    """How much the retained snapshots take (and, on a disk, how much room is left), for the retention plots."""
    # Names only: reading every retained manifest (one request each on a store) is not needed here.
    names = [name for name in store.snapshots() if name.startswith(FOLDER_PREFIX)]
    used = sum(sum(store.files(name).values()) for name in names)
    metadata = {"snapshots_retained": dg.MetadataValue.int(len(names)),
                "snapshots_stored_bytes": dg.MetadataValue.int(used)}
    free = store.free_bytes("")
    if free is not None:
        metadata["snapshot_disk_free_bytes"] = dg.MetadataValue.int(free)
    return metadata


def snapshot_metadata(manifest: Manifest, snapshot: SnapshotLocation, reused: bool, seconds: float,
                      preview: str = "masked", masked_columns: Collection[str] = ()) -> dict:
    tables = sorted(manifest.tables, key=lambda t: t.key)
    summary = dg.MetadataValue.table(
        records=[
            dg.TableRecord({"table": t.key, "rows": t.rows, "bytes": t.bytes, "seconds": t.seconds,
                            "rows_per_second": _rate(t.rows, t.seconds), "sha256": t.sha256[:16]})
            for t in tables
        ],
        schema=SNAPSHOT_TABLE_SCHEMA,
    )
    capture = round(sum(t.seconds for t in tables), 3)
    metadata: dict[str, object] = {
        "snapshot_path": dg.MetadataValue.path(snapshot.url),
        "reused": dg.MetadataValue.bool(reused),
        "source": manifest.source,
        "partition": manifest.partition,
        # A backfilled past day captured today holds today's data: this says so next to the partition.
        "captured_at": manifest.captured_at,
        "captured_after_partition_day": dg.MetadataValue.bool(manifest.captured_at[:10] > manifest.partition),
        "source_server_version": manifest.server_version,
        "tables": dg.MetadataValue.int(len(tables)),
        "dagster/row_count": dg.MetadataValue.int(manifest.total_rows),
        "total_bytes": dg.MetadataValue.int(manifest.total_bytes),
        "stored_bytes": dg.MetadataValue.int(manifest.stored_bytes),
        "compression": ", ".join(sorted({t.compression for t in tables})) or "none",
        "encryption": ", ".join(sorted({t.encryption for t in tables})) or "none",
        "duration_seconds": dg.MetadataValue.float(round(seconds, 3)),
        "capture_seconds": dg.MetadataValue.float(capture),
        "table_summary": summary,
        "checksums": dg.MetadataValue.json({t.key: {"sha256": t.sha256, "content": t.content_checksum} for t in tables}),
        **per_table_numbers([(t.key, t.rows, t.bytes) for t in tables]),
        **disk_metadata(snapshot.store),
    }
    if capture > 0 and not reused:
        metadata["rows_per_second"] = dg.MetadataValue.float(_rate(manifest.total_rows, capture))
    if tables and preview != "none":
        largest = max(tables, key=lambda t: t.bytes)
        shown = preview_columns(largest, preview, masked_columns)
        metadata["preview_policy"] = preview
        metadata["preview_hidden_columns"] = dg.MetadataValue.json(
            [c for c in largest.column_names if c not in shown])
        if shown and largest.encryption != "none" and not snapshot.identities:
            metadata[f"preview ({largest.key})"] = dg.MetadataValue.md(
                "(encrypted: this step holds no identity to show it with, as it should not)")
        elif shown:
            metadata[f"preview ({largest.key})"] = dg.MetadataValue.md(
                preview_markdown(snapshot.open_csv(largest), shown))
    return metadata


def preview_columns(entry: TableEntry, preview: str, masked_columns: Collection[str]) -> list[str]:
    """The columns a preview may show: under `masked`, none that an environment masks or that looks personal."""
    if preview == "raw":
        return entry.column_names
    hidden = hidden_columns(entry, set(masked_columns))
    return [name for name in entry.column_names if name not in hidden]


def _cell(value: str) -> str:
    if len(value) > PREVIEW_CELL_CHARS:
        value = value[: PREVIEW_CELL_CHARS - 1] + "…"
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def preview_markdown(csv_path: Path | BinaryIO, columns: list[str]) -> str:
    """The first rows of a snapshot file, `columns` only, read from its first PREVIEW_BYTES alone."""
    header, rows = head(csv_path, PREVIEW_ROWS, PREVIEW_BYTES, keep=PREVIEW_CELL_CHARS * 4)
    positions = [header.index(name) for name in columns if name in header]
    lines = ["| " + " | ".join(_cell(header[p]) for p in positions) + " |",
             "|" + "|".join("---" for _ in positions) + "|"]
    lines += ["| " + " | ".join(_cell(row[p]) for p in positions) + " |" for row in rows]
    return "\n".join(lines)

# Dagster's freshness checks read an asset's age from this key of its materialization.
LAST_UPDATED = "dagster/last_updated_timestamp"


def load_metadata(report: LoadReport, manifest: Manifest, snapshot: SnapshotLocation, target: str,
                  pruned: PruneReport) -> dict:
    summary = dg.MetadataValue.table(
        records=[
            dg.TableRecord({"table": t.key, "rows": t.rows, "bytes": t.bytes, "seconds": t.seconds,
                            "rows_per_second": _rate(t.rows, t.seconds), "rebuild_seconds": t.rebuild_seconds,
                            "checksum": "matches prod" if t.checksum_verified else "not checked"})
            for t in sorted(report.tables, key=lambda t: t.key)
        ],
        schema=LOAD_TABLE_SCHEMA,
    )
    return {
        "target": target,
        "snapshot_path": dg.MetadataValue.path(snapshot.url),
        "snapshot_captured_at": manifest.captured_at,
        # The age of what the environment holds, which its freshness check measures (not the load's time).
        LAST_UPDATED: dg.MetadataValue.timestamp(datetime.fromisoformat(manifest.captured_at)),
        "tables": dg.MetadataValue.int(len(report.tables)),
        "dagster/row_count": dg.MetadataValue.int(report.total_rows),
        "total_bytes": dg.MetadataValue.int(report.total_bytes),
        "duration_seconds": dg.MetadataValue.float(report.seconds),
        "rows_per_second": dg.MetadataValue.float(_rate(report.total_rows, report.seconds)),
        "checksums_verified": dg.MetadataValue.bool(all(t.checksum_verified for t in report.tables)),
        "deferred_constraints": dg.MetadataValue.bool(report.deferred_constraints),
        "sequences_reset": dg.MetadataValue.json(report.sequences_reset),
        "indexes_rebuilt": dg.MetadataValue.int(report.indexes_rebuilt),
        "foreign_keys_readded": dg.MetadataValue.int(report.foreign_keys_readded),
        "foreign_key_seconds": dg.MetadataValue.float(report.foreign_key_seconds),
        "verify_seconds": dg.MetadataValue.float(report.verify_seconds),
        # Tables the loading role does not own keep their indexes during COPY (the slower path).
        "tables_loaded_with_indexes_in_place": dg.MetadataValue.json(report.fallback_tables),
        "materialized_views_refreshed": dg.MetadataValue.json(report.materialized_views_refreshed),
        "materialized_views_not_refreshed": dg.MetadataValue.json(report.materialized_views_skipped),
        "table_summary": summary,
        "snapshots_deleted": dg.MetadataValue.json(pruned.deleted),
        "snapshot_bytes_freed": dg.MetadataValue.int(pruned.freed_bytes),
        **disk_metadata(snapshot.store),
        **per_table_numbers([(t.key, t.rows, t.bytes) for t in report.tables]),
        **subset_metadata(report),
    }


SUBSET_SCHEMA = dg.TableSchema(columns=[dg.TableColumn("table", "string"), dg.TableColumn("rows_kept", "int"),
                                        dg.TableColumn("snapshot_rows", "int"), dg.TableColumn("percent_kept", "float")])


def subset_metadata(report: LoadReport) -> dict:
    """Rows kept against the snapshot, per subset table, and in all: what a subset saved."""
    if not report.subset_rows:
        return {}
    records = [dg.TableRecord({"table": table, "rows_kept": kept, "snapshot_rows": total,
                               "percent_kept": round(100 * kept / total, 2) if total else 100.0})
               for table, (kept, total) in sorted(report.subset_rows.items())]
    kept = sum(k for k, _ in report.subset_rows.values())
    total = sum(t for _, t in report.subset_rows.values())
    return {"subset_tables": dg.MetadataValue.table(records, schema=SUBSET_SCHEMA),
            "subset_rows_kept": dg.MetadataValue.int(kept),
            "subset_snapshot_rows": dg.MetadataValue.int(total)}
