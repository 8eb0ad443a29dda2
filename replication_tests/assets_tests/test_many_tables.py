"""A thousand tables through Dagster: every one copied and checked, and a materialization people can still read."""

import time

import dagster as dg
import pytest

from replication.config import parse_config
from replication.definitions import build_definitions

from ..company import build_company
from ..helpers import JOB
from .test_replication_run import materializations
from .test_unattended import check_results

TABLES = 1000


@pytest.fixture(scope="module")
def thousand(cluster):
    company = build_company(cluster, "thousand", "SELECT 1")
    for database, connect in ((company.reader.database, company.prod), (company.loader.database, None)):
        conn = connect() if connect else cluster.targets.connect(company.loader.database, user=company.loader.user,
                                                                  password=company.loader.password)
        with conn:
            for i in range(TABLES):  # one transaction each, as migrations create them
                parent = f", parent int REFERENCES public.t{i - 1:04d} (id)" if i % 4 == 3 else ""
                conn.execute(f"CREATE TABLE public.t{i:04d} (id int PRIMARY KEY, label text NOT NULL, at date{parent})")
                if connect:
                    conn.execute(f"INSERT INTO public.t{i:04d} SELECT g, 'row ' || g, date '2024-01-01' + g"
                                 f"{', g' if parent else ''} FROM generate_series(1, 3) g")
            if connect:
                conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {company.reader.user}")
    return company


def test_a_thousand_tables_are_copied_checked_and_summarised(thousand, monkeypatch, tmp_path):
    for key, value in thousand.env_vars("dev").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SNAPSHOT_DIR", str(tmp_path))
    defs = build_definitions(parse_config({"environments": {"dev": {}}}))
    with dg.instance_for_test() as instance:
        started = time.monotonic()
        result = defs.resolve_job_def(JOB).execute_in_process(partition_key="2026-11-21", instance=instance,
                                                              raise_on_error=False)
        seconds = time.monotonic() - started
        logs = [r for r in instance.all_logs(result.run_id) if r.step_key == "dev_db" and r.user_message
                and not r.dagster_event]
    assert result.success
    metadata = materializations(result)
    snapshot, loaded = metadata["prod_snapshot"], metadata["dev_db"]
    print(f"\n{TABLES} tables: run {seconds:.1f} s; snapshot {snapshot['duration_seconds'].value:.1f} s, "
          f"load {loaded['duration_seconds'].value:.1f} s; metadata keys: snapshot {len(snapshot)}, load {len(loaded)}; "
          f"log lines from the load step: {len(logs)}")
    assert loaded["tables"].value == TABLES and loaded["dagster/row_count"].value == 3 * TABLES
    assert all(check_results(result).values())
    for entry in (snapshot, loaded):
        assert len(entry["table_summary"].value.records) == TABLES
        assert len(entry) < 50 and not any(key.startswith(("rows/", "bytes/")) for key in entry)
    assert len(logs) < 20  # a summary, not a line per table
    with thousand.env() as conn:
        assert conn.execute("SELECT count(*) FROM public.t0999").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone()[0] == TABLES // 4
