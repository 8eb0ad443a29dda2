"""The one retry policy every asset carries."""

import dagster as dg

# Two more tries, five minutes apart: long enough for a restarted server or a failed-over
# address to come back. Permanent errors raise dg.Failure(allow_retries=False) and skip it.
RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=300)
