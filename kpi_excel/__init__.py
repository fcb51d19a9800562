"""kpi-excel: KPI appraisal forms (绩效考核表) as real Excel workbooks.

Generate one fillable workbook per employee from a YAML form template, collect the
returned workbooks, recompute every score in Python and prove the numbers.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
