"""Benchmark: generate, fill and collect N forms; compare with plain openpyxl.

    python benchmarks/bench.py              # 2,000 forms
    python benchmarks/bench.py --n 10000    # the memory target
    python benchmarks/bench.py --help

One run:

1. writes a roster of N employees (departments, positions, targets from a few tiers
   and some of their own) and runs ``generate_command`` on it (the fast writer, all
   cores): **generate forms/s**;
2. fills every form as a returned form would be -- answers in the input cells, the
   cached values recomputed -- with the compiled writer (a few percent with text in a
   number cell, a few with a formula typed over); not timed as a target;
3. runs ``collect`` on the folder (fast read path, all cores; every check, recompute,
   validation, fingerprint and the SQLite ledger): **collect forms/s**; then writes the
   summary workbook of that collection, timed separately;
4. measures a plain openpyxl implementation of the same two jobs on a sample
   (``--sample``, default 100) -- building each workbook from scratch (cells, styles,
   merges, names, validations, protection, print setup, ``_meta``) and reading it back
   (values and names, the same input checks and recompute) -- and extrapolates its rate;
5. prints the peak memory: the resident-set high-water mark of this process and of the
   largest worker process (``resource.getrusage``), up to the end of collect.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kpi_excel.collect import collect  # noqa: E402
from kpi_excel.fastwrite import CompiledWorkbook  # noqa: E402
from kpi_excel.generate import FormGenerator, generate_command  # noqa: E402
from kpi_excel.meta import read_meta  # noqa: E402
from kpi_excel.roster import Employee, load_roster  # noqa: E402
from kpi_excel.score import NA_NO, evaluate  # noqa: E402
from kpi_excel.spec.load import builtin_forms, load_form  # noqa: E402
from kpi_excel.validate import check_input, to_sheet_value  # noqa: E402

PERIOD = {"monthly": "2026-11", "quarterly": "2026-Q4", "yearly": "2026"}
DEPARTMENTS = ["客服部", "销售部", "质检部", "运营部", "市场部", "华东区客服中心", "华南区客服中心"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国志文斌浩宇晨"


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (user + system)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _mb(kb: int) -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    return kb / 1024 if sys.platform != "darwin" else kb / 1048576


def peak_rss() -> tuple[float, float]:
    """(this process, largest child) resident-set high-water marks in MB."""
    return (
        _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
        _mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
    )


# ------------------------------------------------------------------ the roster


def write_roster(path: Path, template: str, n: int, rng: random.Random) -> None:
    """N employees; targets from four tiers, one employee in ten with targets of their own."""
    form = load_form(builtin_forms()[template])
    tcols = {
        f"{ind.id}.{key}": (ind.id, key)
        for _s, ind in form.indicators()
        for key, spec in ind.inputs.items()
        if spec.source == "roster"
    }
    header = ["工号", "姓名", "部门", "岗位", "考核人", "考核人岗位", "入职日期", "绩效工资基数Q"]
    header += list(tcols)
    tiers = [{c: _target(_spec(form, *tcols[c]), rng, k) for c in tcols} for k in range(4)]
    lines = [",".join(header)]
    for i in range(n):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
        dept = DEPARTMENTS[i % len(DEPARTMENTS)]
        tier = tiers[i % 4]
        if i % 10 == 9:
            tier = {c: _target(_spec(form, *tcols[c]), rng, rng.randint(0, 9)) for c in tcols}
        row = [f"E{i + 1:06d}", name, dept, "客服经理", "李娜", "客服总监", "2020-03-15", "5000"]
        row += [tier[c] for c in tcols]
        lines.append(",".join(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _spec(form: Any, ind_id: str, key: str) -> Any:
    return next(i for _s, i in form.indicators() if i.id == ind_id).inputs[key]


def _target(spec: Any, rng: random.Random, k: int) -> str:
    lo = float(spec.min) if spec.min is not None else 0.0
    hi = float(spec.max) if spec.max is not None else lo + 1000
    default = float(spec.default) if spec.default is not None else (lo + hi) / 2
    if spec.kind == "percent":
        v = min(hi, max(lo, default * (1 + 0.02 * k)))
        return f"{round(v * 100, 1)}%"
    v = min(hi, max(lo, default * (1 + 0.1 * k)))
    if spec.kind == "count":
        return str(int(round(v)))
    return str(round(v, 1))


# ------------------------------------------------------------------ filling


def answers_for(
    gen: FormGenerator, emp: Employee, rng: random.Random, fillable: list[str] = ()
) -> dict[str, object]:
    """What a manager types: numbers in range, a few text answers and typed-over totals,
    the header dates, the signatures and their dates."""
    out: dict[str, object] = {}
    start = dt.datetime.fromisoformat(gen.period.first_day)
    day = min(
        start + dt.timedelta(days=rng.randint(20, 40)), dt.datetime.now() - dt.timedelta(days=1)
    )
    day = max(day, start).replace(hour=0, minute=0, second=0, microsecond=0)
    signers = list(gen.form.signatures)
    for name in fillable:
        if name.startswith("hdr_input_") or (name.startswith("sig_") and name.endswith("_date")):
            out[name] = day
        elif name.startswith("sig_"):
            who = signers[int(name.split("_")[1]) - 1]
            out[name] = emp.name if who.startswith(("被考核", "受考核")) else "李娜"
    for inp in gen.cf.inputs:
        spec = inp.spec
        if spec.source != "form" or inp.role == "rater":
            continue
        if inp.role == "na":
            out[inp.name] = NA_NO if rng.random() < 0.2 else None
            continue
        if spec.kind in {"level", "rating", "choice"}:
            out[inp.name] = rng.choice(list(spec.choices))
            continue
        if spec.kind in {"text", "date"}:
            continue
        lo = float(spec.min) if spec.min is not None else 0.0
        hi = float(spec.max) if spec.max is not None else lo + 200
        target = emp.targets.get(inp.name.rsplit("_", 1)[0] + "_target")
        if spec.kind == "count":
            out[inp.name] = rng.randint(int(lo), int(min(hi, lo + 10)))
        elif spec.kind == "percent":
            out[inp.name] = round(rng.uniform(max(lo, 0.7), min(hi, 1.0)), 3)
        elif target is not None:
            out[inp.name] = round(min(hi, max(lo, float(target) * rng.uniform(0.8, 1.2))), 1)
        else:
            out[inp.name] = round(rng.uniform(lo, min(hi, lo + 100)), 1)
    numbers = [n for n, v in out.items() if isinstance(v, float)]
    roll = rng.random()
    if numbers and roll < 0.03:
        out[rng.choice(numbers)] = "八十"  # accepted with a warning
    elif numbers and roll < 0.05:
        out[rng.choice(numbers)] = "约90"  # rejected
    elif roll < 0.06:
        out["total"] = 100  # a value typed over the total: rejected
    return out


_FILL: tuple[FormGenerator, CompiledWorkbook] | None = None


def _fill_init(template: str, period: str) -> None:
    global _FILL
    gen = FormGenerator.from_ref(template, period)
    _FILL = (gen, CompiledWorkbook(gen))


def _fill_batch(batch: list[tuple[Employee, str, int]]) -> int:
    assert _FILL is not None
    gen, cw = _FILL
    for emp, path, seed in batch:
        cw.write(emp, Path(path), answers_for(gen, emp, random.Random(seed), cw.fillable))
    return len(batch)


def fill_all(template: str, period: str, roster: Path, out: Path, workers: int) -> int:
    gen = FormGenerator.from_ref(template, period)
    emps = load_roster(roster, gen.form)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(e, str(out / f"{e.employee_id}.xlsx"), i) for i, e in enumerate(emps)]
    size = max(1, len(jobs) // (workers * 8) or 1)
    batches = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    with ProcessPoolExecutor(workers, initializer=_fill_init, initargs=(template, period)) as pool:
        return sum(pool.map(_fill_batch, batches))


# ------------------------------------------------------------------ the openpyxl baseline


def openpyxl_form(plan: Any, meta: dict[str, str], password: str = "kpi") -> bytes:
    """The form built with openpyxl from scratch: cells, styles, merges, names,
    validations, protection, print setup and the very hidden _meta sheet."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Protection, Side
    from openpyxl.workbook.defined_name import DefinedName
    from openpyxl.worksheet.datavalidation import DataValidation

    from kpi_excel.layout import col_letter
    from kpi_excel.meta import CHUNK, META_KEYS

    wb = Workbook()
    ws = wb.active
    ws.title = plan.sheet_name
    thin = Side(style="thin")
    cache: dict[tuple, tuple] = {}

    def styles(st: tuple) -> tuple:
        got = cache.get(st)
        if got is None:
            d = dict(st)
            font = Font(name=d.get("font_name"), size=d.get("font_size"), bold=d.get("bold", False))
            fill = (
                PatternFill("solid", fgColor=d["bg_color"].lstrip("#"))
                if "bg_color" in d
                else PatternFill()
            )
            border = (
                Border(left=thin, right=thin, top=thin, bottom=thin)
                if d.get("border")
                else Border()
            )
            align = Alignment(
                horizontal=d.get("align"), vertical="center", wrap_text=d.get("text_wrap")
            )
            got = (
                font,
                fill,
                border,
                align,
                d.get("num_format", "General"),
                Protection(locked=d.get("locked", True)),
            )
            cache[st] = got
        return got

    for (r, c), cell in plan.cells.items():
        x = ws.cell(r + 1, c + 1)
        if cell.formula is not None:
            x.value = cell.formula
        elif cell.value not in (None, ""):
            x.value = cell.value if isinstance(cell.value, str) else float(cell.value)
        font, fill, border, align, fmt, prot = styles(cell.style)
        x.font, x.fill, x.border, x.alignment, x.number_format, x.protection = (
            font,
            fill,
            border,
            align,
            fmt,
            prot,
        )
    for r1, c1, r2, c2 in plan.merges:
        ws.merge_cells(start_row=r1 + 1, start_column=c1 + 1, end_row=r2 + 1, end_column=c2 + 1)
    for c, w in plan.widths.items():
        ws.column_dimensions[col_letter(c)].width = w
        ws.column_dimensions[col_letter(c)].hidden = c in plan.hidden_cols
    for r, h in plan.heights.items():
        ws.row_dimensions[r + 1].height = h
    q = "'" + plan.sheet_name.replace("'", "''") + "'"
    for name, (r, c) in plan.names.items():
        wb.defined_names[name] = DefinedName(name, attr_text=f"{q}!${col_letter(c)}${r + 1}")
    for v in plan.validations:
        o = dict(v.options)
        kind = {
            "decimal": "decimal",
            "integer": "whole",
            "list": "list",
            "length": "textLength",
            "date": "date",
        }[o["validate"]]
        f1 = o.get("minimum", o.get("value"))
        if kind == "list":
            src = o["source"]
            f1 = src if isinstance(src, str) else '"' + ",".join(src) + '"'
        dv = DataValidation(
            type=kind,
            operator="between" if "minimum" in o else None,
            formula1=None if f1 is None else str(f1),
            formula2=None if "maximum" not in o else str(o["maximum"]),
            allow_blank=True,
            showErrorMessage=True,
            showInputMessage=True,
            errorTitle=o.get("error_title"),
            error=o.get("error_message"),
            promptTitle=o.get("input_title"),
            prompt=o.get("input_message"),
        )
        dv.add(f"{col_letter(v.col)}{v.row + 1}")
        ws.add_data_validation(dv)
    ws.protection.sheet = True
    ws.protection.password = password
    ws.protection.formatRows = False
    ws.freeze_panes = f"A{plan.freeze[0] + 1}"
    ws.sheet_view.showGridLines = False
    ws.page_setup.paperSize = 9
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ms = wb.create_sheet("_meta")
    ms.append(["key", "value"])
    for key in [k for k in META_KEYS if k in meta]:
        value = str(meta[key])
        ms.append([key] + [value[j : j + CHUNK] for j in range(0, len(value), CHUNK)])
    ms.sheet_state = "veryHidden"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def openpyxl_read(data: bytes, cf_cache: dict[str, Any]) -> Decimal | None:
    """Read a returned form with openpyxl (values and names) and recompute it."""
    import openpyxl

    from kpi_excel.score import compile_form
    from kpi_excel.spec.load import load_form_text

    wb = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    meta = read_meta(wb)
    text = meta["template_yaml"]
    cf = cf_cache.get(text)
    if cf is None:
        cf = cf_cache[text] = compile_form(load_form_text(text))
    ws = wb[meta["sheet"]]
    where = {n: d.attr_text.split("!")[1].replace("$", "") for n, d in wb.defined_names.items()}
    checked = {}
    for inp in cf.inputs:
        raw = ws[where[inp.name]].value
        checked[inp.name] = check_input(raw, inp.spec, role=inp.role).value
    as_typed = evaluate(cf, {i.name: to_sheet_value(ws[where[i.name]].value) for i in cf.inputs})
    final = evaluate(cf, checked)
    for c in cf.cells:  # compare with the cached values, as collect does
        _ = (ws[where[c.name]].value, as_typed.get(c.name))
    total = final.get("total")
    return total if isinstance(total, Decimal) else None


# ------------------------------------------------------------------ the run


def _settle() -> None:
    """Write out what earlier steps (and earlier runs) left for the disk, so a timed
    step does not pay for it: file creation on a busy disk costs a fortune in kernel
    time, and that is the disk's figure, not the code's."""
    if hasattr(os, "sync"):
        os.sync()


def disk_files_per_s(folder: Path, paths: list[Path]) -> float:
    """Files/s this disk takes when nothing but the files is made: files of the first
    form's bytes, under ``paths``' names, written in one process into the new folder
    ``folder`` (removed when the run ends, as the rounds' forms are). What the disk
    alone allows generate, measured in the same run (a busy shared disk changes from
    second to second)."""
    folder.mkdir()
    data = paths[0].read_bytes()
    targets = [folder / p.name for p in paths]
    _settle()
    t = time.perf_counter()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    for target in targets:
        fd = os.open(target, flags, 0o666)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    took = time.perf_counter() - t
    return len(targets) / took  # the folder goes with the run's (see one_round)


#: generate below its target (forms/s on 2 cores) while the disk alone takes fewer
#: files/s than this: the report says why the disk may be slow (this machine's disk:
#: 19,000-47,000 files/s when quiet; 1,600-2,700 within minutes of an earlier run
#: deleting its ~10,000 files, when generate fell to 1,700-2,200 forms/s)
GENERATE_TARGET_PER_S = 3_000
SLOW_DISK_FILES_PER_S = 10_000

#: the figures each round measures (the run reports their medians)
ROUND_FIGURES = (
    "generate_s",
    "generate_per_s",
    "generate_cpu_ms_per_form",
    "collect_s",
    "collect_per_s",
    "collect_check_s",
    "collect_cpu_ms_per_form",
    "openpyxl_generate_per_s",
    "openpyxl_collect_per_s",
    "generate_ratio",
    "collect_ratio",
)


def one_round(
    args: argparse.Namespace,
    k: int,
    root: Path,
    roster: Path,
    period: str,
    workers: int,
    figures: dict[str, Any],
) -> dict[str, Any]:
    """One round: generate, collect, and the openpyxl baseline of both, one after the
    other, so each ratio compares figures of the same minute (a shared machine's speed
    moves by tens of percent between minutes). The first round also fills the forms
    (the later rounds collect the same returned files, each into a new ledger), times
    the summary workbook and reads the disk's and the memory's figures into
    ``figures``."""
    r: dict[str, Any] = {}
    forms = root / ("forms" if k == 0 else f"forms-{k}")
    _settle()
    t, c = time.perf_counter(), cpu_seconds()
    paths = generate_command(args.template, roster, period, forms, workers=workers)
    r["generate_s"] = time.perf_counter() - t
    r["generate_cpu_ms_per_form"] = (cpu_seconds() - c) / args.n * 1000
    assert len(paths) == args.n
    r["generate_per_s"] = args.n / r["generate_s"]
    if k == 0:
        figures["disk_files_per_s"] = disk_files_per_s(root / "disk", paths)
        t = time.perf_counter()
        fill_all(args.template, period, roster, root / "returned", workers)
        figures["fill_s"] = time.perf_counter() - t

    # collect: every check, the recompute, the validation and the ledger (SQLite);
    # then (first round) the summary workbook of the same collection, timed on its own
    arrived: list[float] = []
    ledger = root / ("ledger.sqlite" if k == 0 else f"ledger-{k}.sqlite")
    _settle()
    t, c = time.perf_counter(), cpu_seconds()
    coll = collect(
        [root / "returned"],
        db=ledger,
        workers=workers,
        on_file=lambda _res: arrived.append(time.perf_counter()),
    )
    r["collect_s"] = time.perf_counter() - t
    r["collect_cpu_ms_per_form"] = (cpu_seconds() - c) / args.n * 1000
    r["collect_per_s"] = args.n / r["collect_s"]
    r["collect_check_s"] = (arrived[-1] - t) if arrived else 0.0
    r["load_average"] = os.getloadavg()[0]
    if k == 0:
        figures["counts"] = coll.counts()
        t = time.perf_counter()
        from kpi_excel.summary import write_summary

        write_summary(coll, root / "summary.xlsx")
        figures["summary_s"] = time.perf_counter() - t
        figures["collect_with_summary_per_s"] = args.n / (r["collect_s"] + figures["summary_s"])
        self_mb, child_mb = peak_rss()
        figures["peak_rss_main_mb"] = self_mb
        figures["peak_rss_worker_mb"] = child_mb
    del coll
    # each round's forms and ledger stay until the run ends: files made just after
    # thousands were deleted cost ext4 up to ten times the kernel time (it looks
    # through the inodes deleted a moment ago before taking one), which a later
    # round's generate would pay

    # the openpyxl baseline, on a sample
    gen = FormGenerator.from_ref(args.template, period)
    emps = load_roster(roster, gen.form)[: args.sample]
    t = time.perf_counter()
    books = []
    for emp in emps:
        plan, meta = gen.plan(emp)
        books.append(openpyxl_form(plan, meta))
    base_gen = len(emps) / (time.perf_counter() - t)
    returned = [(root / "returned" / f"{e.employee_id}.xlsx").read_bytes() for e in emps]
    cache: dict[str, Any] = {}
    t = time.perf_counter()
    for data in returned:
        openpyxl_read(data, cache)
    base_col = len(returned) / (time.perf_counter() - t)
    r["openpyxl_generate_per_s"] = base_gen
    r["openpyxl_collect_per_s"] = base_col
    r["generate_ratio"] = r["generate_per_s"] / base_gen
    r["collect_ratio"] = r["collect_per_s"] / base_col
    return r


def report(f: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    """Print the figures: the medians of the rounds, then each round."""
    n = len(rounds)
    print(
        f"kpi-excel benchmark: {f['n']} forms of {f['template']}, {f['cpus']} CPUs, "
        f"{f['workers']} workers, {f['python']}" + (f"; medians of {n} rounds" if n > 1 else "")
    )
    print(
        f"  generate  {f['generate_per_s']:8.0f} forms/s  ({f['generate_s']:.2f} s)   openpyxl {f['openpyxl_generate_per_s']:6.1f} forms/s   x{f['generate_ratio']:.0f}"
    )
    print(
        f"  collect   {f['collect_per_s']:8.0f} forms/s  ({f['collect_s']:.2f} s)   openpyxl {f['openpyxl_collect_per_s']:6.1f} forms/s   x{f['collect_ratio']:.0f}"
    )
    print(
        f"            (checks, recompute, validation, ledger; last check at {f['collect_check_s']:.2f} s)"
    )
    print(
        f"  CPU time  generate {f['generate_cpu_ms_per_form']:.2f} ms/form, collect "
        f"{f['collect_cpu_ms_per_form']:.2f} ms/form (all processes)"
    )
    print(
        f"  summary   {f['summary_s']:8.2f} s        collect + summary workbook {f['collect_with_summary_per_s']:.0f} forms/s"
    )
    print(
        f"            (this disk, only writing the same files in one process: "
        f"{f['disk_files_per_s']:.0f} files/s; generate CPU time allows "
        f"{f['cpus'] / f['generate_cpu_ms_per_form'] * 1000:.0f} forms/s)"
    )
    if (
        f["generate_per_s"] < GENERATE_TARGET_PER_S
        and f["disk_files_per_s"] < SLOW_DISK_FILES_PER_S
    ):
        print(
            "            (creating files is slow on this disk now. On ext4, files made within"
            " minutes\n             of thousands being deleted (an earlier run's) cost many"
            " times the usual;\n             run again after a few minutes, or with --dir"
            " /dev/shm)"
        )
    c = f["counts"]
    print(
        f"            {c['accepted']} accepted, {c['warning']} with warnings, {c['rejected']} rejected"
    )
    print(f"  fill      {f['n'] / f['fill_s']:8.0f} forms/s  (not a target)")
    print(
        f"  peak RSS  main {f['peak_rss_main_mb']:.0f} MB, largest worker {f['peak_rss_worker_mb']:.0f} MB"
    )
    if n > 1:
        print(
            "  rounds    generate forms/s (x openpyxl), collect forms/s (x openpyxl), load average"
        )
        for k, r in enumerate(rounds, 1):
            print(
                f"    {k:2d}      {r['generate_per_s']:6.0f} (x{r['generate_ratio']:.0f}), "
                f"{r['collect_per_s']:6.0f} (x{r['collect_ratio']:.0f}), {r['load_average']:.1f}"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--n", type=int, default=2000, help="forms to generate and collect (default 2000)"
    )
    ap.add_argument("--template", default="cs_manager_monthly_kpi")
    ap.add_argument("--sample", type=int, default=100, help="forms for the openpyxl baseline")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU)")
    ap.add_argument(
        "--keep", type=Path, default=None, help="work in this folder and keep the files"
    )
    ap.add_argument(
        "--dir", type=Path, default=None, help="work in a new folder under this one (e.g. /dev/shm)"
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of generate, collect and the openpyxl baseline (default 3; medians)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    workers = args.workers or min(os.cpu_count() or 1, 8)
    form = load_form(builtin_forms()[args.template])
    period = PERIOD[form.period]
    rng = random.Random(20261101)
    if args.keep:
        root = Path(args.keep)
    else:
        root = Path(tempfile.mkdtemp(prefix="kpi-bench-", dir=args.dir))
    root.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "n": args.n,
        "template": args.template,
        "cpus": os.cpu_count(),
        "workers": workers,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    try:
        roster = root / "roster.csv"
        write_roster(roster, args.template, args.n, rng)
        rounds: list[dict[str, Any]] = []
        for k in range(args.repeat):
            rounds.append(one_round(args, k, root, roster, period, workers, figures))
    finally:
        # (everything is removed only now: see one_round)
        shutil.rmtree(root / "disk" if args.keep else root, ignore_errors=True)

    figures["rounds"] = rounds
    for key in ROUND_FIGURES:  # each figure's median over the rounds
        figures[key] = statistics.median(r[key] for r in rounds)
    report(figures, rounds)
    if args.json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
