"""The compiled cells (``score.evaluate``) against the tree interpreter, exactly.

:func:`kpi_excel.score.evaluate` runs each form's cells compiled into one Python
function (:func:`kpi_excel.rules.tree.compile_cells`); :func:`~kpi_excel.score.
evaluate_reference` walks the trees with ``Node.evaluate``. Both must give the same
environment: the same keys in the same order, and for every value the same type and
the same ``repr`` (so ``Decimal('1.0')`` and ``Decimal('1.00')`` differ), or the same
exception. Checked for every template with thousands of boundary-heavy inputs, for
hand-built trees of every function and operator, and for random trees.
"""

from __future__ import annotations

import pickle
import random
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import ROOT, builtin_template_paths
from parity import random_values

from kpi_excel.rules.tree import (
    BinOp,
    Cmp,
    Func,
    Node,
    Num,
    Ref,
    SheetError,
    Text,
    Value,
    compile_cells,
    run_cells,
)
from kpi_excel.score import CompiledForm, compile_form, evaluate, evaluate_reference
from kpi_excel.spec.load import load_form

D = Decimal
FORMS_PER_TEMPLATE = 3000

#: values a cell may hold that the parity inputs rarely use
ODD: list[Value] = [
    None, True, False, "", " ", "不适用", "是", "否", "#DIV/0!", "#VALUE!", "abc", "ABC", " 90 ",
    "90", "1e2", "-0", "98.0000", "ß", "SS", D(0), D("-0"), D("0.000"), D("0E-8"), D("1E+2"),
    D("98"), D("98.0000"), D("97.99995"), D("95"), D("-1"), D("0.5"), D("2.675"), D("-2.675"),
    D("120"), D("100.00"), D("1E-30"), D("123456789012345678901234567890.123456789"),
]  # fmt: skip
#: values on which the interpreter itself raises (not a SheetError): rare, but both
#: sides must raise the same
RAISING: list[Value] = [D("NaN"), D("sNaN"), D("Infinity"), D("-Infinity"), "NaN", "inf"]


def outcome(run: object, *args: object) -> tuple[str, object]:
    """What a run gives: its environment as (key, type, repr), or the exception."""
    try:
        env = run(*args)  # type: ignore[operator]
    except Exception as e:  # noqa: BLE001 - the type is the result
        return ("raises", (type(e).__name__, str(e) if isinstance(e, SheetError) else ""))
    return ("env", [(k, type(v).__name__, repr(v)) for k, v in env.items()])


def _sources() -> list[Path]:
    return [ROOT / "tests" / "data" / "all_rule_kinds.yaml", *builtin_template_paths()]


def _inputs(cf: CompiledForm, rng: random.Random) -> tuple[dict[str, Value], dict[str, Value]]:
    values = random_values(cf, rng, dirty=rng.random() < 0.8)
    for inp in cf.inputs:
        roll = rng.random()
        if roll < 0.08:
            values[inp.name] = rng.choice(ODD)
        elif roll < 0.082:
            values[inp.name] = rng.choice(RAISING)
    fixed: dict[str, Value] = {}
    if rng.random() < 0.15:  # formulas typed over with values
        for cell in rng.sample(cf.cells, min(len(cf.cells), rng.randint(1, 3))):
            fixed[cell.name] = rng.choice(ODD)
    return values, fixed


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.stem)
def test_templates_compiled_equals_interpreter(path: Path) -> None:
    cf = compile_form(load_form(path))
    rng = random.Random(f"compiled-{path.stem}")
    raised = 0
    for i in range(FORMS_PER_TEMPLATE):
        values, fixed = _inputs(cf, rng)
        fx = fixed if fixed or i % 2 else None
        want = outcome(evaluate_reference, cf, values, fx)
        got = outcome(evaluate, cf, values, fx)
        assert got == want, (path.stem, values, fixed)
        raised += want[0] == "raises"
    assert raised < FORMS_PER_TEMPLATE // 10  # the inputs mostly give results


def test_comparison_is_exact() -> None:
    """The comparison would see a difference of exponent or type alone."""
    assert outcome(lambda: {"x": D("1.0")}) != outcome(lambda: {"x": D("1.00")})
    assert outcome(lambda: {"x": D(1)}) != outcome(lambda: {"x": True})
    assert outcome(lambda: {"x": ""}) != outcome(lambda: {"x": None})


# -- hand-built trees --------------------------------------------------------------

a, b, c = Ref("a"), Ref("b"), Ref("c")


def N(x: object) -> Num:  # noqa: N802 - reads like the sheet's numbers
    return Num(D(str(x)))


def F(name: str, *args: Node) -> Func:  # noqa: N802
    return Func(name, args)


def div(x: Node, y: Node) -> BinOp:
    return BinOp("/", x, y)


TREES: list[Node] = [
    # leaves and arithmetic: coercion of blanks, booleans, numeric text, #VALUE!
    a, N("1.50"), Text("是"), Text(""),
    BinOp("+", a, b), BinOp("-", a, N("0.1")), BinOp("*", a, b), div(a, b), div(N(1), N(3)),
    BinOp("+", N("1E+2"), N("0.00")), BinOp("*", N("2.50"), N("4")),
    # the first error wins: #VALUE! of a before #DIV/0! of b, and the other way round
    BinOp("+", BinOp("*", a, N(1)), div(N(1), b)), BinOp("+", div(N(1), b), BinOp("*", a, N(1))),
    F("ABS", a), F("ABS", BinOp("-", N(0), a)),
    F("ROUND", a, N(2)), F("ROUND", a, N(0)), F("ROUND", a, N(-1)), F("ROUND", a, b),
    F("ROUND", div(a, b), N(6)), F("ROUND", N("2.675"), Text("2")), F("ROUND", a, N("1.9")),
    F("ROUND", F("ROUND", BinOp("*", a, N("0.05")), N(6)), N(2)),
    # comparisons of every type against every type (text casefolded, blanks adapt)
    *[Cmp(op, x, y) for op in ("=", "<>", "<", "<=", ">", ">=")
      for x, y in ((a, b), (a, N(0)), (N(0), a), (a, Text("是")), (Text("abc"), a), (a, Text("")),
                   (a, F("ISNUMBER", b)), (BinOp("+", a, N(0)), b), (a, Text("SS")),
                   (BinOp("+", a, N(0)), N(98)), (F("ABS", b), BinOp("-", a, N(1))))],
    # IF: only the branch taken is evaluated; two arguments give FALSE
    F("IF", a, N(1), N(2)), F("IF", a, div(N(1), N(0)), N(2)), F("IF", a, N(1), div(N(1), N(0))),
    F("IF", Cmp("=", a, Text("是")), Text("不适用"), BinOp("*", b, N(2))), F("IF", a, b),
    F("IF", F("ISNUMBER", a), F("IF", Cmp(">=", a, N(98)), N(100), Text("")), Text("")),
    # AND/OR evaluate and test every argument (no short-circuit)
    F("AND", a, b), F("OR", a, b), F("AND", N(0), div(N(1), N(0))), F("OR", N(1), Text("x")),
    F("AND", F("ISNUMBER", a), Cmp(">=", a, N(0)), Cmp("<=", a, N(100))), F("AND", a),
    F("OR", F("ISBLANK", a), F("ISNUMBER", b), c),
    # SUM/MIN/MAX: references skip text and blanks, expressions are coerced
    F("SUM", a, b, c), F("SUM", a, N("0.10"), BinOp("+", b, N(0))), F("SUM", N("1.0")),
    F("SUM", F("IF", Cmp("=", a, Text("是")), N("0.05"), N(0)), F("IF", b, N("0.10"), N(0))),
    F("MIN", a, b), F("MAX", a, b), F("MIN", a), F("MAX", N(0), BinOp("-", a, b)),
    F("MIN", N(200), F("MAX", N(0), BinOp("+", N(100), BinOp("*", a, N("3.3"))))),
    F("MAX", Text("5"), a), F("MIN", BinOp("+", a, N(0)), div(N(1), b)),
    # ISNUMBER/ISBLANK/IFERROR catch (only) sheet errors
    F("ISNUMBER", a), F("ISNUMBER", div(a, b)), F("ISNUMBER", F("IFERROR", div(a, b), Text("x"))),
    F("ISBLANK", a), F("ISBLANK", BinOp("+", a, N(0))), F("ISNUMBER", F("ISNUMBER", a)),
    F("IFERROR", div(a, b), Text("除零")), F("IFERROR", a, N(0)), F("IFERROR", div(a, b), div(b, a)),
    F("IFERROR", F("IFERROR", div(N(1), a), div(N(1), b)), c),
    F("IFERROR", div(a, b), F("ISNUMBER", div(N(1), c))),
    F("IF", F("ISNUMBER", div(a, b)), div(a, b), Text("")),
]  # fmt: skip

ENV_VALUES: list[Value] = [
    None, True, False, "", "是", "abc", "ABC", "ss", " 12 ", "#DIV/0!", D(0), D("-0"), D("0.00"),
    D(1), D("2.5"), D("98"), D("98.000"), D("-3"), D("1E+2"), D("1E-7"),
]  # fmt: skip


def _pairs(rng: random.Random, n: int) -> list[dict[str, Value]]:
    envs = [{"a": x, "b": y, "c": D(1)} for x in ENV_VALUES for y in ENV_VALUES]
    pool = ENV_VALUES + RAISING
    envs += [{k: rng.choice(pool) for k in "abc"} for _ in range(n)]
    return envs


def test_every_function_and_operator() -> None:
    names = [f"x{i}" for i in range(len(TREES))]
    cells = list(zip(names, TREES, strict=True))
    program = compile_cells(["a", "b", "c"], cells)
    singles = [compile_cells(["a", "b", "c"], [cell]) for cell in cells]
    rng = random.Random(7)
    for env in _pairs(rng, 2000):
        want = outcome(run_cells, ["a", "b", "c"], cells, env, None, {})
        assert outcome(program, env, None, {}) == want, env
        for cell, single in zip(cells, singles, strict=True):
            one = outcome(run_cells, ["a", "b", "c"], [cell], env, None, {})
            assert outcome(single, env, None, {}) == one, (cell, env)


def test_errors_are_codes_and_branches_short_circuit() -> None:
    program = compile_cells(
        ["a", "b"],
        [
            ("div", div(a, b)),
            ("val", BinOp("+", a, N(1))),
            ("lazy", F("IF", Cmp("=", b, N(0)), Text("空"), div(a, b))),
            ("first", BinOp("+", BinOp("*", a, N(1)), div(N(1), b))),
        ],
    )
    env = program({"a": "八十", "b": D(0)}, None, {})
    assert env == {"a": "八十", "b": D(0), "div": "#VALUE!", "val": "#VALUE!", "lazy": "空",
                   "first": "#VALUE!"}  # fmt: skip
    env = program({"a": D(1), "b": D(0)}, None, {})
    assert (env["div"], env["lazy"], env["first"]) == ("#DIV/0!", "空", "#DIV/0!")


def test_fixed_cells_forward_references_and_constants() -> None:
    """Typed-over cells, names used before they are set, names set twice, constants."""
    inputs = ["a", "b", "a"]
    cells = [
        ("early", BinOp("+", Ref("late"), N(1))),  # blank (or the constant) before it is set
        ("k", Ref("k_const")),
        ("s", F("SUM", a, b)),
        ("t", BinOp("*", Ref("s"), N(2))),
        ("b", BinOp("+", b, N(1))),  # a cell named like an input
        ("u", BinOp("+", b, Ref("early"))),
        ("late", N(5)),
        ("s", BinOp("-", Ref("s"), N(1))),  # a name set twice
        ("self", F("IF", F("ISBLANK", Ref("self")), Text("blank"), Text("set"))),
    ]
    program = compile_cells(inputs, cells)
    for fixed in (None, {}, {"s": D("7.0")}, {"t": "手填"}, {"late": D(1), "b": None}, {"zz": 1}):
        for constants in ({}, {"late": D(3), "k_const": "常量", "a": D(9)}):
            for values in ({"a": D(2), "b": D("1.5")}, {"a": "x"}, {}):
                want = outcome(run_cells, inputs, cells, values, fixed, constants)
                assert outcome(program, values, fixed, constants) == want


class Twice(Node):
    """A node the compiler does not know: evaluated by the interpreter in place."""

    __slots__ = ("x",)

    def __init__(self, x: Node) -> None:
        self.x = x

    def evaluate(self, env):  # noqa: ANN001, ANN201
        v = self.x.evaluate(env)
        return v * 2 if isinstance(v, Decimal) else v


class Half(Num):
    """A subclass of a known node is not taken for it."""

    def evaluate(self, env):  # noqa: ANN001, ANN201
        return self.value / 2


def test_unknown_nodes_are_interpreted() -> None:
    cells = [
        ("x", BinOp("+", a, N(1))),
        ("y", F("IF", F("ISNUMBER", Ref("x")), Twice(Ref("x")), Text(""))),
        ("z", BinOp("+", Half(D(3)), F("SUM", Ref("y"), Twice(b)))),
        ("w", F("IF", a, Twice(F("ROUND", a, N(1))), Twice(F("ROUND", a, N(1))))),
    ]
    program = compile_cells(["a", "b"], cells)
    for env in _pairs(random.Random(3), 200):
        assert outcome(program, env, None, {}) == outcome(
            run_cells, ["a", "b"], cells, env, None, {}
        )
    assert program({"a": D(1), "b": D(2)}, None, {})["z"] == D("1.5") + D(4) + D(4)


def test_deep_and_wide_trees() -> None:
    """Nesting beyond what Python compiles is left to the interpreter, cell by cell."""
    deep: Node = Text("")
    for i in range(120):  # a lookup table of 120 choices: 120 nested IFs
        deep = F("IF", Cmp("=", a, Text(f"选{i}")), N(i), deep)
    tries: Node = a
    for i in range(30):
        tries = F("IFERROR", div(N(1), tries), F("ISNUMBER", div(N(i), a)))
    chain: Node = a
    for i in range(300):
        chain = BinOp("+", chain, N(i))
    wide = F("SUM", *[BinOp("*", a, N(i)) for i in range(255)])
    cells = [("deep", deep), ("tries", tries), ("chain", chain), ("wide", wide),
             ("after", BinOp("+", Ref("chain"), N(1)))]  # fmt: skip
    program = compile_cells(["a"], cells)
    assert program.__name__ == "program"  # compiled, not the interpreter itself
    for x in ("选0", "选119", "选120", D(0), D(2), D("0.5"), None, "x"):
        values = {"a": x}
        assert outcome(program, values, None, {}) == outcome(
            run_cells, ["a"], cells, values, None, {}
        )


def test_odd_constants_and_values() -> None:
    """Constants of other types and Decimal subclasses behave as in the interpreter."""

    class MyDecimal(Decimal):
        pass

    cells = [
        ("i", BinOp("+", Num(5), a)),  # type: ignore[arg-type]
        ("f", Cmp(">", Num(2.5), a)),  # type: ignore[arg-type]
        ("t", Cmp("=", a, Text(None))),  # type: ignore[arg-type]
        ("m", F("MAX", a, Num(MyDecimal("1.50")))),
        ("r", F("ROUND", a, N(1))),
        ("o", BinOp("%", a, N(4))),  # not + - *: the interpreter divides
    ]
    program = compile_cells(["a"], cells)
    for x in (D(3), MyDecimal("2.25"), "x", None, True, D(0)):
        values = {"a": x}
        assert outcome(program, values, None, {}) == outcome(
            run_cells, ["a"], cells, values, None, {}
        )


# -- random trees --------------------------------------------------------------------


def random_tree(rng: random.Random, depth: int) -> Node:
    leaves = [a, b, c, N(0), N("1.5"), N(98), N("-2"), Text(""), Text("是"), Text("7")]
    if depth == 0 or rng.random() < 0.2:
        return rng.choice(leaves)

    def sub() -> Node:
        return random_tree(rng, depth - 1)

    kind = rng.randrange(12)
    if kind == 0:
        return BinOp(rng.choice("+-*/"), sub(), sub())
    if kind == 1:
        return Cmp(rng.choice(["=", "<>", "<", "<=", ">", ">="]), sub(), sub())
    if kind == 2:
        return F("IF", *[sub() for _ in range(rng.choice([2, 3, 3]))])
    if kind in (3, 4):
        return F(
            rng.choice(["AND", "OR", "SUM", "MIN", "MAX"]),
            *[sub() for _ in range(rng.randint(1, 4))],
        )
    if kind == 5:
        return F("ROUND", sub(), rng.choice([N(0), N(2), N(6), N(-1), sub()]))
    if kind == 6:
        return F(rng.choice(["ABS", "ISNUMBER", "ISBLANK"]), sub())
    if kind == 7:
        return F("IFERROR", sub(), sub())
    if kind == 8:  # a subtree used twice, as a rule's measured quantity is
        x = sub()
        return F("IF", Cmp(">=", x, N(98)), N(100), F("IF", Cmp(">=", x, N(90)), x, sub()))
    if kind == 9:
        x = sub()
        return F("IFERROR", x, F("IF", F("ISNUMBER", x), x, BinOp("+", x, N(1))))
    return rng.choice(leaves)


def test_random_trees() -> None:
    rng = random.Random(2024)
    envs = _pairs(rng, 60)
    for _ in range(400):
        cells = [(f"x{i}", random_tree(rng, 5)) for i in range(4)]
        cells.append(
            ("y", F("IF", F("ISNUMBER", Ref("x0")), BinOp("*", Ref("x0"), Ref("x1")), Ref("x2")))
        )
        program = compile_cells(["a", "b", "c"], cells)
        for env in rng.sample(envs, 40):
            want = outcome(run_cells, ["a", "b", "c"], cells, env, None, {})
            assert outcome(program, env, None, {}) == want, (cells, env)


# -- the program kept on the compiled form -----------------------------------------------


def test_program_is_kept_rebuilt_and_not_pickled() -> None:
    cf = compile_form(load_form(builtin_template_paths()[0]))
    values = random_values(cf, random.Random(1))
    program = cf.program()
    assert cf.program() is program
    copy = pickle.loads(pickle.dumps(cf))
    assert "_program" not in copy.__dict__
    assert evaluate(copy, values) == evaluate(cf, values) == evaluate_reference(cf, values)
    # a list holding other objects (even equal ones) gives a new program
    cf.cells[0] = type(cf.cells[0])(cf.cells[0].name, Text("换了"), cf.cells[0].kind)
    assert cf.program() is not program
    assert evaluate(cf, values)[cf.cells[0].name] == "换了"
    cf.cells.append(type(cf.cells[0])("extra", Ref(cf.cells[0].name), "total"))
    assert evaluate(cf, values)["extra"] == "换了"
    assert outcome(evaluate, cf, values) == outcome(evaluate_reference, cf, values)
