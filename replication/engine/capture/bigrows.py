"""Rows too large to pass through COPY in one piece, written to the snapshot in bounded chunks.

PostgreSQL allows a value of up to 1 GB, and COPY sends each row as one protocol message: libpq
buffers the whole message, hands back a copy of it, and the client's own buffers add more, so a
row of 200 MB of CSV costs several times that in the snapshot step's memory. Tables whose TOAST
holds enough to contain such a row are therefore read in two passes over the same snapshot:

1. COPY, as for every table, of the rows whose values add up to less than ROW_BYTES_LIMIT;
2. each larger row on its own: the server turns every value into its output text once, and a
   cursor hands it over in CHUNK_BYTES pieces, which are appended to the same file with COPY's
   CSV quoting. The step never holds more than a few chunks, whatever the row's size.

Both passes read in the snapshot's transaction, so the file holds exactly the table's rows, only
in another order, which neither the loaders' COPY nor the content checksums care about.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from ..pg.catalog import Column, TableRef, TableSize

# A row whose values add up to more than this (bytea counted as the hex text COPY prints) takes
# the chunked path; smaller rows, nearly all, take COPY. text and bytea count by their size
# uncompressed, which the TOAST pointer records. Other types (jsonb, arrays, xml) cannot tell it
# without printing the value: a small one counts by its stored size, four times over, and one
# stored in more than TOAST_BYTES_MIN is printed once to be measured, because a document of
# repeated keys can print 100 MiB from a few hundred KiB of TOAST and must not reach COPY whole.
ROW_BYTES_LIMIT = 8 << 20
# A table whose TOAST holds less than this cannot hold such a row, however well its values
# compress (lz4 and pglz stop short of 256:1), so it needs no second pass.
TOAST_BYTES_MIN = ROW_BYTES_LIMIT // 256
CHUNK_BYTES = 1 << 20
_TEXT_TYPES = ("text", "varchar", "bpchar", "citext", "name")


def _estimate(column: Column) -> sql.Composable | None:
    ident = sql.Identifier(column.name)
    if column.storage_length != -1:
        return None  # fixed-length: a few bytes at most
    if column.base_type == "bytea":
        # octet_length reads the size from the TOAST pointer; the value itself is not fetched.
        return sql.SQL("2 * pg_catalog.octet_length({})").format(ident)
    if column.base_type in _TEXT_TYPES:
        return sql.SQL("pg_catalog.octet_length({})").format(ident)
    return sql.SQL("CASE WHEN pg_catalog.pg_column_size({0}) > {1} THEN pg_catalog.octet_length({0}::pg_catalog.text) "
                   "ELSE 4 * pg_catalog.pg_column_size({0}) END").format(ident, sql.Literal(TOAST_BYTES_MIN))


def large_row_filter(columns: list[Column], size: TableSize | None) -> sql.Composable | None:
    """A condition true for the rows that must take the chunked path, or None when none can."""
    if size is None or size.toast_bytes < TOAST_BYTES_MIN:
        return None  # no row outgrows the limit without its values living in TOAST
    terms = [term for term in map(_estimate, columns) if term is not None]
    if not terms:
        return None
    total = sql.SQL(" + ").join(sql.SQL("coalesce({}, 0)::pg_catalog.int8").format(t) for t in terms)
    return sql.SQL("({}) > {}").format(total, sql.Literal(ROW_BYTES_LIMIT))


def _output_functions(conn: psycopg.Connection, table: TableRef, columns: list[Column]) -> dict[str, str]:
    rows = conn.execute(
        """
        SELECT a.attname, t.typoutput::pg_catalog.regproc::pg_catalog.text
        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = %s::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (table.ident.as_string(conn),),
    ).fetchall()
    found = dict(rows)
    return {c.name: found[c.name] for c in columns}


def _row_query(outputs: dict[str, str], columns: list[Column], relation: str) -> sql.Composable:
    """One row's values as (column number, needs quotes, chunk) rows, in column then chunk order.

    Each value becomes its output text once (the type's own output function, exactly as COPY
    prints it), converted to UTF8 as COPY converts to the pinned client_encoding; the chunks are
    byte ranges of it, so no multibyte character is walked to find an offset.
    """
    texts = sql.SQL(", ").join(
        sql.SQL("pg_catalog.textin({}({})) AS {}").format(
            sql.SQL(outputs[c.name] if "." in outputs[c.name] else f"pg_catalog.{outputs[c.name]}"),
            sql.Identifier(c.name), sql.Identifier(f"t{n}"))
        for n, c in enumerate(columns, 1)
    )
    # As COPY CSV decides: quote an empty string (to tell it from NULL) and anything holding the
    # delimiter, the quote character or a line break.
    prepared = sql.SQL(", ").join(
        sql.SQL("pg_catalog.convert_to({t}, 'UTF8') AS {b}, ({t} = '' OR pg_catalog.strpos({t}, ',') > 0 "
                "OR pg_catalog.strpos({t}, '\"') > 0 OR pg_catalog.strpos({t}, E'\\n') > 0 "
                "OR pg_catalog.strpos({t}, E'\\r') > 0) AS {q}").format(
            t=sql.Identifier(f"t{n}"), b=sql.Identifier(f"b{n}"), q=sql.Identifier(f"q{n}"))
        for n in range(1, len(columns) + 1)
    )
    values = sql.SQL(", ").join(
        sql.SQL("({}, v.{}, v.{})").format(sql.Literal(n), sql.Identifier(f"b{n}"), sql.Identifier(f"q{n}"))
        for n in range(1, len(columns) + 1)
    )
    # OFFSET 0 keeps the planner from pulling the subqueries up, which would compute every output
    # text again for each chunk.
    return sql.SQL(
        "SELECT u.n, u.q, pg_catalog.substr(u.b, s, {chunk}) "
        "FROM (SELECT {prepared} FROM (SELECT {texts} FROM ONLY {table} WHERE ctid = %s::pg_catalog.tid OFFSET 0) w "
        "OFFSET 0) v "
        "CROSS JOIN LATERAL (VALUES {values}) AS u(n, b, q) "
        "CROSS JOIN LATERAL pg_catalog.generate_series(1, greatest(coalesce(pg_catalog.octet_length(u.b), 0), 1), "
        "{chunk}) AS s"
    ).format(chunk=sql.Literal(CHUNK_BYTES), prepared=prepared, texts=texts, values=values, table=sql.SQL(relation))


def copy_large_rows(
    conn: psycopg.Connection,
    table: TableRef,
    columns: list[Column],
    condition: sql.Composable,
    *,
    partitioned: bool,
    write: Callable[[bytes], None],
    advance: Callable[[int, int], None] | None = None,
) -> int:
    """Append every row matching `condition` to the file as COPY's CSV would print it; returns the count."""
    # Where the rows are: their partition (ctid is per partition) and tuple id, in the snapshot.
    located = conn.execute(
        sql.SQL("SELECT tableoid::pg_catalog.regclass::pg_catalog.text, ctid::pg_catalog.text FROM {only}{table} WHERE {cond}")
        .format(only=sql.SQL("" if partitioned else "ONLY "), table=table.ident, cond=condition)
    ).fetchall()
    if not located:
        return 0
    outputs = _output_functions(conn, table, columns)
    single_column = len(columns) == 1
    for number, (relation, ctid) in enumerate(located):
        # `relation` is regclass text, already quoted and schema-qualified by the server.
        query = _row_query(outputs, columns, relation)
        written = _write_row(conn, query, ctid, write, f"replication_large_row_{number}", single_column)
        if advance:
            advance(written, 1)
    return len(located)


def _write_row(conn: psycopg.Connection, query: sql.Composable, ctid: str, write, cursor_name: str,
               single_column: bool) -> int:
    written = 0
    current = 0
    quoted = False
    # itersize 2: at most two chunks in the client at a time.
    with conn.cursor(name=cursor_name) as cur:
        cur.itersize = 2
        cur.execute(query, (ctid,))
        for number, needs_quotes, chunk in cur:
            if number != current:
                if current:
                    written += _end_field(write, quoted)
                    write(b",")
                    written += 1
                current, quoted = number, bool(needs_quotes)
                if single_column and chunk == b"\\." and not quoted:
                    quoted = True  # COPY quotes a lone \. so that it does not read as end-of-data
                if quoted:
                    write(b'"')
                    written += 1
            if chunk is None:
                continue
            piece = bytes(chunk).replace(b'"', b'""') if quoted else bytes(chunk)
            write(piece)
            written += len(piece)
    written += _end_field(write, quoted)
    write(b"\n")
    return written + 1


def _end_field(write, quoted: bool) -> int:
    if quoted:
        write(b'"')
        return 1
    return 0
