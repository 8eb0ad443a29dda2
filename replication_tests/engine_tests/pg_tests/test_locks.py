"""Someone's open transaction on Dev: the load's lock waits are visible, bounded, and stall no reader for long."""

import threading
import time
from contextlib import contextmanager

import psycopg
import pytest

from replication.engine.pg.locks import LockPolicy, LockWaitError

from ...company import build_company

SCHEMA = """
CREATE TABLE public.accounts (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.orders (id bigint PRIMARY KEY, account_id bigint NOT NULL REFERENCES public.accounts (id), total numeric);
"""
DATA = """
INSERT INTO public.accounts SELECT g, 'account ' || g FROM generate_series(1, 2000) g;
INSERT INTO public.orders SELECT g, 1 + g % 2000, g / 100.0 FROM generate_series(1, 20000) g;
"""
ANALYST = "locks_analyst"


@pytest.fixture(scope="module")
def company(cluster, tmp_path_factory):
    company = build_company(cluster, "locks", SCHEMA, DATA)
    with company.env() as conn:
        # A table of the environment's own, outside the snapshot, and a developer's read-only role.
        conn.execute("CREATE TABLE IF NOT EXISTS public.scratch (id int)")
        conn.execute(f"DO $$ BEGIN CREATE ROLE {ANALYST} LOGIN PASSWORD 'analyst-pw'; "
                     "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ANALYST}")
        # Lets the loader see other users' sessions in full when it names them.
        conn.execute(f"GRANT pg_read_all_stats TO {company.loader.user}")
    folder = tmp_path_factory.mktemp("locks") / "prod_snapshot_20261125"
    company.snapshot(folder)
    company.load(folder)
    company.folder = folder
    return company


@contextmanager
def open_transaction(company, table: str, application: str = "psql-alice", user: str = ANALYST, password="analyst-pw"):
    """A developer's session left idle in a transaction that read `table`."""
    server = company.cluster.targets
    conn = psycopg.connect(host=server.host, port=server.port, dbname=company.loader.database, user=user,
                           password=password, application_name=application)
    conn.execute(f"SELECT count(*) FROM {table}")  # psycopg opened a transaction: now idle in it
    try:
        yield conn
    finally:
        conn.close()


def accounts_rows(company) -> int:
    with company.env() as conn:
        return conn.execute("SELECT count(*) FROM public.accounts").fetchone()[0]


def change_prod(company, folder):
    """A snapshot that differs from what the environment holds, so a load that went through would show."""
    with company.prod() as conn:
        conn.execute("INSERT INTO public.accounts VALUES (999999, 'new') ON CONFLICT DO NOTHING")
    company.snapshot(folder)


def test_wait_names_the_blocker_every_few_seconds_then_fails_having_written_nothing(company, tmp_path):
    folder = tmp_path / "s"
    change_prod(company, folder)
    before = accounts_rows(company)
    lines, waits = [], []
    stop = threading.Event()

    def reader():
        # Someone else reading the table meanwhile: the load's attempts must not park them for long.
        with company.env() as conn:
            while not stop.is_set():
                started = time.monotonic()
                conn.execute("SELECT count(*) FROM public.accounts")
                waits.append(time.monotonic() - started)
                time.sleep(0.05)

    with open_transaction(company, "public.orders") as blocker:
        pid = blocker.info.backend_pid
        watcher = threading.Thread(target=reader)
        watcher.start()
        started = time.monotonic()
        try:
            with pytest.raises(LockWaitError) as caught:
                company.load(folder, locks=LockPolicy("wait", lock_wait=3, report_every=1), log=lines.append)
        finally:
            stop.set()
            watcher.join()
        seconds = time.monotonic() - started
    message = str(caught.value)
    print(f"\nwait: {message}\nlog: {lines}\nslowest concurrent read: {max(waits):.3f} s of {len(waits)}")
    assert f"pid {pid} " in message and "application 'psql-alice'" in message and f"user {ANALYST}" in message
    assert "idle in transaction" in message and "transaction open" in message and "client 127.0.0.1" in message
    assert "AccessShareLock on public.orders" in message and "lock_wait (3 s)" in message
    assert "Nothing was written" in message and "blocking_sessions: terminate" in message
    assert sum(f"pid {pid} " in line and "waiting for locks" in line for line in lines) >= 1
    assert 3 <= seconds < 10
    assert accounts_rows(company) == before
    # The load never sat in the lock queue long enough to stall a reader for the whole wait.
    assert max(waits) < 1.5


def test_wait_goes_on_once_the_blocker_leaves(company, tmp_path):
    folder = tmp_path / "s"
    change_prod(company, folder)
    with open_transaction(company, "public.accounts") as blocker:
        threading.Timer(1.5, blocker.rollback).start()
        report = company.load(folder, locks=LockPolicy("wait", lock_wait=20))
    assert report.lock_wait_seconds >= 1.0 and all(t.checksum_verified for t in report.tables)


def test_fail_gives_brief_locks_a_moment_then_names_the_blocker(company, tmp_path):
    folder = tmp_path / "s"
    change_prod(company, folder)
    before = accounts_rows(company)
    with open_transaction(company, "public.accounts", application="metabase") as blocker:
        started = time.monotonic()
        with pytest.raises(LockWaitError) as caught:
            company.load(folder, locks=LockPolicy("fail"))
        seconds = time.monotonic() - started
        pid = blocker.info.backend_pid
    message = str(caught.value)
    print(f"\nfail: {message}")
    assert f"pid {pid} " in message and "application 'metabase'" in message and "blocking_sessions is fail" in message
    assert seconds < 10 and accounts_rows(company) == before


def test_terminate_ends_only_the_sessions_on_replicated_tables_after_the_grace_period(company, tmp_path):
    folder = tmp_path / "s"
    change_prod(company, folder)
    with company.env() as conn:
        conn.execute(f"GRANT pg_signal_backend TO {company.loader.user}")
    lines = []
    try:
        with open_transaction(company, "public.accounts", application="psql-bob") as blocker, \
                open_transaction(company, "public.scratch", application="psql-carol") as bystander:
            blocker_pid = blocker.info.backend_pid
            report = company.load(folder, locks=LockPolicy("terminate", lock_wait=1), log=lines.append)
            assert bystander.execute("SELECT 1").fetchone() == (1,)  # untouched: its table is not replicated
            with pytest.raises(psycopg.OperationalError):
                blocker.execute("SELECT 1")
    finally:
        with company.env() as conn:
            conn.execute(f"REVOKE pg_signal_backend FROM {company.loader.user}")
    print(f"\nterminate: {report.terminated_sessions}\nlog: {[line for line in lines if 'terminated' in line]}")
    assert len(report.terminated_sessions) == 1 and f"pid {blocker_pid} " in report.terminated_sessions[0]
    assert "application 'psql-bob'" in report.terminated_sessions[0]
    assert any(f"terminated pid {blocker_pid} " in line for line in lines)
    assert report.lock_wait_seconds >= 1.0 and all(t.checksum_verified for t in report.tables)
    assert accounts_rows(company) == company.prod().execute("SELECT count(*) FROM public.accounts").fetchone()[0]


def test_terminate_without_the_right_to_end_sessions_fails_and_says_which_grant_is_missing(company, tmp_path):
    folder = tmp_path / "s"
    change_prod(company, folder)
    before = accounts_rows(company)
    with open_transaction(company, "public.accounts", application="psql-dave") as blocker:
        with pytest.raises(LockWaitError) as caught:
            company.load(folder, locks=LockPolicy("terminate", lock_wait=1, terminate_seconds=2))
        assert blocker.execute("SELECT 1").fetchone() == (1,)
    message = str(caught.value)
    print(f"\nterminate refused: {message}")
    assert "terminating was refused" in message and "pg_signal_backend" in message
    assert "application 'psql-dave'" in message and accounts_rows(company) == before


# --- the lock table: a thousand tables in one transaction -----------------------------------------

def _create_tables(conn, count: int, prefix: str = "t", rows: int = 5) -> None:
    """One transaction per table: together they would not fit the small lock table either."""
    conn.execute("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public")
    for i in range(1, count + 1):
        conn.execute(f"CREATE TABLE public.{prefix}{i} (id int PRIMARY KEY, label text)")
        if rows:
            conn.execute(f"INSERT INTO public.{prefix}{i} SELECT g, 'x' || g FROM generate_series(1, {rows}) g")


@pytest.fixture(scope="module")
def small_lock_table(tmp_path_factory):
    """A server with PostgreSQL's smallest lock table, as a tightly configured company server might have."""
    from replication.demo.embedded import EmbeddedPostgres
    from replication.demo.provision import Account, ensure_database, ensure_role

    from ...company import Company
    from ...conftest import FAST_SETTINGS, free_port

    server = EmbeddedPostgres(tmp_path_factory.mktemp("locktable") / "pg", free_port(),
                              settings={**FAST_SETTINGS, "max_locks_per_transaction": "10", "max_connections": "10"}).start()
    cluster = type("Servers", (), {"source": server, "targets": server})()
    reader, loader = Account("lt_prod", "lt_reader", "lt-reader-pw"), Account("lt_dev", "lt_loader", "lt-loader-pw")
    try:
        with server.connect() as admin:
            ensure_role(admin, reader.user, reader.password)
            ensure_role(admin, loader.user, loader.password)
            ensure_database(admin, reader.database, "postgres")
            ensure_database(admin, loader.database, loader.user)
        with server.connect(reader.database) as conn:
            _create_tables(conn, 600)
            conn.execute(f"GRANT USAGE ON SCHEMA public TO {reader.user}; "
                         f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader.user}")
        with server.connect(loader.database, user=loader.user, password=loader.password) as conn:
            _create_tables(conn, 600, rows=0)
        yield Company(cluster, "lt", reader, loader)
    finally:
        server.stop()


def test_running_out_of_lock_slots_is_a_clear_permanent_error_that_names_the_setting(small_lock_table, tmp_path):
    """Hundreds of tables in one transaction on a server whose lock table PostgreSQL sizes for 450 locks."""
    from replication.engine.pg.locks import LockTableFullError

    company = small_lock_table
    with pytest.raises(LockTableFullError) as caught:
        company.snapshot(tmp_path / "s")  # the snapshot's ACCESS SHARE locks alone do not fit
    print(f"\nsnapshot: {caught.value}")
    assert "prod_snapshot: PostgreSQL ran out of lock slots" in str(caught.value)
    company.snapshot(tmp_path / "s", include=["t1??", "t2??", "t3??"])  # 300 tables do
    with pytest.raises(LockTableFullError) as caught:
        company.load(tmp_path / "s", rebuild_min_rows=0)
    message = str(caught.value)
    print(f"load: {message}")
    assert "out of shared memory" in message and 'HINT: You might need to increase "max_locks_per_transaction"' in message
    assert "max_locks_per_transaction (10)" in message and "Set max_locks_per_transaction to at least" in message
    assert "Nothing was loaded" in message
    with company.env() as conn:
        assert conn.execute("SELECT count(*) FROM public.t100").fetchone()[0] == 0
