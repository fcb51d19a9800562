"""``kpi-excel describe``: a template as text or as JSON (schema in the README)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from kpi_excel.score import CompiledForm, compile_form
from kpi_excel.spec import model as m

__all__ = ["describe_json", "describe_text"]


def _num(d: Decimal | None) -> float | int | None:
    if d is None:
        return None
    return int(d) if d == d.to_integral_value() else float(d)


def _input(name: str, key: str, spec: m.InputSpec, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "key": key,
        "role": role,
        "label": spec.label,
        "kind": spec.kind,
        "source": spec.source,
        "column": spec.column,
        "min": _num(spec.min),
        "max": _num(spec.max),
        "unit": spec.unit,
        "required": spec.required,
        "default": _num(spec.default) if isinstance(spec.default, Decimal) else spec.default,
        "choices": dict(spec.choices),
    }


def describe_json(form: m.Form) -> dict[str, Any]:
    cf: CompiledForm = compile_form(form)
    by_ind: dict[str, list[dict[str, Any]]] = {}
    for inp in cf.inputs:
        if inp.indicator:
            by_ind.setdefault(inp.indicator, []).append(_input(inp.name, inp.key, inp.spec, inp.role))
    cells = {c.name: c for c in cf.cells}
    sections = []
    for sec in form.sections:
        inds = []
        for ind in sec.indicators:
            rule = ind.rule.model_dump(mode="json", exclude_defaults=False)
            sys_cell = cells.get(f"sys_{ind.id}")
            inds.append(
                {
                    "id": ind.id,
                    "name": ind.name,
                    "weight": _num(ind.weight),
                    "points": _num(ind.points),
                    "full": _num(ind.full_score),
                    "may_be_na": ind.may_be_na,
                    "completion": ind.completion,
                    "rule": rule,
                    "formula": "=" + sys_cell.expr.to_excel(lambda n: n) if sys_cell else None,
                    "score_name": f"score_{ind.id}",
                    "weighted_name": f"ws_{ind.id}",
                    "inputs": by_ind.get(ind.id, []),
                    "raters": ind.raters.model_dump(mode="json") if ind.raters else None,
                }
            )
        sections.append(
            {
                "id": sec.id,
                "name": sec.name,
                "weight": _num(sec.weight),
                "points": _num(sec.points),
                "subtotal_name": f"sub_{sec.id}",
                "indicators": inds,
            }
        )
    return {
        "id": form.id,
        "title": form.title,
        "version": form.version,
        "period": form.period,
        "period_label": form.period_label,
        "composition": form.composition,
        "full_score": _num(form.full_score),
        "na_policy": form.na_policy,
        "header": [h.model_dump() for h in form.header],
        "columns": [c.model_dump() for c in form.columns],
        "sections": sections,
        "header_inputs": [
            _input(i.name, i.key, i.spec, i.role) for i in cf.inputs if i.indicator is None
        ],
        "computed": [
            {
                "name": c.name,
                "kind": c.kind,
                "indicator": c.indicator,
                "section": c.section,
                "formula": "=" + c.expr.to_excel(lambda n: n),
            }
            for c in cf.cells
        ],
        "grades": [
            {"min": _num(g.min), "grade": g.grade, "label": g.label, "coefficient": _num(g.coefficient)}
            for g in form.grades
        ],
        "pay": form.pay.model_dump() if form.pay else None,
        "signatures": list(form.signatures),
        "completions": list(form.completions),
    }


def _share(ind: m.Indicator) -> str:
    if ind.weight is not None:
        return f"{(ind.weight * 100).normalize():f}%"
    if ind.points is not None:
        return f"{ind.points.normalize():f}分"
    return ""


def describe_text(form: m.Form) -> str:
    data = describe_json(form)
    lines = [
        f"{form.id}  {form.title}  (版本 {form.version}, {form.period_label}, "
        f"{ {'weighted': '指标加权', 'sections': '分区加权', 'points': '计分制'}[form.composition] })"
    ]
    for sec in data["sections"]:
        share = f" {sec['weight'] * 100:g}%" if sec["weight"] is not None else (
            f" {sec['points']}分" if sec["points"] is not None else ""
        )
        lines.append(f"\n[{sec['name']}{share}]  小计 {sec['subtotal_name']}")
        src = next(s for s in form.sections if s.id == sec["id"])
        for ind, d in zip(src.indicators, sec["indicators"], strict=True):
            na = "  可不适用" if ind.may_be_na else ""
            lines.append(f"  {ind.id}: {ind.name}  {_share(ind)}  规则 {ind.rule.kind}{na}")
            for inp in d["inputs"]:
                where = "花名册" if inp["source"] == "roster" else "表上填写"
                rng = ""
                if inp["min"] is not None or inp["max"] is not None:
                    rng = f" [{inp['min'] if inp['min'] is not None else ''}..{inp['max'] if inp['max'] is not None else ''}]"
                lines.append(f"      {inp['name']}: {inp['label']} ({inp['kind']}, {where}){rng}")
            if d["formula"]:
                lines.append(f"      公式 {d['formula']}")
    if form.grades:
        lines.append("\n等级: " + "；".join(f"{g.grade}≥{g.min.normalize():f}" for g in form.grades))
    return "\n".join(lines)


def dumps(form: m.Form) -> str:
    return json.dumps(describe_json(form), ensure_ascii=False, indent=2)
