"""Compression of stored events.

Observation batches are large and repetitive (keys, entity types, timestamps). Zstandard (through pyarrow, which
KeySync already needs) compresses them to a fraction of zlib's output at twice its speed. Each stored state is
the uncompressed length (8 bytes, little-endian) followed by the zstd frame, since decompression wants the size.

An event holding Arrow tables is a binary frame whose tables are compressed already (keysync.infrastructure.
arrow_transcoding): it is stored as it is (compressing it again saves ~4% of its size, for another copy of it
and ~0.04 s of CPU per million rows). Its first bytes tell it apart, as they could not be a length.

A small event (a run's Started, SourceUnchanged and Completed, a seal of the audit chain) is compressed with zlib,
from the standard library, behind a mark of its own: zstd saves a few bytes there, and loading pyarrow for them
would cost a run that reads no export more than the rest of its work. pyarrow is imported when a large event is
stored or one stored with zstd is read.
"""

from __future__ import annotations

import functools
import zlib
from typing import TYPE_CHECKING

from eventsourcing.compressor import Compressor

from keysync.infrastructure.arrow_transcoding import FRAME

if TYPE_CHECKING:
    import pyarrow as pa

_SIZE = 8
# Like FRAME, never a zstd state's length prefix (read as one it would be over 2**56 bytes), nor the start of JSON.
ZLIB = b"KSZLIB\x00\x01"
SMALL = 64 * 1024  # bytes of JSON below which an event is compressed with zlib (about a millisecond at most)


@functools.cache
def _zstd() -> pa.Codec:
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=1)


class ZstdCompressor(Compressor):
    def compress(self, data: bytes) -> bytes:
        if data[: len(FRAME)] == FRAME:
            return data
        if len(data) < SMALL:
            return ZLIB + zlib.compress(data)
        return len(data).to_bytes(_SIZE, "little") + _zstd().compress(data, asbytes=True)

    def decompress(self, data: bytes) -> bytes:
        if data[: len(FRAME)] == FRAME:
            return data
        if data[: len(ZLIB)] == ZLIB:
            return zlib.decompress(data[len(ZLIB) :])
        size = int.from_bytes(data[:_SIZE], "little")
        return _zstd().decompress(data[_SIZE:], decompressed_size=size, asbytes=True)
