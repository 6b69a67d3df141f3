"""Source Arrow types to the lake's documented Parquet types (see the README's table)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from lake.errors import SourceError

if TYPE_CHECKING:
    from lake.tables.job import TableJob


_PARQUET_OK = (
    pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
    pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary,
    pa.types.is_date32, pa.types.is_timestamp, pa.types.is_decimal, pa.types.is_time,
)  # fmt: skip


def convert_types(batch: pa.RecordBatch, job: TableJob) -> pa.Table:
    """Map driver types to the lake's documented Parquet types (each column keeps its
    metadata: a NetCDF variable's units, standard name and flag meanings)."""
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for source, column in zip(batch.schema, batch.columns, strict=True):
        converted = _convert(source.name, column, job)
        arrays.append(converted)
        fields.append(pa.field(source.name, converted.type, metadata=source.metadata))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _convert(name: str, column: pa.Array, job: TableJob) -> pa.Array:
    typ = column.type
    if isinstance(typ, pa.BaseExtensionType):
        ext = typ.extension_name
        storage = column.storage
        if ext == "arrow.uuid":
            return _uuid_text(storage)
        if ext == "arrow.json":
            return storage
        type_name = getattr(typ, "type_name", "")
        if type_name == "numeric":
            return _numeric(name, storage, job.numeric.get(name), job.label)
        if type_name in ("geometry", "geography"):
            return storage
        column, typ = storage, storage.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return column
    if not any(check(typ) for check in _PARQUET_OK):
        raise SourceError(
            f"{job.label}: column {name!r}",
            f"has a type the lake does not store ({typ})",
            f"cast it in a query, e.g. `{name}::text`",
        )
    return column


def _uuid_text(storage: pa.Array) -> pa.Array:
    """16-byte UUIDs as canonical lower-case text, built as one buffer."""
    if storage.offset:
        storage = pa.concat_arrays([storage])  # a copy starting at offset 0
    n = len(storage)
    raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8)[: n * 16].reshape(n, 16)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = digits[raw >> 4]
    hexed[:, 1::2] = digits[raw & 15]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)),
                     (slice(12, 16), slice(14, 18)), (slice(16, 20), slice(19, 23)),
                     (slice(20, 32), slice(24, 36))):  # fmt: skip
        text[:, dst] = hexed[:, src]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [storage.buffers()[0], pa.py_buffer(offsets), pa.py_buffer(text.tobytes())],
        null_count=storage.null_count, offset=0,
    )  # fmt: skip


def _numeric(name: str, storage: pa.Array, decimal: tuple[int, int] | None, label: str) -> pa.Array:
    if decimal is None:
        return storage.cast(pa.string())
    precision, scale = decimal
    try:
        return storage.cast(pa.decimal128(precision, scale))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SourceError(
            f"{label}: column {name!r}",
            f"holds values that numeric({precision},{scale}) as decimal128 cannot hold "
            "(NaN or Infinity)",
            f"cast the column in a query, e.g. `{name}::double precision`",
        ) from None


def numeric_plan(typmod: int) -> tuple[int, int] | None:
    """decimal128 (precision, scale) for a numeric typmod, None when it does not fit."""
    if typmod < 4:
        return None
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    if not 1 <= precision <= 38 or scale > precision:
        return None
    return precision, scale
