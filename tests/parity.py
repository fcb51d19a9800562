"""Engine parity: emitted formulas recalculated by LibreOffice vs the Python evaluator.

Inputs are random but biased to where rules break: exact tier thresholds written as
ratios that are not exact doubles (1292.62/1319), caps and floors, zero targets,
blanks, text ("八十", "90分"), out-of-range rater scores and 不适用.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import xlsxwriter

from kpi_excel.rules.tree import Value
from kpi_excel.score import NA_NO, NA_YES, CompiledForm, evaluate
from kpi_excel.spec import model as m

TEXTS = ["八十", "90分", "abc", " ", "１００"]
DENOMINATORS = [Decimal(x) for x in ("0", "1", "3", "7", "12", "100", "1319", "4.6", "250.5")]


def _interesting(rule: m.Rule) -> list[Decimal]:
    """Values of x (percent points, a difference or a value) where the score changes."""
    pts: list[Decimal] = []
    if isinstance(rule, m.TiersRule):
        for t in rule.tiers:
            pts += [b for b in (t.low[0], t.high[0]) if b is not None]
    if isinstance(rule, m.LinearRule):
        pts.append(rule.pivot)
        if rule.max is not None:
            pts.append(rule.pivot + (rule.max - rule.base) / rule.slope)
        if rule.min is not None:
            pts.append(rule.pivot + (rule.min - rule.base) / rule.slope)
    if isinstance(rule, m.ReverseRule) and not isinstance(rule.limit, str):
        pts.append(rule.limit)
    return pts


def _number(rng: random.Random, lo: float, hi: float, places: int = 2) -> Decimal:
    return Decimal(str(round(rng.uniform(lo, hi), places)))


def random_values(cf: CompiledForm, rng: random.Random, dirty: bool = True) -> dict[str, Value]:
    """Random inputs; ``dirty=False`` keeps every required input a usable value."""
    values: dict[str, Value] = {}
    inds = {i.id: i for _, i in cf.form.indicators()}
    for inp in cf.inputs:
        spec = inp.spec
        roll = rng.random()
        if inp.role == "header":
            values[inp.name] = None if (dirty and roll < 0.1) else _number(rng, 1000, 20000, 0)
            continue
        if inp.role == "na":
            values[inp.name] = rng.choice([NA_YES, NA_NO, None, None] if dirty else [NA_YES, None, None, None])
            continue
        if spec.kind in {"level", "rating", "choice"}:
            opts: list[Value] = list(spec.choices) + ([None, "六级", "差"] if dirty else [])
            values[inp.name] = rng.choice(opts)
            continue
        if inp.role == "rater" and (dirty or not spec.required) and rng.random() < 0.6:
            values[inp.name] = None
            continue
        if not dirty:
            roll = 0.5
        if roll < 0.06:
            values[inp.name] = None
            continue
        if roll < 0.12:
            values[inp.name] = rng.choice(TEXTS)
            continue
        if spec.kind == "count":
            values[inp.name] = Decimal(rng.choice([0, 0, 1, 2, 3, 4, 5, 7, 10, 20, 99]))
            continue
        if spec.kind == "percent":
            values[inp.name] = rng.choice([Decimal("0.02"), Decimal("0.0201"), Decimal("0.57"),
                                           _number(rng, 0, 1, 4), Decimal("90")])
            continue
        hi = float(spec.max) if spec.max is not None else 300.0
        lo = float(spec.min) - (5 if dirty else 0) if spec.min is not None else (-20.0 if dirty else 0.0)
        values[inp.name] = _number(rng, lo, hi)
    # second pass: put related inputs on the thresholds of their rule
    for ind in inds.values():
        rule = ind.rule
        x = getattr(rule, "x", None)
        if x is None or rng.random() < 0.3:
            continue
        pts = _interesting(rule)
        if not pts:
            continue
        p = rng.choice(pts)
        name = lambda k, _i=ind.id: f"in_{_i}_{k}"  # noqa: E731
        if x.ratio is not None:
            a, b = x.ratio
            dens = DENOMINATORS if (dirty or x.on_zero != "blank") else DENOMINATORS[1:]
            den = rng.choice(dens)
            values[name(b)] = den
            num = (den * p / 100).quantize(Decimal("0.01"))
            values[name(a)] = num + rng.choice([Decimal(0), Decimal(0), Decimal("0.01"), Decimal("-0.01")])
        elif x.diff is not None:
            a, b = x.diff
            base = values.get(name(b))
            if not isinstance(base, Decimal):
                base = Decimal(12)
                values[name(b)] = base
            values[name(a)] = base + p + rng.choice([Decimal(0), Decimal("0.5"), Decimal("-0.5")])
        elif x.value is not None:
            values[name(x.value)] = p
    return values


def write_parity_workbook(cf: CompiledForm, values: dict[str, Value], path: Path) -> None:
    """Inputs and formulas on one sheet, each cell with its defined name.

    Cached values are deliberately wrong (-999): the engine must recalculate.
    """
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("计算 表")
    row = 0
    for inp in cf.inputs:
        ws.write_string(row, 0, inp.name)
        v = values.get(inp.name)
        if isinstance(v, Decimal):
            ws.write_number(row, 1, float(v))
        elif isinstance(v, str):
            ws.write_string(row, 1, v)
        wb.define_name(inp.name, f"='计算 表'!$B${row + 1}")
        row += 1
    for cell in cf.cells:
        ws.write_string(row, 0, cell.name)
        ws.write_formula(row, 1, "=" + cell.expr.to_excel(lambda n: n), None, -999)
        wb.define_name(cell.name, f"='计算 表'!$B${row + 1}")
        row += 1
    wb.close()


def same(py: Value, lo: object) -> bool:
    if py in ("", None) and lo in ("", None):
        return True
    if isinstance(py, Decimal) and isinstance(lo, int | float) and not isinstance(lo, bool):
        return abs(float(py) - float(lo)) <= 1e-9 * max(1.0, abs(float(lo)))
    if isinstance(py, str) and isinstance(lo, str):
        return py == lo
    return False


def expected(cf: CompiledForm, values: dict[str, Value]) -> dict[str, Value]:
    env = evaluate(cf, values)
    return {c.name: env[c.name] for c in cf.cells}
