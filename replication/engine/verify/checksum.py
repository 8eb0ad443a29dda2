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

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef, own_rows_text, partitioned_tables, quote_ident
from ..errors import LoadVerificationError

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

# Per column of each table: NOT NULL or not, whether it takes COLLATE, whether an array sits
# between it and its base type, and the base type's extended hash function (NULL: hashed by its text).
_COLUMN_HASHES = """
WITH RECURSIVE resolved(ord, attrelid, attnum, typ, is_array) AS (
    SELECT r.ord, a.attrelid, a.attnum, a.atttypid, false
    FROM unnest(%(tables)s::pg_catalog.regclass[]) WITH ORDINALITY AS r(oid, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT r.ord, r.attrelid, r.attnum, CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END,
           r.is_array OR t.typtype <> 'd'
    FROM resolved r JOIN pg_catalog.pg_type t ON t.oid = r.typ
    WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0)
), base(ord, attrelid, attnum, typ, is_array) AS (
    SELECT r.* FROM resolved r JOIN pg_catalog.pg_type t ON t.oid = r.typ
    WHERE NOT (t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0))
      AND t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace AND t.typname = ANY(%(types)s)
), functions(typ, function) AS (
    SELECT b.typ,
           (SELECT p.amproc::pg_catalog.regproc::pg_catalog.text
            FROM pg_catalog.pg_opclass oc
            JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'
            JOIN pg_catalog.pg_amproc p ON p.amprocfamily = oc.opcfamily AND p.amprocnum = 2
                                       AND p.amproclefttype = oc.opcintype AND p.amprocrighttype = oc.opcintype
            WHERE oc.opcdefault
              AND oc.opcintype = CASE t.typname WHEN 'varchar' THEN 'pg_catalog.text'::pg_catalog.regtype
                                                WHEN 'cidr' THEN 'pg_catalog.inet'::pg_catalog.regtype
                                                ELSE t.oid END)
    FROM (SELECT DISTINCT typ FROM base) b JOIN pg_catalog.pg_type t ON t.oid = b.typ
)
SELECT b.ord, a.attname, a.attnotnull, a.attcollation <> 0, b.is_array, f.function
FROM base b
JOIN functions f ON f.typ = b.typ
JOIN pg_catalog.pg_attribute a ON a.attrelid = b.attrelid AND a.attnum = b.attnum
"""
# Checksums of this many tables go to the server as one statement: small tables cost a round
# trip each otherwise, which over a thousand tables is most of the verification's time.
BATCH = 100


@dataclass(frozen=True)
class ChecksumRequest:
    """Checksums of one table: one per set of columns, all from one read of it."""

    table: TableRef
    column_sets: tuple[tuple[str, ...], ...]
    algorithm: str = HASH64
    # A condition on the table (a ctid range): the sums of several ranges add up to the table's.
    where: str = ""

    @classmethod
    def of(cls, table: TableRef, *column_sets: list[str], algorithm: str | None = None, where: str = ""
           ) -> "ChecksumRequest":
        return cls(table, tuple(tuple(columns) for columns in column_sets), algorithm or HASH64, where)


def sum_of_parts(checksums: list[str], rows: int) -> str:
    """The HASH64 checksum of a table from those of disjoint parts of it (ranges of its pages, read
    at once): each row is in one part, and the per-row hashes add up."""
    return f"{HASH64}:{rows}:{sum(int(checksum.rsplit(':', 1)[1]) for checksum in checksums)}"


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
    return checksum_many(conn, [ChecksumRequest.of(table, *column_sets, algorithm=algorithm)])[0]


def checksum_many(conn: psycopg.Connection, requests: list[ChecksumRequest]) -> list[list[tuple[int, str]]]:
    """The checksums of many tables: the catalog read once, the tables BATCH to a statement.

    Returns, per request, one (rows, checksum) per column set.
    """
    results: list[list[tuple[int, str]]] = []
    for start in range(0, len(requests), BATCH):
        batch = requests[start:start + BATCH]
        statement = " UNION ALL ".join(f"(SELECT {n}::pg_catalog.int4, q.* FROM ({query}) AS q)"
                                       for n, query in enumerate(_queries(conn, batch)))
        rows = sorted(conn.execute(statement).fetchall())
        for request, (_, count, totals) in zip(batch, rows):
            prefix = "" if request.algorithm == MD5_TEXT else f"{HASH64}:"
            results.append([(count, f"{prefix}{count}:{total}") for total in totals])
    return results


def checksum_query(
    conn: psycopg.Connection, table: TableRef, column_sets: list[list[str]], *, algorithm: str | None = None
) -> sql.Composed:
    """The query `content_checksums` runs: one row of count(*) and an array of one sum per column set."""
    return sql.Composed([sql.SQL(_queries(conn, [ChecksumRequest.of(table, *column_sets, algorithm=algorithm)])[0])])


def _queries(conn: psycopg.Connection, requests: list[ChecksumRequest]) -> list[str]:
    """Each request's query as text: composed as plain strings, as a thousand tables' worth of
    psycopg.sql objects costs more time than running the queries."""
    tables = [r.table for r in requests]
    partitioned = partitioned_tables(conn, tables)
    hashed = [r.table for r in requests if r.algorithm != MD5_TEXT]
    if hashed and conn.info.server_version < 110000:
        raise LoadVerificationError(
            f"Table {hashed[0].key} was checksummed with the extended hash functions of PostgreSQL 11 and later; "
            f"this server is {conn.info.server_version // 10000}. Upgrade it, or re-materialize prod_snapshot."
        )
    hashes = _column_hashes(conn, hashed) if hashed else {}
    queries = []
    for request in requests:
        if request.algorithm == MD5_TEXT:
            row_hashes = [f"('x' || left(md5(ROW({', '.join(map(quote_ident, columns))})::text), 16))::bit(64)::bigint::numeric"
                          for columns in request.column_sets]
        else:
            row_hashes = [_row_hash(hashes.get(request.table, {}), list(columns)) for columns in request.column_sets]
        sums = ", ".join(f"coalesce(sum({h}), 0)::text" for h in row_hashes)
        where = f" WHERE {request.where}" if request.where else ""
        queries.append(f"SELECT count(*), ARRAY[{sums}] FROM {own_rows_text(request.table, partitioned)} AS t{where}")
    return queries


def _column_hashes(conn: psycopg.Connection, tables: list[TableRef]) -> dict[TableRef, dict[str, list]]:
    rows = conn.execute(_COLUMN_HASHES, {"tables": [t.quoted for t in tables],
                                         "types": list(VALUE_HASHED_TYPES)}).fetchall()
    found: dict[TableRef, dict[str, list]] = {}
    for ordinal, name, *details in rows:
        found.setdefault(tables[ordinal - 1], {})[name] = details
    return found


def _row_hash(hashes: dict[str, list], columns: list[str]) -> str:
    def term(position: int, column: str) -> str:
        value = f"t.{quote_ident(column)}"
        not_null, collatable, is_array, function = hashes.get(column, (False, False, False, None))
        if function is None:
            value, function = f'{value}::pg_catalog.text COLLATE pg_catalog."C"', "hashtextextended"
        else:
            if is_array:
                function = "hash_array_extended"
            if collatable:
                value = f'{value} COLLATE pg_catalog."C"'
        hashed = f"{function if '.' in function else f'pg_catalog.{function}'}({value}, {position})"
        if not_null:
            return hashed
        # Hash functions return NULL for NULL: a per-position constant keeps the row's hash
        # defined and tells a NULL in one column from a NULL in another.
        return f"coalesce({hashed}, ({_null_hash(position)})::pg_catalog.int8)"

    if not columns:
        return "0::pg_catalog.int8"
    return " # ".join(term(position, column) for position, column in enumerate(columns, 1))


def _null_hash(position: int) -> int:
    value = (position * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value
