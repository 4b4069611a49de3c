"""Small steps on Arrow tables that the registry's state and its read model share. pyarrow is imported in each, not
here: the modules that use them are loaded by commands that never touch a table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def filled(count: int, value: str | bool | None) -> pa.Array:
    """``count`` times ``value`` (None: nulls of text)."""
    import pyarrow as pa

    kind = pa.bool_() if isinstance(value, bool) else pa.string()
    return pa.nulls(count, kind) if value is None else pa.nulls(count, kind).fill_null(value)


def with_columns(table: pa.Table, **columns: Any) -> pa.Table:
    """``table`` with the named columns replaced, in their places."""
    for name, column in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def compacted(table: pa.Table, most: int = 16) -> pa.Table:
    """``table`` in one chunk once it has more than ``most``: a table that grows by a batch at a time is merged
    now and then, not at every step."""
    return table.combine_chunks() if table.column(0).num_chunks > most else table
