"""zstd and age as stream filters: byte-exact round trips, bounded memory, and clear errors."""

import os

import pytest
from pyrage import x25519

from replication.engine.errors import SnapshotCorruptError, SnapshotKeyError
from replication.engine.manifest import ColumnEntry, TableEntry
from replication.engine.storage import Encoding, FolderStore, SnapshotLocation


def entry_for(location: SnapshotLocation, file: str, stored, plain_bytes: int) -> TableEntry:
    return TableEntry(schema="shop", name="t", file=file, columns=[ColumnEntry("a", "text")], rows=0,
                      bytes=plain_bytes, sha256=stored.sha256, content_checksum="", seconds=0.0,
                      stored_bytes=stored.size, compression=location.encoding.compression,
                      encryption=location.encoding.encryption)


def write(location: SnapshotLocation, data: bytes, chunk: int = 100_000) -> TableEntry:
    file = location.object_name("shop.t")
    writer = location.writer(file)
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])
    return entry_for(location, file, writer.commit(), len(data))


def read(location: SnapshotLocation, entry: TableEntry) -> bytes:
    out = bytearray()
    location.read_into(entry, out.extend)
    return bytes(out)


@pytest.fixture
def keys():
    identity = x25519.Identity.generate()
    return identity, str(identity.to_public())


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_round_trip_is_byte_exact(tmp_path, keys, compression, encrypted):
    identity, recipient = keys
    data = b"id,note\n" + b"".join(b'%d,"line %d, with ""quotes"" and \xc3\xa9"\n' % (i, i * 7) for i in range(60_000))
    data += os.urandom(300_000)  # incompressible too
    encoding = Encoding(compression, 3, (recipient,) if encrypted else ())
    location = SnapshotLocation(FolderStore(tmp_path), "snap", encoding, [identity])
    entry = write(location, data)
    assert read(location, entry) == data
    with location.open_csv(entry) as handle:
        assert handle.read() == data
    stored = (tmp_path / "snap" / entry.file).read_bytes()
    assert entry.file.endswith(".csv" + (".zst" if compression == "zstd" else "") + (".age" if encrypted else ""))
    if encrypted:
        assert stored.startswith(b"age-encryption.org/v1") and b"quotes" not in stored
    if compression == "zstd" and not encrypted:
        assert len(stored) < len(data) * 0.6
    print(f"{compression:>4} encrypted={encrypted!s:5}: {len(data):,} bytes -> {len(stored):,} stored")


def test_a_flipped_byte_fails_before_the_stream_ends(tmp_path, keys):
    identity, recipient = keys
    location = SnapshotLocation(FolderStore(tmp_path), "snap", Encoding("zstd", 3, (recipient,)), [identity])
    entry = write(location, os.urandom(400_000).hex().encode())
    path = tmp_path / "snap" / entry.file
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    # age authenticates each 64 KiB chunk: the damaged one fails as it arrives, before the sha256 at the end.
    with pytest.raises(SnapshotCorruptError, match="does not decompress|was changed after capture"):
        read(location, entry)


def test_the_wrong_identity_names_the_variable_and_never_the_key(tmp_path, keys):
    identity, recipient = keys
    writer_side = SnapshotLocation(FolderStore(tmp_path), "snap", Encoding("zstd", 3, (recipient,)))
    entry = write(writer_side, b"x,y\n" * 1000)
    other = x25519.Identity.generate()
    with pytest.raises(SnapshotKeyError) as caught:
        read(SnapshotLocation(FolderStore(tmp_path), "snap", identities=[other]), entry)
    assert "SNAPSHOT_AGE_IDENTITY does not open this snapshot" in str(caught.value)
    assert str(other) not in str(caught.value) and str(identity) not in str(caught.value)
    with pytest.raises(SnapshotKeyError, match="SNAPSHOT_AGE_IDENTITY is not set"):
        read(SnapshotLocation(FolderStore(tmp_path), "snap"), entry)


def test_a_cut_off_object_does_not_decode_quietly(tmp_path):
    location = SnapshotLocation(FolderStore(tmp_path), "snap", Encoding("zstd"))
    entry = write(location, os.urandom(50_000) + b"tail\n" * 100_000)
    path = tmp_path / "snap" / entry.file
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(SnapshotCorruptError):
        read(location, entry)
