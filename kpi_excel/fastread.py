"""Fast reading of returned forms: the answers of :mod:`kpi_excel.read`, without openpyxl.

:class:`~kpi_excel.read.Book` reads cached values with python-calamine, ``_meta`` and
shared strings with defusedxml, and formulas with protection flags with openpyxl
(~15 ms a file, most of collect's time). :class:`FastBook` reads the same from the XML
itself: each sheet's ``<sheetData>`` is cut before every cell, and each piece (the
rest of a cell and the row tags after it) is checked against the cell grammar and
read once -- the pieces of a template's forms mostly recur, and are kept by their
bytes -- giving every non-empty cell's type, value, formula and style, from which it
answers as each reference reader does (those answers kept per piece too):

* :meth:`FastBook.cell` (and so ``value``) as python-calamine does, then the XML for
  errors and empty results, exactly as :meth:`Book.cell`;
* :meth:`FastBook.xml_cells`, ``meta`` and ``shared_strings`` as read.py's parse;
* :meth:`FastBook.sheet_cells` as openpyxl in read-only mode with formulas: values,
  ``=`` + formula text, and ``protection.locked`` from the cell's style (what the
  fingerprint is computed over).

It is a fast path, not a second reader. Files are opened by
:func:`kpi_excel.read.open_book`, so every check of :func:`kpi_excel.read.gate`
applies first. Then a part is read here only when it is written plainly: UTF-8, the
main namespace as the default one, no prefixes, CDATA, comments or processing
instructions, no entity references but XML's own, the whole ``<sheetData>`` matching
the cell grammar (so nothing in it is skipped or misread), no shared or array
formulas, no phonetic runs or ``_xHHHH_`` escapes in text, cells (empty ones too) in
order without duplicates, references written plainly (no ``A01``), no 1904 dates.
Anything else, and any number a reader would turn into a date, is handed back to the
reference reader (``super()``), which answers as it always did. Empty cells are left
out of :meth:`xml_cells` (they read as ``(None, None)`` either way). Tests compare
both paths on forms written by XlsxWriter, the fast writer, openpyxl and LibreOffice,
filled, tampered with and broken, and the piece scanner with the whole-sheet reading
it replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from kpi_excel.meta import cell_line
from kpi_excel.read import (
    DEFAULT_LIMITS,
    Book,
    CellError,
    Limits,
    SheetCells,
    _read_member,
    _rels,
    meta_text,
    open_book,
    xml_value,
)

__all__ = ["FastBook", "open_fast"]

try:  # the per-cell loops in C (built with the package when a compiler is there)
    from kpi_excel import _speedups as _C
except ImportError:  # pragma: no cover - the Python loops below do the same
    _C = None  # type: ignore[assignment]
#: whether the loops run in C; tests set it False to run the Python reference loops
SPEEDUPS = _C is not None

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

# -- the XML grammar of a plainly written part -------------------------------------

_ATTRS = r'(?: [A-Za-z:]+="[^"<&]*")*'
# (unrolled: a run of plain characters, then references each followed by a run)
_TEXT = r"[^<&]*(?:&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});[^<&]*)*"
_T_EL = rf"<t{_ATTRS}\s*(?:/>|>{_TEXT}</t>)"
_RPR = r"<rPr>(?:<[A-Za-z]+" + _ATTRS + r"\s*/>)*</rPr>"
_RUN = rf"<r>(?:{_RPR})?{_T_EL}</r>"
_PHON = rf"<phoneticPr{_ATTRS}\s*/>"
_IS = rf"<is>(?:{_T_EL}|(?:{_RUN})+)(?:{_PHON})?</is>"
_F = rf"<f{_ATTRS}\s*(?:/>|>{_TEXT}</f>)"
_V = rf"<v\s*(?:/>|>{_TEXT}</v>)"
_REF = r"[A-Z]{1,3}[0-9]{1,7}"
_CELL_FULL = rf'<c r="{_REF}"{_ATTRS}\s*(?:/>|>(?:{_F})?(?:{_V})?(?:{_IS})?</c>)'
_ROW = rf"<row{_ATTRS}\s*(?:/>|>\s*(?:{_CELL_FULL}\s*)*</row>)"
_SHEETDATA = re.compile(rf"\s*(?:{_ROW}\s*)*")

_CELL_ATTR = re.compile(r' (s|t)="([^"]*)"')
_F_PART = re.compile(rf"<f({_ATTRS})\s*(?:/>|>({_TEXT})</f>)")
_V_PART = re.compile(rf"<v\s*(?:/>|>({_TEXT})</v>)")
_IS_PART = re.compile(r"<is>(.*)</is>", re.S)
_T_TEXT = re.compile(rf"<t{_ATTRS}\s*(?:/>|>({_TEXT})</t>)")
_SI = re.compile(r"<si>(.*?)</si>", re.S)
_SI_GRAMMAR = re.compile(rf"(?:{_T_EL}|(?:{_RUN})+)(?:{_PHON})?")
#: text XlsxWriter/Excel escape (_x000D_), or that openpyxl alters when reading (x005F_)
_ESCAPED = re.compile(r"_x[0-9a-fA-F]{4}_|x005F_")
_ENTITY = re.compile(r"&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_DECL = re.compile(r"^(?:\ufeff)?(?:<\?xml[^?]*\?>)?\s*")
_DECL_ENC = re.compile(r"""encoding\s*=\s*["']([^"']*)["']""")


class _Odd(Exception):
    """The part is not plainly written: the reference reader answers."""


def _remember(cache: dict[Any, Any], key: Any, value: Any, limit: int = 4096) -> None:
    """Keep ``value`` in a cache of at most ``limit`` entries (emptied when full)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


def _entity(mt: re.Match[str]) -> str:
    name = mt.group(1)
    if name[0] == "#":
        code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
        try:
            return chr(code)
        except (ValueError, OverflowError):
            raise _Odd from None
    return _ENTITIES[name]


def _text(raw: str) -> str:
    """XML character data as a parser returns it (line ends normalised, references
    resolved)."""
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "&" in raw:
        raw = _ENTITY.sub(_entity, raw)
    return raw


_AFTER_ROOT = ("<!", "<?", "xmlns=", f'="{_MAIN}"')


def _root_end(xml: str, root: str) -> int:
    """Where the root tag ends, if the part starts plainly: a UTF-8 declaration (or
    none), then ``root`` with the main namespace bound once, as the default one."""
    decl = _DECL.match(xml)
    assert decl is not None
    if decl.end():
        enc = _DECL_ENC.search(xml, 0, decl.end())
        if enc and enc.group(1).strip().lower() not in ("utf-8", "utf8"):
            raise _Odd
    start = decl.end()
    after = start + len(root) + 1
    if not xml.startswith(f"<{root}", start) or xml[after : after + 1] not in (" ", ">"):
        raise _Odd
    tag_end = xml.find(">", start)
    if tag_end < 0:
        raise _Odd
    tag = xml[start:tag_end]
    if tag.count(f'="{_MAIN}"') != 1 or f'xmlns="{_MAIN}"' not in tag:
        raise _Odd
    if tag.count("xmlns=") != 1:
        raise _Odd
    return tag_end


def _body(data: bytes, root: str) -> str:
    """A part as text, if it is plainly written UTF-8 with ``root`` in the main namespace."""
    try:
        xml = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Odd from None
    tag_end = _root_end(xml, root)
    # nothing later rebinds a default namespace, binds the main one to a prefix, or
    # holds a DTD, comment, CDATA or PI
    for bad in _AFTER_ROOT:
        if xml.find(bad, tag_end) >= 0:
            raise _Odd
    return xml


#: the parts of worksheets outside <sheetData> found plainly written, by their sizes
#: (compared whole, not hashed): the forms of one template mostly share them (merges,
#: validations, protection)
_PLAIN_OUTSIDE: dict[tuple[int, int], list[tuple[bytes, bytes]]] = {}


def _sheet_data(data: bytes) -> bytes:
    """The content of a worksheet's ``<sheetData>``, as bytes, if the rest of the part
    is plainly written (as :func:`_body` checks a whole part).

    The content itself is checked by :func:`_scan`, piece by piece: the same checks
    (UTF-8, none of the strings :func:`_body` refuses; the cell grammar keeps out
    ``<!`` and ``<?``). None of those strings can span the cut at ``<sheetData>`` or
    ``</sheetData>``: the cuts begin with ``<`` or end with ``>``, which only the
    first character of ``<!`` and ``<?`` is.
    """
    start = data.find(b"<sheetData")
    if start < 0:
        raise _Odd
    if data.startswith(b"<sheetData/>", start):
        inner, after = b"", start + len(b"<sheetData/>")
    elif data.startswith(b"<sheetData>", start):
        end = data.find(b"</sheetData>", start)
        if end < 0:
            raise _Odd
        inner, after = data[start + len(b"<sheetData>") : end], end + len(b"</sheetData>")
    else:
        raise _Odd
    head, tail = data[:start], data[after:]
    sizes = (len(head), len(tail))
    kept = _PLAIN_OUTSIDE.get(sizes) or []
    for k, (h, t) in enumerate(kept):
        if h == head and t == tail:
            if k:  # the most recently seen first
                kept.insert(0, kept.pop(k))
            return inner
    _check_outside(head, tail)
    if len(head) + len(tail) <= 1 << 18:
        if len(_PLAIN_OUTSIDE) >= 64:
            _PLAIN_OUTSIDE.clear()
        kept = _PLAIN_OUTSIDE.setdefault(sizes, [])
        kept.insert(0, (head, tail))
        del kept[8:]
    return inner


def _check_outside(head: bytes, tail: bytes) -> None:
    """Raise :class:`_Odd` unless a worksheet part is plainly written before
    (``head``) and after (``tail``) its one ``<sheetData>``."""
    if b"<sheetData" in tail:
        raise _Odd
    # UTF-8 cut at ASCII characters: valid as a whole exactly when valid in pieces
    try:
        head_text, tail_text = head.decode("utf-8"), tail.decode("utf-8")
    except UnicodeDecodeError:
        raise _Odd from None
    tag_end = _root_end(head_text, "worksheet")  # the root tag ends before <sheetData>
    for bad in _AFTER_ROOT:
        if head_text.find(bad, tag_end) >= 0 or bad in tail_text:
            raise _Odd


# -- a scanned sheet ---------------------------------------------------------------


class _Raw(NamedTuple):
    """One non-empty cell as written: type, style, value text, formula, inline text.

    Immutable: the cells of a piece of XML seen before are shared by every scan."""

    t: str
    s: int
    v: str | None  # <v> text (None: no <v>)
    f: str | None  # formula text (None: no formula)
    inline: str | None  # <is> text (None: no <is>)
    #: character references (&#49;) in the value: XML parsers resolve them, but
    #: python-calamine reads a number's <v> as it stands; it answers for such cells
    refs: bool = False


class _Scan:
    """A sheet's non-empty cells in document order, as read from their pieces."""

    __slots__ = ("entries", "_cells", "_at")

    def __init__(self, entries: list[_Piece]) -> None:
        self.entries = entries  # (order key, coordinate, cell, -): the cell is never None
        self._cells: dict[str, _Raw] | None = None
        self._at: dict[int, _Piece] | None = None

    @property
    def cells(self) -> dict[str, _Raw]:
        """coordinate -> cell, in document order"""
        if self._cells is None:
            self._cells = {e[1]: e[2] for e in self.entries}  # type: ignore[misc]
        return self._cells

    def at(self, row: int, col: int) -> _Piece | None:
        """The piece of the cell at (row, column), if the cell is not empty."""
        if not (0 < col < _COLS and row > 0):
            return None  # no cell read here is there
        if self._at is None:
            self._at = {e[0]: e for e in self.entries}
        return self._at.get(row << 15 | col)


_ATTR_CACHE: dict[str, tuple[str, int]] = {}


def _cell_attrs(attrs: str) -> tuple[str, int]:
    got = _ATTR_CACHE.get(attrs)
    if got is None:
        t, s = "n", 0
        for k, v in _CELL_ATTR.findall(attrs):
            if k == "t":
                t = v
            else:
                s = int(v) if v.isdigit() else -1
        got = (t, s)
        if len(_ATTR_CACHE) < 4096:
            _ATTR_CACHE[attrs] = got
    return got


def _inner(inner: str, t: str) -> tuple[str | None, str | None, str | None]:
    """(value text, formula text, inline text) of a cell's content."""
    f = v_text = inline = None
    fm = _F_PART.match(inner)
    pos = 0
    if fm is not None:
        if fm.group(1).strip() not in ("", 'aca="false"', 'aca="true"', 'aca="1"', 'aca="0"'):
            raise _Odd  # shared, array or data-table formulas
        f = _text(fm.group(2) or "")
        pos = fm.end()
    vm = _V_PART.match(inner, pos)
    if vm is not None:
        v_text = _text(vm.group(1) or "")
        pos = vm.end()
    im = _IS_PART.match(inner, pos)
    if im is not None:
        if "<rPh" in im.group(1):
            raise _Odd
        inline = "".join(_text(x) for x in _T_TEXT.findall(im.group(1)))
        if _ESCAPED.search(inline):
            raise _Odd
    if t in ("s", "str") and v_text and _ESCAPED.search(v_text):
        raise _Odd
    return v_text, f, inline


#: a non-empty cell, with its commonest forms read by the expression itself:
#: 1-4 reference, s, t; 5-6 <f>, <v> of a plain cell; 7 the text of a plain inline
#: string; 8-9 any other attributes and content (read by :func:`_inner`)
_ANY_CELL = re.compile(
    r'<c r="([A-Z]{1,3})([0-9]{1,7})"(?: s="([0-9]+)")?(?: t="([a-zA-Z]+)")?'
    r"(?:>(?:<f>([^<&\r]*)</f>)?(?:<v>([^<&\r]*)</v>)?</c>"
    r'|><is><t(?: xml:space="preserve")?>([^<&\r]*)</t></is></c>'
    rf"|({_ATTRS})\s*>(.*?)</c>)",
    re.S,
)


def _cell(mt: re.Match[str]) -> _Raw:
    """The cell :data:`_ANY_CELL` matched, or raise :class:`_Odd`."""
    _col, _row, s_, t, f, v, inline, extra, inner = mt.groups()
    s = int(s_) if s_ else 0
    t = t or "n"
    if inner is not None:  # the general form
        if extra:
            if s_ or t != "n":
                raise _Odd  # s and t written in another order, or twice
            t, s = _cell_attrs(extra)
        v_text, f_text, inline_text = _inner(inner, t)
        return _Raw(t, s, v_text, f_text, inline_text, "&#" in inner)
    if inline is not None:
        if "_x" in inline and _ESCAPED.search(inline):
            raise _Odd
        return _Raw(t, s, None, None, inline)
    if t in ("s", "str") and v and "_x" in v and _ESCAPED.search(v):
        raise _Odd
    return _Raw(t, s, v, f, None)


# <sheetData> is cut before each cell, at C speed, into pieces: what precedes the
# first cell (rows without cells, then the first cell's <row> tag), then one piece per
# cell -- the rest of the cell after '<c r="', and the row tags up to the next cell.
# Most pieces recur from form to form (labels, empty styled cells, formulas): each is
# checked against the grammar and read once, and its reading kept by its exact bytes.
#
# '<c r="' cannot occur inside a cell that follows the grammar anywhere but as the
# start of an element in a rich-text run's <rPr>; there, the cut leaves the piece
# before it (and the run) off the grammar, and the sheet goes to the reference reader.
# So when every piece follows the grammar, the whole <sheetData> does (_SHEETDATA):
#   first piece                 \s* (empty row \s*)* <row ...> \s*
#   a cell piece but the last   rest-of-cell  \s*  [ </row> \s* (empty row \s*)* <row ...> \s* ]
#   the last cell piece         rest-of-cell  \s*  </row> \s* (empty row \s*)*
# and its cells are the ones read here, in order.

_EMPTY_ROW = rf"<row{_ATTRS}\s*(?:/>|>\s*</row>)"
_OPEN_ROW = rf"<row{_ATTRS}\s*>\s*"
_FIRST_PIECE = re.compile(rf"\s*(?:{_EMPTY_ROW}\s*)*{_OPEN_ROW}")
#: 1 the rest of the cell, 2 its column, 3 its row; 4 its row closed, 5 another opened
_CELL_PIECE = re.compile(
    rf'((?:([A-Z]{{1,3}})([0-9]{{1,7}}))"{_ATTRS}\s*(?:/>|>(?:{_F})?(?:{_V})?(?:{_IS})?</c>))'
    rf"\s*(?:(</row>)\s*(?:{_EMPTY_ROW}\s*)*({_OPEN_ROW})?)?"
)
_CELL_START = b'<c r="'

#: a cell piece read: (order key, coordinate, the cell or None for an empty ``<c .../>``,
#: whether its row is the last); pieces are kept by their bytes
_Piece = tuple[int, str, _Raw | None, bool]
_PIECES: dict[bytes, _Piece] = {}
_PIECES_MAX = 4096  # entries
#: pieces seen once (most are one person's values): kept only when seen again
_PIECES_NEW: dict[bytes, _Piece] = {}
_PIECES_NEW_MAX = 2048
_PIECE_KEPT_MAX = 1024  # bytes: longer pieces (long texts) are read each time


_COLS = 1 << 15  # columns above ZZZ (18,278) are not read here


def _col_number(col: str) -> int:
    n = 0
    for ch in col:
        n = n * 26 + ord(ch) - 64
    return n


def _read_piece(piece: bytes) -> _Piece:
    """A cell piece not kept yet, checked and read, or raise :class:`_Odd`."""
    got = _PIECES_NEW.pop(piece, None)
    if got is not None:  # seen twice: kept
        _remember(_PIECES, piece, got, _PIECES_MAX)
        return got
    filled = _C.read_filled(piece, _FILLED_ENV) if SPEEDUPS else _read_filled(piece)
    got = filled or _read_cell_piece(piece)
    if len(piece) <= _PIECE_KEPT_MAX:
        _remember(_PIECES_NEW, piece, got, _PIECES_NEW_MAX)
    return got


_new_raw = tuple.__new__
_PLAIN_VALUE = re.compile(r"[^<&\r]*")
#: where a piece holds text that differs from form to form: a value, an inline string
_HOLES = (
    (b"<v>", b"</v>", True),
    (b"<t>", b"</t>", False),
    (b'<t xml:space="preserve">', b"</t>", False),
)


def _read_filled(piece: bytes) -> _Piece | None:
    """A piece with a ``<v>`` value or an inline ``<t>`` text, read as the same piece
    with that text left out (kept: formulas and styles recur, values differ) and the
    text put in; None when that does not plainly give what :func:`_read_cell_piece`
    gives.

    In a piece that follows the grammar, ``<v>`` can only begin the value element,
    and ``<t>`` (or ``<t xml:space="preserve">``) a text element of an inline string:
    text and attribute values hold no ``<``, and the elements of a run's ``<rPr>``
    are empty (``<v/>``). So with the text left out the piece follows the grammar
    exactly when the text is text. A plain text (no references, ``<`` or carriage
    return) is read as it stands by either branch of :data:`_ANY_CELL`, whichever
    the piece takes, and leaves the rest (``&#`` in the cell, the branch) as it was;
    the inline text of a cell whose other runs are empty is this text. What the text
    alone decides is checked here: UTF-8, the strings :func:`_body` refuses (none
    holds ``<`` or ``>``, so none spans the text's tags), escapes.
    """
    for open_tag, close_tag, is_value in _HOLES:
        start = piece.find(open_tag) + len(open_tag)
        if start < len(open_tag):
            continue
        end = piece.find(close_tag, start)
        if end <= start:
            continue  # no text to leave out
        try:
            text = piece[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if _PLAIN_VALUE.fullmatch(text) is None or "xmlns=" in text or _MAIN in text:
            return None
        try:
            key, coord, raw, ends = _PIECES.get(piece[:start] + piece[end:]) or _read_piece(
                piece[:start] + piece[end:]
            )
        except _Odd:
            return None
        if raw is None or (raw.v if is_value else raw.inline) != "":
            return None
        if (raw.t in ("s", "str") or not is_value) and _ESCAPED.search(text):
            return None
        # (tuple.__new__: _Raw's own __new__ is a Python function, one call a cell)
        if is_value:
            got = _new_raw(_Raw, (raw.t, raw.s, text, raw.f, raw.inline, raw.refs))
        else:
            got = _new_raw(_Raw, (raw.t, raw.s, raw.v, raw.f, text, raw.refs))
        return key, coord, got, ends
    return None


#: what ``kpi_excel._speedups.read_filled`` (:func:`_read_filled` in C) reads with:
#: the kept pieces, how to read one that is not, the error that says a piece is odd,
#: the escapes the text may not hold, and the class of a cell
_FILLED_ENV = (_PIECES, _read_piece, _Odd, _ESCAPED.search, _Raw)


def _read_cell_piece(piece: bytes) -> _Piece:
    """A cell piece checked and read, or raise :class:`_Odd`."""
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        raise _Odd from None
    for bad in _AFTER_ROOT[2:]:  # the grammar keeps out "<!" and "<?"
        if bad in text:
            raise _Odd
    pm = _CELL_PIECE.fullmatch(text)
    if pm is None:
        raise _Odd
    rest, col, row, closed, opened = pm.groups()
    if row[0] == "0":
        raise _Odd  # A01 or A0: FastBook.cell looks cells up by (row, column)
    raw = None
    if not rest.endswith("/>"):
        mt = _ANY_CELL.match('<c r="' + rest)
        if mt is None or mt.end() != len(rest) + 6:  # pragma: no cover - the grammar says so
            raise _Odd
        raw = _cell(mt)
    # rows, then columns
    return (int(row) << 15) | _col_number(col), col + row, raw, bool(closed and not opened)


#: the pieces of the last sheet cut, by its part's name: the same sheet of the next
#: form mostly has the same pieces at the same places (kpi_excel._speedups.cut_pieces)
_LAST_PIECES: dict[str, list[bytes]] = {}


def _scan(data: bytes, part: str = "") -> _Scan:
    """The non-empty cells of ``<sheetData>``'s content, if all of it follows the cell
    grammar and the cells are in order, without duplicates; else raise :class:`_Odd`.

    ``part``, the sheet's part name, lets the C cut reuse the pieces of the same part
    of the previous form (the same pieces, as the same objects)."""
    if SPEEDUPS:
        pieces = _C.cut_pieces(data, _LAST_PIECES.get(part))
        _remember(_LAST_PIECES, part, pieces, 16)
    else:
        pieces = data.split(_CELL_START)
    try:
        first = pieces[0].decode("utf-8")
    except UnicodeDecodeError:
        raise _Odd from None
    if len(pieces) == 1:
        if _SHEETDATA.fullmatch(first) is None:
            raise _Odd
        return _Scan([])
    if _FIRST_PIECE.fullmatch(first) is None:
        raise _Odd
    entries = (_C.scan_pieces if SPEEDUPS else scan_pieces)(pieces, _PIECES, _read_piece)
    if entries is None:
        raise _Odd
    return _Scan(entries)


# The three loops over a sheet's cells, here in Python, and in C in kpi_excel._speedups
# (the same arguments, the same results, the same calls back): the C loops run when
# the module is built (SPEEDUPS); these are their reference, which tests compare them
# with.


def scan_pieces(
    pieces: list[bytes], known: dict[bytes, _Piece], read_piece: Any
) -> list[_Piece] | None:
    """The readings of the cell pieces ``pieces[1:]`` that hold a cell, in order: each
    is ``known[piece]``, else ``read_piece(piece)`` (which may raise). None when the
    cells are out of order or duplicated (empty cells too), a piece follows the last
    row, or the last row is never reached."""
    entries: list[_Piece] = []
    keep = entries.append
    known_get = known.get
    last, ended = 0, False
    for piece in pieces[1:]:
        got = known_get(piece) or read_piece(piece)
        key, _coord, raw, ends = got
        if key <= last or ended:
            return None
        last, ended = key, ends
        if raw is not None:
            keep(got)
    if not ended:
        return None
    return entries


def sheet_records(
    entries: list[_Piece], kept: dict[int, _SheetRecord], make: Any
) -> tuple[list[_SheetRecord], dict[str, object], list[str], list[bytes] | None] | None:
    """:meth:`_Views.sheet_cells`'s records, values by coordinate, fingerprint lines
    and their UTF-8 (None if a line has none) for a scan's cells; each record kept by
    its piece's identity, else ``make(piece)`` and kept. None as soon as a record has
    no row (the reference reader answers)."""
    records: list[_SheetRecord] = []
    keep = records.append
    by: dict[str, object] = {}
    lines: list[str] = []
    encoded: list[bytes] | None = []
    for piece in entries:
        got = kept.get(id(piece))
        if got is None or got[0] is not piece:
            got = kept[id(piece)] = make(piece)
        if got[1] is None:
            return None
        keep(got)
        if got[3] is not None:
            by[piece[1]] = got[3]
            if got[2]:
                lines.append(got[2])
                if got[5] is None:
                    encoded = None
                elif encoded is not None:
                    encoded.append(got[5])
    return records, by, lines, encoded


def xml_views(
    entries: list[_Piece], kept: dict[int, tuple[_Piece, Any]], make: Any
) -> dict[str, Any]:
    """Coordinate -> each cell's view, kept by its piece's identity as (piece, view),
    else ``make(piece)`` and kept."""
    out = {}
    for piece in entries:
        got = kept.get(id(piece))
        if got is None or got[0] is not piece:
            got = (piece, make(piece))
            kept[id(piece)] = got
        out[piece[1]] = got[1]
    return out


# -- the reference readers' views of one cell -----------------------------------------


def _xml_view(raw: _Raw, shared: list[str]) -> tuple[object, str | None]:
    """(value, formula) as :meth:`Book.xml_cells` parses them."""
    return xml_value(raw.t, raw.v, raw.f, raw.inline or "", lambda: shared), raw.f


_NUMBER = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def _calamine_view(
    raw: _Raw,
    shared: list[str],
    date_styles: set[int],
    shared_refs: frozenset[int] = frozenset(),
    plain_dates: set[int] = frozenset(),  # type: ignore[assignment]
) -> object:
    """The value python-calamine gives (its ``to_python``), or raise :class:`_Odd`."""
    t, v = raw.t, raw.v
    if raw.refs:
        raise _Odd
    if t == "s":
        try:
            if int(v or "") in shared_refs:
                raise _Odd
            return shared[int(v or "")]
        except (ValueError, IndexError):
            raise _Odd from None
    if t == "inlineStr":
        return raw.inline or ""
    if t == "str":
        return v or ""
    if t == "b":
        if v in ("0", "1"):
            return v == "1"
        raise _Odd
    if t == "e":
        return ""
    if t != "n":
        raise _Odd  # ISO dates (t="d") and the like
    if v is None or v == "":
        return ""
    if raw.s in date_styles:
        # a day written in a day-only format: python-calamine gives the date
        if raw.s in plain_dates and v.isdigit() and 61 <= int(v) <= 2958465:
            return _EPOCH + dt.timedelta(days=int(v))
        raise _Odd
    if not _NUMBER.match(v):
        raise _Odd
    return float(v)


class _Cell(NamedTuple):
    """A cell as :func:`kpi_excel.meta.locked_cells_from_openpyxl` reads it (immutable:
    the cells of a piece seen before are shared by every form)."""

    coordinate: str
    value: object
    protection: _Protection


@dataclass(frozen=True)
class _Protection:
    locked: bool


_LOCKED, _UNLOCKED = _Protection(True), _Protection(False)


#: (piece, row (None: odd), fingerprint line, value, locked with a value, the line in
#: UTF-8 (None: it has no UTF-8))
_SheetRecord = tuple[_Piece, "tuple[_Cell] | None", str, object, bool, "bytes | None"]


class _FastSheetCells(SheetCells):
    """:class:`~kpi_excel.read.SheetCells` from a scan: non-empty cells, one row each.

    Only the values and the fingerprint lines are gathered as the sheet is read; the
    rows and the locked cells, which checking a form that is as issued never asks
    for, are made when asked."""

    def __init__(
        self,
        records: list[_SheetRecord],
        by: dict[str, object],
        lines: list[str],
        encoded: list[bytes] | None = None,
    ) -> None:
        self._records = records
        self._by = by  # coordinate -> value, of the cells with a value
        self._lines = lines
        self._encoded = encoded
        self._rows: list[tuple[_Cell]] | None = None
        self._locked: list[tuple[str, object]] | None = None

    @property
    def rows(self) -> list[tuple[_Cell]]:  # type: ignore[override]
        if self._rows is None:
            self._rows = [r[1] for r in self._records]  # type: ignore[misc]
        return self._rows

    def iter_rows(self) -> Iterable[tuple[Any, ...]]:
        return iter(self.rows)

    def locked_cells(self) -> list[tuple[str, object]]:
        """:func:`kpi_excel.meta.locked_cells_from_openpyxl` of these cells (gathered
        as the cells were: one row of one cell each, in document order)."""
        if self._locked is None:
            self._locked = [(r[0][1], r[3]) for r in self._records if r[4]]
        return self._locked

    def fingerprint_lines(self) -> list[str]:
        """The locked cells' lines of the fingerprint text (:func:`kpi_excel.meta.cell_line`
        of each, empty ones left out), kept per piece as the cells are."""
        return self._lines

    def fingerprint_bytes(self) -> list[bytes] | None:
        """:meth:`fingerprint_lines` in UTF-8, kept per piece too."""
        return self._encoded


def _openpyxl_view(raw: _Raw, shared: list[str], styles: _Styles) -> object:
    """The value openpyxl (read-only, formulas) gives, or raise :class:`_Odd`."""
    t = raw.t
    if raw.f is not None:
        return "=" + raw.f
    if t == "inlineStr":
        return raw.inline if raw.inline is not None else None
    v = raw.v or None
    if v is None:
        return None
    if t == "n":
        if not _NUMBER.match(v):
            raise _Odd
        number = float(v) if ("." in v or "E" in v or "e" in v) else int(v)
        if raw.s in styles.openpyxl_dates:
            return _openpyxl_date(number, raw.s in styles.openpyxl_timedeltas)
        return number
    if t == "s":
        try:
            return shared[int(v)]
        except (ValueError, IndexError):
            raise _Odd from None
    if t == "b":
        try:
            return bool(int(v))
        except ValueError:
            raise _Odd from None
    if t in ("str", "e"):
        return v
    raise _Odd


def _openpyxl_date(number: float, timedelta: bool) -> object:
    """A date-formatted number as openpyxl reads it (worksheet/_reader.py parse_cell)."""
    try:
        return _from_excel(number, timedelta=timedelta)
    except (OverflowError, ValueError):
        return "#VALUE!"


_ODD = object()  # a view the reference reader gives instead


def _cell_answer(piece: _Piece, shared: list[str], styles: _Styles, refs: frozenset[int]) -> object:
    """What :meth:`Book.cell` answers for a non-empty cell, or :data:`_ODD`."""
    raw = piece[2]
    assert raw is not None
    try:
        v = _calamine_view(raw, shared, styles.any_dates, refs, styles.plain_dates)
    except _Odd:
        return _ODD
    if v == "":
        xv, f = _xml_view(raw, shared)
        if isinstance(xv, CellError):
            return xv
        return "" if f is not None else None
    return v


def _sheet_row(piece: _Piece, shared: list[str], styles: _Styles) -> tuple[_Cell] | None:
    """A cell as :meth:`Book.sheet_cells` gives it (a row of one), or None (odd)."""
    raw = piece[2]
    assert raw is not None
    try:
        value = _openpyxl_view(raw, shared, styles)
    except _Odd:
        return None
    locked = styles.locked
    if not 0 <= raw.s < len(locked):
        return None
    return (_Cell(piece[1], value, _LOCKED if locked[raw.s] else _UNLOCKED),)


class _Views:
    """The readers' views of cells under one list of shared strings, one styles part
    and one set of shared strings with references: kept per cell piece.

    Those are read once per content (:func:`_sst`, :func:`_styles_cached`), so the
    forms that share the parts share them as objects, and a piece seen before is the
    same object too: views are kept by the identity of the piece (checked: the piece
    is held with its view). Everything kept is immutable.
    """

    __slots__ = ("shared", "styles", "refs", "cells", "rows", "xml")

    def __init__(self, shared: list[str], styles: _Styles | None, refs: frozenset[int]) -> None:
        self.shared, self.styles, self.refs = shared, styles, refs
        self.cells: dict[int, tuple[_Piece, object]] = {}  # Book.cell answers
        #: sheet_cells records (see _sheet_record)
        self.rows: dict[int, _SheetRecord] = {}
        self.xml: dict[int, tuple[_Piece, tuple[object, str | None]]] = {}  # xml_cells

    def cell(self, piece: _Piece) -> object:
        got = self.cells.get(id(piece))
        if got is not None and got[0] is piece:
            return got[1]
        assert self.styles is not None
        answer = _cell_answer(piece, self.shared, self.styles, self.refs)
        _remember(self.cells, id(piece), (piece, answer), _VIEWS_MAX)
        return answer

    def sheet_cells(self, entries: list[_Piece]) -> _FastSheetCells | None:
        """:meth:`Book.sheet_cells` of a scan, or None (the reference reader's)."""
        kept = self.rows
        if len(kept) + len(entries) > _VIEWS_MAX:
            kept.clear()
        got = (_C.sheet_records if SPEEDUPS else sheet_records)(entries, kept, self._sheet_record)
        return None if got is None else _FastSheetCells(*got)

    def _sheet_record(self, piece: _Piece) -> _SheetRecord:
        """A piece's cell as :meth:`Book.sheet_cells` gives it: (piece, row, line, value,
        locked, line in UTF-8), the row None when the piece is odd; line is the
        fingerprint's line of a locked cell with a value, locked whether it is one."""
        assert self.styles is not None
        row = _sheet_row(piece, self.shared, self.styles)
        if row is None:
            return (piece, None, "", None, False, b"")
        cell = row[0]
        value = cell.value
        locked = value is not None and value != "" and cell.protection.locked
        line = cell_line(cell.coordinate, value) if locked else ""
        try:
            encoded: bytes | None = line.encode()
        except UnicodeError:  # (none read here) the text path raises as it always did
            encoded = None
        return (piece, row, line, value, locked, encoded)

    def _xml_view(self, piece: _Piece) -> tuple[object, str | None]:
        return _xml_view(piece[2], self.shared)  # type: ignore[arg-type]

    def xml_cells(self, entries: list[_Piece]) -> dict[str, tuple[object, str | None]]:
        """:meth:`Book.xml_cells` of a scan."""
        xml = self.xml
        if len(xml) + len(entries) > _VIEWS_MAX:
            xml.clear()
        views = _C.xml_views if SPEEDUPS else xml_views
        return views(entries, xml, self._xml_view)  # type: ignore[no-any-return]


_VIEWS: dict[tuple[int, int, int], _Views] = {}
_VIEWS_MAX = 8192  # views of each kind kept per _Views


def _views(shared: list[str], styles: _Styles | None, refs: frozenset[int]) -> _Views:
    """The views kept for these shared strings and styles (the very objects)."""
    key = (id(shared), id(styles), id(refs))
    got = _VIEWS.get(key)
    if got is None or got.shared is not shared or got.styles is not styles or got.refs is not refs:
        got = _Views(shared, styles, refs)
        _remember(_VIEWS, key, got, 16)
    return got


# -- openpyxl's own rules, restated -------------------------------------------------------
# Importing openpyxl costs ~0.2 s per process (it imports numpy): the few rules the
# fast path needs are restated here, exactly as openpyxl 3.1 has them
# (styles/numbers.py, utils/datetime.py); tests/test_fastread.py checks them against it.

_OP_EPOCH = dt.datetime(1899, 12, 30)
_OP_BUILTIN_FORMATS = {
    0: "General", 1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00",
    5: '"$"#,##0_);("$"#,##0)', 6: '"$"#,##0_);[Red]("$"#,##0)',
    7: '"$"#,##0.00_);("$"#,##0.00)', 8: '"$"#,##0.00_);[Red]("$"#,##0.00)',
    9: "0%", 10: "0.00%", 11: "0.00E+00", 12: "# ?/?", 13: "# ??/??",
    14: "mm-dd-yy", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss", 22: "m/d/yy h:mm",
    37: "#,##0_);(#,##0)", 38: "#,##0_);[Red](#,##0)", 39: "#,##0.00_);(#,##0.00)",
    40: "#,##0.00_);[Red](#,##0.00)", 41: '_(* #,##0_);_(* \\(#,##0\\);_(* "-"_);_(@_)',
    42: '_("$"* #,##0_);_("$"* \\(#,##0\\);_("$"* "-"_);_(@_)',
    43: '_(* #,##0.00_);_(* \\(#,##0.00\\);_(* "-"??_);_(@_)',
    44: '_("$"* #,##0.00_)_("$"* \\(#,##0.00\\)_("$"* "-"??_)_(@_)',
    45: "mm:ss", 46: "[h]:mm:ss", 47: "mmss.0", 48: "##0.0E+0", 49: "@",
}  # fmt: skip
_OP_STRIP = re.compile(r'".*?"' + "|" + r"\[(?!hh?\]|mm?\]|ss?\])[^\]]*\]")
_OP_TIMEDELTA = re.compile(r"\[hh?\](:mm(:ss(\.0*)?)?)?|\[mm?\](:ss(\.0*)?)?|\[ss?\](\.0*)?", re.I)
_OP_DATE_CHAR = re.compile(r"(?<![_\\])[dmhysDMHYS]")


def _is_date_format(fmt: str | None) -> bool:
    """openpyxl.styles.numbers.is_date_format"""
    if fmt is None:
        return False
    fmt = _OP_STRIP.sub("", fmt.split(";")[0])
    return _OP_DATE_CHAR.search(fmt) is not None


def _is_timedelta_format(fmt: str | None) -> bool:
    """openpyxl.styles.numbers.is_timedelta_format"""
    if fmt is None:
        return False
    return _OP_TIMEDELTA.search(fmt.split(";")[0]) is not None


def _from_excel(value: float, timedelta: bool = False) -> object:
    """openpyxl.utils.datetime.from_excel, 1900 dates"""
    if timedelta:
        td = dt.timedelta(days=value)
        if td.microseconds:
            # round to millisecond precision
            td = dt.timedelta(
                seconds=td.total_seconds() // 1, microseconds=round(td.microseconds, -3)
            )
        return td
    day, fraction = divmod(value, 1)
    diff = dt.timedelta(milliseconds=round(fraction * 86400 * 1000))
    if 0 <= value < 1 and diff.days == 0:
        mins, seconds = divmod(diff.seconds, 60)
        hours, mins = divmod(mins, 60)
        return dt.time(hours, mins, seconds, diff.microseconds)
    if 0 < value < 60:
        day += 1
    return _OP_EPOCH + dt.timedelta(days=day) + diff


# -- styles ---------------------------------------------------------------------------------

_NUMFMT = re.compile(r'<numFmt numFmtId="([0-9]+)" formatCode="([^"]*)"\s*/>')
_CELLXFS = re.compile(r"<cellXfs(?: [A-Za-z:]+=\"[^\"]*\")*\s*>(.*?)</cellXfs>", re.S)
_XF = re.compile(rf"<xf({_ATTRS})\s*(?:/>|>(.*?)</xf>)", re.S)
_XF_NUMFMT = re.compile(r' numFmtId="([0-9]+)"')
_PROTECTION = re.compile(rf"<protection({_ATTRS})\s*/>")
_LOCKED_ATTR = re.compile(r' locked="([^"]*)"')
#: builtin number formats some reader shows as dates (CJK dates: 27-36, 50-58)
_DATE_IDS = set(range(14, 23)) | set(range(27, 37)) | set(range(45, 48)) | set(range(50, 59))
_DATE_CHARS = re.compile(r"[dmyhsDMYHSeEgGbB]")


@dataclass
class _Styles:
    locked: list[bool]  # per cellXfs index
    openpyxl_dates: set[int]  # style ids openpyxl turns numbers into dates for
    openpyxl_timedeltas: set[int]  # ... into durations
    any_dates: set[int]  # style ids any reader might (a superset)
    plain_dates: set[int] = dataclasses.field(default_factory=set)  # day-only formats


#: day-only formats whose whole serial numbers python-calamine reads as datetime.date
#: (checked against it in the tests); other date-like formats are left to it
_PLAIN_DATE_CODES = {
    "yyyy-mm-dd", "yyyy\\-mm\\-dd", "yyyy/m/d", "yyyy-m-d", "mm-dd-yy", "m/d/yyyy",
}  # fmt: skip
_EPOCH = dt.date(1899, 12, 30)


def _date_like(code: str) -> bool:
    """Whether some reader might show numbers of this format as dates (a superset)."""
    bare = re.sub(r'"[^"]*"|\\.|\[[^\]]*\]|(?i:general)', "", code)
    return bool(_DATE_CHARS.search(bare))


_STYLE_CACHE: dict[bytes, _Styles] = {}


def _styles_cached(data: bytes) -> _Styles:
    """:func:`_styles` of a styles part; the forms of one collection mostly share it."""
    got = _STYLE_CACHE.get(data)
    if got is None:
        got = _styles(_body(data, "styleSheet"))
        if len(_STYLE_CACHE) >= 64:
            _STYLE_CACHE.clear()
        _STYLE_CACHE[data] = got
    return got


def _styles(xml: str) -> _Styles:
    BUILTIN_FORMATS, is_date_format, is_timedelta_format = (  # noqa: N806
        _OP_BUILTIN_FORMATS,
        _is_date_format,
        _is_timedelta_format,
    )
    found = _NUMFMT.findall(xml)
    if len(found) != xml.count("<numFmt "):
        raise _Odd
    custom = {int(i): _text(code) for i, code in found}
    if any(ch in code for code in custom.values() for ch in "\t\r\n"):
        raise _Odd  # attribute values are whitespace-normalised by parsers
    mt = _CELLXFS.search(xml)
    if mt is None:
        raise _Odd
    xfs = _XF.findall(mt.group(1))
    if len(xfs) != mt.group(1).count("<xf"):
        raise _Odd
    locked: list[bool] = []
    op_dates: set[int] = set()
    td_dates: set[int] = set()
    any_dates: set[int] = set()
    plain: set[int] = set()
    for k, (attrs, inner) in enumerate(xfs):
        fm = _XF_NUMFMT.search(attrs)
        fid = int(fm.group(1)) if fm else 0
        code = custom.get(fid) if fid in custom else BUILTIN_FORMATS.get(fid)
        # as openpyxl's stylesheet indexes them (styles/stylesheet.py _normalise_numbers)
        if is_date_format(code):
            op_dates.add(k)
        if is_timedelta_format(code):
            td_dates.add(k)
        if fid in _DATE_IDS or (code is not None and _date_like(code)) or (code is None and fid):
            any_dates.add(k)
            if code in _PLAIN_DATE_CODES:
                plain.add(k)
        is_locked = True
        pm = _PROTECTION.search(inner or "")
        if pm is not None:
            la = _LOCKED_ATTR.search(pm.group(1))
            if la is not None:
                # openpyxl's Bool: "false", "f" and "0" are False, any other text True
                is_locked = la.group(1) not in ("false", "f", "0")
        locked.append(is_locked)
    if not locked:
        raise _Odd
    return _Styles(locked, op_dates, td_dates, any_dates | op_dates, plain)


# -- shared strings -------------------------------------------------------------------------

_SI_PLAIN = re.compile(r'<t(?: xml:space="preserve")?>([^<&\r]*)</t>')
#: one shared string's XML -> (its text, whether it has character references); the
#: template text embedded in every form is the same long string in every file
_SI_MEMO: dict[str, tuple[str, bool]] = {}
_RELS_CACHE: dict[bytes, dict[str, tuple[str, str]]] = {}


def _si(si: str) -> tuple[str, bool]:
    got = _SI_MEMO.get(si)
    if got is not None:
        return got
    pm = _SI_PLAIN.fullmatch(si)
    if pm is not None:
        text = pm.group(1)
    else:
        if _SI_GRAMMAR.fullmatch(si) is None or "<rPh" in si:
            raise _Odd
        text = "".join(_text(x) for x in _T_TEXT.findall(si))
    if "_x" in text and _ESCAPED.search(text) or "x005F_" in text:
        raise _Odd
    got = (text, "&#" in si)
    if len(si) > 64:  # short strings (names, numbers) are cheaper to read than to keep
        _remember(_SI_MEMO, si, got, 20000)
    return got


_SST_CACHE: dict[bytes, tuple[list[str], frozenset[int]]] = {}


def _sst(data: bytes) -> tuple[list[str], frozenset[int]]:
    """The shared strings (and which hold character references), read once per content."""
    got = _SST_CACHE.get(data)
    if got is None:
        got = _read_sst(data)
        if len(data) <= 1 << 20:
            _remember(_SST_CACHE, data, got, 64)
    return got


def _read_sst(data: bytes) -> tuple[list[str], frozenset[int]]:
    xml = _body(data, "sst")
    if "<si " in xml or "<si/>" in xml:
        raise _Odd
    pieces = xml.split("<si>")
    items = []
    for piece in pieces[1:]:
        end = piece.find("</si>")
        if end < 0 or piece.find("<si", end) >= 0:
            raise _Odd
        rest = piece[end + 5 :]
        if rest.strip() and rest.strip() != "</sst>":
            raise _Odd
        items.append(piece[:end])
    out: list[str] = []
    refs: set[int] = set()
    for si in items:
        text, has_refs = _si(si)
        if has_refs:
            refs.add(len(out))
        out.append(text)
    return out, frozenset(refs)


# -- the book ---------------------------------------------------------------------------------


@dataclass
class FastBook(Book):
    """A :class:`~kpi_excel.read.Book` that answers from the XML where it can."""

    _scans: dict[str, _Scan | None] = dataclasses.field(default_factory=dict, repr=False)
    _fast_shared: Any = dataclasses.field(default=None, repr=False)
    _fast_styles: Any = dataclasses.field(default=None, repr=False)
    _fast_sheets: dict[str, SheetCells] = dataclasses.field(default_factory=dict, repr=False)
    _shared_refs: frozenset[int] = dataclasses.field(default=frozenset(), repr=False)
    _fast_ready: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    _fast_rels: Any = dataclasses.field(default=None, repr=False)
    value_engine: str = "xml"

    @classmethod
    def of(cls, book: Book) -> FastBook:
        """The same opened book, answering fast."""
        kw = {name: getattr(book, name) for name in _book_fields(type(book))}
        kw["value_engine"] = "xml"
        return cls(**kw)

    # -- parts --------------------------------------------------------------------------

    def _part(self, name: str) -> bytes:
        return _read_member(self.zf, name, self.limits)

    def _has(self, name: str) -> bool:
        """Whether the package has a part ``name`` (``name in zf.namelist()``)."""
        try:
            self.zf.getinfo(name)
        except KeyError:
            return False
        return True

    def _scanned(self, sheet: str) -> _Scan | None:
        if sheet not in self._scans:
            ref = self.sheet(sheet)
            got: _Scan | None = None
            if ref is not None:
                try:
                    got = _scan(_sheet_data(self._part(ref.part)), ref.part)
                except _Odd:
                    got = None
            self._scans[sheet] = got
        return self._scans[sheet]

    def _workbook_rel(self, kind: str) -> str | None:
        """The part a workbook relationship of ``kind`` points at (read once per content)."""
        rels_part = _rels_name(self.workbook_part)
        if not self._has(rels_part):
            return None
        got = self._fast_rels
        if got is None:
            raw = _read_member(self.zf, rels_part, self.limits)
            got = _RELS_CACHE.get(raw)
            if got is None:
                got = _rels(self.zf, self.workbook_part, self.limits)
                _remember(_RELS_CACHE, raw, got)
            self._fast_rels = got
        part = next((t for typ, t in got.values() if typ == kind), None)
        return part if part and self._has(part) else None

    def _strings(self) -> list[str] | None:
        """Shared strings read here, or None when the part is not plainly written."""
        if self._fast_shared is None:
            self._fast_shared = False
            part = self._workbook_rel("sharedStrings")
            if part is None:
                self._fast_shared = []
            else:
                try:
                    self._fast_shared, self._shared_refs = _sst(self._part(part))
                except _Odd:
                    self._fast_shared = False
        return self._fast_shared if self._fast_shared is not False else None

    def _style_info(self) -> _Styles | None:
        if self._fast_styles is None:
            self._fast_styles = False
            part = self._workbook_rel("styles")
            if part is not None:
                with contextlib.suppress(_Odd):
                    self._fast_styles = _styles_cached(self._part(part))
        return self._fast_styles if self._fast_styles is not False else None

    def _date1904(self) -> bool:
        got = getattr(self, "_d1904", None)
        if got is None:
            got = _date1904(self._part(self.workbook_part))
            self._d1904 = got
        return got

    # -- read.Book, answered from the scan ------------------------------------------------

    def shared_strings(self) -> list[str]:
        got = self._strings()
        return got if got is not None else super().shared_strings()

    def xml_cells(self, sheet: str) -> dict[str, tuple[object, str | None]]:
        if sheet in self._xml_cells:
            return self._xml_cells[sheet]
        scan = self._scanned(sheet)
        shared = self._strings()
        if scan is None or shared is None:
            return super().xml_cells(sheet)
        out = _views(shared, None, self._shared_refs).xml_cells(scan.entries)
        self._xml_cells[sheet] = out
        return out

    def meta(self, sheet: str = "_meta") -> dict[str, str]:
        """:meth:`Book.meta`, with each cell's row and column known from the scan."""
        cells = self.xml_cells(sheet)
        scan = self._scans.get(sheet)
        if scan is None or self._strings() is None:  # the reference reader's cells
            return super().meta(sheet)
        # as Book.meta, which sorts the cells by row and column: the scan has them so;
        # one pass, a row's value gathered as its cells come
        out: dict[str, str] = {}
        key: object = None  # the key of the row being read (None: the row is not read)
        parts: list[str] = []
        row = 0
        for entry in scan.entries:
            order = entry[0]
            if order >> 15 != row:  # a new row: the last one is complete
                if key is not None:
                    out[meta_text(key)] = "".join(parts)
                row, key = order >> 15, None
                if row != 1 and order & (_COLS - 1) == 1:  # the key in column A
                    value = cells[entry[1]][0]
                    if value is not None and value != "":
                        key, parts = value, []
            elif key is not None:
                value = cells[entry[1]][0]
                if value is not None:
                    parts.append(value if type(value) is str else meta_text(value))
        if key is not None:
            out[meta_text(key)] = "".join(parts)
        return out

    def _ready(self, sheet: str) -> tuple[_Scan, _Views] | None:
        """What answering from the scan needs, or None (the reference reader answers)."""
        if sheet not in self._fast_ready:
            scan = self._scanned(sheet)
            shared = self._strings()
            styles = self._style_info()
            got: tuple[_Scan, _Views] | None = None
            if (
                scan is not None
                and shared is not None
                and styles is not None
                and not self._date1904()
            ):
                got = (scan, _views(shared, styles, self._shared_refs))
            self._fast_ready[sheet] = got
        return self._fast_ready[sheet]  # type: ignore[no-any-return]

    def cell(self, sheet: str, row: int, col: int) -> object:
        ready = self._fast_ready.get(sheet, False)
        if ready is False:
            ready = self._ready(sheet)
        if ready is None:
            return super().cell(sheet, row, col)
        scan, views = ready
        piece = scan.at(row, col)
        if piece is None:
            return None
        answer = views.cell(piece)
        return super().cell(sheet, row, col) if answer is _ODD else answer

    def value(self, name: str) -> object:
        """:meth:`Book.value`: :meth:`cell` of the name's cell, its steps inlined (tens
        of values a form)."""
        ref = self.names[name]
        if ref.problem or ref.sheet is None:
            raise KeyError(name)
        sheet = ref.sheet
        ready = self._fast_ready.get(sheet, False)
        if ready is False:
            ready = self._ready(sheet)
        if ready is None:
            return super().cell(sheet, ref.row, ref.col)
        scan, views = ready
        piece = scan.at(ref.row, ref.col)
        if piece is None:
            return None
        got = views.cells.get(id(piece))
        answer = got[1] if got is not None and got[0] is piece else views.cell(piece)
        return super().cell(sheet, ref.row, ref.col) if answer is _ODD else answer

    def sheet_cells(self, sheet: str) -> SheetCells:
        got = self._fast_sheets.get(sheet)
        if got is not None:
            return got
        ready = self._ready(sheet)
        got = None if ready is None else ready[1].sheet_cells(ready[0].entries)
        if got is None:
            return super().sheet_cells(sheet)
        self._fast_sheets[sheet] = got
        return got


@functools.lru_cache(maxsize=64)
def _book_fields(cls: type) -> tuple[str, ...]:
    """The fields a book of class ``cls`` is made with."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


@functools.lru_cache(maxsize=64)
def _rels_name(part: str) -> str:
    """The relationships part of ``part``."""
    p = PurePosixPath(part)
    return f"{p.parent / '_rels'}/{p.name}.rels".lstrip("./")


_DATE1904 = re.compile(r"<workbookPr\b[^>]*\bdate1904=\"([^\"]*)\"")
_D1904_CACHE: dict[bytes, bool] = {}


def _date1904(data: bytes) -> bool:
    """Whether a workbook part counts dates from 1904 (read once per content)."""
    got = _D1904_CACHE.get(data)
    if got is None:
        mt = _DATE1904.search(data.decode("utf-8", "replace"))
        got = bool(mt and mt.group(1) in ("1", "true"))
        if len(data) <= 1 << 20:
            _remember(_D1904_CACHE, data, got, 64)
    return got


def open_fast(
    data: bytes,
    source: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    path: Path | None = None,
    sha256: str | None = None,
) -> Book:
    """:func:`kpi_excel.read.open_book` (every check of its gate), answering fast."""
    return FastBook.of(open_book(data, source, limits=limits, path=path, sha256=sha256))
