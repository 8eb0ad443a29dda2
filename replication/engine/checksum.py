"""Order-independent checksums of a table's content, computed by the server on prod and targets.

A checksum is "h64:<rows>:<sum>": the sum, over rows, of a 64-bit hash of each row. A row's hash
XORs one hash per column, each the column type's own extended hash function (the one hash
joins and hash partitioning use, which PostgreSQL keeps stable across versions so that hash
partitions survive pg_upgrade) seeded with the column's position, so swapped values change it.
Summing rather than XORing rows keeps duplicate rows from cancelling out. Hashing values in
binary is about four times cheaper than hashing each row's printed text, the first way
("<rows>:<sum>" of md5s, still read so that retained snapshots keep verifying).

Values a type calls equal hash equal (numeric 1.0 and 1.00, -0.0 and 0.0); text is hashed in
the "C" collation, byte by byte. Types outside VALUE_HASHED_TYPES are hashed by their text,
which `session.PINNED_SETTINGS` makes identical on prod and targets.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .catalog import TableRef, is_partitioned
from .errors import LoadVerificationError

HASH64 = "h64"
MD5_TEXT = "md5"

# Built-in types whose hash depends on the value alone. Enums hash by OID and reg* types hold
# OIDs, both of which differ between databases; json, xml, geometric types, ranges, composites
# and extension types are unhashable or not known to be safe: those are hashed by their text.
# An array or a domain counts as its element or base type.
VALUE_HASHED_TYPES = (
    "bool", "int2", "int4", "int8", "numeric", "float4", "float8", "oid", "xid8", "pg_lsn",
    "text", "varchar", "bpchar", "char", "name", "bytea", "uuid", "jsonb",
    "date", "time", "timetz", "timestamp", "timestamptz", "interval", "inet", "cidr", "macaddr", "macaddr8",
)

# Per column: NOT NULL or not, whether it takes COLLATE, whether an array sits between it and
# its base type, and the base type's extended hash function (NULL: hashed by its text).
_COLUMN_HASHES = """
WITH RECURSIVE resolved(attnum, typ, is_array) AS (
    SELECT a.attnum, a.atttypid, false FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = %(table)s::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT r.attnum, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END, r.is_array OR t.typtype <> 'd'
    FROM resolved r JOIN pg_catalog.pg_type t ON t.oid = r.typ
    WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0)
)
SELECT a.attname, a.attnotnull, a.attcollation <> 0, r.is_array,
       (SELECT p.amproc::pg_catalog.regproc::pg_catalog.text
        FROM pg_catalog.pg_opclass oc
        JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'
        JOIN pg_catalog.pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 2
                                   AND p.amproclefttype = oc.opcintype AND p.amprocrighttype = oc.opcintype
        WHERE oc.opcdefault
          AND oc.opcintype = CASE t.typname WHEN 'varchar' THEN 'pg_catalog.text'::pg_catalog.regtype
                                            WHEN 'cidr' THEN 'pg_catalog.inet'::pg_catalog.regtype
                                            ELSE t.oid END)
FROM resolved r
JOIN pg_catalog.pg_type t ON t.oid = r.typ
JOIN pg_catalog.pg_attribute a ON a.attrelid = %(table)s::pg_catalog.regclass AND a.attnum = r.attnum
WHERE NOT (t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0))
  AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.typname = ANY(%(types)s)
"""


def checksum_algorithm(checksum: str) -> str:
    """The algorithm a stored checksum was made with, to compute a comparable one.

    No stored checksum (a snapshot taken without them) compares with nothing: the default.
    """
    if not checksum or checksum.startswith(HASH64 + ":"):
        return HASH64
    return MD5_TEXT


def content_checksum(
    conn: psycopg.Connection, table: TableRef, columns: list[str], *, algorithm: str | None = None
) -> tuple[int, str]:
    """Row count and checksum of the given columns of a table (see the module's description).

    A plain table is read with ONLY, as the snapshot reads it: inheritance children's rows are
    their own tables'. `algorithm` defaults to HASH64; to compare with a stored checksum, pass
    `checksum_algorithm(stored)`.
    """
    return content_checksums(conn, table, [columns], algorithm=algorithm)[0]


def content_checksums(
    conn: psycopg.Connection, table: TableRef, column_sets: list[list[str]], *, algorithm: str | None = None
) -> list[tuple[int, str]]:
    """`content_checksum` of several sets of columns of one table, in one read of it."""
    prefix = "" if (algorithm or HASH64) == MD5_TEXT else f"{HASH64}:"
    count, *totals = conn.execute(checksum_query(conn, table, column_sets, algorithm=algorithm)).fetchone()
    return [(count, f"{prefix}{count}:{total}") for total in totals]


def checksum_query(
    conn: psycopg.Connection, table: TableRef, column_sets: list[list[str]], *, algorithm: str | None = None
) -> sql.Composed:
    """The query `content_checksums` runs: one row of count(*) and one sum per column set."""
    algorithm = algorithm or HASH64
    only = sql.SQL("" if is_partitioned(conn, table) else "ONLY ")
    if algorithm == MD5_TEXT:
        row_hashes = [
            sql.SQL("('x' || left(md5(ROW({})::text), 16))::bit(64)::bigint::numeric").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in columns))
            for columns in column_sets
        ]
    else:
        if conn.info.server_version < 110000:
            raise LoadVerificationError(
                f"Table {table.key} was checksummed with the extended hash functions of PostgreSQL 11 and later; "
                f"this server is {conn.info.server_version // 10000}. Upgrade it, or re-materialize prod_snapshot."
            )
        rows = conn.execute(_COLUMN_HASHES, {"table": table.ident.as_string(conn), "types": list(VALUE_HASHED_TYPES)})
        hashes = {name: details for name, *details in rows.fetchall()}
        row_hashes = [_row_hash(hashes, columns) for columns in column_sets]
    sums = sql.SQL(", ").join(sql.SQL("coalesce(sum({}), 0)::text").format(h) for h in row_hashes)
    return sql.SQL("SELECT count(*), {sums} FROM {only}{table} AS t").format(sums=sums, only=only, table=table.ident)


def _row_hash(hashes: dict[str, list], columns: list[str]) -> sql.Composable:
    def term(position: int, column: str) -> sql.Composable:
        value: sql.Composable = sql.Identifier("t", column)
        not_null, collatable, is_array, function = hashes.get(column, (False, False, False, None))
        if function is None:
            value, function = sql.SQL('{}::pg_catalog.text COLLATE pg_catalog."C"').format(value), "hashtextextended"
        else:
            if is_array:
                function = "hash_array_extended"
            if collatable:
                value = sql.SQL('{} COLLATE pg_catalog."C"').format(value)
        hashed = sql.SQL("{}({}, {})").format(
            sql.SQL(function if "." in function else f"pg_catalog.{function}"), value, sql.Literal(position))
        if not_null:
            return hashed
        # Hash functions return NULL for NULL: a per-position constant keeps the row's hash
        # defined and tells a NULL in one column from a NULL in another.
        return sql.SQL("coalesce({}, {})").format(hashed, sql.Literal(_null_hash(position)))

    if not columns:
        return sql.SQL("0::pg_catalog.int8")
    return sql.SQL(" # ").join(term(position, column) for position, column in enumerate(columns, 1))


def _null_hash(position: int) -> int:
    value = (position * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value
