"""Rule kinds: sugar that builds the expression tree for each kind of seed rule.

Every builder returns the *unguarded core* plus the inputs that must hold numbers;
:func:`build_rule` wraps the core so text or blanks give an empty, flagged result
(``""``) instead of a score: in every engine text compares greater than any number,
so an unguarded ``IF(E>=D,100,0)`` gives full marks to "八十".
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from kpi_excel.errors import RuleError
from kpi_excel.rules.parse import parse_expression
from kpi_excel.rules.tree import (
    EMPTY,
    IF,
    BinOp,
    Cmp,
    Func,
    Node,
    Ref,
    Text,
    num,
    ratio,
    refs_of,
    report,
)
from kpi_excel.spec import model as m

__all__ = ["build_rule", "x_node", "is_number", "valid_number", "lookup"]

Name = Callable[[str], str]  # indicator-local input id -> global cell name


def is_number(name: str) -> Node:
    return Func("ISNUMBER", (Ref(name),))


def valid_number(name: str, blank_as_zero: bool) -> Node:
    """The guard for one input: a number (or, if the template says so, a blank)."""
    if blank_as_zero:
        return Func("OR", (is_number(name), Func("ISBLANK", (Ref(name),))))
    return is_number(name)


def _all(conds: list[Node]) -> Node | None:
    if not conds:
        return None
    if len(conds) == 1:
        return conds[0]
    return Func("AND", tuple(conds))


def x_node(x: m.XSpec, name: Name, inputs: dict[str, m.InputSpec]) -> tuple[Node, list[str]]:
    """The measured quantity and the inputs it reads.

    A ratio is ``ROUND(ROUND(a/b,6)*100,4)``: rounded before scaling (1292.62/1319
    must be 98%), and again after, because 0.57*100 is 56.99999999999999 as a double.
    """
    if x.ratio is not None:
        a, b = (name(v) for v in x.ratio)
        return Func("ROUND", (BinOp("*", ratio(Ref(a), Ref(b)), num(100)), num(4))), [a, b]
    if x.diff is not None:
        a, b = (name(v) for v in x.diff)
        return Func("ROUND", (BinOp("-", Ref(a), Ref(b)), num(6))), [a, b]
    assert x.value is not None
    v = name(x.value)
    spec = inputs.get(x.value)
    if spec is not None and spec.kind == "percent":
        # percent inputs hold fractions (0.97 shown as 97%): scale to percent points
        return Func("ROUND", (BinOp("*", Ref(v), num(100)), num(4))), [v]
    return Ref(v), [v]


def _on_zero(x: m.XSpec, name: Name, core: Node) -> Node:
    """Division by zero has the result the template wrote (a score, or blank)."""
    if x.ratio is None:
        return core
    den = Ref(name(x.ratio[1]))
    zero: Node = Text(EMPTY) if x.on_zero == "blank" else num(x.on_zero)
    return IF(Cmp("=", den, num(0)), zero, core)


def _clamp(core: Node, lo: Decimal | None, hi: Decimal | None) -> Node:
    if lo is not None:
        core = Func("MAX", (num(lo), core))
    if hi is not None:
        core = Func("MIN", (num(hi), core))
    return core


def lookup(name: str, table: dict[str, Decimal]) -> Node:
    """Text choice -> points as nested IF; anything else (blank, typo) gives ""."""
    node: Node = Text(EMPTY)
    for key, pts in reversed(list(table.items())):
        node = IF(Cmp("=", Ref(name), Text(key)), num(pts), node)
    return node


def _tier_cond(xn: Node, t: m.Tier) -> Node | None:
    conds: list[Node] = []
    lo, lo_inc = t.low
    hi, hi_inc = t.high
    if lo is not None:
        conds.append(Cmp(">=" if lo_inc else ">", xn, num(lo)))
    if hi is not None:
        conds.append(Cmp("<=" if hi_inc else "<", xn, num(hi)))
    return _all(conds)


def _expr(text: str, name: Name, ind: m.Indicator) -> tuple[Node, list[str]]:
    """Parse a template expression over the indicator's inputs, renamed to cells."""
    tree = parse_expression(text, ind.inputs.keys())
    return _rename(tree, name), [name(r) for r in refs_of(tree)]


def _rename(node: Node, name: Name) -> Node:
    if isinstance(node, Ref):
        return Ref(name(node.name))
    if isinstance(node, Func):
        return Func(node.name, tuple(_rename(a, name) for a in node.args))
    if isinstance(node, BinOp):
        return BinOp(node.op, _rename(node.a, name), _rename(node.b, name))
    if isinstance(node, Cmp):
        return Cmp(node.op, _rename(node.a, name), _rename(node.b, name))
    from kpi_excel.rules.tree import Neg

    if isinstance(node, Neg):
        return Neg(_rename(node.x, name))
    return node


def build_rule(ind: m.Indicator, name: Name) -> Node | None:
    """The system score of one indicator as a guarded tree (None for manual rules)."""
    rule = ind.rule
    full = ind.full_score
    blank_ok = {name(k): v.blank_as_zero for k, v in ind.inputs.items()}
    needs: list[str] = []
    core: Node

    if isinstance(rule, m.ManualRule):
        return None
    if isinstance(rule, m.LinearRule):
        xn, needs = x_node(rule.x, name, ind.inputs)
        delta = xn if rule.pivot == 0 else BinOp("-", xn, num(rule.pivot))
        core = BinOp("+", num(rule.base), BinOp("*", delta, num(rule.slope)))
        core = _on_zero(rule.x, name, report(_clamp(core, rule.min, rule.max)))
    elif isinstance(rule, m.TiersRule):
        xn, needs = x_node(rule.x, name, ind.inputs)
        node: Node = Text(EMPTY)  # a value in a gap of the table has no score
        for t in reversed(rule.tiers):
            cond = _tier_cond(xn, t)
            node = num(t.score) if cond is None else IF(cond, num(t.score), node)
        core = _on_zero(rule.x, name, node)
    elif isinstance(rule, m.DeductionRule):
        total: Node = num(rule.base if rule.base is not None else full)
        for item in rule.items:
            cnt, used = _expr(item.count, name, ind)
            needs += [u for u in used if u not in needs]
            total = BinOp("-", total, BinOp("*", num(item.per), cnt))
        core = report(Func("MAX", (num(rule.floor), total)))
    elif isinstance(rule, m.NonOverlapRule):
        p, d, ok = name(rule.planned), name(rule.done), name(rule.passed)
        needs = [p, d, ok]
        missed = Func("MAX", (num(0), BinOp("-", Ref(p), Ref(d))))
        # a report not done is not also counted as failed (不与未做重叠扣分)
        failed = Func("MAX", (num(0), BinOp("-", Func("MIN", (Ref(d), Ref(p))), Ref(ok))))
        base = num(rule.base if rule.base is not None else full)
        total = BinOp(
            "-",
            BinOp("-", base, BinOp("*", num(rule.per_missed), missed)),
            BinOp("*", num(rule.per_failed), failed),
        )
        core = report(Func("MAX", (num(rule.floor), total)))
    elif isinstance(rule, m.LevelRule | m.RatingRule):
        return lookup(name(rule.input), dict(rule.points))
    elif isinstance(rule, m.BinaryRule):
        cond, needs = _expr(rule.when, name, ind)
        core = IF(cond, num(rule.yes), num(rule.no))
    elif isinstance(rule, m.ReverseRule):
        xn, needs = x_node(rule.x, name, ind.inputs)
        top = rule.full if rule.full is not None else full
        if isinstance(rule.limit, str):
            limit: Node = Ref(name(rule.limit))
            needs = needs + [name(rule.limit)]
        else:
            limit = num(rule.limit)
        over = BinOp("*", num(rule.slope), BinOp("-", xn, limit))
        core = report(
            IF(Cmp("<=", xn, limit), num(top), Func("MAX", (num(rule.min), BinOp("-", num(top), over))))
        )
        core = _on_zero(rule.x, name, core)
    elif isinstance(rule, m.CustomRule):
        tree, used = _expr(rule.expr, name, ind)
        needs = [name(g) for g in rule.guard] if rule.guard is not None else used
        core = report(_clamp(tree, rule.min, rule.max))
    else:  # pragma: no cover - the model's union is closed
        raise RuleError(f"未知规则类型 {rule!r}")

    guard = _all([valid_number(n, blank_ok.get(n, False)) for n in needs])
    return core if guard is None else IF(guard, core, Text(EMPTY))
