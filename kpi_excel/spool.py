"""Results of a collection kept on disk while it runs: memory stays flat.

A checked file's bulky parts — its indicator lines, scores, recomputed values and
coordinates — are needed twice after the check (the ledger reads the scores, the
summary the lines), so they wait in a temporary file rather than in memory.

They are pickled once, where the file was checked (:func:`pack`, in the worker process),
and travel as bytes: the main process writes those bytes to the spool file as they are
(no unpickling and pickling again) and reads each part back when it is used.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["BULKY", "pack", "spool_results", "SpooledList", "SpooledDict"]

#: the bulky attributes of a collect result, and the empty value each has once packed
BULKY: tuple[tuple[str, type], ...] = (
    ("lines", list),
    ("scores", list),
    ("as_typed", dict),
    ("coords", dict),
)

#: attribute holding a packed result's parts: (bytes, size of each part, length of each)
_PACKED = "_packed"


def pack(res: Any) -> Any:
    """Pickle ``res``'s bulky parts into one bytes value kept on it; the parts become
    empty. Done where the file was checked, so the parts are pickled once only."""
    if _PACKED in res.__dict__:
        return res
    blobs, counts = [], []
    for name, empty in BULKY:
        value = getattr(res, name, None)
        blobs.append(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) if value else b"")
        counts.append(len(value) if value else 0)
        setattr(res, name, empty())
    res.__dict__[_PACKED] = (b"".join(blobs), tuple(len(b) for b in blobs), tuple(counts))
    return res


_PREAD = hasattr(os, "pread")


class _Spool:
    """A temporary file of pickled parts; it goes when the last list using it goes."""

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
            return pickle.loads(self._fh.read(size))
        data = b""
        while len(data) < size:  # reads just these bytes, without moving the writer
            got = os.pread(self._fh.fileno(), size - len(data), at + len(data))
            if not got:
                raise EOFError("the spool file is shorter than expected")
            data += got
        return pickle.loads(data)


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
