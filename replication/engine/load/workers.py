"""Several connections to one environment working through lists of tasks, as pg_restore --jobs does.

Each worker thread holds its own connection (psycopg releases the GIL while PostgreSQL works, so
`jobs` connections keep `jobs` server processes busy) and takes the next task from the front of
the list, so tasks given largest first finish close together. The connections are opened once
and serve every phase of a load. The first failure stops the others: their running statements
are cancelled, every connection is closed, and the failure is raised as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import psycopg

from ..pg.connection import Connect

Task = Callable[[psycopg.Connection], None]


class Workers:
    """Up to `jobs` connections, opened as tasks need them and kept until `close`."""

    def __init__(self, connect: Connect, jobs: int):
        self.connect = connect
        self.jobs = jobs
        self._opened = ExitStack()
        self._idle: list[psycopg.Connection] = []

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._idle.clear()
        self._opened.close()

    def _take(self) -> psycopg.Connection:
        if self._idle:
            return self._idle.pop()
        conn = self._opened.enter_context(self.connect())
        conn.autocommit = True
        return conn

    def run(self, tasks: Sequence[Task]) -> None:
        """Run every task on one of the connections, each in autocommit between tasks."""
        if not tasks:
            return
        pending = list(tasks)
        lock = threading.Lock()
        failed: list[BaseException] = []
        busy: list[psycopg.Connection] = []

        def next_task() -> Task | None:
            with lock:
                if failed or not pending:
                    return None
                return pending.pop(0)

        def work(conn: psycopg.Connection) -> None:
            try:
                while (task := next_task()) is not None:
                    task(conn)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                with lock:
                    first = not failed
                    failed.append(exc)
                    others = [c for c in busy if c is not conn and not c.closed]
                if first:
                    for other in others:
                        try:
                            other.cancel_safe()
                        except Exception:  # noqa: BLE001 - it may have finished or closed meanwhile
                            pass

        connections = [self._take() for _ in range(min(self.jobs, len(pending)))]
        busy.extend(connections)
        threads = [threading.Thread(target=work, args=(conn,), name=f"load-{n}", daemon=True)
                   for n, conn in enumerate(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            self.close()
            # The first failure is the cause; the others are cancellations it caused.
            raise failed[0]
        self._idle.extend(connections)
