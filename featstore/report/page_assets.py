"""The report page's fixed parts: its Content-Security-Policy, style sheet and sort script.

The page is self-contained (no request leaves it), hence inline style and script."""

from __future__ import annotations

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1320px;
       padding: 0 18px 40px; color: #1d2329; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px;
     border-bottom: 1px solid #d6dbe0; padding-bottom: 3px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { padding: 2px 9px; border-bottom: 1px solid #e5e8eb; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; background: #f2f4f6; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
.scroll { max-height: 520px; overflow: auto; border: 1px solid #e5e8eb; display: inline-block; }
.scroll thead th { position: sticky; top: 0; }
.muted { color: #66707a; } .bad { color: #b3261e; font-weight: 600; }
.stand-in { border: 3px solid #b3261e; padding: .6em; font-size: 1.15em; }
.ok { color: #1e7b34; } code { background: #f2f4f6; padding: 0 3px; }
.plot { max-width: 100%; } .strip { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; width: 136px; font-size: 11px; }
figure img, .placeholder { width: 128px; height: 96px; object-fit: contain;
  background: #eef0f2; display: block; }
.placeholder { display: flex; align-items: center; justify-content: center;
  text-align: center; color: #8a1c14; font-size: 10px; line-height: 1.25;
  border: 1px dashed #c9a9a6; box-sizing: border-box; padding: 4px; overflow: hidden;
  overflow-wrap: anywhere; }
figcaption { overflow-wrap: anywhere; } .identity { margin: 10px 0 14px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 5px; }
details summary { cursor: pointer; }
"""


SCRIPT = """
(function () {
  function key(cell, numeric) {
    var v = cell.getAttribute("data-v");
    if (v === null) { v = cell.textContent; }
    return numeric ? Number(v) : v;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        var numeric = th.classList.contains("n");
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        rows.sort(function (a, b) {
          var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
          var c = x < y ? -1 : (x > y ? 1 : 0);
          return ascending ? c : -c;
        });
        var fragment = document.createDocumentFragment();
        rows.forEach(function (row) { fragment.appendChild(row); });
        body.appendChild(fragment);
      });
    });
  });
})();
"""
