"""The scoring model of a whole form: every computed cell as one expression tree.

:func:`compile_form` turns a :class:`~kpi_excel.spec.model.Form` into an ordered list
of computed cells (system score, final score, effective weight, weighted score,
section subtotals, total, grade, coefficient, pay). The same list gives the sheet's
formulas (``cell.expr.to_excel``) and the Python recomputation (:func:`evaluate`), so
the two cannot drift apart.

Cell names (workbook-level defined names in generated forms):

* ``in_<indicator>_<input>``  an input (filled on the form, or a target from the roster)
* ``in_<indicator>_na``       不适用 (是/否) where an indicator may be not applicable
* ``hdr_<field>``             a header value (``hdr_q`` is the pay base Q)
* ``sys_<indicator>``         the rule's computed score
* ``score_<indicator>``       the final score after rater columns resolve
* ``w_<indicator>``           the effective weight, where 不适用 can move weight
* ``ws_<indicator>``          the weighted score (points forms: the points)
* ``sub_<section>``           a section subtotal
* ``total``, ``grade``, ``coef``, ``pay``
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from operator import is_
from typing import Any

from kpi_excel.rules.kinds import build_rule, is_number, lookup
from kpi_excel.rules.tree import (
    EMPTY,
    IF,
    BinOp,
    Cmp,
    Func,
    Node,
    Program,
    Ref,
    Text,
    Value,
    compile_cells,
    num,
    report,
    run_cells,
)
from kpi_excel.spec import model as m

__all__ = [
    "InputCell",
    "ComputedCell",
    "CompiledForm",
    "compile_form",
    "evaluate",
    "evaluate_reference",
    "NA_YES",
    "NA_NO",
    "NOT_APPLICABLE",
]

NA_YES, NA_NO = "是", "否"
NOT_APPLICABLE = "不适用"


@dataclass(frozen=True)
class InputCell:
    """A cell somebody fills (on the form) or the generator fills (from the roster)."""

    name: str
    indicator: str | None
    key: str
    spec: m.InputSpec
    role: str = "input"  # input | rater | na | header

    @property
    def locked(self) -> bool:
        return self.spec.source == "roster"


@dataclass(frozen=True)
class ComputedCell:
    name: str
    expr: Node
    kind: str  # sys | score | weight | weighted | subtotal | total | grade | coef | pay
    indicator: str | None = None
    section: str | None = None
    label: str = ""
    number_format: str = "0.00"


@dataclass
class CompiledForm:
    form: m.Form
    inputs: list[InputCell] = field(default_factory=list)
    cells: list[ComputedCell] = field(default_factory=list)

    @cached_property
    def input_by_name(self) -> dict[str, InputCell]:
        return {c.name: c for c in self.inputs}

    @cached_property
    def cell_by_name(self) -> dict[str, ComputedCell]:
        return {c.name: c for c in self.cells}

    def constants(self) -> dict[str, Value]:
        """Values every form carries that are not inputs (none at present)."""
        return {}

    def program(self) -> Program:
        """The cells compiled for :func:`evaluate`, built on first use.

        Kept with the very input and cell objects it was built from (all immutable),
        and rebuilt if the lists no longer hold exactly those objects. Not pickled:
        a copy rebuilds it when first used.
        """
        got = self.__dict__.get("_program")
        if got is not None and _same(got[0], self.inputs) and _same(got[1], self.cells):
            return got[2]  # type: ignore[no-any-return]
        inputs, cells = tuple(self.inputs), tuple(self.cells)
        program = compile_cells([i.name for i in inputs], [(c.name, c.expr) for c in cells])
        self.__dict__["_program"] = (inputs, cells, program)
        return program

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_program", None)
        return state


def _same(kept: tuple[object, ...], now: Sequence[object]) -> bool:
    """The same objects in the same order (identity: equal Decimals may differ in form)."""
    return len(kept) == len(now) and all(map(is_, kept, now))


def input_name(ind: str, key: str) -> str:
    return f"in_{ind}_{key}"


def _na_scope(form: m.Form) -> list[list[m.Indicator]]:
    if form.composition == "sections":
        return [list(s.indicators) for s in form.sections]
    return [[i for s in form.sections for i in s.indicators]]


NA_SPEC = m.InputSpec(
    label=NOT_APPLICABLE,
    kind="choice",
    choices={NA_YES: "本期不适用，权重按模板规定转移", NA_NO: "适用"},
    required=False,
    help="选“是”表示本期不考核此项（如新成立部门），其权重按模板规定转移",
)


def _effective_weights(form: m.Form) -> dict[str, Node]:
    """Effective weight per indicator, where 不适用 may move weight."""
    out: dict[str, Node] = {}
    for scope in _na_scope(form):
        movable = [i for i in scope if i.may_be_na]
        if not movable:
            continue

        def is_na(i: m.Indicator) -> Node:
            return Cmp("=", Ref(input_name(i.id, "na")), Text(NA_YES))

        moved: Node = Func("SUM", tuple(IF(is_na(i), num(i.weight or 0), num(0)) for i in movable))
        if form.na_policy == "largest":
            # 此项权重并入权重最大的考核项: the first largest item that cannot itself be 不适用
            fixed = [i for i in scope if not i.may_be_na]
            receiver = max(fixed, key=lambda i: i.weight or 0) if fixed else None
            for i in movable:
                out[i.id] = IF(is_na(i), num(0), num(i.weight or 0))
            if receiver is not None:
                out[receiver.id] = BinOp("+", num(receiver.weight or 0), moved)
        else:
            rest = BinOp("-", num(1), moved)
            for i in scope:
                w = Func("ROUND", (BinOp("/", num(i.weight or 0), rest), num(6)))
                keep = IF(Cmp("=", rest, num(0)), num(0), w)
                out[i.id] = IF(is_na(i), num(0), keep) if i.may_be_na else keep
    return out


def _valid_manual(name: str, spec: m.InputSpec, full: Decimal) -> Node:
    """A rater's score counts only if it is a number within its bounds (0..full)."""
    r = Ref(name)
    lo = spec.min if spec.min is not None else Decimal(0)
    hi = spec.max if spec.max is not None else full
    return Func(
        "AND",
        (is_number(name), Cmp(">=", r, num(lo)), Cmp("<=", r, num(hi))),
    )


def _final_score(ind: m.Indicator, sys: str | None) -> Node:
    raters = ind.raters
    full = ind.full_score
    if raters is None:
        assert sys is not None, f"{ind.id}: manual rule needs raters"
        return Ref(sys)

    def col(c: str) -> str:
        return sys if c == "system" else input_name(ind.id, c)  # type: ignore[return-value]

    def usable(c: str) -> Node:
        if c == "system":
            return is_number(sys)  # type: ignore[arg-type]
        return _valid_manual(col(c), raters.columns[c], full)

    if raters.mode == "override":
        node: Node = Text(EMPTY)
        for c in reversed(raters.order):
            if c == "system":
                node = IF(is_number(sys), Ref(sys), node)  # type: ignore[arg-type]
            else:
                # a filled but unusable override (text, out of range) blocks the score
                # rather than silently falling back to the column below it
                name = col(c)
                node = IF(
                    Func("ISBLANK", (Ref(name),)),
                    node,
                    IF(usable(c), Ref(name), Text(EMPTY)),
                )
        return node
    if raters.mode == "blend":
        terms = [BinOp("*", Ref(col(c)), num(w)) for c, w in raters.weights.items()]
        acc: Node = terms[0]
        for t in terms[1:]:
            acc = BinOp("+", acc, t)
        conds = tuple(usable(c) for c in raters.weights)
        cond = conds[0] if len(conds) == 1 else Func("AND", conds)
        return IF(cond, report(acc), Text(EMPTY))
    assert raters.decide is not None
    return IF(usable(raters.decide), Ref(col(raters.decide)), Text(EMPTY))


def _all_numbers(names: list[str]) -> Node:
    conds = tuple(is_number(n) for n in names)
    return conds[0] if len(conds) == 1 else Func("AND", conds)


def _sum(names: list[str]) -> Node:
    acc: Node = Ref(names[0])
    for n in names[1:]:
        acc = BinOp("+", acc, Ref(n))
    return acc


def compile_form(form: m.Form) -> CompiledForm:
    """Build the ordered input and computed cells of a form."""
    cf = CompiledForm(form)
    eff = _effective_weights(form)

    for h in form.header:
        if h.source == "q":
            spec = m.InputSpec(label=h.label, kind="number", source="roster", min=Decimal(0))
            cf.inputs.append(InputCell("hdr_q", None, "q", spec, role="header"))

    sub_names: list[tuple[m.Section, str]] = []
    for sec in form.sections:
        ws_names: list[str] = []
        for ind in sec.indicators:
            for key, spec in ind.inputs.items():
                cf.inputs.append(InputCell(input_name(ind.id, key), ind.id, key, spec))
            if ind.raters is not None:
                for key, spec in ind.raters.columns.items():
                    cf.inputs.append(InputCell(input_name(ind.id, key), ind.id, key, spec, "rater"))
            if ind.may_be_na:
                cf.inputs.append(InputCell(input_name(ind.id, "na"), ind.id, "na", NA_SPEC, "na"))

            def name(k: str, _i: str = ind.id) -> str:
                return input_name(_i, k)

            sys_tree = build_rule(ind, name)
            sys_name = None
            if sys_tree is not None:
                sys_name = f"sys_{ind.id}"
                cf.cells.append(ComputedCell(sys_name, sys_tree, "sys", ind.id, sec.id, "系统得分"))
            final = _final_score(ind, sys_name)
            if ind.may_be_na:
                final = IF(
                    Cmp("=", Ref(input_name(ind.id, "na")), Text(NA_YES)),
                    Text(NOT_APPLICABLE),
                    final,
                )
            score = f"score_{ind.id}"
            cf.cells.append(ComputedCell(score, final, "score", ind.id, sec.id, "得分"))

            ws = f"ws_{ind.id}"
            if form.composition == "points":
                cf.cells.append(ComputedCell(ws, Ref(score), "weighted", ind.id, sec.id, "得分"))
            else:
                if ind.id in eff:
                    wname = f"w_{ind.id}"
                    cf.cells.append(
                        ComputedCell(
                            wname, eff[ind.id], "weight", ind.id, sec.id, "有效权重", "0.00%"
                        )
                    )
                    weight: Node = Ref(wname)
                else:
                    weight = num(ind.weight or 0)
                full = ind.full_score
                scaled: Node = Ref(score)
                if full != 100:
                    scaled = BinOp("*", BinOp("/", Ref(score), num(full)), num(100))
                expr: Node = IF(is_number(score), report(BinOp("*", scaled, weight)), Text(EMPTY))
                if ind.may_be_na:
                    expr = IF(Cmp("=", Ref(input_name(ind.id, "na")), Text(NA_YES)), num(0), expr)
                cf.cells.append(ComputedCell(ws, expr, "weighted", ind.id, sec.id, "加权得分"))
            ws_names.append(ws)
        sub = f"sub_{sec.id}"
        cf.cells.append(
            ComputedCell(
                sub,
                IF(_all_numbers(ws_names), report(_sum(ws_names)), Text(EMPTY)),
                "subtotal",
                None,
                sec.id,
                sec.subtotal_label,
            )
        )
        sub_names.append((sec, sub))

    names = [s for _, s in sub_names]
    if form.composition == "sections":
        acc: Node | None = None
        for sec, s in sub_names:
            term = BinOp("*", Ref(s), num(sec.weight or 0))
            acc = term if acc is None else BinOp("+", acc, term)
        assert acc is not None
        total = IF(_all_numbers(names), report(acc), Text(EMPTY))
    else:
        total = IF(_all_numbers(names), report(_sum(names)), Text(EMPTY))
    cf.cells.append(ComputedCell("total", total, "total", label=form.total_label))

    if form.grades:
        grade: Node = Text(EMPTY)
        for band in reversed(form.grades):
            grade = IF(Cmp(">=", Ref("total"), num(band.min)), Text(band.grade), grade)
        cf.cells.append(
            ComputedCell(
                "grade",
                IF(is_number("total"), grade, Text(EMPTY)),
                "grade",
                label="等级",
                number_format="@",
            )
        )
        if any(b.coefficient is not None for b in form.grades):
            table = {
                b.grade: (b.coefficient if b.coefficient is not None else Decimal(0))
                for b in form.grades
            }
            cf.cells.append(ComputedCell("coef", lookup("grade", table), "coef", label="绩效系数"))
            if form.pay is not None and "hdr_q" in cf.input_by_name:
                pay = IF(
                    Func("AND", (is_number("coef"), is_number("hdr_q"))),
                    report(BinOp("*", Ref("hdr_q"), Ref("coef"))),
                    Text(EMPTY),
                )
                cf.cells.append(ComputedCell("pay", pay, "pay", label=form.pay.label))
    return cf


def evaluate(
    cf: CompiledForm, values: Mapping[str, Value], fixed: Mapping[str, Value] | None = None
) -> dict[str, Value]:
    """Recompute every computed cell from input values, in the sheet's order.

    ``values`` maps input names to cell values (Decimal, str, bool or None). Returns
    the inputs and every computed cell. A spreadsheet error becomes its code text
    (``#DIV/0!``), as the sheet would show it. Cells in ``fixed`` keep the given value
    instead of their formula (a formula someone typed a number over), and the cells
    that depend on them follow, as in the sheet.

    Runs the form's compiled cells (:meth:`CompiledForm.program`); the results are
    those of :func:`evaluate_reference`, the tree interpreter.
    """
    return cf.program()(values, fixed, cf.constants())


def evaluate_reference(
    cf: CompiledForm, values: Mapping[str, Value], fixed: Mapping[str, Value] | None = None
) -> dict[str, Value]:
    """:func:`evaluate` by walking each cell's expression tree (``Node.evaluate``)."""
    return run_cells(
        [i.name for i in cf.inputs],
        [(c.name, c.expr) for c in cf.cells],
        values,
        fixed,
        cf.constants(),
    )
