"""Collect returned forms: identify, recompute, compare, validate, ledger, summary.

For every file given (folders are walked, .zip archives opened, lock and system
files skipped with a note), :func:`check_source` decides *accepted*, *accepted with
warnings* or *rejected*, and says why:

1. read it safely (:mod:`kpi_excel.read`) and identify it from its ``_meta`` sheet;
2. load the template version recorded in the form (its embedded YAML, checked
   against its SHA-256), and note when it is older than the built-in version;
3. read every input by its defined name (right even where rows were inserted) and
   check it (:mod:`kpi_excel.validate`);
4. recompute every cell twice with :func:`kpi_excel.score.evaluate`: from the raw
   inputs, to compare with the values cached in the file (a difference means a
   formula was overwritten or the file was not recalculated), and from the
   normalised inputs, which give the scores that count;
5. compare each computed cell's formula with the template's, and check the HMAC
   fingerprint of all locked cells; a changed locked cell is reported with its old
   and new content (the expected sheet is regenerated from the form's own meta);
6. check header date cells where the layout has them.

Across files: the period of the collection, duplicates (same employee and period:
the newest file by modification time, then by name, counts), employees missing from
the roster. Then the ledger (:mod:`kpi_excel.ledger`) and the summary workbook
(:mod:`kpi_excel.summary`) are written, and a one-screen report is printed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import functools
import gc
import hashlib
import json
import marshal
import os
import re
import stat
import sys
import time
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from kpi_excel import __version__
from kpi_excel.errors import KpiExcelError, SpecError

# What checking a form needs is imported here, once per process, not on a worker's
# first form: forked workers inherit it (~60 ms a worker and collection otherwise).
from kpi_excel.fastread import open_fast
from kpi_excel.ledger import AnomalyRow, FileRow, Ledger, ScoreRow, SourceRow, default_path
from kpi_excel.meta import canonical, fingerprint, resolve_secret
from kpi_excel.read import (
    DEFAULT_LIMITS,
    Book,
    CellError,
    Limits,
    NameRef,
    UnreadableFile,
    check_zip,
    open_book,
    read_regular,
    split_ref,
)
from kpi_excel.rules.tree import Value
from kpi_excel.score import CompiledForm, compile_form, evaluate
from kpi_excel.spec import model as m
from kpi_excel.spec.load import builtin_dir, load_form_text
from kpi_excel.spec.text import format_value, placeholders, render_text
from kpi_excel.spool import pack, rows_of, spool_results
from kpi_excel.validate import Checked, check_input, to_sheet_value

__all__ = [
    "ACCEPTED",
    "WARNING",
    "REJECTED",
    "Source",
    "Issue",
    "IndicatorLine",
    "FileResult",
    "Collection",
    "discover",
    "check_source",
    "collect",
    "collect_command",
    "safe_text",
    "STATUS_TEXT",
]

ACCEPTED, WARNING, REJECTED = "accepted", "warning", "rejected"
STATUS_TEXT = {ACCEPTED: "通过", WARNING: "通过（有提醒）", REJECTED: "退回", "skipped": "跳过"}
SEVERITY_TEXT = {"error": "错误", "warning": "提醒", "info": "说明"}
FORMAT = "kpi-excel-form/1"

_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
_WORKBOOK_EXT = {".xlsx", ".xlsm"}
_MAX_ZIP_DEPTH = 3
_PERIOD_RE = {
    "monthly": re.compile(r"^\d{4}-(0[1-9]|1[0-2])$"),
    "quarterly": re.compile(r"^\d{4}-Q[1-4]$"),
    "yearly": re.compile(r"^\d{4}$"),
}
_PERIOD_EXAMPLE = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}

# ----------------------------------------------------------------------------- text


#: a leading character that makes a spreadsheet read a cell (or a CSV field) as a
#: formula; full-width forms too (Excel and WPS with an IME turn ＝ into = on entry),
#: and U+2212 MINUS SIGN
_INERT_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠", "\u2212")
#: characters XML 1.0 cannot carry: control characters, lone surrogates (file names
#: that are not UTF-8), U+FFFE and U+FFFF
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
#: invisible direction controls: a file name "报表\u202excod.exe" shows as "报表exe.docx"
_BIDI = re.compile(r"[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(value: object) -> str:
    """Text from a returned file, made inert for a spreadsheet or CSV.

    Text starting with ``= + - @`` (also full-width ``＝ ＋ － ＠`` and U+2212 ``−``) or a
    control character would be read as a formula by a spreadsheet that opens a CSV
    (or by a careless copy-paste): it is prefixed with an apostrophe. Characters XML
    cannot carry (control characters, lone surrogates, U+FFFE/U+FFFF) are replaced by
    U+FFFD, so the summary workbook can always be written.
    """
    s = "" if value is None else str(value)
    if s and (s.startswith(_INERT_START) or ord(s[0]) < 32):
        s = "'" + s
    return _CONTROL.sub("\ufffd", s)


# ---------------------------------------------------------------------------- sources


def display_path(path: str) -> str:
    """A path as text that can be shown and stored anywhere (summary, ledger, JSON).

    Bytes of a file name that are not UTF-8 (kept by Python as lone surrogates) are
    shown as ``\\xNN``; invisible direction controls (U+202E …) as ``<U+202E>``.
    Nothing else changes: NFC and NFD spellings of a name stay distinct, as they are
    distinct files.
    """
    s = path
    if s.isascii():
        return s  # nothing to show otherwise
    if _ESCAPED_BYTE.search(s):
        with contextlib.suppress(UnicodeError):  # other lone surrogates: U+FFFD below
            s = os.fsencode(s).decode("utf-8", "backslashreplace")
    s = _LONE_SURROGATE.sub("\ufffd", s)
    return _BIDI.sub(lambda mt: f"<U+{ord(mt.group()):04X}>", s)


#: a byte of a file name that is not UTF-8, as Python keeps it (U+DC80-U+DCFF)
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Source:
    """One input file: a file on disk, or a member of a (possibly nested) zip.

    ``problem`` (with ``problem_kind``) is set when discovery already knows the file
    cannot be read (a dangling link, an encrypted archive member …): it is rejected
    with that reason, never dropped.
    """

    display: str
    origin: Path
    members: tuple[str, ...] = ()
    size: int = 0
    mtime: float = 0.0
    problem: str = ""
    problem_kind: str = ""

    def read(self, limits: Limits) -> bytes:
        """The file's bytes, size-capped before reading (never blocks on a FIFO)."""
        if self.problem:
            raise UnreadableFile(self.problem_kind or "unreadable", self.problem)
        if not self.members:
            return read_regular(self.origin, limits)
        st = self.origin.stat()
        zf = _archive(self.origin, self.members[:-1], st.st_mtime_ns, st.st_size, limits)
        info = zf.getinfo(self.members[-1])
        why = _member_problem(info)
        if why:
            raise UnreadableFile("unreadable", why)
        if info.file_size > limits.max_file_bytes:
            raise UnreadableFile(
                "too_large",
                f"压缩包内文件 {info.file_size / 1048576:.1f} MB，超过上限 {limits.max_file_bytes / 1048576:.0f} MB",
            )
        try:
            with zf.open(info) as fh:
                data = fh.read(limits.max_file_bytes + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise UnreadableFile(
                "bad_zip", f"压缩包内此文件无法解压（{e}）：压缩包已损坏；请重新打包后提交"
            ) from None
        if len(data) > limits.max_file_bytes:
            raise UnreadableFile(
                "too_large", f"压缩包内文件超过上限 {limits.max_file_bytes / 1048576:.0f} MB"
            )
        return data


def _member_problem(info: zipfile.ZipInfo) -> str:
    """Why a member of an archive of returned files cannot be read ('' when it can)."""
    if info.flag_bits & 0x1:
        return "压缩包内的此文件设置了解压密码（zip 加密），无法读取；请不设密码重新打包后提交"
    if info.compress_type not in (
        zipfile.ZIP_STORED,
        zipfile.ZIP_DEFLATED,
        zipfile.ZIP_BZIP2,
        zipfile.ZIP_LZMA,
    ):
        return (
            f"压缩包内的此文件使用了不支持的压缩方式（{info.compress_type}，如 Deflate64）；"
            "请用“压缩为 zip”的默认方式重新打包后提交"
        )
    return ""


@functools.lru_cache(maxsize=4)
def _archive(
    origin: Path, members: tuple[str, ...], _mtime_ns: int, _size: int, limits: Limits
) -> zipfile.ZipFile:
    """An archive (or an archive inside one), opened once for all its members."""
    big = _archive_limits(limits)
    data = read_regular(origin, big)
    zf = check_zip(data, big, workbook=False)
    for name in members:
        with zf.open(name) as fh:
            data = fh.read(big.max_file_bytes + 1)
        zf = check_zip(data, big, workbook=False)
    return zf


def _archive_limits(limits: Limits) -> Limits:
    """An archive of returned forms may hold many files: allow more and larger members."""
    return Limits(
        max_file_bytes=max(limits.max_file_bytes, 2 * 1024**3),
        max_members=100_000,
        max_uncompressed=4 * 1024**3,
        max_ratio=limits.max_ratio,
        ratio_floor=limits.ratio_floor,
        max_xml_part=limits.max_xml_part,
    )


def _skip_reason(name: str) -> str | None:
    """Why a file is not an input (lock and system files), or None."""
    low = name.lower()
    if name[:1] not in ("~", "."):  # none of the lock and temporary files below
        return "系统文件，已跳过" if low in _SYSTEM_FILES else None
    if name.startswith("~$"):
        return "Excel/WPS 打开文件时产生的临时锁文件，已跳过"
    if name.startswith(".~lock."):
        return "LibreOffice 打开文件时产生的临时锁文件，已跳过"
    if name.startswith("._"):
        return "macOS 系统文件，已跳过"
    if low in _SYSTEM_FILES:
        return "系统文件，已跳过"
    if re.match(r"^~wrl\d+\.tmp$", low):
        return "Office 保存时的临时文件，已跳过"
    if re.match(r"^\..+\.\d+\.tmp\.xls[xm]$", low):
        return "汇总表写入时的临时文件（上次运行中断时留下），已跳过"
    return None


def _zip_name(info: zipfile.ZipInfo) -> str:
    """A member name as its author saw it (Chinese Windows zips names in GBK)."""
    name = info.filename
    if info.flag_bits & 0x800:
        return name
    try:
        raw = name.encode("cp437")
    except UnicodeEncodeError:
        return name
    for enc in ("utf-8", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return name


def _zip_sources(
    origin: Path, data: bytes, members: tuple[str, ...], display: str, limits: Limits, depth: int
) -> Iterator[tuple[Source | None, str, str | None]]:
    zf = check_zip(data, _archive_limits(limits), workbook=False)
    names = Counter(i.filename for i in zf.infolist())
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        shown = display_path(_zip_name(info))
        parts = shown.replace("\\", "/").split("/")
        where = f"{display}!{shown}"
        if names[info.filename] > 1:
            # zipfile reads only the last of equal names: say so for each of them
            yield (
                Source(
                    f"{where}（同名 {names[info.filename]} 个之一，偏移 {info.header_offset}）",
                    origin,
                    (*members, info.filename),
                    info.file_size,
                    problem=f"压缩包内有 {names[info.filename]} 个同名文件“{shown}”，无法区分读取；"
                    "请改名后重新打包提交",
                    problem_kind="duplicate_name",
                ),
                where,
                None,
            )
            continue
        if "__MACOSX" in parts:
            yield None, where, "macOS 压缩时附带的系统文件夹 __MACOSX，已跳过"
            continue
        why = _skip_reason(parts[-1])
        if why:
            yield None, where, why
            continue
        try:
            mtime = dt.datetime(*info.date_time).timestamp() if info.date_time[0] >= 1980 else 0.0
        except (ValueError, OverflowError):  # a nonsense date in the archive
            mtime = 0.0
        why = _member_problem(info)
        if why:
            yield (
                Source(where, origin, (*members, info.filename), info.file_size, mtime, why),
                where,
                None,
            )
            continue
        if parts[-1].lower().endswith(".zip") and depth < _MAX_ZIP_DEPTH:
            try:
                with zf.open(info) as fh:
                    inner = fh.read(_archive_limits(limits).max_file_bytes + 1)
                nested = list(
                    _zip_sources(origin, inner, (*members, info.filename), where, limits, depth + 1)
                )
            except (UnreadableFile, zipfile.BadZipFile, zlib.error, EOFError, OSError):
                # reported as a rejected input when it is checked
                nested = [
                    (
                        Source(where, origin, (*members, info.filename), info.file_size, mtime),
                        where,
                        None,
                    )
                ]
            yield from nested
            continue
        yield Source(where, origin, (*members, info.filename), info.file_size, mtime), where, None


def discover(
    inputs: Sequence[Path], exclude: Iterable[Path] = (), limits: Limits = DEFAULT_LIMITS
) -> tuple[list[Source], list[tuple[str, str]]]:
    """Input files (folders walked recursively, zips opened) and skipped files with reasons.

    Raises :class:`KpiExcelError` when an input does not exist.
    """
    # files are known by their resolved path, as text (a Path per file costs more),
    # compared as paths compare on this system (without regard to case on Windows)
    key = os.path.normcase
    excluded = {key(str(p.resolve())) for p in exclude}
    # SQLite's companions of the ledger, if the outputs sit in an input folder
    excluded |= {f"{p}{tail}" for p in excluded for tail in ("-journal", "-wal", "-shm")}
    sources: list[Source] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}

    def add_file(p: Path, raw: str, real_parent: str | None = None) -> None:
        shown = display_path(raw)
        rp: str | None = None
        plain: os.stat_result | None = None  # the file's own status, when not a link
        if real_parent is not None:
            # a plain file (not a link) in a resolved folder: no need to resolve it
            with contextlib.suppress(OSError):
                lst = os.lstat(p)
                if not stat.S_ISLNK(lst.st_mode):
                    rp, plain = key(os.path.join(real_parent, p.name)), lst
        if rp is None:
            try:
                rp = key(str(p.resolve()))
            except (OSError, RuntimeError):  # a symlink loop
                rp = key(str(p.absolute()))
        if rp in seen:
            if seen[rp] != shown:
                skipped.append((shown, f"与 {seen[rp]} 是同一个文件（链接或重复给出），已计入一次"))
            return
        seen[rp] = shown
        if rp in excluded:
            skipped.append((shown, "本次汇总的输出文件（汇总表或台账），已跳过"))
            return
        why = _skip_reason(p.name)
        if why:
            skipped.append((shown, why))
            return
        try:
            st = plain if plain is not None else p.stat()
        except OSError as e:
            lstat_ok = p.is_symlink()
            why = (
                "是一个链接，但它指向的文件不存在或无法访问"
                if lstat_ok
                else f"无法读取文件信息（{e.strerror or e}）"
            )
            sources.append(Source(shown, p, (), 0, 0.0, why, "unreadable"))
            return
        if p.suffix.lower() == ".zip" and stat.S_ISREG(st.st_mode):
            big = _archive_limits(limits)
            try:
                data = read_regular(p, big)
                for src, where, reason in _zip_sources(p, data, (), shown, limits, 1):
                    if src is None:
                        skipped.append((where, reason or ""))
                    else:
                        sources.append(src)
                return
            except (UnreadableFile, OSError, zipfile.BadZipFile, zlib.error, EOFError):
                pass  # an unreadable archive is reported as a rejected input below
        sources.append(Source(shown, p, (), st.st_size, st.st_mtime))

    def walk_error(e: OSError) -> None:
        # os.walk drops a folder it cannot list; the run must say so
        where = display_path(str(e.filename or ""))
        skipped.append((where, f"文件夹无法读取（{e.strerror or e}），其中的文件未能检查"))

    for inp in inputs:
        if not inp.exists() and not inp.is_symlink():
            raise KpiExcelError(f"找不到输入 {inp}：请给出文件夹、.xlsx 文件或 .zip 压缩包")
        if inp.is_dir():
            for root, dirs, files in os.walk(inp, onerror=walk_error):
                if "__MACOSX" in dirs:
                    skipped.append(
                        (
                            display_path(str(Path(root) / "__MACOSX")),
                            "macOS 压缩时附带的系统文件夹，已跳过",
                        )
                    )
                linked = sorted(d for d in dirs if (Path(root) / d).is_symlink())
                for d in linked:
                    skipped.append(
                        (
                            display_path(str(Path(root) / d)),
                            "指向其他文件夹的链接，未进入（避免重复或循环）；如需回收请直接给出该文件夹",
                        )
                    )
                dirs[:] = sorted(d for d in dirs if d != "__MACOSX" and d not in linked)
                here = Path(root)
                try:  # resolved once per folder: its plain files resolve beneath it
                    real_here: str | None = str(here.resolve())
                except (OSError, RuntimeError):
                    real_here = None
                for fname in sorted(files):
                    p = here / fname
                    add_file(p, str(p), real_here)
        else:
            add_file(inp, str(inp))
    return sources, skipped


# ----------------------------------------------------------------------------- results


@dataclass
class Issue:
    """One problem found in one file, located by defined name and address."""

    path: str
    employee: str
    cell: str
    address: str
    kind: str
    severity: str  # error | warning | info
    message: str

    def as_dict(self) -> dict[str, str]:
        return {
            "file": safe_text(self.path),
            "employee": safe_text(self.employee),
            "cell": safe_text(self.cell),
            "address": safe_text(self.address),
            "kind": self.kind,
            "severity": self.severity,
            "message": safe_text(self.message),
        }


class IndicatorLine(NamedTuple):
    """One indicator of one form, for the 明细 sheet and ``recalc`` (a tuple: a dozen
    per form travel between processes and through the spool). ``inputs`` and
    ``rule``, which only ``recalc`` shows, are left empty by ``collect``."""

    indicator: str
    name: str
    section_id: str
    section: str
    target: Value
    actual: Value
    inputs: list[tuple[str, str, Value]]  # (defined name, label, value used)
    system: Value
    raters: dict[str, Value]  # rater label -> value typed
    final: Value
    weight: Value  # effective weight (fraction), or points on points forms
    weighted: Value
    full: Decimal
    rule: str

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return IndicatorLine, tuple(self)  # pickled as the plain tuple: ~2x faster


# a result's lines and scores travel and are spooled as plain values (spool.rows_of)
rows_of("lines", IndicatorLine)
rows_of("scores", ScoreRow)


@dataclass
class FileResult:
    """Everything learnt about one input file."""

    path: str
    size: int
    mtime: float
    sha256: str = ""
    status: str = REJECTED
    issues: list[Issue] = field(default_factory=list)
    identified: bool = False
    employee_id: str = ""
    name: str = ""
    department: str = ""
    position: str = ""
    period: str = ""
    template_id: str = ""
    template_version: str = ""
    template_title: str = ""
    composition: str = ""
    sections: list[tuple[str, str, Value]] = field(default_factory=list)
    total: Decimal | None = None
    total_in_file: Value = None
    grade: str | None = None
    coef: Decimal | None = None
    pay: Decimal | None = None
    grades: list[tuple[str, str]] = field(default_factory=list)  # (grade, label) best first
    lines: list[IndicatorLine] = field(default_factory=list)
    scores: list[ScoreRow] = field(default_factory=list)
    counted: bool = False
    value_engine: str = ""
    seconds: float = 0.0
    #: for ``recalc --write``: the form sheet, name -> coordinate, and every computed
    #: cell's value recomputed from the inputs as typed (what the sheet itself shows);
    #: coords and as_typed are left empty by collect (Context.for_recalc)
    sheet: str = ""
    date_cells: int = 0  # header date cells the layout has (checked)
    signature_cells: int = 0  # signature name cells the layout has (checked)
    coords: dict[str, str] = field(default_factory=dict)
    as_typed: dict[str, Value] = field(default_factory=dict)
    #: a form of an older template version: the total under the current built-in one
    current_version: str = ""
    current_total: Decimal | None = None

    def add(
        self, kind: str, severity: str, message: str, cell: str = "", address: str = ""
    ) -> None:
        self.issues.append(
            Issue(self.path, self.employee_id, cell, address, kind, severity, message)
        )

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def reason(self) -> str:
        """The first error (why it was rejected), else the first warning."""
        for sev in ("error", "warning"):
            for i in self.issues:
                if i.severity == sev:
                    where = f"[{i.cell} {i.address}] " if i.cell else ""
                    return where + i.message
        return ""

    def settle(self) -> None:
        self.status = REJECTED if self.errors else WARNING if self.warnings else ACCEPTED

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": safe_text(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "modified": dt.datetime.fromtimestamp(self.mtime).replace(microsecond=0).isoformat()
            if self.mtime
            else None,
            "status": self.status,
            "reason": safe_text(self.reason),
            "employee_id": safe_text(self.employee_id),
            "name": safe_text(self.name),
            "department": safe_text(self.department),
            "position": safe_text(self.position),
            "period": safe_text(self.period),
            "template_id": safe_text(self.template_id),
            "template_version": safe_text(self.template_version),
            "counted": self.counted,
            "total": _json_num(self.total),
            "total_in_file": _json_value(self.total_in_file),
            "grade": safe_text(self.grade) if self.grade else None,
            "pay": _json_num(self.pay),
            "sections": {safe_text(sid): _json_value(v) for sid, _n, v in self.sections},
            "current_template": {
                "version": safe_text(self.current_version),
                "total": _json_num(self.current_total),
            }
            if self.current_version
            else None,
            "issues": [i.as_dict() for i in self.issues],
        }


def _json_num(d: Decimal | None) -> float | None:
    return None if d is None else float(d)


def _json_value(v: object) -> object:
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bool) or v is None or isinstance(v, int | float):
        return v
    return safe_text(v)


# ------------------------------------------------------------------------- templates


@dataclass
class _Template:
    form: m.Form
    cf: CompiledForm
    sha256: str


#: Templates by the SHA-256 of their text, kept for the life of the process (a template
#: compiles once however many forms and collections use it).
_TEMPLATES: dict[str, _Template | SpecError] = {}


class Context:
    """What every file check shares: the secret, limits and template caches."""

    def __init__(
        self,
        secret: bytes | None = None,
        limits: Limits = DEFAULT_LIMITS,
        fast: bool = True,
        for_recalc: bool = True,
    ) -> None:
        #: read with kpi_excel.fastread (same answers, without openpyxl) or read.Book
        self.fast = fast
        #: keep what only ``recalc`` uses (FileResult.coords and as_typed, each line's
        #: inputs and rule text); collect, whose ledger and summary never show them,
        #: leaves them out
        self.for_recalc = for_recalc
        self.secret = resolve_secret(secret)
        self.default_secret = secret is None and not os.environ.get("KPI_EXCEL_SECRET")
        self.limits = limits
        self._by_sha = _TEMPLATES
        self._by_text: dict[str, _Template] = {}  # (successfully compiled) text -> template
        self._builtin: dict[str, tuple[str, str]] | None = None
        self._current: dict[str, _Template | None] = {}

    def template(self, text: str, source: str) -> _Template:
        got_text = self._by_text.get(text)  # the same text in every form: no hashing
        if got_text is not None:
            return got_text
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        got = self._by_sha.get(sha)
        if got is None:
            try:
                form = load_form_text(text, source)
                got = _Template(form, compile_form(form), sha)
            except SpecError as e:
                got = e
            self._by_sha[sha] = got
        if isinstance(got, SpecError):
            raise got
        if len(self._by_text) >= 64:
            self._by_text.clear()
        self._by_text[text] = got
        return got

    def builtin(self) -> dict[str, tuple[str, str]]:
        """Built-in template id -> (version, SHA-256 of the file's bytes)."""
        if self._builtin is None:
            folder = builtin_dir()
            stamp = tuple(
                (p.name, p.stat().st_mtime_ns, p.stat().st_size)
                for p in sorted(folder.glob("*.yaml"))
            )
            self._builtin = dict(_builtin_versions(str(folder), stamp))
        return self._builtin

    def current(self, template_id: str) -> _Template | None:
        """The built-in template with this id as it is now (None if there is none or
        it cannot be loaded): to show what an older form would score today."""

        cache = self._current
        if template_id in cache:
            return cache[template_id]
        sha = self.builtin().get(template_id, ("", ""))[1]
        found = None
        for path in sorted(builtin_dir().glob("*.yaml")) if sha else []:
            raw = path.read_bytes()
            if hashlib.sha256(raw).hexdigest() != sha:
                continue
            try:
                found = self.template(raw.decode("utf-8-sig").replace("\r\n", "\n"), str(path))
            except (SpecError, UnicodeDecodeError):
                found = None
            break
        cache[template_id] = found
        return found


_TOP_KEY = re.compile(r"^(id|version):[ \t]*(?:\"([^\"]*)\"|'([^']*)'|([^#\s]+))", re.M)


@functools.lru_cache(maxsize=4)
def _builtin_versions(
    folder: str, stamp: tuple[tuple[str, int, int], ...]
) -> tuple[tuple[str, tuple[str, str]], ...]:
    """(id, (version, sha256)) of every built-in template, read once per folder state.

    Only the top-level ``id`` and ``version`` are needed: they are read with a regex
    (a full YAML parse of every template costs ~0.2 s each), YAML only as a fallback.
    """
    out = []
    for name, _m, _s in stamp:
        raw = (Path(folder) / name).read_bytes()
        text = raw.decode("utf-8-sig", errors="replace")
        found = {
            mt.group(1): next(g for g in mt.groups()[1:] if g is not None)
            for mt in _TOP_KEY.finditer(text)
        }
        if "id" not in found or "version" not in found:
            import yaml

            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            if not isinstance(data, dict) or "id" not in data:
                continue
            found = {"id": str(data["id"]), "version": str(data.get("version", ""))}
        out.append((found["id"], (found["version"], hashlib.sha256(raw).hexdigest())))
    return tuple(out)


# --------------------------------------------------------------------- value helpers


def _same(cached: object, want: Value) -> bool:
    """Whether a cached cell value shows what the engine computed."""
    if isinstance(cached, CellError):
        return isinstance(want, str) and want == cached.code
    if want is None:
        return cached in (None, "", 0, 0.0)
    if isinstance(want, str):
        if want == "":
            return cached in (None, "")
        return isinstance(cached, str) and cached == want
    if isinstance(want, bool):
        return isinstance(cached, bool) and cached == want
    if type(cached) is float and type(want) is Decimal and cached == float(want):
        return True  # the double nearest to want: far within the tolerance below
    if isinstance(cached, bool) or not isinstance(cached, int | float):
        return False
    got = Decimal(repr(cached)) if isinstance(cached, float) else Decimal(cached)
    return abs(got - want) <= Decimal("1e-9") * max(Decimal(1), abs(want))


def _show(v: object) -> str:
    if v is None:
        return "（空）"
    if isinstance(v, CellError):
        return v.code
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, float):
        return format(Decimal(repr(v)).normalize(), "f")
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if v == "":
        return "（空文本）"
    return str(v)


def _decimal(v: object) -> Decimal | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, Decimal):
        return v
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    return None


@functools.lru_cache(maxsize=256)
def _placeholders(text: str) -> frozenset[str]:
    return frozenset(placeholders(text))


_RULE_KINDS = {
    "linear": "线性",
    "tiers": "分档",
    "deduction": "扣分",
    "nonoverlap": "扣分（不重叠）",
    "level": "等级",
    "rating": "评价",
    "binary": "是否",
    "reverse": "反向",
    "manual": "人工评分",
    "custom": "自定义",
}


@functools.lru_cache(maxsize=4096)  # the same rule texts recur form after form
def _rule_line(
    kind: str, method: str, ctx: tuple[tuple[str, str], ...], render: bool = True
) -> str:
    """The 计分规则 text of a line: the rule kind and the method with its placeholders
    filled from ``ctx`` (only the names the method uses: they are the key)."""
    if render and "{" in method:
        with contextlib.suppress(Exception):  # wording only: never let it stop a check
            method = render_text(method, dict(ctx))
    method = " ".join(method.split())
    word = _RULE_KINDS.get(kind, kind)
    return f"{word}：{method}" if method else word


def _rule_text(ind: m.Indicator, values: dict[str, object], extra: dict[str, object]) -> str:
    method = ind.method
    ctx: list[tuple[str, str]] = []
    if "{" in method:
        try:
            # the placeholders the text uses, formatted as spec.text.indicator_context
            # does (an input of the indicator before a name of ``extra``)
            for k in sorted(_placeholders(method)):
                spec = ind.inputs.get(k)
                if spec is not None:
                    ctx.append((k, format_value(values.get(k), spec)))
                elif k in extra:
                    ctx.append((k, format_value(extra[k])))
        except Exception:  # wording only: never let it stop a check (shown unfilled)
            return _rule_line(ind.rule.kind, method, (), render=False)
    return _rule_line(ind.rule.kind, method, tuple(ctx))


# ------------------------------------------------------------------- the file check


@functools.lru_cache(maxsize=64)  # every form of a template embeds the same text
def _text_digests(text: str) -> frozenset[str]:
    """SHA-256 of a template file that reads as ``text`` (the generator hashes the file's
    bytes, and embeds its text with the BOM dropped and CRLF turned into LF)."""
    out = set()
    for body in (text, text.replace("\n", "\r\n")):
        for bom in (b"", b"\xef\xbb\xbf"):
            out.add(hashlib.sha256(bom + body.encode("utf-8")).hexdigest())
    return frozenset(out)


def _check_meta(
    res: FileResult, book: Book, ctx: Context
) -> tuple[dict[str, str], _Template] | None:
    if book.sheet("_meta") is None:
        res.add(
            "not_a_form",
            "error",
            "没有隐藏的 _meta 表：这不是本工具生成的考核表，或被复制/另存到了新工作簿；请使用下发的原表填写",
        )
        return None
    meta = book.meta("_meta")
    if meta.get("format") != FORMAT:
        res.add(
            "not_a_form",
            "error",
            f"_meta 表格式为“{meta.get('format', '')}”，不是 {FORMAT}；不是本工具生成的考核表",
        )
        return None
    res.identified = True
    res.employee_id = meta.get("employee_id", "").strip()
    res.name = meta.get("name", "")
    res.department = meta.get("department", "")
    res.position = meta.get("position", "")
    res.period = meta.get("period", "")
    res.template_id = meta.get("template_id", "")
    res.template_version = meta.get("template_version", "")
    res.template_title = meta.get("template_title", "")
    for issue in res.issues:
        issue.employee = res.employee_id
    text = meta.get("template_yaml", "")
    if not text:
        res.add(
            "template_missing", "error", "_meta 中没有模板内容（template_yaml），无法按原模板重算"
        )
        return None
    sha = meta.get("template_sha256", "")
    if sha not in _text_digests(text):
        res.add(
            "template_changed",
            "error",
            "表内嵌的模板内容与其 SHA-256 校验值不符：模板内容被改动过，无法信任；请用下发的原表重新填写",
            "",
            "_meta",
        )
        return None
    try:
        tpl = ctx.template(text, f"{res.template_id} {res.template_version}")
    except SpecError as e:
        res.add("template_invalid", "error", f"表内嵌的模板无法读取：{e}")
        return None
    if tpl.form.id != res.template_id or tpl.form.version != res.template_version:
        res.add(
            "template_changed",
            "error",
            f"_meta 记录的模板 {res.template_id} {res.template_version} 与内嵌模板 "
            f"{tpl.form.id} {tpl.form.version} 不一致",
        )
        return None
    builtin = ctx.builtin().get(res.template_id)
    if builtin is None:
        res.add(
            "template_unknown",
            "warning",
            f"模板 {res.template_id}（{res.template_title}）不是内置模板：已按表内嵌的模板 "
            f"{res.template_version} 版重算；请确认这是本单位使用的模板",
        )
    elif builtin[0] != res.template_version:
        res.add(
            "template_old",
            "warning",
            f"此表按模板 {res.template_id} 的 {res.template_version} 版生成，当前内置版本为 {builtin[0]}："
            f"已按表内的 {res.template_version} 版计分",
        )
    elif builtin[1] != sha:
        res.add(
            "template_differs",
            "info",
            f"模板 {res.template_id} {res.template_version} 版的内容与当前内置文件略有不同（版本号相同）；已按表内嵌的模板计分",
        )
    kind = tpl.form.period
    if not _PERIOD_RE[kind].match(res.period):
        res.add(
            "period_format",
            "error",
            f"考核期“{res.period}”与模板的{m.PERIOD_KINDS[kind]}周期不符（应形如 {_PERIOD_EXAMPLE[kind]}）",
        )
    return meta, tpl


def _label(cf: CompiledForm, name: str) -> str:
    """A cell's label for messages (worked out once per template and name)."""
    labels = cf.__dict__.setdefault("_labels", {})
    got = labels.get(name)
    if got is None:
        got = labels[name] = _label_now(cf, name)
    return got  # type: ignore[no-any-return]


def _label_now(cf: CompiledForm, name: str) -> str:
    inp = cf.input_by_name.get(name)
    if inp is None:
        cell = cf.cell_by_name.get(name)
        if cell is None:
            return name
        ind = next((i for _s, i in cf.form.indicators() if i.id == cell.indicator), None)
        return f"{ind.name}·{cell.label}" if ind else cell.label
    if inp.indicator:
        ind = next(i for _s, i in cf.form.indicators() if i.id == inp.indicator)
        return f"{ind.name}·{inp.spec.label}"
    return inp.spec.label


def _expected_plan(meta: dict[str, str], tpl: _Template) -> Any | None:
    """The form sheet as generated, rebuilt from the form's own meta (None if impossible)."""
    try:
        from kpi_excel import layout
    except ImportError:
        return None
    try:
        roster = json.loads(meta.get("roster_json") or "{}")
        fields = {str(k): str(v) for k, v in (roster.get("fields") or {}).items()}
        values: dict[str, Decimal | None] = {}
        for k, v in (roster.get("targets") or {}).items():
            values[str(k)] = None if v is None else Decimal(str(v))
        if roster.get("q") is not None:
            values["hdr_q"] = Decimal(str(roster["q"]))
        period = layout.parse_period(meta.get("period", ""), tpl.form.period)
        return layout.layout_form(tpl.cf, fields, values, period, meta.get("company", ""))
    except Exception:  # an old or foreign meta layout: fall back to what the names say
        return None


@functools.lru_cache(maxsize=4096)  # the same coordinates, form after form
def _row_of(coord: str) -> tuple[int, str]:
    mt = re.match(r"^([A-Z]+)(\d+)$", coord)
    assert mt is not None
    return int(mt.group(2)), mt.group(1)


def _cell_order(coord: str) -> tuple[int, int, str]:
    """A coordinate's place in row-major order."""
    row, col = _row_of(coord)
    return row, len(col), col


def _restored(
    cells: list[tuple[str, object]], formulas: Mapping[str, str]
) -> list[tuple[str, object]]:
    """Locked cells (row-major, the empty ones left out) with the given ones
    (coordinate -> formula) holding those formulas again, emptied ones put back in
    their place."""
    out = [(c, formulas[c]) if c in formulas else (c, v) for c, v in cells]
    present = {c for c, _v in cells if c in formulas}
    if len(present) < len(formulas):
        out += [(c, f) for c, f in formulas.items() if c not in present]
        out.sort(key=lambda cell: _cell_order(cell[0]))
    return out


def _locked_diff(
    expected: list[tuple[str, object]], now: list[tuple[str, object]]
) -> list[tuple[str, str, str, str]]:
    """Changed locked cells as (old coord, new coord, old text, new text).

    Rows are aligned first (difflib over whole-row contents), so rows a manager
    inserted or deleted do not make every cell below them look changed.
    """

    def rows(cells: list[tuple[str, object]]) -> list[tuple[int, dict[str, str]]]:
        by: dict[int, dict[str, str]] = {}
        for c, v in cells:
            r, col = _row_of(c)
            text = canonical(v)
            if text != "":
                by.setdefault(r, {})[col] = text
        return sorted(by.items())

    a, b = rows(expected), rows(now)
    sig_a = [tuple(sorted(d.items())) for _r, d in a]
    sig_b = [tuple(sorted(d.items())) for _r, d in b]
    out: list[tuple[str, str, str, str]] = []
    sm = difflib.SequenceMatcher(None, sig_a, sig_b, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            continue
        pairs = list(zip(range(i1, i2), range(j1, j2), strict=False))
        for i, j in pairs:
            (ra, da), (rb, db) = a[i], b[j]
            for col in sorted(set(da) | set(db), key=lambda s: (len(s), s)):
                if da.get(col) != db.get(col):
                    out.append((f"{col}{ra}", f"{col}{rb}", da.get(col, ""), db.get(col, "")))
        for i in range(i1 + len(pairs), i2):
            ra, da = a[i]
            out += [(f"{c}{ra}", "", t, "") for c, t in sorted(da.items())]
        for j in range(j1 + len(pairs), j2):
            rb, db = b[j]
            out += [("", f"{c}{rb}", "", t) for c, t in sorted(db.items())]
    return out


def _clip(s: str, n: int = 80) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _describe_cell(plan: Any, coord: str, cf: CompiledForm) -> tuple[str, bool]:
    """（指标·列名） of a cell of the generated sheet, and whether it shows a percent."""
    if not coord:
        return "", False
    row, letters = _row_of(coord)
    col = 0
    for ch in letters:
        col = col * 26 + ord(ch) - 64
    r, c = row - 1, col - 1
    cell = plan.cells.get((r, c))
    pct = cell is not None and "%" in str(dict(cell.style).get("num_format", ""))
    head = plan.freeze[0] - 1 if plan.freeze[0] else None
    label = ""
    if head is not None and r > head:
        h = plan.cells.get((head, c))
        label = str(h.value) if h is not None and isinstance(h.value, str) else ""
    ind_name = ""
    for name, (nr, _nc) in plan.names.items():
        if nr != r:
            continue
        ind = cf.input_by_name[name].indicator if name in cf.input_by_name else None
        if ind is None and name in cf.cell_by_name:
            ind = cf.cell_by_name[name].indicator
        if ind:
            ind_name = next(i.name for _s, i in cf.form.indicators() if i.id == ind)
            break
    parts = [p for p in (ind_name, label) if p]
    return (f"（{'·'.join(parts)}）" if parts else ""), pct


def _as_shown(text: str, pct: bool) -> str:
    if not pct or not text:
        return text
    try:
        return format((Decimal(text) * 100).normalize(), "f") + "%"
    except ArithmeticError:
        return text


def _score_heads(tpl: _Template) -> list[tuple[str, str, str | None, str | None]]:
    """(cell, kind, indicator, section) of each computed cell's score row, worked out
    once per template."""
    got = tpl.__dict__.get("_score_heads")
    if got is None:
        got = [(c.name, c.kind, c.indicator, c.section) for c in tpl.cf.cells]
        tpl.__dict__["_score_heads"] = got
    return got  # type: ignore[no-any-return]


def _formula_texts(tpl: _Template) -> dict[str, tuple[str, str]]:
    """Each computed cell's formula as generated (``=…``) and its canonical text,
    worked out once per template."""

    got = tpl.__dict__.get("_formulas")
    if got is None:
        got = {}
        for c in tpl.cf.cells:
            text = "=" + c.expr.to_excel(lambda n: n)
            got[c.name] = (text, canonical(text))
        tpl.__dict__["_formulas"] = got
    return got


def _check_integrity(
    res: FileResult,
    book: Book,
    meta: dict[str, str],
    tpl: _Template,
    sheet: str,
    ctx: Context,
    addr: dict[str, str],
) -> set[str]:
    """Formulas and the fingerprint. Returns the names of overwritten formula cells."""

    ws = book.sheet_cells(sheet)
    overwritten: set[str] = set()
    formulas = _formula_texts(tpl)
    for cell in tpl.cf.cells:
        ref = book.names.get(cell.name)
        if ref is None or ref.problem or ref.coord is None:
            continue
        want, want_text = formulas[cell.name]
        got = ws.value(ref.coord)
        if got == want and type(got) is str:
            continue  # the formula as written (canonical texts are equal too)
        got_text = canonical(got)
        if got_text != want_text:
            overwritten.add(cell.name)
            if isinstance(got, str) and got.startswith("="):
                what = f"公式被改为 {_clip(got_text)}"
            else:
                what = f"公式被覆盖成了固定值 {_show(got)}"
            res.add(
                "formula_overwritten",
                "error",
                f"“{_label(tpl.cf, cell.name)}”{what}（原公式 {_clip(want)}）；请用下发的原表重新填写",
                cell.name,
                addr.get(cell.name, ""),
            )

    # (the fingerprint text leaves meta's own "fingerprint" out)
    lines = ws.fingerprint_lines()  # they stand for the locked cells
    encoded = ws.fingerprint_bytes()  # and, where kept, their UTF-8
    if fingerprint(
        ctx.secret, res.template_version, [], meta, cell_lines=lines, cell_bytes=encoded
    ) == meta.get("fingerprint", ""):
        return overwritten
    now = ws.locked_cells()
    formula_cells = {addr.get(n, "").rpartition("!")[2] for n in overwritten}
    if overwritten:
        # typed over a formula (the total, most often), nothing else: the locked cells
        # with those formulas put back give the fingerprint, so they are the sheet as
        # generated, and what the rebuilt sheet below would be compared with (its
        # fingerprint the same). When every difference is an overwritten formula,
        # already reported, the sheet need not be rebuilt (~3 ms a form)
        put_back = {book.names[n].coord or "": formulas[n][0] for n in overwritten}
        restored = _restored(now, put_back)
        mark = fingerprint(ctx.secret, res.template_version, restored, meta)
        if mark == meta.get("fingerprint", "") and all(
            new_c and new_c in formula_cells for _o, new_c, _a, _b in _locked_diff(restored, now)
        ):
            return overwritten
    plan = _expected_plan(meta, tpl)
    expected = plan.locked_cells() if plan is not None else None
    if expected is not None and fingerprint(
        ctx.secret, res.template_version, expected, meta
    ) == meta.get("fingerprint", ""):
        changes = _locked_diff(expected, now)
        name_at = {
            ref.coord: n for n, ref in book.names.items() if ref.coord and ref.sheet == sheet
        }
        shown = 0
        for old_c, new_c, old_t, new_t in changes:
            if new_c and new_c in formula_cells:
                continue  # already reported as an overwritten formula
            name = name_at.get(new_c, "")
            where = f"{sheet}!{new_c}" if new_c else f"{sheet}!{old_c}（已删除）"
            moved = f"（原位置 {old_c}）" if old_c and new_c and old_c != new_c else ""
            desc, pct = _describe_cell(plan, old_c or new_c, tpl.cf)
            old_s, new_s = _as_shown(old_t, pct), _as_shown(new_t, pct)
            if not new_t:
                what = f"锁定单元格{desc}的内容被删除：原为“{_clip(old_s)}”"
            elif not old_t:
                what = f"锁定区域新增了内容“{_clip(new_s)}”"
            else:
                what = f"锁定单元格{desc}被改动{moved}：原为“{_clip(old_s)}”，现为“{_clip(new_s)}”"
            res.add("locked_changed", "error", what + "；请用下发的原表重新填写", name, where)
            shown += 1
        if not changes and not any(i.kind == "rows_moved" for i in res.issues):
            res.add(
                "rows_moved",
                "info",
                "表内插入或删除了行，锁定内容未改动；已按名称读取各单元格",
            )
        elif shown == 0 and not overwritten:  # pragma: no cover - defensive
            res.add("fingerprint", "error", "指纹校验不符：锁定内容被改动")
        return overwritten
    hint = (
        "若生成时设置了 KPI_EXCEL_SECRET，回收时也须设置相同的值"
        if ctx.default_secret
        else "请确认回收时的 KPI_EXCEL_SECRET 与生成时相同"
    )
    if expected is not None:
        # the sheet rebuilt by this tool version does not give the recorded fingerprint:
        # the form came from another tool version (its layout may differ), the meta was
        # edited, or another key was used. The rebuilt sheet is still the best guess.
        changes = [c for c in _locked_diff(expected, now) if not (c[1] and c[1] in formula_cells)]
        version = meta.get("tool_version", "")
        if not changes:
            res.add(
                "fingerprint",
                "error",
                "指纹校验不符，而锁定单元格与原表一致：隐藏的 _meta 信息被改动，"
                f"或生成时使用了不同的密钥（{hint}）",
                "",
                "_meta",
            )
            return overwritten
        listed = "；".join(
            f"{new_c or old_c}：原为“{_clip(old_t, 30)}”，现为“{_clip(new_t, 30)}”"
            for old_c, new_c, old_t, new_t in changes[:8]
        )
        more = f" 等 {len(changes)} 处" if len(changes) > 8 else ""
        origin = (
            f"此表由 {version} 版生成，当前为 {__version__} 版，对照仅供参考"
            if version and version != __version__
            else "对照仅供参考"
        )
        res.add(
            "fingerprint",
            "error",
            f"指纹校验不符：锁定单元格或隐藏的 _meta 信息被改动。与重建的原表相比，以下锁定单元格不同"
            f"（{origin}）：{listed}{more}；请用下发的原表重新填写",
            "",
            f"{sheet}!{changes[0][1] or changes[0][0]}",
        )
        return overwritten
    res.add(
        "fingerprint",
        "error",
        "指纹校验不符：锁定单元格或隐藏的 _meta 信息被改动（无法还原原表以指出具体单元格）；"
        "请用下发的原表重新填写",
    )
    return overwritten


@functools.lru_cache(maxsize=256)  # the same few specs, form after form
def _cell_spec(label: str, kind: str) -> m.InputSpec:
    """The spec a header date, signature or signature date cell is checked against."""
    return m.InputSpec(label=label, kind=kind, required=False)


def _check_dates(res: FileResult, book: Book, form: m.Form, checked: dict[str, Checked]) -> None:
    """Header date cells (``hdr_input_N`` whose label says 日期), where the layout has them."""
    n = 0
    for h in form.header:
        if h.source != "input":
            continue
        n += 1
        name = f"hdr_input_{n}"
        ref = book.names.get(name)
        if ref is None or ref.problem:
            continue
        raw = book.value(name)
        is_date = "日期" in h.label
        res.date_cells += is_date
        spec = _cell_spec(h.label, "date" if is_date else "text")
        c = check_input(raw, spec, role="header")
        checked[name] = c
        for f in c.findings:
            res.add(f.kind, f.severity, f.message, name, ref.address)
        if not is_date:
            continue
        if c.value is None:
            res.add("date_missing", "warning", f"“{h.label}”未填写", name, ref.address)
            continue
        _date_in_range(res, h.label, c.value, name, ref.address)


_TOMORROW: tuple[float, dt.date] = (0.0, dt.date.min)


def _tomorrow() -> dt.date:
    """Tomorrow's date, worked out at most once a second (``date.today`` reads the
    local time zone: a few of them per form added up)."""
    global _TOMORROW
    now = time.time()
    at, day = _TOMORROW
    if not 0 <= now - at < 1:
        day = dt.date.today() + dt.timedelta(days=1)
        _TOMORROW = (now, day)
    return day


def _date_in_range(res: FileResult, label: str, value: Any, name: str, address: str) -> None:
    """A typed date (a serial number) should fall in or after the period, not later than
    tomorrow, and not more than a year after the period."""
    if not isinstance(value, Decimal):
        return
    day = (dt.datetime(1899, 12, 30) + dt.timedelta(days=int(value))).date()
    start, end = _period_bounds(res.period)
    if start and day < start:
        res.add(
            "date_range",
            "warning",
            f"“{label}”为 {day}，早于考核期 {res.period} 的开始；请核对",
            name,
            address,
        )
    elif day > _tomorrow():
        res.add("date_range", "warning", f"“{label}”为 {day}，晚于今天；请核对", name, address)
    elif end and day > end + dt.timedelta(days=366):
        res.add(
            "date_range",
            "warning",
            f"“{label}”为 {day}，距考核期结束超过一年；请核对",
            name,
            address,
        )


def _check_signatures(
    res: FileResult, book: Book, form: m.Form, checked: dict[str, Checked]
) -> None:
    """Each signer's name (``sig_N``) and date (``sig_N_date``) under the form.

    A missing signature is a warning, not a rejection: some teams still sign the
    printout. Forms generated before these cells existed are skipped (see _notes).
    """
    for n, who in enumerate(form.signatures, start=1):
        name, dname = f"sig_{n}", f"sig_{n}_date"
        ref = book.names.get(name)
        if ref is None or ref.problem:
            continue
        res.signature_cells += 1
        text_spec = _cell_spec(f"{who}签字", "text")
        c = check_input(book.value(name), text_spec, role="signature")
        checked[name] = c
        signed = c.value not in (None, "") and str(c.value).strip() != ""
        if not signed:
            res.add("signature_missing", "warning", f"“{who}”未签字", name, ref.address)
        elif who.startswith(("被考核", "受考核")) and res.name and str(c.value).strip() != res.name:
            shown = safe_text(str(c.value).strip()[:20])
            res.add(
                "signature_mismatch",
                "warning",
                f"“{who}”签字为“{shown}”，与被考核人姓名“{res.name}”不一致；请核对",
                name,
                ref.address,
            )
        dref = book.names.get(dname)
        if dref is None or dref.problem:
            continue
        date_spec = _cell_spec(f"{who}签字日期", "date")
        d = check_input(book.value(dname), date_spec, role="signature")
        checked[dname] = d
        for f in d.findings:
            res.add(f.kind, f.severity, f.message, dname, dref.address)
        if d.value is None:
            if signed:
                res.add("date_missing", "warning", f"“{who}”已签字但未填日期", dname, dref.address)
            continue
        _date_in_range(res, f"{who}签字日期", d.value, dname, dref.address)


@functools.lru_cache(maxsize=64)  # one period per collection, in every form
def _period_bounds(period: str) -> tuple[dt.date | None, dt.date | None]:
    try:
        if re.fullmatch(r"\d{4}-\d{2}", period):
            y, mo = map(int, period.split("-"))
            start = dt.date(y, mo, 1)
            end = (dt.date(y + (mo == 12), mo % 12 + 1, 1)) - dt.timedelta(days=1)
            return start, end
        if re.fullmatch(r"\d{4}-Q[1-4]", period):
            y, q = int(period[:4]), int(period[-1])
            start = dt.date(y, 3 * q - 2, 1)
            end = dt.date(y + (q == 4), (3 * q) % 12 + 1, 1) - dt.timedelta(days=1)
            return start, end
        if re.fullmatch(r"\d{4}", period):
            return dt.date(int(period), 1, 1), dt.date(int(period), 12, 31)
    except ValueError:
        pass
    return None, None


def _check_sheets(res: FileResult, book: Book, cf: CompiledForm, sheet: str) -> str | None:
    """The form sheet's name now (None: the file is rejected), and notes on the others.

    ``_meta`` unhidden by a user is a warning (its content is covered by the
    fingerprint); LibreOffice saves it *hidden* instead of very hidden, which is fine.
    A form sheet renamed by a user is still found through its defined names.
    """
    meta_ref = book.sheet("_meta")
    if meta_ref is not None and meta_ref.state == "visible":
        res.add(
            "meta_visible",
            "warning",
            "隐藏的 _meta 表被取消隐藏了（其内容受指纹保护，未改动时不影响计分）；请勿改动 _meta 表",
            "",
            "_meta",
        )
    if book.sheet(sheet) is None:
        pointed = Counter(
            ref.sheet
            for n in [c.name for c in cf.cells]
            if (ref := book.names.get(n)) is not None and not ref.problem and ref.sheet
        )
        now = pointed.most_common(1)[0][0] if pointed else None
        if now is None or now == "_meta" or book.sheet(now) is None:
            res.add(
                "sheet_missing",
                "error",
                f"找不到考核表工作表“{sheet}”（被删除，或被复制到了新工作簿）；请用下发的原表填写",
            )
            return None
        res.add(
            "sheet_renamed",
            "warning",
            f"考核表工作表被改名：原为“{sheet}”，现为“{now}”；已按单元格名称读取，内容照常核对",
            "",
            now,
        )
        sheet = now
    extra = [s.name for s in book.sheets if s.name not in (sheet, "_meta")]
    if extra:
        res.add(
            "extra_sheet",
            "info",
            f"表内新增了工作表：{'、'.join(f'“{_clip(n, 30)}”' for n in extra[:5])}"
            f"{' 等' if len(extra) > 5 else ''}；其内容不参与计分",
        )
    return sheet


def _issued_values(meta: dict[str, str]) -> dict[str, Decimal]:
    """Targets (and Q) as issued with the form, from the roster record in ``_meta``."""
    try:
        roster = json.loads(meta.get("roster_json") or "{}")
        out = {
            str(k): Decimal(str(v))
            for k, v in (roster.get("targets") or {}).items()
            if v is not None
        }
        if roster.get("q") is not None:
            out["hdr_q"] = Decimal(str(roster["q"]))
        return out
    except (ValueError, AttributeError, ArithmeticError, TypeError):
        return {}


def _plain_text(v: object) -> str:
    if v is None or isinstance(v, CellError):
        return ""
    text = v if isinstance(v, str) else canonical(v)
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _check_identity(res: FileResult, book: Book, meta: dict[str, str]) -> None:
    """The person in the header cells must be the person in ``_meta``.

    A ``_meta`` sheet copied from another employee's form (or a form saved over
    another person's file) identifies the return as someone else's: that is reported
    first, before the fingerprint lists the header cells that differ.
    """
    for name, key, label in (
        ("hdr_employee_id", "employee_id", "工号"),
        ("hdr_name", "name", "姓名"),
    ):
        ref = book.names.get(name)
        if ref is None or ref.problem:
            continue
        shown, want = _plain_text(book.value(name)), _plain_text(meta.get(key, ""))
        if shown and want and shown != want:
            res.add(
                "meta_swapped",
                "error",
                f"文件被调换：隐藏的 _meta 记录的是 {res.employee_id} {res.name} 的考核表，"
                f"而表头{label}为“{_clip(shown, 30)}”。可能把别人的表另存或复制成了此文件；"
                f"请用下发给本人的原表填写",
                name,
                ref.address,
            )
            return


def _compare_current(res: FileResult, ctx: Context, checked: dict[str, Checked]) -> None:
    """For a form of an older template version: the total under the current built-in
    version, added to the ``template_old`` finding (the form's own version counts)."""
    issue = next((i for i in res.issues if i.kind == "template_old"), None)
    if issue is None:
        return
    cur = ctx.current(res.template_id)
    if cur is None:
        return
    values: dict[str, Value] = {}
    lacking: list[str] = []
    for inp in cur.cf.inputs:
        got = checked.get(inp.name)
        values[inp.name] = got.value if got is not None else None
        if got is None and inp.spec.source == "form" and inp.spec.required:
            lacking.append(_label(cur.cf, inp.name))
    try:
        now = evaluate(cur.cf, values)
    except Exception as e:  # a wording of the comparison only: never stop the check
        issue.message += f"。无法按当前 {cur.form.version} 版重算（{type(e).__name__}）"
        return
    total = now.get("total")
    grade = now.get("grade")
    res.current_version = cur.form.version
    res.current_total = total if isinstance(total, Decimal) else None
    mine = f"总分 {_show(res.total)}" + (f"、等级 {res.grade}" if res.grade else "")
    theirs = f"总分 {_show(res.current_total)}" + (
        f"、等级 {grade}" if isinstance(grade, str) and grade else ""
    )
    if res.total is not None and res.current_total is not None:
        diff = res.current_total - res.total
        delta = "结果相同" if diff == 0 else f"相差 {_show(diff)}"
    else:
        delta = "其中一个版本算不出总分"
    more = f"（当前版本新增的 {'、'.join(lacking[:5])} 此表没有，按空白计）" if lacking else ""
    issue.message += (
        f"。按表内 {res.template_version} 版：{mine}；若按当前 {cur.form.version} 版：{theirs}，"
        f"{delta}{more}"
    )


def check_book(res: FileResult, book: Book, ctx: Context) -> None:
    """Identify, read, recompute and check one opened workbook (fills ``res``)."""
    got = _check_meta(res, book, ctx)
    if got is None:
        return
    meta, tpl = got
    cf, form = tpl.cf, tpl.form
    res.grades = [(g.grade, g.label) for g in form.grades]
    res.composition = form.composition
    found = _check_sheets(res, book, cf, meta.get("sheet", ""))
    if found is None:
        return
    sheet = found

    # -- names --------------------------------------------------------------------
    names_then = _names_then(meta.get("names_json") or "{}")
    addr, findings, complete = _locate_names(book, cf, sheet, names_then)
    for finding in findings:
        res.add(*finding)
    if not complete:
        return
    _check_identity(res, book, meta)

    # -- inputs -------------------------------------------------------------------
    issued = _issued_values(meta)
    raw: dict[str, object] = {}
    checked: dict[str, Checked] = {}
    na_inds: set[str] = set()
    for inp in cf.inputs:
        raw[inp.name] = book.value(inp.name)
        if inp.role == "na" and to_sheet_value(raw[inp.name]) == "是":
            na_inds.add(inp.indicator or "")
    typed_in = [i for i in cf.inputs if i.spec.source == "form" and i.role == "input"]
    blank_form = bool(typed_in) and all(
        raw[i.name] is None or (isinstance(raw[i.name], str) and not str(raw[i.name]).strip())
        for i in typed_in
    )
    if blank_form:
        res.add("blank_form", "error", "考核表未填写：所有填写项都是空的；请填写后再提交")
    ws = book.sheet_cells(sheet)
    for inp in cf.inputs:
        typed = ws.value(book.names[inp.name].coord or "")
        if isinstance(typed, str) and typed.startswith("=") and inp.spec.source == "form":
            # allowed (the cell is unlocked), but the result is what counts: say so
            got = raw[inp.name]
            res.add(
                "input_formula",
                "info" if got not in (None, "") else "warning",
                f"“{_label(cf, inp.name)}”填的是公式 {_clip(typed, 60)}，"
                + (
                    f"按其结果 {_show(got)} 计"
                    if got not in (None, "")
                    else "但没有计算结果（未重新计算）"
                ),
                inp.name,
                addr[inp.name],
            )
    for inp in cf.inputs:
        v = raw[inp.name]
        if blank_form and inp.role == "input":
            checked[inp.name] = Checked(None, v)
            continue
        if isinstance(v, CellError):
            checked[inp.name] = Checked(None, v)
            res.add(
                "input_error",
                "error",
                f"“{_label(cf, inp.name)}”是错误值 {v.code}",
                inp.name,
                addr[inp.name],
            )
            continue
        if inp.spec.source == "roster":
            # locked: the fingerprint reports an edit; the value issued counts
            value = to_sheet_value(v)
            want = issued.get(inp.name)
            if want is not None and not (isinstance(value, Decimal) and value == want):
                res.add(
                    "issued_value",
                    "info",
                    f"“{_label(cf, inp.name)}”按下发时的值 {_show(want)} 计算（表内为 {_show(v)}）",
                    inp.name,
                    addr[inp.name],
                )
                value = want
            checked[inp.name] = Checked(value, v)
            continue
        c = check_input(v, inp.spec, role=inp.role, label=_label(cf, inp.name))
        if inp.indicator in na_inds and inp.role != "na":
            # 不适用: the indicator's own inputs are not needed
            c = Checked(c.value, c.raw, tuple(f for f in c.findings if f.kind != "required"))
        checked[inp.name] = c
        for f in c.findings:
            res.add(f.kind, f.severity, f.message, inp.name, addr[inp.name])

    _check_dates(res, book, form, checked)
    _check_signatures(res, book, form, checked)

    # -- recompute twice -------------------------------------------------------------
    overwritten = _check_integrity(res, book, meta, tpl, sheet, ctx, addr)
    # as the sheet computes it: inputs as typed, and overwritten cells holding what
    # they now hold (their dependents were computed from that)
    typed_in = {n: to_sheet_value(v) for n, v in raw.items() if not isinstance(v, CellError)}
    as_typed = evaluate(cf, typed_in, {n: _cell_value(book.value(n)) for n in overwritten})
    final_in = {n: c.value for n, c in checked.items()}
    # inputs taken as typed (nothing normalised, nothing typed over a formula): the
    # same evaluation, done once
    same = not overwritten and all(
        type(typed_in.get(i.name)) is type(final_in.get(i.name))
        and str(typed_in.get(i.name)) == str(final_in.get(i.name))
        for i in cf.inputs
    )
    final = as_typed if same else evaluate(cf, final_in)
    res.sheet = sheet
    if ctx.for_recalc:
        res.coords = {n: book.names[n].coord or "" for n in addr}
        res.as_typed = {
            c.name: as_typed.get(c.name) for c in cf.cells if c.name not in overwritten
        }

    stale = [
        c.name
        for c in cf.cells
        if c.name not in overwritten and not _same(book.value(c.name), as_typed.get(c.name))
    ]
    if stale:
        # one finding per file, naming every cell: a form filled in a viewer that never
        # recalculates has all its formula cells stale at once
        key = "total" if "total" in stale else stale[0]
        cells = "、".join(f"{n}（{addr[n].rpartition('!')[2]}）" for n in stale)
        res.add(
            "stale_value",
            "warning",
            f"{len(stale)} 个公式单元格的表内值与重算值不符（公式被覆盖或未重新计算）："
            f"如“{_label(cf, key)}”表内显示 {_show(book.value(key))}，按表内输入重算为 "
            f"{_show(as_typed.get(key))}。公式完好，应是填写后未重新计算（如在手机或聊天软件里"
            f"填写），以重算结果为准。涉及：{cells}",
            key,
            addr[key],
        )
    res.value_engine = book.value_engine

    # -- results ---------------------------------------------------------------------
    total = final.get("total")
    res.total = total if isinstance(total, Decimal) else None
    res.total_in_file = _cell_value(book.value("total"))
    g = final.get("grade")
    res.grade = g if isinstance(g, str) and g else None
    res.coef = _decimal(final.get("coef"))
    res.pay = _decimal(final.get("pay"))
    _compare_current(res, ctx, checked)
    if res.total is None and not res.errors:
        blanks = [
            ind.name
            for _s, ind in form.indicators()
            if not isinstance(final.get(f"score_{ind.id}"), Decimal)
            and final.get(f"score_{ind.id}") != "不适用"
        ]
        res.add(
            "no_total",
            "error",
            "无法算出总分"
            + (f"：{'、'.join(blanks)} 没有得分（输入不完整或落在分档空隙）" if blanks else ""),
            "total",
            addr.get("total", ""),
        )
    for sec in form.sections:
        res.sections.append((sec.id, sec.name, final.get(f"sub_{sec.id}")))
    extra = {"period": res.period, "name": res.name, "department": res.department}
    for_recalc = ctx.for_recalc
    for lp in _line_plans(tpl):
        ind = lp.ind
        inputs = [(n, lab, checked[n].value) for n, lab, _col in lp.inputs]
        target = inputs[lp.target_at][2] if lp.target_at is not None else None
        actual = inputs[lp.actual_at][2] if lp.actual_at is not None else None
        if actual is None and target is None and len(inputs) == 1:
            actual = inputs[0][2]
        raters = {}
        for label, n in lp.raters:
            got = checked.get(n)
            raters[label] = got.value if got is not None else None
        if form.composition == "points":
            weight: Value = ind.points
        else:
            weight = final.get(lp.w, ind.weight)
        res.lines.append(
            IndicatorLine(
                indicator=ind.id,
                name=ind.name,
                section_id=lp.sec.id,
                section=lp.sec.name,
                target=target,
                actual=actual,
                inputs=inputs if for_recalc else [],
                system=final.get(lp.sys),
                raters=raters,
                final=final.get(lp.score),
                weight=weight,
                weighted=final.get(lp.ws),
                full=lp.full,
                rule=_rule_text(
                    ind, {k: checked[n].value for k, n in lp.rule_inputs if n in checked}, extra
                )
                if for_recalc
                else "",
            )
        )
    res.scores = ScoreRow.rows(_score_heads(tpl), final)


#: the last names located per template: (form, sheet, names then, the NameRef of each
#: name, what _locate_names_now gave, the names: inputs', then formula cells'). The
#: forms of one workbook.xml share their NameRef objects, so an identical workbook.xml
#: is recognised by them alone
_NAMES_SEEN: dict[int, tuple[Any, ...]] = {}


def _locate_names(
    book: Book, cf: CompiledForm, sheet: str, names_then: Mapping[str, str]
) -> tuple[dict[str, str], list[tuple[str, ...]], bool]:
    """Where each input and formula cell's name points (``'Sheet'!C7`` by name), the
    findings on the names, and whether every name points into ``sheet``.

    What :func:`_locate_names_now` gives depends only on its arguments and on each
    name's NameRef: when every NameRef is the very object it was for the last form of
    this template (an unchanged workbook.xml: the parsed part is shared), the same
    answer is given again (the address map is read only)."""
    kept = _NAMES_SEEN.get(id(cf))
    if kept is not None and kept[0] is cf:
        names = kept[5]
    else:
        kept = None
        names = tuple([i.name for i in cf.inputs] + [c.name for c in cf.cells])
    got = book.names.get
    refs = [got(n) for n in names]
    if (
        kept is not None
        and kept[1] == sheet
        and kept[2] is names_then
        and all(a is b for a, b in zip(kept[3], refs, strict=True))
    ):
        return kept[4]  # type: ignore[no-any-return]
    answer = _locate_names_now(cf, names, refs, sheet, names_then)
    if len(_NAMES_SEEN) >= 64:
        _NAMES_SEEN.clear()
    _NAMES_SEEN[id(cf)] = (cf, sheet, names_then, refs, answer, names)
    return answer


def _locate_names_now(
    cf: CompiledForm,
    names: tuple[str, ...],
    refs: list[NameRef | None],
    sheet: str,
    names_then: Mapping[str, str],
) -> tuple[dict[str, str], list[tuple[str, ...]], bool]:
    """:func:`_locate_names`, worked out."""
    addr: dict[str, str] = {}
    findings: list[tuple[str, ...]] = []
    missing = False
    moved = 0
    for name, ref in zip(names, refs, strict=True):
        if ref is None or ref.problem:
            missing = True
            why = ref.problem if ref is not None else "工作簿中没有这个名称（被删除）"
            findings.append(
                (
                    "name_missing",
                    "error",
                    f"“{_label(cf, name)}”无法定位：{why}",
                    name,
                    names_then.get(name, ""),
                )
            )
            continue
        if ref.sheet != sheet:
            findings.append(
                ("name_moved", "error", f"名称指向了其他工作表 {ref.address}", name, ref.address)
            )
            missing = True
            continue
        addr[name] = ref.address
        then = names_then.get(name)
        if then is not None and _coord_of(then) != ref.coord:
            moved += 1
    if moved and not missing:
        findings.append(
            (
                "rows_moved",
                "info",
                f"{moved} 个单元格的位置与生成时不同（插入/删除了行或列）；已按名称读取",
            )
        )
    return addr, findings, not missing


@dataclass(frozen=True)
class _LinePlan:
    """What one indicator's line of the 明细 sheet takes from a checked form (the same
    for every form of a template)."""

    sec: m.Section
    ind: m.Indicator
    inputs: tuple[tuple[str, str, str], ...]  # (input name, label, column)
    raters: tuple[tuple[str, str], ...]  # (rater label, input name)
    rule_inputs: tuple[tuple[str, str], ...]  # (input key, input name)
    full: Decimal
    sys: str
    score: str
    w: str
    ws: str
    #: where in ``inputs`` the first target, and the first actual (or value), input is
    target_at: int | None
    actual_at: int | None


def _first_at(inputs: tuple[tuple[str, str, str], ...], columns: tuple[str, ...]) -> int | None:
    """The index of the first input in one of ``columns``, or None."""
    return next((k for k, (_n, _lab, col) in enumerate(inputs) if col in columns), None)


def _line_plans(tpl: _Template) -> list[_LinePlan]:
    got = tpl.__dict__.get("_line_plans")
    if got is None:
        cf, got = tpl.cf, []
        for sec, ind in tpl.form.indicators():
            own = [i for i in cf.inputs if i.indicator == ind.id and i.role == "input"]
            raters = ind.raters.columns.items() if ind.raters is not None else ()
            inputs = tuple((i.name, i.spec.label, _column(cf, i.name)) for i in own)
            got.append(
                _LinePlan(
                    sec,
                    ind,
                    inputs,
                    tuple((spec.label, f"in_{ind.id}_{key}") for key, spec in raters),
                    tuple((k, f"in_{ind.id}_{k}") for k in ind.inputs),
                    ind.full_score,
                    f"sys_{ind.id}",
                    f"score_{ind.id}",
                    f"w_{ind.id}",
                    f"ws_{ind.id}",
                    _first_at(inputs, ("target",)),
                    _first_at(inputs, ("actual", "value")),
                )
            )
        tpl.__dict__["_line_plans"] = got
    return got  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=256)  # every form of a template records the same names
def _names_then(text: str) -> Mapping[str, str]:
    """The names and addresses ``_meta`` recorded when the form was generated."""
    try:
        got = {str(k): str(v) for k, v in json.loads(text).items()}
    except (ValueError, AttributeError):
        got = {}
    return MappingProxyType(got)  # shared by every form that recorded the same text


@functools.lru_cache(maxsize=16384)  # every form of a template records the same names
def _coord_of(ref_text: str) -> str:
    return split_ref(ref_text)[1].replace("$", "")


def _column(cf: CompiledForm, name: str) -> str:
    inp = cf.input_by_name[name]
    return inp.spec.column or inp.key


def _cell_value(v: object) -> Value:
    if isinstance(v, CellError):
        return v.code
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    if v is None:
        return None
    return str(v)


_SEPARATORS = os.sep + (os.altsep or "")


def _suffix(path: str) -> str:
    """``Path(path).suffix``, without making a Path (one a file costs more than the
    rest of the name checks)."""
    name = path[max(path.rfind(c) for c in _SEPARATORS) + 1 :]
    if name in ("", ".", ".."):
        return Path(path).suffix  # a path that ends oddly: as Path has it
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def check_source(src: Source, ctx: Context) -> FileResult:
    """Check one input file. Never raises: every failure becomes a rejected result."""
    t0 = time.perf_counter()
    res = FileResult(src.display, src.size, src.mtime)
    book: Book | None = None
    try:
        data = src.read(ctx.limits)
        res.size = len(data)
        res.sha256 = hashlib.sha256(data).hexdigest()
        if _suffix(src.display).lower() not in _WORKBOOK_EXT and data[:2] == b"PK":
            res.add("extension", "info", f"文件扩展名为“{Path(src.display).suffix}”，按 .xlsx 读取")
        # parsers read these checked bytes, never the path again: the file could be
        # replaced between the check and the read
        opener = open_fast if ctx.fast else open_book
        book = opener(data, src.display, limits=ctx.limits, path=None, sha256=res.sha256)
        check_book(res, book, ctx)
    except UnreadableFile as e:
        res.add(e.kind, "error", str(e))
    except KpiExcelError as e:
        res.add("unreadable", "error", str(e))
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        res.add("bad_zip", "error", f"文件已损坏（{e}）；请重新保存后提交")
    except UnicodeError:
        # a character reference to a lone surrogate (&#xD800;) passed by a reader
        res.add(
            "bad_xml",
            "error",
            "文件中含有无效的字符编码（如 &#xD800;），已损坏或被改造；请用下发的原表重新填写",
        )
    except OSError as e:
        res.add(
            "unreadable",
            "error",
            f"文件无法读取：{e.strerror if isinstance(e, OSError) and e.strerror else e}",
        )
    except MemoryError:
        res.add(
            "internal", "error", "检查此文件时内存不足：文件内容异常庞大；请用下发的原表重新填写"
        )
    except BaseException as e:  # one bad file never stops the others
        # (a Rust panic in python-calamine arrives as a BaseException)
        if isinstance(e, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        res.add(
            "internal",
            "error",
            f"检查此文件时出错（{type(e).__name__}: {str(e)[:200]}）；请把此文件发给管理员",
        )
    finally:
        if book is not None:
            book.close()
    if not res.sha256:
        res.sha256 = hashlib.sha256(src.display.encode("utf-8", "replace")).hexdigest()
        res.add("unreadable", "info", "文件内容无法读取，台账以文件路径代替内容校验值记录")
    res.seconds = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------- across files


@dataclass
class Collection:
    """The outcome of one collection run."""

    period: str
    files: list[FileResult]
    skipped: list[tuple[str, str]]
    roster: list[dict[str, str]] | None = None
    missing: list[dict[str, str]] = field(default_factory=list)
    quota: dict[str, Decimal] | None = None
    generated_at: str = ""
    seconds: float = 0.0
    trend: list[Any] = field(default_factory=list)
    summary_path: str = ""
    ledger_path: str = ""
    notes: list[str] = field(default_factory=list)

    def counted(self) -> list[FileResult]:
        """The files that count: one per employee, accepted (with or without warnings)."""
        return [f for f in self.files if f.counted and f.status != REJECTED]

    def counts(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "accepted": sum(f.status == ACCEPTED for f in self.files),
            "warning": sum(f.status == WARNING for f in self.files),
            "rejected": sum(f.status == REJECTED for f in self.files),
            "skipped": len(self.skipped),
            "missing": len(self.missing),
            "employees": len(self.counted()),
        }


def _period_key(p: str) -> tuple[int, int]:
    mt = re.match(r"^(\d{4})(?:-(?:Q(\d)|(\d{2})))?$", p)
    if not mt:
        return (0, 0)
    year = int(mt.group(1))
    if mt.group(2):
        return (year, int(mt.group(2)) * 3)
    if mt.group(3):
        return (year, int(mt.group(3)))
    return (year, 12)


def _choose_period(files: list[FileResult], period: str | None) -> str:
    if period:
        return period
    seen = Counter(f.period for f in files if f.identified and f.period)
    if not seen:
        return ""
    top = max(seen.values())
    return max((p for p, n in seen.items() if n == top), key=_period_key)


def _cross_checks(files: list[FileResult], period: str, roster_ids: set[str] | None) -> None:
    for f in files:
        if f.identified and period and f.period != period:
            f.add(
                "wrong_period",
                "error",
                f"考核期为 {f.period}，与本次汇总的考核期 {period} 不符；如需汇总该期，请单独回收",
            )
        if f.identified and roster_ids is not None and f.employee_id not in roster_ids:
            f.add("not_in_roster", "warning", f"工号 {f.employee_id}（{f.name}）不在花名册中")
        if f.identified and not f.employee_id:
            f.add("no_employee", "error", "_meta 中没有工号，无法归属到员工")
    groups: dict[tuple[str, str], list[FileResult]] = {}
    for f in files:
        if f.identified and f.employee_id and f.period == period:
            groups.setdefault((f.employee_id, f.period), []).append(f)
    for (eid, per), group in groups.items():
        # the newest file counts: by modification time, then by name
        group.sort(key=lambda f: (f.mtime, f.path), reverse=True)
        winner = group[0]
        winner.counted = True
        for other in group[1:]:
            same = "内容相同的副本" if other.sha256 == winner.sha256 else "另一份"
            other.add(
                "duplicate",
                "error",
                f"重复提交：工号 {eid} {per} 期有多份表，以较新的 {winner.path} 为准，此份（{same}）不计",
            )
        if len(group) > 1:
            winner.add(
                "duplicate_kept",
                "info",
                f"工号 {eid} {per} 期共收到 {len(group)} 份表，以此份（修改时间最新）为准",
            )
    for f in files:
        f.settle()
    # an employee whose newest file is rejected: the older valid one does not count
    # either (the newest is the manager's latest word); they show as rejected/missing.


def _roster_rows(path: Path) -> list[dict[str, str]]:
    """Roster members (工号, 姓名, 部门) for the 未交 list."""
    try:
        from kpi_excel.roster import FIELD_ALIASES, read_table

        table = read_table(path)

        def norm(s: object) -> str:
            return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(s or ""))).casefold()

        col: dict[str, int] = {}
        for i, name in enumerate(table.columns):
            for fld in ("employee_id", "name", "department"):
                if fld not in col and norm(name) in {norm(a) for a in FIELD_ALIASES[fld]}:
                    col[fld] = i
        if "employee_id" not in col:
            raise KpiExcelError(f"花名册 {path} 中找不到“工号”列")
        out = []
        for _n, vals in table.rows:

            def get(fld: str, vals: list[object] = vals) -> str:
                i = col.get(fld)
                v = vals[i] if i is not None and i < len(vals) else None
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                return "" if v is None else str(v).strip()

            if get("employee_id"):
                out.append(
                    {
                        "employee_id": get("employee_id"),
                        "name": get("name"),
                        "department": get("department"),
                    }
                )
        return out
    except ImportError:  # pragma: no cover - the roster module ships with the package
        import pandas as pd

        df = (
            pd.read_csv(path, dtype=str)
            if path.suffix.lower() == ".csv"
            else pd.read_excel(path, dtype=str)
        )
        return [
            {
                "employee_id": str(r["工号"]).strip(),
                "name": str(r.get("姓名", "")),
                "department": str(r.get("部门", "")),
            }
            for _i, r in df.iterrows()
            if str(r.get("工号", "")).strip()
        ]


def parse_quota(text: str | None) -> dict[str, Decimal] | None:
    """``A=20%,B=30%`` (or ``A:0.2;B:0.3``) -> {grade: share}; raises on nonsense."""
    if not text:
        return None
    out: dict[str, Decimal] = {}
    for part in re.split(r"[,，;；\s]+", unicodedata.normalize("NFKC", text).strip()):
        if not part:
            continue
        mt = re.fullmatch(r"([^=:]+)[=:]([\d.]+)(%?)", part)
        if not mt:
            raise KpiExcelError(f"强制分布比例“{part}”看不懂：请写成 A=20%,B=30%,C=40%,D=10%")
        share = Decimal(mt.group(2))
        if mt.group(3) or share > 1:
            share /= 100
        if not 0 <= share <= 1:
            raise KpiExcelError(f"强制分布比例“{part}”应在 0% 到 100% 之间")
        out[mt.group(1).strip()] = share
    if sum(out.values(), Decimal(0)) > 1:
        raise KpiExcelError(f"强制分布比例合计 {sum(out.values()) * 100:f}% 超过 100%")
    return out


#: Fewer files than this are checked in-process: starting workers costs ~0.3 s.
PARALLEL_FROM = 48

_WORKER_CTX: Context | None = None


def _worker_init(secret: bytes | None, limits: Limits, fast: bool = True) -> None:
    global _WORKER_CTX
    _WORKER_CTX = Context(secret, limits, fast, for_recalc=False)
    # checking a file leaves no reference cycles behind (everything it made is freed
    # as it goes), yet the collector's passes cost a worker ~30 us a file, most in
    # walking what it keeps from file to file (the answers kept, the compiled
    # template). A pass after 10,000 new objects instead of 700, and what is kept set
    # aside at each batch (_worker_check_batch): ~2 us. Cycles a hostile file may make
    # are still collected.
    if gc.isenabled():
        gc.set_threshold(10_000, 10, 10)


def _worker_check(src: Source) -> FileResult:
    """Check one file in a worker; its bulky parts travel pickled once (spool.pack)."""

    assert _WORKER_CTX is not None
    return _for_main(check_source(src, _WORKER_CTX))


#: attribute of a checked result holding its rows of the ledger's scores table
_LEDGER_ROWS = "_ledger_rows"


def _for_main(res: FileResult) -> FileResult:
    """A checked result made ready for the main process where it was checked: its
    scores also as the rows of the ledger's scores table (marshalled: the main process
    writes them as they come, without unpickling the scores), and its bulky parts
    pickled once (spool.pack)."""
    rows = _score_table_rows(res.sha256, _ledger_period(res), res.scores)
    res.__dict__[_LEDGER_ROWS] = marshal.dumps(rows)
    return pack(res)  # type: ignore[no-any-return]


def _ledger_period(res: FileResult) -> str:
    """The period a result is kept under in the ledger ('' when not identified)."""
    return _storable(res.period) if res.identified else ""


def _score_table_rows(
    sha256: str, period: str, scores: Iterable[ScoreRow]
) -> list[tuple[object, ...]]:
    """``[(sha256, period, *s.params()) for s in _ledger_scores(scores)]``, with the
    usual row (a value that is not text, its ledger text worked out) taken as it is."""
    out: list[tuple[object, ...]] = []
    for s in scores:
        v, text = s[4], s[5]
        if type(v) is str or (text is None and v is not None):
            out.extend((sha256, period, *r.params()) for r in _ledger_scores([s]))
        else:
            out.append((sha256, period, s[0], s[1], s[2], s[3], text, s[6]))
    return out


def _isolated_check(
    src: Source, secret: bytes | None, limits: Limits, fast: bool = True
) -> FileResult:
    """Check one file in a worker process of its own; a file that kills the process is
    rejected with a reason instead of stopping the run."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(
            max_workers=1, initializer=_worker_init, initargs=(secret, limits, fast)
        ) as pool:
            return pool.submit(_worker_check, src).result()
    except BrokenProcessPool:
        res = FileResult(src.display, src.size, src.mtime)
        res.sha256 = hashlib.sha256(src.display.encode("utf-8", "replace")).hexdigest()
        res.add(
            "crashed",
            "error",
            "读取此文件时读取程序异常退出（文件内容异常，可能被恶意构造）；请用下发的原表重新填写",
        )
        return _for_main(res)


def _batches(files: int, workers: int) -> list[int]:
    """How many files each batch sent to a worker holds, in order. Each batch costs
    the main process a wake-up and a hand-over of its results (~0.5 ms), so batches
    are large (up to 64 files) while much is left; they shrink as the end nears (a
    quarter of each worker's share of what is left, down to 4 files), so the workers
    finish together instead of one idling while the other ends a large batch."""
    sizes: list[int] = []
    left = files
    while left > 0:
        size = min(left, max(4, min(64, left // (workers * 4))))
        sizes.append(size)
        left -= size
    return sizes


def _worker_check_batch(batch: list[Source]) -> list[FileResult]:
    """:func:`_worker_check` for each file of a batch, what the worker keeps from
    file to file first set aside from the garbage collector's passes (``gc.freeze``:
    still freed when no longer used)."""
    if gc.isenabled():
        gc.freeze()
    return [_worker_check(src) for src in batch]


def _check_all(
    sources: list[Source],
    secret: bytes | None,
    limits: Limits,
    workers: int | None,
    fast: bool = True,
) -> Iterator[FileResult]:
    """Check every source, in order; in worker processes for large collections.

    Checking is pure Python and holds the GIL, so processes, not threads. If a pool
    cannot start (a sandbox without process support), the files are checked here
    instead. Results from workers come packed (:func:`kpi_excel.spool.pack`).
    """
    n = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n > 1 and len(sources) >= (PARALLEL_FROM if workers is None else 2):
        from concurrent.futures import ProcessPoolExecutor

        try:
            pool = ProcessPoolExecutor(
                max_workers=n, initializer=_worker_init, initargs=(secret, limits, fast)
            )
        except (OSError, NotImplementedError, ValueError):
            pool = None
        if pool is not None:
            from concurrent.futures.process import BrokenProcessPool

            done = 0
            try:
                with pool:
                    batches, at = [], 0
                    for size in _batches(len(sources), n):
                        batches.append(sources[at : at + size])
                        at += size
                    for results in pool.map(_worker_check_batch, batches):
                        for res in results:
                            done += 1
                            yield res
            except BrokenProcessPool:
                # a worker died (a file crashed a native reader): check the rest one by
                # one, each in a process of its own, so only that file is lost to it
                for src in sources[done:]:
                    yield _isolated_check(src, secret, limits, fast)
            return
    ctx = Context(secret, limits, fast, for_recalc=False)
    for src in sources:
        yield _for_main(check_source(src, ctx))


def _notes(files: list[FileResult]) -> list[str]:
    """What was not checked, and why (shown in the report and the JSON)."""
    forms = [f for f in files if f.identified and f.lines]
    if not forms:
        return []
    notes = []
    signed = sum(f.signature_cells > 0 for f in forms)
    if signed:
        notes.append(
            f"已检查 {signed} 份表的签字栏（是否签字、被考核人签名是否与姓名一致、签字日期）"
        )
    if signed < len(forms):
        notes.append(
            f"{len(forms) - signed} 份表没有可填写的签字单元格（早期版本生成的表，签字栏为打印后手写），其签字未检查"
        )
    dated = sum(f.date_cells > 0 for f in forms)
    if dated:
        notes.append(
            f"已检查 {dated} 份表的表头日期（是否填写、是否为有效日期、是否在考核期前后合理范围内）"
        )
    else:
        notes.append(
            "日期未检查：这些模板的日期只在签字栏中（打印后手写），表内没有可填写的日期单元格"
        )
    return notes


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _storable(v: Any) -> Any:
    """Text as SQLite (UTF-8) can store it: a lone surrogate, which a damaged file can
    smuggle through a reader, becomes U+FFFD instead of failing the whole run."""
    if isinstance(v, str) and not v.isascii() and _SURROGATE.search(v) is not None:
        return _SURROGATE.sub("\ufffd", v)
    return v


def _ledger_scores(scores: Iterable[ScoreRow]) -> list[ScoreRow]:
    """A file's scores as the ledger stores them (text as SQLite can store it)."""
    return [s if type(s[4]) is not str else ScoreRow.of(*s[:4], _storable(s[4])) for s in scores]


def _file_row(f: FileResult, staged: Container[tuple[str, str]] = ()) -> FileRow:
    """A file's ledger row; without its scores when they were staged already."""
    t = _storable
    period = _ledger_period(f)
    return FileRow(
        sha256=f.sha256,
        period=period,
        status=f.status,
        reason=t(f.reason),
        employee_id=t(f.employee_id) or None,
        name=t(f.name) or None,
        department=t(f.department) or None,
        position=t(f.position) or None,
        template_id=t(f.template_id) or None,
        template_version=t(f.template_version) or None,
        total=f.total,
        total_in_file=t(f.total_in_file),
        grade=t(f.grade),
        pay=f.pay,
        counted=f.counted and f.status != REJECTED,
        sources=[SourceRow(t(f.path), f.size, f.mtime, f.status, t(f.reason))],
        scores=[] if (f.sha256, period) in staged else _ledger_scores(f.scores),
        anomalies=[
            AnomalyRow(t(i.path), t(i.cell), t(i.address), i.kind, i.severity, t(i.message))
            for i in f.issues
        ],
    )


def _ledger_rows(
    files: list[FileResult], staged: Container[tuple[str, str]] = ()
) -> Iterator[FileRow]:
    """One row per (sha256, period); identical copies become several sources of one row.

    Rows are made one at a time (each file's scores are read back as its row is
    written, unless ``staged`` in the ledger already), so the ledger is written in flat
    memory. Copies of one file sort together (same bytes: same period), so a row is
    complete when the next key starts.
    """
    order = {ACCEPTED: 0, WARNING: 1, REJECTED: 2}
    kept: FileRow | None = None
    for f in sorted(files, key=lambda f: (f.sha256, order[f.status], f.path)):
        row = _file_row(f, staged)
        if kept is not None and (row.sha256, row.period) == (kept.sha256, kept.period):
            kept.counted = kept.counted or row.counted
            kept.sources += row.sources
            kept.anomalies += row.anomalies
            continue
        if kept is not None:
            yield kept
        kept = row
    if kept is not None:
        yield kept


@contextlib.contextmanager
def _results_set_aside() -> Iterator[Callable[[], None]]:
    """A function that sets what the process holds so far aside from the garbage
    collector's passes (``gc.freeze``) until the block ends (``gc.unfreeze``).

    A collection keeps every file's result (tens of objects each) to the end; each
    full pass of the collector would walk all of them again, and at 10,000 files those
    passes cost the main process ~15% of its time. Objects set aside are still freed
    when no longer used; only cycles wait for the end. Meanwhile the collector passes
    after 10,000 new objects instead of 700 (what a collection makes is freed as it
    goes, as in the workers: see _worker_init). A process that freezes objects
    itself, or runs without the collector, is left as it is."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield lambda: None
        return
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 10_000), *threshold[1:])
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _every(items: Iterable[Any], n: int, call: Callable[[], None]) -> Iterator[Any]:
    """``items``, with ``call()`` after every ``n`` of them."""
    for i, item in enumerate(items, 1):
        yield item
        if i % n == 0:
            call()


def collect(
    inputs: Sequence[Path],
    *,
    out: Path | None = None,
    roster: Path | None = None,
    db: Path | None = None,
    quota: str | None = None,
    secret: bytes | None = None,
    period: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    on_file: Any = None,
    write: bool = True,
    workers: int | None = None,
    settings: Any = None,
    exclude: Sequence[Path] = (),
    fast: bool = True,
) -> Collection:
    """Run a whole collection; write the ledger and the summary when ``write``.

    ``workers``: processes checking files in parallel (default: one per CPU, up to 8,
    when there are at least :data:`PARALLEL_FROM` files; 1 checks in this process).
    ``fast``: read with :mod:`kpi_excel.fastread` (the same answers, without openpyxl);
    False reads every file with :class:`kpi_excel.read.Book` (the reference path).
    """
    t0 = time.perf_counter()
    quota_map = parse_quota(quota)
    roster_rows = _roster_rows(roster) if roster is not None else None
    ledger_path = db or (default_path(out) if out is not None else None)
    exclude = [p for p in (out, ledger_path, *exclude) if p is not None]
    with contextlib.ExitStack() as stack:
        set_aside = stack.enter_context(_results_set_aside())
        sources, skipped = discover(inputs, exclude, limits)
        set_aside()
        # the ledger is opened first (a ledger it cannot use stops the run before any
        # check), and each file's scores are written as the file arrives; the collection
        # is committed whole by Ledger.record below, or not at all (closing rolls back)
        led: Ledger | None = None
        if write and ledger_path is not None:
            led = stack.enter_context(Ledger(ledger_path))

        def stage(res: FileResult) -> FileResult:
            # its rows of the scores table, made where it was checked (_for_main)
            rows = res.__dict__.pop(_LEDGER_ROWS)
            if led is not None:
                led.stage_rows(res.sha256, _ledger_period(res), marshal.loads(rows))
            return res

        checked = map(stage, _check_all(sources, secret, limits, workers, fast))
        files = spool_results(_every(checked, 512, set_aside), on_file)
        chosen = _choose_period(files, period)
        ids = {r["employee_id"] for r in roster_rows} if roster_rows is not None else None
        _cross_checks(files, chosen, ids)
        coll = Collection(
            period=chosen,
            files=files,
            skipped=skipped,
            roster=roster_rows,
            quota=quota_map,
            generated_at=dt.datetime.now().replace(microsecond=0).isoformat(),
        )
        if roster_rows is not None:
            counted = {f.employee_id for f in coll.counted()}
            latest: dict[str, FileResult] = {}
            for f in files:
                if f.identified and f.period == chosen:
                    latest.setdefault(f.employee_id, f)
                    if f.counted:
                        latest[f.employee_id] = f
            for r in roster_rows:
                if r["employee_id"] in counted:
                    continue
                f = latest.get(r["employee_id"])
                why = f"已交但被退回：{f.reason}（{f.path}）" if f is not None else "未收到考核表"
                coll.missing.append({**r, "reason": why})
        coll.notes = _notes(files)
        if quota_map:
            known = {g for f in files for g, _label in f.grades}
            unknown = [g for g in quota_map if g not in known]
            if unknown and known:
                coll.notes.append(
                    f"强制分布比例中的等级 {'、'.join(unknown)} 不是模板的等级（{'、'.join(sorted(known))}），已忽略"
                )
        if led is not None:
            led.record(_ledger_rows(files, led.staged))
            coll.trend = led.trend()
            coll.ledger_path = str(ledger_path)
        if write and out is not None:
            from kpi_excel.summary import write_summary

            write_summary(coll, out, settings)
            coll.summary_path = str(out)
        coll.seconds = time.perf_counter() - t0
        return coll


# ----------------------------------------------------------------------------- CLI


def _report(coll: Collection, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    def esc(v: object) -> str:
        return escape(safe_text(v))

    c = coll.counts()
    t = Table(
        title=f"回收汇总 {esc(coll.period) or '（未识别考核期）'}", show_header=False, box=None
    )
    t.add_row("收到文件", str(c["files"]))
    t.add_row("[green]通过[/]", str(c["accepted"]))
    t.add_row("[yellow]通过（有提醒）[/]", str(c["warning"]))
    t.add_row("[red]退回[/]", str(c["rejected"]))
    if coll.roster is not None:
        t.add_row("未交（花名册）", str(c["missing"]))
    if c["skipped"]:
        t.add_row("跳过（临时/系统文件）", str(c["skipped"]))
    t.add_row("耗时", f"{coll.seconds:.1f} 秒")
    console.print(t)
    rejected = [f for f in coll.files if f.status == REJECTED]
    if rejected:
        rt = Table(title="退回的文件", show_lines=False)
        rt.add_column("文件", overflow="fold")
        rt.add_column("员工")
        rt.add_column("原因", overflow="fold")
        for f in rejected[:12]:
            rt.add_row(
                esc(Path(f.path).name), esc(f"{f.employee_id} {f.name}".strip()), esc(f.reason)
            )
        console.print(rt)
        if len(rejected) > 12:
            console.print(f"……另有 {len(rejected) - 12} 份，见汇总表“异常”页")
    if coll.missing:
        names = "、".join(esc(r["name"] or r["employee_id"]) for r in coll.missing[:15])
        more = f" 等 {len(coll.missing)} 人" if len(coll.missing) > 15 else ""
        console.print(f"[bold]未交：[/]{names}{more}")
    for note in coll.notes:
        console.print(f"[dim]说明：{escape(note)}[/]")
    if coll.summary_path:
        console.print(f"汇总表：{escape(coll.summary_path)}")
    if coll.ledger_path:
        console.print(f"台账：{escape(coll.ledger_path)}")


def result_json(coll: Collection) -> dict[str, Any]:
    """The machine-readable result (text from returned files is made inert)."""
    return {
        "tool_version": __version__,
        "period": coll.period,
        "generated_at": coll.generated_at,
        "summary": coll.summary_path or None,
        "ledger": coll.ledger_path or None,
        "counts": coll.counts(),
        "files": [f.as_dict() for f in coll.files],
        "skipped": [{"file": safe_text(p), "reason": r} for p, r in coll.skipped],
        "missing": [{k: safe_text(v) for k, v in r.items()} for r in coll.missing],
        "notes": coll.notes,
        "seconds": round(coll.seconds, 3),
    }


def collect_command(
    inputs: list[Path],
    out: Path,
    roster: Path | None,
    db: Path | None,
    quota: str | None,
    as_json: bool,
    strict: bool,
    secret: bytes | None,
    progress: bool = True,
    period: str | None = None,
    xlsm: bool = False,
) -> int:
    """``kpi-excel collect``: returns the exit code (1 when ``strict`` and anything was rejected).

    Prints the one-screen report, or the JSON result with ``as_json``. ``period``
    fixes the collection's period (default: the most common period of the files).
    """
    from rich.console import Console

    console = Console(stderr=as_json)
    settings = None
    if xlsm:  # a summary with a 设置 sheet and 一键汇总 buttons (kpi_excel.buttons)
        from kpi_excel.buttons import SummarySettings

        out = out.with_suffix(".xlsm")
        settings = SummarySettings(
            inputs=[str(Path(p).resolve()) for p in inputs],
            roster=str(roster.resolve()) if roster else None,
            ledger=str((db or default_path(out)).resolve()),
            quota=quota,
            period=period,
        )
    kwargs: dict[str, Any] = {
        "out": out,
        "roster": roster,
        "db": db,
        "quota": quota,
        "secret": secret,
        "period": period,
        "settings": settings,
    }
    show = progress and not as_json and sys.stdout.isatty()
    if show:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        # count first so the bar has a total
        srcs, _skipped = discover(inputs, [out, db or default_path(out)])
        with Progress(
            TextColumn("回收中"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=len(srcs))

            def tick(res: FileResult) -> None:
                bar.update(task, advance=1, description=Path(res.path).name[:30])

            coll = collect(inputs, on_file=tick, **kwargs)
    else:
        coll = collect(inputs, **kwargs)
    if as_json:
        print(json.dumps(result_json(coll), ensure_ascii=False, indent=2))
    else:
        _report(coll, console)
    if strict and any(f.status == REJECTED for f in coll.files):
        return 1
    return 0
