"""Storing Arrow tables in events: observation batches are columns, and stay columns on their way to the store.

An event attribute that is a ``pyarrow.Table`` is written as an Arrow IPC stream with zstd-compressed buffers,
in base64 inside the event's JSON (eventsourcing's transcoder speaks JSON). Encoding a batch of 100,000 rows costs
a few milliseconds, where joining and escaping its text as JSON strings cost a hundred; and reading it back gives
Arrow arrays with no Python string per value.

pyarrow is imported only when a table is first stored or read: commands that never touch observations (an
incremental run that finds nothing changed, the listings) start without it.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

if TYPE_CHECKING:
    import pyarrow as pa

NAME = "arrow_ipc"


def table_bytes(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def bytes_table(data: bytes) -> pa.Table:
    import pyarrow as pa

    with pa.ipc.open_stream(pa.py_buffer(data)) as reader:
        return reader.read_all()


class _ArrowTableAsIPC(Transcoding):
    name = NAME

    def __init__(self) -> None:
        import pyarrow as pa

        self.type = pa.Table

    def encode(self, obj: pa.Table) -> str:
        return base64.b64encode(table_bytes(obj)).decode("ascii")

    def decode(self, data: Any) -> pa.Table:
        return bytes_table(base64.b64decode(data))


class KeySyncTranscoder(JSONTranscoder):
    """eventsourcing's JSON transcoder, which also stores Arrow tables (registered when the first one is met)."""

    def _encode_obj(self, o: Any) -> dict[str, Any]:
        if NAME not in self.names and type(o).__name__ == "Table" and type(o).__module__.startswith("pyarrow"):
            self.register(_ArrowTableAsIPC())
        return super()._encode_obj(o)

    def _decode_obj(self, d: dict[str, Any]) -> Any:
        if NAME not in self.names and d.get("_type_") == NAME:
            self.register(_ArrowTableAsIPC())
        return super()._decode_obj(d)
