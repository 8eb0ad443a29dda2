"""Each snapshot object into its table by COPY, or through a private staging table when it is masked or subset."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from ..errors import LoadVerificationError, SchemaMismatchError
from ..pg.catalog import Column, TableRef
from ..pg.staging import staging_table
from ..privacy.mask import MaskRule, mask_expression
from ..privacy.overlap import count_overlap, staged_values
from ..privacy.scrub import SensitiveColumns, describe_error
from ..progress import Ticker
from ..snapshot.manifest import PartEntry, TableEntry
from ..storage import SnapshotLocation
from ..subset.plan import DEFAULT_SUBSET_KEY, RowChooser, kept_condition, stage_table
from ..subset.prefilter import prefilter
from ..verify.checksum import checksum_algorithm, content_checksums
from .plan import LoadPlan
from .report import LoadReport, TableLoad


def copy_tables(conn: psycopg.Connection, location: SnapshotLocation, plan: LoadPlan, report: LoadReport, verify: bool,
                 rebuild_indexes: bool, ticker: Ticker, masking_key: str | None,
                 tables: list[TableRef] | None = None) -> dict[TableRef, tuple[list[str], str]]:
    """COPY every file (or those of `tables`) in foreign-key order; masked tables through their
    staging table, subset tables staged first and inserted once every staged table has chosen its rows."""
    expected_unmasked: dict[TableRef, tuple[list[str], str]] = {}
    staged: dict[TableRef, TableLoad] = {}
    chooser = RowChooser(conn, plan.subset, masking_key or DEFAULT_SUBSET_KEY) if plan.subset else None
    for number, ref in enumerate(plan.order):
        if tables is not None and ref not in tables:
            continue
        try:
            _copy_one(conn, location, plan, report, verify, rebuild_indexes, ticker, number, ref,
                      expected_unmasked, staged, chooser)
        except psycopg.errors.DataError as exc:
            raise type_mismatch(plan, ref, exc) or exc
    if staged:
        chooser.finish()
        for ref, loaded in staged.items():
            _insert_subset(conn, plan, plan.entries[ref], chooser.staged, loaded, report)
    return expected_unmasked


def type_mismatch(plan: LoadPlan, ref: TableRef, exc: psycopg.errors.DataError) -> SchemaMismatchError | None:
    """A production value the environment's column cannot hold, said with both types (or, where
    they are named alike, with the type's definition as the likely cause); None when the error
    names no column of the table."""
    match = re.search(r"column (\S+?)(?::|$)", exc.diag.context or "", re.MULTILINE)
    if match is None:
        return None
    column = match[1].strip('"')
    production = next((c.type for c in plan.entries[ref].columns if c.name == column), None)
    here = next((c.type for c in plan.target_columns.get(ref, []) if c.name == column), None)
    if production is None or here is None:
        return None
    # PostgreSQL's message, DETAIL and HINT, with the value it quotes (production's data) hidden.
    said = describe_error(exc, SensitiveColumns())
    if production == here:
        return SchemaMismatchError(
            f"{plan.environment}: a value of column {column!r} of table {ref.key} ({here}) was refused here: {said}\n"
            "The load was rolled back. The type's definition differs from production's (an enum value or a "
            "domain's check production has changed): bring it level with the migrations, or set schema: add or "
            "production.")
    return SchemaMismatchError(
        f"{plan.environment}: a value of column {column!r} of table {ref.key} does not fit: the column is {production} "
        f"in production and {here} here: {said}\nThe load was rolled back. Change the column's type with the "
        "migrations, or set schema: production, which takes production's types.")


def _copy_one(conn, location, plan, report, verify, rebuild_indexes, ticker, number, ref,
              expected_unmasked, staged, chooser) -> None:
    """One table of copy_tables, as its rules say."""
    entry = plan.entries[ref]
    if plan.subsetted(ref):
        where = prefilter(conn, plan.subset, ref, chooser.staged, chooser.bitmaps) if chooser.incremental else None
        staging, staged[ref] = _stage_subset_table(conn, location, entry, plan, number, verify, ticker, where)
        report.subset_staged[entry.key] = staged[ref].rows
        chooser.add(ref, staging, filtered=where is not None)
        report.tables.append(staged[ref])
        return
    if entry.key in plan.masks or ref in plan.sources:
        loaded, expected, overlaps = _copy_staged(conn, location, entry, plan, number, verify, ticker)
        report.tables.append(loaded)
        report.mask_overlaps.update(overlaps)
        expected_unmasked[ref] = expected
        return
    # FREEZE writes rows already frozen, sparing a later VACUUM; PostgreSQL allows it on plain
    # tables truncated in this transaction.
    freeze = rebuild_indexes and ref not in plan.partitioned
    report.tables.append(copy_in(conn, location, entry, plan.environment, plan.header, freeze, ticker,
                                  into=plan.target(ref)))


def _stage_subset_table(conn: psycopg.Connection, location: SnapshotLocation, entry: TableEntry, plan: LoadPlan,
                        number: int, verify: bool, ticker: Ticker,
                        where: sql.Composable | None) -> tuple[TableRef, TableLoad]:
    """The file into a private temporary table: whole, or the rows that pass its prefilter `where`.

    Where every column has production's type in the target, it is staged as text: the values are
    production's own output (every object is read through its sha256), and the same types' input
    functions give back production's values for the rows that are kept. Otherwise it is staged
    typed and checked against production's checksum there, as a whole load is.
    """
    staging = stage_table(conn, plan.subset, entry.ref, number)
    loaded = copy_in(conn, location, entry, plan.environment, plan.header, False, ticker, into=staging, where=where)
    if verify and entry.ref not in plan.subset.as_text:
        algorithm = checksum_algorithm(entry.content_checksum)
        (full,) = content_checksums(conn, staging, [entry.column_names], algorithm=algorithm)
        compare_checksum(entry, plan.environment, full[1])
    return staging, loaded


def _insert_subset(conn: psycopg.Connection, plan: LoadPlan, entry: TableEntry, staged: dict[TableRef, TableRef],
                   loaded: TableLoad, report: LoadReport) -> None:
    """The chosen rows of one staged table into the real one, masked on the way where the environment masks it."""
    rules = plan.masks.get(entry.key, {})
    kept = sql.SQL("(SELECT {} FROM {} c WHERE {}) t").format(
        plan.subset.typed_columns(entry.ref, "c"), staged[entry.ref].ident, kept_condition(plan.subset, entry.ref, staged))
    loaded.rows = _insert_masked(conn, plan.target(entry.ref), entry, rules, plan.mask_columns.get(entry.key, {}), kept)
    report.subset_rows[entry.key] = [loaded.rows, entry.rows]
    if rules:
        report.mask_overlaps.update({f"{entry.key}.{name}": mask_overlap(conn, staged[entry.ref], plan.rows(entry.ref), name)
                                     for name in rules})


def _copy_staged(
    conn: psycopg.Connection,
    location: SnapshotLocation,
    entry: TableEntry,
    plan: LoadPlan,
    number: int,
    verify: bool,
    ticker: Ticker,
) -> tuple[TableLoad, tuple[list[str], str], dict[str, list[int]]]:
    """COPY the whole CSV into a private temporary table, checked against production's checksum there,
    then INSERT its rows into the real one: masked where the environment masks the table (counting
    how many production values each masked column still holds: a weak rule shows here), and only
    the columns the environment has where it lacks some of production's (schema: shared)."""
    environment, header = plan.environment, plan.header
    rules, columns = plan.masks.get(entry.key, {}), plan.mask_columns.get(entry.key, {})
    names = entry.column_names
    source = plan.sources.get(entry.ref, entry)
    staging = staging_table(conn, f"replication_staged_{number}", entry.ref, staged_columns(source, names))
    loaded = copy_in(conn, location, source, environment, header, False, ticker, into=staging)
    unmasked = [n for n in names if n not in rules]
    expected = ""
    if verify:
        # The staged rows are production's exactly; then the unmasked columns must survive as they
        # are. One read of the staging table gives both checksums.
        algorithm = checksum_algorithm(entry.content_checksum)
        full, kept = content_checksums(conn, staging, [source.column_names, unmasked], algorithm=algorithm)
        compare_checksum(source, environment, full[1])
        expected = kept[1] if unmasked else ""
    inserted = _insert_masked(conn, plan.target(entry.ref), entry, rules, columns, sql.Identifier(staging.name))
    if inserted != entry.rows:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} received {inserted} rows from staging but the snapshot holds {entry.rows}. "
            "The load was rolled back; check the target's triggers and rules on this table."
        )
    overlaps = {f"{entry.key}.{name}": mask_overlap(conn, staging, plan.rows(entry.ref), name) for name in rules}
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(staging.name)))
    return loaded, (unmasked, expected), overlaps


def staged_columns(source: TableEntry, present: list[str]) -> sql.Composable:
    """A staging table's select list for every CSV column: the environment's column where it has
    one, text for a production column it lacks (read, verified, and not loaded)."""
    return sql.SQL(", ").join(
        sql.Identifier(n) if n in present else sql.SQL("NULL::pg_catalog.text AS {}").format(sql.Identifier(n))
        for n in source.column_names)


def _insert_masked(conn: psycopg.Connection, table: TableRef, entry: TableEntry, rules: dict[str, MaskRule],
                   columns: dict[str, Column], source: sql.Composable) -> int:
    """INSERT the rows of `source` into `table`, each masked column through its rule; the row count."""
    names = entry.column_names
    values = sql.SQL(", ").join(mask_expression(rules[n], columns[n]) if n in rules else sql.Identifier(n) for n in names)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
            table.ident, sql.SQL(", ").join(sql.Identifier(n) for n in names), values, source))
        return cur.rowcount


def mask_overlap(conn: psycopg.Connection, staging: TableRef, table: sql.Composable, column: str) -> list[int]:
    """[distinct production values of `column`, how many the masked table still holds], from the staged rows."""
    return count_overlap(conn, staged_values(staging, column), table, column)


def copy_in(
    conn: psycopg.Connection,
    location: SnapshotLocation,
    entry: TableEntry,
    environment: str,
    header: str,
    freeze: bool,
    ticker: Ticker,
    into: TableRef | None = None,
    where: sql.Composable | None = None,
    part: PartEntry | None = None,
) -> TableLoad:
    """COPY one snapshot file (or one `part` of a split table) into its table (or into `into`, a
    staging table for masking or a subset, keeping only the rows `where` lets through)."""
    source = part or entry
    query = sql.SQL("COPY {table} ({cols}) FROM STDIN (FORMAT csv, HEADER {header}{freeze}){where}").format(
        table=(into or entry.ref).ident,
        cols=sql.SQL(", ").join(sql.Identifier(n) for n in entry.column_names),
        header=sql.SQL(header if source.header else "false"),
        freeze=sql.SQL(", FREEZE" if freeze else ""),
        where=sql.SQL(" WHERE {}").format(where) if where is not None else sql.SQL(""),
    )
    label = entry.key if part is None else f"{entry.key} ({part.file})"
    progress = ticker.track(f"load {environment}", label, expected_bytes=source.bytes, expected_rows=source.rows)
    with progress, conn.cursor() as cur:
        with cur.copy(query) as copy:
            def write(chunk: bytes) -> None:
                copy.write(chunk)
                progress.advance(len(chunk))

            # A damaged object raises before its stream ends: COPY is cut off and the load rolls back.
            if part is None:
                location.read_into(entry, write)
            else:
                location.read_object_into(part, write)
        rows = cur.rowcount
    # A prefiltered COPY counts the rows it kept; that every row was read is the sha256's proof.
    if rows != source.rows and where is None:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} received {rows} rows but the snapshot holds {source.rows}"
            f"{'' if part is None else ' in ' + part.file}. "
            "The load was rolled back; check the target's triggers and rules on this table."
        )
    return TableLoad(entry.key, rows, source.bytes, round(progress.seconds, 3), False)


def compare_checksum(entry: TableEntry, environment: str, checksum: str) -> None:
    if entry.content_checksum and checksum != entry.content_checksum:
        raise LoadVerificationError(
            f"{environment}: table {entry.key} differs from production after loading (checksum "
            f"{checksum} vs {entry.content_checksum}). The load was rolled back. Column types in "
            f"the target may differ from production: compare them with the manifest."
        )
