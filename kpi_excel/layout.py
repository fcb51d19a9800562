"""Layout of one form: compiled template + employee -> a sheet plan (no I/O).

The plan says, cell by cell, what the paper form looks like in a spreadsheet: values,
formulas (written over defined names) with their cached values, styles, merges,
defined names, data validations, column widths, row heights and print setup.
:mod:`kpi_excel.render` writes it with XlsxWriter; nothing here knows about files.

Layout rules, top to bottom (``n`` = the number of table columns):

* company (when given) and title merged over the table width; the subtitle below;
  a ``考核期间：…`` line when the header itself has no period field;
* the header block: the template's ``header`` fields as label/value pairs, two to four
  pairs a row, each pair over a contiguous group of table columns (label ~40%);
* the table header row (the template's ``columns``; it repeats on every printed page
  and the panes freeze below it);
* one block of rows per indicator: the inputs of each input column stack in sub-rows
  (``input_label`` names the inputs of each sub-row), every other cell of the
  indicator (序号, name, method, weight, system/score/weighted …) is merged down the
  block; the section name is merged down the section; rule text is rendered with the
  employee's targets; level/rating descriptors are appended to the method text;
* a subtotal row per section where ``show_subtotal``, then the total row
  (``total_label`` + ``total_text``), grade, coefficient and pay rows; each value sits
  in the first of the columns ``weighted``, ``score``, ``system`` (else the last);
* notes (考核指标说明, 备注) and the signature + date lines;
* to the right of the print area, hidden: the calculation area holding every computed
  cell the paper has no place for (``sys_`` without a system column, ``score_``,
  ``w_``, ``ws_``, hidden subtotals), each still named and locked.

Inputs filled on the form (and 不适用, rater columns, header fields with source
``input``) are unlocked, light yellow and validated; everything else is locked.
An indicator input whose ``column`` is not a table column goes to the fallback
column (``actual``/``value``/``input`` if present, else the first input column); 不适用
goes to a ``na`` column if there is one, else also to the fallback column. A
``填写项`` column is added when some indicator has several sub-rows and the template
has no ``input_label`` column (sub-rows need labels).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from kpi_excel.errors import KpiExcelError
from kpi_excel.roster import _bounds, format_bound
from kpi_excel.rules.tree import decimal_text
from kpi_excel.score import NA_NO, NA_YES, CompiledForm, ComputedCell, InputCell, evaluate
from kpi_excel.spec import model as m
from kpi_excel.spec.text import indicator_context, render_text

__all__ = [
    "FONT",
    "INPUT_FILL",
    "FIELD_KEYS",
    "Period",
    "CellPlan",
    "Validation",
    "PrintSetup",
    "SheetPlan",
    "layout_form",
    "col_letter",
    "coord",
    "cached_value",
    "formulas_of",
    "sheet_title",
]

#: Cell font. Chinese Excel and WPS have 宋体 (SimSun); LibreOffice substitutes it by
#: fontconfig with a CJK font (Noto Sans/Serif CJK on Linux), as the PDF tests check.
FONT = "宋体"
FONT_SIZE = 10
INPUT_FILL = "#FFF2CC"
COMPUTED_FILL = "#E2EFDA"
HEAD_FILL = "#D9E1F2"
LABEL_FILL = "#F2F2F2"

#: Column keys that show a field of the indicator (not an input column).
FIELD_KEYS = frozenset(
    {
        "seq",
        "section",
        "name",
        "method",
        "target_text",
        "weight",
        "points",
        "unit",
        "period_text",
        "data_source",
        "input_label",
        "note",
        "system",
        "score",
        "weighted",
    }
)
_RESULT_KEYS = ("weighted", "score", "system")
_FALLBACK_INPUT = ("actual", "value", "input")
_DEFAULT_WIDTH = {
    "seq": 5,
    "section": 9,
    "name": 14,
    "method": 34,
    "target_text": 12,
    "weight": 7,
    "points": 6,
    "unit": 6,
    "period_text": 8,
    "data_source": 10,
    "input_label": 14,
    "note": 14,
    "system": 9,
    "score": 9,
    "weighted": 9,
}
_LEFT_KEYS = {"method", "target_text", "note", "input_label"}
_CALC_LABEL = {
    "sys": "系统得分",
    "score": "得分",
    "weight": "有效权重",
    "weighted": "加权得分",
    "subtotal": "分区小计",
}

Style = tuple[tuple[str, Any], ...]


def style(**props: Any) -> Style:
    """A hashable style (XlsxWriter format properties)."""
    return tuple(sorted(props.items()))


def _base(**extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "font_name": FONT,
        "font_size": FONT_SIZE,
        "valign": "vcenter",
        "text_wrap": True,
        "border": 1,
    }
    d.update(extra)
    return d


# ------------------------------------------------------------------ plan types


@dataclass(frozen=True)
class Period:
    """A period as typed (``2026-11``, ``2026-Q4``, ``2026``) and as printed."""

    key: str
    text: str
    first_day: str  # ISO date of its first day


# the period kinds as typed: 2026-11 / 2026年11月, 2026-Q4 / 2026年第4季度, 2026 / 2026年度
_MONTH = re.compile(r"^(\d{4})\s*(?:-|/|年)\s*(\d{1,2})\s*月?$")
_QUARTER = re.compile(r"^(\d{4})\s*(?:-|年)?\s*(?:Q|第)\s*([1-4])\s*(?:季度?)?$", re.IGNORECASE)
_YEAR = re.compile(r"^(\d{4})\s*(?:年度?)?$")
_EXAMPLE = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}


def parse_period(text: str, kind: str) -> Period:
    """A period for a template's ``period`` kind; a mismatch raises a Chinese message.

    ``2026-11`` (monthly), ``2026-Q4`` (quarterly), ``2026`` (yearly); 2026年11月,
    2026年第4季度 and 2026年度 are accepted too.
    """
    s = unicodedata.normalize("NFKC", str(text)).strip()
    label = m.PERIOD_KINDS.get(kind, kind)
    got = None
    mo = _MONTH.match(s)
    qu = _QUARTER.match(s)
    ye = _YEAR.match(s)
    if mo and 1 <= int(mo[2]) <= 12:
        y, mm = int(mo[1]), int(mo[2])
        got = "monthly"
        period = Period(f"{y:04d}-{mm:02d}", f"{y}年{mm}月", f"{y:04d}-{mm:02d}-01")
    elif qu:
        y, q = int(qu[1]), int(qu[2])
        got = "quarterly"
        period = Period(f"{y:04d}-Q{q}", f"{y}年第{q}季度", f"{y:04d}-{3 * q - 2:02d}-01")
    elif ye:
        y = int(ye[1])
        got = "yearly"
        period = Period(f"{y:04d}", f"{y}年度", f"{y:04d}-01-01")
    if got is None:
        raise KpiExcelError(
            f"考核期“{text}”无法识别：本模板为{label}考核，请写成 {_EXAMPLE.get(kind, '2026-11')}"
        )
    if got != kind:
        raise KpiExcelError(
            f"考核期“{text}”是{m.PERIOD_KINDS[got]}，但模板按{label}考核：请写成 {_EXAMPLE[kind]} 这样的{label}期间"
        )
    return period


@dataclass
class CellPlan:
    row: int
    col: int
    value: object = None  # static: str, Decimal or None
    formula: str | None = None  # "=…" over defined names
    cached: object = None  # the formula's cached value (float, str, bool)
    style: Style = ()
    name: str | None = None

    @property
    def locked(self) -> bool:
        return dict(self.style).get("locked", True) is not False


@dataclass(frozen=True)
class Validation:
    row: int
    col: int
    options: tuple[tuple[str, Any], ...]


@dataclass
class PrintSetup:
    landscape: bool
    area: tuple[int, int, int, int]
    repeat_rows: tuple[int, int]
    header: str
    footer: str


@dataclass
class SheetPlan:
    sheet_name: str
    cells: dict[tuple[int, int], CellPlan] = field(default_factory=dict)
    merges: list[tuple[int, int, int, int]] = field(default_factory=list)
    widths: dict[int, float] = field(default_factory=dict)
    hidden_cols: set[int] = field(default_factory=set)
    heights: dict[int, float] = field(default_factory=dict)
    names: dict[str, tuple[int, int]] = field(default_factory=dict)
    validations: list[Validation] = field(default_factory=list)
    freeze: tuple[int, int] = (0, 0)
    print: PrintSetup | None = None
    n_cols: int = 0
    last_row: int = 0

    def put(self, cell: CellPlan) -> CellPlan:
        self.cells[(cell.row, cell.col)] = cell
        if cell.name:
            self.names[cell.name] = (cell.row, cell.col)
        return cell

    def merge(self, r1: int, c1: int, r2: int, c2: int) -> None:
        if (r1, c1) != (r2, c2):
            self.merges.append((r1, c1, r2, c2))

    def name_refs(self) -> dict[str, str]:
        """{defined name: "'Sheet'!$C$7"} in name order."""
        q = quote_sheet(self.sheet_name)
        return {n: f"{q}!${col_letter(c)}${r + 1}" for n, (r, c) in sorted(self.names.items())}

    def locked_cells(self) -> list[tuple[str, object]]:
        """Locked, non-empty cells in row-major order, as written (for the fingerprint)."""
        out: list[tuple[str, object]] = []
        for r, c in sorted(self.cells):
            cell = self.cells[(r, c)]
            if not cell.locked:
                continue
            v = cell.formula if cell.formula is not None else cell.value
            if v is None or v == "":
                continue
            out.append((coord(r, c), v))
        return out


def col_letter(c: int) -> str:
    s = ""
    c += 1
    while c:
        c, rem = divmod(c - 1, 26)
        s = chr(65 + rem) + s
    return s


def coord(r: int, c: int) -> str:
    return f"{col_letter(c)}{r + 1}"


def quote_sheet(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def sheet_title(title: str) -> str:
    """A valid worksheet name from a form title (≤31 chars, no []:*?/\\)."""
    s = "".join("_" if ch in "[]:*?/\\" else ch for ch in title).strip().strip("'")
    s = s[:31].strip() or "考核表"
    return "考核表" if s.casefold() in {"_meta", "history"} else s


def formulas_of(cf: CompiledForm) -> dict[str, str]:
    """Formula text (with ``=``) of every computed cell, over defined names."""
    return {c.name: "=" + c.expr.to_excel(lambda n: n) for c in cf.cells}


def cached_value(v: object) -> object:
    """A Python engine value as a cached cell value: Decimal -> float; blank -> 0."""
    if isinstance(v, bool):
        return v
    if isinstance(v, Decimal):
        return float(v)
    if v is None:
        return 0.0  # a formula that only points at a blank cell shows 0
    return str(v)


# ------------------------------------------------------------------ text metrics


def _char_units(ch: str) -> float:
    if unicodedata.east_asian_width(ch) in "WFA":
        return 2.0
    if ch in "ilI.,:;'|!() ":
        return 0.6
    return 1.05


def text_units(s: str) -> float:
    """Width of text in units of a digit of the 11 pt Normal font: CJK counts 2."""
    return sum(_char_units(ch) for ch in s)


# Characters a line may not start with (kinsoku): they pull the previous one along.
_NO_START = set("，。、；：？！）》」』】,.;:?!)%")


def _tokens(par: str) -> list[str]:
    """Break opportunities as a spreadsheet sees them: after every CJK character and
    space, not inside a run of Latin letters or digits."""
    out: list[str] = []
    word = ""
    for ch in par:
        if ch == " " or unicodedata.east_asian_width(ch) in "WFA":
            if word:
                out.append(word)
                word = ""
            out.append(ch)
        else:
            word += ch
    if word:
        out.append(word)
    return out


@lru_cache(maxsize=8192)
def lines_needed(text: str, width_units: float, font_size: float = FONT_SIZE) -> int:
    """Lines a wrapped cell needs: greedy line filling over break opportunities."""
    scale = font_size / 11
    avail = max(1.0, width_units - 0.8)
    total = 0
    for par in str(text).split("\n"):
        lines, line = 1, 0.0
        for tok in _tokens(par):
            w = text_units(tok) * scale
            if line + w <= avail or tok == " ":
                line += w
                continue
            if tok in _NO_START:
                lines += 1
                line = w + 2 * scale
                continue
            if w > avail:  # a long Latin run breaks anywhere
                for ch in tok:
                    cw = _char_units(ch) * scale
                    if line + cw > avail:
                        lines += 1
                        line = 0.0
                    line += cw
                continue
            lines += 1
            line = w
        total += lines
    return total


def _line_height(font_size: float) -> float:
    # SimSun needs ~1.3 em a line; LibreOffice's Noto CJK substitute ~1.45 em: fit both
    return round(font_size * 1.45, 1)


# ------------------------------------------------------------------ number text


def _pct_format(values: list[Decimal]) -> str:
    places = 0
    for v in values:
        t = decimal_text(v * 100)
        if "." in t:
            places = max(places, len(t.split(".")[1]))
    return "0%" if places == 0 else "0." + "0" * min(places, 2) + "%"


_INPUT_FORMAT = {
    "number": "General",
    "count": "0",
    "percent": "0.0%",
    "date": "yyyy-mm-dd",
    "text": "@",
    "level": "@",
    "rating": "@",
    "choice": "@",
}


def _list_too_long(opts: Mapping[str, Any]) -> bool:
    src = opts.get("source")
    if not isinstance(src, list):
        return False
    return len(",".join(src)) > 255 or any("," in k or '"' in k for k in src)


def _clip(s: str, n: int) -> str:
    s = s.strip()
    return s if len(s) <= n else s[: n - 1] + "…"


# ------------------------------------------------------------------ validation


def _validation(inp: InputCell, ind: m.Indicator | None, rule_text: str) -> dict[str, Any]:
    """XlsxWriter data_validation options for one input (Chinese prompts and alerts)."""
    spec = inp.spec
    title = spec.label + ("" if spec.required else "（选填）")
    opts: dict[str, Any] = {"ignore_blank": True, "error_type": "stop", "error_title": "输入有误"}
    hint = ""
    if spec.kind in {"level", "rating", "choice"}:
        keys = list(spec.choices)
        opts.update({"validate": "list", "source": keys})
        if inp.role == "na":
            hint = "选“是”表示本期不考核此项（如新成立部门），其权重按模板规定转移；选“否”或不填表示照常考核。"
            opts["error_message"] = f"请选择“{NA_YES}”或“{NA_NO}”。"
        else:
            hint = "请从下拉列表选择：\n" + "\n".join(
                f"{k}：{d}" if d else k for k, d in spec.choices.items()
            )
            opts["error_message"] = _clip("请从下拉列表中选择：" + "、".join(keys), 255)
    elif spec.kind == "text":
        opts.update({"validate": "length", "criteria": "<=", "value": 500})
        hint = "请填写文字（不超过500字）。"
        opts["error_message"] = "请不要超过500字。"
    elif spec.kind == "date":
        import datetime as dt

        opts.update(
            {
                "validate": "date",
                "criteria": "between",
                "minimum": dt.date(2000, 1, 1),
                "maximum": dt.date(2100, 12, 31),
            }
        )
        hint = "请填写日期，如 2026-11-30。"
        opts["error_message"] = "请填写 2000-01-01 到 2100-12-31 之间的日期。"
    else:
        lo, hi = _bounds(spec)
        if inp.role == "rater" and ind is not None:
            lo = Decimal(0) if lo is None else lo
            hi = ind.full_score if hi is None else hi
        whole = spec.kind == "count"
        kind = "整数" if whole else "数字"
        opts["validate"] = "integer" if whole else "decimal"
        if lo is not None and hi is not None:
            opts.update({"criteria": "between", "minimum": float(lo), "maximum": float(hi)})
            rng = f"{format_bound(lo, spec)} 到 {format_bound(hi, spec)} 之间的{kind}"
        elif lo is not None:
            opts.update({"criteria": ">=", "value": float(lo)})
            rng = f"不小于 {format_bound(lo, spec)} 的{kind}"
        elif hi is not None:
            opts.update({"criteria": "<=", "value": float(hi)})
            rng = f"不大于 {format_bound(hi, spec)} 的{kind}"
        else:
            opts.update({"criteria": "between", "minimum": -1e15, "maximum": 1e15})
            rng = kind
        unit = f"（单位：{spec.unit}）" if spec.unit and spec.kind != "percent" else ""
        pct = "，百分比可直接输入 95%" if spec.kind == "percent" else ""
        hint = f"请填写{rng}{unit}{pct}。"
        opts["error_message"] = f"请填写{rng}{unit}。不能填文字（如“八十”或“90分”）。"
    if not spec.required:
        hint += "可不填。"
    if spec.help:
        hint += spec.help
    if rule_text:
        hint += "\n" + rule_text
    opts["input_title"] = _clip(title, 32)
    opts["input_message"] = _clip(hint, 255)
    opts["error_message"] = _clip(opts["error_message"], 255)
    return opts


# ------------------------------------------------------------------ the layout


@dataclass
class _Block:
    """The rows of one indicator: input cells per column, per sub-row."""

    ind: m.Indicator
    section: m.Section
    slots: dict[str, list[InputCell]]
    n: int


def _input_columns(form: m.Form) -> list[str]:
    return [c.key for c in form.columns if c.key not in FIELD_KEYS]


def _plan_blocks(cf: CompiledForm, keys: list[str], input_keys: list[str]) -> list[_Block]:
    form = cf.form
    fallback = next(
        (k for k in _FALLBACK_INPUT if k in input_keys), input_keys[0] if input_keys else ""
    )
    by_ind: dict[str, list[InputCell]] = {}
    for inp in cf.inputs:
        if inp.indicator is not None:
            by_ind.setdefault(inp.indicator, []).append(inp)
    blocks = []
    for sec in form.sections:
        for ind in sec.indicators:
            slots: dict[str, list[InputCell]] = {}
            for inp in by_ind.get(ind.id, []):
                if inp.role == "na":
                    col = "na" if "na" in input_keys else fallback
                elif inp.role == "rater":
                    c = inp.spec.column or inp.key
                    col = c if c in input_keys else fallback
                else:
                    c = inp.spec.column
                    col = c if c in input_keys else fallback
                slots.setdefault(col, []).append(inp)
            n = max([1] + [len(v) for v in slots.values()])
            blocks.append(_Block(ind, sec, slots, n))
    return blocks


def _result_col(keys: list[str]) -> int:
    for k in _RESULT_KEYS:
        if k in keys:
            return keys.index(k)
    return len(keys) - 1


def _descriptors(ind: m.Indicator) -> str:
    """Level/rating/choice descriptors, with each level's points when the rule says."""
    rule = ind.rule
    points: Mapping[str, Decimal] = (
        getattr(rule, "points", {}) if isinstance(rule, m.LevelRule | m.RatingRule) else {}
    )
    lines = []
    for _key, spec in ind.inputs.items():
        if spec.kind not in {"level", "rating", "choice"}:
            continue
        for k, d in spec.choices.items():
            pts = f"（{decimal_text(points[k])}分）" if k in points else ""
            lines.append(f"{k}：{d}{pts}" if d else f"{k}{pts}")
    return "\n".join(lines)


def _described(ind: m.Indicator, shown: str) -> bool:
    """Whether the form's own text already carries every descriptor."""
    squash = "".join(shown.split())
    for spec in ind.inputs.values():
        if spec.kind in {"level", "rating", "choice"}:
            for d in spec.choices.values():
                if d and "".join(d.split()) not in squash:
                    return False
    return True


def _section_text(form: m.Form, sec: m.Section) -> str:
    extra = ""
    if form.composition == "sections" and sec.weight is not None:
        extra = decimal_text(sec.weight * 100) + "%"
    elif sec.points is not None:
        extra = decimal_text(sec.points)
    if extra and extra not in sec.name:
        return f"{sec.name}\n（{extra}）"
    return sec.name


def _group_columns(widths: list[float], k: int) -> list[tuple[int, int]]:
    """Split columns into k contiguous groups of ≥2 columns, of similar width."""
    n = len(widths)
    k = max(1, min(k, n // 2 if n >= 2 else 1))
    total = sum(widths)
    groups: list[tuple[int, int]] = []
    start = 0
    acc = 0.0
    for g in range(k):
        if g == k - 1:
            groups.append((start, n - 1))
            break
        target = total * (g + 1) / k
        end = start
        acc += widths[end]
        while end + 1 < n and (acc + widths[end + 1] / 2 <= target or end - start < 1):
            if n - (end + 1) < 2 * (k - g - 1):
                break
            end += 1
            acc += widths[end]
        groups.append((start, end))
        start = end + 1
    return groups


def layout_form(
    cf: CompiledForm,
    fields: Mapping[str, str],
    values: Mapping[str, Decimal | None],
    period: Period,
    company: str = "",
    formulas: Mapping[str, str] | None = None,
) -> SheetPlan:
    """The sheet plan of one employee's form.

    ``fields`` are the employee's roster fields (``name``, ``department`` …),
    ``values`` the initial input values (targets and ``hdr_q``; the rest blank).
    ``formulas`` may hold :func:`formulas_of` ``(cf)`` computed once per template.
    """
    if formulas is None:
        formulas = formulas_of(cf)
    form = cf.form
    plan = SheetPlan(sheet_title(form.title))
    env = evaluate(cf, dict(values))

    # -- columns ----------------------------------------------------------
    cols: list[m.Column] = list(form.columns)
    keys = [c.key for c in cols]
    input_keys = _input_columns(form)
    if not input_keys:
        pos = next((keys.index(k) for k in ("system", "score", "weighted") if k in keys), len(keys))
        cols.insert(pos, m.Column(key="value", label="填写"))
        keys = [c.key for c in cols]
        input_keys = ["value"]
    blocks = _plan_blocks(cf, keys, input_keys)
    if "input_label" not in keys and any(b.n > 1 for b in blocks):
        pos = keys.index(next(k for k in keys if k in input_keys))
        cols.insert(pos, m.Column(key="input_label", label="填写项"))
        keys = [c.key for c in cols]
    ncol = len(cols)
    ci = {k: i for i, k in enumerate(keys)}
    widths = [
        float(c.width)
        if c.width
        else float(_DEFAULT_WIDTH.get(c.key, max(9, text_units(c.label) + 2)))
        for c in cols
    ]
    for i, w in enumerate(widths):
        plan.widths[i] = w
    plan.n_cols = ncol
    rcol = _result_col(keys)

    def span_width(c1: int, c2: int) -> float:
        return sum(widths[c1 : c2 + 1])

    text_cells: list[tuple[int, int, int, int, str, float]] = []  # r1,c1,r2,c2,text,size

    def put_text(
        r: int,
        c: int,
        text: str,
        st: Style,
        r2: int | None = None,
        c2: int | None = None,
        name: str | None = None,
    ) -> None:
        r2 = r if r2 is None else r2
        c2 = c if c2 is None else c2
        plan.put(CellPlan(r, c, text if text != "" else None, style=st, name=name))
        _fill_merge(r, c, r2, c2, st)
        if text:
            size = dict(st).get("font_size", FONT_SIZE)
            text_cells.append((r, c, r2, c2, text, size))

    def _fill_merge(r: int, c: int, r2: int, c2: int, st: Style) -> None:
        if (r, c) == (r2, c2):
            return
        plan.merge(r, c, r2, c2)
        for rr in range(r, r2 + 1):
            for cc in range(c, c2 + 1):
                if (rr, cc) != (r, c):
                    plan.cells[(rr, cc)] = CellPlan(rr, cc, None, style=st)

    def put_formula(
        r: int, c: int, cell: ComputedCell, st: Style, r2: int | None = None, c2: int | None = None
    ) -> None:
        r2 = r if r2 is None else r2
        c2 = c if c2 is None else c2
        plan.put(
            CellPlan(
                r,
                c,
                formula=formulas[cell.name],
                cached=cached_value(env.get(cell.name)),
                style=st,
                name=cell.name,
            )
        )
        _fill_merge(r, c, r2, c2, st)

    style(**_base(border=0, text_wrap=False))
    r = 0

    # -- title block ------------------------------------------------------
    if company:
        st = style(**_base(border=0, bold=True, font_size=12, align="center"))
        put_text(r, 0, company, st, r, ncol - 1)
        plan.heights[r] = 20
        r += 1
    st = style(**_base(border=0, bold=True, font_size=16, align="center"))
    put_text(r, 0, form.title, st, r, ncol - 1)
    plan.heights[r] = 30
    r += 1
    if form.subtitle:
        st = style(**_base(border=0, align="center"))
        put_text(r, 0, form.subtitle, st, r, ncol - 1)
        r += 1
    if not any(h.source == "period" for h in form.header):
        st = style(**_base(border=0, align="right"))
        put_text(r, 0, f"考核期间：{period.text}", st, r, ncol - 1)
        r += 1

    # -- header block -----------------------------------------------------
    if form.header:
        nh = len(form.header)
        per_row = max(1, min(4, ncol // 3 if ncol >= 6 else ncol // 2 or 1, nh))
        rows_needed = math.ceil(nh / per_row)
        per_row = math.ceil(nh / rows_needed)
        groups = _group_columns(widths, per_row)
        per_row = len(groups)
        label_st = style(**_base(bold=True, align="center", bg_color=LABEL_FILL))
        value_st = style(**_base(align="left"))
        input_st = style(**_base(align="left", locked=False, bg_color=INPUT_FILL, num_format="@"))
        date_st = style(
            **_base(align="left", locked=False, bg_color=INPUT_FILL, num_format="yyyy-mm-dd")
        )
        q_st = style(**_base(align="left", num_format="#,##0.00"))
        used: dict[str, int] = {}
        n_input = 0
        # label span per group: the smallest prefix fitting the group's longest label
        # (≤45% of the group), the same on every header row so the grid lines up
        lab_ends = []
        for p_i, (g0, g1) in enumerate(groups):
            need = max(
                text_units(h.label) * FONT_SIZE / 11 + 1.5 for h in form.header[p_i::per_row]
            )
            end = g0
            while end + 1 < g1 and span_width(g0, end) < min(need, span_width(g0, g1) * 0.45):
                end += 1
            lab_ends.append(end)
        for i, h in enumerate(form.header):
            row = r + i // per_row
            g0, g1 = groups[i % per_row]
            lab_end = lab_ends[i % per_row]
            put_text(row, g0, h.label, label_st, row, lab_end)
            v0 = lab_end + 1
            if h.source == "q":
                q = values.get("hdr_q")
                plan.put(CellPlan(row, v0, q, style=q_st, name="hdr_q"))
                _fill_merge(row, v0, row, g1, q_st)
                continue
            if h.source == "input":
                n_input += 1
                name = f"hdr_input_{n_input}"
                is_date = "日期" in h.label
                st = date_st if is_date else input_st
                plan.put(CellPlan(row, v0, None, style=st, name=name))
                _fill_merge(row, v0, row, g1, st)
                spec = m.InputSpec(
                    label=h.label, kind="date" if is_date else "text", required=False
                )
                opts = _validation(InputCell(name, None, name, spec, "header"), None, "")
                plan.validations.append(Validation(row, v0, tuple(sorted(opts.items()))))
                continue
            if h.source == "blank":
                put_text(row, v0, "", value_st, row, g1)
                continue
            if h.source == "period":
                text = period.text
            elif h.source == "company":
                text = company
            else:
                text = fields.get(h.source, "")
            used[h.source] = used.get(h.source, 0) + 1
            name = f"hdr_{h.source}" + (f"_{used[h.source]}" if used[h.source] > 1 else "")
            put_text(row, v0, text, value_st, row, g1, name=name)
        # the last header row may have fewer pairs: close it with an empty bordered cell
        last = (nh - 1) % per_row
        if last < per_row - 1:
            row = r + (nh - 1) // per_row
            put_text(row, groups[last + 1][0], "", value_st, row, ncol - 1)
        for k in range(rows_needed):
            plan.heights.setdefault(r + k, 20)
        r += rows_needed

    # -- table header -----------------------------------------------------
    plan.heights[r] = 4  # a thin gap between the header block and the table
    r += 1
    head_row = r
    th = style(**_base(bold=True, align="center", bg_color=HEAD_FILL))
    for i, c in enumerate(cols):
        put_text(r, i, c.label, th)
    r += 1
    plan.freeze = (r, 0)

    # -- indicators -------------------------------------------------------
    txt_c = style(**_base(align="center"))
    txt_l = style(**_base(align="left"))
    computed = {c.name: c for c in cf.cells}
    calc_needed: dict[str, list[tuple[int, ComputedCell]]] = {}
    weights = [i.weight for _s, i in form.indicators() if i.weight is not None]
    wfmt = _pct_format(weights) if weights else "0%"
    seq = 0

    def comp_style(cell: ComputedCell, center: bool = True) -> Style:
        fmt = cell.number_format if cell.number_format != "@" else "General"
        if cell.kind == "weight":
            fmt = wfmt
        return style(
            **_base(align="center" if center else "left", num_format=fmt, bg_color=COMPUTED_FILL)
        )

    sec_rows: dict[str, tuple[int, int]] = {}
    long_lists: list[tuple[int, list[str]]] = []  # (validation index, choices)
    extra_ctx = {"period": period.text, "company": company, **dict(fields)}
    for b in blocks:
        ind, sec = b.ind, b.section
        seq += 1
        r1, r2 = r, r + b.n - 1
        sec_rows[sec.id] = (sec_rows.get(sec.id, (r1, r1))[0], r2)
        ctx_vals = {
            k: values.get(f"in_{ind.id}_{k}")
            for k in ind.inputs
            if ind.inputs[k].source == "roster"
        }
        ctx = indicator_context(ind, ctx_vals, extra_ctx)
        where = f"{form.id}: 指标 {ind.id}"
        method = render_text(ind.method, ctx, f"{where} method")
        target_text = render_text(ind.target_text, ctx, f"{where} target_text")
        desc = _descriptors(ind)
        shown = {"method": method, "target_text": target_text, "name": ind.name}
        # descriptors go to an empty text column of the row if there is one, else
        # after the method text
        desc_key = next((k for k in ("target_text", "method") if k in ci and not shown[k]), None)
        desc_key = desc_key or next((k for k in ("method", "target_text", "name") if k in ci), None)
        if desc and desc_key and not _described(ind, " ".join(shown.values())):
            shown[desc_key] = (shown[desc_key] + "\n" + desc).strip("\n")
        rule_text = _clip(method or target_text, 200)

        for key in keys:
            c = ci[key]
            if key == "section":
                continue
            if key in input_keys:
                items = b.slots.get(key, [])
                for j, inp in enumerate(items):
                    rr = r1 + j
                    # a rater column holds one cell for the whole block; other inputs
                    # sit in the sub-row their input_label names
                    rr2 = r2 if len(items) == 1 and (inp.role == "rater" or b.n == 1) else rr
                    fmt = _INPUT_FORMAT[inp.spec.kind]
                    if inp.spec.source == "roster":
                        st = style(**_base(align="center", num_format=fmt))
                        v = values.get(inp.name)
                        plan.put(CellPlan(rr, c, v, style=st, name=inp.name))
                    else:
                        st = style(
                            **_base(
                                align="center", num_format=fmt, locked=False, bg_color=INPUT_FILL
                            )
                        )
                        plan.put(CellPlan(rr, c, None, style=st, name=inp.name))
                        opts = _validation(inp, ind, rule_text)
                        if _list_too_long(opts):
                            long_lists.append((len(plan.validations), list(opts["source"])))
                        plan.validations.append(Validation(rr, c, tuple(sorted(opts.items()))))
                    _fill_merge(rr, c, rr2, c, st)
                if not (len(items) == 1 and (items[0].role == "rater" or b.n == 1)):
                    for rr in range(r1 + len(items), r2 + 1):
                        put_text(rr, c, "", txt_c)
                continue
            if key == "input_label":
                for j in range(b.n):
                    labels = []
                    for k2 in input_keys:
                        items = b.slots.get(k2, [])
                        if j < len(items) and items[j].role != "rater":
                            inp = items[j]
                            lab = "本期是否不适用（是/否）" if inp.role == "na" else inp.spec.label
                            labels.append(lab)
                    put_text(r1 + j, c, " / ".join(labels), txt_l)
                continue
            if key in ("system", "score", "weighted"):
                cname = {
                    "system": f"sys_{ind.id}",
                    "score": f"score_{ind.id}",
                    "weighted": f"ws_{ind.id}",
                }[key]
                if (
                    key == "system"
                    and ind.raters is not None
                    and ind.raters.system_column not in (None, "system")
                ):
                    cname = ""
                cell = computed.get(cname)
                if cell is None:
                    put_text(r1, c, "", txt_c, r2, c)
                else:
                    put_formula(r1, c, cell, comp_style(cell), r2, c)
                continue
            if key == "weight":
                wcell = computed.get(f"w_{ind.id}")
                if wcell is not None:
                    put_formula(r1, c, wcell, comp_style(wcell), r2, c)
                else:
                    st = style(**_base(align="center", num_format=wfmt))
                    plan.put(CellPlan(r1, c, ind.weight, style=st))
                    _fill_merge(r1, c, r2, c, st)
                continue
            if key == "points":
                pts = ind.points if ind.points is not None else None
                st = style(**_base(align="center", num_format="General"))
                plan.put(CellPlan(r1, c, pts, style=st))
                _fill_merge(r1, c, r2, c, st)
                continue
            text = {
                "seq": str(seq),
                "name": shown["name"],
                "method": shown["method"],
                "target_text": shown["target_text"],
                "unit": ind.unit,
                "period_text": ind.period_text,
                "data_source": ind.data_source,
                "note": ind.note,
            }.get(key, "")
            put_text(r1, c, text, txt_l if key in _LEFT_KEYS else txt_c, r2, c)
        # a system column named by raters.system_column (other than "system")
        if ind.raters is not None and ind.raters.system_column not in (None, "system"):
            sc = ind.raters.system_column
            cell = computed.get(f"sys_{ind.id}")
            if sc in ci and cell is not None and sc not in input_keys:
                put_formula(r1, ci[sc], cell, comp_style(cell), r2, ci[sc])
        for cell in cf.cells:
            if cell.indicator == ind.id and cell.name not in plan.names:
                calc_needed.setdefault(cell.kind, []).append((r1, cell))
        r = r2 + 1

        # section end: merge the section cell, then the subtotal row
        last_of_section = ind is sec.indicators[-1]
        if last_of_section:
            s1, s2 = sec_rows[sec.id]
            if "section" in ci:
                put_text(s1, ci["section"], _section_text(form, sec), txt_c, s2, ci["section"])
            sub = computed[f"sub_{sec.id}"]
            if sec.show_subtotal:
                label = sec.subtotal_label
                if len(form.sections) > 1 and "section" not in ci:
                    label = f"{sec.name} {label}"
                lab_st = style(**_base(bold=True, align="right"))
                put_text(r, 0, label, lab_st, r, max(0, rcol - 1)) if rcol > 0 else None
                put_formula(r, rcol, sub, comp_style(sub))
                if rcol < ncol - 1:
                    put_text(r, rcol + 1, "", txt_c, r, ncol - 1)
                r += 1
            else:
                calc_needed.setdefault("subtotal", []).append((s2, sub))

    # -- total, grade, coefficient, pay -------------------------------------
    bold_r = style(**_base(bold=True, align="right"))
    bold_l = style(**_base(bold=True, align="left"))

    def result_row(label: str, cell_name: str, fmt: str | None = None, left: bool = False) -> None:
        nonlocal r
        cell = computed[cell_name]
        if rcol > 0:
            put_text(r, 0, label, bold_l if left else bold_r, r, rcol - 1)
        st = dict(comp_style(cell))
        st["bold"] = True
        if fmt:
            st["num_format"] = fmt
        put_formula(r, rcol, cell, style(**st))
        if rcol < ncol - 1:
            put_text(r, rcol + 1, "", txt_c, r, ncol - 1)
        r += 1

    total_label = form.total_label
    if form.total_text and form.total_text not in total_label:
        total_label = f"{total_label}（{form.total_text}）"
    result_row(total_label, "total")
    if "grade" in computed:
        bands = "；".join(
            f"{g.grade}{('（' + g.label + '）') if g.label else ''} ≥{decimal_text(g.min)}分"
            for g in form.grades
        )
        result_row(f"考核等级：{bands}", "grade")
    if "coef" in computed:
        coefs = "；".join(
            f"{g.grade} {decimal_text(g.coefficient)}"
            for g in form.grades
            if g.coefficient is not None
        )
        result_row(f"绩效系数：{coefs}", "coef", "0.00")
    if "pay" in computed and form.pay is not None:
        ft = form.pay.formula_text
        label = ft if ft.startswith(form.pay.label) else f"{form.pay.label}（{ft}）"
        result_row(label, "pay", "#,##0.00")

    # -- notes --------------------------------------------------------------
    note_st = style(**_base(align="left"))
    notes = [(n.title, n.text) for n in form.notes]
    if form.pay is not None and form.pay.note:
        notes.append(("备注", form.pay.note))
    for title, text in notes:
        body = text.strip()
        line = body if body.startswith(title) else f"{title}：{body}"
        put_text(r, 0, line, note_st, r, ncol - 1)
        r += 1

    # -- signatures -----------------------------------------------------------
    if form.signatures:
        plan.heights[r] = 8
        r += 1
        per = 3 if ncol >= 9 and len(form.signatures) >= 3 else min(2, len(form.signatures))
        per = max(1, per)
        groups = _group_columns(widths, per) if ncol >= 2 * per else [(0, ncol - 1)]
        per = len(groups)
        # Each signer gets a fill-in name cell and a date cell (named sig_<n> and
        # sig_<n>_date) so collect can check them; on paper they print as lines.
        lab_st = style(**_base(border=0, align="right", valign="bottom"))
        sig_in = _base(border=0, bottom=1, align="left", valign="bottom", locked=False, bg_color=INPUT_FILL)
        name_st = style(**{**sig_in, "num_format": "@"})
        day_st = style(**{**sig_in, "num_format": "yyyy-mm-dd"})
        for i, who in enumerate(form.signatures):
            row = r + 2 * (i // per)
            g0, g1 = groups[i % per]
            # the label spans as many columns as its text needs (序号 is narrow)
            lab_end = g0
            need = text_units(f"{who}签字：") + 1
            while lab_end < g1 - 1 and sum(widths[g0 : lab_end + 1]) < need:
                lab_end += 1
            v0 = min(lab_end + 1, g1)
            n = i + 1
            for rr, label, nm, st, kind in (
                (row, f"{who}签字：", f"sig_{n}", name_st, "text"),
                (row + 1, "日期：", f"sig_{n}_date", day_st, "date"),
            ):
                if v0 > g0:
                    put_text(rr, g0, label, lab_st, rr, v0 - 1)
                plan.put(CellPlan(rr, v0, None, style=st, name=nm))
                _fill_merge(rr, v0, rr, g1, st)
                spec = m.InputSpec(label=f"{who}{'签字' if kind == 'text' else '签字日期'}", kind=kind, required=False)
                opts = _validation(InputCell(nm, None, nm, spec, "signature"), None, "")
                plan.validations.append(Validation(rr, v0, tuple(sorted(opts.items()))))
                plan.heights[rr] = 24
        r += 2 * math.ceil(len(form.signatures) / per)
    last_row = r - 1
    plan.last_row = last_row

    # -- calculation area (hidden, right of the print area) -----------------------
    calc_col = ncol + 1
    plan.widths[ncol] = 2
    plan.hidden_cols.add(ncol)
    calc_st_head = style(**_base(bold=True, align="center", bg_color=HEAD_FILL))
    for kind in ("sys", "score", "weight", "weighted", "subtotal"):
        items = calc_needed.get(kind)
        if not items:
            continue
        plan.put(CellPlan(head_row, calc_col, _CALC_LABEL[kind], style=calc_st_head))
        for row, cell in items:
            put_formula(row, calc_col, cell, comp_style(cell))
        plan.widths[calc_col] = 10
        plan.hidden_cols.add(calc_col)
        calc_col += 1
    if long_lists:
        # Excel caps an inline list at 255 characters and cannot hold a comma in an
        # item: such lists are written as cells here and referenced as a range
        plan.put(CellPlan(head_row, calc_col, "选项", style=calc_st_head))
        row = head_row + 1
        opt_st = style(**_base(num_format="@"))
        for idx, keys_ in long_lists:
            for k, key in enumerate(keys_):
                plan.put(CellPlan(row + k, calc_col, key, style=opt_st))
            letter = col_letter(calc_col)
            v = plan.validations[idx]
            opts = dict(v.options)
            opts["source"] = f"=${letter}${row + 1}:${letter}${row + len(keys_)}"
            plan.validations[idx] = Validation(v.row, v.col, tuple(sorted(opts.items())))
            row += len(keys_)
        plan.widths[calc_col] = 12
        plan.hidden_cols.add(calc_col)
        calc_col += 1
    leftover = [c for c in cf.cells if c.name not in plan.names]
    if leftover:  # nothing should land here; keep every computed cell named anyway
        plan.put(CellPlan(head_row, calc_col, "其他", style=calc_st_head))
        for k, cell in enumerate(leftover):
            put_formula(head_row + 1 + k, calc_col, cell, comp_style(cell))
        plan.widths[calc_col] = 10
        plan.hidden_cols.add(calc_col)

    # -- row heights from the text they hold -----------------------------------------
    _fit_heights(plan, text_cells, span_width)

    # -- print setup ------------------------------------------------------------
    head = (company or form.title).replace("&", "&&")
    plan.print = PrintSetup(
        landscape=form.orientation == "landscape",
        area=(0, 0, last_row, ncol - 1),
        repeat_rows=(head_row, head_row),
        header=f'&C&"{FONT},常规"&9{_clip(head, 100)}',
        footer=f'&C&"{FONT},常规"&9第 &P 页，共 &N 页',
    )
    return plan


def _fit_heights(plan: SheetPlan, text_cells: list, span_width: Any) -> None:
    base = _line_height(FONT_SIZE) + 4
    need: dict[int, float] = {}
    multi: list[tuple[int, int, float]] = []
    for r1, c1, r2, c2, text, size in text_cells:
        lines = lines_needed(text, span_width(c1, c2), size)
        h = lines * _line_height(size) + 4
        if r1 == r2:
            need[r1] = max(need.get(r1, base), h)
        else:
            multi.append((r1, r2, h))
    rows = range(0, plan.last_row + 1)
    for r in rows:
        if r not in plan.heights:
            plan.heights[r] = max(base, need.get(r, base))
        elif r in need:
            plan.heights[r] = max(plan.heights[r], need[r])
    for r1, r2, h in multi:
        have = sum(plan.heights[r] for r in range(r1, r2 + 1))
        if have < h:
            extra = (h - have) / (r2 - r1 + 1)
            for r in range(r1, r2 + 1):
                plan.heights[r] += extra
    for r in rows:
        plan.heights[r] = min(409.0, round(plan.heights[r] * 4) / 4)
