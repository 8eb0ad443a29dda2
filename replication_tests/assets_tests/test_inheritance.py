"""Inheritance children (`CREATE TABLE ... INHERITS`, the partitioning before PostgreSQL 10): each table
is copied, counted and checked with its own rows, plain, masked and in a subset."""

import dagster as dg
import pytest

from ..company import build_company
from ..conftest import table_fingerprints
from .test_masking import run
from .test_replication_run import failure_messages
from .test_unattended import check_results, checks_only

SCHEMA = """
CREATE TABLE public.devices (id int PRIMARY KEY, owner_email text NOT NULL);
CREATE TABLE public.measurements (id int PRIMARY KEY, device_id int REFERENCES public.devices, taken_at date NOT NULL,
                                  value numeric, note text);
CREATE TABLE public.measurements_2023 (CHECK (taken_at < '2024-01-01')) INHERITS (public.measurements);
CREATE TABLE public.measurements_2024 (CHECK (taken_at >= '2024-01-01')) INHERITS (public.measurements);
-- Keys and foreign keys are not inherited: each child has its own, as such schemas do.
ALTER TABLE public.measurements_2023 ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (device_id) REFERENCES public.devices;
ALTER TABLE public.measurements_2024 ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (device_id) REFERENCES public.devices;
"""
DATA = """
INSERT INTO public.devices SELECT g, 'owner' || g || '@example.org' FROM generate_series(1, 50) g;
INSERT INTO public.measurements SELECT g, 1 + g % 50, DATE '2022-01-01' + g, g * 1.5, 'note ' || g
FROM generate_series(1, 500) g;
INSERT INTO public.measurements_2023 SELECT 1000 + g, 1 + g % 50, DATE '2023-01-01' + g, g, 'note ' || g
FROM generate_series(1, 150) g;
INSERT INTO public.measurements_2024 SELECT 2000 + g, 1 + g % 50, DATE '2024-01-01' + g, g, 'note ' || g
FROM generate_series(1, 150) g;
"""
VARIANTS = {
    "plain": {},
    "masked": {"mask": {"public.devices.owner_email": "email", "public.measurements.note": "redact",
                        "public.measurements_2023.note": "redact", "public.measurements_2024.note": "redact"},
               "unmasked_pii": "allow"},
    "subset": {"subset": {"public.devices": {"percent": 30}}},
}
TABLES = ["public.devices", "public.measurements", "public.measurements_2023", "public.measurements_2024"]


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def own_counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM ONLY {t}").fetchone()[0] for t in TABLES}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_parent_with_two_inheritance_children_copies_exactly_and_every_check_passes(
        cluster, tmp_path, monkeypatch, instance, variant):
    company = build_company(cluster, f"inherit_{variant}", SCHEMA, DATA)
    for key, value in company.env_vars("dev").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SNAPSHOT_DIR", str(tmp_path))
    config = {"environments": {"dev": VARIANTS[variant]}}
    result = run(config, instance, partition="2026-11-20")
    assert result.success, failure_messages(result)
    checks = check_results(result)
    assert checks and all(checks.values()), checks

    with company.prod() as prod, company.env() as env:
        prod_rows, env_rows = own_counts(prod), own_counts(env)
        # The parent's own rows, not with its children's: 500, where a bare name would count 800.
        assert prod_rows["public.measurements"] == 500
        if variant == "plain":
            assert table_fingerprints(env) == table_fingerprints(prod)
        elif variant == "masked":
            assert env_rows == prod_rows
            assert env.execute("SELECT count(*) FROM public.measurements WHERE note LIKE 'note %'").fetchone()[0] == 0
        else:
            kept = env.execute("SELECT array_agg(id) FROM public.devices").fetchone()[0]
            assert 0 < len(kept) < 50
            for table in TABLES[1:]:
                # Every row of each table that references a kept device, and no other.
                expected = prod.execute(f"SELECT count(*) FROM ONLY {table} WHERE device_id = ANY(%s)", (kept,)).fetchone()[0]
                assert env_rows[table] == expected > 0, table

    # A row changed in one child after the load: that child's check fails, and only that child.
    with company.env() as env:
        env.execute("UPDATE public.measurements_2024 SET value = value + 1 WHERE id = "
                    "(SELECT min(id) FROM public.measurements_2024)")
    rechecked = checks_only(config).execute_in_process(partition_key="2026-11-20", instance=instance,
                                                       raise_on_error=False)
    evaluations = [e for e in rechecked.get_asset_check_evaluations()
                   if e.check_name == "rows_and_checksums_match_snapshot"]
    assert [e.passed for e in evaluations] == [False]
    failed = str(evaluations[0].description) + str(evaluations[0].metadata)
    assert "public.measurements_2024" in failed and "public.measurements (" not in failed
