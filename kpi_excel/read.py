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

:func:`gate` is the one check every returned file passes before any parser sees it
(openpyxl, python-calamine or this module): size, sniffing, the zip container (member
count, sizes, ratio, compression methods, duplicate part names, sizes that lie), the
file format (.xlsb, .ods, Word, Strict Open XML), the prolog of every XML part
(python-calamine and openpyxl parse XML themselves: a part that declares a DOCTYPE or
an entity -- billion laughs, external entities -- is refused here, before they read
it; legitimate OOXML never has a DOCTYPE), and the used area of every worksheet
(python-calamine allocates the area from A1 to the farthest cell at once: one value
in XFD1048576 would abort the process). :func:`open_book` calls it.

Cells are found by their workbook-level defined names (:attr:`Book.names`), never by
coordinates, so a form where a manager inserted rows still reads right. Cached values
come from python-calamine (fast); openpyxl gives formulas (for the fingerprint) and is
the fallback when calamine cannot read a file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable
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
    "Package",
    "gate",
    "open_book",
    "read_book",
    "read_regular",
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
    #: all XML parts together (openpyxl parses ~5-10 MB of XML a second: this bounds
    #: the time one file can take; a filled form has ~0.1-0.3 MB)
    max_xml_total: int = 64 * 1024 * 1024
    #: cells from A1 to the farthest value of a worksheet (rows x columns); a form
    #: uses a few thousand, python-calamine allocates all of them at once
    max_cells: int = 2_000_000


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

    @functools.cached_property  # names are shared by every form of a workbook.xml
    def address(self) -> str:
        """``'Sheet'!C7`` for messages, or the raw text when it is not one cell."""
        if self.sheet is None or self.coord is None:
            return self.text
        return f"{self.sheet}!{self.coord}"


def xml_value(
    t: str, v: str | None, f: str | None, inline: str, shared: Callable[[], list[str]]
) -> object:
    """A cell's value as the sheet XML gives it: type ``t``, the ``<v>`` text, the
    formula text, the text of ``<is>``; ``shared`` gives the shared strings (asked for
    only by a shared-string cell). :meth:`Book.xml_cells` and the fast reader both
    answer through this."""
    if t == "s":
        try:
            return shared()[int(v or "")]
        except (ValueError, IndexError):
            return None
    if t == "inlineStr":
        return inline
    if t == "str":
        return v or ""
    if t == "b":
        return (v or "").strip() in ("1", "true")
    if t == "e":
        return CellError(v or "#VALUE!")
    if v is None or v == "":
        return "" if f is not None else None
    return _number_text(v)


def meta_text(value: object) -> str:
    """A ``_meta`` cell's value as text: numbers (a spreadsheet may have stored a value
    as one) as their canonical text, as :func:`kpi_excel.meta.read_meta` reads them."""
    if isinstance(value, str):
        return value
    from kpi_excel.meta import canonical

    return canonical(str(value) if isinstance(value, CellError) else value)


@functools.lru_cache(maxsize=65536)  # the same coordinates, file after file
def _row_col(coord: str) -> tuple[int, int]:
    """(row, column) of a cell reference such as ``B7`` (1-based)."""
    m = _CELL_RE.match(coord)
    assert m is not None
    return int(m.group(2)), _col_number(m.group(1))


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


@functools.lru_cache(maxsize=16384)  # pure; every form of a template has the same names
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
_RESAVE = "请在 Excel 中“另存为 → Excel 工作簿(*.xlsx)”后重新提交，或直接用下发的原表填写"
_SUBMIT = "请提交下发的 .xlsx 考核表"


def _utf16(name: str) -> bytes:
    return name.encode("utf-16-le")


def _ole_reason(data: bytes) -> str:
    """What an OLE compound file (not encrypted) most likely is, by its stream names."""
    if _utf16("WordDocument") in data:
        return f"这是旧版 Word 文档（.doc），不是 Excel 工作簿；{_SUBMIT}"
    if _utf16("PowerPoint Document") in data:
        return f"这是旧版 PowerPoint 文件（.ppt），不是 Excel 工作簿；{_SUBMIT}"
    if _utf16("Workbook") in data or _utf16("Book") in data:
        return _REASONS["ole"]
    return (
        f"这是旧版 Office 复合文档（可能是 .xls/.et/.doc 等），不是下发的 .xlsx 考核表；{_SUBMIT}"
    )


def _text_of(head: bytes) -> str | None:
    """``head`` as text when it reads as text (UTF-8/GBK/UTF-16), else None."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head[2 : len(head) - (len(head) % 2)].decode(
            "utf-16-le" if head[:1] == b"\xff" else "utf-16-be", "ignore"
        )
    body = head.removeprefix(b"\xef\xbb\xbf")
    for enc in ("utf-8", "gb18030"):
        try:
            text = body.decode(enc)
        except UnicodeDecodeError:
            # the head may end inside a multi-byte character
            try:
                text = body[:-3].decode(enc)
            except UnicodeDecodeError:
                continue
        printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
        if text and printable >= 0.95 * len(text):
            return text
    return None


def _other_reason(data: bytes) -> str:
    """A reason naming what a non-workbook file really is (renamed to .xlsx)."""
    head = data[:4096]
    if head.startswith(b"%PDF"):
        return f"这是 PDF 文件，不是 Excel 工作簿；{_SUBMIT}（不要打印成 PDF 或截图）"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    ):
        return f"这是图片（截图或照片），不是 Excel 工作簿；{_SUBMIT}"
    if head.startswith(b"{\\rtf"):
        return f"这是 RTF 文档，不是 Excel 工作簿；{_SUBMIT}"
    if head.startswith((b"Rar!", b"7z\xbc\xaf", b"\x1f\x8b")):
        return "这是压缩包（rar/7z/gz），不是 Excel 工作簿；请解压后提交其中的 .xlsx 考核表，或打包为 .zip"
    text = _text_of(head)
    if text is None:
        return f"不是 Excel 工作簿（无法识别的文件内容）；{_SUBMIT}"
    low = text.lstrip().lower()
    if low.startswith("mime-version:") or "content-location:" in low[:2000]:
        return f"这是“单个文件网页”（.mht），不是 Excel 工作簿；{_RESAVE}"
    if "urn:schemas-microsoft-com:office:spreadsheet" in low or "excel.sheet" in low[:300]:
        return f"这是 Excel 2003 XML 表格，不是下发的 .xlsx 考核表；{_RESAVE}"
    if any(t in low for t in ("<html", "<!doctype html", "<table", "<body", "<head", "<meta")):
        return (
            "这是网页（HTML）文件被改成了 .xlsx 扩展名（一些系统“导出 Excel”实际生成的是网页）；"
            f"{_RESAVE}"
        )
    if low.startswith("<?xml") or low.startswith("<"):
        return f"这是 XML 文本文件，不是 Excel 工作簿；{_SUBMIT}"
    lines = [ln for ln in text.splitlines() if ln.strip()][:5]
    if lines and all(("," in ln or "\t" in ln or "，" in ln) for ln in lines):
        return (
            "这是文本/CSV 文件（逗号或制表符分隔的文字），不是 Excel 工作簿，"
            f"表内公式和校验都已丢失；{_SUBMIT}"
        )
    return f"这是文本文件，不是 Excel 工作簿；{_SUBMIT}"


def _reason(kind: str, data: bytes) -> str:
    if kind == "other":
        return _other_reason(data)
    if kind == "ole":
        return _ole_reason(data)
    return _REASONS[kind]


def _too_large(size: int, limits: Limits) -> UnreadableFile:
    return UnreadableFile(
        "too_large",
        f"文件 {size / 1048576:.1f} MB，超过上限 {limits.max_file_bytes / 1048576:.0f} MB；"
        "考核表不应这么大（是否粘贴了大图片？）",
    )


#: the attributes zipfile's directory reader gives each ZipInfo (Python 3.10 and 3.11):
#: ``kpi_excel._speedups.zip_directory`` gives exactly these, so it is used only where
#: ZipInfo has exactly these slots (and paths use "/", as zipfile's names do)
_ZIPINFO_SLOTS = (
    "orig_filename", "filename", "date_time", "compress_type", "_compresslevel",
    "comment", "extra", "create_system", "create_version", "extract_version",
    "reserved", "flag_bits", "volume", "internal_attr", "external_attr",
    "header_offset", "CRC", "compress_size", "file_size", "_raw_time",
)  # fmt: skip

_zip_directory: Callable[[bytes, type], tuple[int, list[Any]] | None] | None
try:
    from kpi_excel import _speedups

    _zip_directory = _speedups.zip_directory
except ImportError:  # pragma: no cover - not built here
    _zip_directory = None
if getattr(zipfile.ZipInfo, "__slots__", None) != _ZIPINFO_SLOTS or os.sep != "/":
    _zip_directory = None  # pragma: no cover - another Python's zipfile: its own reader


class _Zip(zipfile.ZipFile):
    """A :class:`zipfile.ZipFile` read from bytes whose central directory, when the
    file is plainly written, is read in C (``kpi_excel._speedups.zip_directory``: the
    same ZipInfo objects, ~3x quicker); anything else is read by zipfile itself.
    ``tests/test_zipdir.py`` compares both on plain, unusual and damaged files."""

    def _RealGetContents(self) -> None:  # noqa: N802 - zipfile's name
        fp = self.fp
        got = None
        if _zip_directory is not None and isinstance(fp, io.BytesIO) and not self.debug:
            got = _zip_directory(fp.getvalue(), zipfile.ZipInfo)
        if got is None:
            super()._RealGetContents()  # type: ignore[misc]
            return
        self._comment = b""
        self.start_dir, infos = got
        for x in infos:
            self.filelist.append(x)
            self.NameToInfo[x.filename] = x


def open_zip(data: bytes) -> zipfile.ZipFile:
    """``zipfile.ZipFile(io.BytesIO(data))``, its directory read in C when plain."""
    return _Zip(io.BytesIO(data))


def check_zip(
    data: bytes, limits: Limits = DEFAULT_LIMITS, *, workbook: bool = True
) -> zipfile.ZipFile:
    """Open ``data`` as a zip after checking it is a workbook and not a zip bomb.

    The container only: size, sniffing, member count, declared sizes and compression
    ratio. ``workbook=False`` is for archives of returned files (.zip inputs): their
    members may be encrypted or use other compression methods, which is reported per
    member. A workbook must also pass :func:`gate` before a parser reads it.
    """
    if len(data) > limits.max_file_bytes:
        raise _too_large(len(data), limits)
    kind = sniff(data)
    if kind != "zip":
        raise UnreadableFile(kind, _reason(kind, data))
    try:
        zf = open_zip(data)
        infos = zf.infolist()
        zf._checked_bytes = data  # type: ignore[attr-defined]  # for _member_key
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise UnreadableFile(
            "bad_zip", f"文件已损坏（zip 结构无效：{e}）；可能没有下载或保存完整，请重新保存后提交"
        ) from None
    if len(infos) > limits.max_members:
        raise UnreadableFile(
            "zip_bomb", f"压缩包内有 {len(infos)} 个部件，超过上限 {limits.max_members}"
        )
    total = 0
    for info in infos:
        if workbook and info.flag_bits & 0x1:
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


# ------------------------------------------------------------------------ the gate

#: deflate expands at most ~1032:1; anything a zip member can produce is below this
_DEFLATE_MAX_RATIO = 1032
_XML_SUFFIXES = (".xml", ".rels", ".vml")
_ENCODINGS_OK = {
    "utf-8", "utf8", "utf-16", "utf16", "utf-16le", "utf-16be", "us-ascii", "ascii",
    "iso-8859-1", "iso8859-1", "latin-1", "latin1", "windows-1252", "cp1252",
    "gbk", "gb2312", "gb18030",
}  # fmt: skip
_DECL_ENCODING = re.compile(r"""encoding\s*=\s*["']([^"']*)["']""")
_MORE, _NOT_XML = object(), object()


def _is_xml_name(name: str) -> bool:
    low = name.lower()
    return low.endswith(_XML_SUFFIXES) or low == "[content_types].xml"


def _member_bytes(data: bytes, info: zipfile.ZipInfo) -> memoryview:
    """The stored (compressed) bytes of a member, located through its local header."""
    off = info.header_offset
    if off < 0 or off + 30 > len(data) or data[off : off + 4] != b"PK\x03\x04":
        raise UnreadableFile(
            "bad_zip", f"部件 {info.filename} 的位置信息无效：文件被截断或已损坏；请重新保存后提交"
        )
    n, m = struct.unpack_from("<HH", data, off + 26)
    start = off + 30 + n + m
    end = start + info.compress_size
    if end > len(data):
        raise UnreadableFile(
            "bad_zip",
            f"部件 {info.filename} 不完整：文件被截断（可能没有下载完整）；请重新保存后提交",
        )
    return memoryview(data)[start:end]


def _inflate(data: bytes, info: zipfile.ZipInfo, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of a member's content, and whether that is all of it."""
    raw = _member_bytes(data, info)
    if info.compress_type == zipfile.ZIP_STORED:
        return bytes(raw[:limit]), len(raw) <= limit
    d = zlib.decompressobj(-15)
    try:
        out = d.decompress(raw, limit)
    except zlib.error as e:
        raise UnreadableFile(
            "bad_zip", f"部件 {info.filename} 无法解压（{e}）：文件已损坏；请重新保存后提交"
        ) from None
    return out, d.eof or len(out) < limit


def _prolog(head: bytes, complete: bool) -> object:
    """Scan an XML part's prolog (before the root element) in ``head``.

    Returns None (clean: the root element starts), a problem (str), ``_MORE`` (the
    prolog goes on past ``head``) or ``_NOT_XML``. A DTD, and so any ENTITY
    declaration, can only stand in the prolog: a part whose root element is reached
    without one cannot define an entity.
    """
    if head[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\x00<", b"<\x00\x00\x00"):
        return "使用了 UTF-32 编码（Excel、WPS、LibreOffice 都不使用）"
    if head[:4] == b"\x4c\x6f\xa7\x94":
        return "使用了 EBCDIC 编码（Excel、WPS、LibreOffice 都不使用）"
    even = head[: len(head) - (len(head) % 2)]
    if head[:2] == b"\xfe\xff" or head[:1] == b"\x00":
        text = even.decode("utf-16-be", "ignore").lstrip("\ufeff")
    elif head[:2] == b"\xff\xfe" or head[1:2] == b"\x00":
        text = even.decode("utf-16-le", "ignore").lstrip("\ufeff")
    else:
        text = head.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    i, n, first = 0, len(text), True
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            return None if complete else _MORE
        if text[i] != "<":
            return _NOT_XML if first else "根元素之前有多余的文字"
        first = False
        if not complete and n - i < 4 and "<!--".startswith(text[i:]):
            return _MORE  # cut in the middle of "<!--"
        if text.startswith("<?", i):
            j = text.find("?>", i + 2)
            if j < 0:
                return None if complete else _MORE
            pi = text[i + 2 : j]
            if pi[:3].lower() == "xml" and (len(pi) == 3 or pi[3] in " \t\r\n"):
                enc = _DECL_ENCODING.search(pi)
                if enc and enc.group(1).strip().lower() not in _ENCODINGS_OK:
                    return f"声明了不支持的字符编码“{enc.group(1)[:20]}”"
            i = j + 2
            continue
        if text.startswith("<!--", i):
            j = text.find("-->", i + 4)
            if j < 0:
                return None if complete else _MORE
            i = j + 3
            continue
        if text.startswith("<!", i):
            return "含有 DOCTYPE/ENTITY 声明"
        return None


def _check_prolog(
    data: bytes,
    info: zipfile.ZipInfo,
    limits: Limits,
    key: bytes | None = None,
    whole: _Whole | None = None,
) -> None:
    if key is not None and (key, limits.max_xml_part) in _PROLOG_OK:
        return  # the same bytes passed before
    _check_prolog_now(data, info, limits, whole)
    if key is not None:
        if len(_PROLOG_OK) >= 4096:
            _PROLOG_OK.clear()
        _PROLOG_OK.add((key, limits.max_xml_part))


#: deflated XML parts up to this size have their prolog checked on their whole
#: content, inflated once and kept for the gate's later reads (:func:`_check_area`),
#: up to this many bytes a file (a form's parts come to well under 1 MB; a file of
#: many parts that are never read is not inflated whole beyond it)
_WHOLE_MAX = 1 << 20
_WHOLE_BUDGET = 8 << 20


@dataclass
class _Whole:
    """XML parts :func:`_check_prolog_now` inflated whole, by name, and how many more
    bytes it may inflate so."""

    parts: dict[str, tuple[zipfile.ZipInfo, bytes]] = field(default_factory=dict)
    left: int = _WHOLE_BUDGET


def _wholeable(info: zipfile.ZipInfo, whole: _Whole) -> bool:
    """Whether a member is a deflated XML part to inflate whole (within the budget)."""
    return (
        info.compress_type == zipfile.ZIP_DEFLATED
        and info.file_size <= min(_WHOLE_MAX, whole.left)
        and _is_xml_name(info.filename)
    )


def _inflate_whole(data: bytes, info: zipfile.ZipInfo) -> bytes | None:
    """What ``_inflate(data, info, info.file_size + 1)`` gives of a deflated member,
    when that is no more than its declared size; else None (it is larger, or does not
    inflate: said where the content is read, which inflates it the same way)."""
    raw = _member_bytes(data, info)
    try:
        out = zlib.decompressobj(-15).decompress(raw, info.file_size + 1)
    except zlib.error:
        return None
    return out if len(out) <= info.file_size else None


def _check_prolog_now(
    data: bytes,
    info: zipfile.ZipInfo,
    limits: Limits,
    whole: _Whole | None = None,
) -> None:
    """Check a member's prolog. With ``whole``, a deflated XML part of at most
    :data:`_WHOLE_MAX` bytes (while ``whole.left`` allows) is inflated whole, once: its
    prolog is read from that content (each head exactly what inflating that many
    bytes gives, and complete exactly when it is), and the content is kept in
    ``whole.parts`` by the part's name."""
    full = None
    kept = whole.parts.get(info.filename) if whole is not None else None
    if kept is not None and kept[0] is info:
        full = kept[1]  # inflated whole already (the gate's size check)
    elif whole is not None and _wholeable(info, whole):
        whole.left -= info.file_size
        full = _inflate_whole(data, info)
        if full is not None:
            whole.parts[info.filename] = (info, full)
    n = 1024
    while True:
        if full is not None and len(full) != n:
            # inflating n bytes of a stream that ends gives them all when there are
            # fewer (complete), else n of them (not complete); at exactly n, whether
            # the end was seen depends on zlib: inflate as before
            head, done = (full, True) if len(full) < n else (full[:n], False)
        else:
            head, done = _inflate(data, info, n)
        verdict = _prolog(head, done)
        if verdict is _MORE and not done and n < limits.max_xml_part:
            n = min(n * 16, limits.max_xml_part)
            continue
        break
    if verdict is _MORE:
        verdict = "XML 声明或注释过长"
    if verdict is _NOT_XML:
        if _is_xml_name(info.filename) and head.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
            raise UnreadableFile(
                "bad_xml", f"部件 {info.filename} 不是有效的 XML：文件已损坏；请重新保存后提交"
            )
        return  # a picture or other binary part: no XML parser reads it
    if isinstance(verdict, str):
        why = (
            "疑似 XML 实体攻击（billion laughs、外部实体）"
            if "DOCTYPE" in verdict
            else "文件已损坏或被改造"
        )
        raise UnreadableFile(
            "bad_xml",
            f"部件 {info.filename} {verdict}：正规的 Excel/WPS/LibreOffice 文件从不这样写，"
            f"{why}，拒绝读取；请用下发的原表重新填写",
        )


def _check_real_size(
    data: bytes,
    info: zipfile.ZipInfo,
    whole: _Whole | None = None,
) -> bytes:
    """The whole content of a member, checked against its declared size and CRC (its
    content taken from ``whole`` when :func:`_check_prolog_now` kept it there)."""
    kept = whole.parts.get(info.filename) if whole is not None else None
    if kept is not None and kept[0] is info:
        content = kept[1]
    else:
        content, _done = _inflate(data, info, info.file_size + 1)
    if len(content) > info.file_size:
        raise UnreadableFile(
            "zip_bomb",
            f"部件 {info.filename} 解压后比声明的 {info.file_size} 字节大：文件已损坏，"
            "或压缩包信息被伪造（疑似压缩炸弹），未解压",
        )
    if zlib.crc32(content) != info.CRC:
        raise UnreadableFile(
            "bad_zip", f"部件 {info.filename} 校验失败（CRC 不符）：文件已损坏；请重新保存后提交"
        )
    return content


#: a cell start tag that is not exactly ``<c r="A1"`` (a prefix, other attribute
#: order, no reference, an odd reference): the exact scan below is needed
_CELL_ODD = re.compile(rb"<c(?! r=\"[A-Z]{1,3}[0-9]{1,7}\")[\s/>]|<[^\s<>/:!?\"']+:c[\s/>]")
#: cells beyond Z999: two or three column letters, or a row of four digits or more
_CELL_FAR = re.compile(rb'<c r="([A-Z]{2,3}[0-9]{1,7}|[A-Z][0-9]{4,7})"[^>]*?(/?)>')
_TAG_START = re.compile(rb"<(?:[^\s<>/:!?\"']+:)?(?:row|c)[\s/>]")
_TAG = re.compile(
    rb"<(?:[^\s<>/:!?\"']+:)?(row|c)((?:\s+[^\s=/>\"']+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(/?)>"
)
_ATTR_R = re.compile(rb"\s(?:[^\s=/>\"':]+:)?r\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
#: a cell start tag other than ``<c r="A1"`` with a reference within Z999: where
#: there is none (and no prefixed cell tag), :data:`_CELL_ODD` and :data:`_CELL_FAR`
#: find nothing either
_CELL_NOT_NEAR = re.compile(rb"<c(?! r=\"[A-Z][0-9]{1,3}\")[\s/>]")
#: what every prefixed cell start tag (``<x:c ``, :data:`_CELL_ODD`) contains; the
#: colon is rare in a sheet, so this pass is quick
_PREFIXED_C = re.compile(rb":c[\s/>]")
_REF_B = re.compile(rb"^([A-Z]{1,3})([0-9]{1,7})$")


def cell_tags_near(xml: bytes | bytearray | memoryview) -> bool:
    """Whether every cell start tag is ``<c r="A1"`` within Z999 and none has a
    namespace prefix (the reference of ``kpi_excel._speedups.cell_tags_near``)."""
    return _CELL_NOT_NEAR.search(xml) is None and _PREFIXED_C.search(xml) is None


def surrogate_ref(xml: bytes | bytearray | memoryview) -> bool:
    """Whether ``xml`` holds a character reference to a lone surrogate (the reference
    of ``kpi_excel._speedups.surrogate_ref``)."""
    return _SURROGATE_REF.search(xml) is not None


try:  # the same answers in C, in one pass each
    from kpi_excel._speedups import cell_tags_near as _cell_tags_near
    from kpi_excel._speedups import surrogate_ref as _surrogate_ref
except ImportError:  # pragma: no cover - not built here
    _cell_tags_near, _surrogate_ref = cell_tags_near, surrogate_ref


def _split_ref(ref: bytes) -> tuple[int, int]:
    m = _REF_B.match(ref)
    assert m is not None
    return int(m.group(2)), _col_number(m.group(1).decode())


def _used_area(xml: bytes) -> tuple[int, int] | str:
    """(last row, last column) of the cells holding something, as python-calamine
    places them, or a problem. Empty self-closed cells (``<c r="X9" s="1"/>``) hold
    nothing and are not counted."""
    if xml[:2] in (b"\xff\xfe", b"\xfe\xff") or xml[:1] == b"\x00" or xml[1:2] == b"\x00":
        xml = xml.decode("utf-16", "ignore").encode("utf-8")
    if _cell_tags_near(xml):
        # every cell is written <c r="A1" ...> within Z999: the answer of the branch
        # below, in two quick passes (the colon is rare) instead of three
        return 999, 26
    if _CELL_ODD.search(xml) is None:
        # every cell is written <c r="A1" ...> (Excel, WPS, LibreOffice, XlsxWriter):
        # only cells beyond Z999 can make the area large. A match ends at a ">", so
        # none starts after the last one: scanning stops there (a tag with no ">"
        # after it would be scanned to the end, each time: quadratic on a crafted sheet)
        end = xml.rfind(b">") + 1
        far = [_split_ref(ref) for ref, closed in _CELL_FAR.findall(xml, 0, end) if not closed]
        if not far:
            return 999, 26
        return max(999, *(r for r, _c in far)), max(26, *(c for _r, c in far))
    tags = _TAG.findall(xml)
    if len(tags) != len(_TAG_START.findall(xml)):
        return "单元格的 XML 写法异常"
    row = col = last_row = last_col = 0
    for tag, attrs, closed in tags:
        m = _ATTR_R.search(attrs)
        ref = (m.group(1) if m.group(1) is not None else m.group(2)) if m else None
        if tag == b"row":
            if ref is None:
                row += 1
            elif ref.isdigit() and len(ref) <= 7:
                row = int(ref)
            else:
                return f"行号“{ref[:20].decode('latin-1')}”无效"
            col = 0
            continue
        if ref is None:
            col += 1
            at_row = max(row, 1)
        elif _REF_B.match(ref):
            at_row, col = _split_ref(ref)
        else:
            return f"单元格引用“{ref[:20].decode('latin-1')}”无效"
        if not closed:
            last_row, last_col = max(last_row, at_row), max(last_col, col)
    return last_row, last_col


#: a character reference to a lone surrogate (U+D800-U+DFFF), in hex or decimal: not
#: a character XML allows, yet one reader lets it through into formula text
_SURROGATE_REF = re.compile(
    rb"&#(?:[xX]0*[dD][89a-fA-F][0-9a-fA-F]{2}|0*(?:5529[6-9]|55[3-9][0-9]{2}|56[0-9]{3}"
    rb"|57[0-2][0-9]{2}|573[0-3][0-9]|5734[0-3]));"
)


def _check_area(
    data: bytes,
    info: zipfile.ZipInfo,
    sheet: str,
    limits: Limits,
    whole: _Whole | None = None,
) -> bytes:
    """Check a worksheet's content (size, CRC, character references, used area) and
    return it."""
    xml = _check_real_size(data, info, whole)
    if _surrogate_ref(xml):
        raise UnreadableFile(
            "bad_xml",
            f"工作表“{sheet}”含有无效的字符引用（如 &#xD800;）：文件已损坏或被改造，拒绝读取；"
            "请用下发的原表重新填写",
        )
    area = _used_area(xml)
    if isinstance(area, str):
        raise UnreadableFile(
            "bad_xml", f"工作表“{sheet}”（{info.filename}）{area}：文件已损坏或被改造，拒绝读取"
        )
    rows, cols = area
    if rows * cols > limits.max_cells:
        exact = _used_area(xml.replace(b'<c r="', b'<c  r="'))  # force the exact scan
        if not isinstance(exact, str):
            rows, cols = exact
    if rows * cols > limits.max_cells:
        raise UnreadableFile(
            "too_many_cells",
            f"工作表“{sheet}”的内容一直延伸到 {col_letter(cols)}{rows}（约 {rows * cols:,} 个单元格），"
            "远超考核表的范围：可能在很远的单元格输入了内容，或文件被恶意构造；为防止耗尽内存未读取。"
            "请删除多余内容后重新提交",
        )
    return xml


@dataclass(frozen=True)
class Package:
    """A file that passed :func:`gate`: its zip and the structure read on the way."""

    zf: zipfile.ZipFile
    workbook_part: str
    root: Any = field(repr=False)  # workbook.xml, parsed with defusedxml
    rels: dict[str, tuple[str, str]]
    sheets: list[SheetRef]


def _format_by_names(names: set[str]) -> None:
    """Zips that are not .xlsx workbooks but say what they are by their parts."""
    if "content.xml" in names and "mimetype" in names:
        raise UnreadableFile(
            "ods", f"这是 OpenDocument 表格（.ods，WPS/LibreOffice 另存的格式）；{_RESAVE}"
        )
    if "word/document.xml" in names:
        raise UnreadableFile(
            "missing_part", f"这是 Word 文档（.docx），不是 Excel 工作簿；{_SUBMIT}"
        )
    if "ppt/presentation.xml" in names:
        raise UnreadableFile(
            "missing_part", f"这是 PowerPoint 文件（.pptx），不是 Excel 工作簿；{_SUBMIT}"
        )
    if any(n.startswith("Index/") and n.endswith(".iwa") for n in names):
        raise UnreadableFile(
            "missing_part", f"这是 Apple Numbers 表格，不是 Excel 工作簿；{_RESAVE}"
        )


def gate(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Package:
    """Every check a returned file passes before any parser reads it; raises
    :class:`UnreadableFile` with a reason a person can act on.

    Callers that read a workbook with openpyxl or python-calamine directly must call
    this first (:func:`open_book` does). Cost: ~0.2 ms for a filled form.
    """
    zf = check_zip(data, limits)
    infos = zf.infolist()
    names = {i.filename for i in infos}
    _format_by_names(names)
    seen: set[str] = set()
    xml_total = worst = 0
    for info in infos:
        key = info.filename.replace("\\", "/").casefold()
        if key in seen:
            raise UnreadableFile(
                "bad_zip",
                f"文件内有两个同名部件 {info.filename}（不同程序会读到不同的内容），"
                "疑似被改造；请用下发的原表重新填写",
            )
        seen.add(key)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnreadableFile(
                "bad_zip",
                f"部件 {info.filename} 使用了 Excel/WPS/LibreOffice 都不使用的压缩方式"
                f"（{info.compress_type}），拒绝读取；{_RESAVE}",
            )
        if _is_xml_name(info.filename):
            if info.file_size > limits.max_xml_part:
                raise UnreadableFile(
                    "zip_bomb", f"部件 {info.filename} 过大（{info.file_size / 1048576:.0f} MB）"
                )
            xml_total += info.file_size
        stored = info.compress_type == zipfile.ZIP_STORED
        worst += info.compress_size * (1 if stored else _DEFLATE_MAX_RATIO)
    if xml_total > limits.max_xml_total:
        raise UnreadableFile(
            "zip_bomb",
            f"XML 部件解压后共 {xml_total / 1048576:.0f} MB，超过上限 "
            f"{limits.max_xml_total / 1048576:.0f} MB（考核表通常不到 1 MB），未读取",
        )
    # Small files cannot expand beyond the caps whatever their headers say; larger ones
    # are decompressed once here to prove the declared sizes (python-calamine's zip
    # reader trusts them).
    verify = worst > limits.max_uncompressed
    whole = _Whole()  # parts inflated whole once, by name
    for info in infos:
        if verify and not info.is_dir():
            content = _check_real_size(data, info)
            if _wholeable(info, whole):  # what _inflate_whole gives: kept, not inflated again
                whole.left -= info.file_size
                whole.parts[info.filename] = (info, content)
        key = _member_key(zf, info) if info.compress_size <= _PROLOG_KEY_MAX else None
        _check_prolog(data, info, limits, key, whole)

    workbook_part = "xl/workbook.xml"
    for _rid, (typ, target) in _rels(zf, "", limits).items():
        if typ == "officeDocument":
            workbook_part = target
    if workbook_part.endswith(".bin"):
        raise UnreadableFile(
            "xlsb", f"这是二进制工作簿（.xlsb），不是下发的 .xlsx 考核表；{_RESAVE}"
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
            "strict_xml", f"这是“严格 Open XML”格式的工作簿，无法可靠读取其中的公式；{_RESAVE}"
        )
    if _local(root.tag) != "workbook" or not root.tag.startswith("{" + _MAIN_NS[0]):
        raise UnreadableFile("not_xlsx", "workbook.xml 不是电子表格工作簿")
    rels = _rels(zf, workbook_part, limits)
    sheets = _sheet_refs(root, rels)
    for s in sheets:
        if s.part not in names:
            raise UnreadableFile(
                "missing_part",
                f"工作表“{s.name}”的部件 {s.part} 不存在：文件已损坏；请重新保存后提交",
            )
        info = zf.getinfo(s.part)
        _keep_checked(zf, info, _check_area(data, info, s.name, limits, whole))
    return Package(zf, workbook_part, root, rels, sheets)


#: Parts seen before, by :func:`_member_key`: the static parts of a form (styles,
#: theme, workbook.xml, relationships, the template's shared strings) are the same in
#: every file, so their content (and their prolog verdict) is kept instead of being
#: inflated, CRC-checked and scanned again. Content is kept from the second sighting.
_MEMBER_SEEN: set[bytes] = set()
_MEMBER_MEMO: dict[bytes, bytes] = {}
_PROLOG_OK: set[tuple[bytes, int]] = set()
_MEMO_MAX_PART = 1 << 20
#: digests computed before, by the directory fields they cover, with the local header
#: and stored bytes they cover: a member whose fields and bytes are exactly equal
#: (compared in full) has the same digest, without hashing it again. The static parts
#: of every form hit; bounded in count and in bytes kept.
_DIGESTS: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
_DIGESTS_BYTES = 0
_DIGESTS_MAX_BYTES = 16 << 20
_DIGEST_MEMO_MAX_PART = 1 << 16
#: the gate keys a member's prolog verdict (:data:`_PROLOG_OK`) only when its stored
#: bytes are no larger than this: scanning a prolog inflates ~1 KB, cheaper than
#: digesting a larger member that is new (a worksheet differs in every form)
_PROLOG_KEY_MAX = 8192


def _member_key(zf: zipfile.ZipFile | None, info: zipfile.ZipInfo) -> bytes | None:
    """A BLAKE2b digest of everything the zip reader reads to give a member's content:
    its central-directory record (name, CRC, sizes, method, flags, the room before the
    next entry) and its local header and compressed bytes. Members with equal keys read
    alike, whatever their CRCs claim; None when the member is not in checked bytes."""
    data = getattr(zf, "_checked_bytes", None)
    if data is None:
        return None
    keys: dict[int, bytes | None] = zf.__dict__.setdefault("_member_keys", {})
    if id(info) in keys:
        return keys[id(info)]
    keys[id(info)] = got = _member_digest(data, info)
    return got


def _member_digest(data: bytes, info: zipfile.ZipInfo) -> bytes | None:
    off = info.header_offset
    if off < 0 or off + 30 > len(data):
        return None
    n, m = struct.unpack_from("<HH", data, off + 26)
    end = off + 30 + n + m + info.compress_size
    if end > len(data):
        return None
    room = getattr(info, "_end_offset", None)
    fields = (
        info.orig_filename,
        info.filename,
        info.CRC,
        info.file_size,
        info.compress_size,
        info.compress_type,
        info.flag_bits,
        None if room is None else room - off,
    )
    if end - off > _DIGEST_MEMO_MAX_PART:
        return _digest(fields, memoryview(data)[off:end])
    stored = data[off:end]
    got = _DIGESTS.get(fields)
    if got is not None and got[0] == stored:  # the very same bytes: the same digest
        return got[1]
    digest = _digest(fields, stored)
    _remember_digest(fields, stored, digest)
    return digest


def _digest(fields: tuple[object, ...], stored: bytes | memoryview) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    h.update(repr(fields).encode("utf-8", "surrogatepass"))
    h.update(stored)
    return h.digest()


def _remember_digest(fields: tuple[object, ...], stored: bytes, digest: bytes) -> None:
    global _DIGESTS_BYTES
    old = _DIGESTS.pop(fields, None)
    if old is not None:
        _DIGESTS_BYTES -= len(old[0])
    if _DIGESTS_BYTES + len(stored) > _DIGESTS_MAX_BYTES or len(_DIGESTS) >= 4096:
        _DIGESTS.clear()
        _DIGESTS_BYTES = 0
    _DIGESTS[fields] = (stored, digest)
    _DIGESTS_BYTES += len(stored)


def _remember_part(key: bytes, content: bytes) -> None:
    if key in _MEMBER_SEEN:
        if len(_MEMBER_MEMO) >= 256:
            _MEMBER_MEMO.clear()
        _MEMBER_MEMO[key] = content
    else:
        if len(_MEMBER_SEEN) >= 8192:
            _MEMBER_SEEN.clear()
        _MEMBER_SEEN.add(key)


#: what a parsed workbook.xml (shared through _PARSED) says: its sheets, per set of
#: relationships, and its defined names; the root is kept so its id stays its own
_ROOT_FACTS: dict[tuple[int, str, tuple[tuple[str, tuple[str, str]], ...]], tuple[Any, Any]] = {}


def _root_fact(root: Any, kind: str, rels: dict[str, tuple[str, str]], make: Any) -> Any:
    key = (id(root), kind, tuple(sorted(rels.items())))
    got = _ROOT_FACTS.get(key)
    if got is not None and got[0] is root:
        return got[1]
    value = make()
    if len(_ROOT_FACTS) >= 256:
        _ROOT_FACTS.clear()
    _ROOT_FACTS[key] = (root, value)
    return value


def _sheet_refs(root: Any, rels: dict[str, tuple[str, str]]) -> list[SheetRef]:
    def make() -> tuple[SheetRef, ...]:
        out = []
        for el in root.iter():
            if _local(el.tag) == "sheet":
                typ, part = rels.get(_attr(el, "id") or "", ("", ""))
                if typ == "worksheet":
                    out.append(SheetRef(el.get("name") or "", el.get("state", "visible"), part))
        return tuple(out)

    return list(_root_fact(root, "sheets", rels, make))


def _defined_names(root: Any) -> dict[str, NameRef]:
    def make() -> dict[str, NameRef]:
        defined: dict[str, NameRef] = {}
        for el in root.iter():
            if _local(el.tag) == "definedName":
                name = el.get("name") or ""
                if el.get("localSheetId") is not None or name.startswith("_xlnm."):
                    continue  # sheet-scoped names and print areas are not ours
                defined[name] = _name_ref(name, el.text or "")
        return defined

    return dict(_root_fact(root, "names", {}, make))


def _keep_checked(zf: zipfile.ZipFile, info: zipfile.ZipInfo, content: bytes) -> None:
    """Keep a member's content that :func:`gate` inflated whole and CRC-checked (the
    worksheets), for :func:`_read_member` to give instead of inflating it again."""
    data = getattr(zf, "_checked_bytes", None)
    if data is None:
        return
    off = info.header_offset
    n, m = struct.unpack_from("<HH", data, off + 26)  # _member_bytes read them
    kept: dict[str, tuple[zipfile.ZipInfo, int, bytes]]
    kept = zf.__dict__.setdefault("_checked_content", {})
    kept[info.filename] = (info, off + 30 + n + m, content)


def _checked_content(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """The content :func:`_keep_checked` kept for ``info``, when ``zf.open(info)``
    would give exactly it; else None (the caller reads the member the usual way).

    The gate inflated the member's stored bytes, located through its local header
    (signature checked), and found exactly its declared size or less and its CRC:
    what zipfile's reader gives too, once it has checked what its ``open`` checks
    itself. Those checks are repeated here: the archive is open, the local header's
    signature, the flag bits zipfile refuses or needs a password for, the local
    header's name equal to the directory's (decoded as zipfile decodes it), the
    entries not overlapping (Python versions that check it) and the same data offset.
    """
    kept = zf.__dict__.get("_checked_content")
    got = kept.get(info.filename) if kept else None
    if got is None or got[0] is not info or not zf.fp:
        return None
    _info, start, content = got
    data: bytes = zf._checked_bytes  # type: ignore[attr-defined]  # set with the content
    off = info.header_offset
    if off < 0 or off + 30 > len(data) or data[off : off + 4] != b"PK\x03\x04":
        return None
    if info.flag_bits & 0x61:  # encrypted (0x01), patched data (0x20), strong encryption (0x40)
        return None
    flags, n, m = struct.unpack_from("<H18xHH", data, off + 6)
    try:
        name = data[off + 30 : off + 30 + n].decode(
            "utf-8" if flags & 0x800 else (zf.metadata_encoding or "cp437")
        )
    except (UnicodeDecodeError, LookupError):
        return None
    if name != info.orig_filename or off + 30 + n + m != start:
        return None
    end_offset = getattr(info, "_end_offset", None)
    if end_offset is not None and start + info.compress_size > end_offset:
        return None  # zipfile refuses overlapping entries
    return content


def _read_member(zf: zipfile.ZipFile, name: str, limits: Limits) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise UnreadableFile("missing_part", f"工作簿缺少部件 {name}；文件可能已损坏") from None
    if info.file_size > limits.max_xml_part:
        raise UnreadableFile("zip_bomb", f"部件 {name} 过大（{info.file_size / 1048576:.0f} MB）")
    checked = _checked_content(zf, info)
    if checked is not None:
        return checked
    key = _member_key(zf, info) if info.file_size <= _MEMO_MAX_PART else None
    if key is not None:
        got = _MEMBER_MEMO.get(key)
        if got is not None:
            return got
        out = _read_member_now(zf, info, name, limits)
        _remember_part(key, out)
        return out
    return _read_member_now(zf, info, name, limits)


def _read_member_now(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limits: Limits
) -> bytes:
    try:
        with zf.open(info) as fh:
            out = fh.read(limits.max_xml_part + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error) as e:
        raise UnreadableFile(
            "bad_zip", f"部件 {name} 无法解压（{e}）；文件已损坏，请重新保存后提交"
        ) from None
    if len(out) > limits.max_xml_part:  # pragma: no cover - the header lied about the size
        raise UnreadableFile("zip_bomb", f"部件 {name} 实际大小超过声明，疑似伪造")
    return out


#: small parts (workbook.xml, relationships) parsed before, by their exact bytes: the
#: forms of one collection mostly share them. The trees are only ever read.
_PARSED: dict[bytes, Any] = {}


def _parse_xml(zf: zipfile.ZipFile, name: str, limits: Limits) -> Any:
    raw = _read_member(zf, name, limits)
    got = _PARSED.get(raw)
    if got is not None:
        return got
    try:
        got = SafeET.fromstring(raw)
        if len(raw) <= 65536:
            if len(_PARSED) >= 256:
                _PARSED.clear()
            _PARSED[raw] = got
        return got
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


@functools.lru_cache(maxsize=1024)  # pure; every form names the same parts
def _rels_name(part: str) -> str:
    """The relationships part of ``part``: ``xl/workbook.xml`` -> ``xl/_rels/workbook.xml.rels``."""
    p = PurePosixPath(part)
    return str(p.parent / "_rels" / (p.name + ".rels")).lstrip("./")


def _rels(zf: zipfile.ZipFile, part: str, limits: Limits) -> dict[str, tuple[str, str]]:
    """Relationships of ``part``: Id -> (type suffix, resolved target)."""
    rels_name = _rels_name(part)
    if rels_name not in zf.NameToInfo:  # the names of zf.namelist(), without a list
        return {}
    root = _parse_xml(zf, rels_name, limits)

    def make() -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for el in root:
            if _local(el.tag) != "Relationship":
                continue
            rid, typ, target = el.get("Id"), el.get("Type", ""), el.get("Target", "")
            if rid and el.get("TargetMode") != "External":
                out[rid] = (typ.rsplit("/", 1)[-1], _resolve(part, target))
        return out

    # parsed relationship parts are shared through _PARSED: resolved once per part
    return dict(_root_fact(root, "rels:" + part, {}, make))


def _number_text(v: str) -> object:
    try:
        d = Decimal(v)
    except InvalidOperation:
        return v
    if d == d.to_integral_value() and abs(d) < 10**15 and "." not in v and "E" not in v.upper():
        return int(d)
    return float(v)


def _unreadable(e: BaseException) -> UnreadableFile:
    """An exception from openpyxl reading a returned file, as a reason for a person."""
    if isinstance(e, zipfile.BadZipFile | zlib.error | EOFError) or "CRC" in str(e):
        return UnreadableFile("bad_zip", f"文件已损坏（{e}）；请重新保存后提交")
    return UnreadableFile(
        "bad_workbook",
        f"无法读取此工作簿（{type(e).__name__}: {str(e)[:200]}）：文件已损坏或不是标准的 .xlsx；"
        "请用 Excel 打开后重新保存，或用下发的原表填写",
    )


def read_regular(path: Path, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of a regular file, at most ``limits.max_file_bytes``.

    Opened without blocking and checked to be a regular file *after* opening, so a
    FIFO or device put where a file was (or a symlink to ``/dev/zero``) is refused
    instead of stalling the run; the size is checked before reading and the read is
    capped in case the file grows meanwhile.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile("not_a_file", "不是普通文件（管道、设备或其他特殊文件），未读取")
        if st.st_size > limits.max_file_bytes:
            raise _too_large(st.st_size, limits)
        chunks = []
        left = limits.max_file_bytes + 1
        # the size it has (and one byte more, to see it end), then small reads to see
        # whether it grew: a large read allocates its whole size first (~0.05 ms a file)
        size = min(left, st.st_size + 1)
        while left > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
            size = min(left, 1 << 16)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limits.max_file_bytes:
        raise _too_large(len(data), limits)
    return data


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

    def locked_cells(self) -> list[tuple[str, object]]:
        """Locked, non-empty cells, row-major, as the fingerprint covers them."""
        from kpi_excel.meta import locked_cells_from_openpyxl

        return locked_cells_from_openpyxl(self)

    def fingerprint_lines(self) -> list[str]:
        """The locked cells' lines of the fingerprint text, empty ones left out."""
        from kpi_excel.meta import cell_line

        return [line for line in (cell_line(c, v) for c, v in self.locked_cells()) if line]

    def fingerprint_bytes(self) -> list[bytes] | None:
        """:meth:`fingerprint_lines` in UTF-8, where they are kept (None: not kept)."""
        return None


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
                value = xml_value(t, v_text, f_text, "".join(inline), self.shared_strings)
                out[coord] = (value, f_text)
        self._xml_cells[sheet] = out
        return out

    # -- _meta ------------------------------------------------------------------------

    def meta(self, sheet: str = "_meta") -> dict[str, str]:
        """The key/value rows of the hidden meta sheet ({} when there is none).

        Row 1 is a header; a value continued over columns C, D, … is joined. Numbers
        come back as their canonical text, as :func:`kpi_excel.meta.read_meta` does.
        """

        cells = self.xml_cells(sheet)
        rows: dict[int, dict[int, object]] = {}
        for coord, (value, _f) in cells.items():
            r, c = _row_col(coord)
            got = rows.get(r)
            if got is None:
                got = rows[r] = {}
            got[c] = value
        out: dict[str, str] = {}
        for r in sorted(rows):
            if r == 1:
                continue
            row = rows[r]
            key = row.get(1)
            if key is None or key == "":
                continue
            parts = [row[c] for c in sorted(k for k in row if k > 1)]
            out[meta_text(key)] = "".join(meta_text(v) for v in parts if v is not None)
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
        except BaseException as e:  # calamine refused the file: openpyxl reads cached values too
            # a Rust panic inside python-calamine arrives as pyo3's PanicException,
            # which derives from BaseException
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            self.value_engine = "openpyxl"
            grid = self._grid_openpyxl(sheet)
        self._grids[sheet] = grid
        return grid

    def _grid_openpyxl(self, sheet: str) -> list[list[Any]]:
        import openpyxl

        try:
            wb = openpyxl.load_workbook(io.BytesIO(self.data), data_only=True, read_only=True)
        except Exception as e:  # openpyxl raises many kinds on odd files
            raise _unreadable(e) from None
        try:
            ws = wb[sheet]
            ws.reset_dimensions()  # a <dimension> that lies would make it iterate forever
            grid = [["" if v is None else v for v in row] for row in ws.iter_rows(values_only=True)]
        except Exception as e:
            raise _unreadable(e) from None
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
                raise _unreadable(e) from None
        return self._openpyxl

    def sheet_cells(self, sheet: str) -> SheetCells:
        """All cells of a sheet as openpyxl reads them (formulas as ``=…`` text), once."""
        got = self._sheets.get(sheet)
        if got is None:
            ws = self.openpyxl()[sheet]
            ws.reset_dimensions()  # some writers record a wrong <dimension>: read every row
            try:
                got = SheetCells([tuple(r) for r in ws.iter_rows()])
            except Exception as e:
                raise _unreadable(e) from None
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
        self.zf.__dict__.pop("_checked_content", None)  # never given once closed


def open_book(
    data: bytes,
    source: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    path: Path | None = None,
    sha256: str | None = None,
) -> Book:
    """Check ``data`` (:func:`gate`) and read its structure (sheets, defined names);
    values lazily. ``sha256``: the hex SHA-256 of ``data``, when the caller has it."""
    pkg = gate(data, limits)
    names = set(pkg.zf.namelist())
    defined = _defined_names(pkg.root)
    zf, workbook_part, sheets = pkg.zf, pkg.workbook_part, pkg.sheets
    return Book(
        source=source,
        data=data,
        sha256=sha256 if sha256 is not None else hashlib.sha256(data).hexdigest(),
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
    data = read_regular(path, limits)
    return open_book(data, str(path), limits=limits, path=path)
