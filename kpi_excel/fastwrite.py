"""The fast form writer: a template's workbook compiled once, each employee patched in.

Writing a form from scratch (layout, then XlsxWriter) costs ~10 ms; almost all of it
is the same for every employee of a template. :class:`CompiledWorkbook` renders the
form once with the reference writer (:mod:`kpi_excel.render`) and keeps it as text
with *slots*, the only places that depend on the employee:

* header values from the roster (``hdr_name`` …) and the roster's targets and Q;
* the cached values of every formula cell (from :func:`kpi_excel.score.evaluate`,
  cached by the targets: employees with the same targets share them);
* rule texts with targets (``计划{{ target }}万元``), the input prompts that quote
  them, and the heights of the rows they sit in (the reference's own height
  estimate, :func:`kpi_excel.layout._fit_heights`, rerun with the new texts);
* the input cells (blank; :meth:`CompiledWorkbook.to_bytes` can fill them, as a
  returned form would be, for tests and the benchmark);
* the ``_meta`` values of the employee and the fingerprint.

Per employee only those are produced. Nothing is compressed per form: every other
part of the zip is copied as deflated once, under its stored CRC (:func:`zip_bytes`),
and in the two sheet parts the static text is deflated once too, in self-contained
blocks, with the employee's text between them in stored blocks
(:func:`_deflate_pieces`). A blank form does even less per employee: the form sheet is
completed once per set of targets and row heights (a *frame*, :func:`_frame`), the
fingerprint text's static runs are encoded once, and what remains per employee is the
header fields, the ``_meta`` values, the fingerprint's HMAC and the zip records
(:meth:`CompiledWorkbook._blank_bytes`; the compile check and the tests hold it to the
slot-by-slot path). Text that differs per employee is written as inline strings;
the shared-strings part holds the static text only (and so the probe employee's data
never leaks into other files). Where the layout lets a rule text reach the row
heights, the layout's estimate is rerun with the employee's texts; the layout's inputs
to it are recorded once, when compiling (:func:`_height_inputs`).

Equivalence with the reference writer is checked when a template is compiled: a
second, different probe employee is written both ways and the parts compared (cells,
values, formulas, cached values, styles, rows and heights, validations, names,
protection, ``_meta`` and the fingerprint text). Anything that does not match, or a
part that differs per employee in a way the slots do not cover, raises
:class:`Unsupported`, and :class:`~kpi_excel.generate.FormGenerator` uses the
reference writer instead. An employee the compiled form cannot express (text
XlsxWriter would escape or write as a rich string, a ``_meta`` value longer than one
cell) is written with the reference writer too. The output is deterministic: the same
inputs give the same bytes. Files are ~27 KB instead of ~16 KB (static text deflated
piece by piece compresses less well).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import operator
import os
import re
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kpi_excel import layout
from kpi_excel.layout import SheetPlan, cached_value, col_letter, coord, lines_needed
from kpi_excel.meta import (
    CHUNK,
    META_KEYS,
    cell_line,
    fingerprint_head,
    meta_line,
    resolve_secret,
)
from kpi_excel.roster import EXAMPLE_FIELDS, Employee, example_employee, initial_values
from kpi_excel.roster import _bounds as _spec_bounds
from kpi_excel.score import evaluate
from kpi_excel.spec import model as m
from kpi_excel.spec.text import indicator_context, placeholders, render_text
from kpi_excel.validate import to_sheet_value

if TYPE_CHECKING:
    from kpi_excel.generate import FormGenerator

__all__ = ["CompiledWorkbook", "Unsupported", "zip_bytes", "ZipEntry"]


class Unsupported(Exception):
    """The template's form cannot be compiled; the reference writer must be used."""


# ------------------------------------------------------------------ XML text, as XlsxWriter writes it

_XML_ESCAPES = re.compile('["&<>\n]')
#: what XlsxWriter rewrites in a string (its ``_escape_control_characters``): an
#: ``_xHHHH_`` escape, a control character other than tab and newline, U+FFFE, U+FFFF
_CTRL_ESCAPES = re.compile("_x[0-9a-fA-F]{4}_|[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def _esc_data(s: str) -> str:
    if not _XML_ESCAPES.search(s):
        return s
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_attr(s: str) -> str:
    if not _XML_ESCAPES.search(s):
        return s
    return (
        s.replace("&", "&amp;")
        .replace('"', "&quot;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", "&#xA;")
    )


class _NeedsReference(Exception):
    """This employee's form cannot be expressed by the compiled form."""


def _needs_escape(text: str) -> bool:
    """Whether XlsxWriter would rewrite ``text`` (see :data:`_CTRL_ESCAPES`). Printable
    text holds no control character nor U+FFFE/U+FFFF, so only the ``_xHHHH_`` form is
    looked for there (the usual case, and the cheap one)."""
    if text.isprintable():
        return "_x" in text and _CTRL_ESCAPES.search(text) is not None
    return _CTRL_ESCAPES.search(text) is not None


def _inline(ref: str, s_attr: str, text: str) -> str:
    """A string cell as an inline string (the text XlsxWriter would share).

    Text XlsxWriter escapes (control characters, ``_xHHHH_``) or would write as a rich
    string (``<r>…</r>``) is left to the reference writer: readers do not agree on
    how to read such text inline and shared."""
    if _needs_escape(text) or (text.startswith("<r>") and text.endswith("</r>")):
        raise _NeedsReference
    space = ' xml:space="preserve"' if (text[:1].isspace() or text[-1:].isspace()) else ""
    return f'<c r="{ref}"{s_attr} t="inlineStr"><is><t{space}>{_esc_data(text)}</t></is></c>'


def _blank(ref: str, s_attr: str) -> str:
    return f'<c r="{ref}"{s_attr}/>'


def _number(ref: str, s_attr: str, value: float) -> str:
    return f'<c r="{ref}"{s_attr}><v>{value:.16G}</v></c>'


_ERROR_CODES = {"#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!"}


def _cached(value: object) -> tuple[str, str]:
    """A formula's cached value as XlsxWriter writes it: (type attribute, <v> text)."""
    t = ""
    if isinstance(value, bool):
        t, value = ' t="b"', 1 if value else 0
    elif isinstance(value, str):
        if value in _ERROR_CODES:
            t = ' t="e"'
        elif value != "":
            t = ' t="str"'
        value = _esc_data(value)
    return t, str(value)


def _formula(ref: str, s_attr: str, ftext: str, value: object) -> str:
    """A formula cell with its cached value (``ftext`` already escaped)."""
    t, v = _cached(value)
    return f'<c r="{ref}"{s_attr}{t}><f>{ftext}</f><v>{v}</v></c>'


def _typed(ref: str, s_attr: str, value: object) -> str:
    """A cell holding what a person typed (a number, a text, a date, TRUE/FALSE or
    nothing); a date is stored as its serial number, as spreadsheets do."""
    if value is None or value == "":
        return _blank(ref, s_attr)
    if isinstance(value, bool):
        return f'<c r="{ref}"{s_attr} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, dt.date | dt.datetime | dt.time):
        value = to_sheet_value(value)
    if isinstance(value, int | float | Decimal):
        return _number(ref, s_attr, float(value))
    return _inline(ref, s_attr, str(value))


def _row_tag(head: str, height: float | None) -> str:
    """``<row r=… spans=…>`` with the height as XlsxWriter writes it (in pixels)."""
    if height is None:
        return head + ">"
    px = int(height * 4.0 / 3.0 + 0.5)
    if px == 20:  # the default height: XlsxWriter writes no ht
        return head + ">"
    return f'{head} ht="{px * 0.75:.16g}" customHeight="1">'


def _join_runs(pieces: list[Any]) -> list[Any]:
    """``pieces`` with each run of texts joined into one (the slots between left)."""
    joined: list[Any] = []
    for piece in pieces:
        if isinstance(piece, str) and joined and isinstance(joined[-1], str):
            joined[-1] += piece
        else:
            joined.append(piece)
    return joined


def _fp_line(ref: str, value: object) -> str:
    """One cell's line of the fingerprint text, with its newline ("" for an empty cell)."""
    line = cell_line(ref, value)
    return line + "\n" if line else ""


# ------------------------------------------------------------------ the zip container

_DOS_DATE = (1 << 5) | 1  # 1980-01-01, as XlsxWriter stamps every entry
_EXTERNAL_ATTR = 0o600 << 16
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_OFFSET = struct.Struct("<L")


@dataclass(frozen=True)
class ZipEntry:
    """One deflated zip member: its name, CRC-32, uncompressed size and raw data."""

    name: bytes
    crc: int
    size: int
    data: bytes

    @classmethod
    def deflate(cls, name: str | bytes, raw: bytes, level: int = 6) -> ZipEntry:
        data = zlib.compress(raw, level, -15)
        nm = name.encode("utf-8") if isinstance(name, str) else name
        return cls(nm, zlib.crc32(raw), len(raw), data)

    def local(self) -> bytes:
        return _local_head(self.name, self.crc, len(self.data), self.size) + self.data

    def central(self, offset: int) -> bytes:
        return _central_record(self.name, self.crc, len(self.data), self.size, offset)


def _local_head(name: bytes, crc: int, csize: int, size: int) -> bytes:
    """A deflated member's local header, its name included."""
    return _LOCAL.pack(b"PK\x03\x04", 20, 0, 8, 0, _DOS_DATE, crc, csize, size, len(name), 0) + name


def _central_record(name: bytes, crc: int, csize: int, size: int, offset: int) -> bytes:
    """A deflated member's central-directory record."""
    head = _CENTRAL.pack(
        b"PK\x01\x02",
        0x0314,  # made by: Unix, zip 2.0 (as Python's zipfile and XlsxWriter)
        20,
        0,
        8,
        0,
        _DOS_DATE,
        crc,
        csize,
        size,
        len(name),
        0,
        0,
        0,
        0,
        _EXTERNAL_ATTR,
        offset,
    )
    return head + name


def zip_bytes(entries: list[ZipEntry | tuple[ZipEntry, bytes]]) -> bytes:
    """A zip archive of already-deflated entries (no data descriptors, no zip64).

    An entry may come with its local record already built (``(entry, entry.local())``),
    so unchanged parts cost one copy per file.
    """
    out: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for item in entries:
        entry, local = item if isinstance(item, tuple) else (item, item.local())
        out.append(local)
        central.append(entry.central(offset))
        offset += len(local)
    cd = b"".join(central)
    end = _END.pack(b"PK\x05\x06", 0, 0, len(entries), len(entries), len(cd), offset, 0)
    return b"".join(out) + cd + end


#: static text at least this long is deflated once, at compile time; shorter text and
#: whatever differs per employee goes into stored (uncompressed) deflate blocks
_DEFLATE_FROM = 128
_FINAL_BLOCK = b"\x03\x00"  # an empty final block (fixed Huffman codes)
_STORED_HEAD = struct.Struct("<BHH")


def _stored(data: bytes) -> bytes:
    """``data`` as stored deflate blocks (not final), starting at a byte boundary."""
    n = len(data)
    if n <= 65535:  # (the usual case: one block, or none for no data)
        return _STORED_HEAD.pack(0, n, n ^ 0xFFFF) + data if n else b""
    out = []
    for i in range(0, n, 65535):
        chunk = data[i : i + 65535]
        k = len(chunk)
        out.append(_STORED_HEAD.pack(0, k, k ^ 0xFFFF))
        out.append(chunk)
    return b"".join(out)


def _deflate_static(text: str) -> tuple[bytes, bytes]:
    """(UTF-8 bytes, their deflate blocks ending on a byte boundary, not final): a
    piece that can stand anywhere in a stream, since it refers to nothing before it."""
    raw = text.encode("utf-8")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return raw, c.compress(raw) + c.flush(zlib.Z_SYNC_FLUSH)


def _plan(segments: list[Any]) -> list[Any]:
    """Per segment: (bytes, deflated) for long static text, bytes for short static
    text, None for a slot filled per employee."""
    out: list[Any] = []
    for seg in segments:
        if not isinstance(seg, str):
            out.append(None)
        elif len(seg) >= _DEFLATE_FROM:
            out.append(_deflate_static(seg))
        else:
            out.append(seg.encode("utf-8"))
    return out


def _deflate_pieces(plan: list[Any], pieces: list[Any], name: bytes) -> ZipEntry:
    """A zip entry from pieces: deflated once where static, stored where per employee."""
    raw: list[bytes] = []
    z: list[bytes] = []
    pending: list[bytes] = []
    for how, piece in zip(plan, pieces):  # noqa: B905 - same length by construction
        if how is None:
            b = piece.encode("utf-8")
            raw.append(b)
            pending.append(b)
        elif how.__class__ is bytes:
            raw.append(how)
            pending.append(how)
        else:
            if pending:
                z.append(_stored(b"".join(pending)))
                pending = []
            raw.append(how[0])
            z.append(how[1])
    if pending:
        z.append(_stored(b"".join(pending)))
    z.append(_FINAL_BLOCK)
    data = b"".join(raw)
    return ZipEntry(name, zlib.crc32(data), len(data), b"".join(z))


# A *frame* is a part's deflate stream with all but a few pieces known: a list of
# items, each either ``(raw, deflated)`` -- known bytes and their deflate blocks -- or a
# run of stored text still to complete: a list of bytes and, where a value of the
# employee goes, the index of that value (a *hole*). :func:`_frame` builds one from a
# part's groups; :func:`_assemble` completes it with one employee's values, giving the
# same bytes :func:`_deflate_pieces` gives for the whole list of pieces.

_Frame = list[Any]


def _groups(segments: list[Any], plan: list[Any]) -> list[Any]:
    """A part's segments as its deflate stream groups them: ``(raw, deflated)`` for
    static text deflated once, and a list of the segments (text, slots) of each run
    between two of those, which goes into stored blocks."""
    out: list[Any] = []
    run: list[Any] | None = None
    for seg, how in zip(segments, plan):  # noqa: B905 - same length by construction
        if how.__class__ is tuple:
            out.append(how)
            run = None
        else:
            if run is None:
                run = []
                out.append(run)
            run.append(seg)
    return out


def _frame(groups: list[Any], fill: Any) -> _Frame:
    """A frame from groups: ``(raw, deflated)``, or a run of bytes and other segments,
    for which ``fill(segment)`` gives bytes or the index of the hole it becomes. Runs
    without holes become stored blocks here, and adjacent known bytes are joined."""
    items: _Frame = []
    raws: list[bytes] = []
    zs: list[bytes] = []
    for group in groups:
        if group.__class__ is tuple:
            raws.append(group[0])
            zs.append(group[1])
            continue
        vals = [seg if seg.__class__ is bytes else fill(seg) for seg in group]
        if int not in map(type, vals):
            raw = b"".join(vals)
            raws.append(raw)
            zs.append(_stored(raw))
            continue
        parts: list[Any] = []
        known: list[bytes] = []
        for v in vals:
            if v.__class__ is int:
                if known:
                    parts.append(b"".join(known))
                    known = []
                parts.append(v)
            else:
                known.append(v)
        if known:
            parts.append(b"".join(known))
        if raws:
            items.append((b"".join(raws), b"".join(zs)))
            raws, zs = [], []
        items.append(parts)
    if raws:
        items.append((b"".join(raws), b"".join(zs)))
    return items


def _assemble(frame: _Frame, holes: list[bytes]) -> tuple[int, int, list[bytes]]:
    """(CRC-32, size, deflate blocks) of a frame completed with ``holes``."""
    crc = size = 0
    out: list[bytes] = []
    for item in frame:
        if item.__class__ is tuple:
            raw, z = item
        else:
            raw = b"".join([holes[p] if p.__class__ is int else p for p in item])
            z = _stored(raw)
        crc = zlib.crc32(raw, crc)
        size += len(raw)
        out.append(z)
    out.append(_FINAL_BLOCK)
    return crc, size, out


def _run_template(run: list[Any]) -> list[Any]:
    """A stored run of the form sheet made ready for :meth:`CompiledWorkbook._state_runs`:
    its text up to each row tag or header field as ``(format, getter)`` -- the values
    that follow the targets fetched by ``getter`` from the state's cells and put in
    with ``%`` -- or as bytes when nothing there follows the targets; the row and field
    slots stay."""
    out: list[Any] = []
    fmt: list[str] = []
    plain: list[str] = []
    keys: list[Any] = []

    def flush() -> None:
        if keys:
            out.append(("".join(fmt), operator.itemgetter(*keys)))
        elif plain:
            out.append("".join(plain).encode("utf-8"))

    for seg in run:
        if isinstance(seg, str):
            text = seg
        elif seg.kind in ("row", "field"):
            flush()
            fmt, plain, keys = [], [], []
            out.append(seg)
            continue
        elif seg.kind == "input":
            text = seg.default  # a blank form's input cell (see _render_pieces)
        else:
            fmt.append("%s")
            if seg.kind == "prompt":
                keys.append(("prompt", seg.key))
            elif seg.kind == "ftype":
                keys.append(seg.ref + "t")
            elif seg.kind == "fvalue":
                keys.append(seg.ref + "v")
            else:
                keys.append(seg.ref)
            continue
        fmt.append(text.replace("%", "%%"))
        plain.append(text)
    flush()
    return out


# ------------------------------------------------------------------ probing the reference

_SPY_LOCK = threading.Lock()


@contextmanager
def _height_inputs() -> Iterator[list[tuple[dict[int, float], list[Any], Any]]]:
    """Record what the layout's row-height estimate is given (its preset heights, the
    text cells in the order it saw them, the column-span width function), so the same
    estimate can be rerun for another employee's texts."""
    calls: list[tuple[dict[int, float], list[Any], Any]] = []
    original = layout._fit_heights

    def spy(plan: SheetPlan, text_cells: list[Any], span_width: Any) -> None:
        calls.append((dict(plan.heights), list(text_cells), span_width))
        original(plan, text_cells, span_width)

    with _SPY_LOCK:
        layout._fit_heights = spy  # type: ignore[assignment]
        try:
            yield calls
        finally:
            layout._fit_heights = original  # type: ignore[assignment]


_PROBE2_FIELDS = {
    "employee_id": "P20002",
    "name": "欧阳·娜娜 Nana Ouyang-Smith Jr",
    "department": "华东大区客户服务与质量管理中心第二运营部",
    "position": "高级客户服务经理（兼质量专员）",
    "reviewer": "司马·长卿 Changqing",
    "reviewer_position": "区域客户服务总监及运营负责人",
    "hire_date": "2019-07-01",
    "store": "上海市浦东新区世纪大道旗舰店",
    "region": "华东及华中联合大区",
    "manager": "诸葛·明远",
}


def _other_value(v: Decimal, spec: m.InputSpec) -> Decimal:
    """A target different from ``v`` that the input accepts (for the second probe)."""
    lo, hi = _spec_bounds(spec)
    cands = [v * 3 + 7, v / 2, v + 1, v - 1, hi, lo, Decimal("0.5"), Decimal(0)]
    for c in cands:
        if c is None or c == v:
            continue
        if spec.kind == "count":
            c = c.to_integral_value()
        if spec.kind == "percent" and c > 10:
            continue
        if (lo is None or c >= lo) and (hi is None or c <= hi) and c != v:
            return c
    return v


def _probes(form: m.Form) -> tuple[Employee, Employee]:
    fields1 = {k: EXAMPLE_FIELDS.get(k) or f"示例{k}" for k in m.ROSTER_FIELDS if k != "q"}
    p1 = example_employee(form, **fields1)
    p2 = example_employee(form, q=Decimal("8123.45"), **{**fields1, **_PROBE2_FIELDS})
    p2.row = 2
    specs = {f"in_{i.id}_{k}": s for _s, i in form.indicators() for k, s in i.inputs.items()}
    for name, v in list(p1.targets.items()):
        p2.targets[name] = _other_value(v, specs[name])
    return p1, p2


# ------------------------------------------------------------------ sheet XML tokens

_ROW = re.compile(r'<row r="(\d+)"([^>]*?)(/?)>')
_CELL = re.compile(r'<c r="([A-Z]{1,3})(\d+)"((?: [a-zA-Z:]+="[^"]*")*)(?:/>|>(.*?)</c>)', re.S)
_S_ATTR = re.compile(r' s="\d+"')
_T_ATTR = re.compile(r' t="(\w+)"')
_SST_INDEX = re.compile(r"^<v>(\d+)</v>$")
_FORMULA_BODY = re.compile(r"^<f>(.*?)</f><v>.*?</v>$", re.S)
_SI = re.compile(r"<si>.*?</si>", re.S)


def _split_sheet(
    xml: str,
) -> tuple[str, list[tuple[int, str, str, list[tuple[str, str, str]]]], str]:
    """Prefix up to ``<sheetData>``, the rows, and the rest, from XlsxWriter's XML.

    Each row is (row number, its tag without ``>``, ``/`` if empty, [(coord, attrs,
    body)]) where a cell's attrs follow ``r`` and body is None for an empty cell.
    """
    start = xml.find("<sheetData>")
    end = xml.find("</sheetData>")
    if start < 0 or end < 0:
        raise Unsupported("工作表 XML 中没有 sheetData")
    start += len("<sheetData>")
    body = xml[start:end]
    rows = []
    pos = 0
    for mt in _ROW.finditer(body):
        if mt.start() != pos:
            raise Unsupported("工作表 XML 的行结构不是预期的样子")
        tag_end = mt.end()
        head = f'<row r="{mt.group(1)}"{mt.group(2)}'
        if mt.group(3):
            rows.append((int(mt.group(1)), head, "/", []))
            pos = tag_end
            continue
        close = body.index("</row>", tag_end)
        cells = []
        cpos = tag_end
        for cm in _CELL.finditer(body, tag_end, close):
            if cm.start() != cpos:
                raise Unsupported("工作表 XML 的单元格结构不是预期的样子")
            cells.append((f"{cm.group(1)}{cm.group(2)}", cm.group(3), cm.group(4)))
            cpos = cm.end()
        if cpos != close:
            raise Unsupported("工作表 XML 的单元格结构不是预期的样子")
        rows.append((int(mt.group(1)), head, "", cells))
        pos = close + len("</row>")
    if pos != len(body):
        raise Unsupported("工作表 XML 的行结构不是预期的样子")
    return xml[:start], rows, xml[end:]


def _sst_items(xml: str) -> list[str]:
    return _SI.findall(xml)


_SI_TEXT = re.compile(r"^<si><t(?: xml:space=\"preserve\")?>(.*)</t></si>$", re.S)


def _si_text(si: str) -> str:
    mt = _SI_TEXT.match(si)
    if mt is None:
        raise Unsupported("共享字符串不是纯文本")
    return mt.group(1)


_STR_CELL = re.compile(
    r'<c r="([A-Z]+\d+)"((?: s="\d+")?)(?: t="s"><v>(\d+)</v></c>| t="inlineStr"><is><t(?: xml:space="preserve")?>(.*?)</t></is></c>)',
    re.S,
)


def _normalise_strings(xml: str, shared: list[str]) -> str:
    """Shared and inline string cells written the same way, for comparing two sheets."""

    def sub(mt: re.Match[str]) -> str:
        text = _si_text(shared[int(mt.group(3))]) if mt.group(3) is not None else mt.group(4)
        return f'<c r="{mt.group(1)}"{mt.group(2)} t="text">{text}</c>'

    return _STR_CELL.sub(sub, xml)


# ------------------------------------------------------------------ the compiled form


@dataclass
class _Slot:
    kind: str  # row | field | value | formula | text | input | prompt
    ref: str = ""
    s_attr: str = ""
    key: str = ""  # field source, input or cell name, or "ind_id:key"
    ftext: str = ""  # formula text (escaped) for formula slots
    row: int = 0
    head: str = ""  # row tag without ">" for row slots
    empty: bool = False  # row slots: the row has no cells ("/>")
    text_index: int = -1  # position in the layout's text cells (text and field slots)
    default: str = ""  # what the slot holds when nothing is filled in (input slots)


def _header_fields(form: m.Form) -> dict[str, str]:
    """Defined name -> roster field of the header cells that show a roster field."""
    out: dict[str, str] = {}
    used: dict[str, int] = {}
    for h in form.header:
        if h.source in {"q", "input", "blank"}:
            continue
        used[h.source] = used.get(h.source, 0) + 1
        name = f"hdr_{h.source}" + (f"_{used[h.source]}" if used[h.source] > 1 else "")
        if h.source not in {"period", "company"}:
            out[name] = h.source
    return out


def _column_keys(gen: FormGenerator) -> dict[str, int]:
    """Column key -> column index, as the layout arranges the table."""
    form, cf = gen.form, gen.cf
    keys = [c.key for c in form.columns]
    input_keys = layout._input_columns(form)
    if not input_keys:
        pos = next((keys.index(k) for k in ("system", "score", "weighted") if k in keys), len(keys))
        keys.insert(pos, "value")
        input_keys = ["value"]
    blocks = layout._plan_blocks(cf, keys, input_keys)
    if "input_label" not in keys and any(b.n > 1 for b in blocks):
        pos = keys.index(next(k for k in keys if k in input_keys))
        keys.insert(pos, "input_label")
    return {k: i for i, k in enumerate(keys)}


#: entries kept in the caches by text (row heights, lines of a text); frames (a form
#: sheet completed for one set of targets, ~30 KB each) are fewer, the least
#: recently used going first
_CACHE = 4096
_FRAMES = 256


class CompiledWorkbook:
    """A form template compiled for fast writing (see the module docstring).

    >>> cw = CompiledWorkbook(gen)                       # doctest: +SKIP
    >>> cw.write(employee, Path("out.xlsx"))             # doctest: +SKIP
    """

    #: zlib level of the two parts deflated per employee (6 is zip's default: ~3x the
    #: time of 1 for ~10% smaller files)
    level = 1

    def __init__(self, gen: FormGenerator, *, level: int | None = None) -> None:
        if level is not None:
            self.level = level
        self.gen = gen
        self.form, self.cf = gen.form, gen.cf
        self._secret = resolve_secret(gen.secret)
        self._state_cache: dict[tuple[str, ...], _State] = {}
        self._height_cache: dict[tuple[int, ...], dict[int, str]] = {}
        self._frame_cache: dict[tuple[tuple[str, ...], tuple[int, ...]], _Frame] = {}
        self._field_cache: dict[tuple[int, str], tuple[bytes, int, bytes]] = {}
        self._indicator_cache: dict[tuple[Any, ...], Any] = {}
        self.fallbacks = 0  # employees written with the reference writer
        try:
            self._compile()
        except Unsupported:
            raise
        except (
            ValueError,
            KeyError,
            IndexError,
            AttributeError,
            TypeError,
            zipfile.BadZipFile,
        ) as e:
            raise Unsupported(f"{type(e).__name__}: {e}") from e

    # -- compile ---------------------------------------------------------------------

    def _compile(self) -> None:
        gen, form = self.gen, self.form
        p1, p2 = _probes(form)
        with _height_inputs() as calls:
            plan1, meta1 = gen.plan(p1)
        if len(calls) != 1:
            raise Unsupported("无法取得行高估算的输入")
        self._preset, self._text_cells, self._span_width = calls[0]
        self._last_row = plan1.last_row
        self.sheet_name = plan1.sheet_name
        self._names_json = meta1["names_json"]
        data1 = gen.reference_bytes(plan1, meta1)
        plan2, meta2 = gen.plan(p2)
        data2 = gen.reference_bytes(plan2, meta2)

        with zipfile.ZipFile(io.BytesIO(data1)) as z1, zipfile.ZipFile(io.BytesIO(data2)) as z2:
            names = z1.namelist()
            if names != z2.namelist():
                raise Unsupported("不同员工的工作簿部件不同")
            parts1 = {n: z1.read(n) for n in names}
            parts2 = {n: z2.read(n) for n in names}
        sheet_part, meta_part, sst_part = (
            "xl/worksheets/sheet1.xml",
            "xl/worksheets/sheet2.xml",
            "xl/sharedStrings.xml",
        )
        for n in (sheet_part, meta_part, sst_part):
            if n not in parts1:
                raise Unsupported(f"参考工作簿中没有 {n}")
        for n in names:
            if n not in (sheet_part, meta_part, sst_part) and parts1[n] != parts2[n]:
                raise Unsupported(f"部件 {n} 因员工而不同")
        self._parts = names
        self._sheet_part, self._meta_part, self._sst_part = sheet_part, meta_part, sst_part

        shared = _sst_items(parts1[sst_part].decode("utf-8"))
        self._static_sst: list[str] = []
        self._sst_index: dict[int, int] = {}
        self._sst_refs = 0

        def static_string(old: int) -> int:
            self._sst_refs += 1
            new = self._sst_index.get(old)
            if new is None:
                new = self._sst_index[old] = len(self._static_sst)
                self._static_sst.append(shared[old])
            return new

        self._build_sheet(plan1, parts1[sheet_part].decode("utf-8"), static_string)
        self._build_meta(meta1, meta2, parts1[meta_part].decode("utf-8"), static_string)
        self._build_fingerprint(plan1, meta1)

        sst_head = parts1[sst_part].decode("utf-8").split("<si>", 1)[0]
        sst_head = re.sub(r' count="\d+"', f' count="{self._sst_refs}"', sst_head)
        sst_head = re.sub(
            r' uniqueCount="\d+"', f' uniqueCount="{len(self._static_sst)}"', sst_head
        )
        sst_xml = sst_head + "".join(self._static_sst) + "</sst>"
        static = dict(parts1)
        static[sst_part] = sst_xml.encode("utf-8")
        self._static_entries: dict[str, tuple[ZipEntry, bytes]] = {}
        for n in names:
            if n in (sheet_part, meta_part):
                continue
            e = ZipEntry.deflate(n, static[n], 9)
            self._static_entries[n] = (e, e.local())

        self._sheet_name_b = sheet_part.encode("utf-8")
        self._meta_name_b = meta_part.encode("utf-8")
        self._ref_of = {n: coord(r, c) for n, (r, c) in plan1.names.items()}
        self._prepare()
        # the proof: the second probe written here and by the reference writer
        self._verify(p2, plan2, meta2, parts2)
        # and the blank form's own path (frames, see _blank_bytes) against the general one
        if self._blank_bytes(p2) != self._general_bytes(p2, None):
            raise Unsupported("空白表的快速写法与逐格写法不同")

    def _build_sheet(self, plan: SheetPlan, xml: str, static_string: Any) -> None:
        cf, form = self.cf, self.form
        prefix, rows, suffix = _split_sheet(xml)
        header = _header_fields(form)
        ci = _column_keys(self.gen)
        slots: dict[str, _Slot] = {}
        for name, (r, c) in plan.names.items():
            ref = coord(r, c)
            cell = plan.cells[(r, c)]
            if name in cf.cell_by_name:
                slots[ref] = _Slot("formula", ref, key=name)
            elif name in cf.input_by_name and cf.input_by_name[name].spec.source == "roster":
                slots[ref] = _Slot("value", ref, key=name)
            elif name in header:
                slots[ref] = _Slot("field", ref, key=header[name])
            elif not cell.locked:
                slots[ref] = _Slot("input", ref, key=name)
        # rule texts with placeholders: the texts of the indicator's row
        self._dynamic: list[m.Indicator] = []
        self._ind_fields: dict[str, tuple[str, ...]] = {}
        for _s, ind in form.indicators():
            if "{" not in (ind.method or "") and "{" not in (ind.target_text or ""):
                continue
            self._dynamic.append(ind)
            names = placeholders(ind.method or "") | placeholders(ind.target_text or "")
            self._ind_fields[ind.id] = tuple(sorted(names - set(ind.inputs)))
            r1 = plan.names[f"score_{ind.id}"][0]
            for key in ("method", "target_text", "name"):
                if key in ci:
                    ref = coord(r1, ci[key])
                    if ref in slots:
                        raise Unsupported(f"{ref} 既是文字又是命名单元格")
                    slots[ref] = _Slot("text", ref, key=f"{ind.id}:{key}")
        by_pos = {(r1, c1): k for k, (r1, c1, *_rest) in enumerate(self._text_cells)}
        for slot in slots.values():
            if slot.kind in {"text", "field"}:
                rc = _rc(slot.ref)
                if rc not in by_pos:
                    raise Unsupported(f"{slot.ref} 的文字不在行高估算中")
                slot.text_index = by_pos[rc]

        seg: list[str] = [prefix]
        found: set[str] = set()
        self._row_slots: list[_Slot] = []
        for rnum, head, empty, cells in rows:
            r = rnum - 1
            if r <= self._last_row:
                extra = re.sub(r'^<row r="\d+"( spans="[^"]*")?', "", head)
                extra = re.sub(r' ht="[^"]*" customHeight="1"$', "", extra)
                if extra:
                    raise Unsupported(f"第 {rnum} 行有未预期的属性")
                base = re.sub(r' ht="[^"]*" customHeight="1"$', "", head)
                slot = _Slot("row", row=r, head=base, empty=bool(empty))
                if _row_tag(base, plan.heights.get(r))[:-1] != head:
                    raise Unsupported(f"第 {rnum} 行的行高写法与参考不同")
                self._row_slots.append(slot)
                seg.append(slot)  # type: ignore[arg-type]
                if empty:
                    continue
            else:
                seg.append(head + ("/>" if empty else ">"))
                if empty:
                    continue
            for ref, attrs, body in cells:
                s_attr = "".join(_S_ATTR.findall(attrs))
                slot = slots.get(ref)
                if slot is None:
                    t = _T_ATTR.search(attrs)
                    if t is not None and t.group(1) == "s":
                        mt = _SST_INDEX.match(body or "")
                        if mt is None:
                            raise Unsupported(f"{ref} 的共享字符串写法未预期")
                        new = static_string(int(mt.group(1)))
                        seg.append(f'<c r="{ref}"{s_attr} t="s"><v>{new}</v></c>')
                    else:
                        seg.append(
                            f'<c r="{ref}"{attrs}/>'
                            if body is None
                            else f'<c r="{ref}"{attrs}>{body}</c>'
                        )
                    continue
                found.add(ref)
                slot.s_attr = s_attr
                if slot.kind == "formula":
                    fm = _FORMULA_BODY.match(body or "")
                    if fm is None:
                        raise Unsupported(f"{ref} 的公式写法未预期")
                    slot.ftext = fm.group(1)
                    # the formula text is the same for everyone: only the type and the
                    # cached value are filled in
                    seg.append(f'<c r="{ref}"{s_attr}')
                    seg.append(_Slot("ftype", ref, key=slot.key))  # type: ignore[arg-type]
                    seg.append(f"><f>{slot.ftext}</f><v>")
                    seg.append(_Slot("fvalue", ref, key=slot.key))  # type: ignore[arg-type]
                    seg.append("</v></c>")
                    continue
                if slot.kind == "input":
                    if body is not None:
                        raise Unsupported(f"{ref} 填写单元格不是空的")
                    slot.default = _blank(ref, s_attr)
                seg.append(slot)  # type: ignore[arg-type]
            seg.append("</row>")
        missing = set(slots) - found
        if missing:
            raise Unsupported(f"参考工作表中找不到 {sorted(missing)[:3]}")

        # input prompts that quote a rule text with targets
        dyn_ids = {i.id for i in self._dynamic}
        at = {rc: n for n, rc in plan.names.items()}
        self._prompt_inputs: dict[int, str] = {}
        for k, v in enumerate(plan.validations):
            name = at.get((v.row, v.col))
            inp = self.cf.input_by_name.get(name or "")
            if inp is not None and inp.indicator in dyn_ids:
                self._prompt_inputs[k] = inp.name
        pieces = re.split(r"(<dataValidation [^>]*>)", suffix)
        dv_index = -1
        tail: list[str] = []
        for piece in pieces:
            if piece.startswith("<dataValidation "):
                dv_index += 1
                name = self._prompt_inputs.get(dv_index)
                if name is not None:
                    pm = re.search(r' prompt="([^"]*)"', piece)
                    if pm is None:
                        raise Unsupported("输入提示的写法未预期")
                    tail.append(piece[: pm.start(1)])
                    tail.append(_Slot("prompt", key=name))  # type: ignore[arg-type]
                    tail.append(piece[pm.end(1) :])
                    continue
            tail.append(piece)
        if dv_index + 1 != len(plan.validations):
            raise Unsupported("数据验证的数量与版面不符")
        seg.extend(tail)

        # join the static runs
        self._sheet_segments: list[Any] = []
        for piece in seg:
            if (
                isinstance(piece, str)
                and self._sheet_segments
                and isinstance(self._sheet_segments[-1], str)
            ):
                self._sheet_segments[-1] += piece
            else:
                self._sheet_segments.append(piece)
        self._slot_at = [(i, p) for i, p in enumerate(self._sheet_segments) if isinstance(p, _Slot)]
        self._formula_at = {
            p.ref: i - 1
            for i, p in enumerate(self._sheet_segments)
            if isinstance(p, _Slot) and p.kind == "ftype"
        }
        self._slots = slots

    def _build_meta(
        self, meta1: dict[str, str], meta2: dict[str, str], xml: str, static_string: Any
    ) -> None:
        start = xml.find("<sheetData>")
        end = xml.find("</sheetData>")
        dim = re.search(r'<dimension ref="[^"]*"/>', xml)
        if start < 0 or end < 0 or dim is None:
            raise Unsupported("_meta 表的 XML 不是预期的样子")
        self._meta_head = xml[: dim.start()]
        self._meta_mid = xml[dim.end() : start + len("<sheetData>")]
        self._meta_tail = xml[end:]
        self._meta_keys = [k for k in META_KEYS if k in meta1] + sorted(
            k for k in meta1 if k not in META_KEYS
        )
        dynamic = {"employee_id", "name", "department", "position", "roster_json", "fingerprint"}
        dynamic |= {k for k in meta1 if meta1.get(k) != meta2.get(k)}
        self._meta_dynamic = dynamic
        self._meta_static = {k: v for k, v in meta1.items() if k not in dynamic}
        _prefix, rows, _suffix = _split_sheet(xml)
        cells: dict[str, tuple[str, str, str | None]] = {}
        for _r, _head, _e, row_cells in rows:
            for ref, attrs, body in row_cells:
                cells[ref] = (ref, attrs, body)

        def sst_of(ref: str) -> int:
            _ref, attrs, body = cells[ref]
            mt = _SST_INDEX.match(body or "")
            if ' t="s"' not in attrs or mt is None:
                raise Unsupported(f"_meta!{ref} 不是共享字符串")
            return static_string(int(mt.group(1)))

        self._meta_cells: dict[str, str] = {}  # ref -> static cell XML
        self._meta_cells["A1"] = f'<c r="A1" t="s"><v>{sst_of("A1")}</v></c>'
        self._meta_cells["B1"] = f'<c r="B1" t="s"><v>{sst_of("B1")}</v></c>'
        for i, key in enumerate(self._meta_keys, start=2):
            self._meta_cells[f"A{i}"] = f'<c r="A{i}" t="s"><v>{sst_of(f"A{i}")}</v></c>'
            if key in dynamic:
                continue
            value = meta1[key]
            chunks = [value[j : j + CHUNK] for j in range(0, len(value), CHUNK)] or [""]
            for j, chunk in enumerate(chunks):
                if chunk:
                    ref = f"{col_letter(1 + j)}{i}"
                    self._meta_cells[ref] = f'<c r="{ref}" t="s"><v>{sst_of(ref)}</v></c>'

    def _meta_xml_generic(self, meta: Mapping[str, str], split: bool = False) -> Any:
        """The ``_meta`` sheet as XlsxWriter lays it out (``split``: as pieces, with
        (ref, key) in place of each per-employee value, for :meth:`_meta_xml`)."""
        keys = self._meta_keys
        rows: list[tuple[int, list[Any], int]] = [
            (1, [self._meta_cells["A1"], self._meta_cells["B1"]], 2)
        ]
        for i, key in enumerate(keys, start=2):
            cells: list[Any] = [self._meta_cells[f"A{i}"]]
            value = str(meta[key])
            chunks = [value[j : j + CHUNK] for j in range(0, len(value), CHUNK)] or [""]
            last = 1
            for j, chunk in enumerate(chunks):
                if not chunk:
                    continue
                ref = f"{col_letter(1 + j)}{i}"
                last = 2 + j
                if key not in self._meta_dynamic:
                    cells.append(self._meta_cells[ref])
                elif split:
                    cells.append((ref, key))
                else:
                    cells.append(_inline(ref, "", chunk))
            rows.append((i, cells, last))
        span: dict[int, int] = {}
        for r, _cells, last in rows:
            span[(r - 1) // 16] = max(span.get((r - 1) // 16, 1), last)
        out: list[Any] = [self._meta_head]
        max_col = max(span.values())
        out.append(f'<dimension ref="A1:{col_letter(max_col - 1)}{len(keys) + 1}"/>')
        out.append(self._meta_mid)
        for r, cells, _last in rows:
            out.append(f'<row r="{r}" spans="1:{span[(r - 1) // 16]}">')
            out.extend(cells)
            out.append("</row>")
        out.append(self._meta_tail)
        if not split:
            return "".join(out)
        return _join_runs(out)

    def _build_fingerprint(self, plan: SheetPlan, meta: dict[str, str]) -> None:
        """The fingerprint text as static runs and per-employee slots (see kpi_excel.meta)."""
        seg: list[Any] = [fingerprint_head(str(self.form.version))]
        for r, c in sorted(plan.cells):
            cell = plan.cells[(r, c)]
            if not cell.locked:
                continue
            ref = coord(r, c)
            slot = self._slots.get(ref)
            if slot is not None and slot.kind != "formula":
                seg.append(slot)
                continue
            line = _fp_line(ref, cell.formula if cell.formula is not None else cell.value)
            if line:
                seg.append(line)
        seg.append("[meta]\n")
        for key in sorted(k for k in meta if k != "fingerprint"):
            if key in self._meta_dynamic:
                seg.append(("meta", key))
            else:
                seg.append(meta_line(str(key), str(meta[key])))
        self._fp_segments = _join_runs(seg)

    def _fingerprint_text(self, lines: Mapping[str, str], meta: Mapping[str, str]) -> str:
        """The text the fingerprint is computed over; ``lines`` holds each slot's line."""
        out: list[str] = []
        for piece in self._fp_segments:
            if isinstance(piece, str):
                out.append(piece)
            elif isinstance(piece, tuple):
                key = piece[1]
                out.append(meta_line(str(key), str(meta[key])))
            else:
                out.append(lines[piece.ref])
        return "".join(out)

    def _verify(
        self,
        p2: Employee,
        plan2: SheetPlan,
        meta2: dict[str, str],
        parts2: dict[str, bytes],
    ) -> None:
        from kpi_excel.meta import fingerprint_text

        sheet, meta_xml, fp_text, meta = self._render(p2, None)
        if meta != meta2:
            raise Unsupported("_meta 与参考不同")
        want_fp = fingerprint_text(
            self.form.version,
            plan2.locked_cells(),
            {k: v for k, v in meta2.items() if k != "fingerprint"},
        )
        if fp_text != want_fp:
            raise Unsupported("指纹文本与参考不同")
        shared2 = _sst_items(parts2[self._sst_part].decode("utf-8"))
        mine = self._static_sst
        for got, want, part in (
            (sheet, parts2[self._sheet_part].decode("utf-8"), "sheet"),
            (meta_xml, parts2[self._meta_part].decode("utf-8"), "_meta"),
        ):
            a = _normalise_strings(got, mine)
            b = _normalise_strings(want, shared2)
            if a != b:
                i = next(
                    (k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b))
                )
                raise Unsupported(
                    f"{part} 与参考不同：…{a[max(0, i - 80) : i + 80]!r} vs …{b[max(0, i - 80) : i + 80]!r}"
                )

    # -- per employee -----------------------------------------------------------------

    def _prepare(self) -> None:
        """Lookup tables for the per-employee work (built once, after compiling)."""
        slots = list(self._slots.values())
        self._formula_slots = [s for s in slots if s.kind == "formula"]
        self._value_slots = [s for s in slots if s.kind == "value"]
        self._field_slots = [s for s in slots if s.kind == "field"]
        self._input_slots = {s.key: s for s in slots if s.kind == "input"}
        self._text_slots = [s for s in slots if s.text_index >= 0]
        self._roster_names = [i.name for i in self.cf.inputs if i.spec.source == "roster"]
        self._text_ref: dict[tuple[str, str], _Slot] = {}
        for s in slots:
            if s.kind == "text":
                ind_id, key = s.key.split(":", 1)
                self._text_ref[(ind_id, key)] = s
        self._ind_inputs = {
            i.id: [f"in_{i.id}_{k}" for k, spec in i.inputs.items() if spec.source == "roster"]
            for i in self._dynamic
        }
        self._field_names = tuple(
            sorted({f for i in self._dynamic for f in self._ind_fields[i.id]})
        )
        self._ci = _column_keys(self.gen)
        fake = {k: self._meta_static.get(k, "x") for k in self._meta_keys}
        self._meta_plain = self._meta_xml_generic(fake, split=True)
        self._sheet_plan = _plan(self._sheet_segments)
        self._meta_plan = _plan(self._meta_plain)
        # the blank form (see _blank_bytes): the sheet's deflate groups, completed per
        # targets and heights (a frame) with the header fields as its holes
        self._sheet_runs = [
            g if isinstance(g, tuple) else _run_template(g)
            for g in _groups(self._sheet_segments, self._sheet_plan)
        ]
        self._field_at = {s.ref: k for k, s in enumerate(self._field_slots)}
        self._line_src = [(s.ref, self._field_at.get(s.ref, -1)) for s in self._text_slots]
        # _meta: one frame, the employee's values (as inline strings) its holes
        self._meta_holes = [p for p in self._meta_plain if isinstance(p, tuple)]
        at = {p: k for k, p in enumerate(self._meta_holes)}
        meta_groups = [
            g
            if isinstance(g, tuple)
            else [p.encode("utf-8") if isinstance(p, str) else p for p in g]
            for g in _groups(self._meta_plain, self._meta_plan)
        ]
        self._meta_frame = _frame(meta_groups, at.__getitem__)
        # the fingerprint text: static runs encoded once; the holes are the header
        # fields' lines, then the lines of the meta values that differ per employee
        n_fields = len(self._field_slots)
        self._fp_meta_keys = [p[1] for p in self._fp_segments if isinstance(p, tuple)]
        meta_at = {k: n_fields + i for i, k in enumerate(self._fp_meta_keys)}
        self._fp_pieces: list[Any] = []
        for piece in self._fp_segments:
            if isinstance(piece, str):
                self._fp_pieces.append(piece.encode("utf-8"))
            elif isinstance(piece, tuple):
                self._fp_pieces.append(meta_at[piece[1]])
            elif piece.ref in self._field_at:
                self._fp_pieces.append(self._field_at[piece.ref])
            else:
                self._fp_pieces.append(piece)  # a line that follows the targets (_fp_state)
        self._hmac = hmac.new(self._secret, digestmod=hashlib.sha256)
        # the zip: parts as (local record, central record up to its offset, name), the
        # two sheets as 0 and 1
        self._zip_layout: list[Any] = []
        for n in self._parts:
            if n == self._sheet_part:
                self._zip_layout.append(0)
            elif n == self._meta_part:
                self._zip_layout.append(1)
            else:
                entry, local = self._static_entries[n]
                self._zip_layout.append(
                    (local, entry.central(0)[: -len(entry.name) - 4], entry.name)
                )

    def _state(self, values: Mapping[str, Decimal | None], fields: Mapping[str, str]) -> _State:
        """What depends on the targets (and the fields a rule text names), cached."""
        key = tuple("" if values.get(n) is None else str(values.get(n)) for n in self._roster_names)
        if self._field_names:
            key += tuple(fields.get(f) or "" for f in self._field_names)
        got = self._state_cache.get(key)
        if got is not None:
            return got
        env = evaluate(self.cf, dict(values))
        state = _State(self._formula_cells(env), {}, {}, {}, {}, key)
        for slot in self._value_slots:
            v = values.get(slot.key)
            state.values[slot.ref] = v
            state.fp[slot.ref] = _fp_line(slot.ref, v)
            state.xml[slot.ref] = (
                _blank(slot.ref, slot.s_attr)
                if v is None
                else _number(slot.ref, slot.s_attr, float(v))
            )
        for ind in self._dynamic:
            prompts, texts = self._indicator(ind, values, fields)
            state.prompts.update(prompts)
            for ref, text, fp, xml, lines in texts:
                state.values[ref] = text
                state.fp[ref] = fp
                state.xml[ref] = xml
                state.lines[ref] = lines
        if len(self._state_cache) > 4096:
            self._state_cache.clear()
        self._state_cache[key] = state
        return state

    def _indicator(
        self, ind: m.Indicator, values: Mapping[str, Decimal | None], fields: Mapping[str, str]
    ) -> tuple[dict[str, str], list[tuple[str, str, str, str, int]]]:
        """An indicator's prompts (:meth:`_texts`) and, for each of its text slots, (ref,
        text, fingerprint line, cell XML, lines needed); kept by what its texts use:
        its targets and the fields they name."""
        key = (
            ind.id,
            tuple(
                None if (v := values.get(n)) is None else str(v) for n in self._ind_inputs[ind.id]
            ),
            tuple(fields.get(f) for f in self._ind_fields[ind.id]),
        )
        got = self._indicator_cache.get(key)
        if got is None:
            shown, prompts = self._texts(ind, values, fields)
            texts = []
            for key_, text in shown.items():
                slot = self._text_ref.get((ind.id, key_))
                if slot is not None:
                    xml = self._text_xml(slot, text)
                    texts.append(
                        (slot.ref, text, _fp_line(slot.ref, text), xml, self._lines(slot, text))
                    )
            got = (prompts, texts)
            if len(self._indicator_cache) >= _CACHE:
                self._indicator_cache.clear()
            self._indicator_cache[key] = got
        return got

    def _formula_cells(self, env: Mapping[str, object]) -> dict[str, str]:
        """Each formula cell's cached value: type attribute at ``ref + "t"``, <v> text
        at ``ref + "v"`` (see the formula cell's pieces in :meth:`_build_sheet`)."""
        out = {}
        for s in self._formula_slots:
            t, v = _cached(cached_value(env.get(s.key)))
            out[s.ref + "t"] = t
            out[s.ref + "v"] = v
        return out

    def _text_xml(self, slot: _Slot, text: str) -> str:
        return _inline(slot.ref, slot.s_attr, text) if text else _blank(slot.ref, slot.s_attr)

    def _lines(self, slot: _Slot, text: str) -> int:
        if not text:
            return 0
        _r1, c1, _r2, c2, _t, size = self._text_cells[slot.text_index]
        return lines_needed(text, self._span_width(c1, c2), size)

    def _texts(
        self, ind: m.Indicator, values: Mapping[str, Decimal | None], fields: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """An indicator's texts as the layout shows them, and the prompts that quote its rule."""
        ctx_vals = {
            k: values.get(f"in_{ind.id}_{k}")
            for k in ind.inputs
            if ind.inputs[k].source == "roster"
        }
        gen = self.gen
        extra = {"period": gen.period.text, "company": gen.company, **dict(fields)}
        ctx = indicator_context(ind, ctx_vals, extra)
        where = f"{self.form.id}: 指标 {ind.id}"
        method = render_text(ind.method, ctx, f"{where} method")
        target_text = render_text(ind.target_text, ctx, f"{where} target_text")
        desc = layout._descriptors(ind)
        shown = {"method": method, "target_text": target_text, "name": ind.name}
        ci = self._ci
        desc_key = next((k for k in ("target_text", "method") if k in ci and not shown[k]), None)
        desc_key = desc_key or next((k for k in ("method", "target_text", "name") if k in ci), None)
        if desc and desc_key and not layout._described(ind, " ".join(shown.values())):
            shown[desc_key] = (shown[desc_key] + "\n" + desc).strip("\n")
        rule_text = layout._clip(method or target_text, 200)
        prompts = {}
        for name in self._prompt_inputs.values():
            inp = self.cf.input_by_name[name]
            if inp.indicator == ind.id:
                opts = layout._validation(inp, ind, rule_text)
                prompts[name] = _esc_attr(opts["input_message"])
        return shown, prompts

    def _heights(
        self, lines: tuple[int, ...], values: Mapping[str, object], fields: Mapping[str, str]
    ) -> dict[int, str]:
        """Row tags for texts needing ``lines`` lines (the layout's own estimate, cached):
        ``values`` holds the texts that follow the targets, ``fields`` the header's."""
        got = self._height_cache.get(lines)
        if got is not None:
            return got
        texts = {**values, **fields}
        cells: list[Any] = list(self._text_cells)
        for s in self._text_slots:
            r1, c1, r2, c2, _text, size = cells[s.text_index]
            t = texts.get(s.ref)
            cells[s.text_index] = (r1, c1, r2, c2, t, size) if t else None
        shell = SheetPlan(self.sheet_name)
        shell.heights = dict(self._preset)
        shell.last_row = self._last_row
        layout._fit_heights(shell, [c for c in cells if c is not None], self._span_width)
        got = {}
        for slot in self._row_slots:
            tag = _row_tag(slot.head, shell.heights.get(slot.row))
            got[slot.row] = tag[:-1] + "/>" if slot.empty else tag
        if len(self._height_cache) > 4096:
            self._height_cache.clear()
        self._height_cache[lines] = got
        return got

    def _render_pieces(
        self, emp: Employee, answers: Mapping[str, object] | None
    ) -> tuple[list[Any], list[Any] | str, str, dict[str, str]]:
        """The form sheet as pieces (in step with the compiled segments), the _meta
        sheet (pieces, or text), the fingerprint text and the meta of one employee."""
        values = initial_values(self.cf.inputs, emp)
        fields = emp.fields
        state = self._state(values, fields)
        xml = state.xml
        typed_over: set[str] = set()
        if answers:
            unknown = [
                n for n in answers if n not in self._input_slots and n not in self.cf.cell_by_name
            ]
            if unknown:
                raise KeyError(f"没有可填写的单元格：{', '.join(unknown)}")
            typed = {n: to_sheet_value(v) for n, v in answers.items()}
            fixed = {n: v for n, v in typed.items() if n in self.cf.cell_by_name}
            env = evaluate(self.cf, {**values, **typed}, fixed)
            xml = {**xml, **self._formula_cells(env)}
            for name, v in answers.items():
                slot = self._input_slots.get(name) or self._slots[self._ref_of[name]]
                xml[slot.ref] = _typed(slot.ref, slot.s_attr, v)
                if slot.kind == "formula":
                    typed_over.add(slot.ref)
        field_xml: dict[str, str] = {}
        field_text: dict[str, str] = {}
        for slot in self._field_slots:
            t = fields.get(slot.key, "")
            field_text[slot.ref] = t
            field_xml[slot.ref] = self._text_xml(slot, t)
        lines = tuple(
            state.lines[s.ref]
            if s.ref in state.lines
            else self._lines(s, field_text.get(s.ref, ""))
            for s in self._text_slots
        )
        rows = self._heights(lines, state.values, field_text)

        out: list[Any] = list(self._sheet_segments)
        prompts = state.prompts
        for i, slot in self._slot_at:
            kind = slot.kind
            if kind == "row":
                out[i] = rows[slot.row]
            elif kind == "field":
                out[i] = field_xml[slot.ref]
            elif kind == "prompt":
                out[i] = prompts[slot.key]
            elif kind == "input":
                out[i] = xml.get(slot.ref, slot.default)
            elif kind == "ftype":
                out[i] = xml[slot.ref + "t"]
            elif kind == "fvalue":
                out[i] = xml[slot.ref + "v"]
            else:
                out[i] = xml[slot.ref]
        for ref in typed_over:  # a value typed over a formula: the cell as typed
            i = self._formula_at[ref]
            slot = self._slots[ref]
            head = f'<c r="{ref}"{slot.s_attr}'
            assert out[i].endswith(head) and out[i + 4].startswith("</v></c>")
            out[i] = out[i][: -len(head)] + xml[ref]
            out[i + 1] = out[i + 2] = out[i + 3] = ""
            out[i + 4] = out[i + 4][len("</v></c>") :]
        if typed_over:  # the static pieces changed: the sheet is deflated whole
            out = ["".join(out)]

        meta = self.gen.meta_for(emp, self._names_json, self.sheet_name)
        for k, v in self._meta_static.items():
            if meta.get(k) != v:
                raise _NeedsReference
        fp_lines = dict(state.fp)
        for ref, t in field_text.items():
            fp_lines[ref] = _fp_line(ref, t)
        fp_text = self._fingerprint_text(fp_lines, meta)
        meta["fingerprint"] = hmac.new(
            self._secret, fp_text.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        return out, self._meta_pieces(meta), fp_text, meta

    def _meta_pieces(self, meta: Mapping[str, str]) -> list[Any] | str:
        """The ``_meta`` sheet: static rows as compiled and the employee's values inline
        (pieces in step with the compiled ones), or its whole text in odd cases."""
        plain = all(0 < len(str(meta[k])) <= CHUNK for k in self._meta_dynamic)
        if not plain:
            return self._meta_xml_generic(meta)  # type: ignore[no-any-return]
        out = list(self._meta_plain)
        for i, piece in enumerate(out):
            if isinstance(piece, tuple):
                ref, key = piece
                out[i] = _inline(ref, "", str(meta[key]))
        return out

    def _render(
        self, emp: Employee, answers: Mapping[str, object] | None
    ) -> tuple[str, str, str, dict[str, str]]:
        """(form sheet XML, _meta sheet XML, fingerprint text, meta) of one employee."""
        sheet, meta_xml, fp_text, meta = self._render_pieces(emp, answers)
        if not isinstance(meta_xml, str):
            meta_xml = "".join(meta_xml)
        return "".join(sheet), meta_xml, fp_text, meta

    @property
    def fillable(self) -> list[str]:
        """Defined names of the cells a person fills (inputs, raters, 不适用, header
        inputs, signatures and their dates): the keys ``answers`` may use besides
        typing over a formula."""
        return sorted(self._input_slots)

    def to_bytes(self, emp: Employee, answers: Mapping[str, object] | None = None) -> bytes:
        """The form of ``emp`` as .xlsx bytes. ``answers`` ({defined name: value as
        typed}) fills input cells (or types over a formula) and the cached values
        follow, as in a returned form a spreadsheet recalculated."""
        try:
            if answers:
                return self._general_bytes(emp, answers)
            return self._blank_bytes(emp)
        except _NeedsReference:
            self.fallbacks += 1
            if answers:
                raise Unsupported("此员工的表无法用快速写法填写") from None
            return self.gen.reference_to_bytes(emp)

    def _general_bytes(self, emp: Employee, answers: Mapping[str, object] | None) -> bytes:
        """The form, every slot filled in one by one (filled forms; and the check of
        :meth:`_blank_bytes` when compiling)."""
        sheet, meta_xml, _fp, _meta = self._render_pieces(emp, answers)
        entries: list[ZipEntry | tuple[ZipEntry, bytes]] = []
        for n in self._parts:
            if n == self._sheet_part:
                if len(sheet) == 1:  # (a value typed over a formula)
                    raw = sheet[0].encode("utf-8")
                    entries.append(ZipEntry.deflate(self._sheet_name_b, raw, self.level))
                else:
                    entries.append(_deflate_pieces(self._sheet_plan, sheet, self._sheet_name_b))
            elif n == self._meta_part:
                if isinstance(meta_xml, str):
                    entries.append(
                        ZipEntry.deflate(self._meta_name_b, meta_xml.encode("utf-8"), self.level)
                    )
                else:
                    entries.append(_deflate_pieces(self._meta_plan, meta_xml, self._meta_name_b))
            else:
                entries.append(self._static_entries[n])
        return zip_bytes(entries)

    # -- the blank form, per employee --------------------------------------------------
    #
    # The same bytes as _general_bytes(emp, None), with less work per employee: what
    # follows the targets (and the row heights) is completed once per frame and kept,
    # so per employee there remain the header fields, the _meta values, the
    # fingerprint and the zip records.

    def _blank_bytes(self, emp: Employee) -> bytes:
        """The blank form of ``emp`` (see the comment above)."""
        values = initial_values(self.cf.inputs, emp)
        fields = emp.fields
        state = self._state(values, fields)
        texts = [fields.get(s.key, "") for s in self._field_slots]
        done = [self._field(k, t) for k, t in enumerate(texts)]
        slines = state.lines
        lines = tuple([slines.get(ref, 0) if k < 0 else done[k][1] for ref, k in self._line_src])
        sheet = _assemble(self._sheet_frame(state, lines, texts), [d[0] for d in done])

        meta = self.gen.meta_for(emp, self._names_json, self.sheet_name)
        for k, v in self._meta_static.items():
            if meta.get(k) != v:
                raise _NeedsReference
        fp = [d[2] for d in done]
        for key in self._fp_meta_keys:
            fp.append(meta_line(str(key), str(meta[key])).encode())
        h = self._hmac.copy()
        h.update(b"".join([p if p.__class__ is bytes else fp[p] for p in self._fp_state(state)]))
        meta["fingerprint"] = h.hexdigest()

        if all(0 < len(str(meta[k])) <= CHUNK for k in self._meta_dynamic):
            cells = [_inline(ref, "", str(meta[key])).encode() for ref, key in self._meta_holes]
            meta_part = _assemble(self._meta_frame, cells)
        else:
            raw = self._meta_xml_generic(meta).encode("utf-8")
            meta_part = zlib.crc32(raw), len(raw), [zlib.compress(raw, self.level, -15)]
        return self._zip(sheet, meta_part)

    def _field(self, k: int, text: str) -> tuple[bytes, int, bytes]:
        """Header field ``k`` showing ``text``: (cell XML, lines it needs, its line of
        the fingerprint text), kept by text."""
        key = (k, text)
        got = self._field_cache.get(key)
        if got is None:
            slot = self._field_slots[k]
            got = (
                self._text_xml(slot, text).encode("utf-8"),
                self._lines(slot, text),
                _fp_line(slot.ref, text).encode("utf-8"),
            )
            if len(self._field_cache) >= _CACHE:
                self._field_cache.clear()
            self._field_cache[key] = got
        return got

    def _sheet_frame(self, state: _State, lines: tuple[int, ...], fields: list[str]) -> _Frame:
        """The form sheet completed for the targets of ``state`` and the row heights of
        ``lines`` (which ``fields``, the header fields' texts, helped make); its holes
        are the header field cells. The most recently used are kept."""
        key = (state.key, lines)
        cache = self._frame_cache
        got = cache.pop(key, None)
        if got is None:
            field_text = {s.ref: t for s, t in zip(self._field_slots, fields)}  # noqa: B905
            rows = self._heights(lines, state.values, field_text)
            field_at = self._field_at

            def fill(slot: _Slot) -> bytes | int:
                return rows[slot.row].encode() if slot.kind == "row" else field_at[slot.ref]

            got = _frame(self._state_runs(state), fill)
            if len(cache) >= _FRAMES:
                del cache[next(iter(cache))]  # the least recently used
        cache[key] = got
        return got

    def _state_runs(self, state: _State) -> list[Any]:
        """The form sheet's groups with what follows the targets filled in (bytes): a
        run without a row tag or header field is a stored block already; the row and
        field slots are left."""
        cells: dict[Any, str] = dict(state.xml)
        for name, prompt in state.prompts.items():
            cells["prompt", name] = prompt
        got: list[Any] = []
        for group in self._sheet_runs:
            if group.__class__ is tuple:
                got.append(group)
                continue
            run = [
                (p[0] % p[1](cells)).encode("utf-8") if p.__class__ is tuple else p for p in group
            ]
            if len(run) == 1 and run[0].__class__ is bytes:
                got.append((run[0], _stored(run[0])))
            else:
                got.append(run)
        return got

    def _fp_state(self, state: _State) -> list[Any]:
        """The fingerprint text's pieces with the lines of ``state`` in (bytes), the
        holes of :meth:`_blank_bytes` left as indices."""
        got = state.fp_pieces
        if got is None:
            got = state.fp_pieces = [
                state.fp[p.ref].encode("utf-8") if isinstance(p, _Slot) else p
                for p in self._fp_pieces
            ]
        return got

    def _zip(self, *parts: tuple[int, int, list[bytes]]) -> bytes:
        """The .xlsx: the static parts as compiled, ``parts`` (CRC-32, size, deflated
        data) as the form sheet and the ``_meta`` sheet (see :func:`zip_bytes`)."""
        out: list[bytes] = []
        central: list[bytes] = []
        offset = 0
        names = (self._sheet_name_b, self._meta_name_b)
        for item in self._zip_layout:
            if item.__class__ is tuple:
                local, head, name = item
                out.append(local)
                central.append(head + _OFFSET.pack(offset) + name)
                offset += len(local)
                continue
            name = names[item]
            crc, size, data = parts[item]
            n = sum(map(len, data))
            out.append(_local_head(name, crc, n, size))
            out.extend(data)
            central.append(_central_record(name, crc, n, size, offset))
            offset += _LOCAL.size + len(name) + n
        cd = b"".join(central)
        k = len(central)
        out.append(cd)
        out.append(_END.pack(b"PK\x05\x06", 0, 0, k, k, len(cd), offset, 0))
        return b"".join(out)

    def write(self, emp: Employee, path: Path, answers: Mapping[str, object] | None = None) -> Path:
        """Write the form of ``emp`` to ``path`` (see :meth:`to_bytes`)."""
        write_file(path, self.to_bytes(emp, answers))
        return Path(path)


_CREATE = (
    os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


def write_file(path: str | Path, data: bytes) -> None:
    """Create (or truncate) the file ``path`` holding ``data``: one open, write and
    close -- what :meth:`pathlib.Path.write_bytes` does (flags, mode), without its
    buffered file object and the system calls that sets up. No fsync, as before:
    ``generate_command`` makes its output folder appear whole by renaming the folder
    the files were written in, which needs no file to be on disk first."""
    fd = os.open(path, _CREATE, 0o666)
    try:
        done = os.write(fd, data)
        if done < len(data):  # a short write (a signal, a nearly full disk): go on
            view = memoryview(data)
            while done < len(data):
                done += os.write(fd, view[done:])
    finally:
        os.close(fd)


@dataclass
class _State:
    xml: dict[str, str]  # slot ref -> cell XML
    values: dict[str, object]  # slot ref -> value (for the fingerprint and heights)
    lines: dict[str, int]  # text slot ref -> lines its text needs
    prompts: dict[str, str]  # input name -> escaped prompt attribute
    fp: dict[str, str]  # slot ref -> its line of the fingerprint text
    key: tuple[str, ...] = ()  # what the state follows (see CompiledWorkbook._state)
    fp_pieces: list[Any] | None = None  # (see CompiledWorkbook._fp_state)


def _rc(ref: str) -> tuple[int, int]:
    mt = re.match(r"^([A-Z]+)(\d+)$", ref)
    assert mt is not None
    c = 0
    for ch in mt.group(1):
        c = c * 26 + ord(ch) - 64
    return int(mt.group(2)) - 1, c - 1
