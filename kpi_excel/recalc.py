"""``kpi-excel recalc FILE``: one returned form, indicator by indicator.

Prints each indicator's inputs (as they will be scored, after normalisation), its
rule, score, weight and weighted score, then the section subtotals, the total and
grade, and every problem found (the same checks as ``collect``, without the checks
that need the other files: period of the collection, duplicates, roster).

``--write OUT`` saves a copy whose formula cells carry the recomputed values as their
cached values, so a viewer that never recalculates (a phone, a chat app's preview)
shows the right numbers. The copy is made by patching the sheet's XML: inputs,
formulas, styles, protection and ``_meta`` stay byte-for-byte as they were; only the
``<v>`` (and type) of each formula cell changes. The cached values are what the sheet
computes from its cells *as typed* (a text "90分" still gives no score there);
formulas someone overwrote are left alone. The original file is never modified.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from kpi_excel.collect import (
    REJECTED,
    SEVERITY_TEXT,
    STATUS_TEXT,
    Context,
    FileResult,
    Source,
    check_source,
    safe_text,
)
from kpi_excel.errors import KpiExcelError
from kpi_excel.read import check_zip, open_book
from kpi_excel.rules.tree import Value

__all__ = ["recalc_file", "patch_cached", "write_recomputed", "recalc_command", "breakdown_json"]


def recalc_file(path: Path, secret: bytes | None = None) -> FileResult:
    """Check and recompute one returned form (no cross-file checks)."""
    if not path.is_file():
        raise KpiExcelError(f"找不到文件 {path}")
    st = path.stat()
    res = check_source(Source(str(path), path, (), st.st_size, st.st_mtime), Context(secret))
    res.settle()
    return res


# ---------------------------------------------------------------- XML patching

_CELL = r"<(?P<p>(?:\w+:)?)c\b(?P<attrs>[^>]*?\br=\"{coord}\"[^>]*?)(?:/>|>(?P<body>.*?)</(?P=p)c>)"
_ATTR = re.compile(r'\s*([\w:]+)="([^"]*)"')
_F = re.compile(r"<(?:\w+:)?f\b[^>]*?(?:/>|>.*?</(?:\w+:)?f>)", re.S)


_ERRORS = {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A"}


def _value_xml(v: Value) -> tuple[str | None, str]:
    """(t attribute, <v> text) for a cached value."""
    if isinstance(v, bool):
        return "b", "1" if v else "0"
    if isinstance(v, Decimal):
        return None, repr(float(v))
    if v is None:
        return None, "0"  # a formula pointing at a blank cell shows 0
    if isinstance(v, str) and v in _ERRORS:
        return "e", escape(v)
    return "str", escape(str(v))


def patch_cached(data: bytes, sheet_part: str, values: Mapping[str, Value]) -> bytes:
    """A copy of the workbook ``data`` with the cached values of formula cells replaced.

    ``values`` maps coordinates (``C7``) of ``sheet_part`` to engine values. Cells
    without a formula are left alone. Every other zip member is copied unchanged.
    """
    zin = check_zip(data)
    xml = zin.read(sheet_part).decode("utf-8")
    for coord, v in values.items():
        pat = re.compile(_CELL.format(coord=re.escape(coord)), re.S)
        mt = pat.search(xml)
        if mt is None or mt.group("body") is None:
            continue
        body = mt.group("body")
        fm = _F.search(body)
        if fm is None:
            continue  # not a formula cell (any more): never overwrite a value
        attrs = [(k, a) for k, a in _ATTR.findall(mt.group("attrs")) if k != "t"]
        t, text = _value_xml(v)
        if t is not None:
            attrs.append(("t", t))
        start = "<" + mt.group("p") + "c" + "".join(f' {k}="{a}"' for k, a in attrs) + ">"
        p = mt.group("p")
        cell = f"{start}{fm.group(0)}<{p}v>{text}</{p}v></{p}c>"
        xml = xml[: mt.start()] + cell + xml[mt.end() :]
    out = _rezip(zin, {sheet_part: xml.encode("utf-8")})
    return out


def _rezip(zin: zipfile.ZipFile, replace: Mapping[str, bytes]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = replace.get(info.filename)
            if data is None:
                data = zin.read(info)
            zi = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = info.external_attr
            zout.writestr(zi, data)
    return buf.getvalue()


def write_recomputed(src: Path, out: Path, res: FileResult | None = None) -> Path:
    """Save a copy of ``src`` at ``out`` with recomputed cached values (atomically)."""
    if src.resolve() == out.resolve():
        raise KpiExcelError("--write 不能覆盖原文件：请另给一个文件名")
    res = res or recalc_file(src)
    if not res.as_typed:
        raise KpiExcelError(f"无法重算 {src}：{res.reason or '不是可识别的考核表'}")
    data = src.read_bytes()
    book = open_book(data, str(src))
    try:
        ref = book.sheet(res.sheet)
        if ref is None:  # pragma: no cover - check_source found it
            raise KpiExcelError(f"找不到工作表 {res.sheet}")
        part = ref.part
    finally:
        book.close()
    values = {res.coords[n]: v for n, v in res.as_typed.items() if res.coords.get(n)}
    patched = patch_cached(data, part, values)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(patched)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


# ---------------------------------------------------------------- printing


def _num(v: object) -> str:
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if v is None:
        return ""
    if isinstance(v, bool):
        return "是" if v else "否"
    return safe_text(v)


def _weight(v: object, points: bool) -> str:
    if not isinstance(v, Decimal):
        return _num(v)
    return _num(v) if points else f"{format((v * 100).normalize(), 'f')}%"


def breakdown_json(res: FileResult) -> dict[str, Any]:
    """The JSON form of a recalc: the file result plus each indicator's lines."""
    out = res.as_dict()
    out["lines"] = [
        {
            "indicator": ln.indicator,
            "name": safe_text(ln.name),
            "section": safe_text(ln.section),
            "inputs": {n: _json(v) for n, _label, v in ln.inputs},
            "rule": safe_text(ln.rule),
            "system": _json(ln.system),
            "raters": {safe_text(k): _json(v) for k, v in ln.raters.items()},
            "score": _json(ln.final),
            "weight": _json(ln.weight),
            "weighted": _json(ln.weighted),
        }
        for ln in res.lines
    ]
    return out


def _json(v: object) -> object:
    if isinstance(v, Decimal):
        return float(v)
    if v is None or isinstance(v, bool | int | float):
        return v
    return safe_text(v)


def _print(res: FileResult) -> None:
    from rich.console import Console
    from rich.markup import escape as esc
    from rich.table import Table

    con = Console()
    if not con.is_terminal:  # piped or captured: no terminal width to respect
        con = Console(width=160)
    title = f"{res.employee_id} {res.name} {res.department} {res.period}".strip()
    con.print(
        f"[bold]{esc(safe_text(title) or res.path)}[/]  {esc(safe_text(res.template_title))} {esc(res.template_version)}"
    )
    points = res.composition == "points"
    t = Table(show_lines=True)
    for h in ("指标", "输入", "规则", "得分", "权重" if not points else "分值", "加权得分"):
        t.add_column(h, overflow="fold")
    for ln in res.lines:
        inputs = "\n".join(f"{label}={_num(v)}" for _n, label, v in ln.inputs)
        for label, v in ln.raters.items():
            if v is not None:
                inputs += f"\n{label}={_num(v)}"
        rule = ln.rule if len(ln.rule) <= 60 else ln.rule[:59] + "…"
        score = _num(ln.final)
        if ln.system != ln.final and ln.system is not None:
            score += f"\n（系统 {_num(ln.system)}）"
        t.add_row(
            esc(safe_text(ln.name)),
            esc(inputs),
            esc(safe_text(rule)),
            esc(score),
            esc(_weight(ln.weight, points)),
            esc(_num(ln.weighted)),
        )
    con.print(t)
    for _sid, name, v in res.sections:
        if len(res.sections) > 1:
            con.print(f"{esc(safe_text(name))}：{esc(_num(v))}")
    con.print(
        f"[bold]总分 {esc(_num(res.total))}[/]（表内 {esc(_num(res.total_in_file))}）"
        + (f"  等级 {esc(res.grade)}" if res.grade else "")
        + (f"  绩效系数 {esc(_num(res.coef))}" if res.coef is not None else "")
        + (f"  绩效工资 {esc(_num(res.pay))}" if res.pay is not None else "")
    )
    colour = {"accepted": "green", "warning": "yellow", "rejected": "red"}[res.status]
    con.print(f"状态：[{colour}]{STATUS_TEXT[res.status]}[/]")
    for i in res.issues:
        where = f"{i.cell} {i.address}".strip()
        where = f"[{where}] " if where else ""
        con.print(
            f"  {SEVERITY_TEXT.get(i.severity, i.severity)}：{esc(safe_text(where + i.message))}"
        )


def recalc_command(file: Path, write: Path | None, as_json: bool = False) -> int:
    """``kpi-excel recalc``: print the breakdown (or JSON); 1 when the form would be rejected."""
    res = recalc_file(Path(file))
    if write is not None:
        write_recomputed(Path(file), Path(write), res)
    if as_json:
        data = breakdown_json(res)
        if write is not None:
            data["written"] = str(write)
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        _print(res)
        if write is not None:
            print(f"已另存重算后的副本：{write}")
    return 1 if res.status == REJECTED else 0
