"""The report: one self-contained HTML page describing a store.

Owns what the page shows (`data`), how it is measured from the store (`build`), the
histograms (`plots`), the thumbnails (`gallery`) and the page itself (`html`).

May import: `featstore.store` and `featstore.errors`.
"""

from featstore.report.build import ReportSummary, read_report, write_report

__all__ = ["ReportSummary", "read_report", "write_report"]
