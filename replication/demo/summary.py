"""A side-by-side check of every environment against production, table by table."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..engine.catalog import TableRef
from ..engine.manifest import Manifest
from ..engine.verify import content_checksum


@dataclass
class TableComparison:
    environment: str
    table: str
    prod_rows: int
    rows: int
    checksum_matches: bool


def compare(prod: psycopg.Connection, targets: dict[str, psycopg.Connection], manifest: Manifest) -> list[TableComparison]:
    """Checksum each snapshot table in prod and in every target over the same columns."""
    results = []
    for entry in manifest.tables:
        ref = TableRef(entry.schema, entry.name)
        prod_rows, prod_sum = content_checksum(prod, ref, entry.column_names)
        for env, conn in targets.items():
            rows, checksum = content_checksum(conn, ref, entry.column_names)
            results.append(TableComparison(env, entry.key, prod_rows, rows, checksum == prod_sum))
    return results


def render(results: list[TableComparison]) -> str:
    header = f"{'environment':<12} {'table':<20} {'prod rows':>10} {'rows':>10}  checksum vs prod"
    lines = [header, "-" * len(header)]
    for r in sorted(results, key=lambda r: (r.environment, r.table)):
        lines.append(
            f"{r.environment:<12} {r.table:<20} {r.prod_rows:>10,} {r.rows:>10,}  {'match' if r.checksum_matches else 'MISMATCH'}"
        )
    return "\n".join(lines)
