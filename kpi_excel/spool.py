"""Results of a collection kept on disk while it runs: memory stays flat.

A checked file's bulky parts — its indicator lines, scores, recomputed values and
coordinates — are needed twice after the check (the ledger reads the scores, the
summary the lines), so they wait in a temporary file rather than in memory.

They are encoded once, where the file was checked (:func:`pack`, in the worker
process), and travel as bytes: the main process writes those bytes to the spool file as
they are (no decoding and encoding again) and reads each part back when it is used.

A part whose rows are all of the type registered for it (:func:`rows_of`: the 明细
lines, the scores) is encoded as plain values (:func:`plain_rows`: each Decimal as its
text) and marshalled, when the C part is built: about a fifth of the time pickling
takes, and reading back is quicker too. Any other part, or a row holding anything else,
is pickled.
"""

from __future__ import annotations

import marshal
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

try:
    from kpi_excel import _speedups as _C
except ImportError:  # no compiler where it was installed: every part is pickled
    _C = None  # type: ignore[assignment]

__all__ = ["BULKY", "pack", "rows_of", "spool_results", "SpooledList", "SpooledDict"]

#: the bulky attributes of a collect result, and the empty value each has once packed
BULKY: tuple[tuple[str, type], ...] = (
    ("lines", list),
    ("scores", list),
    ("as_typed", dict),
    ("coords", dict),
)

#: attribute holding a packed result's parts: (bytes, size of each part, length of each)
_PACKED = "_packed"


#: the row type of a part encoded as plain values, by the part's index in BULKY
_ROW_TYPES: dict[int, type] = {}
#: the first byte of a part encoded as plain values (a pickle starts with 0x80)
_PLAIN = b"R"
#: how deep plain values may nest (a line's raters and inputs: 3)
_PLAIN_DEPTH = 16
_SIMPLE = (str, int, float, bool, type(None))


def rows_of(part: str, row_type: type) -> None:
    """Encode the part ``part`` as plain values (see the module's text) when each of
    its rows is exactly a ``row_type`` (a tuple type)."""
    _ROW_TYPES[[name for name, _empty in BULKY].index(part)] = row_type


def _convert(value: Any, decimal: type, depth: int, encode: bool) -> Any:
    """A value made plain (``encode``: a Decimal as its text in bytes; str, int,
    float, bool and None as they are; anything else a TypeError) or read back (bytes
    as a Decimal, anything else as it is); tuples, lists and dicts walked, no deeper
    than :data:`_PLAIN_DEPTH`."""
    kind = type(value)
    if encode:
        if kind in _SIMPLE:
            return value
        if kind is decimal:
            return str(value).encode("ascii")
    else:
        if kind is bytes:
            return decimal(value.decode("ascii"))
        if kind is not tuple and kind is not list and kind is not dict:
            return value
    if depth >= _PLAIN_DEPTH:
        raise TypeError("nested too deep")
    deeper = depth + 1
    if kind is tuple:
        return tuple(_convert(v, decimal, deeper, encode) for v in value)
    if kind is list:
        return [_convert(v, decimal, deeper, encode) for v in value]
    if kind is dict:
        return {
            _convert(k, decimal, deeper, encode): _convert(v, decimal, deeper, encode)
            for k, v in value.items()
        }
    raise TypeError(f"not a plain value: {kind.__name__}")


def plain_rows(rows: Any, row_type: type, decimal: type = Decimal) -> list[tuple[Any, ...]]:
    """``rows`` (a list of ``row_type`` tuples) as plain values that marshal keeps
    exactly: lists, dicts and tuples walked; each Decimal as its text, in bytes (which
    no other value is); str, int, float, bool and None as they are. Raises TypeError
    for anything else (a subclass, bytes, a set...), or values nested deeper than 16.

    The reference of ``kpi_excel._speedups.plain_rows``, which tests compare it with.
    """
    if type(rows) is not list:
        raise TypeError("not a list")
    out = []
    for row in rows:
        if type(row) is not row_type:
            raise TypeError("not a row of the part's type")
        out.append(tuple(_convert(v, decimal, 1, True) for v in cast(tuple, row)))
    return out


def rows_from_plain(plain: Any, row_type: type, decimal: type = Decimal) -> list[Any]:
    """The rows :func:`plain_rows` made ``plain`` of, as they were.

    The reference of ``kpi_excel._speedups.rows_from_plain``, which tests compare it
    with."""
    if not (isinstance(row_type, type) and issubclass(row_type, tuple)):
        raise TypeError("the row type is not a tuple type")
    new = tuple.__new__
    return [new(row_type, tuple(_convert(v, decimal, 1, False) for v in row)) for row in plain]


def _encode(index: int, value: Any) -> bytes:
    row_type = _ROW_TYPES.get(index)
    if row_type is not None and _C is not None:
        try:
            return _PLAIN + bytes((index,)) + marshal.dumps(_C.plain_rows(value, row_type, Decimal))
        except (TypeError, ValueError):
            pass  # something that is not a plain value: pickled
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _decode(data: bytes) -> Any:
    if data[:1] == _PLAIN:
        row_type = _ROW_TYPES[data[1]]
        plain = marshal.loads(memoryview(data)[2:])
        if _C is not None:
            return _C.rows_from_plain(plain, row_type, Decimal)
        return rows_from_plain(plain, row_type)  # pragma: no cover - encoded only with _C
    return pickle.loads(data)


def pack(res: Any) -> Any:
    """Encode ``res``'s bulky parts into one bytes value kept on it; the parts become
    empty. Done where the file was checked, so the parts are encoded once only."""
    if _PACKED in res.__dict__:
        return res
    blobs, counts = [], []
    for index, (name, empty) in enumerate(BULKY):
        value = getattr(res, name, None)
        blobs.append(_encode(index, value) if value else b"")
        counts.append(len(value) if value else 0)
        setattr(res, name, empty())
    res.__dict__[_PACKED] = (b"".join(blobs), tuple(len(b) for b in blobs), tuple(counts))
    return res


_PREAD = hasattr(os, "pread")


class _Spool:
    """A temporary file of encoded parts; it goes when the last list using it goes."""

    def __init__(self) -> None:
        # kept open for the life of the spool; the system deletes it when it closes.
        # Written in large blocks: results arrive a few kilobytes at a time.
        self._fh = tempfile.TemporaryFile(prefix="kpi-excel-", buffering=1 << 20)  # noqa: SIM115
        self._end = 0
        self._flushed = True  # everything put is in the file itself
        self._moved = False  # a read moved the position away from the end

    def put(self, data: bytes) -> int:
        if self._moved:
            self._fh.seek(self._end)
            self._moved = False
        self._fh.write(data)
        self._flushed = False
        at = self._end
        self._end += len(data)
        return at

    def get(self, at: int, size: int) -> Any:
        if not self._flushed:
            self._fh.flush()
            self._flushed = True
        if not _PREAD:  # (Windows) through the buffered file, which then moves
            self._moved = True
            self._fh.seek(at)
            return _decode(self._fh.read(size))
        data = b""
        while len(data) < size:  # reads just these bytes, without moving the writer
            got = os.pread(self._fh.fileno(), size - len(data), at + len(data))
            if not got:
                raise EOFError("the spool file is shorter than expected")
            data += got
        return _decode(data)


class _Spooled:
    """A value kept in a spool file, read back each time it is used (never kept in
    memory): what :class:`SpooledList` and :class:`SpooledDict` share."""

    __slots__ = ("_spool", "_at", "_size", "_count")

    def __init__(self, spool: _Spool, at: int, size: int, count: int) -> None:
        self._spool, self._at, self._size, self._count = spool, at, size, count

    def _items(self) -> Any:
        return self._spool.get(self._at, self._size)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def __repr__(self) -> str:
        return repr(self._items())

    def __reduce__(self) -> tuple[Any, ...]:
        items = self._items()
        return (type(items), (items,))  # sent elsewhere: as the plain list or dict


class SpooledList(_Spooled, Sequence[Any]):
    """A list kept in a spool file."""

    __slots__ = ()

    def __getitem__(self, i: Any) -> Any:
        return self._items()[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpooledList | list):
            return list(self) == list(other)
        return NotImplemented


class SpooledDict(_Spooled, Mapping[str, Any]):
    """A dict kept in a spool file."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented


_KINDS = {list: SpooledList, dict: SpooledDict}


def spool_results(results: Iterable[Any], on_file: Any = None) -> list[Any]:
    """The results of a collection, as they arrive, with their bulky parts moved to a
    temporary file (packed here if the worker did not): memory stays flat however many
    files are collected. The lists and dicts read back on use. ``on_file`` is called
    with each result once it is spooled."""
    spool = _Spool()
    shared: dict[Any, Any] = {}  # one copy of what every form of a template repeats
    out = []
    for res in results:
        data, sizes, counts = pack(res).__dict__.pop(_PACKED)
        at = spool.put(data)
        for (name, empty), size, count in zip(BULKY, sizes, counts, strict=True):
            if size:
                setattr(res, name, _KINDS[empty](spool, at, size, count))
            at += size
        for name in ("template_id", "template_version", "template_title", "composition",
                     "department", "position", "period", "sheet", "status", "value_engine"):  # fmt: skip
            value = getattr(res, name, None)
            if isinstance(value, str):
                setattr(res, name, shared.setdefault(value, value))
        grades = getattr(res, "grades", None)
        if isinstance(grades, list) and grades:
            res.grades = shared.setdefault(("grades", *grades), grades)
        out.append(res)
        if on_file is not None:
            on_file(res)
    return out
