"""Compression and encryption as filters on a store's streams: CSV -> zstd -> age -> store, and back.

zstd frames carry their own content checksum and age authenticates every 64 KiB chunk of the
payload and the end of the stream, so neither a flipped bit nor a cut-off object decodes quietly;
the store's sha256 of the stored bytes (in the manifest) catches both before decoding too.
The snapshot step needs only the recipients (public keys); the identity (private key) is read
only where a snapshot is decoded.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyrage
import zstandard

from .base import ObjectWriter, StoredObject

DEFAULT_LEVEL = 3
IDENTITY_VARIABLE = "SNAPSHOT_AGE_IDENTITY"
_QUEUE_CHUNKS = 4  # between the COPY thread and age's: a few MiB in flight, never a table


class IdentityMissing(Exception):
    """An encrypted snapshot and no identity to decrypt it with."""


class IdentityWrong(Exception):
    """The identity given does not open the snapshot (or is not an age identity at all)."""


class DamagedObject(Exception):
    """The stored bytes do not decode: a chunk fails its authentication, or the stream is cut off."""


@dataclass(frozen=True)
class Encoding:
    """How new objects are written: compression, its level, and the age recipients (none: plain)."""

    compression: str = "none"
    level: int = DEFAULT_LEVEL
    recipients: tuple[str, ...] = ()

    @property
    def encryption(self) -> str:
        return "age" if self.recipients else "none"

    def suffix(self) -> str:
        return (".zst" if self.compression == "zstd" else "") + (".age" if self.recipients else "")


PLAIN = Encoding()


def parse_recipients(recipients: Sequence[str]) -> list:
    return [pyrage.x25519.Recipient.from_str(r.strip()) for r in recipients]


def parse_identities(text: str | None) -> list:
    """Identities from the variable's text: one AGE-SECRET-KEY-1... per line, # comments allowed."""
    if not text or not text.strip():
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    try:
        return [pyrage.x25519.Identity.from_str(line) for line in lines]
    except Exception:  # noqa: BLE001 - pyrage raises its own types; the text must never be quoted
        raise IdentityWrong(f"{IDENTITY_VARIABLE} does not hold an age identity (AGE-SECRET-KEY-1...).") from None


class EncodingWriter:
    """Plain CSV bytes in, encoded bytes out into `sink`; counts the plain bytes."""

    def __init__(self, sink: ObjectWriter, encoding: Encoding):
        self.sink = sink
        self.encoding = encoding
        self.plain_bytes = 0
        self._compressor = (zstandard.ZstdCompressor(level=encoding.level, write_checksum=True).compressobj()
                            if encoding.compression == "zstd" else None)
        self._age: _AgeThread | None = None
        if encoding.recipients:
            self._age = _AgeThread(parse_recipients(encoding.recipients), sink)

    def write(self, data) -> None:
        self.plain_bytes += len(data)
        if self._compressor is not None:
            data = self._compressor.compress(bytes(data))
            if not data:
                return
        self._emit(data)

    def _emit(self, data) -> None:
        if self._age is not None:
            self._age.feed(bytes(data))
        else:
            self.sink.write(data)

    def commit(self) -> StoredObject:
        try:
            if self._compressor is not None:
                self._emit(self._compressor.flush())
            if self._age is not None:
                self._age.finish()
        except BaseException:
            self.abort()
            raise
        return self.sink.commit()

    def abort(self) -> None:
        if self._age is not None:
            self._age.cancel()
        self.sink.abort()

    def __enter__(self) -> "EncodingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class _SinkWriter(io.RawIOBase):
    def __init__(self, write: Callable[[bytes], None]):
        self._write = write

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._write(bytes(data))
        return len(data)


class _AgeThread:
    """age's encryptor pulls from a reader; our writers push. A thread with a short queue joins them."""

    def __init__(self, recipients: list, sink: ObjectWriter):
        self._chunks: queue.Queue[bytes | None] = queue.Queue(_QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._cancelled = False
        self._sink = sink
        self._thread = threading.Thread(target=self._run, args=(recipients,), daemon=True, name="age encrypt")
        self._thread.start()

    def _run(self, recipients: list) -> None:
        try:
            pyrage.encrypt_io(ChunkReader(iter(self._chunks.get, None)), _SinkWriter(self._sink_write), recipients)
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
            self._error = self._error or exc

    def _sink_write(self, data: bytes) -> None:
        if not self._cancelled:
            self._sink.write(data)

    def feed(self, data: bytes) -> None:
        while self._thread.is_alive():
            try:
                self._chunks.put(data, timeout=0.5)
                return
            except queue.Full:
                continue
        self._raise()
        raise RuntimeError("age encryption ended before its input")

    def finish(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(None)
        self._thread.join()
        self._raise()

    def cancel(self) -> None:
        self._cancelled = True
        while self._thread.is_alive():
            try:
                self._chunks.put(None, timeout=0.5)
                break
            except queue.Full:
                try:
                    self._chunks.get_nowait()
                except queue.Empty:
                    pass
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of chunks (age's decryptor pulls from one; so do CSV readers).

    An error the iterator raises is kept in `error`: age turns it into an I/O error of its own.
    """

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._pending = memoryview(b"")
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            while not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    return 0
                self._pending = memoryview(chunk)
        except BaseException as exc:  # noqa: BLE001 - kept: age would turn it into an I/O error
            self.error = exc
            raise
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()  # a generator's finally: closes a download, stops a decoding thread
        super().close()


# No decoded piece is larger than this, whatever the compression ratio: a megabyte of zstd can
# hold gigabytes of repeated text, and a decompressor asked for "whatever this input expands to"
# hands all of it back at once.
DECODED_PIECE = 1 << 20
_READ_COMPRESSED = 1 << 16


class _Decompress:
    """Stored bytes pushed in, plain bytes pushed on to `write` in pieces of at most DECODED_PIECE.

    zstd's stream writer decompresses into a buffer of that size and hands it on each time it
    fills. It does not tell a frame cut off at a block boundary from a whole one, so `finish`
    compares the plain bytes with the manifest's count instead.
    """

    def __init__(self, compression: str, write: Callable[[bytes], None], expected_bytes: int | None):
        self._write = write
        self._expected = expected_bytes
        self.plain_bytes = 0
        self._writer = (zstandard.ZstdDecompressor().stream_writer(
            _SinkWriter(self._counted), write_size=DECODED_PIECE, closefd=False)
            if compression == "zstd" else None)

    def _counted(self, data: bytes) -> None:
        self.plain_bytes += len(data)
        self._write(data)

    def __call__(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)
        elif data:
            self._counted(data)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        _check_length(self.plain_bytes, self._expected)


def _check_length(plain_bytes: int, expected_bytes: int | None) -> None:
    if expected_bytes is not None and plain_bytes != expected_bytes:
        raise DamagedObject(f"the object decodes to {plain_bytes:,} bytes of CSV, the manifest says {expected_bytes:,}: "
                            "it ends before its last frame does")


def decode(chunks: Iterator[bytes], *, compression: str, encryption: str, identities: list,
           write: Callable[[bytes], None], expected_bytes: int | None = None) -> None:
    """Stored bytes in, plain CSV bytes pushed to `write` as they come, never more than DECODED_PIECE at once.

    `expected_bytes` (the manifest's count of CSV bytes) makes a cut-off object an error.
    """
    decompress = _Decompress(compression, write, expected_bytes)
    if encryption == "age":
        if not identities:
            raise IdentityMissing(f"The snapshot is encrypted and {IDENTITY_VARIABLE} is not set.")
        reader = ChunkReader(chunks)
        failure: list[BaseException] = []

        def guarded(data: bytes) -> None:
            try:
                decompress(data)
            except BaseException as exc:  # noqa: BLE001 - kept: age would turn it into an I/O error
                failure.append(exc)
                raise

        try:
            pyrage.decrypt_io(reader, _SinkWriter(guarded), identities)
        except Exception as exc:
            # age reports our own errors (reading, decompressing, COPY) as its I/O errors: theirs first.
            if reader.error is not None:
                raise reader.error from None
            if failure:
                raise failure[0] from None
            if isinstance(exc, pyrage.DecryptError) and "no matching keys" in str(exc).lower():
                raise IdentityWrong(f"The identity in {IDENTITY_VARIABLE} does not open this snapshot "
                                    "(it was encrypted to other recipients, or the object is damaged).") from None
            raise DamagedObject(f"age: {exc}") from None
    else:
        for chunk in chunks:
            decompress(chunk)
    decompress.finish()


def decoded_chunks(chunks: Iterator[bytes], *, compression: str, encryption: str, identities: list,
                   expected_bytes: int | None = None) -> Iterator[bytes]:
    """The same as `decode`, as an iterator (for readers that pull), in pieces of at most DECODED_PIECE."""
    if encryption != "age":
        yield from _pulled(chunks, compression, expected_bytes)
        return
    out: queue.Queue = queue.Queue(_QUEUE_CHUNKS)
    stop = threading.Event()
    done = object()

    def put(item) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped()

    def run() -> None:
        try:
            decode(chunks, compression=compression, encryption=encryption, identities=identities, write=put,
                   expected_bytes=expected_bytes)
            put(done)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            try:
                put(exc)
            except _Stopped:
                pass

    thread = threading.Thread(target=run, daemon=True, name="age decrypt")
    thread.start()
    try:
        while True:
            item = out.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _pulled(chunks: Iterator[bytes], compression: str, expected_bytes: int | None) -> Iterator[bytes]:
    """Plain bytes pulled through zstd's reader-side decompressor, which also fills DECODED_PIECE at most."""
    plain_bytes = 0
    if compression == "zstd":
        pieces = zstandard.ZstdDecompressor().read_to_iter(ChunkReader(chunks), read_size=_READ_COMPRESSED,
                                                           write_size=DECODED_PIECE)
    else:
        pieces = chunks
    for piece in pieces:
        plain_bytes += len(piece)
        yield piece
    _check_length(plain_bytes, expected_bytes)


class _Stopped(Exception):
    pass


def sha256_checked(chunks: Iterator[bytes], expected_sha256: str, expected_size: int,
                   on_mismatch: Callable[[str, int], BaseException]) -> Iterator[bytes]:
    """Pass chunks through, and raise `on_mismatch(digest, size)` at the end unless they are what was stored."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if size > expected_size:
            raise on_mismatch(digest.hexdigest(), size)
        yield chunk
    if size != expected_size or digest.hexdigest() != expected_sha256:
        raise on_mismatch(digest.hexdigest(), size)
