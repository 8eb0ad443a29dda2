"""What a load did, table by table: what the asset shows in its metadata and the checks read back."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..snapshot.manifest import TableTotals


@dataclass
class TableLoad:
    key: str
    rows: int
    bytes: int
    seconds: float
    checksum_verified: bool
    rebuild_seconds: float = 0.0  # recreating this table's keys and indexes after COPY


@dataclass
class LoadReport(TableTotals):
    environment: str
    tables: list[TableLoad] = field(default_factory=list)
    sequences_reset: list[str] = field(default_factory=list)
    deferred_constraints: bool = False
    seconds: float = 0.0
    indexes_rebuilt: int = 0
    foreign_keys_readded: int = 0
    foreign_key_seconds: float = 0.0
    verify_seconds: float = 0.0
    fallback_tables: dict[str, str] = field(default_factory=dict)  # kept their indexes, and why
    materialized_views_refreshed: list[str] = field(default_factory=list)
    materialized_views_skipped: dict[str, str] = field(default_factory=dict)
    masked_columns: dict[str, str] = field(default_factory=dict)  # schema.table.column -> rule
    # Masked and subset tables cannot be compared with production's checksum; their checksum as
    # loaded is kept instead, so a later check can tell whether anything changed since.
    loaded_checksums: dict[str, str] = field(default_factory=dict)
    lock_wait_seconds: float = 0.0  # waiting for other sessions' locks before anything was written
    terminated_sessions: list[str] = field(default_factory=list)  # ended under blocking_sessions: terminate
    # The load transaction's id (32 bits, as xmin shows it): every row it wrote carries it, so a
    # check after COMMIT proves a table unchanged since its verification by reading xmin alone.
    transaction_id: str = ""
    # Masked column -> [distinct production values, how many of them the column still holds],
    # counted in the load transaction while production's staged values were at hand.
    mask_overlaps: dict[str, list[int]] = field(default_factory=dict)
    # Subset tables: schema.table -> [rows kept, rows in the snapshot].
    subset_rows: dict[str, list[int]] = field(default_factory=dict)
    # Subset tables: schema.table -> rows staged, those its prefilter let through (all, without one).
    subset_staged: dict[str, int] = field(default_factory=dict)
    # Columns that look personal and were loaded without a rule (unmasked_pii: warn), with the rule to add.
    unmasked_personal_columns: dict[str, str] = field(default_factory=dict)
    # How the environment was loaded (swap or in_place) and, when load: auto chose, why.
    mode: str = "in_place"
    mode_reason: str = ""
    jobs: int = 1  # connections that filled the environment at once
    # A swap: seconds the switch held the tables (what a reader can wait), and what it re-pointed.
    switch_seconds: float = 0.0
    repointed: list[str] = field(default_factory=list)
    # A swap writes each table in its own transaction: schema.table -> that transaction's id, which
    # stands where transaction_id stands for an in-place load.
    table_transactions: dict[str, str] = field(default_factory=dict)
    leftovers_removed: list[str] = field(default_factory=list)  # private schemas of an interrupted swap
    phase_seconds: dict[str, float] = field(default_factory=dict)  # a swap's: plan, create, fill, ... drop
    # schema: what differed from production before the load, what was skipped, what was changed.
    schema_mode: str = "strict"
    schema_differences: list[str] = field(default_factory=list)
    skipped_tables: list[str] = field(default_factory=list)
    skipped_columns: dict[str, list[str]] = field(default_factory=dict)
    schema_changes: list[str] = field(default_factory=list)
    skipped_grants: list[str] = field(default_factory=list)
    # keep: schema.table -> [rows kept, production rows they replaced]; the tables never replaced;
    # and the rows a table with kept rows held after the load (what the checks expect).
    kept_rows: dict[str, list[int]] = field(default_factory=dict)
    kept_tables: list[str] = field(default_factory=list)
    rows_after_load: dict[str, int] = field(default_factory=dict)
