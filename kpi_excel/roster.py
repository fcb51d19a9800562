"""The roster (花名册) and per-employee targets: .xlsx or .csv in, employees out.

Columns (the header row is the first row that has a 工号 column, within the first
ten rows; other sheets and title rows above it are ignored):

==================  ============================================  ==================
column              meaning                                       required
==================  ============================================  ==================
工号                employee id (E1001); unique                   always
姓名                name                                          always
部门                department                                    always
岗位                position                                      if the form shows it
考核人              reviewer                                      if the form shows it
考核人岗位          reviewer's position                           if the form shows it
入职日期            hire date                                     if the form shows it
绩效工资基数Q       pay base Q (a number)                         if the form pays
店面 / 区域 / 负责人 store / region / store manager               if the form shows it
模板                template id of the row (mixed rosters)        no
<指标>.<输入>       a target, e.g. ``sales_rate.target``          no (else default)
<指标名称>-<输入名>  the same by Chinese names, e.g.
                    ``销售收入计划完成率-计划销售额``
==================  ============================================  ==================

English field keys (``employee_id``, ``name`` …) are accepted as column names too.
A roster with a 模板 column is generated only for the rows naming the template being
generated; without it, for every row. Targets may also come from a separate file
keyed by 工号 (same target columns); it overrides the roster. A target left blank
takes the template's ``default``.

CSV files may be UTF-8 (with or without BOM), GBK/GB18030 (as Chinese Excel saves
"CSV"), or UTF-16 ("Unicode text", tab separated).

Every problem of a roster is collected and raised as one :class:`RosterError`, each
problem with its file and row number, so HR can fix them all in one pass.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from kpi_excel.errors import Problem, RosterError
from kpi_excel.rules.tree import decimal_text
from kpi_excel.spec import model as m

__all__ = [
    "Employee",
    "Table",
    "TEMPLATE_COLUMN",
    "FIELD_ALIASES",
    "read_table",
    "target_columns",
    "load_roster",
    "initial_values",
    "example_employee",
    "percent_bound",
    "default_value",
]

TEMPLATE_COLUMN = "模板"

#: Column names accepted for each roster field (after normalisation, see _norm).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "employee_id": ("工号", "员工编号", "员工工号", "编号", "employee_id"),
    "name": ("姓名", "员工姓名", "被考核人", "被考核人姓名", "name"),
    "department": ("部门", "所属部门", "所在部门", "department"),
    "position": ("岗位", "职位", "岗位名称", "position"),
    "reviewer": ("考核人", "考核人姓名", "审核人", "reviewer"),
    "reviewer_position": ("考核人岗位", "考核人职位", "reviewer_position"),
    "hire_date": ("入职日期", "入职时间", "hire_date"),
    "q": ("绩效工资基数Q", "绩效工资基数", "Q", "绩效工资数额", "q"),
    "store": ("店面", "门店", "store"),
    "region": ("区域", "region"),
    "manager": ("负责人", "店面负责人", "manager"),
}
_TEMPLATE_ALIASES = (TEMPLATE_COLUMN, "模板id", "template")
_ALWAYS = ("employee_id", "name", "department")
_MAX_HEADER_SCAN = 10


def _norm(s: object) -> str:
    """Column names compare after NFKC (full-width -> half-width), without spaces, casefolded."""
    text = unicodedata.normalize("NFKC", str(s or ""))
    return re.sub(r"\s+", "", text).casefold()


_FIELD_OF = {_norm(a): f for f, names in FIELD_ALIASES.items() for a in names}
_TEMPLATE_OF = {_norm(a) for a in _TEMPLATE_ALIASES}


@dataclass(frozen=True)
class Table:
    """A roster-like table: its file, header row number, columns and data rows."""

    source: str
    header_row: int
    columns: list[str]
    rows: list[tuple[int, list[object]]]  # (row number as the user sees it, values)


@dataclass
class Employee:
    """One roster row, validated for one template."""

    row: int
    source: str
    fields: dict[str, str]
    q: Decimal | None = None
    template: str | None = None
    #: input cell name -> target value written into the form (roster, targets file
    #: or template default)
    targets: dict[str, Decimal] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def employee_id(self) -> str:
        return self.fields.get("employee_id", "")

    @property
    def name(self) -> str:
        return self.fields.get("name", "")

    @property
    def department(self) -> str:
        return self.fields.get("department", "")

    @property
    def position(self) -> str:
        return self.fields.get("position", "")

    def where(self) -> str:
        return f"{self.source} 第 {self.row} 行"


# ------------------------------------------------------------------ reading


def _decode_csv(data: bytes) -> tuple[str, str]:
    """Text and encoding of a CSV as Chinese Excel and other tools save it."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"  # a superset of GBK and GB2312
    except UnicodeDecodeError as e:
        raise RosterError(
            f"无法识别文件编码（第 {e.start} 个字节）：请用 Excel 另存为“CSV UTF-8”或 .xlsx"
        ) from None


def _cell(v: object) -> object:
    if isinstance(v, str):
        v = v.strip()
        return v if v else None
    return v


def _read_csv(path: Path) -> list[tuple[int, list[object]]]:
    text, _enc = _decode_csv(path.read_bytes())
    first = text.split("\n", 1)[0]
    delim = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    rows: list[tuple[int, list[object]]] = []
    start = 1
    for rec in reader:
        rows.append((start, [_cell(v) for v in rec]))
        start = reader.line_num + 1
    return rows


def _read_xlsx(path: Path) -> list[tuple[int, list[object]]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # zip/XML errors of a damaged file
        raise RosterError(
            f"{path.name}: 无法打开 Excel 文件（{type(e).__name__}）：请确认是 .xlsx 并未损坏"
        ) from None
    try:
        best: list[tuple[int, list[object]]] | None = None
        for ws in wb.worksheets:
            rows = [
                (r_i, [_cell(v) for v in row])
                for r_i, row in enumerate(ws.iter_rows(values_only=True), start=1)
            ]
            if best is None:
                best = rows
            if _find_header(rows) is not None:
                return rows
        return best or []
    finally:
        wb.close()


def _find_header(rows: list[tuple[int, list[object]]]) -> int | None:
    for i, (_n, vals) in enumerate(rows[:_MAX_HEADER_SCAN]):
        if any(_FIELD_OF.get(_norm(v)) == "employee_id" for v in vals if v is not None):
            return i
    return None


def read_table(path: str | Path) -> Table:
    """Read a roster or targets file (.xlsx, .xlsm or .csv) as a :class:`Table`."""
    p = Path(path)
    if not p.is_file():
        raise RosterError(f"找不到文件 {p}：请检查路径")
    suffix = p.suffix.lower()
    if suffix in {".xlsx", ".xlsm"}:
        raw = _read_xlsx(p)
    elif suffix in {".csv", ".txt", ".tsv"}:
        raw = _read_csv(p)
    elif suffix == ".xls":
        raise RosterError(f"{p.name}: 不支持旧版 .xls 格式：请在 Excel 中另存为 .xlsx 或 CSV")
    else:
        raise RosterError(f"{p.name}: 花名册应为 .xlsx 或 .csv 文件")
    h = _find_header(raw)
    if h is None:
        raise RosterError(
            f"{p.name}: 找不到表头（前 {_MAX_HEADER_SCAN} 行中没有“工号”列）",
            [Problem(p.name, "表头应包含 工号、姓名、部门 等列，见文档中的花名册格式")],
        )
    header_no, header = raw[h]
    columns = ["" if v is None else str(v).strip() for v in header]
    rows = []
    for n, vals in raw[h + 1 :]:
        if all(v is None for v in vals):
            continue
        vals = list(vals) + [None] * (len(columns) - len(vals))
        rows.append((n, vals[: max(len(columns), 1)] if len(vals) > len(columns) else vals))
    return Table(p.name, header_no, columns, rows)


# ------------------------------------------------------------------ targets


def _strip_paren(s: str) -> str:
    return re.sub(r"\([^()]*\)$", "", s)


def target_columns(form: m.Form) -> dict[str, tuple[str, str]]:
    """Accepted (normalised) column names of each roster input -> (indicator, input).

    ``<indicator_id>.<input_id>``, ``<指标名称>-<输入名>`` (with or without a unit in
    brackets at the end), ``<指标名称>-<input_id>`` and ``<指标名称>.<输入名>``.
    """
    out: dict[str, tuple[str, str]] = {}
    for _sec, ind in form.indicators():
        for key, spec in ind.inputs.items():
            if spec.source != "roster":
                continue
            names = {
                f"{ind.id}.{key}",
                f"{ind.id}-{key}",
                f"{ind.name}-{spec.label}",
                f"{ind.name}.{spec.label}",
                f"{ind.name}-{key}",
                f"{ind.name}.{key}",
            }
            for n in list(names):
                names.add(_strip_paren(_norm(n)))
            for n in names:
                out.setdefault(_norm(n), (ind.id, key))
    return out


def _indicator_prefixes(forms: Iterable[m.Form]) -> set[str]:
    out: set[str] = set()
    for form in forms:
        for _s, ind in form.indicators():
            out.add(_norm(ind.id))
            out.add(_norm(ind.name))
    return out


def _split_target(col: str) -> str | None:
    """The indicator part of a target-looking column name, or None."""
    n = _norm(col)
    for sep in (".", "-"):
        if sep in n:
            return n.split(sep, 1)[0]
    return None


def _parse_number(v: object, spec: m.InputSpec) -> tuple[Decimal | None, str | None]:
    """A target value: (number, None) or (None, what is wrong)."""
    if v is None:
        return None, None
    if isinstance(v, bool):
        return None, "应为数字，不是 是/否"
    if isinstance(v, dt.date | dt.datetime | dt.time):
        return None, f"应为数字，不是日期 {v}"
    pct = False
    if isinstance(v, int | float):
        d = Decimal(str(v))
    else:
        s = unicodedata.normalize("NFKC", str(v)).strip().replace(",", "").replace(" ", "")
        if s.endswith("%"):
            pct, s = True, s[:-1]
        try:
            d = Decimal(s)
        except InvalidOperation:
            unit = f"（单位：{spec.unit}）" if spec.unit else ""
            return None, f"“{v}”不是数字：只填数字{unit}"
        if not d.is_finite():
            return None, f"“{v}”不是数字"
    if spec.kind == "percent":
        if pct:
            d = d / 100
        elif abs(d) > 10:
            return None, f"{v} 像是百分点：百分比请写成 {v}% 或 {decimal_text(d / 100)}"
    elif pct:
        return None, f"“{v}”带有 %，但此项不是百分比：请只填数字"
    if spec.kind == "count" and d != d.to_integral_value():
        return None, f"{v} 应为整数（次数）"
    lo, hi = _bounds(spec)
    if lo is not None and d < lo:
        return None, f"{v} 小于下限 {format_bound(lo, spec)}"
    if hi is not None and d > hi:
        return None, f"{v} 大于上限 {format_bound(hi, spec)}"
    return d, None


def _bounds(spec: m.InputSpec) -> tuple[Decimal | None, Decimal | None]:
    """Bounds in the cell's own units (a percent input holds 0.95 for 95%)."""
    lo, hi = spec.min, spec.max
    if spec.kind == "percent":
        lo = None if lo is None else percent_bound(lo)
        hi = None if hi is None else percent_bound(hi)
    return lo, hi


def percent_bound(b: Decimal) -> Decimal:
    """A percent input's min/max/default as a fraction.

    Templates write them in percent points (``max: 100%`` or ``max: 100`` mean 100%,
    as tier bounds are). A value of at most 1.5 in size is read as already a fraction
    (``max: 1.2`` is 120%, ``max: 1`` is 100%): nobody bounds a rate at 1.2%.
    """
    if abs(b) <= Decimal("1.5"):
        return b
    return b / 100


def format_bound(b: Decimal, spec: m.InputSpec) -> str:
    if spec.kind == "percent":
        return decimal_text(b * 100) + "%"
    return decimal_text(b)


def default_value(spec: m.InputSpec) -> Decimal | None:
    """The template's default for a roster input, in the cell's units."""
    d = spec.default
    if d is None or isinstance(d, str):
        if isinstance(d, str):
            try:
                d = Decimal(d.strip().rstrip("%"))
            except InvalidOperation:
                return None
        else:
            return None
    if spec.kind == "percent":
        return percent_bound(d)
    return d


# ------------------------------------------------------------------ the roster


def _text(v: object, fld: str) -> str:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time() else v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, bool):
        return "是" if v else "否"
    s = unicodedata.normalize("NFC", str(v)).strip()
    if fld == "hire_date":
        mm = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?", s)
        if mm:
            return f"{int(mm[1]):04d}-{int(mm[2]):02d}-{int(mm[3]):02d}"
    return s


def _fields_needed(form: m.Form) -> set[str]:
    need = set(_ALWAYS)
    for h in form.header:
        if h.source in m.ROSTER_FIELDS:
            need.add(h.source)
    if form.pay is not None:
        need.add("q")
    return need


_FORM_CACHE: dict[tuple[str, int, int], m.Form | None] = {}


def _load_cached(path: Path) -> m.Form | None:
    """A template by path, parsed once per process (keyed by path, size and mtime)."""
    from kpi_excel.errors import KpiExcelError
    from kpi_excel.spec.load import load_form

    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _FORM_CACHE:
        try:
            _FORM_CACHE[key] = load_form(path)
        except KpiExcelError:
            _FORM_CACHE[key] = None
    return _FORM_CACHE[key]


def _known_forms(form: m.Form, template_ids: set[str]) -> list[m.Form]:
    """The form being generated plus built-in templates named in the 模板 column.

    Their target columns are not "unknown" in a mixed roster. A template file is
    looked up as ``<id>.yaml`` first (parsing every built-in template is slow).
    """
    from kpi_excel.spec.load import builtin_dir, builtin_forms

    forms = [form]
    missing = []
    for tid in sorted(template_ids - {form.id}):
        f = _load_cached(builtin_dir() / f"{tid}.yaml")
        if f is not None and f.id == tid:
            forms.append(f)
        else:
            missing.append(tid)
    if missing:
        builtin = builtin_forms()
        for tid in missing:
            f = _load_cached(builtin[tid]) if tid in builtin else None
            if f is not None:
                forms.append(f)
    return forms


def _column_map(
    table: Table,
) -> tuple[dict[str, int], int | None, list[tuple[int, str]], list[Problem]]:
    """Field -> column index, the 模板 column, the other columns, and header problems."""
    fields: dict[str, int] = {}
    template_col = None
    others: list[tuple[int, str]] = []
    problems: list[Problem] = []
    where = f"{table.source} 第 {table.header_row} 行（表头）"
    for i, col in enumerate(table.columns):
        if not col:
            continue
        n = _norm(col)
        fld = _FIELD_OF.get(n)
        if fld is not None:
            if fld in fields:
                problems.append(
                    Problem(
                        where,
                        f"列“{col}”与列“{table.columns[fields[fld]]}”重复（都是 {m.ROSTER_FIELDS[fld]}）：请删除一列",
                    )
                )
            else:
                fields[fld] = i
        elif n in _TEMPLATE_OF:
            template_col = i
        else:
            others.append((i, col))
    return fields, template_col, others, problems


def _match_targets(
    table: Table,
    others: list[tuple[int, str]],
    form: m.Form,
    forms: list[m.Form],
    problems: list[Problem],
) -> dict[int, tuple[str, str]]:
    """Target columns of ``form`` (column index -> (indicator, input)); report unknown ones."""
    mine = target_columns(form)
    anyone: dict[str, tuple[str, str]] = {}
    for f in forms:
        anyone.update(target_columns(f))
    prefixes = _indicator_prefixes(forms)
    where = f"{table.source} 第 {table.header_row} 行（表头）"
    out: dict[int, tuple[str, str]] = {}
    seen: dict[tuple[str, str], str] = {}
    for i, col in others:
        n = _norm(col)
        hit = mine.get(n) or mine.get(_strip_paren(n))
        if hit is not None:
            if hit in seen:
                problems.append(Problem(where, f"目标列“{col}”与“{seen[hit]}”是同一项：请删除一列"))
                continue
            seen[hit] = col
            out[i] = hit
            continue
        if n in anyone or _strip_paren(n) in anyone:
            continue  # a target of another template in a mixed roster
        prefix = _split_target(col)
        if prefix is None:
            continue  # an extra column (备注, 手机 …): kept, not used
        if prefix in prefixes:
            ind = _indicator_by_prefix(forms, prefix)
            choices = (
                "、".join(
                    f"{ind.id}.{k}（{ind.name}-{s.label}）"
                    for k, s in ind.inputs.items()
                    if s.source == "roster"
                )
                if ind
                else ""
            )
            problems.append(
                Problem(
                    where,
                    f"目标列“{col}”：指标有此项，但没有这个由花名册填写的输入"
                    + (f"；可用：{choices}" if choices else "；此指标没有目标值可填"),
                )
            )
        else:
            problems.append(
                Problem(
                    where,
                    f"目标列“{col}”对应的指标不存在（模板 {form.id} 中没有）：请核对指标 id 或名称，"
                    f"写成 指标id.输入id 或 指标名称-输入名",
                )
            )
    return out


def _indicator_by_prefix(forms: list[m.Form], prefix: str) -> m.Indicator | None:
    for f in forms:
        for _s, ind in f.indicators():
            if prefix in {_norm(ind.id), _norm(ind.name)}:
                return ind
    return None


def _input_spec(form: m.Form, ind_id: str, key: str) -> m.InputSpec:
    for _s, ind in form.indicators():
        if ind.id == ind_id:
            return ind.inputs[key]
    raise KeyError(ind_id)


def load_roster(
    roster: str | Path,
    form: m.Form,
    targets: str | Path | None = None,
) -> list[Employee]:
    """The employees of ``roster`` to generate ``form`` for, with their targets.

    Raises :class:`RosterError` listing every problem (file and row) if anything is
    wrong: missing columns, blank or duplicate 工号, blank names, unknown target
    columns, non-numeric or out-of-range targets, a 工号 in the targets file that is
    not in the roster.
    """
    table = read_table(roster)
    problems: list[Problem] = []
    fields, tcol, others, hp = _column_map(table)
    problems += hp
    hdr_where = f"{table.source} 第 {table.header_row} 行（表头）"

    for fld in sorted(_fields_needed(form), key=list(m.ROSTER_FIELDS).index):
        if fld not in fields:
            why = "必填" if fld in _ALWAYS else f"模板“{form.title}”需要"
            problems.append(Problem(hdr_where, f"缺少列“{m.ROSTER_FIELDS[fld]}”（{why}）"))

    template_ids: set[str] = set()
    if tcol is not None:
        template_ids = {str(v).strip() for _n, vals in table.rows if (v := vals[tcol]) is not None}
    forms = _known_forms(form, template_ids)
    tmap = _match_targets(table, others, form, forms, problems)

    def get(vals: list[object], fld: str) -> object:
        i = fields.get(fld)
        return vals[i] if i is not None and i < len(vals) else None

    # every row: ids and names, so a mixed roster is checked as a whole
    seen_ids: dict[str, int] = {}
    selected: list[tuple[int, list[object]]] = []
    for n, vals in table.rows:
        where = f"{table.source} 第 {n} 行"
        eid = _text(get(vals, "employee_id"), "employee_id")
        name = _text(get(vals, "name"), "name")
        if "employee_id" in fields:
            if not eid:
                problems.append(Problem(where, "工号为空"))
            else:
                key = eid.casefold()
                if key in seen_ids:
                    problems.append(
                        Problem(where, f"工号 {eid} 重复（与第 {seen_ids[key]} 行相同）")
                    )
                else:
                    seen_ids[key] = n
        if "name" in fields and not name:
            problems.append(Problem(where, f"姓名为空{f'（工号 {eid}）' if eid else ''}"))
        tid = _text(vals[tcol], "") if tcol is not None and tcol < len(vals) else ""
        if tcol is None or tid in {form.id, form.title}:
            selected.append((n, vals))

    if not table.rows:
        problems.append(Problem(table.source, "花名册没有员工（表头下面是空的）"))
    elif tcol is not None and not selected:
        found = "、".join(sorted(template_ids)) or "（空）"
        problems.append(
            Problem(table.source, f"没有“模板”为 {form.id} 的员工（模板列的值有：{found}）")
        )

    # the targets file, keyed by 工号
    extra_targets: dict[str, tuple[str, int, dict[tuple[str, str], object]]] = {}
    if targets is not None:
        extra_targets = _load_targets(targets, form, forms, seen_ids, problems)

    employees: list[Employee] = []
    roster_inputs = [
        (ind, key, spec)
        for _s, ind in form.indicators()
        for key, spec in ind.inputs.items()
        if spec.source == "roster"
    ]
    given_cols = set(tmap.values())
    given_in_targets: set[tuple[str, str]] = set()
    for _eid, (_src, _row, vals) in extra_targets.items():
        given_in_targets |= set(vals)
    for ind, key, spec in roster_inputs:
        if (
            (ind.id, key) not in given_cols
            and (ind.id, key) not in given_in_targets
            and default_value(spec) is None
        ):
            problems.append(
                Problem(
                    hdr_where,
                    f"缺少目标列“{ind.id}.{key}”（{ind.name}-{spec.label}），模板也没有默认值：请加上此列",
                )
            )

    by_col = {v: k for k, v in tmap.items()}
    for n, vals in selected:
        where = f"{table.source} 第 {n} 行"
        flds = {f: _text(get(vals, f), f) for f in fields if f != "q"}
        emp = Employee(n, table.source, flds, template=form.id)
        if tcol is not None:
            emp.template = _text(vals[tcol], "") or None
        if "department" in fields and not flds.get("department"):
            problems.append(
                Problem(where, f"部门为空（{flds.get('name') or flds.get('employee_id')}）")
            )
        if "q" in fields:
            qv = get(vals, "q")
            q, err = _parse_number(qv, m.InputSpec(label="Q", min=Decimal(0)))
            if err:
                problems.append(Problem(where, f"列“{table.columns[fields['q']]}”：{err}"))
            elif q is None and form.pay is not None:
                problems.append(
                    Problem(where, "绩效工资基数Q 为空：本模板按 Q × 绩效系数 计算绩效工资")
                )
            emp.q = q
        tvals = extra_targets.get(emp.employee_id.casefold(), ("", 0, {}))
        for ind, key, spec in roster_inputs:
            iname = f"in_{ind.id}_{key}"
            value: Decimal | None = None
            src_where, col_name, raw = where, None, None
            if (ind.id, key) in tvals[2]:
                raw = tvals[2][(ind.id, key)]
                src_where = f"{tvals[0]} 第 {tvals[1]} 行"
                col_name = f"{ind.id}.{key}"
            if raw is None and (ind.id, key) in by_col:
                ci = by_col[(ind.id, key)]
                raw = vals[ci] if ci < len(vals) else None
                src_where, col_name = where, table.columns[ci]
            if raw is not None:
                value, err = _parse_number(raw, spec)
                if err:
                    problems.append(
                        Problem(src_where, f"列“{col_name}”（{ind.name}-{spec.label}）：{err}")
                    )
                    continue
            if value is None:
                value = default_value(spec)
            if value is None:
                problems.append(
                    Problem(
                        where, f"{ind.name}-{spec.label} 的目标值为空，模板也没有默认值：请填写"
                    )
                )
                continue
            emp.targets[iname] = value
        for i, col in others:
            if i not in tmap and i < len(vals) and vals[i] is not None:
                emp.extra[col] = _text(vals[i], "")
        employees.append(emp)

    if problems:
        raise RosterError(
            f"{table.source}: 花名册有 {len(problems)} 处问题，未生成任何文件；请改正后重试",
            _in_file_order(problems, [table.source]),
        )
    return employees


def _in_file_order(problems: list[Problem], first: list[str]) -> list[Problem]:
    """Problems by file (the roster first) and row number, keeping their order within a row."""
    files = list(first)

    def key(p: Problem) -> tuple[int, int]:
        m_ = re.match(r"(.*?) 第 (\d+) 行", p.where)
        name, row = (m_[1], int(m_[2])) if m_ else (p.where, 0)
        if name not in files:
            files.append(name)
        return files.index(name), row

    return sorted(problems, key=key)


def _load_targets(
    path: str | Path,
    form: m.Form,
    forms: list[m.Form],
    roster_ids: Mapping[str, int],
    problems: list[Problem],
) -> dict[str, tuple[str, int, dict[tuple[str, str], object]]]:
    table = read_table(path)
    fields, _tcol, others, hp = _column_map(table)
    problems += hp
    if "employee_id" not in fields:
        problems.append(Problem(f"{table.source} 第 {table.header_row} 行（表头）", "缺少列“工号”"))
        return {}
    tmap = _match_targets(table, others, form, forms, problems)
    out: dict[str, tuple[str, int, dict[tuple[str, str], object]]] = {}
    rows_of: dict[str, int] = {}
    ci = fields["employee_id"]
    for n, vals in table.rows:
        where = f"{table.source} 第 {n} 行"
        eid = _text(vals[ci] if ci < len(vals) else None, "employee_id")
        if not eid:
            problems.append(Problem(where, "工号为空"))
            continue
        key = eid.casefold()
        if key in rows_of:
            problems.append(Problem(where, f"工号 {eid} 重复（与第 {rows_of[key]} 行相同）"))
            continue
        rows_of[key] = n
        if key not in roster_ids:
            problems.append(Problem(where, f"工号 {eid} 不在花名册中"))
            continue
        got = {hit: vals[i] for i, hit in tmap.items() if i < len(vals) and vals[i] is not None}
        out[key] = (table.source, n, got)
    return out


def initial_values(cf_inputs: Iterable[object], emp: Employee) -> dict[str, Decimal | None]:
    """Input values a fresh form holds: the employee's targets and Q; the rest blank."""
    out: dict[str, Decimal | None] = {}
    for inp in cf_inputs:
        name = inp.name
        if name == "hdr_q":
            out[name] = emp.q
        elif name in emp.targets:
            out[name] = emp.targets[name]
    return out


#: Roster fields of :func:`example_employee` (a plausible employee for previews).
EXAMPLE_FIELDS: dict[str, str] = {
    "employee_id": "E1001",
    "name": "张伟",
    "department": "客服部",
    "position": "客服经理",
    "reviewer": "李娜",
    "reviewer_position": "客服总监",
    "hire_date": "2020-03-15",
    "store": "人民路店",
    "region": "华东区",
    "manager": "赵强",
}


def example_employee(form: m.Form, q: Decimal | None = Decimal(5000), **fields: str) -> Employee:
    """An employee for previews, tests and demos: example fields, template defaults.

    Roster inputs without a default get 100 (counts: 10), so every form renders.
    """
    flds = {**EXAMPLE_FIELDS, **fields}
    emp = Employee(0, "example", flds, q=q, template=form.id)
    for _s, ind in form.indicators():
        for key, spec in ind.inputs.items():
            if spec.source == "roster":
                v = default_value(spec)
                if v is None:
                    v = Decimal(10) if spec.kind == "count" else Decimal(100)
                emp.targets[f"in_{ind.id}_{key}"] = v
    return emp
