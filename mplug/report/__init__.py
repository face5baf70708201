"""The report: published numbers (`published`), result-file mapping (`mapping`), rendering (`render`).

Entry point: `render.render_report(ReportOptions(...))`, or the CLI `mplug report`.
"""
