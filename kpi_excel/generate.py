"""Generate: roster x template -> one fillable workbook per employee, all or nothing.

``generate_command`` is what ``kpi-excel generate`` runs. The template is compiled
once; each employee gets a sheet plan (:mod:`kpi_excel.layout`), a ``_meta`` record
with its fingerprint (:mod:`kpi_excel.meta`) and a file (:mod:`kpi_excel.render`).

Files are named ``{period}_{部门}_{姓名}_{工号}.xlsx`` (see :func:`form_filename`) and
are written into a temporary folder beside the output folder, then moved into place
only when every one of them was written: a bad roster writes nothing, a good one
writes everything.

Defaults: the sheet protection password is ``kpi`` (:data:`DEFAULT_PASSWORD`); the
fingerprint key is ``$KPI_EXCEL_SECRET`` or else a built-in key that is *not secret*
(see :mod:`kpi_excel.meta`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kpi_excel import __version__
from kpi_excel.errors import KpiExcelError, Problem, SpecError
from kpi_excel.fastwrite import write_file
from kpi_excel.layout import Period, SheetPlan, formulas_of, layout_form, parse_period
from kpi_excel.meta import FINGERPRINT_ALG, FORMAT, fingerprint, resolve_secret
from kpi_excel.render import DEFAULT_PASSWORD, FIXED_CREATED, Decorate, render, render_bytes
from kpi_excel.roster import Employee, initial_values, load_roster
from kpi_excel.rules.tree import decimal_text
from kpi_excel.score import CompiledForm, compile_form
from kpi_excel.spec import model as m
from kpi_excel.spec.load import builtin_dir, find_template, load_form_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from kpi_excel.fastwrite import CompiledWorkbook as FastWriter

__all__ = [
    "DEFAULT_PASSWORD",
    "FormGenerator",
    "parse_period",
    "form_filename",
    "safe_filename",
    "generate_command",
]

# ------------------------------------------------------------------ file names

_RESERVED = (
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_BAD = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
MAX_NAME = 100  # characters
#: bytes of UTF-8: Linux and macOS file systems hold 255 bytes a name (Windows 255
#: UTF-16 units); kept below it, so a name can still take a _2 and the like
MAX_BYTES = 240


def safe_filename(stem: str, suffix: str = ".xlsx", limit: int = MAX_NAME) -> str:
    """A file name safe on Windows, macOS and Linux (and in zip files and mail).

    Reserved characters ``<>:"/\\|?*`` and control characters become ``_``; runs of
    whitespace become one space; trailing dots and spaces go; a reserved device name
    (CON, PRN, AUX, NUL, COM1…, LPT1…) as the whole name or before the first dot gets
    a ``_`` appended; the whole name is cut to ``limit`` characters.
    """
    s = unicodedata.normalize("NFC", stem)
    s = _BAD.sub("_", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(". ")
    if not s:
        s = "_"
    if s.split(".")[0].upper() in _RESERVED:
        s = s + "_"
    room = limit - len(suffix)
    byte_room = MAX_BYTES - len(suffix.encode("utf-8"))
    if len(s) > room or len(s.encode("utf-8")) > byte_room:
        s = _clip(s, room, byte_room).rstrip(". ") or "_"
    return s + suffix


def _clip(text: str, chars: int, nbytes: int) -> str:
    """The longest start of ``text`` within ``chars`` characters and ``nbytes`` bytes
    of UTF-8 (a name of Chinese characters takes three bytes a character)."""
    text = text[: max(chars, 0)]
    while len(text.encode("utf-8")) > nbytes:
        text = text[: -max(1, (len(text.encode("utf-8")) - nbytes) // 3)]
    return text


def form_filename(period: str, emp: Employee, suffix: str = ".xlsx") -> str:
    """``{period}_{部门}_{姓名}_{工号}.xlsx``, made safe (see :func:`safe_filename`).

    When the name must be cut, 部门 and then 姓名 are shortened, never the period or 工号,
    so the name still identifies the form.
    """
    dept, name, eid = emp.department, emp.name, emp.employee_id
    head, tail = f"{period}_", f"_{eid}"
    room = MAX_NAME - len(suffix) - len(head) - len(tail) - 1
    byte_room = MAX_BYTES - len(f"{suffix}{head}{tail}_".encode())
    if len(dept) + len(name) > room or len(f"{dept}{name}".encode()) > byte_room:
        name = _clip(name, max(8, room // 2), max(24, byte_room // 2))
        dept = _clip(dept, max(1, room - len(name)), max(3, byte_room - len(name.encode())))
    return safe_filename(f"{head}{dept}_{name}{tail}", suffix)


# ------------------------------------------------------------------ one form


def _template_path(ref: str) -> Path:
    """A template file: ``<id>.yaml`` among the built-ins when it holds that id (cheap),
    else whatever :func:`find_template` finds (it parses every built-in template)."""
    p = Path(ref)
    if p.suffix not in {".yaml", ".yml"}:
        cand = builtin_dir() / f"{ref}.yaml"
        if cand.is_file():
            try:
                head = cand.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError):
                head = ""
            if re.search(rf"^id:\s*['\"]?{re.escape(ref)}['\"]?\s*(#.*)?$", head, re.MULTILINE):
                return cand
    return find_template(ref)


#: ``json.dumps(..., ensure_ascii=False, sort_keys=True)``, the encoder made once (a
#: roster record holds no cycle to look for)
_ROSTER_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, check_circular=False)


@dataclass
class FormGenerator:
    """A compiled template, ready to write one form per employee.

    >>> gen = FormGenerator.from_ref("cs_manager_monthly_kpi", "2026-11")   # doctest: +SKIP
    >>> gen.write(employee, Path("out.xlsx"))                                # doctest: +SKIP
    """

    form: m.Form
    cf: CompiledForm
    template_text: str
    template_sha256: str
    period: Period
    company: str = ""
    password: str | None = None
    secret: bytes | None = None
    generated_at: str | None = None
    created: dt.datetime | None = None
    decorate: Decorate | None = None
    #: "reference" writes every form with XlsxWriter (kpi_excel.render); "fast" compiles
    #: the template's workbook once and patches each employee in (kpi_excel.fastwrite),
    #: falling back to the reference writer when the template cannot be compiled
    writer: str = "reference"
    _formulas: dict[str, str] | None = field(default=None, repr=False)
    _compiled: object = field(default=None, repr=False)
    #: why the fast writer is not used (set when compiling the template failed)
    fast_unavailable: str | None = field(default=None, repr=False)

    @classmethod
    def from_ref(
        cls,
        template: str | Path,
        period: str,
        *,
        company: str | None = None,
        password: str | None = None,
        secret: bytes | None = None,
        generated_at: str | None = None,
    ) -> FormGenerator:
        """From a built-in template id or a YAML file path."""
        path = _template_path(str(template))
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SpecError(f"{path}: 模板文件不是 UTF-8 编码，请另存为 UTF-8") from None
        form = load_form_text(text, str(path))
        return cls(
            form=form,
            cf=compile_form(form),
            template_text=text.replace("\r\n", "\n"),
            template_sha256=hashlib.sha256(data).hexdigest(),
            period=parse_period(period, form.period),
            company=company if company is not None else form.company,
            password=password,
            secret=resolve_secret(secret),
            generated_at=generated_at,
        )

    def plan(self, emp: Employee) -> tuple[SheetPlan, dict[str, str]]:
        """The sheet plan and the complete ``_meta`` record (fingerprint included)."""
        values = initial_values(self.cf.inputs, emp)
        if self._formulas is None:
            self._formulas = formulas_of(self.cf)
        plan = layout_form(
            self.cf, emp.fields, values, self.period, self.company, formulas=self._formulas
        )
        names_json = json.dumps(plan.name_refs(), ensure_ascii=False, sort_keys=True)
        meta = self.meta_for(emp, names_json, plan.sheet_name)
        meta["fingerprint"] = fingerprint(self.secret, self.form.version, plan.locked_cells(), meta)
        return plan, meta

    def meta_for(self, emp: Employee, names_json: str, sheet: str) -> dict[str, str]:
        """The ``_meta`` record of ``emp``'s form (its defined names as JSON, its form
        sheet's name), without the fingerprint."""
        roster = {
            "fields": dict(sorted(emp.fields.items())),
            "q": None if emp.q is None else decimal_text(emp.q),
            "targets": {k: decimal_text(v) for k, v in sorted(emp.targets.items())},
            "source": f"{emp.source}:{emp.row}",
        }
        return {
            "format": FORMAT,
            "template_id": self.form.id,
            "template_version": self.form.version,
            "template_title": self.form.title,
            "template_sha256": self.template_sha256,
            "template_yaml": self.template_text,
            "employee_id": emp.employee_id,
            "name": emp.name,
            "department": emp.department,
            "position": emp.position,
            "period": self.period.key,
            "company": self.company,
            "roster_json": _ROSTER_JSON.encode(roster),
            "names_json": names_json,
            "sheet": sheet,
            "generated_at": self.generated_at or f"{self.period.first_day}T00:00:00",
            "tool_version": __version__,
            "fingerprint_alg": FINGERPRINT_ALG,
        }

    def _created(self, meta: dict[str, str]) -> dt.datetime:
        """docProps dates: the fixed generation time, so output is byte-identical."""
        if self.created is not None:
            return self.created
        try:
            return dt.datetime.fromisoformat(meta["generated_at"]).replace(tzinfo=None)
        except ValueError:
            return FIXED_CREATED

    def compiled(self) -> FastWriter | None:
        """The template compiled for the fast writer, or None when it cannot be (the
        reason is in :attr:`fast_unavailable`)."""
        if self._compiled is None and self.fast_unavailable is None:
            from kpi_excel.fastwrite import CompiledWorkbook, Unsupported

            try:
                self._compiled = CompiledWorkbook(self)
            except Unsupported as e:
                self.fast_unavailable = str(e) or "unsupported"
                warnings.warn(
                    f"{self.form.id}: 快速写法不可用（{self.fast_unavailable}），改用参考写法",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self._compiled  # type: ignore[return-value]

    def write(self, emp: Employee, path: Path) -> Path:
        """Write the form of ``emp`` to ``path``."""
        fast = self.compiled() if self.writer == "fast" else None
        if fast is not None:
            return fast.write(emp, path)
        return self._write_reference(emp, path)

    def write_file(self, emp: Employee, path: str) -> None:
        """:meth:`write`, for ``generate_command``: ``path`` as text, nothing returned."""
        fast = self.compiled() if self.writer == "fast" else None
        if fast is not None:
            write_file(path, fast.to_bytes(emp))
        else:
            self._write_reference(emp, Path(path))

    def _write_reference(self, emp: Employee, path: Path) -> Path:
        plan, meta = self.plan(emp)
        return render(
            plan,
            meta,
            path,
            password=self.password,
            created=self._created(meta),
            decorate=self.decorate,
        )

    def to_bytes(self, emp: Employee) -> bytes:
        """The form of ``emp`` as .xlsx bytes."""
        fast = self.compiled() if self.writer == "fast" else None
        if fast is not None:
            return fast.to_bytes(emp)
        return self.reference_to_bytes(emp)

    def reference_to_bytes(self, emp: Employee) -> bytes:
        """The form of ``emp`` written by the reference writer (XlsxWriter)."""
        plan, meta = self.plan(emp)
        return self.reference_bytes(plan, meta)

    def reference_bytes(self, plan: SheetPlan, meta: dict[str, str]) -> bytes:
        """A sheet plan and its meta written by the reference writer."""
        return render_bytes(
            plan,
            meta,
            password=self.password,
            created=self._created(meta),
            decorate=self.decorate,
        )


# ------------------------------------------------------------------ the command


def _move_into(tmp: Path, out: Path, names: list[str]) -> list[Path]:
    """Move the finished files from ``tmp`` into ``out`` (renaming the folder if new)."""
    if not out.exists():
        os.replace(tmp, out)
        return [out / n for n in names]
    if not out.is_dir():
        raise KpiExcelError(f"输出位置 {out} 已存在且不是文件夹：请换一个 --out")
    paths = []
    for n in names:
        os.replace(tmp / n, out / n)
        paths.append(out / n)
    shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _form_decorator(xlsm: bool, password: str | None) -> Decorate | None:
    """The 一键重算 button and its VBA project for an .xlsm form (see :mod:`kpi_excel.vba`)."""
    if not xlsm:
        return None
    try:
        from kpi_excel.vba import form_decorator
    except ImportError as e:  # pyOpenVBA missing
        raise KpiExcelError(
            f"无法生成启用宏的 .xlsm：{e}；请安装 kpi-excel[buttons] 或去掉 --xlsm"
        ) from None
    return form_decorator(password)


def generate_command(
    template: str,
    roster: Path,
    period: str,
    out: Path,
    targets: Path | None = None,
    company: str | None = None,
    password: str | None = None,
    secret: bytes | None = None,
    xlsm: bool = False,
    *,
    generated_at: str | None = None,
    writer: str = "fast",
    workers: int | None = None,
) -> list[Path]:
    """Generate one form per employee of ``roster`` into the folder ``out``.

    Raises :class:`~kpi_excel.errors.RosterError` (every roster problem, with file and
    row), :class:`~kpi_excel.errors.SpecError` (template) or
    :class:`~kpi_excel.errors.KpiExcelError` (period, output folder) before anything is
    written. Returns the written paths, in roster order.

    ``writer``: "fast" (default: the template compiled once, see
    :mod:`kpi_excel.fastwrite`) or "reference" (XlsxWriter for every form); both give
    equivalent workbooks. ``workers``: processes writing forms (default: one per CPU,
    up to 8, for rosters of :data:`PARALLEL_FROM` employees or more; 1 writes here).
    """
    gen = FormGenerator.from_ref(
        template,
        period,
        company=company,
        password=password,
        secret=secret,
        generated_at=generated_at,
    )
    gen.decorate = _form_decorator(xlsm, password)
    gen.writer = writer
    suffix = ".xlsm" if xlsm else ".xlsx"
    employees = load_roster(roster, gen.form, targets)

    names: list[str] = []
    seen: dict[str, int] = {}  # every name given so far (casefolded) -> copies of it
    for emp in employees:
        n = form_filename(gen.period.key, emp, suffix)
        key = n.casefold()  # Windows and macOS file names are case-insensitive
        if key in seen:
            # the next free _2, _3 …: never a name given to another form (one whose
            # own name ends in _2), which it would overwrite
            k = seen[key]
            stem = Path(n).stem
            while True:
                k += 1
                tail = f"_{k}"  # kept whole: a name cut to fit keeps its number
                room = MAX_NAME - len(suffix) - len(tail)
                head = _clip(stem, room, MAX_BYTES - len(suffix) - len(tail)).rstrip(". ")
                cand = safe_filename(head + tail, suffix)
                if cand.casefold() not in seen:
                    break
            seen[key] = k
            n = cand
        seen.setdefault(n.casefold(), 1)
        names.append(n)

    out = Path(out)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as e:
        raise KpiExcelError(f"无法在 {parent} 中写入：{e.strerror}") from None
    try:
        paths = [os.path.join(tmp, n) for n in names]
        if not _write_in_workers(gen, xlsm, employees, paths, workers):
            for emp, path in zip(employees, paths, strict=True):
                gen.write_file(emp, path)
        return _move_into(tmp, out, names)
    except KpiExcelError:
        raise
    except OSError as e:
        raise KpiExcelError(
            f"写入失败：{e.strerror}（{e.filename}）；输出文件夹未改动", [Problem(str(out), str(e))]
        ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ worker processes

#: Rosters at least this long are written by worker processes: starting them costs
#: ~0.05 s (~0.1 s more each when they must compile the template themselves).
PARALLEL_FROM = 400
_BATCH = 64

_WORKER: FormGenerator | None = None
_JOBS: tuple[list[Employee], list[str]] | None = None


def _worker_init(state: dict[str, object], xlsm: bool) -> None:
    """A worker that starts afresh: the generator rebuilt from ``state``."""
    global _WORKER
    text = str(state.pop("template_text"))
    form = load_form_text(text, str(state.pop("source")))
    gen = FormGenerator(form=form, cf=compile_form(form), template_text=text, **state)  # type: ignore[arg-type]
    gen.decorate = _form_decorator(xlsm, gen.password)
    _WORKER = gen


def _worker_adopt(gen: FormGenerator, employees: list[Employee], paths: list[str]) -> None:
    """A forked worker: the parent's generator (template compiled) and jobs, inherited
    with its memory, so nothing is pickled or compiled again."""
    global _WORKER, _JOBS
    _WORKER = gen
    _JOBS = (employees, paths)


def _worker_write(batch: list[tuple[Employee, str]] | range) -> int:
    """Write a batch: (employee, path) pairs, or positions in the inherited jobs."""
    assert _WORKER is not None
    if isinstance(batch, range):
        assert _JOBS is not None
        employees, paths = _JOBS
        for i in batch:
            _WORKER.write_file(employees[i], paths[i])
    else:
        for emp, path in batch:
            _WORKER.write_file(emp, path)
    return len(batch)


def _write_in_workers(
    gen: FormGenerator,
    xlsm: bool,
    employees: list[Employee],
    paths: list[str],
    workers: int | None,
) -> bool:
    """Write the forms in worker processes; False when they are not worth it (or cannot
    start), and the caller writes them itself.

    Where worker processes are forked (Linux), the template is compiled here first and
    the workers inherit it, with the employees and paths: a batch is sent as a range
    of positions. Elsewhere each worker rebuilds the generator and gets its employees
    pickled."""
    n = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n < 2 or len(employees) < (PARALLEL_FROM if workers is None else 2):
        return False
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        context = multiprocessing.get_context()
        forked = context.get_start_method() == "fork"
    except (OSError, ValueError):
        return False
    if forked:
        if gen.writer == "fast":
            gen.compiled()  # here, once (a failure warns here, once)
        initializer: Callable[..., None] = _worker_adopt
        initargs: tuple[object, ...] = (gen, employees, paths)
    else:
        state: dict[str, object] = {
            "template_text": gen.template_text,
            "source": gen.form.id,
            "template_sha256": gen.template_sha256,
            "period": gen.period,
            "company": gen.company,
            "password": gen.password,
            "secret": gen.secret,
            "generated_at": gen.generated_at,
            "created": gen.created,
            "writer": gen.writer,
        }
        initializer, initargs = _worker_init, (state, xlsm)
    try:
        pool = ProcessPoolExecutor(
            max_workers=n,
            mp_context=context,
            initializer=initializer,
            initargs=initargs,
        )
    except (OSError, NotImplementedError, ValueError):
        return False
    size = max(1, min(_BATCH, len(employees) // (4 * n) or 1))
    ranges = [range(i, min(i + size, len(employees))) for i in range(0, len(employees), size)]
    batches: list[list[tuple[Employee, str]] | range] = (
        list(ranges) if forked else [[(employees[i], paths[i]) for i in r] for r in ranges]
    )
    with pool:
        for _done in pool.map(_worker_write, batches):
            pass
    return True
