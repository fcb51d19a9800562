Attribute VB_Name = "KpiSummary"
' kpi-excel: the macro behind the summary's collection button.
'
' Python re-collects the returned forms named on the settings sheet (source
' folders, roster, ledger, quotas), recomputes every score and rewrites the
' summary sheets of this open workbook (kpi_excel.buttons.collect_summary).
'
' RunPython is xlwings' VBA function. This project references the xlwings
' add-in (installed with `xlwings addin install`); a workbook may instead hold
' xlwings' standalone VBA module. See docs/buttons.md.
'
' This text is ASCII on purpose: VBA stores module text in the project's code
' page, so Chinese text here would be garbled on some machines. Every message a
' person reads comes from Python.
Option Explicit

Public Sub KpiCollect()
    RunPython "import kpi_excel.buttons as b; b.collect_summary()"
End Sub
