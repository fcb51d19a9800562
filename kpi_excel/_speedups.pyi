"""Types of kpi_excel._speedups (the C part; see _speedups.c)."""

from collections.abc import Callable
from typing import Any

_Bytes = bytes | bytearray | memoryview

def cut_pieces(data: _Bytes, prev: list[bytes] | None, /) -> list[bytes]: ...
def scan_pieces(
    pieces: list[bytes], known: dict[bytes, Any], read_piece: Callable[[bytes], Any], /
) -> list[Any] | None: ...
def sheet_records(
    entries: list[Any], kept: dict[int, Any], make: Callable[[Any], Any], /
) -> tuple[list[Any], dict[str, object], list[str], list[bytes] | None] | None: ...
def xml_views(
    entries: list[Any], kept: dict[int, Any], make: Callable[[Any], Any], /
) -> dict[str, Any]: ...
def cell_tags_near(xml: _Bytes, /) -> bool: ...
def surrogate_ref(xml: _Bytes, /) -> bool: ...
def plain_rows(rows: list[Any], row_type: type, decimal: type, /) -> list[tuple[Any, ...]]: ...
def rows_from_plain(plain: Any, row_type: type, decimal: type, /) -> list[Any]: ...
def score_rows(
    cls: type,
    heads: list[tuple[str, str, str | None, str | None]],
    values: dict[str, object],
    most: int,
    decimal: type,
    slow: Callable[[Any], tuple[Any, Any]],
    other: Callable[[Any], tuple[Any, Any]],
    /,
) -> list[Any]: ...
