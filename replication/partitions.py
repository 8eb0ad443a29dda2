"""Daily partitions: one production snapshot per UTC day."""

import dagster as dg

# end_offset=1 makes today a partition, so the midnight schedule and a click in the UI both
# snapshot the day they run on, matching the `prod_snapshot_$(date +%Y%m%d)` folder name.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)
