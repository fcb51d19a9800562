"""The ``kpi-excel`` command (also ``python -m kpi_excel``).

Verbs: templates, describe, lint, generate, collect, recalc, demo. Exit 0 on success,
2 with a one-line reason (plus one line per problem) on bad input, 1 when ``lint``
finds errors or ``collect --strict`` rejected something.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kpi_excel import __version__
from kpi_excel.errors import KpiExcelError

__all__ = ["main"]


def _secret() -> bytes | None:
    value = os.environ.get("KPI_EXCEL_SECRET")
    return value.encode("utf-8") if value else None


def _cmd_templates(args: argparse.Namespace) -> int:
    from kpi_excel.spec.load import builtin_forms, load_form

    for tid, path in builtin_forms().items():
        form = load_form(path)
        print(f"{tid}\t{form.title}")
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from kpi_excel.describe import describe_text, dumps
    from kpi_excel.spec.load import find_template, load_form

    form = load_form(find_template(args.template))
    print(dumps(form) if args.json else describe_text(form))
    return 0


def _cmd_lint(args: argparse.Namespace) -> int:
    from kpi_excel.spec.lint import lint_form
    from kpi_excel.spec.load import find_template, load_form

    errors = 0
    for ref in args.files:
        path = find_template(ref)
        try:
            findings = lint_form(load_form(path))
        except KpiExcelError as e:
            print(e.report())
            errors += 1
            continue
        n_err = sum(f.severity == "error" for f in findings)
        errors += n_err
        status = "通过" if n_err == 0 else f"{n_err} 个错误"
        print(f"{path}: {status}" + (f"，{len(findings) - n_err} 个提醒" if len(findings) > n_err else ""))
        for f in findings:
            print(f"  {f}")
    return 1 if errors else 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from kpi_excel.generate import generate_command

    paths = generate_command(
        template=args.template,
        roster=Path(args.roster),
        period=args.period,
        out=Path(args.out),
        targets=Path(args.targets) if args.targets else None,
        company=args.company,
        password=args.password,
        secret=_secret(),
        xlsm=args.xlsm,
    )
    print(f"已生成 {len(paths)} 份考核表 -> {args.out}")
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    from kpi_excel.collect import collect_command

    kwargs = {}
    if args.xlsm:
        kwargs["xlsm"] = True
    return collect_command(
        inputs=[Path(p) for p in args.inputs],
        out=Path(args.out),
        roster=Path(args.roster) if args.roster else None,
        db=Path(args.db) if args.db else None,
        quota=args.quota,
        as_json=args.json,
        strict=args.strict,
        secret=_secret(),
        progress=not args.json,
        **kwargs,
    )


def _cmd_recalc(args: argparse.Namespace) -> int:
    from kpi_excel.recalc import recalc_command

    return recalc_command(Path(args.file), Path(args.write) if args.write else None, as_json=args.json)


def _cmd_demo(args: argparse.Namespace) -> int:
    from kpi_excel.demo import demo_command

    return demo_command(Path(args.out))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kpi-excel",
        description="绩效考核表：生成可填写的 Excel 考核表，回收、重算并汇总。",
    )
    p.add_argument("--version", action="version", version=f"kpi-excel {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, help_: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    verb("templates", "列出内置模板：每行一个 id 和中文标题", _cmd_templates)

    sp = verb("describe", "显示模板的分区、指标、输入、规则和权重", _cmd_describe)
    sp.add_argument("template", metavar="ID", help="内置模板 id 或 YAML 文件")
    sp.add_argument("--json", action="store_true", help="输出 JSON（结构见 README）")

    sp = verb("lint", "检查模板：权重合计、分档漏洞与重叠、扣分上限、占位符", _cmd_lint)
    sp.add_argument("files", nargs="+", metavar="FILE", help="YAML 模板文件或内置模板 id")

    sp = verb("generate", "按花名册为每位员工生成一份考核表", _cmd_generate)
    sp.add_argument("template", metavar="TEMPLATE", help="内置模板 id 或 YAML 文件")
    sp.add_argument("--roster", required=True, help="花名册 .xlsx 或 .csv")
    sp.add_argument("--period", required=True, help="考核期：2026-11、2026-Q4 或 2026（与模板周期一致）")
    sp.add_argument("--out", required=True, help="输出文件夹")
    sp.add_argument("--targets", help="目标值文件（按工号），可选")
    sp.add_argument("--company", help="公司名称（页眉）")
    sp.add_argument("--password", help="工作表保护密码（默认 kpi）")
    sp.add_argument("--xlsm", action="store_true", help="生成带“一键重算”按钮的启用宏工作簿")

    sp = verb("collect", "回收考核表：重算、核对、记入台账并写汇总表", _cmd_collect)
    sp.add_argument("inputs", nargs="+", metavar="INPUT", help="文件夹（递归）或 .zip")
    sp.add_argument("--out", required=True, help="汇总表 .xlsx")
    sp.add_argument("--roster", help="花名册：列出未交人员")
    sp.add_argument("--db", help="台账 SQLite 文件（默认与汇总表同目录）")
    sp.add_argument("--quota", help="强制分布比例，如 A=20%%,B=30%%,C=40%%,D=10%%")
    sp.add_argument("--json", action="store_true", help="输出机器可读的 JSON 结果")
    sp.add_argument("--strict", action="store_true", help="有被拒收的文件时以非零状态退出")
    sp.add_argument("--xlsm", action="store_true", help="写带“一键汇总”按钮的启用宏汇总表")

    sp = verb("recalc", "逐项显示一份回收表的输入、规则、得分与问题", _cmd_recalc)
    sp.add_argument("file", metavar="FILE")
    sp.add_argument("--write", metavar="OUT", help="另存一份写入重算值的副本")
    sp.add_argument("--json", action="store_true", help="输出 JSON")

    sp = verb("demo", "用 samples/ 跑完整流程：生成、填写、回收、汇总", _cmd_demo)
    sp.add_argument("--out", default="kpi-demo", help="输出文件夹（默认 ./kpi-demo）")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except KpiExcelError as e:
        print(e.report(), file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head/less that closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("已中断", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
