// mvleval leaderboard: click a header to sort its table (numbers by value, missing last; text by locale order).
(function () {
  "use strict";
  function key(row, col) {
    var cell = row.children[col];
    if (!cell) return null;
    var v = cell.getAttribute("data-sort");
    return v === null ? null : v;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.querySelectorAll("thead th");
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ka = key(a, col), kb = key(b, col);
          if (ka === null || kb === null) return ka === kb ? 0 : ka === null ? 1 : -1;  // missing values last
          var na = Number(ka), nb = Number(kb), cmp;
          cmp = (!isNaN(na) && !isNaN(nb)) ? na - nb : ka.localeCompare(kb);
          return asc ? cmp : -cmp;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  });
  document.body.dataset.ready = "1";
})();
