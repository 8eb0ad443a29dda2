"""zstd and age as stream filters: byte-exact round trips, bounded memory, and clear errors."""

import os

import pytest
from pyrage import x25519

from replication.engine.errors import SnapshotCorruptError, SnapshotKeyError
from replication.engine.snapshot.manifest import ColumnEntry, TableEntry
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


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_value_that_compresses_thousands_to_one_decodes_in_bounded_pieces(tmp_path, keys, encrypted):
    """200 MiB of repeated text is a few kilobytes of zstd: one stored chunk holds all of it, and
    neither the pushing nor the pulling reader may hand it over whole."""
    import tracemalloc

    from replication.engine.storage.codec import DECODED_PIECE

    identity, recipient = keys
    location = SnapshotLocation(FolderStore(tmp_path), "snap", Encoding("zstd", 3, (recipient,) if encrypted else ()),
                                [identity])
    file = location.object_name("shop.t")
    writer = location.writer(file)
    row = b'1,"' + b'Compressible, ""quoted"" ' * 45_000 + b'"\n'  # about 1 MiB of CSV per row
    for _ in range(200):
        writer.write(row)
    entry = entry_for(location, file, writer.commit(), 200 * len(row))
    assert entry.stored_bytes < entry.bytes / 1000
    largest = [0, 0]  # push, pull
    total = [0, 0]

    def pushed(piece: bytes) -> None:
        largest[0] = max(largest[0], len(piece))
        total[0] += len(piece)

    tracemalloc.start()
    location.read_into(entry, pushed)
    with location.open_csv(entry) as handle:
        while piece := handle.read1(4 << 20):
            largest[1] = max(largest[1], len(piece))
            total[1] += len(piece)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"\n{entry.bytes / 2**20:,.0f} MiB of CSV stored in {entry.stored_bytes:,} bytes; largest piece pushed "
          f"{largest[0]:,}, pulled {largest[1]:,}; peak Python memory {peak / 2**20:.1f} MiB")
    assert total == [entry.bytes, entry.bytes]
    assert largest[0] <= DECODED_PIECE and largest[1] <= DECODED_PIECE
    assert peak < 16 * DECODED_PIECE


def test_a_frame_cut_at_a_block_boundary_is_caught_without_the_sha256(tmp_path):
    """A verified folder snapshot is not hashed again as it loads: the count of plain bytes is what
    tells a whole frame from one cut short."""
    from replication.engine.storage.codec import DamagedObject, decode

    location = SnapshotLocation(FolderStore(tmp_path), "snap", Encoding("zstd"))
    data = b"a,b\n" * 500_000
    entry = write(location, data)
    stored = (tmp_path / "snap" / entry.file).read_bytes()
    whole = bytearray()
    decode(iter([stored]), compression="zstd", encryption="none", identities=[], write=whole.extend,
           expected_bytes=len(data))
    assert bytes(whole) == data
    with pytest.raises(DamagedObject, match="ends before its last frame"):
        decode(iter([stored[:len(stored) // 2]]), compression="zstd", encryption="none", identities=[],
               write=lambda piece: None, expected_bytes=len(data))
