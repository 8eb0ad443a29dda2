"""What a load reads from the target before it writes: tables and columns, privileges, masks, subset, order."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import IsolationLevel, sql

from ..pg.catalog import Column, TableRef, columns_of, foreign_key_edges, foreign_key_order, own_rows, parents_of, \
    partitioned_tables
from ..errors import ConfigurationError, ReplicationError, SchemaMismatchError
from ..progress import Log
from ..snapshot.manifest import Manifest, TableEntry
from ..privacy.mask import MaskRule, check_rules, foreign_key_gaps, mask_problems, stale_mask_error, \
    keyed_strategies, unmasked_personal_columns
from ..pg.session import prepare_transaction
from .privileges import require_privileges
from ..subset.plan import SubsetPlan, SubsetRule, plan_subset



# Below this many rows a table keeps its keys and indexes during the load: on a schema of a
# thousand small tables, dropping and building them is most of the load's time.
REBUILD_MIN_ROWS = 1000


def check_target_schema(conn: psycopg.Connection, manifest: Manifest, environment: str) -> dict[TableRef, list[Column]]:
    """Fail before any write when the target cannot take the snapshot's tables and columns; else
    the target's columns of every snapshot table.

    The target's own migrations own its schema; this only reads the catalog, once for all tables.
    """
    found = columns_of(conn, [entry.ref for entry in manifest.tables])
    for entry in manifest.tables:
        ref = entry.ref
        if ref not in found:
            raise SchemaMismatchError(
                f"{environment}: table {ref.key} does not exist in the target database. Create it "
                f"with the {environment} migrations, or exclude it from prod_snapshot. Nothing was written."
            )
        target = {c.name: c for c in found[ref]}
        for name in entry.column_names:
            column = target.get(name)
            if column is None:
                raise SchemaMismatchError(
                    f"{environment}: column {name!r} of table {ref.key} does not exist in the target "
                    f"database. Add it with the {environment} migrations. Nothing was written."
                )
            if column.generated:
                raise SchemaMismatchError(
                    f"{environment}: column {name!r} of table {ref.key} is generated in the target "
                    "but a plain column in production, so it cannot be loaded. Nothing was written."
                )
        wanted = set(entry.column_names)
        for column in target.values():
            if column.name not in wanted and not column.fillable_by_target:
                raise SchemaMismatchError(
                    f"{environment}: column {column.name!r} of table {ref.key} is NOT NULL without a "
                    "default in the target and does not exist in production; give it a default or "
                    "make it nullable. Nothing was written."
                )
    return found


@dataclass
class LoadPlan:
    """What the write transaction needs, read from the target's catalog before it begins."""

    environment: str
    entries: dict[TableRef, TableEntry]
    order: list[TableRef]  # referenced tables first
    cyclic: bool  # foreign keys that no order satisfies: checked at COMMIT instead
    partitioned: set[TableRef]
    masks: dict[str, dict[str, MaskRule]]
    mask_columns: dict[str, dict[str, Column]]
    header: str  # COPY's HEADER option: MATCH where the server checks the names
    subset: SubsetPlan | None = None
    # Columns that look personal and have no rule (unmasked_pii: warn), each with the rule to add.
    uncovered: dict[str, str] = field(default_factory=dict)
    # Where each table's rows are written when that is not the live table: a swap's new copy.
    into: dict[TableRef, TableRef] = field(default_factory=dict)
    # Production's entries of tables whose columns the environment partly lacks (schema: shared):
    # the CSV holds these columns, `entries` the ones loaded.
    sources: dict[TableRef, TableEntry] = field(default_factory=dict)
    # The environment's columns of every table, as the plan read them (types for messages).
    target_columns: dict[TableRef, list[Column]] = field(default_factory=dict)

    def target(self, ref: TableRef) -> TableRef:
        return self.into.get(ref, ref)

    def subsetted(self, ref: TableRef) -> bool:
        return self.subset is not None and self.subset.covers(ref)

    def rows(self, ref: TableRef) -> sql.Composed:
        """The table's own rows (ONLY for plain tables): an inheritance child keeps its rows, and is
        loaded, truncated and counted as a table of its own."""
        return own_rows(self.target(ref), {self.target(ref)} if ref in self.partitioned else ())


def plan_load(conn: psycopg.Connection, manifest: Manifest, environment: str,
              masks: dict[str, dict[str, MaskRule]], masking_key: str | None,
              subset: dict[str, SubsetRule] | None = None, personal_data: str = "allow",
              warn: Log | None = None) -> LoadPlan:
    """Check the masks, the target and the subset, before anything is written."""
    entries = {entry.ref: entry for entry in manifest.tables}
    # The stale masks first: a mistyped key would otherwise show up as an uncovered column.
    problems = mask_problems(environment, masks, manifest)
    if problems:
        raise stale_mask_error(environment, problems, manifest)
    uncovered = check_personal_data(environment, manifest, masks, personal_data, warn)
    columns = check_target_schema(conn, manifest, environment)
    require_privileges(conn, environment, list(entries), staging=bool(masks or subset))
    edges = foreign_key_edges(conn, list(entries))
    order, cyclic = foreign_key_order(parents_of(list(entries), edges))
    mask_columns = _check_masks(conn, environment, manifest, masks, masking_key)
    return LoadPlan(environment, entries, order, cyclic, partitioned_tables(conn, order), masks, mask_columns,
                    "MATCH" if conn.info.server_version >= 150000 else "true",
                    plan_subset(conn, environment, manifest, subset or {}, edges, columns), uncovered,
                    target_columns=columns)


def plan_for_report(conn: psycopg.Connection, manifest: Manifest, report, masks: dict[str, dict[str, MaskRule]],
                    masking_key: str | None, subset: dict[str, SubsetRule] | None, personal_data: str,
                    warn: Log | None, begin: bool = True, sources: dict[TableRef, TableEntry] | None = None) -> LoadPlan:
    """What both ways to load do first: the plan, read in a read-only catalog transaction (or, not
    `begin`, in the transaction already open), and what the report says of privacy (the masked
    columns, the personal ones loaded unmasked). `sources` are production's entries of the tables
    whose columns the environment partly lacks (LoadPlan.sources)."""
    if begin:
        prepare_transaction(conn, IsolationLevel.READ_COMMITTED, read_only=False)
    plan = plan_load(conn, manifest, report.environment, masks or {}, masking_key, subset, personal_data, warn)
    plan.sources = dict(sources or {})
    report.unmasked_personal_columns = plan.uncovered
    report.masked_columns = {f"{table}.{col}": rule.describe()
                             for table, rules in plan.masks.items() for col, rule in rules.items()}
    return plan


def check_personal_data(environment: str, manifest: Manifest, masks: dict[str, dict[str, MaskRule]], policy: str,
                        warn: Log | None) -> dict[str, str]:
    """Columns that look personal and have no rule: refused (error), reported (warn) or accepted (allow)."""
    uncovered = dict(unmasked_personal_columns(manifest, masks)) if policy != "allow" else {}
    if uncovered and policy == "error":
        rules = "\n".join(f"      {column}: {rule}" for column, rule in uncovered.items())
        raise ReplicationError(
            f"{environment}: these columns look personal and have no masking rule, and unmasked_pii is error, "
            f"so nothing was written. Add rules under environments.{environment}.mask in replication.yaml, "
            f"for example:\n{rules}\nor set unmasked_pii: warn (or allow) for {environment} if they are not personal."
        )
    if uncovered and warn is not None:
        warn(f"{environment}: loading unmasked columns that look personal: {', '.join(uncovered)} (unmasked_pii: warn)")
    return uncovered


def _check_masks(
    conn: psycopg.Connection, environment: str, manifest: Manifest, masks: dict[str, dict[str, MaskRule]], key: str | None
) -> dict[str, dict[str, Column]]:
    """Validate the masking policy against the target's catalog, before the write transaction."""
    columns = {table: check_rules(conn, environment, manifest.table(table).ref, rules) for table, rules in masks.items()}
    gaps = foreign_key_gaps(conn, masks)
    if gaps:
        raise ConfigurationError(
            f"{environment}: a masked column is part of a foreign key whose other side is not masked the same "
            f"way, so the key would break: {'; '.join(gaps)}. Nothing was written."
        )
    if not key and any(rule.keyed for rules in masks.values() for rule in rules.values()):
        raise ConfigurationError(
            f"{environment}: MASKING_KEY is not set, and the {keyed_strategies()} strategies need it. "
            "Set it to a long random secret, the same for every environment whose masked values must join. "
            "Nothing was written."
        )
    return columns
