"""The one retry policy every asset carries."""

import os

import dagster as dg

PRODUCTION_RETRY_DELAY_SECONDS = 300

# Two more tries, five minutes apart: long enough for a restarted server or a failed-over
# address to come back. Permanent errors raise dg.Failure(allow_retries=False) and skip it.
# REPLICATION_RETRY_DELAY_SECONDS exists for tests that must watch a retry happen.
RETRY_POLICY = dg.RetryPolicy(
    max_retries=2,
    delay=int(os.environ.get("REPLICATION_RETRY_DELAY_SECONDS", PRODUCTION_RETRY_DELAY_SECONDS)),
)
