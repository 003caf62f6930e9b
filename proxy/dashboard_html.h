// The admin dashboard served on "/": one self-contained page (inline CSS and
// JS, no external resources) that polls /stats every second. The version is
// inserted (HTML-escaped) between the two halves.
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
body{font:13px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px;color:#1d1d1f;background:#f7f7f8}
h1{font-size:18px;margin:0 0 2px}
.muted{color:#666}
#err{color:#b00020;font-weight:600;min-height:1.45em}
#tot b{font-weight:600}
canvas{display:block;background:#fff;border:1px solid #ddd;margin-top:8px;max-width:100%}
#legend span{margin-right:14px;white-space:nowrap}
#legend i{display:inline-block;width:12px;height:3px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;margin-top:10px;background:#fff}
th,td{border:1px solid #e2e2e2;padding:2px 7px;text-align:right;white-space:nowrap}
th{background:#efeff1;font-weight:600}
.l{text-align:left}
tr.w td{font-weight:600}
tr.srv td{font-weight:400;color:#555;font-size:12px}
tr.draining td{background:#fff3dc;color:#8a5a00}
.badge{display:inline-block;padding:0 5px;border-radius:3px;background:#d98e04;color:#fff;font-size:11px}
.down{color:#b00020;font-weight:600}
</style>
</head>
<body>
<h1>poolgate <span id="ver"></span></h1>
<div id="hdr" class="muted">loading&hellip;</div>
<div id="err"></div>
<div id="tot"></div>
<canvas id="chart" width="960" height="220"></canvas>
<div id="legend" class="muted"></div>
<table>
<thead><tr><th>slot</th><th>pid</th><th>gen</th><th class="l">state</th><th>accepted</th><th>requests</th>
<th>clients active</th><th>clients idle</th><th>upstream open</th><th>idle</th><th>active</th>
<th>opened</th><th>reused</th><th>failed</th><th>reuse %</th></tr></thead>
<tbody id="rows"></tbody>
</table>
<script>
(function () {
  "use strict";
  var SERIES = [["upstream open", "upstream_open", "#1f77b4"], ["upstream idle", "upstream_idle", "#2ca02c"],
                ["upstream active", "upstream_active", "#d62728"], ["clients active", "clients_active", "#9467bd"],
                ["clients idle", "clients_idle", "#999999"]];
  var WINDOW_MS = 5 * 60 * 1000, hist = [], lastOk = 0;
  function $(id) { return document.getElementById(id); }
  function num(v) { return typeof v === "number" && isFinite(v) ? v : 0; }
  function esc(s) {
    return String(s === undefined || s === null ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c];
    });
  }
  function pct(reused, opened) {
    var t = num(reused) + num(opened);
    return t ? (100 * num(reused) / t).toFixed(1) + "%" : "-";
  }
  function dur(s) {
    s = Math.floor(num(s));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s % 60 + "s";
  }
  function td(v, cls) { return "<td" + (cls ? " class=\"" + cls + "\"" : "") + ">" + esc(v) + "</td>"; }
  function counts(o) {
    return td(o.open) + td(o.idle) + td(o.active) + td(o.opened_total) + td(o.reused_total) +
           td(o.failed_total) + td(pct(o.reused_total, o.opened_total));
  }

  function render(st) {
    var t = st.totals || {};
    $("ver").textContent = st.version || "";
    $("hdr").textContent = "master pid " + st.master_pid + " \u00b7 generation " + st.generation +
        " \u00b7 up " + dur(st.uptime_seconds) + " \u00b7 accept mode " + st.accept_mode +
        " \u00b7 " + num(t.workers) + " workers";
    $("tot").innerHTML = "<b>clients</b> active " + num(t.clients_active) + ", idle " + num(t.clients_idle) +
        " \u00b7 <b>upstream</b> open " + num(t.upstream_open) + ", idle " + num(t.upstream_idle) +
        ", active " + num(t.upstream_active) + " \u00b7 <b>reuse</b> " +
        (100 * num(t.reuse_ratio)).toFixed(1) + "% \u00b7 <b>bound</b> (workers \u00d7 max_idle \u00d7 servers) " +
        num(t.upstream_bound);
    var h = "";
    (st.workers || []).forEach(function (w) {
      var dr = w.state === "draining", cls = dr ? " draining" : "", c = w.clients || {};
      h += "<tr class=\"w" + cls + "\">" + td(w.slot) + td(w.pid) + td(w.generation) + "<td class=\"l\">" +
           (dr ? "<span class=\"badge\">draining</span>" : esc(w.state)) + "</td>" + td(w.accepted) +
           td(w.requests) + td(c.active) + td(c.idle) + counts(w.upstream || {}) + "</tr>";
      (w.upstreams || []).forEach(function (u) {
        (u.servers || []).forEach(function (s) {
          h += "<tr class=\"srv" + cls + "\"><td class=\"l\" colspan=\"4\">\u2003" + esc(u.name) + " \u2192 " +
               esc(s.address) + (s.healthy ? "" : " <span class=\"down\">down</span>") + "</td><td></td>" +
               td(s.requests_total) + "<td></td><td></td>" + counts(s) + "</tr>";
        });
      });
    });
    $("rows").innerHTML = h;
  }

  function draw() {
    var cv = $("chart"), g = cv.getContext && cv.getContext("2d");
    if (!g) return;
    var W = cv.width, H = cv.height, L = 48, R = 10, T = 10, B = 22, now = Date.now(), max = 1;
    hist.forEach(function (p) { if (p.ok) SERIES.forEach(function (s) { max = Math.max(max, p[s[1]]); }); });
    max = Math.ceil(max * 1.1);
    g.clearRect(0, 0, W, H);
    g.font = "11px sans-serif"; g.lineWidth = 1; g.fillStyle = "#777"; g.strokeStyle = "#eee";
    for (var i = 0; i <= 4; i++) {
      var y = Math.round(T + (H - T - B) * i / 4) + 0.5;
      g.beginPath(); g.moveTo(L, y); g.lineTo(W - R, y); g.stroke();
      g.fillText(String(Math.round(max * (4 - i) / 4)), 4, y + 4);
    }
    g.fillText("\u22125 min", L, H - 6);
    g.fillText("now", W - R - 22, H - 6);
    SERIES.forEach(function (s) {
      var pen = false;
      g.strokeStyle = s[2]; g.lineWidth = 1.5; g.beginPath();
      hist.forEach(function (p) {
        if (!p.ok) { pen = false; return; }  // a failed poll breaks the line
        var x = L + (W - L - R) * (1 - (now - p.t) / WINDOW_MS), y = T + (H - T - B) * (1 - p[s[1]] / max);
        if (pen) g.lineTo(x, y); else g.moveTo(x, y);
        pen = true;
      });
      g.stroke();
    });
  }

  function poll() {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctl) ctl.abort(); }, 5000);
    fetch("/stats", {cache: "no-store", signal: ctl ? ctl.signal : undefined})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (st) {
        render(st);
        var t = st.totals || {}, p = {t: Date.now(), ok: true};
        SERIES.forEach(function (s) { p[s[1]] = num(t[s[1]]); });
        hist.push(p);
        lastOk = p.t;
        $("err").textContent = "";
      })
      .catch(function (e) {
        hist.push({t: Date.now(), ok: false});
        $("err").textContent = "/stats unavailable (" + (e && e.message ? e.message : e) + "); retrying every second" +
            (lastOk ? ", last update " + new Date(lastOk).toLocaleTimeString() : "");
      })
      .then(function () {
        clearTimeout(timer);
        var cut = Date.now() - WINDOW_MS;
        while (hist.length && hist[0].t < cut) hist.shift();
        try { draw(); } catch (e) { /* keep polling */ }
        setTimeout(poll, 1000);
      });
  }

  $("legend").innerHTML = SERIES.map(function (s) {
    return "<span><i style=\"background:" + s[2] + "\"></i>" + esc(s[0]) + "</span>";
  }).join("");
  poll();
})();
</script>
</body>
</html>
)HTML";

}  // namespace poolgate
