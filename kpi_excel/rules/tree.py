"""The expression tree every scoring rule is made of, with its two backends.

Each node knows how to write itself as Excel formula text (``to_excel``) and how to
evaluate itself in Python on :class:`~decimal.Decimal` (``evaluate``), so a rule is
defined once and gives the same number in the sheet and in ``collect``.

Python values mirror spreadsheet cell values: ``Decimal`` (number), ``str`` (text;
``""`` is the empty text a formula yields for "no result"), ``bool`` and ``None``
(a blank cell). Spreadsheet errors (``#DIV/0!``, ``#VALUE!``) are raised as
:class:`SheetError` and caught by ``IFERROR``, as in the sheet.

Only functions that behave the same in Excel 2007+, WPS and LibreOffice are emitted:
nested IF, AND/OR, MIN/MAX, ABS, ROUND, SUM, IFERROR, ISNUMBER, ISBLANK. No IFS,
SWITCH, MAXIFS or LET: Excel before 2019 and LibreOffice without the ``_xlfn.``
prefix show ``#NAME?`` for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

__all__ = [
    "Node",
    "Num",
    "Text",
    "Ref",
    "Neg",
    "BinOp",
    "Cmp",
    "Func",
    "SheetError",
    "Value",
    "Env",
    "num",
    "refs_of",
    "decimal_text",
    "round_half_up",
    "report",
    "ratio",
    "EMPTY",
]

Value = Decimal | str | bool | None
Env = Mapping[str, Value]
Resolver = Callable[[str], str]

EMPTY = ""  # what a guarded formula yields when its inputs are not usable numbers

_PREC = 34  # digits; far beyond a double, so Decimal never loses what Excel keeps
#: the arithmetic context (the default one at _PREC digits), used directly rather
#: than entered per operation: the same results, without a context switch each time
_CTX = Context(prec=_PREC)
_QUANTUM: dict[int, Decimal] = {}


class SheetError(Exception):
    """A spreadsheet error value (#DIV/0!, #VALUE!) raised during evaluation."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


def decimal_text(d: Decimal) -> str:
    """Plain decimal text for a formula: no exponent, no trailing zeros."""
    if d == d.to_integral_value():
        return str(int(d))
    s = format(d.normalize(), "f")
    return s


def round_half_up(x: Decimal, places: int) -> Decimal:
    """Excel's ROUND: half away from zero (Python's round() is banker's rounding)."""
    q = _QUANTUM.get(places)
    if q is None:
        q = Decimal(1).scaleb(-places)
        if len(_QUANTUM) < 256:
            _QUANTUM[places] = q
    return x.quantize(q, rounding=ROUND_HALF_UP, context=_CTX)


class Node:
    """Base of the expression tree."""

    __slots__ = ()

    def to_excel(self, ref: Resolver) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, env: Env) -> Value:  # pragma: no cover - abstract
        raise NotImplementedError

    def children(self) -> tuple[Node, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Num(Node):
    value: Decimal

    def to_excel(self, ref: Resolver) -> str:
        return decimal_text(self.value)

    def evaluate(self, env: Env) -> Value:
        return self.value


@dataclass(frozen=True, slots=True)
class Text(Node):
    value: str

    def to_excel(self, ref: Resolver) -> str:
        return '"' + self.value.replace('"', '""') + '"'

    def evaluate(self, env: Env) -> Value:
        return self.value


@dataclass(frozen=True, slots=True)
class Ref(Node):
    """A named cell: an input, a target, or another computed cell."""

    name: str

    def to_excel(self, ref: Resolver) -> str:
        return ref(self.name)

    def evaluate(self, env: Env) -> Value:
        return env.get(self.name)


def _to_number(v: Value) -> Decimal:
    """Coerce a value for arithmetic the way the sheet does."""
    if v is None:
        return Decimal(0)
    if isinstance(v, bool):
        return Decimal(int(v))
    if isinstance(v, Decimal):
        return v
    try:  # the sheet converts numeric text in arithmetic ("90"+1 = 91)
        return Decimal(v.strip())
    except (InvalidOperation, ValueError):
        raise SheetError("#VALUE!") from None


@dataclass(frozen=True, slots=True)
class Neg(Node):
    x: Node

    def to_excel(self, ref: Resolver) -> str:
        return f"(-{self.x.to_excel(ref)})"

    def evaluate(self, env: Env) -> Value:
        return -_to_number(self.x.evaluate(env))

    def children(self) -> tuple[Node, ...]:
        return (self.x,)


@dataclass(frozen=True, slots=True)
class BinOp(Node):
    op: str  # + - * /
    a: Node
    b: Node

    def to_excel(self, ref: Resolver) -> str:
        return f"({self.a.to_excel(ref)}{self.op}{self.b.to_excel(ref)})"

    def evaluate(self, env: Env) -> Value:
        a = _to_number(self.a.evaluate(env))
        b = _to_number(self.b.evaluate(env))
        if self.op == "+":
            return _CTX.add(a, b)
        if self.op == "-":
            return _CTX.subtract(a, b)
        if self.op == "*":
            return _CTX.multiply(a, b)
        if b == 0:
            raise SheetError("#DIV/0!")
        return _CTX.divide(a, b)

    def children(self) -> tuple[Node, ...]:
        return (self.a, self.b)


def _rank(v: Value) -> int:
    # The sheet orders numbers < text < logicals; text never equals a number.
    if isinstance(v, bool):
        return 2
    if isinstance(v, str):
        return 1
    return 0


def _compare(a: Value, b: Value) -> int:
    if a is None:
        a = "" if isinstance(b, str) else (False if isinstance(b, bool) else Decimal(0))
    if b is None:
        b = "" if isinstance(a, str) else (False if isinstance(a, bool) else Decimal(0))
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if isinstance(a, str):
        x, y = a.casefold(), str(b).casefold()
        return (x > y) - (x < y)
    return (a > b) - (a < b)  # type: ignore[operator]


_CMP = {
    "=": lambda c: c == 0,
    "<>": lambda c: c != 0,
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


@dataclass(frozen=True, slots=True)
class Cmp(Node):
    op: str  # = <> < <= > >=
    a: Node
    b: Node

    def to_excel(self, ref: Resolver) -> str:
        return f"({self.a.to_excel(ref)}{self.op}{self.b.to_excel(ref)})"

    def evaluate(self, env: Env) -> Value:
        return _CMP[self.op](_compare(self.a.evaluate(env), self.b.evaluate(env)))

    def children(self) -> tuple[Node, ...]:
        return (self.a, self.b)


def _truth(v: Value) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, Decimal):
        return v != 0
    raise SheetError("#VALUE!")


def _numbers(args: tuple[Node, ...], env: Env) -> list[Decimal]:
    """Arguments of SUM/MIN/MAX: references skip text and blanks, as in the sheet."""
    out: list[Decimal] = []
    for node in args:
        v = node.evaluate(env)
        if isinstance(node, Ref):
            if isinstance(v, Decimal):
                out.append(v)
        else:
            out.append(_to_number(v))
    return out


def _f_if(args: tuple[Node, ...], env: Env) -> Value:
    cond = _truth(args[0].evaluate(env))
    if cond:
        return args[1].evaluate(env)
    return args[2].evaluate(env) if len(args) > 2 else False


def _f_and(args: tuple[Node, ...], env: Env) -> Value:
    return all([_truth(a.evaluate(env)) for a in args])


def _f_or(args: tuple[Node, ...], env: Env) -> Value:
    return any([_truth(a.evaluate(env)) for a in args])


def _f_min(args: tuple[Node, ...], env: Env) -> Value:
    xs = _numbers(args, env)
    return min(xs) if xs else Decimal(0)


def _f_max(args: tuple[Node, ...], env: Env) -> Value:
    xs = _numbers(args, env)
    return max(xs) if xs else Decimal(0)


def _f_sum(args: tuple[Node, ...], env: Env) -> Value:
    total = Decimal(0)
    for x in _numbers(args, env):
        total = _CTX.add(total, x)
    return total


def _f_round(args: tuple[Node, ...], env: Env) -> Value:
    x = _to_number(args[0].evaluate(env))
    n = int(_to_number(args[1].evaluate(env)))
    return round_half_up(x, n)


def _f_abs(args: tuple[Node, ...], env: Env) -> Value:
    return abs(_to_number(args[0].evaluate(env)))


def _f_isnumber(args: tuple[Node, ...], env: Env) -> Value:
    try:
        v = args[0].evaluate(env)
    except SheetError:
        return False
    return isinstance(v, Decimal)


def _f_isblank(args: tuple[Node, ...], env: Env) -> Value:
    return args[0].evaluate(env) is None


def _f_iferror(args: tuple[Node, ...], env: Env) -> Value:
    try:
        return args[0].evaluate(env)
    except SheetError:
        return args[1].evaluate(env)


_FUNCS: dict[str, tuple[Callable[[tuple[Node, ...], Env], Value], int, int]] = {
    # name: (implementation, min args, max args)
    "IF": (_f_if, 2, 3),
    "AND": (_f_and, 1, 255),
    "OR": (_f_or, 1, 255),
    "MIN": (_f_min, 1, 255),
    "MAX": (_f_max, 1, 255),
    "SUM": (_f_sum, 1, 255),
    "ROUND": (_f_round, 2, 2),
    "ABS": (_f_abs, 1, 1),
    "ISNUMBER": (_f_isnumber, 1, 1),
    "ISBLANK": (_f_isblank, 1, 1),
    "IFERROR": (_f_iferror, 2, 2),
}

FUNCTIONS = frozenset(_FUNCS)


@dataclass(frozen=True, slots=True)
class Func(Node):
    name: str
    args: tuple[Node, ...]

    def __post_init__(self) -> None:
        spec = _FUNCS.get(self.name)
        if spec is None:
            raise ValueError(f"function {self.name} is not in the portable subset")
        if not spec[1] <= len(self.args) <= spec[2]:
            raise ValueError(f"{self.name} takes {spec[1]}..{spec[2]} arguments")

    def to_excel(self, ref: Resolver) -> str:
        return f"{self.name}({','.join(a.to_excel(ref) for a in self.args)})"

    def evaluate(self, env: Env) -> Value:
        return _FUNCS[self.name][0](self.args, env)

    def children(self) -> tuple[Node, ...]:
        return self.args


# -- small constructors used by the rule kinds ---------------------------------


def num(x: object) -> Num:
    return Num(x if isinstance(x, Decimal) else Decimal(str(x)))


def IF(c: Node, a: Node, b: Node) -> Func:  # noqa: N802 - mirrors the sheet function
    return Func("IF", (c, a, b))


def ratio(a: Node, b: Node) -> Func:
    """A ratio rounded to 6 places before any comparison or scaling.

    1292.62/1319 is exactly 98% but 0.9799999999999999 as a double: unrounded, the
    sheet would pick the lower tier.
    """
    return Func("ROUND", (BinOp("/", a, b), num(6)))


def report(x: Node, places: int = 2) -> Func:
    """A reported number: ROUND(ROUND(x,6),places), half away from zero.

    The inner ROUND removes float noise (70.35 scores 2.155 exactly, a double gives
    2.15499…) so the sheet and Decimal agree at the reported precision.
    """
    return Func("ROUND", (Func("ROUND", (x, num(6))), num(places)))


def refs_of(node: Node) -> list[str]:
    """Names referenced by a tree, in first-seen order."""
    seen: dict[str, None] = {}
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Ref):
            seen.setdefault(n.name, None)
        stack.extend(reversed(n.children()))
    return list(seen)
