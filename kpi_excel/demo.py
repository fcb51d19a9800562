"""``kpi-excel demo``: the whole monthly flow on the bundled samples.

1. generate one form per employee of ``samples/roster.xlsx`` (five templates, four
   departments);
2. fill them as managers would (plausible answers, seeded by 工号, so every run gives
   the same files) and apply the deliberate problems of ``samples/problems.yaml``
   (text in a number cell, an overwritten formula, an edited target, a duplicate, last
   month's form, a stale file, missing returns, lock and system files);
3. collect the returned folder into a summary workbook and a ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import shutil
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from kpi_excel.errors import KpiExcelError
from kpi_excel.generate import FormGenerator, form_filename, generate_command
from kpi_excel.layout import cached_value
from kpi_excel.roster import Employee, initial_values, load_roster, read_table
from kpi_excel.rules.tree import Value
from kpi_excel.score import NA_NO, InputCell, evaluate
from kpi_excel.spec import model as m

__all__ = ["demo_command", "samples_dir", "answers_for", "returned_form"]

MARKER = ".kpi-excel-demo"


def samples_dir() -> Path:
    """``samples/`` of the source tree, or the copy installed with the package."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "samples", here / "samples"):
        if (cand / "roster.xlsx").is_file():
            return cand
    raise KpiExcelError("找不到示例数据 samples/roster.xlsx：请从源代码目录安装 kpi-excel")


def _target_of(inp: InputCell, values: dict[str, Value], cf_inputs: list[InputCell]) -> Decimal | None:
    """The roster target of the same indicator, if it has one."""
    for other in cf_inputs:
        if other.indicator == inp.indicator and other.spec.source == "roster":
            v = values.get(other.name)
            if isinstance(v, Decimal) and v > 0:
                return v
    return None


def _q(x: float, places: int = 2) -> Decimal:
    return Decimal(str(round(x, places)))


def answers_for(gen: FormGenerator, emp: Employee) -> dict[str, Value]:
    """Plausible answers for every input a manager fills, seeded by 工号.

    Answers are drawn until the form has a total (a draw can land in a tier gap or
    give a zero denominator the template scores as blank).
    """
    seed = int(hashlib.sha256(f"{gen.form.id}/{emp.employee_id}".encode()).hexdigest()[:12], 16)
    rng = random.Random(seed)
    base = dict(initial_values(gen.cf.inputs, emp))
    answers: dict[str, Value] = {}
    for _ in range(200):
        answers = _draw(gen, rng, base)
        total = evaluate(gen.cf, {**base, **answers}).get("total")
        if isinstance(total, Decimal):
            break
    return answers


def _draw(gen: FormGenerator, rng: random.Random, base: dict[str, Value]) -> dict[str, Value]:
    values: dict[str, Value] = dict(base)
    out: dict[str, Value] = {}
    inds = {i.id: i for _, i in gen.form.indicators()}
    for inp in gen.cf.inputs:
        spec = inp.spec
        if spec.source == "roster":
            continue
        if inp.role == "na":
            out[inp.name] = NA_NO
            continue
        if inp.role == "header":
            if spec.kind == "date":
                day = dt.date(2026, 11, 20) + dt.timedelta(days=rng.randint(0, 4))
                out[inp.name] = Decimal((day - dt.date(1899, 12, 30)).days)
            continue
        if spec.kind in {"level", "rating", "choice"}:
            keys = list(spec.choices)
            weights = [1 + i for i in range(len(keys))] if spec.kind == "level" else [3, 4, 2][: len(keys)]
            weights += [1] * (len(keys) - len(weights))
            out[inp.name] = rng.choices(keys, weights=weights)[0]
            continue
        if inp.role == "rater":
            ind = inds[inp.indicator or ""]
            raters = ind.raters
            optional = not spec.required or (raters is not None and raters.mode == "override")
            if optional and rng.random() < 0.85:
                continue  # HR复核 and the like stay empty unless someone overrides
            hi = spec.max if spec.max is not None else ind.full_score
            out[inp.name] = _q(float(hi) * rng.uniform(0.7, 1.0), 0)
            continue
        if spec.kind == "count":
            top = int(spec.max) if spec.max is not None else 10
            pick = rng.choices([0, 1, 2, 3], weights=[6, 3, 1, 1])[0]
            target = _target_of(inp, values, gen.cf.inputs)
            if target is not None and "done" in inp.key:
                pick = max(0, int(target) - rng.choice([0, 0, 0, 1]))
            out[inp.name] = Decimal(min(pick, top))
            continue
        if spec.kind == "percent":
            out[inp.name] = _q(rng.uniform(0.8, 1.0), 4)
            continue
        target = _target_of(inp, values, gen.cf.inputs)
        lo = float(spec.min) if spec.min is not None else 0.0
        hi = float(spec.max) if spec.max is not None else None
        if target is not None:
            x = float(target) * rng.uniform(0.85, 1.15)
        else:
            top = hi if hi is not None and hi < 1000 else 100.0
            x = lo + (top - lo) * rng.uniform(0.7, 1.0)
        if hi is not None:
            x = min(x, hi)
        out[inp.name] = _q(max(x, lo), 2)
    # a part and its whole (resolved of total, passed of done): a whole of a few
    # dozen, a part close to it
    for ind in inds.values():
        for a, b in _pairs(ind.rule):
            na, nb = f"in_{ind.id}_{a}", f"in_{ind.id}_{b}"
            if nb in out and ind.inputs[b].kind == "count":
                out[nb] = Decimal(rng.randint(4, 30))
            whole = out.get(nb, values.get(nb))
            if na in out and isinstance(whole, Decimal):
                short = rng.choices([0, 1, 2], weights=[5, 3, 1])[0]
                part = max(Decimal(0), whole - short)
                if ind.inputs[a].kind != "count":
                    part = _q(float(whole) * rng.uniform(0.9, 1.0), 2)
                out[na] = part
    return out


def _pairs(rule: m.Rule) -> list[tuple[str, str]]:
    """(smaller, larger) input pairs a rule implies."""
    if isinstance(rule, m.NonOverlapRule):
        return [(rule.done, rule.planned), (rule.passed, rule.done)]
    x = getattr(rule, "x", None)
    if isinstance(x, m.XSpec) and x.ratio is not None:
        return [(x.ratio[0], x.ratio[1])]
    return []


def returned_form(
    gen: FormGenerator,
    emp: Employee,
    answers: dict[str, Value],
    *,
    stale: bool = False,
    overwrite: dict[str, Value] | None = None,
    locked_edits: dict[str, Value] | None = None,
) -> bytes:
    """The workbook a manager sends back: answers typed, formulas recalculated.

    ``stale`` keeps the cached values of the blank form (edited in a viewer that never
    recalculates); ``overwrite`` replaces formulas by typed values; ``locked_edits``
    changes locked cells (someone unprotected the sheet).
    """
    plan, meta = gen.plan(emp)
    base = dict(initial_values(gen.cf.inputs, emp))
    env = evaluate(gen.cf, base if stale else {**base, **answers})
    for name, v in answers.items():
        if name in plan.names:
            plan.cells[plan.names[name]].value = v
    for cell in plan.cells.values():
        if cell.formula is not None and cell.name in env:
            cell.cached = cached_value(env[cell.name])
    for name, v in {**(overwrite or {}), **(locked_edits or {})}.items():
        cell = plan.cells[plan.names[name]]
        cell.formula, cell.cached, cell.value = None, None, v
    return gen.reference_bytes(plan, meta)


def _header_dates(gen: FormGenerator, emp: Employee) -> dict[str, Value]:
    """What a manager types outside the table: header dates (填表日期 …) and the
    signature and date cells under the form."""
    plan, _ = gen.plan(emp)
    out: dict[str, Value] = {}
    day = dt.date(2026, 11, 21) + dt.timedelta(days=int(emp.employee_id[-1:] or 0) % 4)
    serial = Decimal((day - dt.date(1899, 12, 30)).days)
    signers = list(gen.form.signatures)
    for name in plan.names:
        if name.startswith("hdr_input_") or (name.startswith("sig_") and name.endswith("_date")):
            out[name] = serial
        elif name.startswith("sig_"):
            who = signers[int(name.split("_")[1]) - 1]
            if who.startswith("被考核"):
                out[name] = emp.name
            else:
                out[name] = emp.fields.get("reviewer") or "李建华"
    return out


def _write(path: Path, data: bytes, mtime: dt.datetime) -> None:
    path.write_bytes(data)
    ts = mtime.timestamp()
    os.utime(path, (ts, ts))


def _first_input(gen: FormGenerator) -> str:
    """The first input a manager types a number into (a number, else a count)."""
    typed = [i for i in gen.cf.inputs if i.role in {"input", "rater"} and i.spec.source == "form"]
    for kind in ("number", "count"):
        for i in typed:
            if i.spec.kind == kind and i.spec.required:
                return i.name
    raise KpiExcelError(f"模板 {gen.form.id} 没有可填写数字的输入")


def _fullwidth(d: Decimal) -> str:
    return str(d).translate({ord(c): ord(c) + 0xFEE0 for c in "0123456789."})


def demo_command(out: Path, *, progress: bool = True) -> int:
    """Run the demo into ``out``; print where everything is. Returns the exit code."""
    from kpi_excel.collect import collect_command

    samples = samples_dir()
    roster = samples / "roster.xlsx"
    conf = yaml.safe_load((samples / "problems.yaml").read_text(encoding="utf-8"))
    period, company = str(conf["period"]), str(conf["company"])
    problems = {p["employee"]: p for p in conf["problems"]}

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise KpiExcelError(f"{out} 已存在且不是示例输出文件夹：请换一个 --out 或先清空它")
    for sub in ("forms", "returned"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("kpi-excel demo output\n", encoding="utf-8")
    forms_dir, returned = out / "forms", out / "returned"

    table = read_table(roster)
    col = table.columns.index("模板")
    templates = list(dict.fromkeys(str(v[col]) for _, v in table.rows if v[col]))

    print(f"1. 生成考核表：{len(templates)} 个模板，花名册 {roster.name}")
    for tid in templates:
        paths = generate_command(tid, roster, period, forms_dir, company=company)
        print(f"   {tid}: {len(paths)} 份")

    print("2. 模拟经理填写并交回（含故意设置的问题）")
    returned.mkdir(parents=True, exist_ok=True)
    sent = dt.datetime(2026, 11, 25, 18, 0)
    count = 0
    for tid in templates:
        gen = FormGenerator.from_ref(tid, period, company=company)
        for emp in load_roster(roster, gen.form):
            prob = problems.get(emp.employee_id, {})
            kind = prob.get("kind")
            if kind == "missing":
                continue
            answers = {**answers_for(gen, emp), **_header_dates(gen, emp)}
            name = form_filename(period, emp)
            kwargs: dict[str, Any] = {}
            g = gen
            if kind == "fullwidth":
                key = _first_input(gen)
                v = answers[key]
                answers[key] = _fullwidth(v) if isinstance(v, Decimal) else v
            elif kind == "text_in_number":
                answers[_first_input(gen)] = str(prob["value"])
            elif kind == "overwritten_formula":
                kwargs["overwrite"] = {prob["cell"]: Decimal(str(prob["value"]))}
            elif kind == "locked_edit":
                kwargs["locked_edits"] = {prob["cell"]: Decimal(str(prob["value"]))}
            elif kind == "stale":
                kwargs["stale"] = True
            elif kind == "unsigned":
                answers = {k: v for k, v in answers.items() if not k.startswith("sig_")}
            elif kind == "blank_required":
                answers.pop(_first_input(gen), None)
            elif kind == "wrong_period":
                g = replace(gen, period=FormGenerator.from_ref(tid, str(prob["period"]), company=company).period)
                name = form_filename(str(prob["period"]), emp)
            elif kind == "duplicate":
                older = answers_for(gen, emp)
                key = _first_input(gen)
                older[key] = Decimal(0)
                stem = Path(name).stem
                _write(returned / f"{stem} (旧).xlsx", returned_form(gen, emp, older), sent - dt.timedelta(days=2))
                count += 1
            _write(returned / name, returned_form(g, emp, answers, **kwargs), sent)
            count += 1
    for extra in conf.get("extra_files", []):
        p = returned / extra["name"]
        if extra["kind"] == "not_a_spreadsheet":
            _write(p, "本月例会纪要：请各部门按时交回考核表。\n".encode(), sent)
        else:
            _write(p, b"\x00" * 165, sent)
        count += 1
    print(f"   {count} 个文件 -> {returned}")

    print("3. 回收、重算、核对、汇总")
    summary = out / "summary.xlsx"
    code = collect_command(
        inputs=[returned],
        out=summary,
        roster=roster,
        db=out / "ledger.sqlite",
        quota="A=20%,B=40%,C=30%,D=10%",
        as_json=False,
        strict=False,
        secret=None,
        progress=progress,
    )
    print()
    print("完成：")
    print(f"  考核表（空白）  {forms_dir}")
    print(f"  交回的考核表    {returned}")
    print(f"  汇总表          {summary}")
    print(f"  台账            {out / 'ledger.sqlite'}")
    return code
