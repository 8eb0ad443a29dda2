"""SIGKILL in every phase of a swap: the environment serves yesterday or today in full, never a mixture,
no leftover is visible to its other roles, and the next run removes every leftover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from replication.engine.errors import ReplicationError
from replication.engine.load.swap import KILL_AT_VARIABLE, swap_snapshot
from replication.engine.pg.session import libpq_options
from replication.engine.snapshot.verify import verify_snapshot
from replication_tests.conftest import table_fingerprints

from .swap_support import LOADER, LOADER_PASSWORD, create_swap_databases

SWAP_SCRIPT = textwrap.dedent("""
    import sys
    from contextlib import contextmanager
    from pathlib import Path
    from replication.engine.load.swap import swap_snapshot
    from replication.engine.pg.connection import connect, parse_address
    from replication.engine.snapshot.verify import verify_snapshot

    address, user, password, snapshot = sys.argv[1:5]

    @contextmanager
    def environment():
        conn = connect(parse_address(address, "ENV"), user, password)
        try:
            yield conn
        finally:
            conn.close()

    with environment() as conn:
        print("started", flush=True)
        swap_snapshot(environment, conn, Path(snapshot), verify_snapshot(Path(snapshot)), environment="env", jobs=2)
    print("finished", flush=True)
""")


def _state(dbs) -> dict:
    with dbs.targets.connect(dbs.env, options=libpq_options()) as conn:
        return {k: v for k, v in table_fingerprints(conn).items() if k.startswith("app.")}


def _start_swap(dbs, snapshot, tmp_path, phase: str | None) -> subprocess.Popen:
    script = tmp_path / "swap.py"
    script.write_text(SWAP_SCRIPT)
    env = {**os.environ, KILL_AT_VARIABLE: phase or ""}
    return subprocess.Popen([sys.executable, str(script), dbs.targets.address(dbs.env), LOADER, LOADER_PASSWORD,
                             str(snapshot)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_backends_to_go(dbs) -> None:
    """The server ends a killed client's sessions (rolling back what they had open) once it notices."""
    deadline = time.monotonic() + 30
    with dbs.admin() as conn:
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = %s",
                           (LOADER, dbs.env)).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed swap's sessions did not end"
            time.sleep(0.1)


def _assert_leftovers_hidden(dbs, leftovers: list[str]) -> None:
    with dbs.reader() as conn:
        for schema in leftovers:
            assert not conn.execute("SELECT has_schema_privilege(%s, 'USAGE')", (schema,)).fetchone()[0]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f'SELECT count(*) FROM "{schema}".orders')


@pytest.mark.parametrize("phase, serves", [("filling", "yesterday"), ("indexing", "yesterday"),
                                           ("switching", "yesterday"), ("switch", "yesterday"),
                                           ("dropping", "today")])
def test_sigkill_in_each_phase_leaves_one_whole_day_and_the_next_run_cleans_up(cluster, tmp_path, phase, serves):
    dbs = create_swap_databases(cluster.source, cluster.targets, f"kill_{phase}")
    snapshot = tmp_path / "snap"
    dbs.snapshot(snapshot)
    days = {"yesterday": _state(dbs)}
    with dbs.source.connect(dbs.prod, options=libpq_options()) as conn:
        days["today"] = {k: v for k, v in table_fingerprints(conn).items() if k.startswith("app.")}
    assert days["yesterday"] != days["today"]
    schema = dbs.schema_dump()

    process = _start_swap(dbs, snapshot, tmp_path, phase)
    out, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, (out, err)
    assert "finished" not in out
    _wait_for_backends_to_go(dbs)

    assert _state(dbs) == days[serves]
    assert dbs.schema_dump() == schema
    leftovers = dbs.private_schemas()
    assert leftovers, "a killed swap leaves its private schemas for the next run"
    _assert_leftovers_hidden(dbs, leftovers)

    with dbs.loader() as conn:
        report = swap_snapshot(dbs.loader, conn, snapshot, verify_snapshot(snapshot), environment="env")
    assert sorted(report.leftovers_removed) == leftovers
    assert dbs.private_schemas() == []
    assert _state(dbs) == days["today"]
    assert dbs.schema_dump() == schema


def test_sigkill_at_random_moments_never_shows_a_mixture(cluster, tmp_path):
    dbs = create_swap_databases(cluster.source, cluster.targets, "kill_random", customers=20000, orders=300000)
    snapshot = tmp_path / "snap"
    dbs.snapshot(snapshot)
    yesterday = _state(dbs)
    with dbs.source.connect(dbs.prod, options=libpq_options()) as conn:
        today = {k: v for k, v in table_fingerprints(conn).items() if k.startswith("app.")}
    schema = dbs.schema_dump()
    process = _start_swap(dbs, snapshot, tmp_path, None)
    process.stdout.readline()
    started = time.monotonic()
    process.communicate(timeout=300)
    whole = time.monotonic() - started
    seen = set()
    for fraction in (0.1, 0.35, 0.6, 0.8, 0.95):
        with dbs.admin() as conn:  # back to yesterday's rows for the next attempt
            conn.execute("TRUNCATE app.orders, app.customers, app.events, audit.notes, app.readings")
        with dbs.targets.connect(dbs.env, user=LOADER, password=LOADER_PASSWORD) as conn:
            conn.execute("INSERT INTO app.customers (id, email) VALUES (1, 'yesterday@x.test'), (2, 'also-yesterday@x.test');"
                         "INSERT INTO app.orders (customer_id, total) VALUES (1, 5), (2, 500)")
        yesterday = _state(dbs)
        process = _start_swap(dbs, snapshot, tmp_path, None)
        process.stdout.readline()
        time.sleep(whole * fraction)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        _wait_for_backends_to_go(dbs)
        state = _state(dbs)
        assert state in (yesterday, today), f"killed {whole * fraction:.2f} s in: neither day in full"
        seen.add("today" if state == today else "yesterday")
        assert dbs.schema_dump() == schema
        _assert_leftovers_hidden(dbs, dbs.private_schemas())
    with dbs.loader() as conn:
        swap_snapshot(dbs.loader, conn, snapshot, verify_snapshot(snapshot), environment="env")
    assert dbs.private_schemas() == [] and _state(dbs) == today
    assert seen, "at least one kill landed"


def test_an_object_made_to_depend_on_yesterdays_leftover_tables_is_never_dropped_with_them(cluster, tmp_path):
    dbs = create_swap_databases(cluster.source, cluster.targets, "kill_keep")
    snapshot = tmp_path / "snap"
    dbs.snapshot(snapshot)
    process = _start_swap(dbs, snapshot, tmp_path, "dropping")
    process.communicate(timeout=120)
    _wait_for_backends_to_go(dbs)
    old = next(s for s in dbs.private_schemas() if s.startswith("replication_old_"))
    with dbs.admin() as conn:  # someone keeps a view on yesterday's rows
        conn.execute(f'CREATE VIEW public.kept_yesterday AS SELECT * FROM "{old}".customers')
    with pytest.raises(ReplicationError) as refused, dbs.loader() as conn:
        swap_snapshot(dbs.loader, conn, snapshot, verify_snapshot(snapshot), environment="env")
    assert old in str(refused.value) and "kept_yesterday" in str(refused.value)
    with dbs.admin() as conn:
        assert conn.execute("SELECT count(*) FROM public.kept_yesterday").fetchone()[0] == 2
        conn.execute("DROP VIEW public.kept_yesterday")
    with dbs.loader() as conn:
        swap_snapshot(dbs.loader, conn, snapshot, verify_snapshot(snapshot), environment="env")
    assert dbs.private_schemas() == []
