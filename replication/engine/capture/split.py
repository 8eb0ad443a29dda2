"""A table too large for one connection, captured in parts by ctid ranges, as pgcopydb's --split-tables-larger-than.

Every part is read inside the one exported snapshot, so together they are the table at the same
point in time as every other table. The ranges are of heap pages, read with a TID range scan
(PostgreSQL 14+): each part reads only its own pages. The last part has no upper bound, so a row
on a page the size estimate did not count is still captured. A table whose largest values take
the large-row path, and a partitioned table (whose partitions hold the pages), stay whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg
from psycopg import sql

from ..pg.catalog import TableRef

MAX_PARTS = 64


@dataclass(frozen=True)
class PageRange:
    number: int
    first_page: int
    last_page: int | None  # exclusive; None: to the end

    def condition(self) -> sql.Composable:
        lower = sql.SQL("ctid >= {}::pg_catalog.tid").format(sql.Literal(f"({self.first_page},0)"))
        if self.last_page is None:
            return lower
        return sql.SQL("{} AND ctid < {}::pg_catalog.tid").format(lower, sql.Literal(f"({self.last_page},0)"))


def page_ranges(conn: psycopg.Connection, table: TableRef, table_bytes: int, split_bytes: int) -> list[PageRange]:
    """Ranges of about `split_bytes` each over the table's pages; one range when it is not larger."""
    if conn.info.server_version < 140000 or table_bytes <= split_bytes:
        return []
    (pages,) = conn.execute(
        "SELECT pg_catalog.pg_relation_size(%s::pg_catalog.regclass) / pg_catalog.current_setting('block_size')::int",
        (table.quoted,)).fetchone()
    count = min(MAX_PARTS, math.ceil(table_bytes / split_bytes), max(int(pages), 1))
    if count < 2:
        return []
    bounds = [round(i * pages / count) for i in range(count)]
    return [PageRange(n, bounds[n], bounds[n + 1] if n + 1 < count else None) for n in range(count)]


def part_stem(table: TableRef, number: int) -> str:
    """The name a part's object is stored under, before the store's suffix: schema.table.part003."""
    return f"{table.key}.part{number:03d}"
