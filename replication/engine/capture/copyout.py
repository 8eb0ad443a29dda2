"""COPY ... TO STDOUT read with libpq's own calls, batched into 1 MiB writes.

libpq returns COPY data one row per message. psycopg's `Copy` iterator wraps each row in its
generator and wait machinery, about 0.8 µs per row: on a 1,000,000-row table that made the
snapshot's Python process, not the server, the slower side of the stream. Reading through
`psycopg.pq` (psycopg's documented libpq wrapper) costs half the CPU, and the stream then
runs at the server's pace, as `psql \\copy` does.
"""

from __future__ import annotations

import select
from collections.abc import Callable

import psycopg
from psycopg import errors, pq, sql

BATCH = 1 << 20


def copy_out(
    conn: psycopg.Connection, query: sql.Composable, write: Callable[[bytearray], None],
    advance: Callable[[int, int], None] | None = None, *, header: bool = False,
) -> int:
    """Run a COPY ... TO STDOUT on `conn`'s open transaction; returns the row count.

    `write` receives the data in batches of about 1 MiB; `advance(bytes, rows)` counts them,
    leaving out the header line when the COPY prints one (`header`).
    If `write` raises (a full disk), the COPY is cancelled and drained before the error goes on,
    so the connection can still roll back.
    """
    pgconn = conn.pgconn
    with conn.lock:
        pgconn.send_query(query.as_bytes(conn))
        result = _next_result(pgconn)
        if result.status != pq.ExecStatus.COPY_OUT:
            _drain_results(pgconn)
            raise _error(result, conn)
        try:
            _stream(pgconn, write, advance, -1 if header else 0)
        except BaseException:
            conn.cancel_safe()
            _drain_copy(pgconn)
            raise
        result = _next_result(pgconn)
        _drain_results(pgconn)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise _error(result, conn)
        return result.command_tuples or 0


def _stream(pgconn: pq.abc.PGconn, write: Callable[[bytearray], None], advance, rows: int) -> None:
    batch = bytearray()
    get = pgconn.get_copy_data
    while True:
        size, data = get(1)  # non-blocking: 0 means the next row has not arrived yet
        if size > 0:
            batch += data
            rows += 1
            if len(batch) >= BATCH:
                write(batch)
                if advance:
                    advance(len(batch), rows)
                batch, rows = bytearray(), 0
        elif size == 0:
            _wait_readable(pgconn)
        elif size == -1:
            break
        else:
            raise psycopg.OperationalError(pgconn.get_error_message())
    if batch:
        write(batch)
    if advance:
        advance(len(batch), rows)


def _wait_readable(pgconn: pq.abc.PGconn) -> None:
    select.select([pgconn.socket], [], [])
    pgconn.consume_input()


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
    pgconn.flush()
    while pgconn.is_busy():
        _wait_readable(pgconn)
    result = pgconn.get_result()
    if result is None:
        raise psycopg.OperationalError(pgconn.get_error_message() or "the server sent no result for COPY")
    return result


def _drain_results(pgconn: pq.abc.PGconn) -> None:
    while pgconn.is_busy():
        _wait_readable(pgconn)
    while pgconn.get_result() is not None:
        while pgconn.is_busy():
            _wait_readable(pgconn)


def _drain_copy(pgconn: pq.abc.PGconn) -> None:
    while True:
        size, _ = pgconn.get_copy_data(0)
        if size < 0:
            break
    _drain_results(pgconn)


def _error(result: pq.abc.PGresult, conn: psycopg.Connection) -> psycopg.Error:
    return errors.error_from_result(result, encoding=conn.info.encoding)
