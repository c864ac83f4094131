// Ratchet run report: the timeline canvas. Inlined into report.html at build time.
//
// The data is one JSON object of parallel arrays (reports/timeline.py). Bars are
// sorted by (lane, start); within a lane the running maximum of the ends is
// increasing, so the bars a view shows are found by binary search per lane and
// only those are drawn. Bars narrower than a pixel are counted per pixel column and
// the column shows the share of each outcome (a run that is 89% ok looks mostly
// green, and a single failure still gets a pixel); equal neighbouring columns are
// drawn as one rectangle. A cas refused with cas-mismatch is an expected failure
// (the register held another value): it is drawn in a muted red. Every string that came from the history
// reaches the page through textContent or canvas fillText, never innerHTML.
(function () {
  "use strict";
  var dataNode = document.getElementById("timeline-data");
  var canvas = document.getElementById("timeline-canvas");
  if (!dataNode || !canvas) { return; }
  var T = JSON.parse(dataNode.textContent);
  var C = T.ops;
  var n = T.count;
  var lanes = T.lanes;
  var invokeNodes = T.invoke_nodes || {};
  var tooltip = document.getElementById("timeline-tooltip");
  var record = document.getElementById("timeline-record");
  var status = document.getElementById("timeline-status");
  var ctx = canvas.getContext("2d");

  var OUTCOME = ["ok", "fail", "info", "open"];
  var COLOUR = ["#3f9b68", "#d1495b", "#e99d19", "#9aa0a6"];
  var EXPECTED_FAIL_COLOUR = "#e7b9bf";
  // Drawing categories: ok, fail, expected fail (cas-mismatch), info, never completed;
  // a pixel column stacks them top to bottom in STACK order.
  var CAT_COLOUR = [COLOUR[0], COLOUR[1], EXPECTED_FAIL_COLOUR, COLOUR[2], COLOUR[3]];
  var CATS = 5;
  var STACK = [1, 3, 4, 2, 0];
  var NEMESIS_COLOUR = "#7b5ea7";
  var FAULT_COLOUR = {
    partition: "rgba(209,73,91,0.13)", loss: "rgba(233,157,25,0.15)", pause: "rgba(66,133,244,0.13)",
    kill: "rgba(60,60,60,0.13)", clock: "rgba(0,150,136,0.14)", disk: "rgba(123,94,167,0.15)",
    corrupt: "rgba(156,39,176,0.15)"
  };
  var GUTTER = 74, AXIS = 20, MARKS = 18, BOTTOM = 6;

  // Per-lane ranges and the running maximum of ends (for the binary search).
  var laneFirst = new Int32Array(lanes.length).fill(-1);
  var laneLast = new Int32Array(lanes.length).fill(-1);
  var maxEnd = new Float64Array(n);
  for (var i = 0; i < n; i++) {
    var lane = C.lane[i];
    if (laneFirst[lane] < 0) { laneFirst[lane] = i; maxEnd[i] = C.e[i]; }
    else { maxEnd[i] = Math.max(maxEnd[i - 1], C.e[i]); }
    laneLast[lane] = i;
  }
  var casMismatch = (T.errors || []).indexOf("cas-mismatch");
  var category = new Uint8Array(n);
  for (var q = 0; q < n; q++) {
    var o = C.o[q];
    category[q] = o === 0 ? 0 : o === 1 ? (C.er[q] === casMismatch && casMismatch >= 0 ? 2 : 1) : o === 2 ? 3 : 4;
  }
  var byHistoryIndex = new Map();
  for (var j = 0; j < n; j++) {
    byHistoryIndex.set(C.ii[j], j);
    if (C.ci[j] >= 0) { byHistoryIndex.set(C.ci[j], j); }
  }
  var anomalyBars = [];
  (T.anomaly_indices || []).forEach(function (h) {
    if (byHistoryIndex.has(h)) { anomalyBars.push(byHistoryIndex.get(h)); }
  });

  var span = Math.max(T.end_ns, 1);
  var view = { a: -span * 0.01, b: span * 1.01 };
  var full = { a: view.a, b: view.b };
  var laneH = 14, plotW = 100, cssH = 100;
  var selected = -1, hovered = -1;
  var keyFilter = -1;  // index into T.keys: ops of other keys are dimmed
  var api = { drawnOps: 0, totalOps: n, draws: 0 };
  api.categoryCounts = function () {  // client ops per drawing category, for the legend and tests
    var found = { ok: 0, fail: 0, expected_fail: 0, info: 0, open: 0 }, names = Object.keys(found);
    for (var r = 0; r < n; r++) { if (lanes[C.lane[r]] !== "nemesis") { found[names[category[r]]]++; } }
    return found;
  };
  window.ratchetTimeline = api;

  function layout() {
    var width = Math.max(320, canvas.parentElement.clientWidth);
    laneH = Math.max(3, Math.min(18, Math.floor(520 / Math.max(1, lanes.length))));
    cssH = AXIS + MARKS + lanes.length * laneH + BOTTOM;
    var ratio = window.devicePixelRatio || 1;
    canvas.style.width = width + "px";
    canvas.style.height = cssH + "px";
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(cssH * ratio);
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    plotW = width - GUTTER - 8;
  }

  function X(t) { return GUTTER + (t - view.a) / (view.b - view.a) * plotW; }
  function T_at(x) { return view.a + (x - GUTTER) / plotW * (view.b - view.a); }
  function laneY(lane) { return AXIS + MARKS + lane * laneH; }

  function firstVisible(lane) {
    var lo = laneFirst[lane], hi = laneLast[lane] + 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (maxEnd[mid] < view.a) { lo = mid + 1; } else { hi = mid; }
    }
    return lo;
  }

  function niceStep(rangeNs, target) {
    var raw = rangeNs / target;
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }

  function fmtTime(ns) {
    var abs = Math.abs(ns);
    if (abs >= 1e9) { return (ns / 1e9).toFixed(abs >= 1e11 ? 0 : 2).replace(/\.?0+$/, "") + " s"; }
    if (abs >= 1e6) { return (ns / 1e6).toFixed(2).replace(/\.?0+$/, "") + " ms"; }
    if (abs >= 1e3) { return (ns / 1e3).toFixed(1).replace(/\.?0+$/, "") + " µs"; }
    return Math.round(ns) + " ns";
  }

  // Tick labels in seconds with as many decimals as the step needs ("15.3815 s"), so
  // neighbouring ticks never read the same when zoomed in deep.
  function tickLabel(t, step) {
    var decimals = Math.max(0, Math.min(9, Math.ceil(-Math.log10(step / 1e9) - 1e-9)));
    return (t / 1e9).toFixed(decimals) + " s";
  }

  function drawAxis(width) {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, cssH);
    ctx.strokeStyle = "#e3e6ea";
    ctx.fillStyle = "#555";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    var step = niceStep(view.b - view.a, Math.max(2, plotW / 110));
    var first = Math.ceil(view.a / step) * step;
    for (var t = first; t <= view.b; t += step) {
      var x = Math.round(X(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, AXIS - 4); ctx.lineTo(x, cssH - BOTTOM); ctx.stroke();
      ctx.fillText(tickLabel(t, step), x + 3, AXIS / 2);
    }
  }

  function drawLanesBackground(width) {
    for (var lane = 0; lane < lanes.length; lane++) {
      if (lane % 2 === 1) {
        ctx.fillStyle = "rgba(0,0,0,0.025)";
        ctx.fillRect(GUTTER, laneY(lane), plotW, laneH);
      }
    }
    ctx.fillStyle = "#333";
    ctx.textBaseline = "middle";
    ctx.font = Math.min(11, laneH) + "px system-ui, sans-serif";
    var every = Math.ceil(11 / laneH);
    for (var l = 0; l < lanes.length; l += every) {
      ctx.fillText(lanes[l].slice(0, 11), 4, laneY(l) + laneH / 2);
    }
  }

  function drawFaults() {
    var top = AXIS, height = MARKS + lanes.length * laneH;
    (T.faults || []).forEach(function (f) {
      var x0 = Math.max(GUTTER, X(f.start)), x1 = Math.min(GUTTER + plotW, X(f.end));
      if (x1 < GUTTER || x0 > GUTTER + plotW) { return; }
      ctx.fillStyle = FAULT_COLOUR[f.kind] || "rgba(120,120,120,0.13)";
      ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      ctx.save();
      ctx.beginPath(); ctx.rect(x0, top, Math.max(1, x1 - x0), MARKS); ctx.clip();
      ctx.fillStyle = "#333";
      ctx.font = "10px system-ui, sans-serif";
      ctx.fillText(f.label + (f.healed ? "" : " (never healed)"), x0 + 3, top + MARKS / 2);
      ctx.restore();
    });
  }

  function drawMarkers() {
    (T.markers || []).forEach(function (m) {
      var x = Math.round(X(m.t)) + 0.5;
      if (x < GUTTER || x > GUTTER + plotW) { return; }
      if (m.kind === "recovered_from_disk" || m.kind === "state_transfer" || m.kind === "storage_fault") {
        ctx.fillStyle = m.kind === "storage_fault" ? "#b00020" : "#555";
        ctx.fillRect(x - 2, AXIS + MARKS - 6, 4, 5);
        return;
      }
      if (m.kind === "prefix") {
        ctx.strokeStyle = "rgba(176,0,32,0.8)";
        ctx.setLineDash([6, 3]);
        ctx.beginPath(); ctx.moveTo(x, AXIS); ctx.lineTo(x, cssH - BOTTOM); ctx.stroke();
        ctx.setLineDash([]);
        return;
      }
      ctx.strokeStyle = m.kind === "became_primary" ? "rgba(25,103,210,0.85)" : "rgba(25,103,210,0.35)";
      ctx.setLineDash(m.kind === "became_primary" ? [] : [3, 3]);
      ctx.beginPath(); ctx.moveTo(x, AXIS + MARKS - 6); ctx.lineTo(x, cssH - BOTTOM); ctx.stroke();
      ctx.setLineDash([]);
      if (m.kind === "became_primary") {
        ctx.fillStyle = "rgba(25,103,210,0.9)";
        ctx.beginPath(); ctx.moveTo(x - 4, AXIS + MARKS - 7); ctx.lineTo(x + 4, AXIS + MARKS - 7);
        ctx.lineTo(x, AXIS + MARKS - 1); ctx.fill();
      }
    });
  }

  function barColour(i) {
    return lanes[C.lane[i]] === "nemesis" ? NEMESIS_COLOUR : CAT_COLOUR[category[i]];
  }

  // Bars narrower than a pixel are counted per pixel column and category (ops of the chosen key
  // apart from the others, which are drawn faint only where no chosen op falls). A column shows
  // each category's share of the lane's height, at least one pixel for any category present, so
  // a lone failure among hundreds of ok ops is still seen. Wider bars are drawn as they are.
  var counts = new Uint32Array(0);
  var fadedCounts = new Uint32Array(0);

  // Segment heights of one pixel column (in STACK order), or null when it holds no op.
  function columnHeights(source, px, h) {
    var base = px * CATS, total = 0;
    for (var c = 0; c < CATS; c++) { total += source[base + c]; }
    if (!total) { return null; }
    var heights = [0, 0, 0, 0, 0], remaining = h, largest = -1, k, count;
    for (k = 0; k < CATS; k++) {  // one pixel for every category present, most telling first
      count = source[base + STACK[k]];
      if (count && remaining > 0) { heights[k] = 1; remaining--; }
      if (count && (largest < 0 || count > source[base + STACK[largest]])) { largest = k; }
    }
    var spare = remaining;
    for (k = 0; k < CATS; k++) {  // the rest by share
      var add = Math.floor(spare * source[base + STACK[k]] / total);
      heights[k] += add; remaining -= add;
    }
    heights[largest] += remaining;  // what rounding left goes to the largest share
    return heights;
  }

  function sameHeights(a, b) {
    if (a === null || b === null) { return a === b; }
    for (var k = 0; k < CATS; k++) { if (a[k] !== b[k]) { return false; } }
    return true;
  }

  function fillColumns(x, width, y, heights, alpha) {
    ctx.globalAlpha = alpha;
    var top = y;
    for (var k = 0; k < CATS; k++) {
      if (!heights[k]) { continue; }
      ctx.fillStyle = CAT_COLOUR[STACK[k]];
      ctx.fillRect(x, top, width, heights[k]);
      top += heights[k];
    }
  }

  function drawBars() {
    var drawn = 0;
    var pad = laneH > 5 ? 1 : 0;
    var width = Math.ceil(plotW) + 2;
    if (counts.length !== width * CATS) {
      counts = new Uint32Array(width * CATS); fadedCounts = new Uint32Array(width * CATS);
    }
    for (var lane = 0; lane < lanes.length; lane++) {
      if (laneFirst[lane] < 0) { continue; }
      var y = laneY(lane) + pad, h = laneH - 2 * pad;
      var nemesisLane = lanes[lane] === "nemesis";
      counts.fill(0);
      fadedCounts.fill(0);
      for (var i = firstVisible(lane); i <= laneLast[lane] && C.s[i] <= view.b; i++) {
        if (C.e[i] < view.a) { continue; }
        var x0 = X(C.s[i]), x1 = X(C.e[i]);
        var faded = keyFilter >= 0 && C.k[i] !== keyFilter && !nemesisLane;
        if (x1 - x0 < 1 && !nemesisLane) {
          var px = Math.min(width - 1, Math.max(0, Math.floor(x0 - GUTTER)));
          (faded ? fadedCounts : counts)[px * CATS + category[i]]++;
          continue;
        }
        ctx.globalAlpha = faded ? 0.15 : 1;
        ctx.fillStyle = barColour(i);
        var left = Math.max(GUTTER - 1, x0);
        ctx.fillRect(left, y, Math.max(1, Math.min(x1, GUTTER + plotW + 1) - left), h);
        drawn++;
      }
      for (var start = 0; start < width; ) {
        var heights = columnHeights(counts, start, h), dim = false;
        if (heights === null) { heights = columnHeights(fadedCounts, start, h); dim = true; }
        var end = start + 1;
        if (heights === null) { start = end; continue; }
        while (end < width) {
          var next = columnHeights(counts, end, h), nextDim = false;
          if (next === null) { next = columnHeights(fadedCounts, end, h); nextDim = true; }
          if (nextDim !== dim || !sameHeights(next, heights)) { break; }
          end++;
        }
        fillColumns(GUTTER + start, end - start, y, heights, dim ? 0.15 : 1);
        drawn++;
        start = end;
      }
      ctx.globalAlpha = 1;
    }
    return drawn;
  }

  function outline(i, colour, width) {
    if (i < 0) { return; }
    var x0 = X(C.s[i]), x1 = X(C.e[i]);
    if (x1 < GUTTER || x0 > GUTTER + plotW) { return; }
    ctx.strokeStyle = colour; ctx.lineWidth = width;
    ctx.strokeRect(Math.max(GUTTER, x0) - 1.5, laneY(C.lane[i]) - 1, Math.max(3, x1 - x0) + 3, laneH + 2);
    ctx.lineWidth = 1;
  }

  function draw() {
    var started = window.performance.now();
    var width = canvas.width / (window.devicePixelRatio || 1);
    drawAxis(width);
    drawLanesBackground(width);
    drawFaults();
    var drawn = drawBars();
    drawMarkers();
    anomalyBars.forEach(function (i) { outline(i, "#b00020", 2); });
    outline(hovered, "#111", 1);
    outline(selected, "#1967d2", 2);
    ctx.clearRect(GUTTER + plotW + 1, AXIS, 20, cssH);
    api.drawnOps = drawn;
    api.draws += 1;
    api.lastDrawMs = window.performance.now() - started;
    canvas.dataset.drawnOps = String(drawn);
    status.textContent = "showing " + fmtTime(Math.max(0, view.a)) + " to " + fmtTime(view.b) +
      " · " + drawn.toLocaleString() + " bars drawn of " + n.toLocaleString() + " ops";
  }

  var pending = false;
  function redraw() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; draw(); });
  }

  function zoom(factor, atX) {
    var t = T_at(atX);
    var a = t - (t - view.a) * factor, b = t + (view.b - t) * factor;
    if (b - a < 1000) { return; }  // a microsecond across the whole width is enough
    view.a = a; view.b = b;
    redraw();
  }

  function hit(x, y) {
    var lane = Math.floor((y - AXIS - MARKS) / laneH);
    if (lane < 0 || lane >= lanes.length || laneFirst[lane] < 0 || x < GUTTER) { return -1; }
    var t = T_at(x), slack = (view.b - view.a) / plotW * 3;
    var best = -1, bestGap = Infinity;
    for (var i = firstVisible(lane); i <= laneLast[lane] && C.s[i] <= t + slack; i++) {
      var gap = t < C.s[i] ? C.s[i] - t : t > C.e[i] ? t - C.e[i] : 0;
      if (gap <= slack && gap < bestGap) { best = i; bestGap = gap; }
    }
    return best;
  }

  function processValue(i) { return T.processes[C.p[i]]; }

  function valueText(v) { return v === null || v === undefined ? "" : JSON.stringify(v); }

  function summary(i) {
    var who = lanes[C.lane[i]] === "nemesis" ? "nemesis" : "process " + String(processValue(i));
    var key = C.k[i] >= 0 ? " key " + JSON.stringify(T.keys[C.k[i]]) : "";
    var read = C.o[i] === 0 && C.vi[i] === null && C.vc[i] !== null;  // a read: the value is what it returned
    var value = read ? "→ " + valueText(C.vc[i]) : valueText(C.vi[i]);
    var error = C.er[i] >= 0 ? " error " + JSON.stringify(T.errors[C.er[i]]) : "";
    return who + ": " + T.fs[C.f[i]] + key + (value ? " " + value : "") + " → " + OUTCOME[C.o[i]] +
      error + " (" + fmtTime(C.e[i] - C.s[i]) + ", at " + fmtTime(C.s[i]) + ")";
  }

  function absTime(rel) {
    try { return (BigInt(T.t0_ns) + BigInt(Math.round(rel))).toString(); }
    catch (e) { return String(Number(T.t0_ns) + rel); }
  }

  function recordText(i) {
    var nemesis = lanes[C.lane[i]] === "nemesis";
    var base = {
      process: processValue(i), f: T.fs[C.f[i]],
      key: C.k[i] >= 0 ? T.keys[C.k[i]] : null
    };
    function one(index, type, rel, value, error, node) {
      var r = { index: index, time_ns: "__TIME__", process: base.process, type: type, f: base.f,
        key: base.key, value: value, error: error, node: node >= 0 ? T.nodes[node] : null };
      return JSON.stringify(r, null, 1).replace("\"__TIME__\"", absTime(rel)).replace(/\n\s*/g, " ");
    }
    // C.n is the bar's node (the completion's, else the invocation's); the invocation's own is apart
    var invokeNode = invokeNodes.hasOwnProperty(String(i)) ? invokeNodes[String(i)] : -1;
    var lines = [one(C.ii[i], nemesis ? "info" : "invoke", C.s[i], C.vi[i], null, invokeNode)];
    if (C.ci[i] >= 0) {
      lines.push(one(C.ci[i], OUTCOME[C.o[i]], C.e[i], C.vc[i], C.er[i] >= 0 ? T.errors[C.er[i]] : null, C.n[i]));
    } else {
      lines.push("(no completion in the history: the op was still open when it ended)");
    }
    return lines.join("\n");
  }

  function select(i) {
    selected = i;
    if (i < 0) { record.textContent = "Click an op to see its full record."; }
    else {
      record.textContent = summary(i) + "\n\n" + recordText(i);
      record.dataset.historyIndex = String(C.ii[i]);
    }
    redraw();
  }

  function focusBar(i, widthNs) {
    var centre = (C.s[i] + C.e[i]) / 2;
    var half = Math.max(widthNs || 0, (C.e[i] - C.s[i]) * 6, 2e6) / 2;
    view.a = centre - half; view.b = centre + half;
    select(i);
  }

  function focusRange(a, b) {
    var pad = Math.max((b - a) * 0.15, 1e6);
    view.a = a - pad; view.b = b + pad;
    redraw();
  }

  api.focusHistoryIndex = function (h) {
    if (!byHistoryIndex.has(h)) { return false; }
    focusBar(byHistoryIndex.get(h));
    canvas.scrollIntoView({ block: "center" });
    return true;
  };
  api.barCenter = function (h) {
    if (!byHistoryIndex.has(h)) { return null; }
    var i = byHistoryIndex.get(h);
    var rect = canvas.getBoundingClientRect();
    var x0 = Math.max(GUTTER, X(C.s[i])), x1 = Math.min(GUTTER + plotW, X(C.e[i]));
    return { x: rect.left + (x0 + x1) / 2, y: rect.top + laneY(C.lane[i]) + laneH / 2 };
  };
  api.selectedHistoryIndex = function () { return selected >= 0 ? C.ii[selected] : null; };
  api.view = function () { return { a: view.a, b: view.b }; };

  var keySelect = document.getElementById("tl-key");
  if (keySelect) {
    T.keys.slice(0, 2000).forEach(function (key, index) {
      var option = document.createElement("option");
      option.value = String(index);
      option.textContent = typeof key === "string" ? key : JSON.stringify(key);
      keySelect.appendChild(option);
    });
    keySelect.addEventListener("change", function () { keyFilter = Number(keySelect.value); redraw(); });
  }
  api.setKeyFilter = function (index) {
    keyFilter = index;
    if (keySelect) { keySelect.value = String(index); }
    redraw();
  };

  function focusAnomaly() {
    if (!anomalyBars.length) { return; }
    var anomalyKey = C.k[anomalyBars[0]];
    if (anomalyKey >= 0 && anomalyBars.every(function (i) { return C.k[i] === anomalyKey; })) {
      api.setKeyFilter(anomalyKey);
    }
    var a = Infinity, b = -Infinity;
    anomalyBars.forEach(function (i) { a = Math.min(a, C.s[i]); b = Math.max(b, C.e[i]); });
    focusRange(a, b);
  }

  // --- input ---
  var drag = null;
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var rect = canvas.getBoundingClientRect();
    zoom(Math.pow(1.0015, ev.deltaY), ev.clientX - rect.left);
  }, { passive: false });
  canvas.addEventListener("mousedown", function (ev) {
    drag = { x: ev.clientX, a: view.a, b: view.b, moved: false };
  });
  window.addEventListener("mouseup", function () { window.setTimeout(function () { drag = null; }, 0); });
  canvas.addEventListener("mousemove", function (ev) {
    var rect = canvas.getBoundingClientRect();
    var x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    if (drag && ev.buttons === 1) {
      var dx = ev.clientX - drag.x;
      if (Math.abs(dx) > 2) { drag.moved = true; }
      var dt = dx / plotW * (drag.b - drag.a);
      view.a = drag.a - dt; view.b = drag.b - dt;
      tooltip.hidden = true;
      redraw();
      return;
    }
    var i = hit(x, y);
    if (i !== hovered) { hovered = i; redraw(); }
    if (y >= AXIS && y < AXIS + MARKS && x >= GUTTER) {  // the strip of markers and fault labels
      var t = T_at(x), near = (view.b - view.a) / plotW * 4, lines = [];
      (T.faults || []).forEach(function (f) {
        if (f.start <= t && t <= f.end) { lines.push(f.label + (f.healed ? "" : " (never healed)") + ": " + fmtTime(f.start) + " to " + fmtTime(f.end)); }
      });
      (T.markers || []).forEach(function (m) {
        if (Math.abs(m.t - t) <= near) { lines.push(m.label + " at " + fmtTime(m.t)); }
      });
      tooltip.hidden = lines.length === 0;
      tooltip.textContent = lines.slice(0, 12).join("\n");
      tooltip.style.left = Math.min(x + 14, rect.width - 360) + "px";
      tooltip.style.top = (y + 16) + "px";
      return;
    }
    var laneUnder = Math.floor((y - AXIS - MARKS) / laneH);
    if (x < GUTTER && laneUnder >= 0 && laneUnder < lanes.length) {
      var held = T.lane_processes[laneUnder];
      tooltip.textContent = held[0] === "nemesis" ? "the nemesis" :
        "processes in turn (a process retires after an info op): " + held.map(function (p) { return "p" + p; }).join(" → ");
      tooltip.hidden = false;
      tooltip.style.left = (x + 14) + "px";
      tooltip.style.top = (y + 16) + "px";
      return;
    }
    if (i < 0) { tooltip.hidden = true; canvas.style.cursor = "grab"; return; }
    canvas.style.cursor = "pointer";
    tooltip.textContent = summary(i);
    tooltip.hidden = false;
    tooltip.style.left = Math.min(x + 14, rect.width - 360) + "px";
    tooltip.style.top = (y + 16) + "px";
  });
  canvas.addEventListener("mouseleave", function () { tooltip.hidden = true; hovered = -1; redraw(); });
  canvas.addEventListener("click", function (ev) {
    if (drag && drag.moved) { return; }
    var rect = canvas.getBoundingClientRect();
    select(hit(ev.clientX - rect.left, ev.clientY - rect.top));
  });

  function button(id, fn) {
    var b = document.getElementById(id);
    if (b) { b.addEventListener("click", fn); }
  }
  button("tl-zoom-in", function () { zoom(1 / 1.6, GUTTER + plotW / 2); });
  button("tl-zoom-out", function () { zoom(1.6, GUTTER + plotW / 2); });
  button("tl-reset", function () { view.a = full.a; view.b = full.b; redraw(); });
  button("tl-anomaly", focusAnomaly);
  if (!anomalyBars.length) {
    var b = document.getElementById("tl-anomaly");
    if (b) { b.disabled = true; }
  }
  document.querySelectorAll("[data-history-index]").forEach(function (el) {
    if (el === record) { return; }
    el.addEventListener("click", function (ev) {
      ev.preventDefault();
      api.focusHistoryIndex(Number(el.dataset.historyIndex));
    });
  });
  document.querySelectorAll("[data-fault-start]").forEach(function (el) {
    el.addEventListener("click", function (ev) {
      ev.preventDefault();
      focusRange(Number(el.dataset.faultStart), Number(el.dataset.faultEnd));
      canvas.scrollIntoView({ block: "center" });
    });
  });
  canvas.tabIndex = 0;  // keyboard: + and - zoom, arrows pan, 0 shows the whole run, a goes to the anomaly
  canvas.addEventListener("keydown", function (ev) {
    var middle = GUTTER + plotW / 2, step = (view.b - view.a) / 5;
    if (ev.key === "+" || ev.key === "=") { zoom(1 / 1.6, middle); }
    else if (ev.key === "-") { zoom(1.6, middle); }
    else if (ev.key === "ArrowLeft") { view.a -= step; view.b -= step; redraw(); }
    else if (ev.key === "ArrowRight") { view.a += step; view.b += step; redraw(); }
    else if (ev.key === "0") { view.a = full.a; view.b = full.b; redraw(); }
    else if (ev.key === "a") { focusAnomaly(); }
    else { return; }
    ev.preventDefault();
  });
  window.addEventListener("resize", function () { layout(); redraw(); });

  layout();
  draw();
})();
