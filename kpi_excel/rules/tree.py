"""The expression tree every scoring rule is made of, with its two backends.

Each node knows how to write itself as Excel formula text (``to_excel``) and how to
evaluate itself in Python on :class:`~decimal.Decimal` (``evaluate``), so a rule is
defined once and gives the same number in the sheet and in ``collect``. ``evaluate``
is the reference; :func:`compile_cells` translates a form's trees into one Python
function with the same results, without the per-node dispatch (what
:func:`kpi_excel.score.evaluate` runs).

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

import functools
from collections.abc import Callable, Mapping, Sequence
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
    "Program",
    "run_cells",
    "compile_cells",
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


def _quantum(places: int) -> Decimal:
    """The exponent ROUND(x, places) quantizes to (1E-places)."""
    q = _QUANTUM.get(places)
    if q is None:
        q = Decimal(1).scaleb(-places)
        if len(_QUANTUM) < 256:
            _QUANTUM[places] = q
    return q


def round_half_up(x: Decimal, places: int) -> Decimal:
    """Excel's ROUND: half away from zero (Python's round() is banker's rounding)."""
    return x.quantize(_quantum(places), rounding=ROUND_HALF_UP, context=_CTX)


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


# -- evaluating cells in order: the interpreter and its compiled twin ---------------

#: evaluates a list of cells: ``(values, fixed, constants) -> environment``
Program = Callable[
    [Mapping[str, Value], Mapping[str, Value] | None, Mapping[str, Value]], dict[str, Value]
]


def run_cells(
    inputs: Sequence[str],
    cells: Sequence[tuple[str, Node]],
    values: Mapping[str, Value],
    fixed: Mapping[str, Value] | None,
    constants: Mapping[str, Value],
) -> dict[str, Value]:
    """Evaluate ``cells`` in order with the tree interpreter (the reference).

    The environment starts as ``constants``; each input takes ``values.get(name)``;
    each cell takes ``fixed[name]`` if there is one, else the value of its tree, a
    spreadsheet error becoming its code text. Returns the environment.
    """
    env: dict[str, Value] = dict(constants)
    for name in inputs:
        env[name] = values.get(name)
    for name, expr in cells:
        if fixed and name in fixed:
            env[name] = fixed[name]
            continue
        try:
            env[name] = expr.evaluate(env)
        except SheetError as e:
            env[name] = e.code
    return env


def compile_cells(inputs: Sequence[str], cells: Sequence[tuple[str, Node]]) -> Program:
    """:func:`run_cells` for these cells as one Python function: same results, faster.

    The trees are translated into Python source once: each node becomes the same
    operation the interpreter performs (the same helpers, the same ``Decimal`` context,
    the same order of evaluation, so the same value or the same error), without the
    per-node dispatch. IF becomes an ``if`` statement (only the branch taken runs),
    IFERROR and ISNUMBER a ``try`` catching :class:`SheetError`. Cells and inputs are
    local variables. Names and constants never appear in the source: they are
    objects the function reads (``k0``, ``k1``, ...), so any text in a template is
    safe. A node the translator does not know exactly (a subclass, say) is evaluated
    by the interpreter where it stands; a cell nested too deeply for Python's
    compiler is evaluated by the interpreter; if the source cannot be compiled at
    all, the program is :func:`run_cells` itself.
    """
    inputs, cells = tuple(inputs), tuple(cells)
    try:
        return _ProgramCompiler().build(inputs, cells)
    except (SyntaxError, RecursionError, MemoryError, ValueError, OverflowError):
        return functools.partial(run_cells, inputs, cells)


# Static result types of compiled nodes: "num" is any Decimal (a Decimal subclass
# included), "bool" and "str" exactly those types, "any" anything a cell may hold.
_NUM, _BOOL, _STR, _ANY = "num", "bool", "str", "any"

_CMP_CODE = {"=": "==", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

#: indentation levels and nested ``try`` blocks a cell may use; deeper cells are left
#: to the interpreter (Python allows 100 levels and 20 nested blocks per function)
_MAX_DEPTH = 40
_MAX_TRY = 10

#: what the generated source refers to besides its constants
_RUNTIME: dict[str, object] = {
    "__builtins__": {},
    "type": type,
    "isinstance": isinstance,
    "str": str,
    "int": int,
    "abs": abs,
    "min": min,
    "max": max,
    "dict": dict,
    "D": Decimal,
    "ZERO": Decimal(0),
    "SheetError": SheetError,
    "DIV0": "#DIV/0!",
    "_num": _to_number,
    "_truth": _truth,
    "_compare": _compare,
    "_round": round_half_up,
    "_add": _CTX.add,
    "_sub": _CTX.subtract,
    "_mul": _CTX.multiply,
    "_div": _CTX.divide,
    "_HALF_UP": ROUND_HALF_UP,
    "_CTX": _CTX,
}


class _TooDeep(Exception):
    """A cell nests deeper than the generated source may."""


def _join(types: list[str]) -> str:
    return types[0] if all(t == types[0] for t in types) else _ANY


def _atomic(expr: str) -> bool:
    """A name (local variable or constant), not a composite expression."""
    return expr.isidentifier()


class _ProgramCompiler:
    """Translates cells into the source of one function, then compiles it.

    ``emit`` writes the statements that evaluate a node, in the interpreter's order,
    and returns a *pure* expression for its value: a name, or a test that cannot raise
    (``isinstance(v3, D)``). Anything that may raise is done in a statement, so no
    error moves before or after another.

    A subtree the interpreter would evaluate again (a rule's measured quantity appears
    in every tier's condition) is computed once per cell: its value is reused where its
    statements are sure to have run to the end before (in the same block, or in a block
    nested in it). The trees are pure functions of the cell values, so the value is the
    one evaluating it again would give; cells where any node is left to the interpreter
    are compiled without this.
    """

    def __init__(self) -> None:
        self.globals: dict[str, object] = dict(_RUNTIME)
        self._const_names: dict[int, str] = {}
        self.lines: list[str] = []
        self.scope: dict[str, str] = {}  # cell name -> local variable holding it now
        self.uses_env = False
        self.depth = 0
        self.tries = 0
        self.temps = 0
        self.reuse = True  # reuse values of subtrees already computed (see above)
        self.interpreted = False  # a node of the current cell is left to the interpreter
        self.memo: dict[int, tuple[str, str]] = {}  # id(node) -> its computed value
        self.saved: list[dict[int, tuple[str, str]]] = []  # memo of each enclosing block

    # -- building blocks --------------------------------------------------------------

    def const(self, value: object) -> str:
        """The global name holding ``value`` (the very object, never its text)."""
        name = self._const_names.get(id(value))
        if name is None:
            name = f"k{len(self._const_names)}"
            self._const_names[id(value)] = name
            self.globals[name] = value  # keeps the object, so its id stays its own
        return name

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def new_temp(self) -> str:
        self.temps += 1
        return f"t{self.temps}"

    def temp(self, expr: str) -> str:
        t = self.new_temp()
        self.line(f"{t} = {expr}")
        return t

    def number(self, expr: str, typ: str) -> str:
        """``_to_number`` of a value."""
        if typ == _NUM:
            return expr
        if typ == _ANY:
            return self.temp(f"{expr} if type({expr}) is D else _num({expr})")
        return self.temp(f"_num({expr})")

    def truth(self, expr: str, typ: str) -> str:
        """``_truth`` of a value, as an expression to test at once."""
        if typ == _BOOL:
            return expr
        if typ == _NUM:
            return f"{expr} != 0"
        return f"_truth({expr})"

    def enter(self, tries: int = 0) -> None:
        """Start a nested block (a branch, a ``try`` body or handler)."""
        self.depth += 1
        self.tries += tries
        if self.depth > _MAX_DEPTH or self.tries > _MAX_TRY:
            raise _TooDeep
        self.saved.append(dict(self.memo))

    def leave(self, tries: int = 0) -> None:
        """End a nested block: what it computed may not have run after it."""
        self.depth -= 1
        self.tries -= tries
        self.memo = self.saved.pop()

    def branch(self, node: Node, target: str) -> str:
        """Indented statements setting ``target`` to the value of ``node``."""
        self.enter()
        expr, typ = self.emit(node)
        self.line(f"{target} = {expr}")
        self.leave()
        return typ

    def interpret(self, node: Node) -> tuple[str, str]:
        """A node left to the interpreter, on the environment as it is at this point."""
        self.uses_env = self.interpreted = True
        return self.temp(f"{self.const(node)}.evaluate(env)"), _ANY

    # -- nodes ------------------------------------------------------------------------

    def emit(self, node: Node) -> tuple[str, str]:
        """Statements evaluating ``node``; returns a pure expression and its type."""
        if not self.reuse or type(node) in (Num, Text, Ref):
            return self.translate(node)
        got = self.memo.get(id(node))
        if got is None:
            got = self.memo[id(node)] = self.translate(node)
        return got

    def translate(self, node: Node) -> tuple[str, str]:
        kind = type(node)
        if kind is Num:
            v = node.value  # type: ignore[attr-defined]
            return self.const(v), (_NUM if type(v) is Decimal else _ANY)
        if kind is Text:
            v = node.value  # type: ignore[attr-defined]
            return self.const(v), (_STR if type(v) is str else _ANY)
        if kind is Ref and type(node.name) is str:  # type: ignore[attr-defined]
            local = self.scope.get(node.name)  # type: ignore[attr-defined]
            if local is not None:
                return local, _ANY
            # not assigned yet: whatever the environment holds (a constant, or blank)
            return self.temp(f"env.get({self.const(node.name)})"), _ANY  # type: ignore[attr-defined]
        if kind is Neg:
            x = self.number(*self.emit(node.x))  # type: ignore[attr-defined]
            return self.temp(f"-{x}"), _NUM
        if kind is BinOp and type(node.op) is str:  # type: ignore[attr-defined]
            return self.binop(node)  # type: ignore[arg-type]
        if kind is Cmp and type(node.op) is str and node.op in _CMP_CODE:  # type: ignore[attr-defined]
            return self.cmp(node)  # type: ignore[arg-type]
        if kind is Func and type(node.args) is tuple:  # type: ignore[attr-defined]
            spec = _FUNCS.get(node.name) if type(node.name) is str else None  # type: ignore[attr-defined]
            if spec is not None and spec[1] <= len(node.args) <= spec[2]:  # type: ignore[attr-defined]
                return getattr(self, "f_" + node.name.lower())(node.args)  # type: ignore[attr-defined]
        return self.interpret(node)

    def binop(self, node: BinOp) -> tuple[str, str]:
        a = self.number(*self.emit(node.a))
        b = self.number(*self.emit(node.b))
        if node.op == "+":
            return self.temp(f"_add({a}, {b})"), _NUM
        if node.op == "-":
            return self.temp(f"_sub({a}, {b})"), _NUM
        if node.op == "*":
            return self.temp(f"_mul({a}, {b})"), _NUM
        self.line(f"if {b} == 0:")
        self.line("    raise SheetError(DIV0)")
        return self.temp(f"_div({a}, {b})"), _NUM

    def cmp(self, node: Cmp) -> tuple[str, str]:
        a, ta = self.emit(node.a)
        b, tb = self.emit(node.b)
        op = _CMP_CODE[node.op]
        # _compare(a, b): for two numbers (a > b) - (a < b); text against text
        # compares casefolded (for = and <> that is equality of the casefolded texts)
        if ta == _NUM and tb == _NUM:
            c = f"(({a} > {b}) - ({a} < {b}))"
        elif ta == _NUM or tb == _NUM:
            x = b if ta == _NUM else a
            c = f"((({a} > {b}) - ({a} < {b})) if type({x}) is D else _compare({a}, {b}))"
        elif tb == _STR and op in ("==", "!=") and type(node.b) is Text:
            folded = self.const(node.b.value.casefold())
            return self.temp(
                f"({a}.casefold() {op} {folded}) if type({a}) is str else (_compare({a}, {b}) {op} 0)"
            ), _BOOL
        else:
            c = f"_compare({a}, {b})"
        return self.temp(f"{c} {op} 0"), _BOOL

    def f_if(self, args: tuple[Node, ...]) -> tuple[str, str]:
        cond, typ = self.emit(args[0])
        t = self.new_temp()
        self.line(f"if {self.truth(cond, typ)}:")
        types = [self.branch(args[1], t)]
        self.line("else:")
        if len(args) > 2:
            types.append(self.branch(args[2], t))
        else:
            self.line(f"    {t} = False")
            types.append(_BOOL)
        return t, _join(types)

    def _all(self, args: tuple[Node, ...], joiner: str) -> tuple[str, str]:
        # every argument is evaluated and tested, in order (no short-circuit)
        parts = []
        for a in args:
            expr, typ = self.emit(a)
            parts.append(expr if typ == _BOOL else self.temp(self.truth(expr, typ)))
        if len(parts) == 1:
            return parts[0], _BOOL
        return self.temp(joiner.join(parts)), _BOOL

    def f_and(self, args: tuple[Node, ...]) -> tuple[str, str]:
        return self._all(args, " & ")

    def f_or(self, args: tuple[Node, ...]) -> tuple[str, str]:
        return self._all(args, " | ")

    def _numbers(self, args: tuple[Node, ...]) -> list[tuple[str, bool]]:
        """``_numbers``: (expression, is a reference); references count if numbers."""
        out = []
        for a in args:
            expr, typ = self.emit(a)
            if isinstance(a, Ref):
                out.append((expr, True))
            else:
                out.append((self.number(expr, typ), False))
        return out

    def _extreme(self, fn: str, args: tuple[Node, ...]) -> tuple[str, str]:
        xs = self._numbers(args)
        if not any(ref for _, ref in xs):
            if len(xs) == 1:
                return xs[0][0], _NUM
            return self.temp(f"{fn}({', '.join(x for x, _ in xs)})"), _NUM
        t = self.temp("[]")
        self._each_number(xs, lambda x: f"{t}.append({x})")
        return self.temp(f"{fn}({t}) if {t} else ZERO"), _NUM

    def _each_number(self, xs: list[tuple[str, bool]], stmt: Callable[[str], str]) -> None:
        """``stmt(x)`` for each argument: a reference's only when it holds a number
        (Excel's MIN, MAX and SUM skip text and blanks in ranges and references)."""
        for x, ref in xs:
            if ref:
                self.line(f"if isinstance({x}, D):")
                self.line(f"    {stmt(x)}")
            else:
                self.line(stmt(x))

    def f_min(self, args: tuple[Node, ...]) -> tuple[str, str]:
        return self._extreme("min", args)

    def f_max(self, args: tuple[Node, ...]) -> tuple[str, str]:
        return self._extreme("max", args)

    def f_sum(self, args: tuple[Node, ...]) -> tuple[str, str]:
        xs = self._numbers(args)  # all arguments first, then the additions
        t = self.temp("ZERO")
        self._each_number(xs, lambda x: f"{t} = _add({t}, {x})")
        return t, _NUM

    def f_round(self, args: tuple[Node, ...]) -> tuple[str, str]:
        x = self.number(*self.emit(args[0]))
        p = args[1]
        if type(p) is Num and type(p.value) is Decimal and p.value.is_finite():
            places = int(p.value)
            if -1000 <= places <= 1000:
                q = self.const(_quantum(places))
                return self.temp(f"{x}.quantize({q}, _HALF_UP, _CTX)"), _NUM
        n = self.temp(f"int({self.number(*self.emit(p))})")
        return self.temp(f"_round({x}, {n})"), _NUM

    def f_abs(self, args: tuple[Node, ...]) -> tuple[str, str]:
        return self.temp(f"abs({self.number(*self.emit(args[0]))})"), _NUM

    def f_isblank(self, args: tuple[Node, ...]) -> tuple[str, str]:
        expr, _ = self.emit(args[0])
        test = f"({expr} is None)"
        return (test if _atomic(expr) else self.temp(test)), _BOOL

    def f_isnumber(self, args: tuple[Node, ...]) -> tuple[str, str]:
        mark = len(self.lines)
        self.enter(tries=1)
        expr, _ = self.emit(args[0])
        if len(self.lines) == mark:  # no statement: nothing that can raise
            self.leave(tries=1)
            test = f"isinstance({expr}, D)"
            return (test if _atomic(expr) else self.temp(test)), _BOOL
        t = self.new_temp()
        self.line(f"{t} = isinstance({expr}, D)")
        self.leave()
        self.lines.insert(mark, "    " * self.depth + "try:")
        self.line("except SheetError:")
        self.line(f"    {t} = False")
        self.tries -= 1
        return t, _BOOL

    def f_iferror(self, args: tuple[Node, ...]) -> tuple[str, str]:
        mark = len(self.lines)
        self.enter(tries=1)
        expr, typ = self.emit(args[0])
        if len(self.lines) == mark:  # nothing can raise: the fallback is never needed
            self.leave(tries=1)
            return expr, typ
        t = self.new_temp()
        self.line(f"{t} = {expr}")
        self.leave()
        self.lines.insert(mark, "    " * self.depth + "try:")
        self.line("except SheetError:")
        other = self.branch(args[1], t)
        self.tries -= 1
        return t, _join([typ, other])

    # -- the program ------------------------------------------------------------------

    def cell(self, expr: Node, target: str) -> list[str]:
        """The statements setting ``target`` to a cell's value (an error: its code)."""
        try:
            value = self.body(expr, reuse=True)
            if self.interpreted:
                value = self.body(expr, reuse=False)
        except (_TooDeep, RecursionError):  # the interpreter evaluates the whole cell
            self.start(reuse=False)
            value, _ = self.interpret(expr)
        return self.lines + [f"            {target} = {value}"]

    def start(self, reuse: bool) -> None:
        """Begin a cell's statements (inside the cell's ``try``)."""
        self.lines, self.depth, self.tries, self.temps = [], 3, 0, 0
        self.memo, self.saved, self.reuse, self.interpreted = {}, [], reuse, False

    def body(self, expr: Node, reuse: bool) -> str:
        self.start(reuse)
        return self.emit(expr)[0]

    def build(self, inputs: tuple[str, ...], cells: tuple[tuple[str, Node], ...]) -> Program:
        assigned: list[tuple[str, str]] = []  # (constant holding the name, variable)
        code: list[str | tuple[str, str]] = []  # source lines; (key, var): an assignment
        for name in inputs:
            var, key = f"v{len(assigned)}", self.const(name)
            code.append(f"    {var} = values.get({key})")
            code.append((key, var))
            assigned.append((key, var))
            self.scope[name] = var
        for name, expr in cells:
            var, key = f"v{len(assigned)}", self.const(name)
            code.append(f"    if fixed and {key} in fixed:")
            code.append(f"        {var} = fixed[{key}]")
            code.append("    else:")
            code.append("        try:")
            code += self.cell(expr, var)
            code.append("        except SheetError as _e:")
            code.append(f"            {var} = _e.code")
            code.append((key, var))
            assigned.append((key, var))
            self.scope[name] = var  # from here on, the name is this cell
        out = ["def program(values, fixed, constants):", "    env = dict(constants)"]
        for item in code:
            if isinstance(item, str):
                out.append(item)
            elif self.uses_env:  # the interpreter reads the environment as it goes
                out.append(f"    env[{item[0]}] = {item[1]}")
        if self.uses_env:
            out.append("    return env")
        else:  # the same keys in the same order as assigning them one by one
            out.append("    return {**env, " + ", ".join(f"{k}: {v}" for k, v in assigned) + "}")
        namespace = self.globals
        source = "\n".join(out) + "\n"
        exec(compile(source, "<compiled cells>", "exec"), namespace)
        program = namespace["program"]
        program.__doc__ = "Compiled cells (see kpi_excel.rules.tree.compile_cells)."
        return program  # type: ignore[no-any-return]
