"""COPY TO STDOUT through libpq: the same bytes as psycopg's reader, and clean failures."""

import psycopg
import pytest
from psycopg import sql

from replication.engine.capture.copyout import BATCH, copy_out

QUERY = sql.SQL("COPY (SELECT g, md5(g::text), now()::date FROM generate_series(1, 200000) g) TO STDOUT (FORMAT csv, HEADER)")


def psycopg_bytes(conn: psycopg.Connection, query: sql.Composable) -> bytes:
    with conn.cursor() as cur, cur.copy(query) as copy:
        return b"".join(bytes(row) for row in copy)


def test_same_bytes_and_row_count_as_psycopg_in_batches(cluster):
    with cluster.connect("dev") as conn:
        batches, counted = [], []
        rows = copy_out(conn, QUERY, lambda batch: batches.append(bytes(batch)), lambda n, r: counted.append((n, r)))
        assert rows == 200000 and sum(r for _, r in counted) == 200001  # the header is a message too
        assert b"".join(batches) == psycopg_bytes(conn, QUERY)
        assert len(batches) > 3 and all(len(b) < BATCH + 200 for b in batches)
        assert sum(n for n, _ in counted) == sum(len(b) for b in batches)


def test_a_failing_writer_cancels_the_copy_and_the_connection_recovers(cluster):
    with cluster.connect("dev") as conn:
        def full_disk(batch):
            raise OSError(28, "No space left on device")

        with pytest.raises(OSError, match="No space left"):
            copy_out(conn, QUERY, full_disk)
        conn.rollback()
        assert conn.execute("SELECT 42").fetchone() == (42,)


def test_a_server_error_mid_stream_raises_psycopgs_own_error(cluster):
    failing = sql.SQL("COPY (SELECT 1 / (g - 150000) FROM generate_series(1, 200000) g) TO STDOUT")
    with cluster.connect("dev") as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            copy_out(conn, failing, lambda batch: None)
        conn.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable):
            copy_out(conn, sql.SQL("COPY no_such_table TO STDOUT"), lambda batch: None)
        conn.rollback()
        assert conn.execute("SELECT 42").fetchone() == (42,)
