"""Several connections to one environment working through a list of tasks, as pg_restore --jobs does.

Each worker thread holds its own connection (psycopg releases the GIL while PostgreSQL works, so
`jobs` connections keep `jobs` server processes busy) and takes the next task from the front of
the list, so tasks given largest first finish close together. The first failure stops the others:
their running statements are cancelled and the failure is raised as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import psycopg

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]
Task = Callable[[psycopg.Connection], None]


def run_tasks(connect: Connect, jobs: int, tasks: Sequence[Task]) -> None:
    """Run every task on one of `jobs` connections, each connection in autocommit between tasks."""
    if not tasks:
        return
    pending = list(tasks)
    lock = threading.Lock()
    failed: list[BaseException] = []
    connections: list[psycopg.Connection] = []

    def next_task() -> Task | None:
        with lock:
            if failed or not pending:
                return None
            return pending.pop(0)

    def work() -> None:
        try:
            with connect() as conn:
                conn.autocommit = True
                with lock:
                    connections.append(conn)
                while (task := next_task()) is not None:
                    task(conn)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            with lock:
                first = not failed
                failed.append(exc)
                others = [c for c in connections if not c.closed]
            if first:
                for other in others:
                    try:
                        other.cancel_safe()
                    except Exception:  # noqa: BLE001 - it may have finished or closed meanwhile
                        pass

    threads = [threading.Thread(target=work, name=f"load-{n}", daemon=True) for n in range(min(jobs, len(tasks)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        # The first failure is the cause; the others are cancellations it caused.
        raise failed[0]
