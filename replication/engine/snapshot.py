"""Stream production tables into a snapshot folder from one consistent point in time."""

from __future__ import annotations

import errno
import shutil
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import IsolationLevel, sql

from .catalog import TableRef, is_partitioned, list_tables, owned_sequences, select_tables, table_columns
from .checksum import content_checksum
from .copyout import copy_out
from .errors import HiddenRowsError, SnapshotSpaceError
from .files import AtomicWriter, ensure_private_dir, fsync_dir
from .manifest import ColumnEntry, Manifest, SequenceEntry, TableEntry, remove_manifest, write_manifest
from .progress import Log, Progress


def snapshot_file_name(table: TableRef) -> str:
    return f"{table.key}.csv"


def take_snapshot(
    conn: psycopg.Connection,
    snapshot_dir: Path,
    *,
    partition: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    source: str = "",
    checksums: bool = True,
    log: Log | None = None,
    before_writing: Callable[[int], None] | None = None,
    connect: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None,
    jobs: int = 1,
) -> Manifest:
    """Copy the selected tables of `conn` into `snapshot_dir` and write its manifest last.

    All tables are read in one READ ONLY, REPEATABLE READ transaction, so they show one point in
    time, as pg_dump does. Any manifest already in the folder is removed first: if this capture
    fails half-way the folder is marked incomplete rather than mixing old and new files.

    With `jobs` > 1, up to `jobs - 1` more connections from `connect` join that transaction's
    snapshot (`pg_export_snapshot`, as `pg_dump -j` does) and capture tables at the same time,
    largest first. A helper that cannot connect is logged and the others carry on.

    `before_writing` receives the selected tables' size in bytes before any file is touched
    (the disk guard). Running out of space removes the folder's files: nothing half-written stays.
    """
    conn.rollback()
    conn.autocommit = False
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    with conn.transaction():
        # As pg_dump does: with row security off, a table whose policies would hide rows from
        # this role makes the read fail instead of returning fewer rows.
        conn.execute("SET LOCAL row_security = off")
        tables = select_tables(list_tables(conn), list(include), list(exclude))
        sizes = _table_sizes(conn, tables)  # the disk guard's fallback estimate; largest first for helpers
        if before_writing is not None:
            before_writing(sum(sizes.values()))
        ensure_private_dir(snapshot_dir)
        remove_manifest(snapshot_dir)
        try:
            entries = _capture_tables(conn, snapshot_dir, tables, sizes, checksums, log, connect, jobs)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                _discard(snapshot_dir)
                raise SnapshotSpaceError(
                    f"The disk holding {snapshot_dir} filled up while the snapshot was written "
                    f"({exc.strerror}). The partial files were removed and nothing was loaded; no retry is "
                    "scheduled. Free space there, move SNAPSHOT_DIR to a larger volume or lower "
                    "snapshot.keep in replication.yaml, then run the partition again."
                ) from None
            raise
        server_version = conn.execute("SELECT pg_catalog.current_setting('server_version')").fetchone()[0]
    _remove_stale_files(snapshot_dir, {e.file for e in entries})
    manifest = Manifest(
        partition=partition,
        captured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        server_version=server_version,
        source=source,
        include=list(include),
        exclude=list(exclude),
        tables=entries,
        selected=[t.key for t in tables],
    )
    write_manifest(snapshot_dir, manifest)
    return manifest


def _capture_tables(
    conn: psycopg.Connection,
    snapshot_dir: Path,
    tables: list[TableRef],
    sizes: dict[TableRef, int],
    checksums: bool,
    log: Log | None,
    connect: Callable[[], AbstractContextManager[psycopg.Connection]] | None,
    jobs: int,
) -> list[TableEntry]:
    helpers = min(jobs, len(tables)) - 1 if connect is not None else 0
    if helpers <= 0:
        return [_capture_table(conn, snapshot_dir, table, checksums, log) for table in tables]
    snapshot_id = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
    queue = deque(sorted(tables, key=lambda t: -sizes.get(t, 0)))  # largest first: the shortest tail
    captured: dict[TableRef, TableEntry] = {}
    failures: list[BaseException] = []
    lock = threading.Lock()

    def work(connection: psycopg.Connection) -> None:
        while True:
            with lock:
                if failures or not queue:
                    return
                table = queue.popleft()
            try:
                entry = _capture_table(connection, snapshot_dir, table, checksums, log)
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                with lock:
                    failures.append(exc)
                return
            with lock:
                captured[table] = entry

    def helper(number: int) -> None:
        try:
            with connect() as connection:
                _join_snapshot(connection, snapshot_id)
                work(connection)
                connection.rollback()
        except psycopg.Error as exc:
            # Production may be short of connections: fewer helpers is slower, not wrong.
            if log is not None:
                log(f"snapshot: helper connection {number} unavailable ({str(exc).strip()}); "
                    "the other connections capture its share")

    threads = [threading.Thread(target=helper, args=(n,), name=f"snapshot helper {n}") for n in range(1, helpers + 1)]
    for thread in threads:
        thread.start()
    work(conn)
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return [captured[table] for table in tables]


def _join_snapshot(conn: psycopg.Connection, snapshot_id: str) -> None:
    conn.rollback()
    conn.autocommit = False
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    # SET TRANSACTION SNAPSHOT must come first in the transaction psycopg opens with BEGIN.
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    conn.execute("SET LOCAL row_security = off")


def _table_sizes(conn: psycopg.Connection, tables: list[TableRef]) -> dict[TableRef, int]:
    """On-disk size of each table, its partitions included."""
    rows = conn.execute(
        """
        SELECT r.ord, coalesce(sum(pg_catalog.pg_table_size(t.relid)), 0)::bigint
        FROM unnest(%s::pg_catalog.regclass[]) WITH ORDINALITY AS r(oid, ord),
             LATERAL pg_catalog.pg_partition_tree(r.oid) AS t
        GROUP BY r.ord
        """,
        ([t.ident.as_string(conn) for t in tables],),
    ).fetchall()
    return {tables[ordinal - 1]: int(size) for ordinal, size in rows}


def _discard(snapshot_dir: Path) -> None:
    for path in snapshot_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name != ".lock":
            path.unlink(missing_ok=True)


def _capture_table(
    conn: psycopg.Connection, snapshot_dir: Path, table: TableRef, checksums: bool, log: Log | None
) -> TableEntry:
    # Generated columns are recomputed by the target, and COPY cannot write them anyway.
    columns = [c for c in table_columns(conn, table) if not c.generated]
    names = [c.name for c in columns]
    # ONLY for plain tables: rows of inheritance children belong to those tables, not to this
    # one (pg_dump does the same). A partitioned table is read whole through its parent.
    partitioned = is_partitioned(conn, table)
    query = sql.SQL("COPY (SELECT {cols} FROM {only}{table}) TO STDOUT (FORMAT csv, HEADER)").format(
        cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
        only=sql.SQL("" if partitioned else "ONLY "),
        table=table.ident,
    )
    try:
        return _copy_out(conn, snapshot_dir, table, query, columns, names, checksums, log)
    except psycopg.errors.InsufficientPrivilege as exc:
        if "row-level security" not in str(exc):
            raise
        user = conn.info.user
        raise HiddenRowsError(
            f"Table {table.key} has row-level security policies that would hide rows from {user}, so "
            f"the snapshot would silently miss rows; it was refused, as pg_dump refuses. Ask an "
            f"administrator to run ALTER ROLE {user} BYPASSRLS (or to disable row security on the "
            f"table), or exclude {table.key} in snapshot.exclude."
        ) from None


def _copy_out(conn, snapshot_dir, table, query, columns, names, checksums, log) -> TableEntry:
    file_name = snapshot_file_name(table)
    with Progress(log, "snapshot", table.key) as progress, AtomicWriter(snapshot_dir / file_name) as writer:
        rows = copy_out(conn, query, writer.write, progress.advance)
    seconds = progress.seconds
    checksum = content_checksum(conn, table, names)[1] if checksums else ""
    sequences = [
        SequenceEntry(seq.column, seq.sequence, *_sequence_state(conn, seq.sequence))
        for seq in owned_sequences(conn, table)
    ]
    if log is not None and seconds >= 1:
        log(progress.line())
    return TableEntry(
        schema=table.schema,
        name=table.name,
        file=file_name,
        columns=[ColumnEntry(c.name, c.type) for c in columns],
        rows=rows,
        bytes=writer.bytes,
        sha256=writer.sha256,
        content_checksum=checksum,
        seconds=round(seconds, 3),
        sequences=sequences,
    )


def _sequence_state(conn: psycopg.Connection, sequence: str) -> tuple[int, bool]:
    # `sequence` is regclass text, already quoted and schema-qualified by the server.
    last_value, is_called = conn.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(sequence))
    ).fetchone()
    return int(last_value), bool(is_called)


def _remove_stale_files(snapshot_dir: Path, keep: set[str]) -> None:
    """Drop files of tables no longer selected, and temporaries from an interrupted capture."""
    for path in snapshot_dir.iterdir():
        stale_csv = path.suffix == ".csv" and path.name not in keep
        if stale_csv or path.name.endswith(".partial"):
            path.unlink()
    fsync_dir(snapshot_dir)
