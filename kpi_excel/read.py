"""Safe reading of returned workbooks: limits first, then names, ``_meta`` and values.

A returned form comes from anybody's computer, so nothing in it is trusted:

* the file size is capped before it is read; the zip container is checked before any
  part is decompressed (member count, total uncompressed size, and the compression
  ratio of large members: a "zip bomb" is refused, not unpacked);
* encrypted workbooks (an OLE container with an ``EncryptionInfo`` stream), legacy
  ``.xls``/WPS ``.et`` files and anything that is not a zip are rejected with a reason
  a person can act on;
* the XML this module parses itself (``workbook.xml``, relationships, shared strings
  and the ``_meta`` sheet) goes through :mod:`defusedxml` (no DTDs, no entities);
  openpyxl, used for formulas, also uses defusedxml when it is installed.

Cells are found by their workbook-level defined names (:attr:`Book.names`), never by
coordinates, so a form where a manager inserted rows still reads right. Cached values
come from python-calamine (fast); openpyxl gives formulas (for the fingerprint) and is
the fallback when calamine cannot read a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import Any

import defusedxml.ElementTree as SafeET

from kpi_excel.errors import FormError

__all__ = [
    "Limits",
    "DEFAULT_LIMITS",
    "UnreadableFile",
    "NameRef",
    "SheetRef",
    "Book",
    "CellError",
    "sniff",
    "check_zip",
    "open_book",
    "read_book",
    "split_ref",
    "col_letter",
]

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_MAIN_NS = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",
)


@dataclass(frozen=True)
class Limits:
    """Caps applied before anything is decompressed or parsed.

    A generated form is ~20-60 KB; a filled one saved by Excel or WPS stays well under
    1 MB. The defaults leave room for pasted pictures, and refuse the rest.
    """

    max_file_bytes: int = 25 * 1024 * 1024
    max_members: int = 2_000
    max_uncompressed: int = 200 * 1024 * 1024
    #: compression ratio allowed for members larger than ``ratio_floor`` (XML of a
    #: sheet with many styled empty cells compresses ~50x; a bomb, 1000x and more)
    max_ratio: float = 200.0
    ratio_floor: int = 1024 * 1024
    #: largest single XML part this module parses itself
    max_xml_part: int = 50 * 1024 * 1024


DEFAULT_LIMITS = Limits()


class UnreadableFile(FormError):
    """The file cannot be read safely as an .xlsx workbook; ``kind`` says why."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class CellError:
    """A spreadsheet error value (``#DIV/0!``) read from a cell."""

    code: str

    def __str__(self) -> str:
        return self.code


@dataclass(frozen=True)
class SheetRef:
    name: str
    state: str  # visible | hidden | veryHidden
    part: str  # zip member, e.g. xl/worksheets/sheet1.xml


@dataclass(frozen=True)
class NameRef:
    """A workbook-level defined name and the single cell it points at (if it does)."""

    name: str
    text: str
    sheet: str | None = None
    coord: str | None = None  # "C7", no $ signs
    row: int = 0  # 1-based
    col: int = 0  # 1-based
    problem: str | None = None

    @property
    def address(self) -> str:
        """``'Sheet'!C7`` for messages, or the raw text when it is not one cell."""
        if self.sheet is None or self.coord is None:
            return self.text
        return f"{self.sheet}!{self.coord}"


def col_letter(col: int) -> str:
    """1 -> A, 28 -> AB."""
    out = ""
    while col:
        col, rem = divmod(col - 1, 26)
        out = chr(65 + rem) + out
    return out


_CELL_RE = re.compile(r"^\$?([A-Za-z]{1,3})\$?(\d{1,7})$")


def _col_number(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def split_ref(text: str) -> tuple[str | None, str]:
    """``'My ''x'' sheet'!$C$7`` -> ("My 'x' sheet", "$C$7"); no sheet -> (None, text)."""
    text = text.strip()
    if text.startswith("="):
        text = text[1:]
    if "!" not in text:
        return None, text
    sheet, _, ref = text.rpartition("!")
    if sheet.startswith("'") and sheet.endswith("'") and len(sheet) >= 2:
        sheet = sheet[1:-1].replace("''", "'")
    return sheet, ref


def _name_ref(name: str, text: str) -> NameRef:
    sheet, ref = split_ref(text)
    if "#REF!" in text.upper():
        return NameRef(name, text, problem="名称指向的单元格已被删除（#REF!）")
    m = _CELL_RE.match(ref)
    if sheet is None or m is None:
        return NameRef(name, text, sheet, problem=f"名称不指向单个单元格（{text}）")
    col = _col_number(m.group(1))
    row = int(m.group(2))
    return NameRef(name, text, sheet, f"{m.group(1).upper()}{row}", row, col)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _attr(el: Any, local: str) -> str | None:
    for k, v in el.attrib.items():
        if _local(k) == local:
            return v
    return None


def sniff(data: bytes) -> str:
    """``zip``, ``encrypted`` (OLE with an encrypted package), ``ole`` (.xls/.et), ``empty`` or ``other``."""
    if not data:
        return "empty"
    if data.startswith(_ZIP_MAGIC):
        return "zip"
    if data.startswith(_OLE_MAGIC):
        if _ENCRYPTION_INFO in data or _ENCRYPTED_PACKAGE in data:
            return "encrypted"
        return "ole"
    return "other"


_REASONS = {
    "empty": "文件是空的（0 字节），可能没有保存完整；请重新保存后提交",
    "encrypted": "文件设置了打开密码（已加密），无法读取；请在 Excel 中去掉打开密码"
    "（文件 → 信息 → 保护工作簿 → 用密码进行加密，清空密码）后重新提交",
    "ole": "这是旧版 .xls（或 WPS .et）格式，不是下发的 .xlsx 考核表；"
    "请用下发的 .xlsx 文件填写，不要另存为其他格式",
    "other": "不是 Excel 工作簿（可能是网页、文本或图片被改了扩展名）；请提交下发的 .xlsx 考核表",
}


def check_zip(data: bytes, limits: Limits = DEFAULT_LIMITS) -> zipfile.ZipFile:
    """Open ``data`` as a zip after checking it is a workbook and not a zip bomb."""
    if len(data) > limits.max_file_bytes:
        raise UnreadableFile(
            "too_large",
            f"文件 {len(data) / 1048576:.1f} MB，超过上限 {limits.max_file_bytes / 1048576:.0f} MB；"
            "考核表不应这么大（是否粘贴了大图片？）",
        )
    kind = sniff(data)
    if kind != "zip":
        raise UnreadableFile(kind, _REASONS[kind])
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UnreadableFile(
            "bad_zip", f"文件已损坏（zip 结构无效：{e}）；请重新保存后提交"
        ) from None
    if len(infos) > limits.max_members:
        raise UnreadableFile(
            "zip_bomb", f"压缩包内有 {len(infos)} 个部件，超过上限 {limits.max_members}"
        )
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise UnreadableFile("encrypted", _REASONS["encrypted"])
        total += info.file_size
        if info.file_size > limits.ratio_floor:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise UnreadableFile(
                    "zip_bomb",
                    f"部件 {info.filename} 压缩比 {ratio:.0f}:1 异常（上限 {limits.max_ratio:.0f}:1），"
                    "疑似压缩炸弹，未解压",
                )
    if total > limits.max_uncompressed:
        raise UnreadableFile(
            "zip_bomb",
            f"解压后共 {total / 1048576:.0f} MB，超过上限 {limits.max_uncompressed / 1048576:.0f} MB，未解压",
        )
    return zf


def _read_member(zf: zipfile.ZipFile, name: str, limits: Limits) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise UnreadableFile("missing_part", f"工作簿缺少部件 {name}；文件可能已损坏") from None
    if info.file_size > limits.max_xml_part:
        raise UnreadableFile("zip_bomb", f"部件 {name} 过大（{info.file_size / 1048576:.0f} MB）")
    try:
        with zf.open(info) as fh:
            out = fh.read(limits.max_xml_part + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise UnreadableFile("bad_zip", f"部件 {name} 无法解压（{e}）；文件可能已损坏") from None
    if len(out) > limits.max_xml_part:  # pragma: no cover - the header lied about the size
        raise UnreadableFile("zip_bomb", f"部件 {name} 实际大小超过声明，疑似伪造")
    return out


def _parse_xml(zf: zipfile.ZipFile, name: str, limits: Limits) -> Any:
    raw = _read_member(zf, name, limits)
    try:
        return SafeET.fromstring(raw)
    except SafeET.ParseError as e:
        raise UnreadableFile(
            "bad_xml", f"部件 {name} 不是有效的 XML（{e}）；文件可能已损坏"
        ) from None
    except Exception as e:  # defusedxml's DTD/entity refusals
        raise UnreadableFile(
            "bad_xml", f"部件 {name} 含有不允许的 XML 结构（{type(e).__name__}），拒绝读取"
        ) from None


def _resolve(base: str, target: str) -> str:
    if target.startswith("/"):
        return target.lstrip("/")
    parts: list[str] = []
    for p in (str(PurePosixPath(base).parent) + "/" + target).split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if parts:
                parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)


def _rels(zf: zipfile.ZipFile, part: str, limits: Limits) -> dict[str, tuple[str, str]]:
    """Relationships of ``part``: Id -> (type suffix, resolved target)."""
    p = PurePosixPath(part)
    rels_name = str(p.parent / "_rels" / (p.name + ".rels")).lstrip("./")
    if rels_name not in zf.namelist():
        return {}
    root = _parse_xml(zf, rels_name, limits)
    out: dict[str, tuple[str, str]] = {}
    for el in root:
        if _local(el.tag) != "Relationship":
            continue
        rid, typ, target = el.get("Id"), el.get("Type", ""), el.get("Target", "")
        if rid and el.get("TargetMode") != "External":
            out[rid] = (typ.rsplit("/", 1)[-1], _resolve(part, target))
    return out


def _number_text(v: str) -> object:
    try:
        d = Decimal(v)
    except InvalidOperation:
        return v
    if d == d.to_integral_value() and abs(d) < 10**15 and "." not in v and "E" not in v.upper():
        return int(d)
    return float(v)


class SheetCells:
    """A sheet's cells read once by openpyxl: ``iter_rows()`` as a worksheet has it (so
    :func:`kpi_excel.meta.locked_cells_from_openpyxl` takes it), and ``value(coord)``."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows
        self._by: dict[str, Any] = {}
        for row in rows:
            for cell in row:
                coord = getattr(cell, "coordinate", None)
                if coord is not None and cell.value is not None:
                    self._by[coord] = cell.value

    def iter_rows(self) -> Iterable[tuple[Any, ...]]:
        return iter(self.rows)

    def value(self, coord: str) -> Any:
        return self._by.get(coord)


@dataclass
class Book:
    """A returned workbook, opened safely. Nothing here modifies the file."""

    source: str
    data: bytes = field(repr=False)
    sha256: str
    zf: zipfile.ZipFile = field(repr=False)
    workbook_part: str
    sheets: list[SheetRef]
    names: dict[str, NameRef]
    has_vba: bool
    path: Path | None = None
    limits: Limits = field(default_factory=Limits)
    _shared: list[str] | None = field(default=None, repr=False)
    _grids: dict[str, list[list[Any]]] = field(default_factory=dict, repr=False)
    _calamine: Any = field(default=None, repr=False)
    _openpyxl: Any = field(default=None, repr=False)
    _sheets: dict[str, SheetCells] = field(default_factory=dict, repr=False)
    _xml_cells: dict[str, dict[str, tuple[object, str | None]]] = field(
        default_factory=dict, repr=False
    )
    value_engine: str = "calamine"

    # -- structure -------------------------------------------------------------------

    def sheet(self, name: str) -> SheetRef | None:
        for s in self.sheets:
            if s.name == name:
                return s
        return None

    def shared_strings(self) -> list[str]:
        if self._shared is None:
            self._shared = []
            rels = _rels(self.zf, self.workbook_part, self.limits)
            part = next((t for typ, t in rels.values() if typ == "sharedStrings"), None)
            if part and part in self.zf.namelist():
                root = _parse_xml(self.zf, part, self.limits)
                for si in root:
                    if _local(si.tag) != "si":
                        continue
                    # plain <t>, or rich-text runs <r><t>; phonetic hints (<rPh>) are not text
                    texts = []
                    for el in si:
                        tag = _local(el.tag)
                        if tag == "t":
                            texts.append(el.text or "")
                        elif tag == "r":
                            texts += [t.text or "" for t in el if _local(t.tag) == "t"]
                    self._shared.append("".join(texts))
        return self._shared

    def xml_cells(self, sheet: str) -> dict[str, tuple[object, str | None]]:
        """Every cell of a sheet from its XML: coord -> (cached value, formula text).

        Values: str, int/float, bool, :class:`CellError`, or None. Used for ``_meta``
        and as the fallback where calamine cannot tell an error from an empty text.
        """
        if sheet in self._xml_cells:
            return self._xml_cells[sheet]
        ref = self.sheet(sheet)
        if ref is None:
            return {}
        root = _parse_xml(self.zf, ref.part, self.limits)
        shared = None
        out: dict[str, tuple[object, str | None]] = {}
        row_no = 0
        for row in root.iter():
            if _local(row.tag) != "row":
                continue
            row_no = int(row.get("r") or row_no + 1)
            col_no = 0
            for c in row:
                if _local(c.tag) != "c":
                    continue
                r = c.get("r")
                if r:
                    m = _CELL_RE.match(r)
                    col_no = _col_number(m.group(1)) if m else col_no + 1
                else:
                    col_no += 1
                coord = f"{col_letter(col_no)}{row_no}"
                t = c.get("t", "n")
                v_text: str | None = None
                f_text: str | None = None
                inline: list[str] = []
                for el in c:
                    tag = _local(el.tag)
                    if tag == "v":
                        v_text = el.text or ""
                    elif tag == "f":
                        f_text = el.text or ""
                    elif tag == "is":
                        inline += [t_el.text or "" for t_el in el.iter() if _local(t_el.tag) == "t"]
                value: object
                if t == "s":
                    if shared is None:
                        shared = self.shared_strings()
                    try:
                        value = shared[int(v_text or "")]
                    except (ValueError, IndexError):
                        value = None
                elif t == "inlineStr":
                    value = "".join(inline)
                elif t == "str":
                    value = v_text or ""
                elif t == "b":
                    value = (v_text or "").strip() in ("1", "true")
                elif t == "e":
                    value = CellError(v_text or "#VALUE!")
                elif v_text is None or v_text == "":
                    value = "" if f_text is not None else None
                else:
                    value = _number_text(v_text)
                out[coord] = (value, f_text)
        self._xml_cells[sheet] = out
        return out

    # -- _meta ------------------------------------------------------------------------

    def meta(self, sheet: str = "_meta") -> dict[str, str]:
        """The key/value rows of the hidden meta sheet ({} when there is none).

        Row 1 is a header; a value continued over columns C, D, … is joined. Numbers
        come back as their canonical text, as :func:`kpi_excel.meta.read_meta` does.
        """
        from kpi_excel.meta import canonical

        cells = self.xml_cells(sheet)
        rows: dict[int, dict[int, object]] = {}
        for coord, (value, _f) in cells.items():
            m = _CELL_RE.match(coord)
            assert m is not None
            rows.setdefault(int(m.group(2)), {})[_col_number(m.group(1))] = value
        out: dict[str, str] = {}
        for r in sorted(rows):
            if r == 1:
                continue
            row = rows[r]
            key = row.get(1)
            if key is None or key == "":
                continue
            parts = []
            for c in sorted(k for k in row if k > 1):
                v = row[c]
                if v is None:
                    continue
                parts.append(
                    v
                    if isinstance(v, str)
                    else canonical(str(v) if isinstance(v, CellError) else v)
                )
            out[str(key) if isinstance(key, str) else canonical(key)] = "".join(parts)
        return out

    # -- values ---------------------------------------------------------------------------

    def _grid(self, sheet: str) -> list[list[Any]]:
        if sheet in self._grids:
            return self._grids[sheet]
        grid: list[list[Any]]
        try:
            import python_calamine

            if self._calamine is None:
                if self.path is not None:
                    self._calamine = python_calamine.CalamineWorkbook.from_path(str(self.path))
                else:
                    self._calamine = python_calamine.CalamineWorkbook.from_filelike(
                        io.BytesIO(self.data)
                    )
            grid = self._calamine.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
        except Exception:  # calamine refused the file: openpyxl reads cached values too
            self.value_engine = "openpyxl"
            grid = self._grid_openpyxl(sheet)
        self._grids[sheet] = grid
        return grid

    def _grid_openpyxl(self, sheet: str) -> list[list[Any]]:
        import openpyxl

        wb = openpyxl.load_workbook(io.BytesIO(self.data), data_only=True, read_only=True)
        try:
            ws = wb[sheet]
            grid = [["" if v is None else v for v in row] for row in ws.iter_rows(values_only=True)]
        finally:
            wb.close()
        return grid

    def value(self, name: str) -> object:
        """Cached value of the cell a defined name points at.

        Returns None for a blank cell, "" for a formula that yields empty text, a
        :class:`CellError` for an error value, otherwise float/int/str/bool/date.
        Raises KeyError when the name is missing or not a single cell.
        """
        ref = self.names[name]
        if ref.problem or ref.sheet is None:
            raise KeyError(name)
        return self.cell(ref.sheet, ref.row, ref.col)

    def cell(self, sheet: str, row: int, col: int) -> object:
        grid = self._grid(sheet)
        v: object = None
        if 0 < row <= len(grid) and 0 < col <= len(grid[row - 1]):
            v = grid[row - 1][col - 1]
        if v == "" or v is None:
            # calamine shows errors, empty formula results and blanks all as "":
            # the XML tells them apart
            xv, f = self.xml_cells(sheet).get(f"{col_letter(col)}{row}", (None, None))
            if isinstance(xv, CellError):
                return xv
            return "" if f is not None else None
        return v

    # -- formulas (openpyxl) ----------------------------------------------------------------

    def openpyxl(self) -> Any:
        """The workbook loaded by openpyxl in read-only mode, with formulas (not cached values).

        Read-only mode is ~3x faster: it skips binding merged cells, which is most of
        openpyxl's time on a form. Use :meth:`sheet_cells` for the cells of a sheet.
        """
        if self._openpyxl is None:
            import openpyxl

            try:
                self._openpyxl = openpyxl.load_workbook(
                    io.BytesIO(self.data), data_only=False, keep_vba=False, read_only=True
                )
            except Exception as e:  # openpyxl raises many kinds on odd files
                raise UnreadableFile(
                    "bad_workbook", f"openpyxl 无法读取此工作簿（{type(e).__name__}: {e}）"
                ) from None
        return self._openpyxl

    def sheet_cells(self, sheet: str) -> SheetCells:
        """All cells of a sheet as openpyxl reads them (formulas as ``=…`` text), once."""
        got = self._sheets.get(sheet)
        if got is None:
            ws = self.openpyxl()[sheet]
            ws.reset_dimensions()  # some writers record a wrong <dimension>: read every row
            got = SheetCells([tuple(r) for r in ws.iter_rows()])
            self._sheets[sheet] = got
        return got

    def close(self) -> None:
        if self._calamine is not None:
            with contextlib.suppress(Exception):  # already closed
                self._calamine.close()
            self._calamine = None
        if self._openpyxl is not None:
            self._openpyxl.close()
            self._openpyxl = None
        self.zf.close()


def open_book(
    data: bytes, source: str, *, limits: Limits = DEFAULT_LIMITS, path: Path | None = None
) -> Book:
    """Check ``data`` and read its structure (sheets, defined names); values lazily."""
    zf = check_zip(data, limits)
    names = set(zf.namelist())
    workbook_part = "xl/workbook.xml"
    for _rid, (typ, target) in _rels(zf, "", limits).items():
        if typ == "officeDocument":
            workbook_part = target
    resave = "请在 Excel 中“另存为 → Excel 工作簿(*.xlsx)”后重新提交，或直接用下发的原表填写"
    if workbook_part.endswith(".bin"):
        raise UnreadableFile(
            "xlsb", f"这是二进制工作簿（.xlsb），不是下发的 .xlsx 考核表；{resave}"
        )
    if "content.xml" in names and "mimetype" in names:
        raise UnreadableFile(
            "ods", f"这是 OpenDocument 表格（.ods，WPS/LibreOffice 另存的格式）；{resave}"
        )
    if workbook_part not in names:
        if "EncryptedPackage" in names or "EncryptionInfo" in names:
            raise UnreadableFile("encrypted", _REASONS["encrypted"])
        raise UnreadableFile(
            "missing_part", "不是 Excel .xlsx 工作簿（缺少 workbook.xml）；请提交下发的考核表"
        )
    root = _parse_xml(zf, workbook_part, limits)
    if root.tag.startswith("{" + _MAIN_NS[1]):
        raise UnreadableFile(
            "strict_xml", f"这是“严格 Open XML”格式的工作簿，无法可靠读取其中的公式；{resave}"
        )
    if _local(root.tag) != "workbook" or not root.tag.startswith("{" + _MAIN_NS[0]):
        raise UnreadableFile("not_xlsx", "workbook.xml 不是电子表格工作簿")
    rels = _rels(zf, workbook_part, limits)
    sheets: list[SheetRef] = []
    sheet_names: list[str] = []
    defined: dict[str, NameRef] = {}
    for el in root.iter():
        tag = _local(el.tag)
        if tag == "sheet":
            rid = _attr(el, "id") or ""
            name = el.get("name") or ""
            sheet_names.append(name)
            typ, part = rels.get(rid, ("", ""))
            if typ == "worksheet":
                sheets.append(SheetRef(name, el.get("state", "visible"), part))
        elif tag == "definedName":
            name = el.get("name") or ""
            if el.get("localSheetId") is not None or name.startswith("_xlnm."):
                continue  # sheet-scoped names and print areas are not ours
            defined[name] = _name_ref(name, el.text or "")
    return Book(
        source=source,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        zf=zf,
        workbook_part=workbook_part,
        sheets=sheets,
        names=defined,
        has_vba=any(n.lower().endswith("vbaproject.bin") for n in names),
        path=path,
        limits=limits,
    )


def read_book(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> Book:
    """Open a workbook file: the size is checked before the file is read."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise UnreadableFile(
            "too_large",
            f"文件 {size / 1048576:.1f} MB，超过上限 {limits.max_file_bytes / 1048576:.0f} MB",
        )
    data = path.read_bytes()
    return open_book(data, str(path), limits=limits, path=path)


def names_at(book: Book, names: Iterable[str]) -> dict[str, NameRef]:
    """The subset of ``names`` defined in ``book`` (missing ones left out)."""
    return {n: book.names[n] for n in names if n in book.names}
