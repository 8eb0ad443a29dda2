"""Stream production tables into a snapshot (a folder or an object store) from one consistent point in time."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import IsolationLevel, sql

from .bigrows import copy_large_rows, large_row_filter
from ..pg.catalog import Column, TableRef, TableSize, columns_of, list_tables, own_rows, partitioned_tables, quote_ident, \
    select_tables, table_sizes
from ..verify.checksum import ChecksumRequest, checksum_many, content_checksum
from .copyout import copy_out
from ..errors import HiddenRowsError, is_disk_full, snapshot_space_error
from ..pg.locks import LockPolicy, acquire, lock_statement, lock_table_full, try_lock
from ..schema.definitions import Definitions, read_definitions
from ..schema.dump import SchemaDumpError, dump_schema
from ..snapshot.manifest import SCHEMA_DUMP_NAME, ColumnEntry, DumpObject, Manifest, PartEntry, SequenceEntry, \
    TableEntry, remove_manifest, write_manifest
from .split import PageRange, page_ranges, part_stem
from ..progress import Log, Ticker
from ..pg.sequences import owned_sequences, sequence_states
from ..pg.session import prepare_transaction
from ..storage import MANIFEST_NAME, SnapshotLocation, as_location
from ..storage.location import SNAPSHOT_ASSET

# Production is never a place to end other sessions: the snapshot waits for a migration's lock
# (logging who holds it) for this long, then fails and names it.
SNAPSHOT_LOCKS = LockPolicy("wait")
# A table this large is checksummed by the connection that captured it, right after, so large
# tables' checksums run in parallel too; smaller ones are checksummed together at the end, many
# to a statement, where one round trip each would cost more than the work.
CHECKSUM_AT_ONCE_BYTES = 4 << 20


def snapshot_file_name(table: TableRef, location: SnapshotLocation | None = None) -> str:
    return location.object_name(table.key) if location is not None else f"{table.key}.csv"


@dataclass(frozen=True)
class TablePlan:
    """What capturing one table needs, read from the catalog for all tables at once."""

    table: TableRef
    columns: list[Column]  # generated columns left out: the target computes them
    partitioned: bool
    size: TableSize | None

    @property
    def checksum_at_once(self) -> bool:
        return self.size is not None and self.size.bytes >= CHECKSUM_AT_ONCE_BYTES

    @property
    def rows(self) -> sql.Composed:
        # Rows of inheritance children belong to those tables, not to this one (pg_dump does the
        # same). A partitioned table is read whole through its parent.
        return own_rows(self.table, {self.table} if self.partitioned else ())


@dataclass(frozen=True)
class _Work:
    """One unit a capture connection takes: a table, one part of a split table, or a split table's checksum."""

    plan: TablePlan
    part: PageRange | None = None
    checksum: bool = False

    @property
    def weight(self) -> int:
        size = self.plan.size.bytes if self.plan.size else 0
        return 0 if self.checksum else size // (2 if self.part else 1)


def take_snapshot(
    conn: psycopg.Connection,
    snapshot: SnapshotLocation | Path,
    *,
    partition: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    source: str = "",
    checksums: bool = True,
    log: Log | None = None,
    before_writing: Callable[[list[TableSize]], None] | None = None,
    connect: Callable[[], AbstractContextManager[psycopg.Connection]] | None = None,
    jobs: int = 1,
    locks: LockPolicy = SNAPSHOT_LOCKS,
    split_bytes: int | None = None,
) -> Manifest:
    """Copy the selected tables of `conn` into `snapshot` and write its manifest last.

    All tables are read in one READ ONLY, REPEATABLE READ transaction, so they show one point in
    time, as pg_dump does, and, as pg_dump does, they are locked in ACCESS SHARE mode first, so no
    migration can change them half-way. Any manifest already in the folder is removed first: if
    this capture fails half-way the folder is marked incomplete rather than mixing old and new files.

    With `jobs` > 1, up to `jobs - 1` more connections from `connect` join that transaction's
    snapshot (`pg_export_snapshot`, as `pg_dump -j` does) and capture tables at the same time,
    largest first. A helper that cannot connect is logged and the others carry on.

    `before_writing` receives the selected tables' sizes before any file is touched (the disk
    guard). Running out of space removes the snapshot's files: nothing half-written stays.
    Objects are encoded as `snapshot.encoding` says (zstd, age), each as it streams.
    """
    location = as_location(snapshot)
    prepare_transaction(conn, IsolationLevel.REPEATABLE_READ, read_only=True)
    selected: list[TableRef] = []
    try:
        plans, entries, server_version, definitions, dump = _capture(
            conn, location, include, exclude, checksums, log, before_writing, connect, jobs, locks, selected,
            split_bytes)
    except psycopg.errors.OutOfMemory as exc:
        raise lock_table_full(conn, exc, selected, SNAPSHOT_ASSET, exclusive=False) from None
    _remove_stale_files(location, {part.file for e in entries for part in e.objects} | ({dump.file} if dump else set()))
    manifest = Manifest(
        partition=partition,
        captured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        server_version=server_version,
        source=source,
        include=list(include),
        exclude=list(exclude),
        tables=entries,
        selected=[p.table.key for p in plans],
        definitions=definitions.to_plain(),
        schema_dump=dump,
    )
    write_manifest(location, manifest)
    return manifest


def _capture(conn, location, include, exclude, checksums, log, before_writing, connect, jobs, locks,
             selected: list[TableRef], split_bytes: int | None
             ) -> tuple[list[TablePlan], list[TableEntry], str, Definitions, DumpObject | None]:
    """The snapshot's one transaction; `selected` receives the tables as soon as they are known."""
    with conn.transaction():
        # As pg_dump does: with row security off, a table whose policies would hide rows from
        # this role makes the read fail instead of returning fewer rows.
        conn.execute("SET LOCAL row_security = off")
        selected.extend(select_tables(list_tables(conn), list(include), list(exclude)))
        plans = _plan(conn, selected)
        _lock(conn, plans, locks, log)
        # Production's definitions from the same point in time as the rows: the catalog's, and
        # pg_dump's, which runs beside the capture in this transaction's exported snapshot.
        definitions = read_definitions(conn, [p.table for p in plans])
        if before_writing is not None:
            before_writing([p.size for p in plans if p.size is not None])
        remove_manifest(location)
        try:
            with Ticker(log) as ticker:
                capture = _Capture(location, checksums, log, ticker, split_bytes)
                entries = capture.all(conn, plans, connect, jobs)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            _discard(location)
            raise snapshot_space_error(
                f"The disk holding {location} filled up while the snapshot was written ({exc.strerror}); "
                "the partial files were removed."
            ) from None
        if checksums:
            _checksum_small_tables(conn, plans, entries)
        _record_sequences(conn, entries)
        server_version = conn.execute("SELECT pg_catalog.current_setting('server_version')").fetchone()[0]
        dump = _store_dump(conn, location, plans, definitions, log)
    return plans, entries, server_version, definitions, dump


def _store_dump(conn: psycopg.Connection, location: SnapshotLocation, plans: list[TablePlan], definitions: Definitions,
                log: Log | None) -> DumpObject | None:
    """pg_dump of the captured tables, their partitions and the objects they need, in this
    transaction's snapshot, as one more object of the snapshot. Without it the snapshot still loads
    under schema: strict and shared, so a failed dump is logged, not fatal."""
    snapshot_id = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
    relations = [p.table.quoted for p in plans]
    relations += [p.ref.quoted for t in definitions.tables for p in t.partitions]
    relations += [f"{quote_ident(r.schema)}.{quote_ident(r.tag)}" for r in definitions.requires if r.kind == "SEQUENCE"]
    schemas = sorted({r.tag for r in definitions.requires if r.kind == "SCHEMA"})
    try:
        data = dump_schema(conn, snapshot_id, relations, schemas)
    except SchemaDumpError as exc:
        if log is not None:
            log(f"snapshot: {exc} Environments under schema: add or production cannot create tables from it.")
        return None
    name = f"{SCHEMA_DUMP_NAME}{location.encoding.suffix()}"
    with location.writer(name) as writer:
        writer.write(data)
        stored = writer.commit()
    location.store.sync(location.name, [name])
    return DumpObject(name, writer.plain_bytes, stored.sha256, stored.size, writer.encoding.compression,
                      writer.encoding.encryption)


def _plan(conn: psycopg.Connection, tables: list[TableRef]) -> list[TablePlan]:
    columns = columns_of(conn, tables)
    partitioned = partitioned_tables(conn, tables)
    sizes = table_sizes(conn, tables)
    return [TablePlan(t, [c for c in columns.get(t, []) if not c.generated], t in partitioned, sizes.get(t))
            for t in tables]


def _lock(conn: psycopg.Connection, plans: list[TablePlan], policy: LockPolicy, log: Log | None) -> None:
    """ACCESS SHARE on every table, as pg_dump takes it: a migration waits for the snapshot, not the reverse."""
    relations = [p.table.ident.as_string(conn) for p in plans]
    statement = lock_statement(relations, "ACCESS SHARE", only=[not p.partitioned for p in plans])
    acquire(conn, statement, relations, "ACCESS SHARE", policy, who=SNAPSHOT_ASSET, log=log)


class _Capture:
    """Writes tables into one snapshot folder, over one or several connections."""

    def __init__(self, snapshot: SnapshotLocation, checksums: bool, log: Log | None, ticker: Ticker,
                 split_bytes: int | None = None):
        self.snapshot = snapshot
        self.checksums = checksums
        self.log = log
        self.ticker = ticker
        self.split_bytes = split_bytes
        self.written: list[str] = []
        self._lock = threading.Lock()

    def all(self, conn: psycopg.Connection, plans: list[TablePlan],
            connect: Callable[[], AbstractContextManager[psycopg.Connection]] | None, jobs: int) -> list[TableEntry]:
        works = self._works(conn, plans)
        helpers = min(jobs, len(works)) - 1 if connect is not None else 0
        if helpers <= 0:
            done = [self.run(conn, work) for work in works]
        else:
            done = self._in_parallel(conn, works, connect, helpers)
        # Synced once at the end, before the manifest names the objects (see FolderStore.sync).
        self.snapshot.store.sync(self.snapshot.name, self.written)
        return self._entries(plans, works, done)

    def _works(self, conn: psycopg.Connection, plans: list[TablePlan]) -> list[_Work]:
        works: list[_Work] = []
        for plan in plans:
            ranges = []
            if self.split_bytes and plan.size and not plan.partitioned \
                    and large_row_filter(plan.columns, plan.size) is None:
                ranges = page_ranges(conn, plan.table, plan.size.bytes, self.split_bytes)
            if not ranges:
                works.append(_Work(plan))
                continue
            works += [_Work(plan, part) for part in ranges]
            if self.checksums:
                works.append(_Work(plan, checksum=True))
        return works

    def run(self, conn: psycopg.Connection, work: _Work):
        if work.checksum:
            return content_checksum(conn, work.plan.table, [c.name for c in work.plan.columns])[1]
        if work.part is not None:
            return self._part(conn, work.plan, work.part)
        return self.table(conn, work.plan)

    def _entries(self, plans: list[TablePlan], works: list[_Work], done: list) -> list[TableEntry]:
        """One entry per table: a split table's parts gathered under it, in order."""
        by_table: dict[TableRef, list] = {}
        for work, result in zip(works, done):
            by_table.setdefault(work.plan.table, []).append((work, result))
        entries = []
        for plan in plans:
            results = by_table[plan.table]
            if results[0][0].part is None:
                entries.append(results[0][1])
                continue
            parts = [result for work, result in results if work.part is not None]
            checksum = next((result for work, result in results if work.checksum), "")
            entries.append(TableEntry(
                schema=plan.table.schema, name=plan.table.name, file="",
                columns=[ColumnEntry(c.name, c.type) for c in plan.columns],
                rows=sum(p.rows for p in parts), bytes=sum(p.bytes for p in parts), sha256="",
                content_checksum=checksum, seconds=0.0, stored_bytes=sum(p.stored_bytes for p in parts),
                compression=parts[0].compression, encryption=parts[0].encryption, parts=parts))
        return entries

    def _in_parallel(self, conn, works: list[_Work], connect, helpers: int) -> list:
        """The main connection and `helpers` others, sharing one exported snapshot, largest tables first.

        A helper locks each table with NOWAIT before reading it, as pg_dump's workers do: if
        someone queued for an exclusive lock after the main connection locked the table, the
        helper would wait behind them while they wait for the main connection, for ever. Such a
        table goes back to the main connection, which already holds its lock.
        """
        snapshot_id = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
        queue = deque(sorted(range(len(works)), key=lambda n: -works[n].weight))
        handed_back: list[int] = []
        captured: dict[int, object] = {}
        failures: list[BaseException] = []
        lock = self._lock

        def work(connection: psycopg.Connection, helper: bool) -> None:
            while True:
                with lock:
                    if failures or not queue:
                        return
                    number = queue.popleft()
                try:
                    if helper and not _lock_nowait(connection, works[number].plan):
                        with lock:
                            handed_back.append(number)
                        continue
                    result = self.run(connection, works[number])
                except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                    with lock:
                        failures.append(exc)
                    return
                with lock:
                    captured[number] = result

        def helper(number: int) -> None:
            try:
                with connect() as connection:
                    _join_snapshot(connection, snapshot_id)
                    work(connection, helper=True)
                    connection.rollback()
            except psycopg.Error as exc:
                # Production may be short of connections: fewer helpers is slower, not wrong.
                if self.log is not None:
                    self.log(f"snapshot: helper connection {number} unavailable ({str(exc).strip()}); "
                             "the other connections capture its share")

        threads = [threading.Thread(target=helper, args=(n,), name=f"snapshot helper {n}")
                   for n in range(1, helpers + 1)]
        for thread in threads:
            thread.start()
        work(conn, helper=False)
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        for number in handed_back:
            captured[number] = self.run(conn, works[number])
        return [captured[n] for n in range(len(works))]

    def _part(self, conn: psycopg.Connection, plan: TablePlan, part: PageRange) -> PartEntry:
        """One page range of a plain table into its own object; the first carries the header."""
        file_name = self.snapshot.object_name(part_stem(plan.table, part.number))
        header = part.number == 0
        query = sql.SQL("COPY (SELECT {cols} FROM {table} WHERE {where}) TO STDOUT (FORMAT csv{header})").format(
            cols=sql.SQL(", ").join(sql.Identifier(c.name) for c in plan.columns), table=plan.rows,
            where=part.condition(), header=sql.SQL(", HEADER" if header else ""))
        label = f"{plan.table.key} part {part.number + 1}"
        with self.ticker.track("snapshot", label) as progress, self.snapshot.writer(file_name) as writer:
            rows = copy_out(conn, query, writer.write, progress.advance, header=header)
            stored = writer.commit()
        with self._lock:
            self.written.append(file_name)
        return PartEntry(plan.table.key, file_name, part.first_page, part.last_page, rows, writer.plain_bytes,
                         stored.sha256, stored.size, writer.encoding.compression, writer.encoding.encryption, header)

    def table(self, conn: psycopg.Connection, plan: TablePlan) -> TableEntry:
        try:
            return self._copy_out(conn, plan)
        except psycopg.errors.InsufficientPrivilege as exc:
            if "row-level security" not in str(exc):
                raise
            user = conn.info.user
            raise HiddenRowsError(
                f"Table {plan.table.key} has row-level security policies that would hide rows from {user}, so "
                f"the snapshot would silently miss rows; it was refused, as pg_dump refuses. Ask an "
                f"administrator to run ALTER ROLE {user} BYPASSRLS (or to disable row security on the "
                f"table), or exclude {plan.table.key} in snapshot.exclude."
            ) from None

    def _copy_out(self, conn: psycopg.Connection, plan: TablePlan) -> TableEntry:
        file_name = snapshot_file_name(plan.table, self.snapshot)
        names = [c.name for c in plan.columns]
        large = large_row_filter(plan.columns, plan.size)
        query = sql.SQL("COPY (SELECT {cols} FROM {table}{where}) TO STDOUT (FORMAT csv, HEADER)").format(
            cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
            table=plan.rows,
            where=sql.SQL(" WHERE NOT ({})").format(large) if large is not None else sql.SQL(""),
        )
        with self.ticker.track("snapshot", plan.table.key) as progress, self.snapshot.writer(file_name) as writer:
            rows = copy_out(conn, query, writer.write, progress.advance, header=True)
            if large is not None:
                rows += copy_large_rows(conn, plan.table, plan.columns, large, partitioned=plan.partitioned,
                                        write=writer.write, advance=progress.advance)
            stored = writer.commit()
        with self._lock:
            self.written.append(file_name)
        seconds = progress.seconds
        checksum = content_checksum(conn, plan.table, names)[1] if self.checksums and plan.checksum_at_once else ""
        if self.log is not None and seconds >= 1:
            self.log(progress.line())
        return TableEntry(
            schema=plan.table.schema,
            name=plan.table.name,
            file=file_name,
            columns=[ColumnEntry(c.name, c.type) for c in plan.columns],
            rows=rows,
            bytes=writer.plain_bytes,
            sha256=stored.sha256,
            content_checksum=checksum,
            seconds=round(seconds, 3),
            stored_bytes=stored.size,
            compression=writer.encoding.compression,
            encryption=writer.encoding.encryption,
        )


def _join_snapshot(conn: psycopg.Connection, snapshot_id: str) -> None:
    prepare_transaction(conn, IsolationLevel.REPEATABLE_READ, read_only=True)
    # SET TRANSACTION SNAPSHOT must come first in the transaction psycopg opens with BEGIN.
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    conn.execute("SET LOCAL row_security = off")


def _lock_nowait(conn: psycopg.Connection, plan: TablePlan) -> bool:
    relation = plan.table.ident.as_string(conn)
    return try_lock(conn, lock_statement([relation], "ACCESS SHARE", only=[not plan.partitioned], nowait=True))


def _discard(snapshot: SnapshotLocation) -> None:
    snapshot.store.delete(snapshot.name, list(snapshot.files()))


def _checksum_small_tables(conn: psycopg.Connection, plans: list[TablePlan], entries: list[TableEntry]) -> None:
    pending = [(plan, entry) for plan, entry in zip(plans, entries) if not plan.checksum_at_once]
    found = checksum_many(conn, [ChecksumRequest.of(plan.table, entry.column_names) for plan, entry in pending])
    for (_, entry), checksums in zip(pending, found):
        entry.content_checksum = checksums[0][1]


def _record_sequences(conn: psycopg.Connection, entries: list[TableEntry]) -> None:
    """Production's serial and identity sequences, read once for all tables after their rows."""
    owned = owned_sequences(conn, [e.ref for e in entries])
    states = sequence_states(conn, [s.sequence for s in owned])
    by_table = {e.ref: e for e in entries}
    for seq in owned:
        state = states[seq.sequence]
        by_table[seq.table].sequences.append(SequenceEntry(seq.column, seq.sequence, state.last_value, state.is_called))


def _remove_stale_files(snapshot: SnapshotLocation, keep: set[str]) -> None:
    """Drop objects of tables no longer selected (or stored under other settings), and temporaries
    from an interrupted capture."""
    stale = [name for name in snapshot.files() if name not in keep and name != MANIFEST_NAME]
    if stale:
        snapshot.store.delete(snapshot.name, stale)
