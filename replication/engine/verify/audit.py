"""Read-only audits of a loaded environment, behind the asset checks the UI shows.

Each returns what it found, table by table, so a check can pass or fail with the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef, foreign_key_edges, foreign_keys, own_rows, partitioned_tables
from ..privacy.overlap import HASH_HEX_CHARS, count_overlap
from .checksum import ChecksumRequest, checksum_algorithm, checksum_many
from ..snapshot.csvread import column_hashes
from ..storage import SnapshotLocation, as_location
from ..snapshot.manifest import Manifest
from ..pg.sequences import loaded_maxima, owned_sequences, sequence_states


@dataclass(frozen=True)
class TableAudit:
    table: str
    rows: int
    expected_rows: int
    checksum_matches: bool

    @property
    def ok(self) -> bool:
        return self.rows == self.expected_rows and self.checksum_matches


def compare_with_manifest(
    conn: psycopg.Connection, manifest: Manifest, loaded_checksums: dict[str, str] | None = None,
    expected_rows: dict[str, int] | None = None,
) -> list[TableAudit]:
    """Row count and content checksum of every snapshot table in the target, against the manifest.

    A masked or subset table's checksum is compared with the one recorded right after its load
    instead (`loaded_checksums`), since masking and subsetting change it on purpose; a subset
    table's rows with the count its load kept (`expected_rows`).
    """
    loaded_checksums, expected_rows = loaded_checksums or {}, expected_rows or {}
    expected = {entry.key: loaded_checksums.get(entry.key, entry.content_checksum) for entry in manifest.tables}
    requests = [ChecksumRequest.of(entry.ref, entry.column_names, algorithm=checksum_algorithm(expected[entry.key]))
                for entry in manifest.tables]
    found = []
    for entry, [(rows, checksum)] in zip(manifest.tables, checksum_many(conn, requests)):
        wanted = expected[entry.key]
        found.append(TableAudit(entry.key, rows, expected_rows.get(entry.key, entry.rows),
                                checksum == wanted if wanted else True))
    return found


@dataclass(frozen=True)
class UnchangedAudit:
    table: str
    rows: int
    expected_rows: int
    written_since: int  # rows whose xmin is not the load's transaction: inserted or updated later

    @property
    def ok(self) -> bool:
        return self.rows == self.expected_rows and self.written_since == 0


def unchanged_since_load(conn: psycopg.Connection, manifest: Manifest, transaction_id: str | dict[str, str],
                         expected_rows: dict[str, int] | None = None) -> list[UnchangedAudit]:
    """Every table's rows against the snapshot, and whether each is still a row the load wrote.

    The load verified every table's checksum before COMMIT, and every row it wrote carries its
    transaction id as xmin (COPY FREEZE and VACUUM FREEZE keep it). With the same count and no row
    of another xmin, the table is what was verified: no UPDATE, INSERT, DELETE or TRUNCATE since.
    That proves from outside, in one pass over xmin, what re-hashing every value proved. A subset
    table is held to the count its load kept (`expected_rows`). A swap writes each table in its
    own transaction (a split table in one per part): then `transaction_id` maps schema.table to
    them, comma-separated.
    """
    def written_by(key: str) -> str:
        return transaction_id.get(key, "0") if isinstance(transaction_id, dict) else transaction_id

    expected_rows = expected_rows or {}
    partitioned = partitioned_tables(conn, [entry.ref for entry in manifest.tables])
    found = []
    for start in range(0, len(manifest.tables), 100):
        batch = manifest.tables[start:start + 100]
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {n}::int, count(*), count(*) FILTER (WHERE NOT xmin = ANY ({xids}::xid[])) FROM {t}").format(
                n=sql.Literal(position), xids=sql.Literal("{" + written_by(entry.key) + "}"),
                t=own_rows(entry.ref, partitioned))
            for position, entry in enumerate(batch))
        counts = {n: (rows, written) for n, rows, written in conn.execute(query).fetchall()}
        for position, entry in enumerate(batch):
            rows, written = counts[position]
            found.append(UnchangedAudit(entry.key, int(rows), expected_rows.get(entry.key, entry.rows), int(written)))
    return found


@dataclass(frozen=True)
class SequenceAudit:
    sequence: str
    table: str
    column: str
    next_value: int
    loaded_max: int | None

    @property
    def ok(self) -> bool:
        return self.loaded_max is None or self.next_value > self.loaded_max


def sequence_positions(conn: psycopg.Connection, tables: list[TableRef]) -> list[SequenceAudit]:
    """For each serial or identity column: the value nextval would give and the loaded maximum."""
    owned = owned_sequences(conn, tables)
    states = sequence_states(conn, [seq.sequence for seq in owned])
    maxima = loaded_maxima(conn, owned)
    return [SequenceAudit(seq.sequence, seq.table.key, seq.column, states[seq.sequence].next_value,
                          maxima.get(seq.sequence)) for seq in owned]


@dataclass(frozen=True)
class OrphanAudit:
    constraint: str
    table: str
    references: str
    orphans: int
    how: str = "anti-join"


PROVEN_BY_LOAD = "validated by the load; both tables unchanged since"


def orphaned_rows(conn: psycopg.Connection, tables: list[TableRef], unchanged: set[TableRef] = frozenset()
                  ) -> list[OrphanAudit]:
    """Rows whose foreign key (touching a loaded table) points at no row, MATCH SIMPLE semantics.

    A validated foreign key cannot have any; a NOT VALID one, or one someone dropped and re-added
    NOT VALID, can. Each is counted with one anti-join, except a foreign key the load re-validated
    between two tables proven `unchanged` since: no row of either can have moved.
    """
    found = []
    for fk in sorted(foreign_keys(conn, tables), key=lambda fk: (fk.child_relation, fk.name)):
        child, parent = fk.child_relation, fk.parent_relation
        if fk.validated and fk.child in unchanged and fk.parent in unchanged:
            found.append(OrphanAudit(fk.name, child, parent, 0, PROVEN_BY_LOAD))
            continue
        not_null, match = _key_conditions(fk.child_columns, fk.parent_columns, "c")
        # A foreign key binds the rows of its own table only, not those of inheritance children.
        count = conn.execute(
            sql.SQL("SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
                own_rows(fk.child, {fk.child} if fk.child_partitioned else ()), not_null,
                own_rows(fk.parent, {fk.parent} if fk.parent_partitioned else ()), match
            )
        ).fetchone()[0]
        found.append(OrphanAudit(fk.name, child, parent, int(count)))
    return found


def _key_conditions(child_columns, parent_columns, alias: str) -> tuple[sql.Composable, sql.Composable]:
    """A foreign key's "every column set" on the child rows `alias`, and their match with parent rows `p`.

    MATCH SIMPLE: a key with a NULL column references nothing, so it needs no parent.
    """
    not_null = sql.SQL(" AND ").join(sql.SQL("{}.{} IS NOT NULL").format(sql.Identifier(alias), sql.Identifier(c))
                                     for c in child_columns)
    match = sql.SQL(" AND ").join(sql.SQL("p.{} = {}.{}").format(sql.Identifier(pc), sql.Identifier(alias), sql.Identifier(cc))
                                  for cc, pc in zip(child_columns, parent_columns))
    return not_null, match


@dataclass(frozen=True)
class ClosureAudit:
    constraint: str
    table: str
    references: str
    rows: int  # rows of `table` whose key is set
    missing_parents: int  # distinct keys among them that no row of `references` holds


def subset_closure(conn: psycopg.Connection, tables: list[TableRef]) -> list[ClosureAudit]:
    """Every foreign key leaving a loaded table, derived again from the rows it holds now.

    For each, the distinct keys its rows reference and how many of them no parent row holds: a
    subset is closed when none is missing. Counted with an anti-join every time, whether or not
    the constraint is validated, so it holds for NOT VALID keys and for keys dropped since.
    """
    edges = foreign_key_edges(conn, tables)
    partitioned = partitioned_tables(conn, tables)
    found = []
    for edge in edges:
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in edge.child_columns)
        not_null, _ = _key_conditions(edge.child_columns, edge.parent_columns, "c")
        _, match = _key_conditions(edge.child_columns, edge.parent_columns, "k")
        rows, missing = conn.execute(sql.SQL(
            "SELECT (SELECT count(*) FROM {child} c WHERE {not_null}), count(*) FROM "
            "(SELECT DISTINCT {cols} FROM {child} c WHERE {not_null}) k WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match})"
        ).format(child=own_rows(edge.child, partitioned), parent=own_rows(edge.parent, partitioned), cols=cols,
                 not_null=not_null, match=match)).fetchone()
        found.append(ClosureAudit(edge.name, edge.child.key, edge.parent.key, int(rows), int(missing)))
    return found


@dataclass(frozen=True)
class MaskAudit:
    column: str
    compared: int  # distinct production values, NULL and empty left out
    equal: int  # of those, how many the environment still holds in that column


def masked_value_overlaps(
    conn: psycopg.Connection, snapshot: SnapshotLocation | Path, manifest: Manifest, masked: dict[str, list[str]]
) -> list[MaskAudit]:
    """For every masked column: how many production values the environment still holds there.

    Production's values are read from the snapshot file, hashed here, and only the hashes are
    copied (streamed) into a temporary table on the target, which compares them with hashes of its
    own values in SQL. Memory stays bounded by the COPY buffer; no production value is sent.
    """
    found = []
    location = as_location(snapshot)
    entries = {e.key: e for e in manifest.tables}
    partitioned = partitioned_tables(conn, [entries[table].ref for table in masked])
    with conn.transaction(force_rollback=True):
        conn.execute("CREATE TEMP TABLE replication_prod_hashes (col int, h text) ON COMMIT DROP")
        for table, columns in masked.items():
            entry = entries[table]
            positions = [entry.column_names.index(c) for c in columns]
            conn.execute("TRUNCATE replication_prod_hashes")
            with conn.cursor() as cur, cur.copy("COPY replication_prod_hashes (col, h) FROM STDIN") as copy:
                for digests in column_hashes(location.open_csv(entry), positions):
                    for slot, digest in enumerate(digests):
                        if digest is not None:
                            copy.write_row((slot, digest[:HASH_HEX_CHARS]))
            for slot, column in enumerate(columns):
                prod = sql.SQL("SELECT h FROM replication_prod_hashes WHERE col = {}").format(sql.Literal(slot))
                compared, equal = count_overlap(conn, prod, own_rows(entry.ref, partitioned), column)
                found.append(MaskAudit(f"{table}.{column}", int(compared), int(equal)))
    return found
