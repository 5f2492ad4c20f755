// esp-smoltcp-hil dashboard charts: small hand-written SVG charts, no dependencies, no network.
// Data comes from the page's <script type="application/json" id="hil-data"> block; every string from it is
// placed with textContent or setAttribute, never parsed as HTML (device and log text is untrusted).
(function () {
  "use strict";

  var SVGNS = "http://www.w3.org/2000/svg";
  var errors = [];

  // Record script errors into the page itself so a headless browser (or a person) can see them.
  function recordError(message) {
    errors.push(message);
    document.documentElement.setAttribute("data-js-errors", String(errors.length));
    var box = document.getElementById("hil-js-errors");
    if (box) {
      box.hidden = false;
      box.textContent = errors.join("\n");
    }
  }
  window.addEventListener("error", function (event) {
    recordError(String(event.message || event.type));
  });

  function svgEl(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    Object.keys(attrs || {}).forEach(function (key) {
      node.setAttribute(key, String(attrs[key]));
    });
    if (parent) {
      parent.appendChild(node);
    }
    return node;
  }

  function addText(parent, x, y, text, cls, anchor) {
    var node = svgEl("text", { x: x, y: y, "class": cls || "axis", "text-anchor": anchor || "start" }, parent);
    node.textContent = text;
    return node;
  }

  function addTitle(parent, text) {
    svgEl("title", {}, parent).textContent = text;
  }

  function extent(values) {
    var lo = Infinity;
    var hi = -Infinity;
    values.forEach(function (v) {
      if (v !== null && isFinite(v)) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    });
    if (lo === Infinity) {
      return [0, 1];
    }
    if (lo === hi) {
      var pad = Math.abs(lo) * 0.01 || 1;
      return [lo - pad, hi + pad];
    }
    var margin = (hi - lo) * 0.06;
    return [lo - margin, hi + margin];
  }

  function linear(d0, d1, r0, r1) {
    return function (v) {
      return d1 === d0 ? (r0 + r1) / 2 : r0 + ((v - d0) * (r1 - r0)) / (d1 - d0);
    };
  }

  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) {
      return "";
    }
    return Number(v).toPrecision(4).replace(/\.?0+$/, "").replace(/\.?0+e/, "e");
  }

  function fmtTime(epoch) {
    return new Date(epoch * 1000).toISOString().slice(0, 16).replace("T", " ");
  }

  function linePath(xs, ys) {
    var d = "";
    var pen = false;
    for (var i = 0; i < xs.length; i++) {
      if (ys[i] === null || !isFinite(ys[i])) {
        pen = false;
        continue;
      }
      d += (pen ? "L" : "M") + xs[i].toFixed(1) + "," + ys[i].toFixed(1);
      pen = true;
    }
    return d;
  }

  function bandPath(xs, los, his) {
    // One closed polygon per run of consecutive points that have a baseline.
    var d = "";
    var i = 0;
    while (i < xs.length) {
      if (los[i] === null) {
        i++;
        continue;
      }
      var start = i;
      while (i < xs.length && los[i] !== null) {
        i++;
      }
      var upper = [];
      var lower = [];
      for (var k = start; k < i; k++) {
        upper.push(xs[k].toFixed(1) + "," + his[k].toFixed(1));
        lower.unshift(xs[k].toFixed(1) + "," + los[k].toFixed(1));
      }
      if (upper.length === 1) {
        // A lone point still gets a visible band: widen it by 2 px each side.
        var x = xs[start];
        upper = [(x - 2).toFixed(1) + "," + his[start].toFixed(1), (x + 2).toFixed(1) + "," + his[start].toFixed(1)];
        lower = [(x + 2).toFixed(1) + "," + los[start].toFixed(1), (x - 2).toFixed(1) + "," + los[start].toFixed(1)];
      }
      d += "M" + upper.join("L") + "L" + lower.join("L") + "Z";
    }
    return d;
  }

  var VERDICT_CLASS = { R: "regressed", I: "improved", U: "unchanged", N: "nohistory" };
  var VERDICT_TEXT = { R: "regressed", I: "improved", U: "unchanged", N: "not enough history" };
  var SAFE_HREF = /^[A-Za-z0-9._\/-]+\.html$/;

  function sparkline(svg, s) {
    var w = 160;
    var h = 32;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    var xs = s.v.map(function (_, i) {
      return linear(0, Math.max(1, s.v.length - 1), 3, w - 3)(i);
    });
    var ext = extent(s.v);
    var y = linear(ext[0], ext[1], h - 3, 3);
    var ys = s.v.map(y);
    svgEl("path", { d: linePath(xs, ys), "class": "spark-line" }, svg);
    var last = s.v.length - 1;
    if (last >= 0) {
      svgEl("circle", { cx: xs[last], cy: ys[last], r: 2.5, "class": "dot " + VERDICT_CLASS[s.r[last]] }, svg);
    }
  }

  var SAFE_URL = /^https?:\/\/[^\s"'<>()\[\]`]+$/;

  function timeseries(svg, s) {
    // One point per run, evenly spaced, commits on the x axis; drag across the chart to zoom into a range of
    // runs, double-click (or the "reset zoom" button) to see them all again.
    var n = s.v.length;
    var view = { lo: 0, hi: Math.max(0, n - 1) };
    var reset = svg.parentNode ? svg.parentNode.querySelector(".zoom-reset") : null;
    function redraw() {
      while (svg.firstChild) {
        svg.removeChild(svg.firstChild);
      }
      drawTimeseries(svg, s, view.lo, view.hi);
      svg.setAttribute("data-zoom", view.lo + "-" + view.hi);
      if (reset) {
        reset.hidden = view.lo === 0 && view.hi === n - 1;
      }
    }
    function zoomTo(lo, hi) {
      view.lo = Math.max(0, Math.min(lo, hi));
      view.hi = Math.min(n - 1, Math.max(lo, hi));
      redraw();
    }
    svg.hilZoom = zoomTo;
    var start = null;
    var brush = null;
    function toIndex(event) {
      var box = svg.getBoundingClientRect();
      var x = ((event.clientX - box.left) / box.width) * TS.w;
      var t = (x - TS.left) / (TS.w - TS.left - TS.right);
      return Math.round(view.lo + Math.max(0, Math.min(1, t)) * (view.hi - view.lo));
    }
    svg.addEventListener("pointerdown", function (event) {
      start = { index: toIndex(event), x: event.clientX };
      brush = svgEl("rect", { x: 0, y: TS.top, width: 0, height: TS.h - TS.top - TS.bottom, "class": "brush" }, svg);
    });
    svg.addEventListener("pointermove", function (event) {
      if (start === null || brush === null) {
        return;
      }
      var box = svg.getBoundingClientRect();
      var x0 = ((Math.min(start.x, event.clientX) - box.left) / box.width) * TS.w;
      var x1 = ((Math.max(start.x, event.clientX) - box.left) / box.width) * TS.w;
      brush.setAttribute("x", x0.toFixed(1));
      brush.setAttribute("width", (x1 - x0).toFixed(1));
    });
    svg.addEventListener("pointerup", function (event) {
      if (start === null) {
        return;
      }
      var end = toIndex(event);
      var first = start.index;
      start = null;
      brush = null;
      if (Math.abs(end - first) >= 1) {
        zoomTo(first, end);
      } else {
        redraw();
      }
    });
    svg.addEventListener("dblclick", function () {
      zoomTo(0, n - 1);
    });
    if (reset) {
      reset.addEventListener("click", function () {
        zoomTo(0, n - 1);
      });
    }
    redraw();
  }

  var TS = { w: 900, h: 320, left: 70, right: 40, top: 14, bottom: 54 };

  function drawTimeseries(svg, s, lo, hi) {
    var w = TS.w;
    var h = TS.h;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    var idx = [];
    for (var k = lo; k <= hi; k++) {
      idx.push(k);
    }
    var pick = function (values) {
      return idx.map(function (i) { return values[i]; });
    };
    var v = pick(s.v);
    var los = pick(s.lo);
    var his = pick(s.hi);
    var m = pick(s.m);
    var n = v.length;
    var x = linear(0, Math.max(1, n - 1), TS.left, w - TS.right);
    var ext = extent(v.concat(los, his));
    var y = linear(ext[0], ext[1], h - TS.bottom, TS.top);
    var xs = v.map(function (_, i) {
      return x(i);
    });
    svgEl("rect", {
      x: TS.left, y: TS.top, width: w - TS.left - TS.right, height: h - TS.top - TS.bottom, "class": "plot-bg"
    }, svg);
    [ext[0], (ext[0] + ext[1]) / 2, ext[1]].forEach(function (val) {
      svgEl("line", { x1: TS.left, x2: w - TS.right, y1: y(val), y2: y(val), "class": "grid" }, svg);
      addText(svg, TS.left - 6, y(val) + 4, fmt(val), "axis", "end");
    });
    // Commits on the x axis: up to 10 labels across the visible runs, each linked to its commit.
    var step = Math.max(1, Math.ceil(n / 10));
    var ticks = [];
    for (var tick = 0; tick < n; tick += step) {
      ticks.push(tick);
    }
    if (n && ticks[ticks.length - 1] !== n - 1) {
      // Always label the newest run: move the last tick there, or add one when there is room.
      ticks[n - 1 - ticks[ticks.length - 1] < step / 2 ? ticks.length - 1 : ticks.length] = n - 1;
    }
    ticks.forEach(function (t) {
      var i = idx[t];
      var label = s.c[i] || s.id[i];
      var parent = svg;
      if (SAFE_URL.test(s.cu[i] || "")) {
        parent = svgEl("a", { href: s.cu[i], "class": "commit-link", rel: "noopener noreferrer" }, svg);
      }
      svgEl("line", { x1: xs[t], x2: xs[t], y1: h - TS.bottom, y2: h - TS.bottom + 4, "class": "grid" }, svg);
      var text = addText(parent, xs[t], h - TS.bottom + 16, label, "axis commit", "middle");
      addTitle(text, "commit " + (s.c[i] || "unknown") + "\nrun " + s.id[i] + "\n" + fmtTime(s.t[i]));
    });
    addText(svg, TS.left, h - 6, n ? fmtTime(s.t[lo]) : "", "axis", "start");
    addText(svg, w - TS.right, h - 6, n ? fmtTime(s.t[hi]) : "", "axis", "end");
    addText(svg, (TS.left + w - TS.right) / 2, h - 6, s.unit + " (" + s.better + " is better) · commits", "axis", "middle");
    var band = svgEl("path", {
      d: bandPath(xs, los.map(function (val) { return val === null ? null : y(val); }),
        his.map(function (val) { return val === null ? null : y(val); })),
      "class": "band"
    }, svg);
    addTitle(band, "baseline band: values inside are 'unchanged'");
    svgEl("path", { d: linePath(xs, m.map(function (val) { return val === null ? null : y(val); })), "class": "median" }, svg);
    svgEl("path", { d: linePath(xs, v.map(y)), "class": "series" }, svg);
    for (var j = 0; j < n; j++) {
      var r = idx[j];
      var dotParent = svg;
      if (SAFE_HREF.test(s.href[r])) {
        dotParent = svgEl("a", { href: s.href[r] }, svg);
      }
      var marked = s.r[r] === "R" || s.r[r] === "I";
      var dot = svgEl("circle", {
        cx: xs[j], cy: y(v[j]), r: marked ? 5 : 2.5, "class": "dot " + VERDICT_CLASS[s.r[r]]
      }, dotParent);
      addTitle(dot, s.id[r] + "\ncommit " + (s.c[r] || "unknown") + "\n" + fmtTime(s.t[r]) + "\n" +
        fmt(s.v[r]) + " " + s.unit + "\n" + VERDICT_TEXT[s.r[r]]);
    }
  }

  function histogram(svg, s) {
    var w = 440;
    var h = 200;
    var left = 40;
    var bottom = 30;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    var ext = extent(s.v);
    var bins = Math.max(5, Math.min(30, Math.round(Math.sqrt(s.v.length))));
    var counts = new Array(bins).fill(0);
    var width = (ext[1] - ext[0]) / bins;
    s.v.forEach(function (v) {
      counts[Math.min(bins - 1, Math.floor((v - ext[0]) / width))]++;
    });
    var x = linear(ext[0], ext[1], left, w - 10);
    var y = linear(0, Math.max.apply(null, counts), h - bottom, 10);
    var d = "";
    counts.forEach(function (c, i) {
      var x0 = x(ext[0] + i * width) + 0.5;
      var x1 = x(ext[0] + (i + 1) * width) - 0.5;
      d += "M" + x0.toFixed(1) + "," + y(0).toFixed(1) + "V" + y(c).toFixed(1) + "H" + x1.toFixed(1) +
        "V" + y(0).toFixed(1) + "Z";
    });
    addTitle(svgEl("path", { d: d, "class": "bars" }, svg), s.v.length + " runs");
    addText(svg, left, h - 10, fmt(ext[0]), "axis", "start");
    addText(svg, w - 10, h - 10, fmt(ext[1]) + " " + s.unit, "axis", "end");
    addText(svg, left - 4, 18, String(Math.max.apply(null, counts)), "axis", "end");
    if (s.latest !== null) {
      var lx = x(s.latest);
      svgEl("path", { d: "M" + lx.toFixed(1) + ",8V" + (h - bottom), "class": "latest" }, svg);
      addText(svg, lx + 3, 18, "latest " + fmt(s.latest), "axis latest-label", "start");
    }
  }

  function profile(svg, s) {
    // Percentile profile of the latest run against the baseline medians (x: percentile, y: latency).
    var w = 440;
    var h = 200;
    var left = 50;
    var bottom = 30;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    var ext = extent(s.latest.concat(s.baseline));
    var x = linear(0, Math.max(1, s.p.length - 1), left + 10, w - 20);
    var y = linear(ext[0], ext[1], h - bottom, 10);
    var xs = s.p.map(function (_, i) {
      return x(i);
    });
    s.p.forEach(function (p, i) {
      addText(svg, xs[i], h - 10, "p" + p, "axis", "middle");
    });
    addText(svg, left - 4, y(ext[1]) + 10, fmt(ext[1]), "axis", "end");
    addText(svg, left - 4, y(ext[0]), fmt(ext[0]) + " " + s.unit, "axis", "end");
    addTitle(svgEl("path", { d: linePath(xs, s.baseline.map(function (v) { return v === null ? null : y(v); })),
      "class": "median" }, svg), "baseline median");
    addTitle(svgEl("path", { d: linePath(xs, s.latest.map(y)), "class": "series" }, svg), "latest run");
  }

  var CHARTS = { sparkline: sparkline, timeseries: timeseries, histogram: histogram, profile: profile };

  function cellValue(row, column) {
    var cell = row.cells[column];
    if (!cell) {
      return "";
    }
    var value = cell.getAttribute("data-value");
    return value !== null ? value : cell.textContent.trim();
  }

  function makeSortable(table) {
    // Click a column header to sort by it; click again to reverse. Cells may carry a numeric data-value.
    var headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(headers, function (th, column) {
      th.classList.add("sort");
      th.setAttribute("role", "button");
      th.setAttribute("tabindex", "0");
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var descending = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(headers, function (other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, column);
          var y = cellValue(b, column);
          var nx = x === "" ? NaN : Number(x);
          var ny = y === "" ? NaN : Number(y);
          var order = isFinite(nx) && isFinite(ny) ? nx - ny : x.localeCompare(y);
          return descending ? -order : order;
        });
        rows.forEach(function (row) {
          body.appendChild(row);
        });
      });
    });
  }

  function makeFilter(box) {
    var table = document.getElementById(box.getAttribute("data-table"));
    var text = box.querySelector(".filter-text");
    var verdict = box.querySelector(".filter-verdict");
    var count = box.querySelector(".filter-count");
    function apply() {
      var words = text.value.toLowerCase().split(/\s+/).filter(Boolean);
      var wanted = verdict.value;
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var haystack = row.textContent.toLowerCase();
        var ok = (!wanted || row.getAttribute("data-verdict") === wanted) && words.every(function (word) {
          return haystack.indexOf(word) >= 0;
        });
        row.hidden = !ok;
        shown += ok ? 1 : 0;
      });
      count.textContent = shown + " of " + table.tBodies[0].rows.length + " shown";
    }
    text.addEventListener("input", apply);
    verdict.addEventListener("change", apply);
    apply();
  }

  function drawAll() {
    var data = JSON.parse(document.getElementById("hil-data").textContent);
    var drawn = 0;
    document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      var kind = svg.getAttribute("data-chart");
      var key = svg.getAttribute("data-key");
      try {
        CHARTS[kind](svg, data.charts[key]);
        drawn++;
      } catch (err) {
        recordError("chart " + kind + " " + key + ": " + err);
      }
    });
    document.documentElement.setAttribute("data-charts-drawn", String(drawn));
    document.querySelectorAll("table.sortable").forEach(makeSortable);
    document.querySelectorAll(".filters[data-table]").forEach(makeFilter);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
