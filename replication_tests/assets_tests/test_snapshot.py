"""prod_snapshot's materialization: what the UI may show of production, and how much of a file it reads."""

import dagster as dg
import pytest

from replication.config import parse_config
from replication.definitions import build_definitions
from replication.metadata import PREVIEW_BYTES, preview_markdown

from ..helpers import JOB
from .test_replication_run import materializations

MASKED = {"shop.customers.email": "email", "shop.customers.full_name": "name", "shop.customers.note": "redact"}


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def snapshot_metadata(instance, preview: str | None) -> dict:
    snapshot = {"include": ["shop.customers"], **({"preview": preview} if preview else {})}
    config = parse_config({"snapshot": snapshot, "environments": {"dev": {"unmasked_pii": "allow", "mask": MASKED}}})
    result = build_definitions(config).resolve_job_def(JOB).execute_in_process(
        partition_key="2026-11-14", instance=instance, asset_selection=[dg.AssetKey("prod_snapshot")],
        run_config={"ops": {"prod_snapshot": {"config": {"refresh": True}}}})
    return materializations(result)["prod_snapshot"]


def production_values(cluster) -> list[str]:
    """What must not reach the UI: values of masked and of personal-looking columns (long enough to search for)."""
    with cluster.connect("prod") as conn:
        rows = conn.execute('SELECT email::text, full_name, "Display Name", note, birthday::text FROM shop.customers').fetchall()
    return sorted({value[:24] for row in rows for value in row if value and len(value) >= 6})


def shown(metadata: dict) -> str:
    return "\n".join(dg.serialize_value(value) for value in metadata.values())


def test_the_default_preview_shows_no_masked_or_personal_looking_value(cluster, replication_env, instance):
    metadata = snapshot_metadata(instance, None)
    text = shown(metadata)
    preview = metadata["preview (shop.customers)"].value
    print(f"\npreview under the default policy:\n{preview}\nhidden: {metadata['preview_hidden_columns'].value}")
    assert metadata["preview_policy"].value == "masked"
    assert {"email", "full_name", "Display Name", "note", "birthday"} <= set(metadata["preview_hidden_columns"].value)
    header = preview.splitlines()[0]
    assert "is_active" in header and "email" not in header and "full_name" not in header
    assert preview.count("\n") == 11  # header, rule and ten rows
    leaked = [value for value in production_values(cluster) if value in text]
    assert leaked == []


def test_raw_shows_everything_and_none_shows_nothing(cluster, replication_env, instance):
    raw = shown(snapshot_metadata(instance, "raw"))
    assert any(value in raw for value in production_values(cluster))  # the check above could fail
    metadata = snapshot_metadata(instance, "none")
    assert not any(key.startswith("preview") for key in metadata)
    assert not [value for value in production_values(cluster) if value in shown(metadata)]


def test_the_preview_reads_a_bounded_head_of_the_file_however_large_its_values(tmp_path):
    import tracemalloc

    path = tmp_path / "big.csv"
    with open(path, "w") as handle:
        handle.write("id,doc,kind\n")
        handle.write(f'0,"{"a" * 200_000}, with a comma",k0\n')  # 200 KiB: past the csv module's default limit
        for number in range(1, 4):
            handle.write(f'{number},"{"x" * (64 << 20)}",k{number}\n')  # 64 MiB per value
    tracemalloc.start()
    markdown = preview_markdown(path, ["id", "doc", "kind"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"\n{markdown}\npeak Python memory {peak / 2**20:.2f} MiB for a {path.stat().st_size / 2**20:,.0f} MiB file")
    # The second row alone is larger than the bound: the preview stops before it.
    assert markdown.splitlines() == ["| id | doc | kind |", "|---|---|---|", f"| 0 | {'a' * 39}… | k0 |"]
    assert peak < 4 * PREVIEW_BYTES
