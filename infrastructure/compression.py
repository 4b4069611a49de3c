"""Compression of stored events.

Observation batches are large and repetitive (keys, entity types, timestamps); zlib at level 1 shrinks them
about as well as the default level 6 for this data, several times faster.
"""

from __future__ import annotations

import zlib

from eventsourcing.compressor import Compressor


class FastZlibCompressor(Compressor):
    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, 1)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)
