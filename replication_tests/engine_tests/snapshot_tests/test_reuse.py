"""Folder naming and the snapshot-reuse decision, on a real snapshot folder."""

import json
import shutil

import pytest

from replication.engine.storage import snapshot_name
from replication.engine.snapshot.reuse import reuse_decision


def snapshot_path(root, partition):
    return root / snapshot_name(partition)

from ...helpers import snapshot


@pytest.fixture(scope="module")
def snap(cluster, tmp_path_factory):
    directory = snapshot_path(tmp_path_factory.mktemp("store"), "2026-11-25")
    snapshot(cluster, directory, include=["shop.products", "shop.customers"])
    return directory


def test_folder_name_is_the_partition_without_dashes(tmp_path):
    assert snapshot_name("2026-11-25") == "prod_snapshot_20261125"
    assert snapshot_path(tmp_path, "2024-01-01") == tmp_path / "prod_snapshot_20240101"


def test_a_finished_snapshot_with_the_same_selection_is_reused(snap):
    decision = reuse_decision(snap, ["shop.products", "shop.customers"], [], need_checksums=True)
    assert decision.reusable and decision.manifest.partition == "2026-11-25"


def test_a_missing_folder_is_captured(tmp_path):
    decision = reuse_decision(tmp_path / "prod_snapshot_20261124", ["*"], [], need_checksums=True)
    assert not decision.reusable and "no finished snapshot" in decision.reason


def test_another_selection_is_captured_again(snap):
    decision = reuse_decision(snap, ["*"], [], need_checksums=True)
    assert not decision.reusable and "another table selection" in decision.reason
    assert not reuse_decision(snap, ["shop.products", "shop.customers"], ["shop.products"], need_checksums=True).reusable


def test_a_damaged_or_unfinished_snapshot_is_captured_again(snap, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(snap, damaged)
    with open(damaged / "shop.products.csv", "ab") as handle:
        handle.write(b"1,extra\n")
    decision = reuse_decision(damaged, ["shop.products", "shop.customers"], [], need_checksums=True)
    assert not decision.reusable and "does not verify" in decision.reason and "shop.products.csv" in decision.reason
    (damaged / "manifest.json").unlink()
    assert "no finished snapshot" in reuse_decision(damaged, ["*"], [], need_checksums=True).reason


def test_a_snapshot_without_content_checksums_is_reused_only_when_none_are_needed(snap, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(snap, plain)
    manifest = json.loads((plain / "manifest.json").read_text())
    for table in manifest["tables"]:
        table["content_checksum"] = ""
    (plain / "manifest.json").write_text(json.dumps(manifest))
    selection = ["shop.products", "shop.customers"]
    assert "no content checksums" in reuse_decision(plain, selection, [], need_checksums=True).reason
    assert reuse_decision(plain, selection, [], need_checksums=False).reusable
