"""Retention keeps the newest N captures and never deletes a folder in use; the disk guard refuses early."""

import json
import os
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from replication.engine.pg.catalog import TableSize
from replication.engine.errors import SnapshotSpaceError
from replication.engine.snapshot.retention import (
    SpaceEstimate,
    check_free_space,
    estimate_from_catalog,
    estimate_from_manifests,
    folder_lock,
    prune,
)
from replication.engine.storage import snapshot_name

from ...helpers import role_connection, snapshot


def snapshot_path(root: Path, partition: str) -> Path:
    return root / snapshot_name(partition)


def fake_snapshot(root: Path, partition: str, captured_at: str, size: int = 1000) -> Path:
    folder = snapshot_path(root, partition)
    folder.mkdir(parents=True)
    (folder / "shop.products.csv").write_bytes(b"x" * size)
    manifest = {"partition": partition, "captured_at": captured_at, "server_version": "17", "source": "prod",
                "include": ["*"], "exclude": [], "tables": [], "selected": []}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_keeps_the_newest_captures_not_the_newest_partitions(tmp_path):
    # A backfill captures old partitions today: capture time, not the partition, decides.
    fake_snapshot(tmp_path, "2026-11-20", "2026-11-20T00:01:00+00:00")
    fake_snapshot(tmp_path, "2026-11-21", "2026-11-21T00:01:00+00:00")
    fake_snapshot(tmp_path, "2024-03-01", "2026-11-22T10:00:00+00:00")
    fake_snapshot(tmp_path, "2024-03-02", "2026-11-22T10:05:00+00:00")
    report = prune(tmp_path, 3)
    assert report.deleted == ["prod_snapshot_20261120"] and report.freed_bytes > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "prod_snapshot_20240301", "prod_snapshot_20240302", "prod_snapshot_20261121"]


def test_zero_keeps_everything_and_unfinished_folders_are_cleared(tmp_path):
    for day in range(1, 6):
        fake_snapshot(tmp_path, f"2026-11-0{day}", f"2026-11-0{day}T00:01:00+00:00")
    assert prune(tmp_path, 0).deleted == []
    assert len(list(tmp_path.iterdir())) == 5
    unfinished = snapshot_path(tmp_path, "2026-11-09")
    unfinished.mkdir()
    (unfinished / "shop.products.csv").write_text("half")
    report = prune(tmp_path, 2)
    assert "prod_snapshot_20261109" in report.deleted and len(list(tmp_path.iterdir())) == 2


def test_a_folder_in_use_or_protected_is_never_deleted(tmp_path):
    loading = fake_snapshot(tmp_path, "2026-11-01", "2026-11-01T00:01:00+00:00")
    protected = fake_snapshot(tmp_path, "2026-11-02", "2026-11-02T00:01:00+00:00")
    fake_snapshot(tmp_path, "2026-11-03", "2026-11-03T00:01:00+00:00")
    # Another process (a load step of another run) holds its shared lock.
    holder = subprocess.Popen(
        ["python3", "-c", f"import fcntl, os, sys, time; fd = os.open({str(loading / '.lock')!r}, os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_SH); print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        report = prune(tmp_path, 1, protect=(protected,))
    finally:
        holder.stdin.close()
        holder.wait()
    assert report.in_use == ["prod_snapshot_20261101"] and report.deleted == []
    assert loading.exists() and protected.exists()
    assert prune(tmp_path, 1).deleted == ["prod_snapshot_20261101", "prod_snapshot_20261102"]


def test_a_lock_on_a_new_folder_leaves_nothing_behind_when_nothing_was_written(tmp_path):
    folder = tmp_path / "prod_snapshot_20261125"
    with folder_lock(folder, exclusive=True):
        assert folder.is_dir()
    assert not folder.exists()


def test_estimates_come_from_the_last_manifest_of_the_same_selection_or_the_catalog(tmp_path):
    assert estimate_from_manifests(tmp_path, ["*"], []) is None
    folder = fake_snapshot(tmp_path, "2026-11-01", "2026-11-01T00:01:00+00:00")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["tables"] = [{"schema": "shop", "name": "products", "file": "shop.products.csv", "columns": [],
                           "rows": 10, "bytes": 5_000_000, "sha256": "", "content_checksum": "", "seconds": 0}]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert estimate_from_manifests(tmp_path, ["*"], []).needed == 5_500_000
    assert estimate_from_manifests(tmp_path, ["shop.*"], []) is None
    # Rows plus 50%; TOAST values (bytea prints as hex, twice its size) two and a half times.
    assert estimate_from_catalog([TableSize(1_000_000, 0)]).needed == 1_500_000
    assert estimate_from_catalog([TableSize(1_000_000, 0), TableSize(3_000_000, 2_000_000)]).needed == 8_000_000


def test_free_space_check_names_folder_estimate_and_free_space(tmp_path):
    with pytest.raises(SnapshotSpaceError) as caught:
        check_free_space(tmp_path / "prod_snapshot_20261125", SpaceEstimate(1 << 60, "a test estimate"))
    message = str(caught.value)
    assert str(tmp_path / "prod_snapshot_20261125") in message and "a test estimate" in message
    assert "MiB is free" in message and "no retry is scheduled" in message


@contextmanager
def tiny_filesystem(tmp_path: Path, size: str):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the disk guard's arithmetic is tested above")
    mount = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_running_out_of_space_mid_capture_removes_the_partial_files(cluster, tmp_path):
    """No estimate guards this capture, so it really fills the disk; it must fail clean."""
    with tiny_filesystem(tmp_path, "400k") as mount:
        folder = snapshot_path(mount, "2026-11-25")
        with pytest.raises(SnapshotSpaceError, match="filled up while the snapshot was written") as caught:
            snapshot(cluster, folder)
        assert "partial files were removed" in str(caught.value) and "no retry" in str(caught.value)
        assert [p.name for p in folder.iterdir()] == []


def test_estimate_larger_than_the_disk_refuses_before_writing(cluster, tmp_path):
    with tiny_filesystem(tmp_path, "64k") as mount:
        folder = snapshot_path(mount, "2026-11-25")

        def guard(sizes):
            check_free_space(folder, estimate_from_catalog(sizes))

        with pytest.raises(SnapshotSpaceError, match="Not enough space for the snapshot"):
            with role_connection(cluster, "prod") as conn:
                from replication.engine.capture.take import take_snapshot

                take_snapshot(conn, folder, partition="2026-11-25", before_writing=guard)
        assert not folder.exists()
