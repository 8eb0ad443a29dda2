"""Progress lines for long copies, so a person watching the run sees it move."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

REPORT_EVERY_SECONDS = 5.0

# Where progress and other human-readable lines go: Dagster's context.log.info, print, or None.
Log = Callable[[str], None]


class Ticker:
    """One thread that reports every table in progress every few seconds, for a whole snapshot or load.

    A timer reports on schedule even when a stream itself stalls (a slow trigger, a long scan
    before the first row), which a check inside `advance` would miss; one timer for all tables
    keeps a schema of a thousand small tables from starting a thousand threads.
    """

    def __init__(self, report: Log | None, interval: float = REPORT_EVERY_SECONDS):
        self._report = report
        self._interval = interval
        self._active: list[Progress] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Ticker":
        if self._report is not None:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def track(self, action: str, table: str, *, expected_bytes: int | None = None,
              expected_rows: int | None = None) -> "Progress":
        return Progress(self, action, table, expected_bytes=expected_bytes, expected_rows=expected_rows)

    def _add(self, progress: "Progress") -> None:
        with self._lock:
            self._active.append(progress)

    def _remove(self, progress: "Progress") -> None:
        with self._lock:
            self._active.remove(progress)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            with self._lock:
                lines = [p.line() for p in self._active if p.seconds >= self._interval / 2]
            for line in lines:
                self._report(line)


class Progress:
    """Counts rows and bytes for one table while it is copied; used as a context manager.

    `expected_rows`, when known, lets a loader estimate rows from bytes: COPY FROM only learns
    the row count at the end.
    """

    def __init__(self, ticker: Ticker | None, action: str, table: str, *, expected_bytes: int | None = None,
                 expected_rows: int | None = None):
        self._ticker = ticker
        self._action = action
        self._table = table
        self._expected_bytes = expected_bytes
        self._expected_rows = expected_rows
        self.started = time.monotonic()
        self.ended: float | None = None
        self.rows = 0
        self.bytes = 0

    def advance(self, nbytes: int, rows: int = 0) -> None:
        self.bytes += nbytes
        self.rows += rows

    def __enter__(self) -> "Progress":
        self.started = time.monotonic()
        if self._ticker is not None:
            self._ticker._add(self)
        return self

    def __exit__(self, *exc) -> None:
        self.ended = time.monotonic()
        if self._ticker is not None:
            self._ticker._remove(self)

    def _row_estimate(self) -> int:
        if self.rows or not self._expected_rows or not self._expected_bytes:
            return self.rows
        return int(self._expected_rows * self.bytes / self._expected_bytes)

    def line(self) -> str:
        elapsed = max(self.seconds, 1e-9)
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
        """Time spent so far, or in all once the block has ended."""
        return (self.ended or time.monotonic()) - self.started
