"""Loading a verified snapshot into one environment, all or nothing, in pg_restore's order.

`plan` reads what the write needs from the target before it begins (tables, columns, privileges,
masks, the subset, the foreign-key order); `transaction` is the one write transaction and the
sequences after it; `copy` moves each object in (straight, or through a staging table when it is
masked or subset); `rebuild` takes keys and indexes off and puts them back; `postload` refreshes
materialized views and statistics; `privileges` and `guard` refuse before anything is written.
"""

from .plan import REBUILD_MIN_ROWS, LoadPlan, plan_load
from .report import LoadReport, TableLoad
from .transaction import load_snapshot

__all__ = ["REBUILD_MIN_ROWS", "LoadPlan", "LoadReport", "TableLoad", "load_snapshot", "plan_load"]
