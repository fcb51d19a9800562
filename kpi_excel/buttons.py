"""The xlwings entry points behind the buttons of macro-enabled workbooks.

A form's 一键重算 button runs ``RunPython "import kpi_excel.buttons as b;
b.recalc_form()"`` and the summary's 一键汇总 button ``b.collect_summary()``
(the VBA is in ``macros/``, the buttons are made by :mod:`kpi_excel.vba`). The forms
compute with their own formulas; these add what formulas cannot:

* :func:`recalc_form` checks every input as ``collect`` will (``90分`` -> 90 with a
  warning, ``优秀`` in a number cell is an error), writes the normalised value back
  where the intent is unambiguous, recomputes every score with the Python engine,
  restores computed cells whose formula was overwritten (unprotecting the sheet for
  that and protecting it again), and writes a status message beside the form;
* :func:`collect_summary` re-collects what the 设置 sheet names (source folders,
  roster, ledger, quotas, period), exactly as ``kpi-excel collect`` does, and rewrites
  the summary sheets of the open workbook.

Both take the workbook as an argument; ``None`` means ``xlwings.Book.caller()`` (the
workbook whose button was clicked, on Windows or macOS). Only this part of the xlwings
API is used, so a small fake can stand in for it in tests (``tests/fakebook.py``):

* ``book.sheets`` (iterate; ``.name`` of each), ``book.sheets[name]``,
  ``book.sheets.add(name, after=sheet)``, ``book.names[name].refers_to_range``,
  ``book.fullname``;
* ``sheet.name``, ``sheet.range(address)`` (one cell or a block), ``sheet.clear_contents()``;
* ``range.value`` (read: a scalar, or a list of rows for a block; write: a scalar or a
  list of rows from the top-left cell), ``range.formula`` (read and write);
* protection through ``sheet.api``: ``Unprotect(password)`` and ``Protect(Password=…,
  DrawingObjects=True, Contents=True, Scenarios=True, AllowFormattingRows=True)`` on
  Windows (COM), ``unprotect(password=…)`` and ``protect_worksheet(password=…, …)`` on
  macOS (AppleScript), chosen by ``sys.platform``. xlwings has no protection API of
  its own.

Text is written with a leading apostrophe, as a person would type it to keep it text:
Excel would otherwise turn a 工号 ``001234`` into 1234, a period ``2026-11`` into a date
and text starting with ``=`` into a formula.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from kpi_excel.errors import FormError, KpiExcelError
from kpi_excel.meta import META_SHEET, canonical
from kpi_excel.rules.tree import Value
from kpi_excel.score import NA_YES, CompiledForm, compile_form, evaluate
from kpi_excel.validate import Checked, check_input, to_sheet_value

__all__ = [
    "SETTINGS_SHEET",
    "SummarySettings",
    "FormRecalc",
    "recalc_form",
    "collect_summary",
    "settings_rows",
    "read_settings",
]

#: The summary's sheet of settings: what the 一键汇总 button re-collects.
SETTINGS_SHEET = "设置"

_STATUS_NAME = "kpi_status"  # kpi_excel.vba.STATUS_NAME (not imported: no XlsxWriter here)
_STATUS_LINES = 12

# -------------------------------------------------------------------- book access


def _caller(book: Any) -> Any:
    if book is not None:
        return book
    try:
        import xlwings as xw
    except ImportError:  # pragma: no cover - only reached from a click in Excel
        raise KpiExcelError('需要 xlwings：pip install "kpi-excel[buttons]"') from None
    return xw.Book.caller()


def _sheet(book: Any, name: str) -> Any | None:
    for sh in book.sheets:
        if sh.name == name:
            return sh
    return None


def _name_range(book: Any, name: str) -> Any | None:
    """The range a workbook-level defined name refers to, or None."""
    try:
        return book.names[name].refers_to_range
    except Exception:  # noqa: BLE001 - xlwings raises KeyError or a COM error
        return None


def _text(s: str) -> str:
    """Text to write into a cell so that it stays exactly this text."""
    return "'" + s if s else s


def _cell(v: object) -> object:
    """A Python value as xlwings writes it (numbers as float, text kept text)."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, Decimal):
        i = int(v)
        return i if v == i and abs(i) < 2**53 else float(v)
    if isinstance(v, int | float | dt.date | dt.datetime):
        return v
    return _text(str(v))


def _write_status(book: Any, lines: Sequence[str]) -> None:
    rng = _name_range(book, _STATUS_NAME)
    if rng is None:
        return
    shown = list(lines[:_STATUS_LINES])
    if len(lines) > _STATUS_LINES:
        shown[-1] = f"……另有 {len(lines) - _STATUS_LINES + 1} 条"
    shown += [""] * (_STATUS_LINES - len(shown))
    rng.value = [[_text(s)] for s in shown]


def _now() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


class _Protection:
    """Unprotect a sheet for the duration of a ``with`` block, then protect it again
    with the options the generated forms use (see :mod:`kpi_excel.render`)."""

    def __init__(self, sheet: Any, password: str) -> None:
        self.api = sheet.api
        self.password = password
        self.mac = sys.platform == "darwin"

    def __enter__(self) -> _Protection:
        try:
            if self.mac:
                self.api.unprotect(password=self.password)
            else:
                self.api.Unprotect(self.password)
        except Exception as e:  # noqa: BLE001 - a COM or AppleScript error
            raise FormError(
                "无法解除工作表保护（密码不对？）：被覆盖的公式未能恢复。"
                "生成时用了 --password 的，请用同一密码重新生成带按钮的表"
            ) from e
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mac:
            self.api.protect_worksheet(
                password=self.password,
                drawing_objects=True,
                worksheet_contents=True,
                scenarios=True,
                allow_formatting_rows=True,
            )
        else:
            self.api.Protect(
                Password=self.password,
                DrawingObjects=True,
                Contents=True,
                Scenarios=True,
                AllowFormattingRows=True,
            )


# --------------------------------------------------------------------------- forms


def _read_meta(book: Any) -> dict[str, str]:
    sh = _sheet(book, META_SHEET)
    if sh is None:
        raise FormError("这不是 kpi-excel 生成的考核表（没有 _meta 工作表），无法重算")
    rows = sh.range("A1:H80").value or []
    out: dict[str, str] = {}
    for i, row in enumerate(rows):
        if i == 0 or not row or row[0] in (None, ""):
            continue
        parts = [v if isinstance(v, str) else canonical(v) for v in row[1:] if v is not None]
        out[str(row[0])] = "".join(parts)
    return out


def _label(cf: CompiledForm, name: str) -> str:
    inp = cf.input_by_name.get(name)
    spec_label = inp.spec.label if inp is not None else ""
    ind_id = inp.indicator if inp is not None else None
    if inp is None:
        cell = cf.cell_by_name.get(name)
        if cell is None:
            return name
        spec_label, ind_id = cell.label, cell.indicator
    ind = next((i for _s, i in cf.form.indicators() if i.id == ind_id), None)
    return f"{ind.name}·{spec_label}" if ind is not None else spec_label


def _show(v: object) -> str:
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, float):
        return format(Decimal(repr(v)).normalize(), "f")
    if v is None:
        return "（空）"
    return str(v)


def _formula(cf: CompiledForm, name: str) -> str:
    return "=" + cf.cell_by_name[name].expr.to_excel(lambda n: n)


@dataclass
class FormRecalc:
    """What :func:`recalc_form` did.

    ``values``: every input (as scored, after normalisation) and computed cell, as
    :func:`kpi_excel.score.evaluate` returns them. ``findings``: (defined name, kind,
    severity, message), the kinds and messages of :mod:`kpi_excel.validate`.
    ``normalised``: name -> (as typed, as written back). ``restored``: computed cells
    whose formula was written back. ``status``: the lines written beside the form.
    """

    values: dict[str, Value] = field(default_factory=dict)
    findings: list[tuple[str, str, str, str]] = field(default_factory=list)
    normalised: dict[str, tuple[object, Value]] = field(default_factory=dict)
    restored: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)

    @property
    def scores(self) -> dict[str, Value]:
        """The final score of each indicator (``score_<indicator>``)."""
        return {k: v for k, v in self.values.items() if k.startswith("score_")}


def _rewrite(inp: Any, c: Checked) -> bool:
    """Whether to write a checked input's normalised value back into its cell: only
    an unambiguous reading (no error) that changes what the sheet's formulas see."""
    if not c.ok or c.value is None or not c.changed:
        return False
    if inp.spec.source == "roster" or inp.spec.kind in {"text", "date"}:
        return False
    return isinstance(c.value, Decimal | str)


def recalc_form(book: Any = None, *, password: str | None = None) -> FormRecalc:
    """The form's 一键重算: check, normalise, recompute, restore formulas, report.

    ``password`` is the sheet protection password (default: the one ``generate``
    uses); the button's macro passes the one the form was generated with. Raises
    :class:`~kpi_excel.errors.FormError` for a workbook that is not a generated form;
    problems inside the form are reported in the status lines, not raised.
    """
    from kpi_excel.render import DEFAULT_PASSWORD
    from kpi_excel.spec.load import load_form_text

    book = _caller(book)
    try:
        meta = _read_meta(book)
        text = meta.get("template_yaml", "")
        if not text:
            raise FormError("考核表的 _meta 中没有模板内容，无法重算")
        cf = compile_form(load_form_text(text, f"{meta.get('template_id', '')}（表内模板）"))
        sheet = _sheet(book, meta.get("sheet", ""))
        if sheet is None:
            raise FormError(f"找不到考核表工作表“{meta.get('sheet', '')}”（被改名或删除）")
        res = FormRecalc()
        _recalc(book, sheet, cf, res, password if password is not None else DEFAULT_PASSWORD)
    except KpiExcelError as e:
        _write_status(book, [f"{_now()} 无法重算：{e}"])
        raise
    _write_status(book, res.status)
    return res


def _recalc(book: Any, sheet: Any, cf: CompiledForm, res: FormRecalc, password: str) -> None:
    ranges: dict[str, Any] = {}
    for name in [i.name for i in cf.inputs] + [c.name for c in cf.cells]:
        rng = _name_range(book, name)
        if rng is None:
            res.findings.append(
                (name, "name_missing", "error", f"“{_label(cf, name)}”找不到（名称被删除）")
            )
        else:
            ranges[name] = rng

    # -- inputs: as collect checks them ---------------------------------------------
    raw = {i.name: ranges[i.name].value for i in cf.inputs if i.name in ranges}
    na = {
        i.indicator
        for i in cf.inputs
        if i.role == "na" and to_sheet_value(raw.get(i.name)) == NA_YES
    }
    checked: dict[str, Checked] = {}
    for inp in cf.inputs:
        v = raw.get(inp.name)
        if inp.spec.source == "roster":
            checked[inp.name] = Checked(to_sheet_value(v), v)
            continue
        c = check_input(v, inp.spec, role=inp.role, label=_label(cf, inp.name))
        if inp.indicator in na and inp.role != "na":
            c = Checked(c.value, c.raw, tuple(f for f in c.findings if f.kind != "required"))
        checked[inp.name] = c
        res.findings += [(inp.name, f.kind, f.severity, f.message) for f in c.findings]
        if inp.name in ranges and _rewrite(inp, c):
            ranges[inp.name].value = _cell(c.value)
            res.normalised[inp.name] = (v, c.value)

    res.values = evaluate(cf, {n: c.value for n, c in checked.items()})

    # -- formulas -------------------------------------------------------------------------
    broken = [
        c.name
        for c in cf.cells
        if c.name in ranges
        and canonical(str(ranges[c.name].formula or "")) != canonical(_formula(cf, c.name))
    ]
    if broken:
        with _Protection(sheet, password):
            for name in broken:
                ranges[name].formula = _formula(cf, name)
        res.restored = broken

    res.status = _form_status(cf, res)


def _form_status(cf: CompiledForm, res: FormRecalc) -> list[str]:
    v = res.values
    total = v.get("total")
    head = f"{_now()} 已用 Python 重算："
    if isinstance(total, Decimal):
        head += f"总分 {_show(total)}"
        if isinstance(v.get("grade"), str) and v.get("grade"):
            head += f"，等级 {v['grade']}"
        if isinstance(v.get("pay"), Decimal):
            head += f"，绩效工资 {_show(v['pay'])}"
    else:
        blank = [
            ind.name
            for _s, ind in cf.form.indicators()
            if not isinstance(v.get(f"score_{ind.id}"), Decimal)
            and v.get(f"score_{ind.id}") != "不适用"
        ]
        head += "还算不出总分" + (f"（{'、'.join(blank)} 没有得分）" if blank else "")
    required = [n for n, k, _s, _m in res.findings if k == "required"]
    errors = [m for _n, k, s, m in res.findings if s == "error" and k != "required"]
    warnings = [m for _n, _k, s, m in res.findings if s == "warning"]
    if not res.findings and not res.restored and not res.normalised:
        head += "；输入均有效，公式完好"
    lines = [head]
    if res.restored:
        names = "、".join(_label(cf, n) for n in res.restored[:6])
        more = f" 等 {len(res.restored)} 处" if len(res.restored) > 6 else ""
        lines.append(f"已恢复被覆盖的公式：{names}{more}")
    for name, (was, now) in res.normalised.items():
        lines.append(f"已改为规范写法：“{_label(cf, name)}”{_show(was)} → {_show(now)}")
    if required:
        names = "、".join(_label(cf, n) for n in required[:5])
        more = f" 等 {len(required)} 项" if len(required) > 5 else ""
        lines.append(f"未填写（必填）：{names}{more}")
    lines += [f"错误：{m}" for m in errors]
    lines += [f"提醒：{m}" for m in warnings]
    return lines


# ------------------------------------------------------------------------ summary


@dataclass
class SummarySettings:
    """What a summary's 一键汇总 re-collects (the 设置 sheet).

    Paths are written as given; relative ones are read relative to the summary's
    folder. ``quota`` is the ``--quota`` text (``A=20%,B=30%``).
    """

    inputs: list[str]
    roster: str | None = None
    ledger: str | None = None
    quota: str | None = None
    period: str | None = None


_KEYS = {
    "inputs": ("来源", "回收的考核表所在文件夹或 .zip；可多行，每行一个"),
    "roster": ("花名册", "列出未交人员；可留空"),
    "ledger": ("台账", "SQLite 台账文件；可留空（不记台账）"),
    "quota": ("强制分布", "如 A=20%,B=30%,C=40%,D=10%；可留空"),
    "period": ("考核期", "如 2026-11；留空取收到最多的考核期"),
}


def settings_rows(settings: SummarySettings) -> list[tuple[str, str, str]]:
    """The 设置 sheet's rows below its header: (项目, 值, 说明)."""
    rows = [
        (_KEYS["inputs"][0], str(p), _KEYS["inputs"][1] if i == 0 else "")
        for i, p in enumerate(settings.inputs or [""])
    ]
    for key in ("roster", "ledger", "quota", "period"):
        label, note = _KEYS[key]
        value = getattr(settings, key)
        rows.append((label, "" if value is None else str(value), note))
    return rows


def read_settings(rows: Iterable[Sequence[object]], base: Path | None = None) -> SummarySettings:
    """Parse the 设置 sheet (rows including the header); relative paths join ``base``."""
    by_label = {label: key for key, (label, _note) in _KEYS.items()}
    got: dict[str, list[str]] = {}
    for row in rows:
        if not row or row[0] is None:
            continue
        key = by_label.get(str(row[0]).strip())
        value = row[1] if len(row) > 1 else None
        if key is None or value is None:
            continue
        text = value if isinstance(value, str) else canonical(value)
        if text.strip():
            got.setdefault(key, []).append(text.strip())

    def path(p: str) -> str:
        q = Path(p).expanduser()
        return str(base / q) if base is not None and not q.is_absolute() else str(q)

    if not got.get("inputs"):
        raise KpiExcelError("“设置”页没有写来源文件夹：请在“来源”一行填写回收考核表所在的文件夹")

    def one(key: str, as_path: bool) -> str | None:
        values = got.get(key)
        if not values:
            return None
        return path(values[0]) if as_path else values[0]

    return SummarySettings(
        inputs=[path(p) for p in got["inputs"]],
        roster=one("roster", True),
        ledger=one("ledger", True),
        quota=one("quota", False),
        period=one("period", False),
    )


def _book_dir(book: Any) -> Path | None:
    full = str(getattr(book, "fullname", "") or "")
    if not full or "://" in full:  # not saved yet, or on OneDrive/SharePoint
        return None
    return Path(full).parent


def collect_summary(book: Any = None) -> Any:
    """The summary's 一键汇总: re-collect what 设置 names and rewrite the summary sheets.

    Runs :func:`kpi_excel.collect.collect` with the settings (the ledger is updated
    as ``kpi-excel collect`` updates it), writes the summary workbook ``collect``
    would write to a temporary file, and copies its sheets' contents into this open
    workbook (sheets it lacks are added; 设置 is left as it is). Returns the
    :class:`~kpi_excel.collect.Collection`.
    """
    from kpi_excel.collect import collect

    book = _caller(book)
    settings_sheet = _sheet(book, SETTINGS_SHEET)
    try:
        if settings_sheet is None:
            raise KpiExcelError(f"找不到“{SETTINGS_SHEET}”工作表：这不是带一键汇总按钮的汇总表")
        settings = read_settings(settings_sheet.range("A1:C60").value or [], _book_dir(book))
        with tempfile.TemporaryDirectory(prefix="kpi_summary_") as tmp:
            out = Path(tmp) / "summary.xlsx"
            coll = collect(
                [Path(p) for p in settings.inputs],
                out=out,
                roster=Path(settings.roster) if settings.roster else None,
                db=Path(settings.ledger) if settings.ledger else None,
                quota=settings.quota,
                period=settings.period,
                exclude=[Path(book.fullname)] if _book_dir(book) is not None else [],
            )
            written = _copy_sheets(out, book)
    except KpiExcelError as e:
        _write_status(book, [f"{_now()} 无法汇总：{e}"])
        raise
    c = coll.counts()
    lines = [
        f"{_now()} 已重新回收：{c['files']} 份文件，通过 {c['accepted']}，"
        f"有提醒 {c['warning']}，退回 {c['rejected']}"
        + (f"，未交 {c['missing']}" if coll.roster is not None else ""),
        f"考核期 {coll.period or '（未识别）'}；已改写：{'、'.join(written)}",
    ]
    if settings.ledger:  # without one, collect kept a throw-away ledger in the temp folder
        lines.append(f"台账：{coll.ledger_path}")
    lines.append("汇总表未自动保存：需要保留新结果时请保存本工作簿")
    _write_status(book, lines)
    return coll


def _copy_sheets(path: Path, book: Any) -> list[str]:
    """Copy every sheet of the summary at ``path`` into ``book`` (values and formulas)."""
    import openpyxl

    src = openpyxl.load_workbook(path, data_only=False)
    written = []
    last = None
    for ws in src.worksheets:
        rows = [
            [c.value if c.data_type == "f" else _cell(c.value) for c in row]
            for row in ws.iter_rows()
        ]
        target = _sheet(book, ws.title)
        if target is None:
            target = book.sheets.add(ws.title, after=last or list(book.sheets)[-1])
        else:
            target.clear_contents()
        if rows and any(v is not None for row in rows for v in row):
            target.range("A1").value = rows
        last = target
        written.append(ws.title)
    return written
