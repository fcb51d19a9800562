"""The summary workbook (汇总表) of one collection, written with XlsxWriter.

Sheets, in order:

=========  ==========================================================================
汇总       one row per employee (the return that counts): ids, template, section scores,
           recomputed total, total in the file, difference, grade (and the grade after
           forced distribution), department and overall rank, 绩效工资, status
明细       employee x indicator: target, actual, system score, each rater's score,
           final score, weight (or points), weighted score
部门统计   per department: count, mean, median, min, max, standard deviation, count
           and share of each grade; a score histogram; charts
等级分布   count and share per grade; with ``--quota``, the forced distribution:
           places per grade, who is over quota and the grade each gets by rank
异常       every problem: file, employee, cell name and address, kind, severity, message
未交       roster members without a valid return (with ``--roster``)
趋势       each employee's and department's totals over the periods in the ledger
文件       every input file with its status and reason, and the files skipped
=========  ==========================================================================

Ranks are competition ranks (1, 1, 3) over recomputed totals, among returns that were
accepted (with or without warnings). Standard deviation is the sample one (n-1).

Forced distribution (:func:`forced_distribution`): places per grade = share x number
of people, rounded half up; grades without a quota are unlimited. People are taken
best total first; nobody gets a better grade than their score earns. When the last
places of a grade fall inside a group of equal totals, **the whole tied group shares
the better grade** and the places used beyond the quota are reported as overflow.

Text that came from returned files is written with ``write_string`` and made inert
(:func:`kpi_excel.collect.safe_text`); the file is written to a temporary file and
moved over the previous summary only when complete.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xlsxwriter

if TYPE_CHECKING:
    from kpi_excel.collect import Collection, FileResult

__all__ = [
    "Placement",
    "GradeQuota",
    "forced_distribution",
    "competition_ranks",
    "write_summary",
    "SHEETS",
]

SHEETS = ("汇总", "明细", "部门统计", "等级分布", "异常", "未交", "趋势", "文件")


# ----------------------------------------------------------------------- ranking


def competition_ranks(values: Sequence[tuple[str, Decimal]]) -> dict[str, int]:
    """Key -> rank, best (highest) first; equal values share a rank (1, 1, 3)."""
    order = sorted(values, key=lambda kv: kv[1], reverse=True)
    out: dict[str, int] = {}
    prev: Decimal | None = None
    rank = 0
    for i, (key, v) in enumerate(order, 1):
        if v != prev:
            rank, prev = i, v
        out[key] = rank
    return out


@dataclass
class Placement:
    """One person in the forced distribution."""

    key: str
    total: Decimal
    rank: int
    grade: str  # by score
    forced: str  # after the quota
    note: str = ""


@dataclass
class GradeQuota:
    grade: str
    share: Decimal | None  # None: no quota for this grade
    places: int | None
    by_score: int = 0
    forced: int = 0
    overflow: int = 0
    note: str = ""


def _half_up(x: Decimal) -> int:
    return int(x.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def forced_distribution(
    people: Sequence[tuple[str, Decimal, str]],
    grades: Sequence[str],
    quota: dict[str, Decimal],
) -> tuple[list[Placement], list[GradeQuota]]:
    """Apply quotas to ``people`` = [(key, total, grade by score)], grades best first.

    See the module docstring for the rule (ties share the better grade, overflow is
    reported). Grades named in ``quota`` but not in ``grades`` are ignored.
    """
    n = len(people)
    index = {g: i for i, g in enumerate(grades)}
    ranks = competition_ranks([(k, t) for k, t, _g in people])
    ordered = sorted(people, key=lambda p: (-p[1], p[0]))
    stats = [
        GradeQuota(g, quota.get(g), _half_up(quota[g] * n) if g in quota else None) for g in grades
    ]
    for _k, _t, g in people:
        if g in index:
            stats[index[g]].by_score += 1
    forced: dict[str, str] = {}
    notes: dict[str, str] = {}
    for gi, gq in enumerate(stats):
        eligible = [p for p in ordered if p[0] not in forced and index.get(p[2], len(grades)) <= gi]
        if gq.places is None or gi == len(grades) - 1 and gq.places >= len(eligible):
            for k, _t, _g in eligible:
                forced[k] = gq.grade
            continue
        taken = 0
        i = 0
        while i < len(eligible) and taken < gq.places:
            j = i
            while j < len(eligible) and eligible[j][1] == eligible[i][1]:
                j += 1
            group = eligible[i:j]
            for k, _t, _g in group:
                forced[k] = gq.grade
            if taken + len(group) > gq.places:
                gq.overflow = taken + len(group) - gq.places
                gq.note = (
                    f"第 {ranks[group[0][0]]} 名有 {len(group)} 人并列（总分 {_fmt(group[0][1])}），"
                    f"同享 {gq.grade} 等，超出名额 {gq.overflow} 人"
                )
                for k, _t, _g in group:
                    notes[k] = f"与他人并列，同享 {gq.grade} 等（超出名额 {gq.overflow} 人）"
            taken += len(group)
            i = j
        if gi == len(grades) - 1:
            for k, _t, _g in eligible[i:]:  # nowhere lower to go
                forced[k] = gq.grade
                notes[k] = f"{gq.grade} 等名额已满，但已是最低等级"
                gq.overflow += 1
    out: list[Placement] = []
    for k, t, g in ordered:
        f = forced.get(k, g)
        note = notes.get(k, "")
        if f != g and not note:
            note = f"按分数为 {g} 等，{g} 等名额已满，按排名调为 {f} 等"
        out.append(Placement(k, t, ranks[k], g, f, note))
    for p in out:
        if p.forced in index:
            stats[index[p.forced]].forced += 1
    return out, stats


# ----------------------------------------------------------------------- writing


def _fmt(d: Decimal | None) -> str:
    return "" if d is None else format(d.normalize(), "f")


def _width(s: str) -> float:
    w = 0.0
    for ch in s:
        w += 2.1 if ord(ch) > 0x2E80 else 1.1
    return w


@dataclass
class _Sheet:
    """A worksheet with column width tracking and typed writers."""

    ws: Any
    fmt: dict[str, Any]
    widths: dict[int, float] = field(default_factory=dict)

    def _track(self, c: int, text: str) -> None:
        self.widths[c] = max(self.widths.get(c, 6.0), min(_width(text) + 2, 60.0))

    def text(self, r: int, c: int, value: object, style: str = "text") -> None:
        from kpi_excel.collect import safe_text

        s = safe_text(value)
        if s == "":
            self.ws.write_blank(r, c, None, self.fmt[style])
        else:
            self.ws.write_string(r, c, s, self.fmt[style])
        self._track(c, s)

    def number(self, r: int, c: int, value: object, style: str = "num") -> None:
        if isinstance(value, bool) or value is None or value == "":
            self.ws.write_blank(r, c, None, self.fmt[style])
            return
        if isinstance(value, Decimal | int | float):
            self.ws.write_number(r, c, float(value), self.fmt[style])
            self._track(c, f"{float(value):.2f}")
            return
        self.text(r, c, value)  # a text result (不适用, a grade) stays text

    def header(self, r: int, cols: Sequence[str]) -> None:
        from kpi_excel.collect import safe_text

        # section names, rater labels and grades come from the template embedded in a
        # returned file: made inert like any other returned text
        for c, h in enumerate(cols):
            h = safe_text(h)
            self.ws.write_string(r, c, h, self.fmt["head"])
            self._track(c, h)

    def finish(self, header_row: int, last_row: int, ncols: int, filter_: bool = True) -> None:
        for c, w in self.widths.items():
            self.ws.set_column(c, c, w)
        self.ws.freeze_panes(header_row + 1, 0)
        if filter_ and ncols:
            self.ws.autofilter(header_row, 0, max(header_row, last_row), ncols - 1)
        # printed: A4 landscape, the header row on every page; one page wide when that
        # stays legible, else the first two columns (工号, 姓名) repeat on every page
        self.ws.set_paper(9)
        self.ws.set_landscape()
        self.ws.repeat_rows(header_row)
        if sum(self.widths.values()) <= 220:
            self.ws.fit_to_pages(1, 0)
        elif ncols > 2:
            self.ws.repeat_columns(0, 1)
        self.ws.set_footer("&C第 &P 页，共 &N 页")


def _formats(wb: Any) -> dict[str, Any]:
    base = {"font_name": "宋体", "font_size": 10, "valign": "vcenter"}
    return {
        "head": wb.add_format(
            {
                **base,
                "bold": True,
                "bg_color": "#D9E1F2",
                "border": 1,
                "text_wrap": True,
                "align": "center",
            }
        ),
        "title": wb.add_format({**base, "bold": True, "font_size": 14}),
        "text": wb.add_format({**base, "num_format": "@"}),
        "wrap": wb.add_format({**base, "num_format": "@", "text_wrap": True}),
        "num": wb.add_format({**base, "num_format": "0.00"}),
        "int": wb.add_format({**base, "num_format": "0"}),
        "pct": wb.add_format({**base, "num_format": "0.0%"}),
        "wpct": wb.add_format({**base, "num_format": "0.##%"}),
        "money": wb.add_format({**base, "num_format": "#,##0.00"}),
        "bad": wb.add_format({**base, "num_format": "@", "font_color": "#C00000"}),
        "warn": wb.add_format({**base, "num_format": "@", "font_color": "#9C5700"}),
        "ok": wb.add_format({**base, "num_format": "@", "font_color": "#006100"}),
        "diff": wb.add_format(
            {**base, "num_format": "0.00", "font_color": "#C00000", "bold": True}
        ),
    }


_STATUS_STYLE = {"accepted": "ok", "warning": "warn", "rejected": "bad"}


def _rows(coll: Collection) -> list[FileResult]:
    """汇总 rows: for each employee of the period, the return that counts (or was the newest)."""
    return [f for f in coll.files if f.counted]


def _grade_order(files: Sequence[FileResult]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for f in files:
        for g, label in f.grades:
            seen.setdefault(g, label)
    return list(seen.items())


def _write_main(
    wb: Any,
    fmt: dict[str, Any],
    coll: Collection,
    rows: list[FileResult],
    forced: dict[str, Placement] | None,
) -> None:
    from kpi_excel.collect import STATUS_TEXT

    sh = _Sheet(wb.add_worksheet("汇总"), fmt)
    sections: list[str] = []
    for f in rows:
        for _sid, name, _v in f.sections:
            if name not in sections:
                sections.append(name)
    valid = [f for f in rows if f.status != "rejected" and f.total is not None]
    overall = competition_ranks([(f.employee_id, f.total) for f in valid])  # type: ignore[misc]
    dept: dict[str, int] = {}
    for d in {f.department for f in valid}:
        dept.update(
            competition_ranks([(f.employee_id, f.total) for f in valid if f.department == d])
        )  # type: ignore[misc]
    cols = [
        "工号",
        "姓名",
        "部门",
        "岗位",
        "模板",
        "版本",
        *sections,
        "重算总分",
        "表内总分",
        "差异",
        "等级",
    ]
    if forced is not None:
        cols.append("强制分布等级")
    cols += ["部门排名", "总排名", "绩效系数", "绩效工资", "状态", "说明", "文件"]
    sh.header(0, cols)
    rows = sorted(
        rows, key=lambda f: (f.department, overall.get(f.employee_id, 10**9), f.employee_id)
    )
    for r, f in enumerate(rows, 1):
        c = 0
        for v in (
            f.employee_id,
            f.name,
            f.department,
            f.position,
            f.template_title,
            f.template_version,
        ):
            sh.text(r, c, v)
            c += 1
        by_name = {name: v for _sid, name, v in f.sections}
        for name in sections:
            sh.number(r, c, by_name.get(name))
            c += 1
        sh.number(r, c, f.total)
        c += 1
        sh.number(r, c, f.total_in_file)
        c += 1
        tif = f.total_in_file
        if f.total is not None and isinstance(tif, Decimal):
            d = f.total - tif
            sh.number(r, c, d, "diff" if d != 0 else "num")
        else:
            sh.number(r, c, None)
        c += 1
        sh.text(r, c, f.grade or "")
        c += 1
        if forced is not None:
            p = forced.get(f.employee_id)
            sh.text(r, c, p.forced if p else "")
            c += 1
        ok = f.status != "rejected"
        sh.number(r, c, dept.get(f.employee_id) if ok else None, "int")
        c += 1
        sh.number(r, c, overall.get(f.employee_id) if ok else None, "int")
        c += 1
        sh.number(r, c, f.coef)
        c += 1
        sh.number(r, c, f.pay, "money")
        c += 1
        sh.text(r, c, STATUS_TEXT[f.status], _STATUS_STYLE[f.status])
        c += 1
        sh.text(r, c, f.reason)
        c += 1
        sh.text(r, c, f.path)
    sh.widths[cols.index("说明")] = 50
    sh.finish(0, len(rows), len(cols))


def _write_detail(wb: Any, fmt: dict[str, Any], rows: list[FileResult]) -> None:
    from kpi_excel.collect import STATUS_TEXT

    sh = _Sheet(wb.add_worksheet("明细"), fmt)
    raters: list[str] = []
    for f in rows:
        for line in f.lines:
            for label in line.raters:
                if label not in raters:
                    raters.append(label)
    cols = ["工号", "姓名", "部门", "分区", "指标", "目标", "实际", "系统得分", *raters]
    cols += ["最终得分", "满分", "权重/分值", "加权得分", "状态"]
    sh.header(0, cols)
    r = 0
    for f in rows:
        for line in f.lines:
            r += 1
            c = 0
            for v in (f.employee_id, f.name, f.department, line.section, line.name):
                sh.text(r, c, v)
                c += 1
            for v in (line.target, line.actual, line.system):
                sh.number(r, c, v)
                c += 1
            for label in raters:
                sh.number(r, c, line.raters.get(label))
                c += 1
            sh.number(r, c, line.final)
            c += 1
            sh.number(r, c, line.full, "int")
            c += 1
            sh.number(r, c, line.weight, "int" if f.composition == "points" else "wpct")
            c += 1
            sh.number(r, c, line.weighted)
            c += 1
            sh.text(r, c, STATUS_TEXT[f.status], _STATUS_STYLE[f.status])
    sh.finish(0, r, len(cols))


def _dept_stats(valid: list[FileResult], grades: list[tuple[str, str]]) -> list[list[Any]]:
    out = []
    groups: dict[str, list[FileResult]] = {}
    for f in valid:
        groups.setdefault(f.department, []).append(f)
    for name, fs in [*sorted(groups.items()), ("全部", valid)]:
        totals = [f.total for f in fs if f.total is not None]
        if not totals:
            continue
        row: list[Any] = [
            name,
            len(totals),
            _round(statistics.mean(totals)),
            _round(statistics.median(totals)),
            min(totals),
            max(totals),
            _round(Decimal(statistics.stdev(totals))) if len(totals) > 1 else None,
        ]
        for g, _label in grades:
            k = sum(f.grade == g for f in fs)
            row += [k, Decimal(k) / len(fs)]
        out.append(row)
    return out


def _round(x: Decimal) -> Decimal:
    return Decimal(x).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _histogram(totals: list[Decimal]) -> list[tuple[str, int]]:
    if not totals:
        return []
    lo = int(min(totals) // 10) * 10
    hi = int(max(totals) // 10) * 10
    out = []
    for b in range(lo, hi + 10, 10):
        k = sum(b <= t < b + 10 for t in totals)
        out.append((f"{b}–{b + 10}", k))
    return out


def _write_dept(
    wb: Any, fmt: dict[str, Any], valid: list[FileResult], grades: list[tuple[str, str]]
) -> None:
    sh = _Sheet(wb.add_worksheet("部门统计"), fmt)
    cols = ["部门", "人数", "平均分", "中位数", "最低分", "最高分", "标准差"]
    for g, _label in grades:
        cols += [f"{g} 人数", f"{g} 占比"]
    sh.header(0, cols)
    stats = _dept_stats(valid, grades)
    for r, row in enumerate(stats, 1):
        sh.text(r, 0, row[0])
        sh.number(r, 1, row[1], "int")
        for c in range(2, 7):
            sh.number(r, c, row[c])
        for k in range(len(grades)):
            sh.number(r, 7 + 2 * k, row[7 + 2 * k], "int")
            sh.number(r, 8 + 2 * k, row[8 + 2 * k], "pct")
    last = len(stats)
    sh.finish(0, last, len(cols))
    # histogram beside the table
    hist = _histogram([f.total for f in valid if f.total is not None])
    hr = last + 3
    sh.ws.write_string(hr, 0, "总分分布（每 10 分一档）", fmt["title"])
    sh.ws.write_string(hr + 1, 0, "分数段", fmt["head"])
    sh.ws.write_string(hr + 1, 1, "人数", fmt["head"])
    for i, (label, k) in enumerate(hist):
        sh.ws.write_string(hr + 2 + i, 0, label, fmt["text"])
        sh.ws.write_number(hr + 2 + i, 1, k, fmt["int"])
    ndept = max(0, last - 1)  # without the 全部 row
    if ndept:
        ch = wb.add_chart({"type": "column"})
        ch.add_series(
            {
                "name": "平均分",
                "categories": ["部门统计", 1, 0, ndept, 0],
                "values": ["部门统计", 1, 2, ndept, 2],
                "data_labels": {"value": True, "num_format": "0.0"},
            }
        )
        ch.set_title({"name": "各部门平均分"})
        ch.set_legend({"none": True})
        ch.set_y_axis({"num_format": "0"})
        sh.ws.insert_chart(hr, 4, ch, {"x_scale": 1.2})
    if hist:
        ch = wb.add_chart({"type": "column"})
        ch.add_series(
            {
                "name": "人数",
                "categories": ["部门统计", hr + 2, 0, hr + 1 + len(hist), 0],
                "values": ["部门统计", hr + 2, 1, hr + 1 + len(hist), 1],
                "gap": 10,
            }
        )
        ch.set_title({"name": "总分分布"})
        ch.set_legend({"none": True})
        sh.ws.insert_chart(hr + 16, 4, ch, {"x_scale": 1.2})


def _write_grades(
    wb: Any,
    fmt: dict[str, Any],
    valid: list[FileResult],
    grades: list[tuple[str, str]],
    quota: dict[str, Decimal] | None,
    placements: list[Placement] | None,
    stats: list[GradeQuota] | None,
) -> None:
    sh = _Sheet(wb.add_worksheet("等级分布"), fmt)
    cols = ["等级", "说明", "人数（按分数）", "占比"]
    if quota is not None:
        cols += ["配额比例", "名额", "强制分布后人数", "强制分布后占比", "超额（并列）", "备注"]
    sh.header(0, cols)
    n = len(valid)
    by = {g.grade: g for g in stats or []}
    for r, (g, label) in enumerate(grades, 1):
        k = sum(f.grade == g for f in valid)
        sh.text(r, 0, g)
        sh.text(r, 1, label)
        sh.number(r, 2, k, "int")
        sh.number(r, 3, Decimal(k) / n if n else None, "pct")
        if quota is not None:
            gq = by.get(g)
            sh.number(r, 4, gq.share if gq else None, "pct")
            sh.number(r, 5, gq.places if gq else None, "int")
            sh.number(r, 6, gq.forced if gq else None, "int")
            sh.number(r, 7, Decimal(gq.forced) / n if gq and n else None, "pct")
            sh.number(r, 8, gq.overflow if gq else None, "int")
            sh.text(r, 9, gq.note if gq else "")
    last = len(grades)
    sh.finish(0, last, len(cols), filter_=False)
    if grades:
        ch = wb.add_chart({"type": "column"})
        ch.add_series(
            {
                "name": "按分数",
                "categories": ["等级分布", 1, 0, last, 0],
                "values": ["等级分布", 1, 2, last, 2],
            }
        )
        if quota is not None:
            ch.add_series(
                {
                    "name": "强制分布后",
                    "categories": ["等级分布", 1, 0, last, 0],
                    "values": ["等级分布", 1, 6, last, 6],
                }
            )
        ch.set_title({"name": "等级分布"})
        sh.ws.insert_chart(1, len(cols) + 1, ch)
    if quota is None or placements is None:
        return
    people = {f.employee_id: f for f in valid}
    r0 = last + 3
    sh.ws.write_string(r0 - 1, 0, "强制分布（按总分从高到低；并列同享较高等级）", fmt["title"])
    pcols = ["排名", "工号", "姓名", "部门", "重算总分", "按分数等级", "强制分布等级", "说明"]
    for c, h in enumerate(pcols):
        sh.ws.write_string(r0, c, h, fmt["head"])
    for i, p in enumerate(placements, 1):
        f = people.get(p.key)
        sh.number(r0 + i, 0, p.rank, "int")
        sh.text(r0 + i, 1, p.key)
        sh.text(r0 + i, 2, f.name if f else "")
        sh.text(r0 + i, 3, f.department if f else "")
        sh.number(r0 + i, 4, p.total)
        sh.text(r0 + i, 5, p.grade)
        sh.text(r0 + i, 6, p.forced, "bad" if p.forced != p.grade else "text")
        sh.text(r0 + i, 7, p.note)
    for c, w in sh.widths.items():
        sh.ws.set_column(c, c, w)


def _write_issues(wb: Any, fmt: dict[str, Any], coll: Collection) -> None:
    from kpi_excel.collect import SEVERITY_TEXT

    sh = _Sheet(wb.add_worksheet("异常"), fmt)
    cols = ["文件", "工号", "姓名", "单元格名称", "地址", "类型", "严重程度", "说明"]
    sh.header(0, cols)
    r = 0
    rank = {"error": 0, "warning": 1, "info": 2}
    for f in coll.files:
        for i in sorted(f.issues, key=lambda i: rank.get(i.severity, 3)):
            r += 1
            sh.text(r, 0, i.path)
            sh.text(r, 1, i.employee)
            sh.text(r, 2, f.name)
            sh.text(r, 3, i.cell)
            sh.text(r, 4, i.address)
            sh.text(r, 5, i.kind)
            style = {"error": "bad", "warning": "warn"}.get(i.severity, "text")
            sh.text(r, 6, SEVERITY_TEXT.get(i.severity, i.severity), style)
            sh.text(r, 7, i.message, "wrap")
    sh.widths[7] = 80
    sh.widths[0] = min(sh.widths.get(0, 20), 45)
    sh.finish(0, r, len(cols))


def _write_missing(wb: Any, fmt: dict[str, Any], coll: Collection) -> None:
    sh = _Sheet(wb.add_worksheet("未交"), fmt)
    cols = ["工号", "姓名", "部门", "说明"]
    sh.header(0, cols)
    if coll.roster is None:
        sh.text(1, 0, "未提供花名册（--roster），无法列出未交人员")
        sh.finish(0, 1, len(cols), filter_=False)
        return
    for r, m in enumerate(coll.missing, 1):
        sh.text(r, 0, m.get("employee_id", ""))
        sh.text(r, 1, m.get("name", ""))
        sh.text(r, 2, m.get("department", ""))
        sh.text(r, 3, m.get("reason", ""))
    sh.finish(0, len(coll.missing), len(cols))


def _write_trend(wb: Any, fmt: dict[str, Any], coll: Collection) -> None:
    from kpi_excel.collect import _period_key, safe_text

    sh = _Sheet(wb.add_worksheet("趋势"), fmt)
    trend = list(coll.trend)
    periods = sorted({t.period for t in trend}, key=_period_key)
    cols = ["工号", "姓名", "部门", *periods]
    sh.header(0, cols)
    people: dict[str, dict[str, Any]] = {}
    for t in trend:
        p = people.setdefault(t.employee_id, {"name": t.name, "department": t.department})
        p["name"], p["department"] = t.name or p["name"], t.department or p["department"]
        p[t.period] = t.total
    r = 0
    for eid in sorted(people, key=lambda e: (people[e]["department"], e)):
        r += 1
        p = people[eid]
        sh.text(r, 0, eid)
        sh.text(r, 1, p["name"])
        sh.text(r, 2, p["department"])
        for c, per in enumerate(periods, 3):
            sh.number(r, c, p.get(per))
    sh.finish(0, r, len(cols))
    # department averages by period
    r0 = r + 3
    sh.ws.write_string(r0 - 1, 0, "部门平均分", fmt["title"])
    sh.ws.write_string(r0, 0, "部门", fmt["head"])
    for c, per in enumerate(periods, 1):
        sh.ws.write_string(r0, c, safe_text(per), fmt["head"])
    depts = sorted({t.department for t in trend})
    for i, d in enumerate(depts, 1):
        sh.text(r0 + i, 0, d)
        for c, per in enumerate(periods, 1):
            vals = [t.total for t in trend if t.department == d and t.period == per]
            sh.number(r0 + i, c, _round(statistics.mean(vals)) if vals else None)
    if depts and periods:
        ch = wb.add_chart({"type": "line"})
        for i, _d in enumerate(depts, 1):
            ch.add_series(
                {
                    "name": ["趋势", r0 + i, 0],
                    "categories": ["趋势", r0, 1, r0, len(periods)],
                    "values": ["趋势", r0 + i, 1, r0 + i, len(periods)],
                    "marker": {"type": "circle"},
                }
            )
        ch.set_title({"name": "各部门平均分趋势"})
        sh.ws.insert_chart(r0 + len(depts) + 2, 0, ch, {"x_scale": 1.3})


def _write_files(wb: Any, fmt: dict[str, Any], coll: Collection) -> None:
    import datetime as dt

    from kpi_excel.collect import STATUS_TEXT

    sh = _Sheet(wb.add_worksheet("文件"), fmt)
    cols = [
        "文件",
        "状态",
        "原因",
        "工号",
        "姓名",
        "考核期",
        "模板",
        "计入汇总",
        "大小(字节)",
        "修改时间",
        "SHA-256",
    ]
    sh.header(0, cols)
    r = 0
    for f in coll.files:
        r += 1
        sh.text(r, 0, f.path)
        sh.text(r, 1, STATUS_TEXT[f.status], _STATUS_STYLE[f.status])
        sh.text(r, 2, f.reason)
        sh.text(r, 3, f.employee_id)
        sh.text(r, 4, f.name)
        sh.text(r, 5, f.period)
        sh.text(r, 6, f"{f.template_id} {f.template_version}".strip())
        sh.text(r, 7, "是" if f.counted and f.status != "rejected" else "否")
        sh.number(r, 8, f.size, "int")
        when = dt.datetime.fromtimestamp(f.mtime).strftime("%Y-%m-%d %H:%M:%S") if f.mtime else ""
        sh.text(r, 9, when)
        sh.text(r, 10, f.sha256)
    for path, why in coll.skipped:
        r += 1
        sh.text(r, 0, path)
        sh.text(r, 1, STATUS_TEXT["skipped"])
        sh.text(r, 2, why)
    sh.widths[2] = 60
    sh.widths[0] = min(sh.widths.get(0, 20), 50)
    sh.finish(0, r, len(cols))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - a file system without fsync
        pass
    finally:
        os.close(fd)


def write_summary(coll: Collection, out: Path, settings: Any = None) -> Path:
    """Write the summary workbook atomically (temp file, then ``os.replace``).

    ``settings`` (a :class:`kpi_excel.buttons.SummarySettings`) makes a macro-enabled
    summary (``out`` must end in ``.xlsm``) with a 设置 sheet and 一键汇总 buttons.
    """
    from kpi_excel.collect import safe_text

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".xlsm" if settings is not None else ".xlsx"
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{suffix}")
    rows = _rows(coll)
    valid = [f for f in rows if f.status != "rejected" and f.total is not None]
    grades = _grade_order(rows)
    placements = stats = None
    forced: dict[str, Placement] | None = None
    if coll.quota is not None:
        people = [(f.employee_id, f.total, f.grade or "") for f in valid]  # type: ignore[misc]
        placements, stats = forced_distribution(people, [g for g, _l in grades], coll.quota)
        forced = {p.key: p for p in placements}
    try:
        wb = xlsxwriter.Workbook(
            str(tmp),
            {
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
                # rows go to disk as they are written (every sheet is written row by row):
                # memory stays flat however many forms were collected
                "constant_memory": True,
            },
        )
        wb.set_properties(
            {"title": safe_text(f"绩效考核汇总 {coll.period}"), "author": "kpi-excel"}
        )
        fmt = _formats(wb)
        _write_main(wb, fmt, coll, rows, forced)
        _write_detail(wb, fmt, rows)
        _write_dept(wb, fmt, valid, grades)
        _write_grades(wb, fmt, valid, grades, coll.quota, placements, stats)
        _write_issues(wb, fmt, coll)
        _write_missing(wb, fmt, coll)
        _write_trend(wb, fmt, coll)
        _write_files(wb, fmt, coll)
        if settings is not None:
            from xlsxwriter.utility import xl_rowcol_to_cell

            from kpi_excel.vba import attach_summary_button

            main = wb.get_worksheet_by_name("汇总")
            cell = xl_rowcol_to_cell(0, (main.dim_colmax or 0) + 2)
            attach_summary_button(wb, settings, worksheet=main, cell=cell)
        wb.close()
        _fsync(tmp)  # the new summary is on disk before it replaces the old one
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
