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

  function timeseries(svg, s) {
    var w = 900;
    var h = 300;
    var left = 70;
    var right = 16;
    var top = 14;
    var bottom = 34;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    var n = s.v.length;
    // Evenly spaced by run: CI runs cluster in time, gaps would squash the interesting part.
    var x = linear(0, Math.max(1, n - 1), left, w - right);
    var ext = extent(s.v.concat(s.lo, s.hi));
    var y = linear(ext[0], ext[1], h - bottom, top);
    var xs = s.v.map(function (_, i) {
      return x(i);
    });
    svgEl("rect", { x: left, y: top, width: w - left - right, height: h - top - bottom, "class": "plot-bg" }, svg);
    [ext[0], (ext[0] + ext[1]) / 2, ext[1]].forEach(function (v) {
      svgEl("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), "class": "grid" }, svg);
      addText(svg, left - 6, y(v) + 4, fmt(v), "axis", "end");
    });
    addText(svg, left, h - 10, n ? fmtTime(s.t[0]) : "", "axis", "start");
    addText(svg, w - right, h - 10, n ? fmtTime(s.t[n - 1]) : "", "axis", "end");
    addText(svg, (left + w - right) / 2, h - 10, s.unit + " (" + s.better + " is better)", "axis", "middle");
    var band = svgEl("path", {
      d: bandPath(xs, s.lo.map(function (v) { return v === null ? null : y(v); }),
        s.hi.map(function (v) { return v === null ? null : y(v); })),
      "class": "band"
    }, svg);
    addTitle(band, "baseline band: values inside are 'unchanged'");
    svgEl("path", { d: linePath(xs, s.m.map(function (v) { return v === null ? null : y(v); })), "class": "median" }, svg);
    svgEl("path", { d: linePath(xs, s.v.map(y)), "class": "series" }, svg);
    for (var i = 0; i < n; i++) {
      var parent = svg;
      if (SAFE_HREF.test(s.href[i])) {
        parent = svgEl("a", { href: s.href[i] }, svg);
      }
      var marked = s.r[i] === "R" || s.r[i] === "I";
      var dot = svgEl("circle", {
        cx: xs[i], cy: y(s.v[i]), r: marked ? 5 : 2.5, "class": "dot " + VERDICT_CLASS[s.r[i]]
      }, parent);
      addTitle(dot, s.id[i] + "\n" + fmtTime(s.t[i]) + "\n" + fmt(s.v[i]) + " " + s.unit + "\n" + VERDICT_TEXT[s.r[i]]);
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
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
