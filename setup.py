"""The package's one compiled part, kpi_excel._speedups (the fast reader's per-cell
loops in C). Optional: where it cannot be built, kpi_excel.fastread runs the same
loops in Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kpi_excel._speedups", ["kpi_excel/_speedups.c"], optional=True),
    ]
)
