"""Sheet plan -> .xlsx with XlsxWriter (the reference writer).

XlsxWriter is used because it writes formulas *with* cached values (a viewer that never
recalculates still shows the right numbers), workbook-level defined names, data
validation, protection, merges, print setup and very hidden sheets, and because its
output is deterministic: zip entries carry a fixed 1980 timestamp and the document
dates come from :func:`Workbook.set_properties` (we pass a fixed ``created``).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from kpi_excel.errors import KpiExcelError
from kpi_excel.layout import FONT, SheetPlan, col_letter, quote_sheet
from kpi_excel.meta import CHUNK, META_KEYS, META_SHEET

__all__ = ["render", "render_bytes", "DEFAULT_PASSWORD", "FIXED_CREATED"]

#: Sheet protection password when none is given. Protection stops slips, not people:
#: anyone can remove it, which is why returned forms are fingerprinted.
DEFAULT_PASSWORD = "kpi"

#: Document creation time written into docProps when the caller gives none.
FIXED_CREATED = dt.datetime(2000, 1, 1, 0, 0, 0)

Decorate = Callable[[Workbook, Worksheet, SheetPlan], None]


def _check(ret: object, plan: SheetPlan, r: int, c: int, what: str) -> None:
    if ret not in (None, 0):
        raise KpiExcelError(
            f"写入 {plan.sheet_name}!{col_letter(c)}{r + 1} 失败（{what}，XlsxWriter 返回 {ret}）："
            "文字过长（单元格最多 32767 字）或模板内容超出 Excel 的限制"
        )


def _formats(wb: Workbook) -> Callable[[tuple], Any]:
    cache: dict[tuple, Any] = {}

    def get(st: tuple) -> Any:
        f = cache.get(st)
        if f is None:
            props = dict(st)
            if props.get("font_name") == FONT:
                props.setdefault("font_charset", 134)  # GB2312: how Chinese Excel stores 宋体
            f = wb.add_format(props)
            cache[st] = f
        return f

    return get


def _write_sheet(wb: Workbook, ws: Worksheet, plan: SheetPlan, password: str | None) -> None:
    fmt = _formats(wb)
    for c, w in sorted(plan.widths.items()):
        ws.set_column(c, c, w, None, {"hidden": c in plan.hidden_cols})
    for r, h in sorted(plan.heights.items()):
        ws.set_row(r, h)

    merged_tl: dict[tuple[int, int], tuple[int, int, int, int]] = {
        (r1, c1): (r1, c1, r2, c2) for r1, c1, r2, c2 in plan.merges
    }
    inner: set[tuple[int, int]] = set()
    for r1, c1, r2, c2 in plan.merges:
        for r in range(r1, r2 + 1):
            for c in range(c1, c2 + 1):
                if (r, c) != (r1, c1):
                    inner.add((r, c))

    for r, c in sorted(plan.cells):
        cell = plan.cells[(r, c)]
        f = fmt(cell.style)
        if (r, c) in merged_tl:
            r1, c1, r2, c2 = merged_tl[(r, c)]
            _check(ws.merge_range(r1, c1, r2, c2, "", f), plan, r, c, "merge")
        elif (r, c) in inner:
            continue  # merge_range formatted it
        if cell.formula is not None:
            ret = ws.write_formula(r, c, cell.formula, f, cell.cached)
        elif cell.value is None or cell.value == "":
            ret = 0 if (r, c) in merged_tl else ws.write_blank(r, c, None, f)
        elif isinstance(cell.value, str):
            ret = ws.write_string(r, c, cell.value, f)
        else:
            ret = ws.write_number(r, c, float(cell.value), f)  # type: ignore[arg-type]
        _check(ret, plan, r, c, "cell")

    # XlsxWriter warns and skips what Excel would refuse (a prompt over 255 characters,
    # a bad name): a form missing a validation or a name must not go out silently
    for v in plan.validations:
        _check(
            ws.data_validation(v.row, v.col, v.row, v.col, dict(v.options)),
            plan,
            v.row,
            v.col,
            "validation",
        )

    q = quote_sheet(plan.sheet_name)
    for name, (r, c) in sorted(plan.names.items()):
        _check(wb.define_name(name, f"={q}!${col_letter(c)}${r + 1}"), plan, r, c, f"name {name}")

    ws.hide_gridlines(2)  # the table draws its own borders: on screen it reads like paper
    if plan.freeze != (0, 0):
        ws.freeze_panes(*plan.freeze)
    p = plan.print
    if p is not None:
        ws.set_paper(9)  # A4
        if p.landscape:
            ws.set_landscape()
        else:
            ws.set_portrait()
        ws.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
        ws.print_area(*p.area)
        ws.repeat_rows(*p.repeat_rows)
        ws.fit_to_pages(1, 0)
        ws.center_horizontally()
        ws.set_header(p.header, {"margin": 0.25})
        ws.set_footer(p.footer, {"margin": 0.25})
    ws.protect(
        password if password is not None else DEFAULT_PASSWORD,
        {
            "select_locked_cells": True,
            "select_unlocked_cells": True,
            "format_rows": True,  # a row may need more height in another font (WPS, Mac)
        },
    )
    ws.activate()
    ws.set_first_sheet()


def _write_meta(wb: Workbook, meta: Mapping[str, str]) -> None:
    ws = wb.add_worksheet(META_SHEET)
    ws.write_string(0, 0, "key")
    ws.write_string(0, 1, "value")
    keys = [k for k in META_KEYS if k in meta] + sorted(k for k in meta if k not in META_KEYS)
    for i, key in enumerate(keys, start=1):
        ws.write_string(i, 0, key)
        value = str(meta[key])
        chunks = [value[j : j + CHUNK] for j in range(0, len(value), CHUNK)] or [""]
        for j, chunk in enumerate(chunks):
            if chunk:
                ws.write_string(i, 1 + j, chunk)
    ws.set_column(0, 0, 18)
    ws.set_column(1, 1, 60)
    ws.very_hidden()


def _workbook(target: Any, created: dt.datetime, title: str = "") -> Workbook:
    wb = xlsxwriter.Workbook(
        target,
        {
            "in_memory": True,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "default_format_properties": {"font_name": FONT, "font_size": 11},
        },
    )
    wb.set_properties({"created": created, "title": title, "author": "kpi-excel"})
    wb.set_calc_mode("auto")
    return wb


def render(
    plan: SheetPlan,
    meta: Mapping[str, str],
    path: str | Path,
    *,
    password: str | None = None,
    created: dt.datetime = FIXED_CREATED,
    vba_project: str | Path | None = None,
    decorate: Decorate | None = None,
) -> Path:
    """Write the form sheet and the very hidden ``_meta`` sheet to ``path``.

    ``vba_project`` (a vbaProject.bin) makes an .xlsm; ``decorate`` may add buttons or
    anything else before the file is closed.
    """
    path = Path(path)
    wb = _workbook(str(path), created, meta.get("template_title", ""))
    _fill(wb, plan, meta, password, vba_project, decorate)
    wb.close()
    return path


def render_bytes(
    plan: SheetPlan,
    meta: Mapping[str, str],
    *,
    password: str | None = None,
    created: dt.datetime = FIXED_CREATED,
    vba_project: str | Path | None = None,
    decorate: Decorate | None = None,
) -> bytes:
    """As :func:`render`, into memory."""
    buf = io.BytesIO()
    wb = _workbook(buf, created, meta.get("template_title", ""))
    _fill(wb, plan, meta, password, vba_project, decorate)
    wb.close()
    return buf.getvalue()


def _fill(
    wb: Workbook,
    plan: SheetPlan,
    meta: Mapping[str, str],
    password: str | None,
    vba_project: str | Path | None,
    decorate: Decorate | None,
) -> None:
    ws = wb.add_worksheet(plan.sheet_name)
    _write_sheet(wb, ws, plan, password)
    _write_meta(wb, meta)
    if vba_project is not None:
        wb.add_vba_project(str(vba_project))
    if decorate is not None:
        decorate(wb, ws, plan)
