"""A side-by-side check of every environment against production, table by table."""

from __future__ import annotations

from dataclasses import dataclass


import psycopg

from ..engine.verify.audit import masked_value_overlaps, subset_closure
from ..engine.pg.catalog import TableRef
from ..engine.snapshot.manifest import Manifest
from ..engine.verify.checksum import content_checksum
from ..engine.storage import SnapshotLocation
from ..engine.subset.plan import subset_tables


@dataclass
class TableComparison:
    environment: str
    table: str
    prod_rows: int
    rows: int
    checksum_matches: bool  # over the columns that are not masked
    masked: list[str]  # masked columns, none of whose values is production's
    masked_values_leaked: int = 0
    # A subset table: its rows are part of production's, so they are counted against it, and every
    # key they reference must be held (missing parents, derived again from the environment's rows).
    subset: bool = False
    missing_parents: int = 0

    @property
    def ok(self) -> bool:
        if self.subset:
            return self.rows <= self.prod_rows and not self.missing_parents and not self.masked_values_leaked
        return self.checksum_matches and self.rows == self.prod_rows and not self.masked_values_leaked


def compare(
    prod: psycopg.Connection, targets: dict[str, psycopg.Connection], manifest: Manifest, snapshot: SnapshotLocation,
    masks: dict[str, dict[str, list[str]]] | None = None, subsets: dict[str, list[str]] | None = None,
) -> list[TableComparison]:
    """Checksum each snapshot table in prod and in every target over the unmasked columns, and
    count masked values that still equal production's (the masked-values check's own audit).

    A table an environment subsets (`subsets`: environment -> root tables) is counted against
    production and audited for missing parents instead of compared whole.
    """
    masks, subsets = masks or {}, subsets or {}
    refs = [entry.ref for entry in manifest.tables]
    subsetted, missing = {}, {}
    for env, roots in subsets.items():
        if roots:
            subsetted[env] = subset_tables(targets[env], refs, roots)
            missing[env] = {}
            for audit in subset_closure(targets[env], refs):
                missing[env][audit.table] = missing[env].get(audit.table, 0) + audit.missing_parents
    results = []
    for entry in manifest.tables:
        ref = TableRef(entry.schema, entry.name)
        for env, conn in targets.items():
            masked = masks.get(env, {}).get(entry.key, [])
            columns = [c for c in entry.column_names if c not in masked]
            prod_rows, prod_sum = content_checksum(prod, ref, columns)
            rows, checksum = content_checksum(conn, ref, columns)
            leaked = sum(f.equal for f in masked_value_overlaps(conn, snapshot, manifest, {entry.key: masked})) \
                if masked else 0
            is_subset = entry.key in subsetted.get(env, set())
            results.append(TableComparison(env, entry.key, prod_rows, rows, checksum == prod_sum, masked, leaked,
                                           is_subset, missing.get(env, {}).get(entry.key, 0)))
    return results


def render(results: list[TableComparison]) -> str:
    header = f"{'environment':<12} {'table':<18} {'prod rows':>10} {'rows':>10}  vs production"
    lines = [header, "-" * len(header)]
    for r in sorted(results, key=lambda r: (r.environment, r.table)):
        if r.subset:
            share = 100 * r.rows / r.prod_rows if r.prod_rows else 100.0
            verdict = f"subset, {share:.1f}% of prod, " + (
                "no missing parent" if not r.missing_parents else f"{r.missing_parents} MISSING PARENTS")
            if r.masked:
                verdict += f", {len(r.masked)} masked columns" + (
                    " share no value with prod" if not r.masked_values_leaked else f" with {r.masked_values_leaked} values still equal to prod")
        elif r.masked:
            verdict = ("match, " if r.checksum_matches else "MISMATCH, ") + (
                f"{len(r.masked)} masked columns share no value with prod" if not r.masked_values_leaked
                else f"{r.masked_values_leaked} masked values still equal prod")
        else:
            verdict = "exact match" if r.checksum_matches else "MISMATCH"
        lines.append(f"{r.environment:<12} {r.table:<18} {r.prod_rows:>10,} {r.rows:>10,}  {verdict}")
    return "\n".join(lines)
