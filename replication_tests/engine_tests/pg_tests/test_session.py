"""Roles and databases with timeouts far shorter than a COPY: our sessions pin them, as pg_dump does."""

import psycopg
import pytest

from ...company import build_company

SCHEMA = "CREATE TABLE public.events (id bigint PRIMARY KEY, kind text NOT NULL, payload text);"
# Enough rows that capturing or loading them takes several times the timeouts below.
DATA = ("INSERT INTO public.events SELECT g, 'kind ' || (g % 17), repeat(md5(g::text), 4) "
        "FROM generate_series(1, 400000) g;")
HOSTILE = {
    "statement_timeout": "30ms",
    "idle_in_transaction_session_timeout": "40ms",
    "lock_timeout": "5ms",
}


@pytest.fixture(scope="module")
def hostile(cluster):
    company = build_company(cluster, "timeouts", SCHEMA, DATA)
    server_version = cluster.source.connect().info.server_version
    settings = dict(HOSTILE, **({"transaction_timeout": "80ms"} if server_version >= 170000 else {}))
    for server, account, database in ((cluster.source, company.reader, company.reader.database),
                                      (cluster.targets, company.loader, company.loader.database)):
        with server.connect() as admin:
            for name, value in settings.items():
                admin.execute(f'ALTER ROLE "{account.user}" SET {name} = \'{value}\'')
            # The database's own default, too, as companies set it.
            admin.execute(f'ALTER DATABASE "{database}" SET statement_timeout = \'20ms\'')
    return company, settings


def test_the_roles_timeouts_do_cancel_a_session_that_inherits_them(hostile):
    """The control: without the pinned settings, the same role's COPY is cancelled."""
    company, settings = hostile
    account = company.reader
    with psycopg.connect(host=company.cluster.source.host, port=company.cluster.source.port, dbname=account.database,
                         user=account.user, password=account.password) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30ms"
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            with conn.cursor() as cur, cur.copy("COPY (SELECT * FROM public.events) TO STDOUT (FORMAT csv)") as copy:
                for _ in copy:
                    pass


def test_snapshot_and_load_run_far_longer_than_the_roles_timeouts(hostile, tmp_path):
    company, settings = hostile
    with company.reader_connection() as conn:
        pinned = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in settings}
    assert set(pinned.values()) == {"0"}, pinned
    manifest = company.snapshot(tmp_path / "s", jobs=2)
    report = company.load(tmp_path / "s")
    print(f"\ncaptured {manifest.total_rows:,} rows in {sum(t.seconds for t in manifest.tables):.2f} s and loaded them in "
          f"{report.seconds:.2f} s, as roles whose {', '.join(f'{k}={v}' for k, v in settings.items())}")
    assert manifest.table("public.events").rows == 400_000
    assert report.total_rows == 400_000 and all(t.checksum_verified for t in report.tables)
    assert report.seconds > 0.2  # several times every timeout above: they really were out of the way
    with company.env() as conn:
        assert conn.execute("SELECT count(*), sum(id) FROM public.events").fetchone() == (400_000, 400_000 * 400_001 // 2)
