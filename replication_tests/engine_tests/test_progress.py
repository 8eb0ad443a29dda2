import re
import time

from replication.engine.progress import Progress, Ticker

from ..helpers import load, snapshot


def test_reports_rows_megabytes_and_rate_on_schedule_while_in_use():
    lines = []
    with Ticker(lines.append, interval=0.05) as ticker:
        with ticker.track("snapshot", "shop.orders") as progress:
            progress.advance(1_000_000, 2000)
            time.sleep(0.13)  # nothing advances: the stream may stall, the reports go on
        reported = len(lines)
        with ticker.track("snapshot", "shop.products"):
            time.sleep(0.13)
        time.sleep(0.1)
    assert reported >= 2  # on schedule
    assert len(lines) - reported >= 1 and all("shop.orders" not in line for line in lines[reported:])  # never after
    assert re.fullmatch(r"snapshot shop\.orders: 2,000 rows, 1\.0 MB in 0\.\d s \([\d,]+ rows/s, [\d.]+ MB/s\)", lines[0])
    assert progress.seconds == progress.seconds  # frozen once the block ended


def test_loader_estimates_rows_from_bytes():
    progress = Progress(None, "load dev", "shop.orders", expected_bytes=1_000_000, expected_rows=10_000)
    progress.advance(250_000)
    assert progress.line().startswith("load dev shop.orders: 2,500 rows, 0.2 MB") and progress.line().endswith("25% of 1.0 MB")


def test_a_load_slower_than_five_seconds_logs_progress_while_it_runs(cluster, tmp_path):
    directory = tmp_path / "snap"
    snapshot(cluster, directory)
    slow = """
        CREATE FUNCTION shop.slow_row() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(0.003); RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE INSERT ON shop.orders FOR EACH ROW EXECUTE FUNCTION shop.slow_row();
    """
    lines = []
    with cluster.altered("staging", slow, "DROP TRIGGER slow ON shop.orders; DROP FUNCTION shop.slow_row()"):
        started = time.monotonic()
        load(cluster, "staging", directory, log=lines.append)
        seconds = time.monotonic() - started
    during = [line for line in lines if line.startswith("load staging shop.orders:")]
    assert seconds > 5 and len(during) >= int(seconds // 5) - 1 >= 1, (seconds, lines)
    assert re.search(r"[\d,]+ rows, [\d.]+ MB in [\d.]+ s \([\d,]+ rows/s", during[0])


def test_a_snapshot_counts_rows_not_its_csv_header(cluster):
    """COPY's header is the stream's first line; the progress line counts data rows only."""
    from psycopg import sql

    from replication.engine.capture.copyout import copy_out

    from ..helpers import role_connection

    ticker = Ticker(None)
    with role_connection(cluster, "prod") as conn, conn.transaction():
        expected = conn.execute("SELECT count(*) FROM ONLY shop.products").fetchone()[0]
        with ticker.track("snapshot", "shop.products") as progress:
            rows = copy_out(conn, sql.SQL("COPY (SELECT * FROM ONLY shop.products) TO STDOUT (FORMAT csv, HEADER)"),
                            lambda data: None, progress.advance, header=True)
    assert rows == progress.rows == expected
    assert progress.line().startswith(f"snapshot shop.products: {expected:,} rows")
