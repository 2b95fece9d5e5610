/* moesim pages in the browser: the pipeline timeline at two levels of detail, and CSV/JSON downloads.
 *
 * The timeline's data comes from simulator/report/timeline.py (columnar ops sorted by start, in seconds).
 * Only the visible time window is handed to plotly: when it holds at most data.max_bars ops they are drawn
 * as bars with full hover; otherwise as an overview image (a heat map with one cell per row and pixel column,
 * coloured by the style that fills most of the column, hover naming the op that fills most of it). Chunks
 * wide enough carry their micro-batch number. The static report calls moesim.attach(); the Dash app calls
 * the same drawing through dash_clientside.moesim. Dash also loads this file from its assets folder.
 */
(function (global) {
  "use strict";
  var MAX_COLUMNS = 1000;  // overview image columns over the window: one per screen pixel of the plot, at most
  var MIN_LABEL_PX = 16;   // a chunk narrower than this on screen gets no micro-batch number
  var MAX_LABELS = 1500;   // more numbers than this would be unreadable and slow: none are drawn
  var SUB_ROWS = 10;       // overview cells per row, evenly spaced: 8 drawn (the bar's 0.8 of the row), 2 empty
  var CONFIG = {displaylogo: false, responsive: true, showSendToCloud: false, showEditInChartStudio: false,
                modeBarButtonsToRemove: ["sendDataToCloud", "editInChartStudio", "lasso2d", "select2d"]};

  function lowerBound(a, x) {
    var lo = 0, hi = a.length;
    while (lo < hi) { var m = (lo + hi) >> 1; if (a[m] < x) lo = m + 1; else hi = m; }
    return lo;
  }

  function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  function secs(t) { return t.toFixed(6) + " s"; }
  function span(t) {
    if (t >= 1) return t.toFixed(3) + " s";
    if (t >= 1e-3) return (t * 1e3).toFixed(3) + " ms";
    return (t * 1e6).toFixed(1) + " µs";
  }

  /* Indices of the ops that overlap [x0, x1] (ops are sorted by start; none is longer than max_dur_s). */
  function visible(data, x0, x1) {
    var o = data.ops, out = [];
    var last = lowerBound(o.start, x1);
    for (var i = lowerBound(o.start, x0 - data.max_dur_s); i < last; i++) if (o.end[i] > x0) out.push(i);
    return out;
  }

  function describe(data, i) {
    var o = data.ops, style = data.styles[o.style[i]];
    var text = "<b>" + esc(data.labels[o.label[i]]) + "</b> · " + esc(style.name) + "<br>" + esc(data.rows[o.row[i]]);
    if (o.mb[i] >= 0) text += "<br>micro-batch " + o.mb[i] + " · stage " + o.stage[i];
    return text + "<br>start " + secs(o.start[i]) + " · duration " + span(o.end[i] - o.start[i]) +
      " · end " + secs(o.end[i]);
  }

  function presentStyles(data) {
    if (!data._present) {
      var seen = {};
      for (var i = 0; i < data.ops.style.length; i++) seen[data.ops.style[i]] = true;
      data._present = data.styles.map(function (_, k) { return !!seen[k]; });
    }
    return data._present;
  }

  /* One bar trace per style present in the data (empty outside the window, so the legend stays put). */
  function barTraces(data, idx) {
    var o = data.ops, present = presentStyles(data);
    var by = data.styles.map(function () { return {y: [], x: [], base: [], text: []}; });
    idx.forEach(function (i) {
      var b = by[o.style[i]];
      b.y.push(o.row[i]); b.base.push(o.start[i]); b.x.push(o.end[i] - o.start[i]); b.text.push(describe(data, i));
    });
    var traces = [];
    data.styles.forEach(function (s, k) {
      if (!present[k]) return;
      traces.push({type: "bar", orientation: "h", name: s.name, meta: s.key, y: by[k].y, x: by[k].x,
                   base: by[k].base, hovertext: by[k].text, hovertemplate: "%{hovertext}<extra></extra>",
                   width: 0.8, marker: {color: s.colour, line: {width: 0}}, showlegend: false});
    });
    return traces;
  }

  /* The key: one legend-only entry per style present (bars in an empty window would drop out of it). */
  function legendTraces(data) {
    var present = presentStyles(data), traces = [];
    data.styles.forEach(function (s, k) {
      if (!present[k]) return;
      traces.push({type: "scatter", mode: "markers", name: s.name, x: [null], y: [null], hoverinfo: "skip",
                   marker: {symbol: "square", size: 12, color: s.colour}, showlegend: true});
    });
    return traces;
  }

  function overviewTrace(data, idx, x0, x1, plotPx) {
    var COLUMNS = Math.max(200, Math.min(MAX_COLUMNS, Math.round(plotPx)));
    var o = data.ops, rows = data.rows.length, n = data.styles.length, dx = (x1 - x0) / COLUMNS;
    var acc = new Float64Array(rows * COLUMNS * n), best = new Int32Array(rows * COLUMNS).fill(-1);
    var bestLen = new Float64Array(rows * COLUMNS);
    for (var j = 0; j < idx.length; j++) {
      var i = idx[j], s = Math.max(o.start[i], x0), e = Math.min(o.end[i], x1), r = o.row[i];
      var b1 = Math.min(COLUMNS - 1, Math.floor((e - x0) / dx));
      for (var b = Math.max(0, Math.floor((s - x0) / dx)); b <= b1; b++) {
        var len = Math.min(e, x0 + (b + 1) * dx) - Math.max(s, x0 + b * dx);
        if (len <= 0) continue;
        var cell = r * COLUMNS + b;
        acc[cell * n + o.style[i]] += len;
        if (len > bestLen[cell]) { bestLen[cell] = len; best[cell] = i; }
      }
    }
    // Row r is drawn in the band r - 0.4 .. r + 0.4, as the bars: ten sub-rows of 0.1 per row, the first and
    // last empty. Evenly spaced cells without gaps let plotly paint one pixel per cell and scale the image (its
    // "fast" heat map), instead of a rectangle per cell. Filled sub-rows share one array.
    var z = [], text = [], blank = new Array(COLUMNS).fill(null), cache = new Map();
    var tail = data.styles.map(function (st) {  // the end of a cell's hover, per style (32,000 cells share them)
      return "% of this pixel column (" + span(dx) + "): " + esc(st.name) + "</i>";
    });
    for (var r = 0; r < rows; r++) {
      var zr = new Array(COLUMNS), tr = new Array(COLUMNS);
      for (var b = 0; b < COLUMNS; b++) {
        var cell = r * COLUMNS + b, top = -1, topLen = 0;
        for (var k = 0; k < n; k++) {
          var v = acc[cell * n + k];
          if (v > topLen) { topLen = v; top = k; }
        }
        zr[b] = top < 0 ? null : top;
        if (top < 0) { tr[b] = ""; continue; }
        var what = cache.get(best[cell]);
        if (what === undefined) cache.set(best[cell], what = describe(data, best[cell]) + "<br><i>");
        tr[b] = what + Math.round(100 * topLen / dx) + tail[top];
      }
      for (var sub = 0; sub < SUB_ROWS; sub++) {
        var filled = sub > 0 && sub < SUB_ROWS - 1;
        z.push(filled ? zr : blank); text.push(filled ? tr : blank);
      }
    }
    var scale = [];
    data.styles.forEach(function (s, k) { scale.push([k / n, s.colour], [(k + 1) / n, s.colour]); });
    return {type: "heatmap", name: "overview", z: z, text: text, x0: x0 + dx / 2, dx: dx,
            y0: -0.5 + 0.5 / SUB_ROWS, dy: 1 / SUB_ROWS,
            zmin: -0.5, zmax: n - 0.5, colorscale: scale, showscale: false, hoverongaps: false,
            hovertemplate: "%{text}<extra></extra>", showlegend: false};
  }

  /* Micro-batch numbers on the compute-row chunks wide enough on screen, none closer than a label's width to the
     previous one in its half-row (chunks come sorted by row, then middle). */
  function labelTrace(data, x0, x1, widthPx) {
    var c = data.chunks, xs = [], ys = [], ts = [], minWidth = MIN_LABEL_PX * (x1 - x0) / widthPx, last = {};
    for (var i = 0; i < c.mid.length; i++) {
      var a = Math.max(c.start[i], x0), b = Math.min(c.end[i], x1);
      if (b - a < minWidth) continue;
      var x = (a + b) / 2, lane = c.row[i] * 2 + (c.upper[i] ? 0 : 1);
      if (last[lane] !== undefined && x - last[lane] < minWidth) continue;
      last[lane] = x;
      xs.push(x); ys.push(c.row[i] + (c.upper[i] ? -0.2 : 0.2)); ts.push(String(c.mb[i]));
      if (xs.length > MAX_LABELS) return null;
    }
    return {type: "scatter", mode: "text", name: "micro-batch", x: xs, y: ys, text: ts, hoverinfo: "skip",
            showlegend: false, textfont: {size: 10, color: "#ffffff"}, cliponaxis: true};
  }

  /* {data, layout, mode, drawn} for the window [x0, x1] seconds; widthPx is the plot's width on screen. */
  function timelineFigure(data, range, widthPx) {
    var full = fullSpan(data), x0 = range ? range[0] : 0, x1 = range ? range[1] : full;
    if (!(x1 > x0)) { x0 = 0; x1 = full || 1; }
    var idx = visible(data, x0, x1), overview = idx.length > data.max_bars;
    var plotPx = Math.max(300, (widthPx || 1200) - 420);  // less the row names and the legend
    var traces = overview ? [overviewTrace(data, idx, x0, x1, plotPx)] : barTraces(data, idx);
    var labels = labelTrace(data, x0, x1, plotPx);
    if (labels) traces.push(labels);
    traces = traces.concat(legendTraces(data));
    var rows = data.rows.length;
    var mode = overview ? "overview" : "ops";
    var note = overview ? "overview: each pixel column shows what fills most of it; zoom in (drag) for single ops"
      : idx.length + " ops in view; double-click to zoom out";
    return {mode: mode, drawn: overview ? 0 : idx.length, data: traces, layout: {
      title: {text: esc(data.title) + "<br><span style='font-size:12px;color:#666'>" + note + "</span>",
              x: 0, xanchor: "left", font: {size: 15}},
      xaxis: {range: [x0, x1], title: {text: "time since the step started (s)"}, showgrid: true,
              gridcolor: "#e8e8e8", zeroline: false, showline: true, linecolor: "#999"},
      yaxis: {tickvals: data.rows.map(function (_, i) { return i; }), ticktext: data.rows,
              range: [rows - 0.5, -0.5], fixedrange: true, title: {text: "rank · stream"}, showgrid: false,
              zeroline: false},
      barmode: "overlay", bargap: 0, hovermode: "closest", dragmode: "zoom", plot_bgcolor: "#ffffff",
      paper_bgcolor: "#ffffff", height: Math.max(380, 150 + 26 * rows),
      legend: {itemclick: false, itemdoubleclick: false, font: {size: 11}},
      margin: {l: 60 + 7 * longest(data.rows), r: 10, t: 70, b: 60}, meta: {mode: mode}}};
  }

  function fullSpan(data) { return data.span_s || data.makespan_s; }

  function longest(names) { return names.reduce(function (m, s) { return Math.max(m, s.length); }, 0); }

  function rangeFrom(ev, current, makespan) {
    if (!ev) return current;
    if (ev["xaxis.autorange"]) return [0, makespan];
    if (ev["xaxis.range[0]"] !== undefined) return [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
    if (ev["xaxis.range"]) return ev["xaxis.range"].slice();
    return current;
  }

  /* The static page carries the ops and chunks columns as base64 little-endian typed arrays (page.py's
     typed_column; typed arrays are little-endian on every machine browsers run on); the dashboard sends plain
     lists. Either way the drawing indexes them the same. */
  var TYPED = {Int8Array: Int8Array, Int16Array: Int16Array, Int32Array: Int32Array, Float64Array: Float64Array};

  function unpack(data) {
    ["ops", "chunks"].forEach(function (table) {
      Object.keys(data[table] || {}).forEach(function (name) {
        var col = data[table][name];
        if (!col || typeof col.base64 !== "string" || !TYPED[col.array]) return;
        var bin = atob(col.base64), bytes = new Uint8Array(bin.length);
        for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        data[table][name] = new TYPED[col.array](bytes.buffer);
      });
    });
    return data;
  }

  /* Draw the timeline in the element (or id) div and redraw the window on every zoom or pan. ``data`` is the
     timeline data, or the id of a <script type="application/json"> element holding it (JSON.parse is much
     faster than a script literal of the same size). */
  function attach(div, data) {
    var gd = typeof div === "string" ? document.getElementById(div) : div;
    timelinesPending += 1;
    data = unpack(typeof data === "string" ? JSON.parse(document.getElementById(data).textContent) : data);
    gd.moesimData = data;
    var range = [0, fullSpan(data)];
    gd.moesimRenders = 0;
    function draw(first) {
      var t0 = performance.now(), fig = timelineFigure(data, range, gd.clientWidth);
      gd.moesimFigureMs = performance.now() - t0;
      var done = (first ? Plotly.newPlot : Plotly.react)(gd, fig.data, fig.layout, CONFIG);
      return done.then(function () {
        gd.moesimMode = fig.mode; gd.moesimDrawn = fig.drawn; gd.moesimRenders += 1;
        gd.moesimLastRenderMs = performance.now() - t0;
      });
    }
    return draw(true).catch(function (err) {
      timelinesPending -= 1;  // the other charts still get drawn
      drainSoon();
      throw err;
    }).then(function () {
      // When it was drawn, and when the frame showing it was painted (a task queued from the frame's
      // requestAnimationFrame runs after that paint): what the benchmark reports as opened.
      gd.moesimDrawnAt = performance.now();
      requestAnimationFrame(function () { setTimeout(function () { gd.moesimShownAt = performance.now(); }, 0); });
      timelinesPending -= 1;
      drainSoon();
      gd.on("plotly_relayout", function (ev) {
        var next = rangeFrom(ev, range, fullSpan(data));
        if (next[0] === range[0] && next[1] === range[1] && !ev["xaxis.autorange"]) return;
        range = next;
        draw(false);
        if (data.link && !linking) {  // timelines compared side by side share their time axis
          linking = true;
          document.querySelectorAll(".timeline").forEach(function (other) {
            if (other !== gd && other.moesimData && other.moesimData.link === data.link) {
              Plotly.relayout(other, {"xaxis.range": next.slice()});
            }
          });
          linking = false;
        }
      });
    });
  }

  var linking = false;

  /* The other charts are drawn after the timelines are on screen, one per task when the browser is idle (those
     near the visible part of the page first), so the first screen shows quickly and a zoom never waits for more
     than one chart. */
  var timelinesPending = 0, queue = [], draining = false, near = {}, observer = null, chartsLeft = 0;
  var idle = global.requestIdleCallback ? function (fn) { global.requestIdleCallback(fn, {timeout: 300}); }
    : function (fn) { setTimeout(fn, 0); };

  function nextChart() {
    for (var i = 0; i < queue.length; i++) if (near[queue[i]]) return queue.splice(i, 1)[0];
    return queue.shift();
  }

  function drainSoon() {
    if (draining || timelinesPending > 0 || !queue.length) return;
    draining = true;
    idle(function () {
      var id = nextChart(), gd = document.getElementById(id);
      var fig = JSON.parse(document.getElementById(id + "-figure").textContent);
      function finish() {
        if (observer) observer.unobserve(gd);
        chartsLeft -= 1;
        if (!chartsLeft) api.chartsDrawnAt = performance.now();
        draining = false;
        drainSoon();
      }
      Plotly.newPlot(gd, fig.data, fig.layout, CONFIG).then(finish, function (err) { finish(); throw err; });
    });
  }

  /* Draw the figure whose JSON is in the element ``id + "-figure"`` once the timelines are on screen. */
  function later(id) {
    queue.push(id);
    chartsLeft += 1;
    if (global.IntersectionObserver) {
      observer = observer || new IntersectionObserver(function (entries) {
        entries.forEach(function (e) { near[e.target.id] = e.isIntersecting; });
      }, {rootMargin: "50% 0px"});
      observer.observe(document.getElementById(id));
    }
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drainSoon);
    else drainSoon();
  }

  /* ---- chart data as a table, for CSV and JSON downloads ---- */
  function plain(v) { return typeof v === "string" ? v.replace(/<br>/g, "; ").replace(/<[^>]+>/g, "") : v; }

  function tableOfTimeline(data) {
    if (data.moesimData) data = data.moesimData;
    var o = data.ops, rows = [];
    for (var i = 0; i < o.start.length; i++) {
      rows.push({row: data.rows[o.row[i]], kind: data.styles[o.style[i]].name, op: data.labels[o.label[i]],
                 micro_batch: o.mb[i], stage: o.stage[i], start_s: o.start[i], end_s: o.end[i],
                 duration_s: o.end[i] - o.start[i]});
    }
    return rows;
  }

  /* One row per point of every trace: the trace's name and its per-point arrays (z of a heat map by cell). */
  function tableOfFigure(fig) {
    var rows = [];
    (fig.data || []).forEach(function (t) {
      var name = t.name || t.type;
      if (t.type === "heatmap" && t.z) {
        t.z.forEach(function (zr, r) {
          zr.forEach(function (z, c) {
            rows.push({trace: name, y: t.y ? t.y[r] : r, x: t.x ? t.x[c] : (t.x0 || 0) + c * (t.dx || 1), z: z,
                       detail: t.customdata ? plain(t.customdata[r][c]) : ""});
          });
        });
        return;
      }
      if (t.dimensions) {
        var n = t.dimensions[0] ? t.dimensions[0].values.length : 0;
        for (var i = 0; i < n; i++) {
          var row = {trace: name};
          t.dimensions.forEach(function (d) { row[d.label] = d.values[i]; });
          rows.push(row);
        }
        return;
      }
      var len = (t.x || t.y || []).length;
      for (var j = 0; j < len; j++) {
        var p = {trace: name};
        ["x", "y", "base", "text", "hovertext", "customdata"].forEach(function (k) {
          if (Array.isArray(t[k]) && t[k].length === len) p[k] = plain(t[k][j]);
        });
        rows.push(p);
      }
    });
    return rows;
  }

  function csv(rows) {
    var cols = [];
    rows.forEach(function (r) { Object.keys(r).forEach(function (k) { if (cols.indexOf(k) < 0) cols.push(k); }); });
    var cell = function (v) {
      if (v === undefined || v === null) return "";
      var s = typeof v === "object" ? JSON.stringify(v) : String(v);
      return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
    };
    return [cols.join(",")].concat(rows.map(function (r) { return cols.map(function (k) { return cell(r[k]); }).join(","); }))
      .join("\n") + "\n";
  }

  function save(text, filename, type) {
    var a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([text], {type: type}));
    a.download = filename;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(a.href); }, 1000);
  }

  function download(rows, name, format) {
    if (format === "csv") save(csv(rows), name + ".csv", "text/csv");
    else save(JSON.stringify(rows, null, 1), name + ".json", "application/json");
  }

  var api = {attach: attach, later: later, chartsLeft: function () { return chartsLeft; },
             timelineFigure: timelineFigure, visible: visible, rangeFrom: rangeFrom,
             tableOfTimeline: tableOfTimeline, tableOfFigure: tableOfFigure, csv: csv, download: download,
             config: CONFIG};
  global.moesim = api;

  /* Dash: the timeline figure from its data and the last zoom; downloads from a figure or timeline data. */
  global.dash_clientside = Object.assign({}, global.dash_clientside, {moesim: {
    timeline: function (data, relayout, current) {
      if (!data) return {data: [], layout: {}};
      var range = [0, fullSpan(data)];
      var ctx = global.dash_clientside.callback_context;
      var fromData = ctx && ctx.triggered && ctx.triggered.some(function (t) { return t.prop_id.indexOf("data") >= 0 && t.prop_id.indexOf("relayout") < 0; });
      if (!fromData) {
        var held = current && current.layout && current.layout.xaxis && current.layout.xaxis.range;
        range = rangeFrom(relayout, held || range, fullSpan(data));
      }
      var fig = timelineFigure(data, range, 1100);
      return {data: fig.data, layout: fig.layout};
    },
    downloadFigure: function (csvClicks, jsonClicks, figure, name) {
      var ctx = global.dash_clientside.callback_context, id = ctx.triggered.length ? ctx.triggered[0].prop_id : "";
      if (figure && id) download(tableOfFigure(figure), name, id.indexOf("csv") >= 0 ? "csv" : "json");
      return global.dash_clientside.no_update;
    },
    downloadTimeline: function (csvClicks, jsonClicks, data, name) {
      var ctx = global.dash_clientside.callback_context, id = ctx.triggered.length ? ctx.triggered[0].prop_id : "";
      if (data && id) download(tableOfTimeline(data), name, id.indexOf("csv") >= 0 ? "csv" : "json");
      return global.dash_clientside.no_update;
    }
  }});
})(window);
