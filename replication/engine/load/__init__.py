"""Loading a verified snapshot into one environment, all or nothing, in pg_restore's order.

`plan` reads what the write needs from the target before it begins (tables, columns, privileges,
masks, the subset, the foreign-key order); `transaction` is the load in place, one write
transaction and the sequences after it; `swap` builds the new copy beside the live tables
(`shadow`, `clone`, `workers`) and switches in one short transaction (`switch`), re-pointing what
`dependents` found bound to them; `copy` moves each object in (straight, or through a staging
table when it is masked or subset); `rebuild` takes keys and indexes off and puts them back;
`postload` refreshes materialized views and statistics; `privileges` and `guard` refuse before
anything is written; `refresh` is the whole step and chooses between the two ways.
"""

from .plan import REBUILD_MIN_ROWS, LoadPlan, plan_load
from .report import LoadReport, TableLoad
from .transaction import load_snapshot

__all__ = ["REBUILD_MIN_ROWS", "LoadPlan", "LoadReport", "TableLoad", "load_snapshot", "plan_load"]
