"""Honest retries: each class of error, met for real by a Dagster run, is retried only if a later try can fix it.

Errors the test servers produce on their own (a refused connection, too many connections, a
terminated backend, permission denied, a lock held past lock_wait) are produced that way. The
rest come from a trigger on the target table that raises PostgreSQL's own SQLSTATE, with a
DETAIL and a HINT, during the load's COPY: what the step sees is a real server error of that
class either way.
"""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from replication.config import parse_config
from replication.definitions import build_definitions

from .assets_tests.test_replication_run import failure_messages
from .company import build_company
from .conftest import free_port
from .helpers import JOB

SCHEMA = """
CREATE TABLE public.people (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, plan text);
"""
DATA = "INSERT INTO public.people SELECT g, 'person' || g || '@example.org', 'plan ' || (g % 3) FROM generate_series(1, 500) g;"
PARTITION = "2026-11-20"


@pytest.fixture(scope="module")
def company(cluster):
    return build_company(cluster, "faults", SCHEMA, DATA)


@pytest.fixture
def run_dev(company, monkeypatch, tmp_path):
    for key, value in company.env_vars("dev").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SNAPSHOT_DIR", str(tmp_path))

    def run(settings: dict | None = None, refresh: bool = False):
        defs = build_definitions(parse_config({"environments": {"dev": settings or {}}}))
        with dg.instance_for_test() as instance:
            result = defs.resolve_job_def(JOB).execute_in_process(
                partition_key=PARTITION, instance=instance, raise_on_error=False,
                run_config={"ops": {"prod_snapshot": {"config": {"refresh": refresh}}}},
                asset_selection=[dg.AssetKey("prod_snapshot"), dg.AssetKey("dev_db")])
            retries = sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
            return result, retries, failure_messages(result).get("dev_db", "")

    return run


def _raising_trigger(sqlstate: str, message: str) -> str:
    return f"""
        CREATE FUNCTION public.fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
          RAISE EXCEPTION USING ERRCODE = '{sqlstate}', MESSAGE = '{message}',
            DETAIL = 'detail of {sqlstate}', HINT = 'hint of {sqlstate}';
        END $$;
        CREATE TRIGGER fault BEFORE INSERT ON public.people FOR EACH ROW EXECUTE FUNCTION public.fault();
    """


UNDO_TRIGGER = "DROP TRIGGER IF EXISTS fault ON public.people; DROP FUNCTION IF EXISTS public.fault();"
KILL_SELF = """
    CREATE FUNCTION public.fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
      PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW;
    END $$;
    CREATE TRIGGER fault BEFORE INSERT ON public.people FOR EACH ROW EXECUTE FUNCTION public.fault();
"""

# (class, how it is produced on the environment, SQL to undo, retried?, text the message must hold)
CASES = [
    ("connection refused", "refused", None, True, "Connection refused"),
    ("too many connections", "ALTER ROLE faults_loader CONNECTION LIMIT 0", "ALTER ROLE faults_loader CONNECTION LIMIT -1",
     True, "too many connections"),
    ("connection lost (server restart or administrator)", KILL_SELF, UNDO_TRIGGER, True, "terminat"),
    ("serialization failure", _raising_trigger("40001", "could not serialize access due to concurrent update"),
     UNDO_TRIGGER, True, "SQLSTATE 40001"),
    ("deadlock", _raising_trigger("40P01", "deadlock detected"), UNDO_TRIGGER, True, "SQLSTATE 40P01"),
    ("statement timeout from settings", _raising_trigger("57014", "canceling statement due to statement timeout"),
     UNDO_TRIGGER, False, "SQLSTATE 57014"),
    ("out of shared memory (locks)", _raising_trigger("53200", "out of shared memory"), UNDO_TRIGGER, False,
     "SQLSTATE 53200"),
    ("disk full on the server", _raising_trigger("53100", "could not extend file: No space left on device"),
     UNDO_TRIGGER, False, "SQLSTATE 53100"),
    # Found before writing, with the GRANT that fixes it (engine/load/privileges.py).
    ("permission denied", "REVOKE INSERT ON public.people FROM faults_loader",
     "GRANT INSERT ON public.people TO faults_loader", False, 'GRANT INSERT ON TABLE public.people TO "faults_loader";'),
    # One no catalog check can foresee (a trigger, a policy): PostgreSQL's own error, kept whole.
    ("permission denied during the load", _raising_trigger("42501", "permission denied for table audit_trail"),
     UNDO_TRIGGER, False, "SQLSTATE 42501"),
]


@pytest.mark.parametrize(("name", "cause", "undo", "retried", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_error_class_is_retried_only_when_a_later_try_can_fix_it(
        company, run_dev, monkeypatch, capsys, name, cause, undo, retried, expected):
    assert run_dev()[0].success  # the partition's snapshot, and a loaded environment to keep
    if cause == "refused":
        monkeypatch.setenv("DEV_DB_CONNECTION", f"127.0.0.1:{free_port()}/faults_dev")
    else:
        with company.env() as conn:
            conn.execute(cause)
    try:
        # The faults are raised by a trigger on the live table, which a load in place fires for every
        # row; a swap fills a new table and adds the triggers after the data, as pg_restore does.
        result, retries, message = run_dev({"load": "in_place"})
    finally:
        if undo:
            with company.env() as conn:
                conn.execute(undo)
    shown = next((line for line in message.splitlines() if "dev_db from" in line), message)
    with capsys.disabled():
        print(f"\n| {name:<50} | {'retried ' + str(retries) + 'x' if retries else 'not retried':<12} | "
              f"{shown.split('dev_db from dev ')[-1][:160]}")
    assert not result.success
    assert (retries == 2) if retried else (retries == 0), (retries, message)
    assert expected in message, message
    if not retried:
        assert "Retrying will not help" in message
    if "SQLSTATE" in expected and not retried:  # PostgreSQL's own DETAIL and HINT are kept
        code = expected.split()[-1]
        assert f"DETAIL: detail of {code}" in message and f"HINT: hint of {code}" in message
    for secret in (company.loader.password, company.reader.password):
        assert secret not in message


def test_a_lock_held_past_lock_wait_fails_at_once_and_names_the_session(company, run_dev):
    assert run_dev()[0].success
    server = company.cluster.targets
    blocker = psycopg.connect(host=server.host, port=server.port, dbname=company.loader.database,
                              user="postgres", password=server.password, application_name="dbeaver-erin")
    try:
        blocker.execute("SELECT count(*) FROM public.people")  # idle in transaction from here on
        result, retries, message = run_dev({"blocking_sessions": "wait", "lock_wait": 2})
        pid = blocker.info.backend_pid
    finally:
        blocker.close()
    print(f"\nlock held past lock_wait: {message}")
    assert not result.success and retries == 0
    assert f"pid {pid} " in message and "application 'dbeaver-erin'" in message and "user postgres" in message


def test_a_failing_row_is_reported_without_its_personal_values(company, run_dev):
    """A unique key the environment has and production breaks: the key's column is named, its values are not."""
    assert run_dev()[0].success
    with company.prod() as conn:
        conn.execute("UPDATE public.people SET plan = 'duplicate plan' WHERE id IN (1, 2)")
    with company.env() as conn:
        conn.execute("ALTER TABLE public.people ADD CONSTRAINT plan_not_duplicate CHECK (plan <> 'duplicate plan') NOT VALID")
    try:
        result, retries, message = run_dev({"unmasked_pii": "allow"}, refresh=True)
    finally:
        with company.env() as conn:
            conn.execute("ALTER TABLE public.people DROP CONSTRAINT plan_not_duplicate")
        with company.prod() as conn:
            conn.execute("UPDATE public.people SET plan = 'plan ' || (id % 3) WHERE id IN (1, 2)")
    print(f"\nfailing row: {message}")
    assert not result.success and retries == 0 and "plan_not_duplicate" in message
    assert "Failing row contains (value hidden" in message
    assert "@example.org" not in message and "duplicate plan" not in message


def test_codes_no_test_server_produces_on_demand_are_classified_too():
    from replication.failures import is_transient

    def error(code):
        return psycopg.errors.lookup(code)("x")

    assert all(is_transient(error(code)) for code in ("08006", "40001", "40P01", "57P01", "57P02", "57P03", "53300", "55P03"))
    assert not any(is_transient(error(code)) for code in ("57014", "53200", "53100", "42501", "25P03", "25P04", "23505",
                                                           "58030", "54000"))
