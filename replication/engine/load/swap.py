"""Load an environment without taking it dark: build the new copy beside the live tables, then switch.

1. Plan as the load in place does (schema, privileges, masks, subset), and read what depends on
   the tables (`dependents`); anything a switch cannot carry refuses before a write.
2. Sweep what an interrupted swap left, then create an empty copy of every table in a private
   schema (`shadow`, `clone`).
3. Fill the copies with `jobs` connections at once, largest first, each table in its own
   transaction with COPY FREEZE (a split table's parts side by side, one transaction each, unless one
   connection fills them all); masked and subset tables together in one, through their staging.
4. Build keys and indexes in parallel; ANALYZE; then foreign keys, triggers, policies, grants and
   comments, as pg_restore's post-data does; verify rows and checksums.
5. Switch in one short transaction (`switch`), then drop yesterday's tables.

The environment serves yesterday's tables until the switch commits, and today's in full after;
a crash at any moment leaves one or the other, and the private schemas, which no other role can
see, for the next run to sweep.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from ..errors import SwapRefusedError
from ..pg.catalog import ForeignKeyEdge, TableRef, foreign_keys
from ..pg.connection import Connect
from ..pg.locks import LockPolicy, acquire, lock_statement
from ..privacy.mask import MaskRule, set_key
from ..progress import Log, Ticker
from ..snapshot.manifest import Manifest, PartEntry
from ..storage import SnapshotLocation, as_location
from ..subset.plan import SubsetRule
from .clone import Shape, create_empty, index_statements, read_shapes, relations_of, settings_statements, \
    trigger_statements
from ..capture.split import page_ranges
from ..verify.checksum import HASH64, ChecksumRequest, checksum_algorithm, checksum_many, sum_of_parts
from .copy import compare_checksum, copy_in, copy_tables, type_mismatch
from .dependents import Dependents, find_dependents
from .plan import LoadPlan, plan_for_report
from .rebuild import ForeignKey, add_foreign_key
from .report import LoadReport, TableLoad
from .shadow import ShadowNames, create_private, hold_swap_lock, release_swap_lock, remove_leftovers, \
    shadow_names
from .switch import drop_outgoing, switch
from .keep import KeepPlan, read_kept_rows, write_kept_rows
from .transaction import advance_owned_sequences, record_kept, verify_tables
from .workers import Task, Workers

DEFAULT_JOBS = 2
# A plain table this large is checksummed in page ranges by several connections at once.
RANGED_CHECKSUM_BYTES = 64 << 20
# Test hook: the step kills itself with SIGKILL at this phase (filling, indexing, switch, dropping),
# as a crash would, so the tests can prove what a crash at each moment leaves.
KILL_AT_VARIABLE = "REPLICATION_KILL_AT"


def swap_dependents(conn: psycopg.Connection, tables: list[TableRef]) -> Dependents:
    """What is bound to these tables (with their partitions), and in `blockers` why they cannot be
    swapped in this environment; reads only. Tables the environment lacks are left to the load's
    plan, which names them."""
    present = [TableRef(*row) for row in conn.execute(
        "SELECT s, t FROM unnest(%s::pg_catalog.text[], %s::pg_catalog.text[]) u(s, t) "
        "WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(s) || '.' || pg_catalog.quote_ident(t)) IS NOT NULL",
        ([t.schema for t in tables], [t.name for t in tables])).fetchall()]
    found = find_dependents(conn, [relation for relation, _ in relations_of(conn, present)])
    conn.rollback()
    return found


def refusal(environment: str, blockers: list[str]) -> SwapRefusedError:
    listed = "\n".join(f"  - {b}" for b in blockers)
    return SwapRefusedError(
        f"{environment}: load: swap cannot replace these tables, so nothing was written:\n{listed}\n"
        f"Fix what is named, or set environments.{environment}.load to auto (which loads in place where a swap "
        "cannot) or in_place.")


def swap_snapshot(
    connect: Connect,
    conn: psycopg.Connection,
    snapshot: SnapshotLocation | Path,
    manifest: Manifest,
    *,
    environment: str,
    jobs: int = DEFAULT_JOBS,
    verify_checksums: bool = True,
    locks: LockPolicy = LockPolicy(),
    masks: dict[str, dict[str, MaskRule]] | None = None,
    masking_key: str | None = None,
    subset: dict[str, SubsetRule] | None = None,
    personal_data: str = "allow",
    log: Log | None = None,
    warn: Log | None = None,
    dependents: Dependents | None = None,
    keep: KeepPlan | None = None,
    sources: dict | None = None,
) -> LoadReport:
    """Replace the environment's replicated tables with the snapshot by building beside them and switching.

    `connect` opens further connections to the environment (the `jobs` workers); `conn` is the
    step's own. Masks, subsets and personal data behave as in `load_snapshot`. `dependents` is
    what `swap_dependents` read just before, when the caller chose the swap by it. `keep` holds the
    rows the environment owns: read from the live tables once the new copy is verified, and added
    to it before the switch. `sources` are production's entries of tables whose columns the
    environment partly lacks (schema: shared), filled through staging.
    """
    started = time.monotonic()
    location = as_location(snapshot)
    location.require_identity(manifest.tables)
    report = LoadReport(environment, mode="swap", jobs=jobs)
    plan = plan_for_report(conn, manifest, report, masks or {}, masking_key, subset, personal_data, warn,
                           sources=sources)
    tables = plan.order
    relations = relations_of(conn, tables)  # the tables and their partitions, parents first
    every = [relation for relation, _ in relations]
    found = dependents if dependents is not None else find_dependents(conn, every)
    if found.blockers:
        raise refusal(environment, found.blockers)
    shapes = read_shapes(conn, relations)
    every = _parents_first(every, shapes)
    own_keys = [fk for fk in foreign_keys(conn, tables) if fk.child in set(every)]
    names = shadow_names(conn, every)
    conn.rollback()
    conn.autocommit = True
    hold_swap_lock(conn)
    report.leftovers_removed = remove_leftovers(conn, environment, log)
    workers = Workers(connect, jobs)
    try:
        phases = report.phase_seconds
        phases["plan"] = round(time.monotonic() - started, 3)
        with _timed(phases, "create"):
            waited = _create(conn, plan, every, shapes, names, locks, log)
        plan.into = {table: names.new_ref(table) for table in tables}
        _say(log, f"{environment}: building the new copy of {len(tables)} tables beside the live ones with {jobs} "
                  f"connection(s); readers keep yesterday's until the switch")
        with _timed(phases, "fill"):
            expected_unmasked = _fill(workers, location, plan, report, verify_checksums, masking_key, log)
        with _timed(phases, "indexes"):
            _build_indexes(workers, plan, every, shapes, names, report)
        with _timed(phases, "analyze"):
            workers.run([_analyze(names.new_ref(t)) for t in _largest_first(plan, tables)])
        with _timed(phases, "keys_and_verify"):
            _verify(workers, conn, plan, report, expected_unmasked if verify_checksums else None,
                    lambda c: _add_foreign_keys(c, every, names, own_keys, report))
        workers.close()
        if keep:
            with _timed(phases, "keep"):
                _carry_kept_rows(conn, plan, report, keep)
        with _timed(phases, "definitions"):
            _add_definitions(conn, every, shapes, names)
        _kill_point("switching")
        sequences: list[str] = []

        def inside(c: psycopg.Connection) -> None:
            sequences.extend(advance_owned_sequences(c, manifest))
            _kill_point("switch")

        switched, held = switch(conn, tables, every, names, shapes, found, locks, environment, log, inside=[inside],
                                partitioned=plan.partitioned)
    except BaseException:
        workers.close()
        # Nothing live changed: the half-built copy goes now (or, if the connection is gone, next run).
        drop_outgoing(conn, names, environment, warn)
        release_swap_lock(conn)
        raise
    report.lock_wait_seconds = round(waited.seconds + switched.seconds, 3)
    report.terminated_sessions = waited.terminated + switched.terminated
    report.switch_seconds = round(held, 3)
    report.sequences_reset = sequences
    report.repointed = _repointed(found)
    report.materialized_views_refreshed = [m.regclass for m in found.materialized_views] + list(found.refreshed)
    _say(log, f"{environment}: switched to the new copy, the tables held for {held:.3f} s (built in "
              + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()) + ")")
    _kill_point("dropping")
    with _timed(phases, "drop"):
        drop_outgoing(conn, names, environment, warn)
    release_swap_lock(conn)
    conn.autocommit = False
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _carry_kept_rows(conn: psycopg.Connection, plan: LoadPlan, report: LoadReport, keep: KeepPlan) -> None:
    """The rows the environment owns, read from the live tables (as they are now: rows written
    after this and before the switch are not carried) into the verified new copy, in one transaction."""
    with conn.transaction():
        xid = _transaction_id(conn)
        read_kept_rows(conn, keep)
        write_kept_rows(conn, plan.environment, keep, plan.order, plan.target)
        record_kept(conn, plan, report, keep)
    for kept in keep.tables:
        key = kept.table.key
        # The kept rows carry this transaction's id: the checks hold the table to it as well.
        report.table_transactions[key] = ",".join(filter(None, [report.table_transactions.get(key, ""), xid]))


def _create(conn: psycopg.Connection, plan: LoadPlan, every: list[TableRef], shapes: dict[TableRef, Shape],
            names: ShadowNames, locks: LockPolicy, log: Log | None):
    """The private schemas and every table's empty copy, in one transaction; returns the lock wait."""
    tables = plan.order
    conn.autocommit = False
    with conn.transaction():
        # Copying a definition reads the live table: a migration holding it makes this wait, in
        # short attempts under the environment's policy, never stuck behind it unbounded.
        relations = [t.quoted for t in tables]
        waited = acquire(conn, lock_statement(relations, "ACCESS SHARE", only=[t not in plan.partitioned for t in tables]),
                         relations, "ACCESS SHARE", locks, who=plan.environment, replicated=relations, log=log)
        create_private(conn, [*names.new.values(), *names.old.values()])
        for relation in every:
            create_empty(conn, shapes[relation], names)
            _grant_identity_sequences(conn, shapes[relation], names)
    conn.autocommit = True
    return waited


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    began = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(time.monotonic() - began, 3)


def _parents_first(relations: list[TableRef], shapes: dict[TableRef, Shape]) -> list[TableRef]:
    """Partition and inheritance parents before their children: a copy is created under its parent's copy."""
    ordered: list[TableRef] = []
    placed: set[TableRef] = set()

    def place(relation: TableRef) -> None:
        if relation in placed:
            return
        shape = shapes[relation]
        for parent in [*([shape.parent] if shape.parent else []), *shape.inherits]:
            if parent in shapes:
                place(parent)
        placed.add(relation)
        ordered.append(relation)

    for relation in relations:
        place(relation)
    return ordered


def _say(log: Log | None, line: str) -> None:
    if log is not None:
        log(line)


def _kill_point(phase: str) -> None:
    if os.environ.get(KILL_AT_VARIABLE) == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def _largest_first(plan: LoadPlan, tables: list[TableRef]) -> list[TableRef]:
    return sorted(tables, key=lambda t: -plan.entries[t].bytes)


def _grant_identity_sequences(conn: psycopg.Connection, shape: Shape, names: ShadowNames) -> None:
    copy = names.new_regclass(shape.ref)
    for column, grants in shape.identity_grants.items():
        (sequence,) = conn.execute("SELECT pg_catalog.pg_get_serial_sequence(%s, %s)", (copy, column)).fetchone()
        for grant in grants:
            conn.execute(grant.replace("{target}", sequence, 1))


def _fill(workers: Workers, location: SnapshotLocation, plan: LoadPlan, report: LoadReport, verify: bool,
          masking_key: str | None, log: Log | None) -> dict[TableRef, tuple[list[str], str]]:
    """Every copy filled: plain tables one transaction each (a split table one per part, or all its
    parts in one with a single connection), masked and subset tables together in one."""
    special = [t for t in plan.order if plan.subsetted(t) or plan.entries[t].key in plan.masks or t in plan.sources]
    plain = [t for t in _largest_first(plan, plan.order) if t not in special]
    expected_unmasked: dict[TableRef, tuple[list[str], str]] = {}
    tasks: list[tuple[int, Task]] = []
    lock = threading.Lock()

    loaded: dict[TableRef, list[tuple[str, TableLoad]]] = {}

    def fill(table: TableRef, parts: list[PartEntry | None], whole: bool, ticker: Ticker) -> Task:
        """One transaction filling `parts` of the table (`[None]`: its one file); `whole` when they are all of it."""
        def task(conn: psycopg.Connection) -> None:
            entry = plan.entries[table]
            with conn.transaction():
                xid = _transaction_id(conn)
                copy = plan.target(table)
                # FREEZE needs the table emptied in the same transaction; it is empty, so this costs
                # nothing, and it spares the first scan after (an index build) setting every row's
                # hint bits. Not for a partitioned table, which routes rows to its partitions, nor
                # for a split table whose parts fill it side by side from several transactions.
                freeze = whole and table not in plan.partitioned
                if freeze:
                    conn.execute(f"TRUNCATE ONLY {copy.quoted}")
                loads = []
                for part in parts:
                    try:
                        loads.append(copy_in(conn, location, entry, plan.environment, plan.header, freeze, ticker,
                                             into=copy, part=part))
                    except psycopg.errors.DataError as exc:
                        raise type_mismatch(plan, table, exc) or exc
                    _kill_point("filling")
            load = TableLoad(entry.key, sum(t.rows for t in loads), sum(t.bytes for t in loads),
                             round(sum(t.seconds for t in loads), 3), False)
            with lock:
                loaded.setdefault(table, []).append((xid, load))
        return task

    def fill_special(ticker: Ticker) -> Task:
        def task(conn: psycopg.Connection) -> None:
            with conn.transaction():
                xid = _transaction_id(conn)
                if masking_key:
                    set_key(conn, masking_key)
                expected_unmasked.update(copy_tables(conn, location, plan, report, verify, True, ticker, masking_key,
                                                     tables=special))
                for table in special:
                    report.table_transactions[plan.entries[table].key] = xid
        return task

    with Ticker(log) as ticker:
        if special:
            tasks.append((sum(plan.entries[t].bytes for t in special), fill_special(ticker)))
        for table in plain:
            parts = plan.entries[table].parts or [None]
            # One connection fills a split table's parts one after another anyway: in one transaction, with FREEZE.
            groups = [parts] if workers.jobs == 1 else [[part] for part in parts]
            tasks += [(sum((part or plan.entries[table]).bytes for part in group),
                       fill(table, group, len(groups) == 1, ticker)) for group in groups]
        tasks.sort(key=lambda pair: -pair[0])
        workers.run([task for _, task in tasks])
    for table, loads in loaded.items():
        entry = plan.entries[table]
        report.table_transactions[entry.key] = ",".join(xid for xid, _ in loads)
        report.tables.append(TableLoad(entry.key, sum(t.rows for _, t in loads), entry.bytes,
                                       max(t.seconds for _, t in loads), False))
    position = {plan.entries[t].key: n for n, t in enumerate(plan.order)}
    report.tables.sort(key=lambda loaded: position[loaded.key])
    return expected_unmasked


def _transaction_id(conn: psycopg.Connection) -> str:
    return str(conn.execute("SELECT pg_catalog.txid_current() % 4294967296").fetchone()[0])


def _build_indexes(workers: Workers, plan: LoadPlan, every: list[TableRef], shapes: dict[TableRef, Shape],
                   names: ShadowNames, report: LoadReport) -> None:
    """Keys and indexes on the copies, as many at once as there are connections, largest tables first."""
    copies = {shapes[r].regclass: names.new_regclass(r) for r in every}
    trees: list[list[str]] = []
    for table in _largest_first(plan, plan.order):
        trees += index_statements(shapes[table], names, copies)

    def build(statements: list[str]) -> Task:
        def task(c: psycopg.Connection) -> None:
            _kill_point("indexing")
            for statement in statements:
                c.execute(statement)
        return task

    workers.run([build(tree) for tree in trees])
    report.indexes_rebuilt = sum(len(tree) for shape in shapes.values() for tree in shape.indexes)


def _add_foreign_keys(conn: psycopg.Connection, every: list[TableRef], names: ShadowNames,
                      own_keys: list[ForeignKeyEdge], report: LoadReport) -> None:
    """The copies' foreign keys, validated, one after another on one connection: two added at once
    to one table can deadlock on its lock.

    After ANALYZE: a new table has no statistics, and validating a foreign key without them can
    take a plan many times slower than the anti-join it needs.
    """
    started = time.monotonic()
    swapped = set(every)
    for fk in own_keys:
        definition = fk.definition
        if fk.parent in swapped:
            definition = definition.replace(f" REFERENCES {fk.parent_relation}(",
                                            f" REFERENCES {names.new_regclass(fk.parent)}(", 1)
        add_foreign_key(conn, ForeignKey(fk.name, names.new_regclass(fk.child), definition, fk.comment))
    report.foreign_keys_readded = len(own_keys)
    report.foreign_key_seconds = round(time.monotonic() - started, 3)


def _add_definitions(conn: psycopg.Connection, every: list[TableRef], shapes: dict[TableRef, Shape],
                     names: ShadowNames) -> None:
    """Triggers (after the data, as pg_restore adds them), policies, grants and comments, on the copies."""
    for relation in every:
        for statement in trigger_statements(shapes[relation], names) + settings_statements(shapes[relation], names):
            conn.execute(statement)


def _verify(workers: Workers, conn: psycopg.Connection, plan: LoadPlan, report: LoadReport,
            expected_unmasked: dict[TableRef, tuple[list[str], str]] | None,
            alongside: Task) -> None:
    """Every copy's rows and checksums against the manifest (unless `expected_unmasked` is None:
    verification is off), tables spread over the connections; a large plain table's checksum is
    summed from page ranges read at once, so it is not the last connection's alone.

    `alongside` runs first, on a connection of its own: the foreign keys, whose validation locks
    the tables against writes only, so it and the checksums' reads go on at once.
    """
    started = time.monotonic()
    tasks: list[Task] = [alongside]
    if expected_unmasked is None:
        workers.run(tasks)
        return
    ranged: dict[TableRef, list] = {}
    lock = threading.Lock()

    def check(table: TableRef) -> Task:
        return lambda c: verify_tables(c, plan, report, expected_unmasked, tables=[table])

    def check_range(table: TableRef, where: str) -> Task:
        entry = plan.entries[table]

        def task(c: psycopg.Connection) -> None:
            request = ChecksumRequest.of(plan.target(table), entry.column_names,
                                         algorithm=checksum_algorithm(entry.content_checksum), where=where)
            ((_, checksum),) = checksum_many(c, [request])[0]
            with lock:
                ranged[table].append(checksum)
        return task

    for table in _largest_first(plan, plan.order):
        entry = plan.entries[table]
        jobs = workers.jobs
        ranges = [] if (jobs < 2 or table in plan.partitioned or table in expected_unmasked or plan.subsetted(table)
                        or not entry.content_checksum.startswith(HASH64 + ":") or entry.bytes < RANGED_CHECKSUM_BYTES) \
            else page_ranges(conn, plan.target(table), entry.bytes, max(entry.bytes // jobs, 1))
        if ranges:
            ranged[table] = []
            tasks += [check_range(table, r.condition().as_string(conn)) for r in ranges]
        else:
            tasks.append(check(table))
    workers.run(tasks)
    loads = {loaded.key: loaded for loaded in report.tables}
    for table, parts in ranged.items():
        entry = plan.entries[table]
        # Row counts were checked by COPY.
        compare_checksum(entry, plan.environment, sum_of_parts(parts, entry.rows))
        loads[entry.key].checksum_verified = True
    report.verify_seconds = round(time.monotonic() - started, 3)


def _analyze(table: TableRef) -> Task:
    return lambda c: c.execute(f"ANALYZE {table.quoted}")


def _repointed(found: Dependents) -> list[str]:
    return ([f"view {v.regclass}" for v in found.views]
            + [f"function {name}" for name, _ in found.functions]
            + [f"materialized view {m.regclass} (rebuilt)" for m in found.materialized_views]
            + [f"materialized view {name} (refreshed)" for name in found.refreshed]
            + [f"foreign key {fk.name} of {fk.child_relation}" for fk in found.outside_foreign_keys]
            + [f"sequence {s} (owned by {t.key}.{c})" for s, t, c in found.serial_sequences]
            + [f"publication {p.name} ({p.table.key})" for p in found.publications])
