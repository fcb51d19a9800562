"""Macro-enabled workbooks: the VBA project built from ``macros/`` and the buttons.

The VBA lives as text in ``macros/`` (``.bas`` files, or ``.bas.j2`` jinja2 templates
where a value is needed, such as a form's protection password). This module renders
that text, builds a ``vbaProject.bin`` from it with pyOpenVBA, and gives the writers
(:mod:`kpi_excel.render`, :mod:`kpi_excel.summary`) a small API::

    attach_form_button(workbook, worksheet, "M1", status_cell="M2")
    attach_summary_button(workbook, settings, worksheet=ws, cell="H1")

Both call ``workbook.add_vba_project(stream, is_stream=True)`` and
``worksheet.insert_button(...)``. The project is built when XlsxWriter packages the
file (``Workbook.close()``), from the sheets the workbook has *then*, so every sheet,
including ones added after the call (``_meta``), gets a document module whose name is
its code name (``ThisWorkbook``, ``Sheet1``, ``Sheet2``, … as XlsxWriter assigns them,
or whatever ``set_vba_name`` set): the code names in the workbook and the modules in
the project always match.

What the project holds:

* the document modules Excel itself would make (``ThisWorkbook`` and one per sheet,
  all empty);
* the modules of ``macros/`` for the kind of workbook (:data:`MODULES`);
* a reference to the xlwings add-in's VBA project, exactly as ``xlwings quickstart``
  sets one, so ``RunPython`` resolves when the add-in is installed (without it the
  user would have to tick Tools > References > xlwings in every file). Pass
  ``xlwings_reference=False`` for a workbook that gets xlwings' standalone module
  instead (or, in tests, a stub ``RunPython``).

Excel refuses a macro-enabled workbook whose name ends in ``.xlsx``; XlsxWriter
switches the content type to macro-enabled as soon as a project is added, so the
file name must end in ``.xlsm`` (checked here when the workbook writes to a path).
"""

from __future__ import annotations

import functools
import io
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

if TYPE_CHECKING:  # pragma: no cover
    from xlsxwriter.workbook import Workbook
    from xlsxwriter.worksheet import Worksheet

    from kpi_excel.buttons import SummarySettings
    from kpi_excel.layout import SheetPlan

__all__ = [
    "FORM_MACRO",
    "SUMMARY_MACRO",
    "FORM_CAPTION",
    "SUMMARY_CAPTION",
    "STATUS_NAME",
    "STATUS_LINES",
    "MODULES",
    "Module",
    "macros_dir",
    "module_sources",
    "build_vba_project",
    "add_vba_modules",
    "attach_form_button",
    "form_cells",
    "form_decorator",
    "attach_summary_button",
]

#: The macro each button runs (a Sub of the module of the same kind in ``macros/``).
FORM_MACRO = "KpiRecalc"
SUMMARY_MACRO = "KpiCollect"
FORM_CAPTION = "一键重算"
SUMMARY_CAPTION = "一键汇总"

#: Workbook-level defined name of the status lines the entry points write (a column
#: of :data:`STATUS_LINES` unlocked cells: unlocked, so writing a status needs no
#: unprotecting and stays out of the fingerprint, which covers locked cells only).
STATUS_NAME = "kpi_status"
STATUS_LINES = 12

#: The modules of ``macros/`` each kind of workbook carries (file stem = module name).
MODULES: dict[str, tuple[str, ...]] = {"form": ("KpiForm",), "summary": ("KpiSummary",)}

_BUTTON = {"width": 112, "height": 30, "font": {"bold": True}}

# The xlwings add-in as `xlwings quickstart` references it (a REFERENCEPROJECT record,
# [MS-OVBA] 2.3.4.2.2.3). Excel binds a project reference to an open workbook of the
# same file name, the add-in loaded from XLSTART, so the paths need not exist; the
# version is the one xlwings' own quickstart.xlsm carries.
_XLWINGS_NAME = "xlwings"
_XLWINGS_LIBID_ABSOLUTE = "*\\CC:\\xlwings\\addin\\xlwings.xlam"
_XLWINGS_LIBID_RELATIVE = "*\\Caddin\\xlwings.xlam"
_XLWINGS_VERSION = (0x68FE4C3D, 0x000C)


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Module:
    """One standard module: its name and its VBA text (CRLF line ends, ASCII)."""

    name: str
    source: str


def macros_dir() -> Path:
    """The folder of VBA module text: inside the installed package, or the repository's."""
    here = Path(__file__).resolve().parent
    for cand in (here / "macros", here.parent / "macros"):
        if cand.is_dir() and any(cand.glob("*.bas*")):
            return cand
    raise FileNotFoundError("macros/ (the VBA module text) is missing from this installation")


def _vba_inner(text: str) -> str:
    """Text for inside a VBA string literal: ``"`` doubled."""
    return text.replace('"', '""')


def _py_literal(value: object) -> str:
    """A Python literal in ASCII (``ascii()``: non-ASCII text becomes ``\\uXXXX``)."""
    return ascii(value)


def _env(folder: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["vba_inner"] = _vba_inner
    env.filters["py_literal"] = _py_literal
    return env


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def module_sources(kind: str, **values: Any) -> list[Module]:
    """The rendered modules of ``macros/`` for ``kind`` (``form`` or ``summary``).

    ``NAME.bas`` is taken as is; ``NAME.bas.j2`` is rendered with ``values`` (strict:
    a missing value is an error). The text must be ASCII (see the modules' header).
    """
    folder = macros_dir()
    env = _env(folder)
    out = []
    for name in MODULES[kind]:
        plain, tmpl = folder / f"{name}.bas", folder / f"{name}.bas.j2"
        if tmpl.is_file():
            text = env.get_template(tmpl.name).render(**values)
        elif plain.is_file():
            text = plain.read_text(encoding="utf-8")
        else:
            raise FileNotFoundError(f"VBA module {name} not found in {folder}")
        if not text.isascii():
            raise ValueError(f"VBA module {name} must be ASCII (VBA stores it in a code page)")
        out.append(Module(name, _crlf(text)))
    return out


# ------------------------------------------------------------------------ the project


def _record(rid: int, body: bytes) -> bytes:
    return struct.pack("<HI", rid, len(body)) + body


def _xlwings_reference_block() -> bytes:
    name = _XLWINGS_NAME.encode("ascii")
    absolute = _XLWINGS_LIBID_ABSOLUTE.encode("ascii")
    relative = _XLWINGS_LIBID_RELATIVE.encode("ascii")
    major, minor = _XLWINGS_VERSION
    body = (
        struct.pack("<I", len(absolute))
        + absolute
        + struct.pack("<I", len(relative))
        + relative
        + struct.pack("<IH", major, minor)
    )
    return (
        _record(0x0016, name)  # REFERENCENAME
        + _record(0x003E, _XLWINGS_NAME.encode("utf-16-le"))  # its Unicode name
        + _record(0x000E, body)  # REFERENCEPROJECT
    )


def _skeleton(workbook_code_name: str, code_names: Sequence[str]) -> bytes:
    """An empty .xlsm with the given code names: what pyOpenVBA reads them from."""
    import xlsxwriter

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    wb.set_vba_name(workbook_code_name)
    for i, code in enumerate(code_names):
        ws = wb.add_worksheet(f"s{i + 1}")
        ws.set_vba_name(code)
    wb.close()
    return buf.getvalue()


@functools.lru_cache(maxsize=32)
def _build(
    modules: tuple[Module, ...],
    code_names: tuple[str, ...],
    workbook_code_name: str,
    xlwings_reference: bool,
) -> bytes:
    from pyopenvba import ExcelFile

    with tempfile.TemporaryDirectory(prefix="kpi_vba_") as tmp:
        src, out = Path(tmp) / "skeleton.xlsm", Path(tmp) / "project.xlsm"
        src.write_bytes(_skeleton(workbook_code_name, code_names))
        with ExcelFile(src) as book:
            project = book.add_vba_project()
            for mod in modules:
                project.add_module(mod.name, mod.source)
            if xlwings_reference:
                # pyOpenVBA adds registered (type library) references only; a project
                # reference is one more record before PROJECTMODULES, as Excel writes it
                from pyopenvba._references import module_offset

                raw, _code_page = book._reference_data()
                at = module_offset(raw)
                book._write_reference_data(raw[:at] + _xlwings_reference_block() + raw[at:])
            book.save(out)
        with zipfile.ZipFile(out) as z:
            return z.read("xl/vbaProject.bin")


def build_vba_project(
    modules: Iterable[Module],
    code_names: Sequence[str],
    *,
    workbook_code_name: str = "ThisWorkbook",
    xlwings_reference: bool = True,
) -> bytes:
    """A ``vbaProject.bin``: a document module per code name (the workbook's first,
    then each sheet's, in sheet order) and the given standard modules.

    Deterministic: the same arguments give the same bytes (and are built once).
    """
    return _build(tuple(modules), tuple(code_names), workbook_code_name, xlwings_reference)


class _Project(io.BytesIO):
    """The vbaProject.bin of one workbook, built when XlsxWriter packages the file.

    XlsxWriter reads an ``is_stream`` project with ``getvalue()`` while it writes the
    package, after it has given every sheet its code name; building then makes the
    project's document modules match the workbook's sheets, whenever they were added.
    """

    def __init__(self, workbook: Workbook, xlwings_reference: bool) -> None:
        super().__init__()
        self.workbook = workbook
        self.xlwings_reference = xlwings_reference
        self.modules: list[Module] = []

    def add(self, modules: Iterable[Module]) -> None:
        have = {m.name.casefold(): m for m in self.modules}
        for mod in modules:
            old = have.get(mod.name.casefold())
            if old is not None and old != mod:
                raise ValueError(f"VBA module {mod.name} added twice with different text")
            if old is None:
                self.modules.append(mod)
                have[mod.name.casefold()] = mod

    def getvalue(self) -> bytes:  # type: ignore[override]
        wb = self.workbook
        codes = []
        for i, ws in enumerate(wb.worksheets()):
            codes.append(ws.vba_codename or f"Sheet{i + 1}")
        return build_vba_project(
            self.modules,
            codes,
            workbook_code_name=wb.vba_codename or "ThisWorkbook",
            xlwings_reference=self.xlwings_reference,
        )


def _project(workbook: Workbook, xlwings_reference: bool) -> _Project:
    """The workbook's lazily built project, added on first use."""
    filename = getattr(workbook, "filename", None)
    if isinstance(filename, str | Path) and not str(filename).lower().endswith(".xlsm"):
        raise ValueError(
            f"{filename}: a workbook with macros must be named *.xlsm (Excel refuses to open "
            "a macro-enabled workbook named .xlsx)"
        )
    current = getattr(workbook, "vba_project", None)
    if isinstance(current, _Project):
        if current.xlwings_reference != xlwings_reference:
            raise ValueError("xlwings_reference differs between two buttons of one workbook")
        return current
    project = _Project(workbook, xlwings_reference)
    workbook.add_vba_project(project, is_stream=True)  # type: ignore[arg-type]
    if not workbook.vba_codename:
        workbook.set_vba_name("ThisWorkbook")
    return project


def add_vba_modules(
    workbook: Workbook, modules: Iterable[Module], *, xlwings_reference: bool = True
) -> None:
    """Add standard modules to the workbook's project (made on first use), e.g.
    xlwings' standalone module, or a stub ``RunPython`` in tests."""
    _project(workbook, xlwings_reference).add(modules)


# ------------------------------------------------------------------------ status lines


def _status_block(
    workbook: Workbook, worksheet: Worksheet, cell: str, lines: int, width: float
) -> None:
    """Unlocked cells for the status lines under ``cell``, named :data:`STATUS_NAME`."""
    from xlsxwriter.utility import xl_cell_to_rowcol, xl_rowcol_to_cell

    row, col = xl_cell_to_rowcol(cell)
    first = workbook.add_format(
        {"locked": False, "bold": True, "font_color": "#1F4E79", "text_wrap": False}
    )
    rest = workbook.add_format({"locked": False, "font_color": "#404040", "text_wrap": False})
    for k in range(lines):
        worksheet.write_blank(row + k, col, None, first if k == 0 else rest)
    worksheet.set_column(col, col, width)
    top = xl_rowcol_to_cell(row, col, row_abs=True, col_abs=True)
    bottom = xl_rowcol_to_cell(row + lines - 1, col, row_abs=True, col_abs=True)
    quoted = "'" + worksheet.name.replace("'", "''") + "'"
    workbook.define_name(STATUS_NAME, f"={quoted}!{top}:{bottom}")


# ----------------------------------------------------------------------------- forms


def attach_form_button(
    workbook: Workbook,
    worksheet: Worksheet,
    cell: str,
    *,
    status_cell: str | None = None,
    password: str | None = None,
    caption: str = FORM_CAPTION,
    xlwings_reference: bool = True,
    status_width: float = 60,
) -> None:
    """Give a form its 一键重算 button (macro :data:`FORM_MACRO`) at ``cell``.

    ``status_cell`` (default: the cell below ``cell``) starts the
    :data:`STATUS_LINES` unlocked status lines :func:`kpi_excel.buttons.recalc_form`
    writes. ``password`` is the sheet protection password when it is not the default
    (it is written into the macro's Python call: Python unprotects the sheet to
    restore formulas, then protects it again). Call before ``workbook.close()``; the
    workbook must be written to an ``.xlsm`` name.
    """
    from xlsxwriter.utility import xl_cell_to_rowcol, xl_rowcol_to_cell

    from kpi_excel.render import DEFAULT_PASSWORD

    pw = None if password in (None, DEFAULT_PASSWORD) else password
    project = _project(workbook, xlwings_reference)
    project.add(module_sources("form", password=pw))
    row, col = xl_cell_to_rowcol(cell)
    if status_cell is None:
        status_cell = xl_rowcol_to_cell(row + 1, col)
    worksheet.insert_button(
        row,
        col,
        {
            **_BUTTON,
            "macro": FORM_MACRO,
            "caption": caption,
            "description": "用 Python 检查输入、重算得分并恢复被覆盖的公式（需要 xlwings）",
        },
    )
    _status_block(workbook, worksheet, status_cell, STATUS_LINES, status_width)


def form_cells(plan: SheetPlan) -> tuple[str, str]:
    """Where a form's button and status lines go: right of the table and its hidden
    calculation columns, outside the print area, in the rows frozen above the table."""
    from kpi_excel.layout import coord

    used = [c for (_r, c) in plan.cells] + list(plan.hidden_cols) + [plan.n_cols - 1]
    col = max(used) + 2
    return coord(0, col), coord(2, col)


def form_decorator(
    password: str | None = None, *, xlwings_reference: bool = True
) -> Callable[[Workbook, Worksheet, SheetPlan], None]:
    """A ``decorate`` callback for :func:`kpi_excel.render.render`: the button and the
    status lines at :func:`form_cells`."""

    def decorate(workbook: Workbook, worksheet: Worksheet, plan: SheetPlan) -> None:
        button, status = form_cells(plan)
        attach_form_button(
            workbook,
            worksheet,
            button,
            status_cell=status,
            password=password,
            xlwings_reference=xlwings_reference,
        )

    return decorate


# --------------------------------------------------------------------------- summary


def attach_summary_button(
    workbook: Workbook,
    settings: SummarySettings,
    *,
    worksheet: Worksheet | None = None,
    cell: str | None = None,
    caption: str = SUMMARY_CAPTION,
    xlwings_reference: bool = True,
) -> Worksheet:
    """Add the 设置 sheet (what to re-collect, a 一键汇总 button and the status lines)
    to a summary workbook, and a second button at ``cell`` of ``worksheet`` if given.

    The buttons run :data:`SUMMARY_MACRO`, i.e. :func:`kpi_excel.buttons.collect_summary`,
    which reads the 设置 sheet this writes. Returns the 设置 worksheet. Call before
    ``workbook.close()``; the workbook must be written to an ``.xlsm`` name.
    """
    from kpi_excel.buttons import SETTINGS_SHEET, settings_rows

    project = _project(workbook, xlwings_reference)
    project.add(module_sources("summary"))
    ws = workbook.add_worksheet(SETTINGS_SHEET)
    head = workbook.add_format({"bold": True, "bg_color": "#D9E1F2", "border": 1})
    key = workbook.add_format({"bold": True, "border": 1, "valign": "top"})
    value = workbook.add_format({"border": 1, "locked": False, "valign": "top"})
    note = workbook.add_format({"font_color": "#595959", "text_wrap": True, "valign": "top"})
    rows = settings_rows(settings)
    ws.write_row(0, 0, ["项目", "值", "说明"], head)
    for i, (k, v, n) in enumerate(rows, start=1):
        ws.write_string(i, 0, k, key)
        ws.write_string(i, 1, v, value)
        ws.write_string(i, 2, n, note)
    ws.set_column(0, 0, 12)
    ws.set_column(1, 1, 60)
    ws.set_column(2, 2, 48)
    ws.set_column(3, 3, 3)
    ws.insert_button(
        0,
        4,
        {
            **_BUTTON,
            "macro": SUMMARY_MACRO,
            "caption": caption,
            "description": "按本页设置重新回收、重算并改写汇总表（需要 xlwings）",
        },
    )
    _status_block(workbook, ws, "E3", STATUS_LINES, 70)
    if worksheet is not None and cell is not None:
        worksheet.insert_button(
            cell,
            {**_BUTTON, "macro": SUMMARY_MACRO, "caption": caption},
        )
    return ws
