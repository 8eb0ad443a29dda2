"""A side-by-side check of every environment against production, table by table."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..engine.catalog import TableRef
from ..engine.manifest import Manifest
from ..engine.verify import content_checksum


@dataclass
class TableComparison:
    environment: str
    table: str
    prod_rows: int
    rows: int
    checksum_matches: bool  # over the columns that are not masked
    masked: list[str]  # masked columns, none of whose values is production's
    masked_values_leaked: int = 0

    @property
    def ok(self) -> bool:
        return self.checksum_matches and self.rows == self.prod_rows and not self.masked_values_leaked


def compare(
    prod: psycopg.Connection, targets: dict[str, psycopg.Connection], manifest: Manifest,
    masks: dict[str, dict[str, list[str]]] | None = None,
) -> list[TableComparison]:
    """Checksum each snapshot table in prod and in every target over the unmasked columns, and
    count masked values that still equal production's."""
    masks = masks or {}
    results = []
    for entry in manifest.tables:
        ref = TableRef(entry.schema, entry.name)
        for env, conn in targets.items():
            masked = masks.get(env, {}).get(entry.key, [])
            columns = [c for c in entry.column_names if c not in masked]
            prod_rows, prod_sum = content_checksum(prod, ref, columns)
            rows, checksum = content_checksum(conn, ref, columns)
            leaked = sum(_shared_values(prod, conn, ref, column) for column in masked)
            results.append(TableComparison(env, entry.key, prod_rows, rows, checksum == prod_sum, masked, leaked))
    return results


def _shared_values(prod: psycopg.Connection, target: psycopg.Connection, ref: TableRef, column: str) -> int:
    """Distinct non-empty values of a masked column found in both; demo-sized, so read into memory."""
    query = sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} IS NOT NULL AND {c}::text <> ''").format(
        c=sql.Identifier(column), t=ref.ident)
    return len({r[0] for r in prod.execute(query)} & {r[0] for r in target.execute(query)})


def render(results: list[TableComparison]) -> str:
    header = f"{'environment':<12} {'table':<18} {'prod rows':>10} {'rows':>10}  vs production"
    lines = [header, "-" * len(header)]
    for r in sorted(results, key=lambda r: (r.environment, r.table)):
        if r.masked:
            verdict = ("match, " if r.checksum_matches else "MISMATCH, ") + (
                f"{len(r.masked)} masked columns share no value with prod" if not r.masked_values_leaked
                else f"{r.masked_values_leaked} masked values still equal prod")
        else:
            verdict = "exact match" if r.checksum_matches else "MISMATCH"
        lines.append(f"{r.environment:<12} {r.table:<18} {r.prod_rows:>10,} {r.rows:>10,}  {verdict}")
    return "\n".join(lines)
