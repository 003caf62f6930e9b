// The admin dashboard served on "/": one self-contained page (inline CSS and
// JS, no external resources, plain canvas 2D) that polls /stats every second
// and keeps the last 5 minutes in memory. It draws, per worker: client
// connections (active / idle, stacked), upstream connections per server
// (active / idle, stacked, with the workers x max_idle bound as a dashed
// line), requests/s, accepts/s, new upstream connections/s and the reuse
// ratio of each interval; below, a table of the workers (pid, generation,
// state: draining ones highlighted) and their servers. When /stats fails it
// says so, leaves a gap in the charts and keeps polling.
//
// For tests and scripts the page reports what it did on <body> (data-state
// loading|ok|error, data-polls, data-errors, data-requests, data-rps,
// data-workers, data-draining, data-points = vertices plotted in the last
// draw, data-ink = non-blank canvas pixels in the last draw) and on each
// canvas (data-points, data-ink).
//
// The version is inserted (HTML-escaped) between the two halves.
//
// The page is served with a Content-Security-Policy that names its one
// <style> and its one <script> by their SHA-256 (computed from this text at
// start-up, see dashboardContentSecurityPolicy()) and lets it fetch only from
// its own origin. So: no inline style="..." or on...= attributes, no second
// <script> or <style> element, no eval; set styles through the CSSOM
// (element.style) instead.
#pragma once

namespace poolgate {

inline constexpr char kDashboardHead[] = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>poolgate )HTML";

inline constexpr char kDashboardBody[] = R"HTML(</title>
<style>
*{box-sizing:border-box}
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:12px 16px;color:#1d1d1f;background:#f4f5f7}
h1{font-size:17px;margin:0;display:inline-block}
#hdr{display:inline-block;margin-left:10px;color:#555}
#err{display:none;margin:6px 0;padding:5px 9px;border-radius:4px;background:#fde7ea;color:#9b0018;font-weight:600}
body[data-state=error] #err{display:block}
body[data-state=error] #charts{opacity:.6}
#tot{margin:6px 0 2px;color:#333}
#tot b{font-weight:600}
#tot span{margin-right:14px;white-space:nowrap}
#charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(370px,1fr));gap:8px;margin-top:6px}
.card{background:#fff;border:1px solid #dfe1e5;border-radius:4px;padding:5px 8px 4px}
.card h2{font-size:12px;font-weight:600;margin:0;display:flex;justify-content:space-between;gap:8px}
.card h2 b{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;min-width:0}
.card h2 span{font-weight:400;color:#666;white-space:nowrap;flex-shrink:0}
canvas{display:block;width:100%;height:130px}
table{border-collapse:collapse;margin-top:8px;background:#fff;font-size:12px}
th,td{border:1px solid #e3e4e8;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#eceef1;font-weight:600}
.l{text-align:left}
tr.w td{font-weight:600}
tr.srv td{font-weight:400;color:#555}
tr.draining td{background:#fff3dc;color:#7a4f00}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;vertical-align:-1px}
.badge{display:inline-block;padding:0 5px;border-radius:3px;background:#d98e04;color:#fff;font-size:11px;font-weight:600}
.down{color:#b00020;font-weight:600}
.note{color:#777;font-size:11px;margin-top:4px}
</style>
</head>
<body data-state="loading" data-polls="0" data-errors="0" data-points="0" data-ink="0">
<div><h1>poolgate <span id="ver"></span></h1><span id="hdr">loading&hellip;</span></div>
<div id="err"></div>
<div id="tot"></div>
<div id="charts">
<div class="card" data-chart="clients"><h2><b>client connections</b><span></span></h2><canvas></canvas></div>
<div class="card" data-chart="rps"><h2><b>requests/s</b><span></span></h2><canvas></canvas></div>
<div class="card" data-chart="reuse"><h2><b>upstream reuse % (per interval)</b><span></span></h2><canvas></canvas></div>
<div class="card" data-chart="aps"><h2><b>accepts/s</b><span></span></h2><canvas></canvas></div>
<div class="card" data-chart="ops"><h2><b>new upstream connections/s</b><span></span></h2><canvas></canvas></div>
</div>
<table>
<thead><tr><th></th><th>slot</th><th>pid</th><th>gen</th><th class="l">state</th><th>up</th><th>accepted</th><th>acc/s</th>
<th>requests</th><th>req/s</th><th>cl active</th><th>cl idle</th><th>sv active</th><th>sv idle</th><th>sv open</th>
<th>opened</th><th>reused</th><th>failed</th><th>reuse %</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<div class="note">Charts: last 5 minutes, one poll of /stats per second. Stacked areas: dark = active, light = idle,
one colour per worker; dashed red = bound on pooled upstream connections (workers &times; max_idle).
Rates and reuse % are per poll interval.</div>
<script>
(function () {
  "use strict";
  var WINDOW_MS = 5 * 60 * 1000, POLL_MS = 1000, TIMEOUT_MS = 5000;
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                 "#7f7f7f", "#d62728"];
  var hist = [];          // samples, oldest first: {t, ok, ...}
  var colorOf = {};       // pid -> colour, kept while the pid is in the window
  var nextColor = 0, polls = 0, errors = 0, lastOk = 0, lastGood = null;
  var body = document.body;

  function $(id) { return document.getElementById(id); }
  function num(v) { return typeof v === "number" && isFinite(v) ? v : 0; }
  function esc(s) {
    return String(s === undefined || s === null ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c];
    });
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "-";
    return Math.abs(v) >= 100 || digits === 0 ? String(Math.round(v)) : v.toFixed(digits === undefined ? 1 : digits);
  }
  function pct(reused, opened) {
    var t = num(reused) + num(opened);
    return t ? (100 * num(reused) / t).toFixed(1) : "-";
  }
  function dur(s) {
    s = Math.floor(num(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? d + "d" + h + "h" : h ? h + "h" + m + "m" : m ? m + "m" + s % 60 + "s" : s + "s";
  }
  function color(pid) {
    if (!colorOf[pid]) colorOf[pid] = PALETTE[nextColor++ % PALETTE.length];
    return colorOf[pid];
  }
  function light(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + (n >> 8 & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  // ------------------------------------------------------------ samples

  // One successful poll, reduced to what the charts need, with rates against
  // the previous successful poll of the same pid.
  function sample(st, t) {
    var s = {t: t, ok: true, w: {}, order: [], servers: [], sbound: {}, bound: 0, rps: 0, aps: 0, ops: 0};
    var prev = lastGood, seen = {};
    (st.workers || []).forEach(function (w) {
      var pid = String(w.pid), c = w.clients || {}, u = w.upstream || {};
      var x = {pid: pid, slot: w.slot, gen: w.generation, state: w.state, ca: num(c.active), ci: num(c.idle),
               acc: num(w.accepted), req: num(w.requests), opened: num(u.opened_total),
               reused: num(u.reused_total), sv: {}, rps: null, aps: null, ops: null, reuse: null};
      (w.upstreams || []).forEach(function (g) {
        (g.servers || []).forEach(function (v) {
          var key = g.name + " \u2192 " + v.address;
          if (!seen[key]) { seen[key] = true; s.servers.push(key); }
          x.sv[key] = {a: num(v.active), i: num(v.idle)};
          s.sbound[key] = (s.sbound[key] || 0) + num(g.max_idle);
        });
      });
      var p = prev && prev.w[pid], dt = prev ? (t - prev.t) / 1000 : 0;
      if (p && dt > 0) {
        x.rps = Math.max(0, x.req - p.req) / dt;
        x.aps = Math.max(0, x.acc - p.acc) / dt;
        var dr = Math.max(0, x.reused - p.reused), dop = Math.max(0, x.opened - p.opened);
        x.reuse = dr + dop ? 100 * dr / (dr + dop) : null;
        x.ops = dop / dt;
        s.rps += x.rps;
        s.aps += x.aps;
        s.ops += x.ops;
      }
      color(pid);
      s.w[pid] = x;
      s.order.push(pid);
    });
    var t0 = st.totals || {};
    s.bound = typeof t0.upstream_bound === "number" ? t0.upstream_bound :
        Object.keys(s.sbound).reduce(function (a, k) { return a + s.sbound[k]; }, 0);
    s.hasRates = !!prev;
    return s;
  }

  // ------------------------------------------------------------ charts

  var charts = {};  // id -> {card, canvas, note, used, fixed}

  // The fixed charts are in the page; one chart per upstream server is added (before
  // requests/s) when the server first shows up, and removed when it leaves the window.
  var FIXED = {clients: 1, rps: 1, reuse: 1, aps: 1, ops: 1};
  function chart(id, title) {
    if (charts[id]) return charts[id];
    var card;
    if (FIXED[id]) {
      card = document.querySelector(".card[data-chart=" + id + "]");
    } else {
      var h = document.createElement("h2"), name = document.createElement("b");
      card = document.createElement("div");
      card.className = "card";
      card.setAttribute("data-chart", id);
      name.textContent = title;
      h.appendChild(name);
      h.appendChild(document.createElement("span"));
      card.appendChild(h);
      card.appendChild(document.createElement("canvas"));
      $("charts").insertBefore(card, document.querySelector(".card[data-chart=rps]"));
    }
    charts[id] = {card: card, canvas: card.querySelector("canvas"), note: card.querySelector("h2 span"),
                  used: true, fixed: !!FIXED[id]};
    return charts[id];
  }

  // A y scale for values up to v: about 4 gridlines at a round step.
  function scale(v, integer) {
    v = v > 0 ? v : integer ? 4 : 1;
    var raw = v / 4, e = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10)), n = raw / e;
    var step = (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * e;
    if (integer) step = Math.max(1, Math.round(step));
    return {max: step * Math.ceil(v / step - 1e-9), step: step};
  }

  // Prepares a canvas at the device pixel ratio; returns the drawing frame.
  function frame(c, sc, yfmt) {
    var cv = c.canvas, dpr = window.devicePixelRatio || 1;
    var W = Math.max(200, cv.clientWidth || 370), H = Math.max(80, cv.clientHeight || 130);
    if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
      cv.width = Math.round(W * dpr);
      cv.height = Math.round(H * dpr);
    }
    var g = cv.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    var ymax = sc.max;
    var f = {g: g, W: W, H: H, L: 40, R: 6, T: 6, B: 16, now: Date.now(), ymax: ymax, points: 0};
    f.x = function (t) { return f.L + (f.W - f.L - f.R) * (1 - (f.now - t) / WINDOW_MS); };
    f.y = function (v) { return f.T + (f.H - f.T - f.B) * (1 - v / f.ymax); };
    g.font = "10px system-ui,sans-serif";
    g.lineWidth = 1;
    g.strokeStyle = "#ececef";
    g.fillStyle = "#888";
    for (var k = 0, n = Math.round(ymax / sc.step); k <= n; k++) {
      var v = sc.step * k, y = Math.round(f.y(v)) + 0.5;
      g.beginPath(); g.moveTo(f.L, y); g.lineTo(W - f.R, y); g.stroke();
      var label = yfmt ? yfmt(v) : v >= 1000 && v % 1000 === 0 ? v / 1000 + "k" :
          String(Math.round(v * 100) / 100);
      g.fillText(label, f.L - 4 - g.measureText(label).width, y + 3);
    }
    for (var m = 0; m <= 5; m++) {
      var x = Math.round(f.L + (W - f.L - f.R) * m / 5) + 0.5;
      g.beginPath(); g.moveTo(x, f.T); g.lineTo(x, H - f.B); g.stroke();
      var tl = m === 5 ? "now" : "\u2212" + (5 - m) + "m";
      g.fillText(tl, Math.min(W - f.R - g.measureText(tl).width, Math.max(f.L, x - g.measureText(tl).width / 2)),
                 H - 4);
    }
    return f;
  }

  // Consecutive successful samples, as runs (a failed poll breaks a run).
  function runs() {
    var out = [], cur = [];
    hist.forEach(function (p) {
      if (p.ok) { cur.push(p); } else if (cur.length) { out.push(cur); cur = []; }
    });
    if (cur.length) out.push(cur);
    return out;
  }

  // Every pid in the window, in order of first appearance (stable stacking).
  function pids() {
    var out = [], seen = {};
    hist.forEach(function (p) {
      if (p.ok) p.order.forEach(function (pid) { if (!seen[pid]) { seen[pid] = true; out.push(pid); } });
    });
    return out;
  }

  // Stacked areas: layersOf(p) returns, for a sample, [{key, rank, v, fill}] (rank: the
  // stacking order, bottom first). extra: {max, line(p)} for the bound.
  function stacked(c, list, layersOf, extra) {
    var rs = runs(), max = extra && extra.max || 0;
    rs.forEach(function (run) {
      run.forEach(function (p) {
        var sum = 0;
        layersOf(p).forEach(function (l) { sum += l.v; });
        max = Math.max(max, sum);
      });
    });
    var f = frame(c, scale(max * 1.05, true)), g = f.g;
    rs.forEach(function (run) {
      // The set of layers can change inside a run (a worker starts or exits): use all
      // of them, a missing one counting 0.
      var base = run.map(function () { return 0; }), all = [], seen = {};
      var vals = run.map(function (p) {
        var m = {};
        layersOf(p).forEach(function (l) {
          m[l.key] = l.v;
          if (!seen[l.key]) { seen[l.key] = true; all.push(l); }
        });
        return m;
      });
      all.sort(function (a, b) { return a.rank - b.rank; });
      all.forEach(function (layer) {
        var top = run.map(function (p, i) { return base[i] + (vals[i][layer.key] || 0); });
        g.beginPath();
        run.forEach(function (p, i) { var x = f.x(p.t), y = f.y(top[i]); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
        for (var i = run.length - 1; i >= 0; i--) g.lineTo(f.x(run[i].t), f.y(base[i]));
        g.closePath();
        g.fillStyle = layer.fill;
        g.fill();
        f.points += run.length;
        base = top;
      });
    });
    // The bound (a configuration figure: max_idle x servers x workers) as a dashed red
    // line: held at its first value back to the left edge, then following each poll
    // (it steps on a reload), with its current value written above it.
    var ok = hist.filter(function (p) { return p.ok; });
    if (extra && extra.line && ok.length) {
      g.save();
      g.strokeStyle = g.fillStyle = "#c0182a";
      g.lineWidth = 1.5;
      g.setLineDash([5, 3]);
      g.beginPath();
      g.moveTo(f.L, f.y(extra.line(ok[0])));
      ok.forEach(function (p) { g.lineTo(f.x(p.t), f.y(extra.line(p))); });
      g.stroke();
      g.restore();
      g.fillStyle = "#c0182a";
      g.fillText("bound " + extra.line(ok[ok.length - 1]), f.L + 4, Math.max(f.T + 9, f.y(extra.line(ok[ok.length - 1])) - 3));
      f.points += ok.length;
    }
    return f;
  }

  // One line per worker: valueOf(p, pid) is a number or null (gap).
  function lines(c, list, valueOf, fixedMax, yfmt) {
    var rs = runs(), max = 0;
    rs.forEach(function (run) {
      run.forEach(function (p) {
        list.forEach(function (pid) { var v = p.w[pid] ? valueOf(p.w[pid]) : null; if (v !== null) max = Math.max(max, v); });
      });
    });
    var f = frame(c, fixedMax ? {max: fixedMax, step: fixedMax / 4} : scale(max * 1.05, false), yfmt), g = f.g;
    list.forEach(function (pid) {
      g.strokeStyle = color(pid);
      g.lineWidth = 1.6;
      rs.forEach(function (run) {
        var pen = false, n = 0, lx = 0, ly = 0;
        g.beginPath();
        run.forEach(function (p) {
          var v = p.w[pid] ? valueOf(p.w[pid]) : null;
          if (v === null) { pen = false; return; }
          var x = f.x(p.t), y = f.y(v);
          if (pen) g.lineTo(x, y); else g.moveTo(x, y);
          pen = true; n++; lx = x; ly = y;
        });
        g.stroke();
        if (n === 1) { g.fillStyle = color(pid); g.fillRect(lx - 1.5, ly - 1.5, 3, 3); }
        f.points += n;
      });
    });
    return f;
  }

  function ink(cv) {
    try {
      var d = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data, n = 0;
      for (var i = 3; i < d.length; i += 4) if (d[i]) n++;
      return n;
    } catch (e) {
      return 0;
    }
  }

  function draw() {
    var list = pids(), last = lastGood, servers = [], seen = {};
    hist.forEach(function (p) {
      if (p.ok) p.servers.forEach(function (k) { if (!seen[k]) { seen[k] = true; servers.push(k); } });
    });
    var rank = {};
    list.forEach(function (pid, i) { rank[pid] = i; });
    Object.keys(charts).forEach(function (id) { charts[id].used = false; });
    var out = [];

    var cc = chart("clients", "client connections");
    cc.used = true;
    cc.note.textContent = last ? "active " + sumW(last, "ca") + " \u00b7 idle " + sumW(last, "ci") : "";
    out.push([cc, stacked(cc, list, function (p) {
      var ls = [];
      p.order.forEach(function (pid) {
        var w = p.w[pid];
        ls.push({key: pid + "a", rank: 2 * rank[pid], v: w.ca, fill: color(pid)});
        ls.push({key: pid + "i", rank: 2 * rank[pid] + 1, v: w.ci, fill: light(color(pid), 0.35)});
      });
      return ls;
    })]);

    var many = servers.length > 1;
    if (many) {
      var ca = chart("upstream:*", "upstream, all servers");
      ca.used = true;
      ca.note.textContent = last ? noteUp(last, null) + " \u00b7 bound " + last.bound : "";
      out.push([ca, stacked(ca, list, function (p) { return upLayers(p, null, rank); },
                            {max: maxOf(function (p) { return p.bound; }), line: function (p) { return p.bound; }})]);
    }
    servers.forEach(function (key) {
      var c = chart("upstream:" + key, "upstream " + key);
      c.used = true;
      var bound = many ? function (p) { return p.sbound[key] || 0; } : function (p) { return p.bound; };
      c.note.textContent = last ? noteUp(last, key) + " \u00b7 bound " + bound(last) : "";
      out.push([c, stacked(c, list, function (p) { return upLayers(p, key, rank); },
                           {max: maxOf(bound), line: bound})]);
    });

    var cr = chart("rps", "requests/s");
    cr.used = true;
    cr.note.textContent = last && last.hasRates ? "total " + fmt(last.rps) : "";
    out.push([cr, lines(cr, list, function (w) { return w.rps; })]);

    var cu = chart("reuse", "upstream reuse % (per interval)");
    cu.used = true;
    cu.note.textContent = last ? "since start " + reuseTotal(last) : "";
    out.push([cu, lines(cu, list, function (w) { return w.reuse; }, 100, function (v) { return Math.round(v) + "%"; })]);

    var cs = chart("aps", "accepts/s");
    cs.used = true;
    cs.note.textContent = last && last.hasRates ? "total " + fmt(last.aps) : "";
    out.push([cs, lines(cs, list, function (w) { return w.aps; })]);

    var co = chart("ops", "new upstream connections/s");
    co.used = true;
    co.note.textContent = last && last.hasRates ? "total " + fmt(last.ops) : "";
    out.push([co, lines(co, list, function (w) { return w.ops; })]);

    Object.keys(charts).forEach(function (id) {
      if (!charts[id].used && !charts[id].fixed) {
        charts[id].card.parentNode.removeChild(charts[id].card);
        delete charts[id];
      }
    });
    var points = 0, inked = 0;
    out.forEach(function (o) {
      var n = ink(o[0].canvas);
      o[0].canvas.setAttribute("data-points", o[1].points);
      o[0].canvas.setAttribute("data-ink", n);
      points += o[1].points;
      inked += n;
    });
    body.setAttribute("data-points", points);
    body.setAttribute("data-ink", inked);
  }

  function sumW(p, f) { return p.order.reduce(function (a, pid) { return a + p.w[pid][f]; }, 0); }
  function maxOf(get) {
    var m = 0;
    hist.forEach(function (p) { if (p.ok) m = Math.max(m, num(get(p))); });
    return m;
  }
  function upLayers(p, key, rank) {
    var ls = [];
    p.order.forEach(function (pid) {
      var a = 0, i = 0, sv = p.w[pid].sv;
      Object.keys(sv).forEach(function (k) { if (key === null || k === key) { a += sv[k].a; i += sv[k].i; } });
      ls.push({key: pid + "a", rank: 2 * rank[pid], v: a, fill: color(pid)});
      ls.push({key: pid + "i", rank: 2 * rank[pid] + 1, v: i, fill: light(color(pid), 0.35)});
    });
    return ls;
  }
  function noteUp(p, key) {
    var a = 0, i = 0;
    p.order.forEach(function (pid) {
      var sv = p.w[pid].sv;
      Object.keys(sv).forEach(function (k) { if (key === null || k === key) { a += sv[k].a; i += sv[k].i; } });
    });
    return "active " + a + " \u00b7 idle " + i;
  }
  function reuseTotal(p) {
    var r = 0, o = 0;
    p.order.forEach(function (pid) { r += p.w[pid].reused; o += p.w[pid].opened; });
    return r + o ? pct(r, o) + "%" : "-";
  }

  // ------------------------------------------------------------ text

  function render(st, s) {
    var t = st.totals || {}, draining = 0, buf = { n: 0, d: 0, m: 0 };
    (st.workers || []).forEach(function (w) {
      if (w.state === "draining") draining++;
      var b = w.buffering || {};
      buf.n += num(b.responses_total); buf.d += num(b.responses_disk_total); buf.m += num(b.memory_bytes);
    });
    $("ver").textContent = st.version || "";
    $("hdr").textContent = "master pid " + st.master_pid + " \u00b7 generation " + st.generation +
        " \u00b7 up " + dur(st.uptime_seconds) + " \u00b7 accept " + st.accept_mode + " \u00b7 " +
        (st.workers || []).length + " workers" + (draining ? " (" + draining + " draining)" : "");
    $("tot").innerHTML =
        "<span><b>clients</b> active " + num(t.clients_active) + " \u00b7 idle " + num(t.clients_idle) + "</span>" +
        "<span><b>upstream</b> open " + num(t.upstream_open) + " \u00b7 idle " + num(t.upstream_idle) +
        " \u00b7 active " + num(t.upstream_active) + " \u00b7 bound " + s.bound + "</span>" +
        "<span><b>reuse</b> " + (100 * num(t.reuse_ratio)).toFixed(1) + "%</span>" +
        "<span><b>requests</b> " + num(t.requests) + (s.hasRates ? " \u00b7 " + fmt(s.rps) + "/s" : "") + "</span>" +
        "<span><b>accepted</b> " + num(t.accepted) + (s.hasRates ? " \u00b7 " + fmt(s.aps) + "/s" : "") + "</span>" +
        "<span><b>admin</b> accepted " + num(t.admin_accepted) + " \u00b7 denied " + num(t.admin_denied) + "</span>" +
        "<span id=\"buffered\"><b>buffered</b> " + buf.n + " \u00b7 to disk " + buf.d + " \u00b7 in memory " +
        (buf.m / 1024).toFixed(0) + " KiB</span>";
    var h = "";
    (st.workers || []).forEach(function (w) {
      var dr = w.state === "draining", cls = dr ? " draining" : "", c = w.clients || {}, u = w.upstream || {};
      var x = s.w[String(w.pid)] || {};
      h += "<tr class=\"w" + cls + "\" data-pid=\"" + esc(w.pid) + "\" data-state=\"" + esc(w.state) + "\">" +
           "<td><span class=\"sw\" data-color=\"" + color(String(w.pid)) + "\"></span></td>" +
           td(w.slot) + td(w.pid) + td(w.generation) + "<td class=\"l\">" +
           (dr ? "<span class=\"badge\">draining</span>" : esc(w.state)) + "</td>" +
           td(w.started_seconds_ago === undefined ? "-" : dur(w.started_seconds_ago)) + td(w.accepted) +
           td(fmt(x.aps)) + td(w.requests) + td(fmt(x.rps)) + td(c.active) + td(c.idle) +
           td(u.active) + td(u.idle) + td(u.open) + td(u.opened_total) + td(u.reused_total) +
           td(u.failed_total) + td(pct(u.reused_total, u.opened_total)) + "</tr>";
      (w.upstreams || []).forEach(function (g) {
        (g.servers || []).forEach(function (v) {
          h += "<tr class=\"srv" + cls + "\"><td></td><td class=\"l\" colspan=\"9\">\u2003" + esc(g.name) +
               " \u2192 " + esc(v.address) + (v.healthy === false ? " <span class=\"down\">down</span>" : "") +
               " <span class=\"note\">max_idle " + esc(g.max_idle) +
               (v.demand === undefined ? "" : " \u00b7 demand " + esc(v.demand)) +
               (v.trimmed_total === undefined ? "" : " \u00b7 trimmed " + esc(v.trimmed_total)) +
               (!v.handed_total && !v.received_total ? "" :
                " \u00b7 handed " + esc(v.handed_total) + " \u00b7 received " + esc(v.received_total)) +
               "</span></td><td></td><td></td>" +
               td(v.active) + td(v.idle) + td(v.open) + td(v.opened_total) + td(v.reused_total) +
               td(v.failed_total) + td(pct(v.reused_total, v.opened_total)) + "</tr>";
        });
      });
    });
    $("rows").innerHTML = h;
    // Swatch colours go through the CSSOM: the page's Content-Security-Policy
    // admits no inline style attribute.
    Array.prototype.forEach.call($("rows").querySelectorAll(".sw"), function (e) {
      e.style.background = e.getAttribute("data-color");
    });
    body.setAttribute("data-requests", num(t.requests));
    body.setAttribute("data-rps", s.hasRates ? s.rps.toFixed(2) : "0");
    body.setAttribute("data-workers", (st.workers || []).length);
    body.setAttribute("data-draining", draining);
  }
  function td(v) { return "<td>" + esc(v === undefined ? "-" : v) + "</td>"; }

  // ------------------------------------------------------------ polling

  function fail(msg) {
    errors++;
    hist.push({t: Date.now(), ok: false});
    body.setAttribute("data-state", "error");
    body.setAttribute("data-errors", errors);
    $("err").textContent = "/stats unavailable (" + msg + "); retrying every second" +
        (lastOk ? " \u00b7 last update " + new Date(lastOk).toLocaleTimeString() : "");
  }

  function poll() {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, TIMEOUT_MS);
    fetch("/stats", {cache: "no-store", signal: ctl ? ctl.signal : undefined})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (st) {
        if (!st || typeof st !== "object" || !Array.isArray(st.workers)) throw new Error("not a stats document");
        var s = sample(st, Date.now());
        render(st, s);
        hist.push(s);
        lastGood = s;
        lastOk = s.t;
        polls++;
        body.setAttribute("data-polls", polls);
        body.setAttribute("data-state", "ok");
        $("err").textContent = "";
      })
      .catch(function (e) { fail(e && e.message ? e.message : String(e)); })
      .then(function () {
        clearTimeout(timer);
        var cut = Date.now() - WINDOW_MS;
        while (hist.length && hist[0].t < cut) hist.shift();
        var live = {};
        hist.forEach(function (p) { if (p.ok) p.order.forEach(function (pid) { live[pid] = true; }); });
        Object.keys(colorOf).forEach(function (pid) { if (!live[pid]) delete colorOf[pid]; });
        try { draw(); } catch (e) { body.setAttribute("data-draw-error", String(e)); }
        setTimeout(poll, POLL_MS);
      });
  }

  window.addEventListener("resize", function () { try { draw(); } catch (e) { /* next poll redraws */ } });
  poll();
})();
</script>
</body>
</html>
)HTML";

}  // namespace poolgate
