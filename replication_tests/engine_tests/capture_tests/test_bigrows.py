"""Rows too large for one COPY message reach the snapshot file in chunks, exactly as COPY would print them."""

import csv
import io

import pytest
from psycopg import sql

from replication.engine.capture import bigrows
from replication.engine.capture.copyout import copy_out

from ...helpers import role_connection, snapshot

EDGES = r"""
CREATE TABLE public.edges (id int PRIMARY KEY, t text, b bytea, j jsonb, a text[], flag boolean, addr inet, d date);
INSERT INTO public.edges VALUES
 (1, E'comma, "quote"\nnew line\r\nand CR', '\x00ff22', '{"k": "v, \"q\""}', ARRAY['a,b', NULL, '', 'q"'], true, '10.0.0.1', '2024-02-29'),
 (2, '', '', '[]', '{}', false, '::1', 'infinity'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, E'\\.', '\x5c2e', 'null', ARRAY['日本', '𝄞'], true, '192.168.0.0/16', '0001-01-01 BC'),
 (5, 'Zoë Ünïcødé 日本語 עברית ' || repeat('é', 3000), decode(repeat('ab', 5000), 'hex'), NULL, NULL, NULL, NULL, NULL);
CREATE TABLE public.lone (t text);
INSERT INTO public.lone VALUES (E'\\.'), (''), (NULL), ('x');
GRANT SELECT ON public.edges, public.lone TO prod_reader;
"""


def records(data: bytes) -> list[list[str]]:
    """CSV records, header first, the rest sorted: the chunked pass appends its rows after COPY's."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    return [rows[0], *sorted(rows[1:])]


@pytest.fixture
def edges(cluster):
    with cluster.altered("prod", EDGES, "DROP TABLE public.edges, public.lone"):
        yield


@pytest.mark.parametrize("table", ["public.edges", "public.lone"])
def test_every_row_through_the_chunked_path_is_byte_for_byte_what_copy_prints(cluster, edges, tmp_path, monkeypatch, table):
    # Every row counts as large, and chunks are a few bytes: each value is cut many times.
    monkeypatch.setattr(bigrows, "ROW_BYTES_LIMIT", -1)
    monkeypatch.setattr(bigrows, "TOAST_BYTES_MIN", 0)
    monkeypatch.setattr(bigrows, "CHUNK_BYTES", 7)
    manifest = snapshot(cluster, tmp_path / "s", include=[table])
    written = (tmp_path / "s" / manifest.tables[0].file).read_bytes()
    plain = bytearray()
    with role_connection(cluster, "prod") as conn, conn.transaction():
        columns = ", ".join(f'"{c}"' for c in manifest.tables[0].column_names)
        copy_out(conn, sql.SQL(f"COPY (SELECT {columns} FROM ONLY {table}) TO STDOUT (FORMAT csv, HEADER)"), plain.extend)
    assert manifest.tables[0].rows == (5 if table == "public.edges" else 4)
    assert sorted(written.splitlines(keepends=True)) == sorted(bytes(plain).splitlines(keepends=True))
    assert records(written) == records(bytes(plain))


HUGE_SCHEMA = "CREATE TABLE public.documents (id int PRIMARY KEY, body bytea, note text, email text);"
# Two values of 100 MiB of random bytes (200 MiB of hex in one CSV row each), one note of 200 KiB
# in a masked column, one of 100 MiB that compresses to about a megabyte, and ordinary rows.
HUGE_DATA = """
INSERT INTO public.documents SELECT g, decode(md5(g::text), 'hex'), 'note ' || g, 'user' || g || '@example.org'
FROM generate_series(1, 200) g;
INSERT INTO public.documents SELECT 1000 + n, (SELECT string_agg(sha256(int8send(n * 10000000 + g)), '')
                                               FROM generate_series(1, 3276800) g),
       'big ' || n, 'big' || n || '@example.org'
FROM generate_series(1, 2) n;
INSERT INTO public.documents VALUES (2000, NULL, repeat('Long, "quoted" note; ', 10000), 'long@example.org');
INSERT INTO public.documents VALUES (3000, NULL, repeat('Compressible, "quoted" ', 4559025), 'zip@example.org');
"""
MASKS = {"public.documents": {"note": ("redact", None), "email": ("email", None)}}
WORKER = r"""
import json, os, sys
from replication.engine.verify.audit import masked_value_overlaps
from replication.engine.pg.connection import connect, parse_address
from replication.engine.load import load_snapshot
from replication.engine.privacy.mask import MaskRule
from replication.engine.capture.take import take_snapshot
from replication.engine.storage import Encoding, SnapshotLocation, parse_identities
from replication.engine.snapshot.verify import verify_snapshot
step, address, user, password, folder, masks = sys.argv[1:7]
# As the asset builds it: compression and recipients from the settings, the identity from its variable.
compression, recipient = os.environ.get("TEST_COMPRESSION", "none"), os.environ.get("TEST_RECIPIENT")
location = SnapshotLocation.folder(folder, Encoding(compression, 3, (recipient,) if recipient else ()),
                                   parse_identities(os.environ.get("SNAPSHOT_AGE_IDENTITY")))
conn = connect(parse_address(address, "X"), user, password)
if step == "snapshot":
    manifest = take_snapshot(conn, location, partition="2026-11-25", connect=lambda: connect(parse_address(address, "X"), user, password), jobs=2)
    print("ROWS", manifest.total_rows, "BYTES", manifest.total_bytes)
else:
    masks = {t: {c: MaskRule(*r) for c, r in cols.items()} for t, cols in json.loads(masks).items()}
    manifest = verify_snapshot(location)
    if step == "load":
        report = load_snapshot(conn, location, manifest, environment="dev", masks=masks, masking_key="k")
        print("ROWS", report.total_rows, "VERIFIED", all(t.checksum_verified for t in report.tables))
    else:
        found = masked_value_overlaps(conn, location, manifest, {t: list(c) for t, c in masks.items()})
        print("AUDIT", [(f.column, f.compared, f.equal) for f in found])
conn.close()
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("VmHWM_KIB", line.split()[1])
"""
# Half the 512 MiB a step container gets: what the engine itself may use, whatever the values' size.
CEILING_MIB = 256


def run_worker(step: str, address: str, account, folder, masks=MASKS, env: dict | None = None) -> tuple[str, float]:
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WORKER, step, address, account.user, account.password, str(folder),
                             json.dumps(masks)], capture_output=True, text=True, timeout=900,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    peak = int(next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("VmHWM_KIB")))
    return result.stdout, peak / 1024


def test_100_mib_values_are_captured_loaded_masked_and_audited_within_a_bounded_memory(cluster, tmp_path):
    from ...company import build_company

    company = build_company(cluster, "huge", HUGE_SCHEMA, HUGE_DATA)
    folder = tmp_path / "prod_snapshot_20261125"
    peaks = {}
    out, peaks["snapshot"] = run_worker("snapshot", cluster.source.address(company.reader.database), company.reader, folder)
    out_load, peaks["load (masked)"] = run_worker("load", cluster.targets.address(company.loader.database), company.loader, folder)
    out_audit, peaks["masked-values audit"] = run_worker("audit", cluster.targets.address(company.loader.database),
                                                        company.loader, folder)
    size = (folder / "public.documents.csv").stat().st_size
    print(f"\nsnapshot file {size / 2**20:,.0f} MiB; peak RSS MiB: " + ", ".join(f"{k} {v:,.0f}" for k, v in peaks.items()))
    assert "ROWS 204" in out and size > 500 * 2**20
    assert "ROWS 204 VERIFIED True" in out_load
    assert "('public.documents.note', 204, 0)" in out_audit and "('public.documents.email', 204, 0)" in out_audit
    assert all(peak < CEILING_MIB for peak in peaks.values()), peaks
    with company.env() as conn:
        bodies = conn.execute("SELECT count(*), sum(octet_length(body)) FROM public.documents WHERE id > 1000").fetchone()
        zipped = conn.execute("SELECT length(note) FROM public.documents WHERE id = 3000").fetchone()[0]
        long_note = conn.execute("SELECT length(note), note LIKE 'Xxxx, \"xxxxxx\" xxxx;%' FROM public.documents WHERE id = 2000").fetchone()
    assert bodies == (4, 2 * 100 * 2**20) and long_note == (210000, True) and zipped == 23 * 4559025


def test_a_value_that_compresses_to_almost_nothing_still_takes_the_chunked_path(cluster, tmp_path):
    """50 MiB of repeated text is well under a megabyte in TOAST; it is still a 50 MiB row in COPY."""
    from replication.engine.pg.catalog import TableRef, columns_of, table_sizes

    from ...helpers import role_connection

    table = TableRef("public", "squeezed")
    setup = ("CREATE TABLE public.squeezed (id int PRIMARY KEY, body text); "
             "INSERT INTO public.squeezed VALUES (1, repeat('abc', 17476267)), (2, 'small'); "
             "GRANT SELECT ON public.squeezed TO prod_reader")
    with cluster.altered("prod", setup, "DROP TABLE public.squeezed"):
        with role_connection(cluster, "prod") as conn:
            size = table_sizes(conn, [table])[table]
            condition = bigrows.large_row_filter(columns_of(conn, [table])[table], size)
        manifest = snapshot(cluster, tmp_path / "s", include=["public.squeezed"])
    print(f"\nTOAST {size.toast_bytes:,} bytes for a 50 MiB value")
    assert size.toast_bytes < 4 << 20 and condition is not None
    assert manifest.tables[0].rows == 2 and manifest.tables[0].bytes > 50 * 2**20


# Values that compress more than 100:1: a 100 MiB text of repeated words, and a 100 MiB JSON log
# (as jsonb) of repeated entries, whose TOAST is a few hundred KiB and whose zstd is a few hundred.
COMPRESSIBLE_SCHEMA = "CREATE TABLE public.logs (id int PRIMARY KEY, body text, doc jsonb, owner text);"
COMPRESSIBLE_DATA = """
INSERT INTO public.logs SELECT g, 'line ' || g, jsonb_build_object('n', g), 'user' || g || '@example.org'
FROM generate_series(1, 200) g;
INSERT INTO public.logs VALUES (1000, repeat('Compressible, "quoted" log line; ', 3276800), NULL, 'big@example.org');
INSERT INTO public.logs SELECT 2000, NULL, (SELECT jsonb_agg(jsonb_build_object('level', 'info', 'message',
       'request served, "ok"', 'status', 200)) FROM generate_series(1, 1700000)), 'doc@example.org';
"""
COMPRESSIBLE_MASKS = {"public.logs": {"owner": ("email", None)}}
# What the issue asks of every step, whatever the values compress to: under 300 MiB resident.
COMPRESSIBLE_CEILING_MIB = 300


@pytest.fixture(scope="module")
def compressible(cluster):
    from ...company import build_company

    return build_company(cluster, "squeezable", COMPRESSIBLE_SCHEMA, COMPRESSIBLE_DATA)


@pytest.mark.parametrize("encoding", ["none", "zstd", "zstd+age"])
def test_values_that_compress_100_to_1_are_captured_and_loaded_within_a_bounded_memory(compressible, tmp_path, encoding):
    from pyrage import x25519

    company, cluster = compressible, compressible.cluster
    identity = x25519.Identity.generate()
    env = {"TEST_COMPRESSION": encoding.split("+")[0]}
    if encoding.endswith("age"):
        env.update(TEST_RECIPIENT=str(identity.to_public()), SNAPSHOT_AGE_IDENTITY=str(identity))
    folder = tmp_path / "prod_snapshot_20261125"
    peaks = {}
    out, peaks["snapshot"] = run_worker("snapshot", cluster.source.address(company.reader.database), company.reader,
                                        folder, COMPRESSIBLE_MASKS, env)
    out_load, peaks["load (masked)"] = run_worker("load", cluster.targets.address(company.loader.database),
                                                  company.loader, folder, COMPRESSIBLE_MASKS, env)
    out_audit, peaks["masked-values audit"] = run_worker("audit", cluster.targets.address(company.loader.database),
                                                        company.loader, folder, COMPRESSIBLE_MASKS, env)
    stored = sum(p.stat().st_size for p in folder.glob("public.logs.csv*"))
    plain = int(out.split("BYTES")[1].split()[0])
    print(f"\n{encoding}: {plain / 2**20:,.0f} MiB of CSV stored in {stored / 2**20:,.2f} MiB; peak RSS MiB: "
          + ", ".join(f"{k} {v:,.0f}" for k, v in peaks.items()))
    assert "ROWS 202" in out and plain > 200 * 2**20
    assert encoding == "none" or stored * 100 < plain
    assert "ROWS 202 VERIFIED True" in out_load
    assert "('public.logs.owner', 202, 0)" in out_audit
    assert all(peak < COMPRESSIBLE_CEILING_MIB for peak in peaks.values()), peaks
    with company.env() as conn, company.prod() as prod:
        query = "SELECT md5(body), octet_length(body), md5(doc::text) FROM public.logs WHERE id IN (1000, 2000) ORDER BY id"
        assert conn.execute(query).fetchall() == prod.execute(query).fetchall()
