// mvleval report: renders pages of sample rows from the JSON data island. Data is only ever put into the page with
// textContent / setAttribute (never innerHTML), so model output and dataset text display as text, whatever they hold.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var COMPARE = DATA.kind === "compare";
  var METRICS = DATA.metrics;
  var ROWS = DATA.rows;
  var LANGS = DATA.langs;
  var IMAGES = DATA.images;
  var $ = function (id) { return document.getElementById(id); };
  var state = { view: COMPARE ? "flipped" : "all", lang: "", metric: 0, verdict: "", min: null, max: null, search: "",
                sort: "", pageSize: 50, page: 0 };
  var haystack = null;  // lower-cased searchable text per row, built on the first search
  var current = [];     // indices of the rows that match, in display order

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function points(v) {  // x100, one decimal, as every mvleval table
    return v === null || v === undefined ? "–" : (Math.round(v * 1000) / 10).toFixed(1);
  }
  function verdict(v, m) {
    if (v === null || v === undefined || !m.binary) return null;
    return (m.hib ? v === 1 : v === 0) ? "right" : "wrong";
  }
  function drop(row, k) {  // how much worse the run is than the baseline on metric k (> 0: worse)
    var a = row.s[k], b = row.bs[k];
    if (a === null || a === undefined || b === null || b === undefined) return null;
    return METRICS[k].hib ? b - a : a - b;
  }
  function flip(row, k) {  // "right→wrong", "wrong→right" or null
    var m = METRICS[k], before = verdict(row.bs[k], m), after = verdict(row.s[k], m);
    if (!before || !after || before === after) return null;
    return before + "→" + after;
  }

  // -- controls -------------------------------------------------------------------------------------------------------
  function setup() {
    $("controls").addEventListener("submit", function (e) { e.preventDefault(); });  // Enter in a field: no reload
    var langSel = $("lang");
    LANGS.forEach(function (code) { var o = el("option", null, code); o.value = code; langSel.appendChild(o); });
    var metricSel = $("metric");
    METRICS.forEach(function (m, i) {
      var o = el("option", null, m.name + (m.binary ? "" : " (score)"));
      o.value = String(i);
      metricSel.appendChild(o);
      if (m.name === DATA.headline) state.metric = i;
    });
    metricSel.value = String(state.metric);
    if (!METRICS.length) metricSel.disabled = true;
    function bind(id, key, parse, event) {
      var node = $(id);
      if (!node) return;
      node.addEventListener(event || "change", function () { state[key] = parse(node.value); state.page = 0; update(); });
    }
    var num = function (v) { return v === "" || isNaN(Number(v)) ? null : Number(v) / 100; };  // inputs are x100
    bind("view", "view", String);
    bind("lang", "lang", String);
    bind("metric", "metric", Number);
    bind("verdict", "verdict", String);
    bind("min", "min", num, "input");
    bind("max", "max", num, "input");
    bind("sort", "sort", String);
    bind("page-size", "pageSize", Number);
    var timer = null;
    $("search").addEventListener("input", function () {
      clearTimeout(timer);
      var value = $("search").value;
      timer = setTimeout(function () { state.search = value.toLowerCase(); state.page = 0; update(); }, 120);
    });
    Array.prototype.forEach.call(document.querySelectorAll(".pager .prev"), function (b) {
      b.addEventListener("click", function () { if (state.page > 0) { state.page--; render(); } });
    });
    Array.prototype.forEach.call(document.querySelectorAll(".pager .next"), function (b) {
      b.addEventListener("click", function () {
        if ((state.page + 1) * state.pageSize < current.length) { state.page++; render(); }
      });
    });
  }

  // -- filtering ------------------------------------------------------------------------------------------------------
  function buildHaystack() {
    haystack = new Array(ROWS.length);
    for (var i = 0; i < ROWS.length; i++) {
      var r = ROWS[i];
      haystack[i] = (r.y + "\n" + r.r.join("\n") + (COMPARE ? "\n" + r.by : "")).toLowerCase();
    }
  }

  function select() {
    var k = state.metric, m = METRICS[k];
    var lang = state.lang === "" ? -1 : LANGS.indexOf(state.lang);
    if (state.search && !haystack) buildHaystack();
    var verdictFilter = m && m.binary ? state.verdict : "";
    var out = [];
    for (var i = 0; i < ROWS.length; i++) {
      var r = ROWS[i];
      if (lang >= 0 && r.l !== lang) continue;
      var v = m ? r.s[k] : null;
      if (verdictFilter && verdict(v, m) !== verdictFilter) continue;
      if (state.min !== null && !(v !== null && v >= state.min - 1e-12)) continue;
      if (state.max !== null && !(v !== null && v <= state.max + 1e-12)) continue;
      if (state.search && haystack[i].indexOf(state.search) < 0) continue;
      if (COMPARE && m && state.view === "flipped" && !flip(r, k)) continue;
      if (COMPARE && m && state.view === "drops" && !(drop(r, k) > 0)) continue;
      out.push(i);
    }
    if (COMPARE && m && state.view === "flipped") {
      // per language (the record's order), right→wrong before wrong→right, then file order
      out.sort(function (a, b) {
        var ra = ROWS[a], rb = ROWS[b];
        if (ra.l !== rb.l) return ra.l - rb.l;
        var fa = flip(ra, k) === "right→wrong" ? 0 : 1, fb = flip(rb, k) === "right→wrong" ? 0 : 1;
        return fa - fb || a - b;
      });
    } else if (COMPARE && m && state.view === "drops") {
      out.sort(function (a, b) { return drop(ROWS[b], k) - drop(ROWS[a], k) || a - b; });
    } else if (state.sort && m) {
      var sign = state.sort === "asc" ? 1 : -1;
      out.sort(function (a, b) {
        var va = ROWS[a].s[k], vb = ROWS[b].s[k];
        if (va === null || va === undefined) return (vb === null || vb === undefined) ? a - b : 1;
        if (vb === null || vb === undefined) return -1;
        return sign * (va - vb) || a - b;
      });
    }
    return out;
  }

  function flipSummary() {
    var box = $("flip-summary");
    if (!box) return;
    box.textContent = "";
    var k = state.metric, m = METRICS[k];
    if (!m) return;
    if (!m.binary) {
      box.appendChild(el("p", "note", m.name + " is a score, not right/wrong, per sample: no verdict can flip. " +
                                      "The “largest drops” view lists the samples that lost most."));
      return;
    }
    var counts = LANGS.map(function () { return [0, 0]; });
    for (var i = 0; i < ROWS.length; i++) {
      var f = flip(ROWS[i], k);
      if (f) counts[ROWS[i].l][f === "right→wrong" ? 0 : 1]++;
    }
    var table = el("table", "scores flips");
    var head = el("tr");
    ["language", "right → wrong", "wrong → right", "net"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
    var body = el("tbody"), total = [0, 0];
    LANGS.forEach(function (code, li) {
      var tr = el("tr");
      tr.dataset.lang = code;
      tr.appendChild(el("th", null, code));
      tr.appendChild(el("td", counts[li][0] ? "worse" : null, counts[li][0]));
      tr.appendChild(el("td", null, counts[li][1]));
      tr.appendChild(el("td", null, counts[li][1] - counts[li][0]));
      total[0] += counts[li][0]; total[1] += counts[li][1];
      body.appendChild(tr);
    });
    var tr = el("tr", "mean");
    tr.appendChild(el("th", null, "all"));
    tr.appendChild(el("td", null, total[0])); tr.appendChild(el("td", null, total[1]));
    tr.appendChild(el("td", null, total[1] - total[0]));
    body.appendChild(tr);
    table.appendChild(body);
    box.appendChild(el("h3", null, "Flipped verdicts (" + m.name + ")"));
    box.appendChild(table);
  }

  // -- rendering ------------------------------------------------------------------------------------------------------
  function textField(label, text, cls) {
    var f = el("div", "field");
    f.appendChild(el("span", "label", label));
    var t = el("div", "text " + cls, text);
    t.dir = "auto";
    f.appendChild(t);
    return f;
  }

  function factsText(facts) {
    var parts = [];
    Object.keys(facts).forEach(function (metric) {
      var f = facts[metric];
      if (f && typeof f === "object" && f.verdict) {  // language fidelity's miss
        var s = metric + ": " + f.verdict;
        if (f.detected) s += ", detected " + f.detected;
        if (f.script) s += " (" + String(f.script).toLowerCase() + " script)";
        if (f.requested) s += ", asked for " + f.requested;
        parts.push(s);
      } else {
        parts.push(metric + ": " + JSON.stringify(f));
      }
    });
    return parts.join("; ");
  }

  function thumbs(row) {
    var box = el("div", "thumbs");
    row.im.forEach(function (idx) {
      var name = IMAGES.names[idx], thumb = IMAGES.thumbs[idx], link = IMAGES.links[idx];
      var node;
      if (typeof thumb === "string" && thumb.indexOf("data:image/") === 0) {
        var img = el("img");
        img.src = thumb;
        img.alt = name;
        img.title = name;
        img.loading = "lazy";
        node = img;
      } else {
        node = el("span", "imgname", name);
      }
      if (typeof link === "string" && link.indexOf("file:") === 0) {
        var a = el("a");
        a.href = link;
        a.target = "_blank";
        a.rel = "noopener";
        a.title = "full size: " + name;
        a.appendChild(node);
        node = a;
      }
      box.appendChild(node);
    });
    return box;
  }

  function card(i) {
    var r = ROWS[i], k = state.metric, m = METRICS[k];
    var art = el("article", "sample");
    art.dataset.index = String(i);
    art.dataset.lang = LANGS[r.l];
    art.dataset.id = r.id;
    var v = m ? verdict(r.s[k], m) : null;
    if (v) art.classList.add(v);
    if (r.im.length) art.appendChild(thumbs(r));
    var body = el("div", "body");
    var meta = el("div", "meta");
    meta.appendChild(el("span", "lang", LANGS[r.l]));
    meta.appendChild(el("span", "id", r.id));
    METRICS.forEach(function (mm, j) {
      var b = el("span", "badge", mm.name + " " + points(r.s[j]) + (COMPARE ? " (baseline " + points(r.bs[j]) + ")" : ""));
      var vv = verdict(r.s[j], mm);
      if (vv) b.classList.add(vv);
      if (j === k) b.classList.add("current");
      meta.appendChild(b);
    });
    if (COMPARE && m) {
      var f = flip(r, k);
      if (f) { var fb = el("span", "flip " + (f === "right→wrong" ? "worse" : "better"), f); fb.dataset.flip = f; meta.appendChild(fb); }
      var d = drop(r, k);
      if (d !== null && d !== 0) meta.appendChild(el("span", "delta " + (d > 0 ? "worse" : "better"),
                                                     (d > 0 ? "−" : "+") + points(Math.abs(d))));
    }
    body.appendChild(meta);
    body.appendChild(textField("prompt", DATA.prompts[r.p], "prompt"));
    body.appendChild(textField(COMPARE ? "run" : "prediction", r.y, "prediction"));
    if (COMPARE) body.appendChild(textField("baseline", r.by, "baseline-prediction"));
    var refs = el("div", "field");
    refs.appendChild(el("span", "label", r.r.length === 1 ? "reference" : "references (" + r.r.length + ")"));
    var list = el("ol", "refs");
    r.r.forEach(function (ref) { var li = el("li", null, ref); li.dir = "auto"; list.appendChild(li); });
    refs.appendChild(list);
    body.appendChild(refs);
    if (r.x) body.appendChild(el("div", "facts-line", (COMPARE ? "run — " : "") + factsText(r.x)));
    if (COMPARE && r.bx) body.appendChild(el("div", "facts-line", "baseline — " + factsText(r.bx)));
    art.appendChild(body);
    return art;
  }

  function render() {
    var box = $("rows");
    var start = state.page * state.pageSize, end = Math.min(start + state.pageSize, current.length);
    var frag = document.createDocumentFragment();
    for (var i = start; i < end; i++) frag.appendChild(card(current[i]));
    box.textContent = "";
    box.appendChild(frag);
    var pages = Math.max(1, Math.ceil(current.length / state.pageSize));
    var info = current.length ? (start + 1) + "–" + end + " of " + current.length + " · page " + (state.page + 1) + " of " + pages
                              : "no samples";
    Array.prototype.forEach.call(document.querySelectorAll(".pager .page-info"), function (n) { n.textContent = info; });
    Array.prototype.forEach.call(document.querySelectorAll(".pager .prev"), function (b) { b.disabled = state.page === 0; });
    Array.prototype.forEach.call(document.querySelectorAll(".pager .next"), function (b) { b.disabled = end >= current.length; });
  }

  function update() {
    var m = METRICS[state.metric];
    $("verdict").disabled = !(m && m.binary);
    $("sort").disabled = COMPARE && state.view !== "all";
    current = select();
    var count = $("match-count");
    var what = COMPARE && state.view === "flipped" ? " flipped" : COMPARE && state.view === "drops" ? " with a drop" : "";
    count.textContent = current.length + " of " + ROWS.length + " samples" + what + " match";
    count.dataset.count = String(current.length);
    flipSummary();
    render();
  }

  setup();
  update();
  document.body.dataset.ready = "1";
  if (window.performance && performance.mark) performance.mark("mvleval-rows-rendered");
})();
