"""Progress lines for long copies, so a person watching the run sees it move."""

from __future__ import annotations

import time
from collections.abc import Callable

REPORT_EVERY_SECONDS = 5.0


class Progress:
    """Counts rows and bytes for one table and calls `report` at most every few seconds.

    `expected_rows`, when known, lets a loader estimate rows from bytes (COPY FROM only learns the
    row count at the end).
    """

    def __init__(
        self,
        report: Callable[[str], None] | None,
        action: str,
        table: str,
        *,
        expected_bytes: int | None = None,
        expected_rows: int | None = None,
        interval: float = REPORT_EVERY_SECONDS,
    ):
        self._report = report
        self._action = action
        self._table = table
        self._expected_bytes = expected_bytes
        self._expected_rows = expected_rows
        self._interval = interval
        self.started = time.monotonic()
        self._next = self.started + interval
        self.rows = 0
        self.bytes = 0

    def advance(self, nbytes: int, rows: int = 0) -> None:
        self.bytes += nbytes
        self.rows += rows
        if self._report is not None:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + self._interval
                self._report(self.line(now))

    def _row_estimate(self) -> int:
        if self.rows or not self._expected_rows or not self._expected_bytes:
            return self.rows
        return int(self._expected_rows * self.bytes / self._expected_bytes)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rows = self._row_estimate()
        text = (
            f"{self._action} {self._table}: {rows:,} rows, {self.bytes / 1e6:,.1f} MB "
            f"in {elapsed:,.1f} s ({rows / elapsed:,.0f} rows/s, {self.bytes / 1e6 / elapsed:,.1f} MB/s)"
        )
        if self._expected_bytes:
            text += f", {100 * self.bytes / self._expected_bytes:.0f}% of {self._expected_bytes / 1e6:,.1f} MB"
        return text

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
