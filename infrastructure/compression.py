"""Compression of stored events.

Observation batches are large and repetitive (keys, entity types, timestamps). Zstandard (through pyarrow, which
KeySync already needs) compresses them to a fraction of zlib's output at twice its speed. Each stored state is
the uncompressed length (8 bytes, little-endian) followed by the zstd frame, since decompression wants the size.

An event holding Arrow tables is a binary frame whose tables are compressed already (keysync.infrastructure.
arrow_transcoding): it is stored as it is (compressing it again saves ~4% of its size, for another copy of it
and ~0.04 s of CPU per million rows). Its first bytes tell it apart, as they could not be a length.
"""

from __future__ import annotations

import pyarrow as pa
from eventsourcing.compressor import Compressor

from keysync.infrastructure.arrow_transcoding import FRAME

_CODEC = pa.Codec("zstd", compression_level=1)
_SIZE = 8


class ZstdCompressor(Compressor):
    def compress(self, data: bytes) -> bytes:
        if data[: len(FRAME)] == FRAME:
            return data
        return len(data).to_bytes(_SIZE, "little") + _CODEC.compress(data, asbytes=True)

    def decompress(self, data: bytes) -> bytes:
        if data[: len(FRAME)] == FRAME:
            return data
        size = int.from_bytes(data[:_SIZE], "little")
        return _CODEC.decompress(data[_SIZE:], decompressed_size=size, asbytes=True)
