"""Fast reading of returned forms: the answers of :mod:`kpi_excel.read`, without openpyxl.

:class:`~kpi_excel.read.Book` reads cached values with python-calamine, ``_meta`` and
shared strings with defusedxml, and formulas with protection flags with openpyxl
(~15 ms a file, most of collect's time). :class:`FastBook` reads the same from the XML
itself: one pass of a few regular expressions over each sheet gives every non-empty
cell's type, value, formula and style, from which it answers as each reference reader
does:

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
formulas, no phonetic runs or ``_xHHHH_`` escapes in text, no duplicate cells, no
1904 dates. Anything else, and any number a reader would turn into a date, is handed
back to the reference reader (``super()``), which answers as it always did. Empty
cells are left out of :meth:`xml_cells` (they read as ``(None, None)`` either way).
Tests compare both paths on forms written by XlsxWriter, the fast writer, openpyxl
and LibreOffice, filled, tampered with and broken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import pickle
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kpi_excel.read import (
    DEFAULT_LIMITS,
    Book,
    CellError,
    Limits,
    SheetCells,
    _number_text,
    _rels,
    col_letter,
    open_book,
)

__all__ = ["FastBook", "open_fast", "spool_results", "SpooledList", "SpooledDict"]

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


def _body(data: bytes, root: str) -> str:
    """A part as text, if it is plainly written UTF-8 with ``root`` in the main namespace."""
    try:
        xml = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Odd from None
    decl = _DECL.match(xml)
    assert decl is not None
    if decl.end():
        enc = _DECL_ENC.search(xml, 0, decl.end())
        if enc and enc.group(1).strip().lower() not in ("utf-8", "utf8"):
            raise _Odd
    start = decl.end()
    if not xml.startswith(f"<{root}", start) or xml[start + len(root) + 1] not in " >":
        raise _Odd
    tag_end = xml.find(">", start)
    tag = xml[start:tag_end]
    # the main namespace is the default one, bound once; nothing later rebinds a default
    # namespace, binds the main one to a prefix, or holds a DTD, comment, CDATA or PI
    if tag.count(f'="{_MAIN}"') != 1 or f'xmlns="{_MAIN}"' not in tag:
        raise _Odd
    if tag.count("xmlns=") != 1:
        raise _Odd
    for bad in ("<!", "<?", "xmlns=", f'="{_MAIN}"'):
        if xml.find(bad, tag_end) >= 0:
            raise _Odd
    return xml


# -- a scanned sheet ---------------------------------------------------------------


@dataclass(slots=True)
class _Raw:
    """One non-empty cell as written: type, style, value text, formula, inline text."""

    t: str
    s: int
    v: str | None  # <v> text (None: no <v>)
    f: str | None  # formula text (None: no formula)
    inline: str | None  # <is> text (None: no <is>)
    #: character references (&#49;) in the value: XML parsers resolve them, but
    #: python-calamine reads a number's <v> as it stands; it answers for such cells
    refs: bool = False


@dataclass
class _Scan:
    cells: dict[str, _Raw]  # coord -> cell, in document order


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


def _scan(xml: str) -> _Scan:
    start = xml.find("<sheetData")
    if start < 0:
        raise _Odd
    if xml.startswith("<sheetData/>", start):
        return _Scan({})
    if not xml.startswith("<sheetData>", start):
        raise _Odd
    start += len("<sheetData>")
    end = xml.find("</sheetData>", start)
    if end < 0 or xml.find("<sheetData", end) >= 0:
        raise _Odd
    # the whole of sheetData follows the cell grammar: nothing is skipped or misread
    if _SHEETDATA.fullmatch(xml, start, end) is None:
        raise _Odd
    cells: dict[str, _Raw] = {}
    last_row, last_col = 0, ""
    for mt in _ANY_CELL.finditer(xml, start, end):
        col, row, s_, t, f, v, inline, extra, inner = mt.groups()
        r = int(row)
        if r < last_row or (
            r == last_row and (len(col), col) <= (len(last_col), last_col)
        ):  # out of order or duplicated: leave it to the reference reader
            raise _Odd
        last_row, last_col = r, col
        s = int(s_) if s_ else 0
        t = t or "n"
        if inner is not None:  # the general form
            if extra:
                if s_ or t != "n":
                    raise _Odd  # s and t written in another order, or twice
                t, s = _cell_attrs(extra)
            v_text, f_text, inline_text = _inner(inner, t)
            cells[col + row] = _Raw(t, s, v_text, f_text, inline_text, "&#" in inner)
        elif inline is not None:
            if "_x" in inline and _ESCAPED.search(inline):
                raise _Odd
            cells[col + row] = _Raw(t, s, None, None, inline)
        else:
            if t in ("s", "str") and v and "_x" in v and _ESCAPED.search(v):
                raise _Odd
            cells[col + row] = _Raw(t, s, v, f, None)
    return _Scan(cells)


# -- the reference readers' views of one cell -----------------------------------------


def _xml_view(raw: _Raw, shared: list[str]) -> tuple[object, str | None]:
    """(value, formula) as :meth:`Book.xml_cells` parses them."""
    t, v, f = raw.t, raw.v, raw.f
    value: object
    if t == "s":
        try:
            value = shared[int(v or "")]
        except (ValueError, IndexError):
            value = None
    elif t == "inlineStr":
        value = raw.inline or ""
    elif t == "str":
        value = v or ""
    elif t == "b":
        value = (v or "").strip() in ("1", "true")
    elif t == "e":
        value = CellError(v or "#VALUE!")
    elif v is None or v == "":
        value = "" if f is not None else None
    else:
        value = _number_text(v)
    return value, f


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


class _Cell:
    """A cell as :func:`kpi_excel.meta.locked_cells_from_openpyxl` reads it."""

    __slots__ = ("coordinate", "value", "protection")

    def __init__(self, coordinate: str, value: object, protection: Any) -> None:
        self.coordinate = coordinate
        self.value = value
        self.protection = protection


@dataclass(frozen=True)
class _Protection:
    locked: bool


_LOCKED, _UNLOCKED = _Protection(True), _Protection(False)


class _FastSheetCells(SheetCells):
    """:class:`~kpi_excel.read.SheetCells` from a scan: non-empty cells, one row each."""

    def __init__(self, cells: list[_Cell]) -> None:
        self.rows = [(c,) for c in cells]
        self._by = {c.coordinate: c.value for c in cells if c.value is not None}

    def iter_rows(self) -> Iterable[tuple[Any, ...]]:
        return iter(self.rows)


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


def _remember(cache: dict[Any, Any], key: Any, value: Any, limit: int = 4096) -> None:
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


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
        kw = {f.name: getattr(book, f.name) for f in dataclasses.fields(book) if f.init}
        kw["value_engine"] = "xml"
        return cls(**kw)

    # -- parts --------------------------------------------------------------------------

    def _part(self, name: str) -> bytes:
        from kpi_excel.read import _read_member

        return _read_member(self.zf, name, self.limits)

    def _scanned(self, sheet: str) -> _Scan | None:
        if sheet not in self._scans:
            ref = self.sheet(sheet)
            got: _Scan | None = None
            if ref is not None:
                try:
                    got = _scan(_body(self._part(ref.part), "worksheet"))
                except _Odd:
                    got = None
            self._scans[sheet] = got
        return self._scans[sheet]

    def _workbook_rel(self, kind: str) -> str | None:
        """The part a workbook relationship of ``kind`` points at (read once per content)."""
        from kpi_excel.read import _read_member

        rels_part = str(PurePosixPath(self.workbook_part).parent / "_rels")
        rels_part = f"{rels_part}/{PurePosixPath(self.workbook_part).name}.rels".lstrip("./")
        if rels_part not in self.zf.namelist():
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
        return part if part and part in self.zf.namelist() else None

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
            xml = self._part(self.workbook_part).decode("utf-8", "replace")
            mt = re.search(r"<workbookPr\b[^>]*\bdate1904=\"([^\"]*)\"", xml)
            got = bool(mt and mt.group(1) in ("1", "true"))
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
        out = {coord: _xml_view(raw, shared) for coord, raw in scan.cells.items()}
        self._xml_cells[sheet] = out
        return out

    def _ready(self, sheet: str) -> tuple[_Scan, list[str], _Styles] | None:
        """What answering from the scan needs, or None (the reference reader answers)."""
        got = self._fast_ready.get(sheet, False)
        if got is False:
            scan = self._scanned(sheet)
            shared = self._strings()
            styles = self._style_info()
            ok = not (scan is None or shared is None or styles is None or self._date1904())
            got = (scan, shared, styles) if ok else None
            self._fast_ready[sheet] = got
        return got  # type: ignore[return-value]

    def cell(self, sheet: str, row: int, col: int) -> object:
        ready = self._ready(sheet)
        if ready is None:
            return super().cell(sheet, row, col)
        scan, shared, styles = ready
        raw = scan.cells.get(f"{col_letter(col)}{row}")
        if raw is None:
            return None
        try:
            v = _calamine_view(raw, shared, styles.any_dates, self._shared_refs, styles.plain_dates)
        except _Odd:
            return super().cell(sheet, row, col)
        if v == "":
            xv, f = _xml_view(raw, shared)
            if isinstance(xv, CellError):
                return xv
            return "" if f is not None else None
        return v

    def sheet_cells(self, sheet: str) -> SheetCells:
        got = self._fast_sheets.get(sheet)
        if got is not None:
            return got
        scan = self._scanned(sheet)
        shared = self._strings()
        styles = self._style_info()
        if scan is None or shared is None or styles is None or self._date1904():
            return super().sheet_cells(sheet)
        cells: list[_Cell] = []
        locked = styles.locked
        try:
            for coord, raw in scan.cells.items():
                value = _openpyxl_view(raw, shared, styles)
                if not 0 <= raw.s < len(locked):
                    raise _Odd
                cells.append(_Cell(coord, value, _LOCKED if locked[raw.s] else _UNLOCKED))
        except _Odd:
            return super().sheet_cells(sheet)
        got = _FastSheetCells(cells)
        self._fast_sheets[sheet] = got
        return got


def open_fast(
    data: bytes, source: str, *, limits: Limits = DEFAULT_LIMITS, path: Path | None = None
) -> Book:
    """:func:`kpi_excel.read.open_book` (every check of its gate), answering fast."""
    return FastBook.of(open_book(data, source, limits=limits, path=path))


# -- results kept on disk while a collection runs ------------------------------------------


class _Spool:
    """A temporary file of pickled results; it goes when the last list using it goes."""

    def __init__(self) -> None:
        # kept open for the life of the spool; the system deletes it when it closes
        self._fh = tempfile.TemporaryFile(prefix="kpi-excel-")  # noqa: SIM115
        self._end = 0

    def put(self, value: Any) -> tuple[int, int]:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._fh.seek(self._end)
        self._fh.write(data)
        at = self._end
        self._end += len(data)
        return at, len(data)

    def get(self, at: int, size: int) -> Any:
        self._fh.seek(at)
        return pickle.loads(self._fh.read(size))


class SpooledList(Sequence[Any]):
    """A list kept in a spool file, read back each time it is used (never kept in memory)."""

    __slots__ = ("_spool", "_at", "_size", "_count")

    def __init__(self, spool: _Spool, items: list[Any]) -> None:
        self._spool = spool
        self._at, self._size = spool.put(items)
        self._count = len(items)

    def _items(self) -> list[Any]:
        return self._spool.get(self._at, self._size)  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: Any) -> Any:
        return self._items()[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpooledList | list):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._items())

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (self._items(),))  # sent elsewhere: as the plain list


class SpooledDict(Mapping[str, Any]):
    """A dict kept in a spool file, as :class:`SpooledList`."""

    __slots__ = ("_spool", "_at", "_size", "_count")

    def __init__(self, spool: _Spool, items: dict[str, Any]) -> None:
        self._spool = spool
        self._at, self._size = spool.put(items)
        self._count = len(items)

    def _items(self) -> dict[str, Any]:
        return self._spool.get(self._at, self._size)  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._items())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._items(),))


def spool_results(results: Iterable[Any]) -> list[Any]:
    """The results of a collection, as they arrive, with their bulky parts (indicator
    lines, scores, recomputed values) moved to a temporary file: memory stays flat
    however many files are collected. The lists and dicts read back on use."""
    spool = _Spool()
    shared: dict[Any, Any] = {}  # one copy of what every form of a template repeats
    out = []
    for res in results:
        for name, kind in (
            ("lines", SpooledList),
            ("scores", SpooledList),
            ("as_typed", SpooledDict),
            ("coords", SpooledDict),
        ):
            value = getattr(res, name, None)
            if value:
                setattr(res, name, kind(spool, value))  # type: ignore[arg-type]
        for name in ("template_id", "template_version", "template_title", "composition",
                     "department", "position", "period", "sheet", "status", "value_engine"):  # fmt: skip
            value = getattr(res, name, None)
            if isinstance(value, str):
                setattr(res, name, shared.setdefault(value, value))
        grades = getattr(res, "grades", None)
        if isinstance(grades, list) and grades:
            res.grades = shared.setdefault(("grades", *grades), grades)
        out.append(res)
    return out
