#!/usr/bin/env python3
"""Turns the raw results of tools/bench/http2 into tables of medians and ratios.

Input (a results directory written by tools/bench/http2):
  runs.tsv  one line per h2load run:
            case proxy round h2load_file ss_samples_file cpu_ticks app_cpu_ticks
            closed_young pg_opened pg_open_after pg_queue_timeouts load1
            case: PROTO:CONNS:STREAMS; closed_young: TIME-WAIT entries on the app's port
            younger than the run; pg_*: poolgate's /stats (- for nginx)
  ss samples, one line per sample: established_to_app_port app_accept_queue
  meta      key=value lines (clk_tck, workers, pool, max_conns, app_workers, ...)

Output: markdown tables on stdout. Shares its helpers with report.py (tools/bench/run).
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

from report import fmt, mark, median, ratio

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
PROXIES = ("poolgate", "nginx")
CPU_TARGET = 0.75   # the target: poolgate CPU per request <= 0.75 x nginx's


def to_ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(match.group(1)) * UNIT_MS[match.group(2)] if match else float("nan")


def parse_h2load(path, duration):
    """done, req/s, failures, latency (mean, max ms) and the slowest client's req/s."""
    text = Path(path).read_text(errors="replace")
    result = {"done": 0, "rps": float("nan"), "failed": 0, "non2xx": 0, "lat_mean": float("nan"),
              "lat_max": float("nan"), "client_min": float("nan"), "ok": False}
    match = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
    if match:
        result["ok"] = True
        result["done"] = int(match.group(3))
        result["failed"] = int(match.group(5))   # errored and timeout are part of failed
        result["rps"] = result["done"] / duration
    match = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if match:
        result["non2xx"] = sum(int(g) for g in match.groups()[1:])
    match = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if match:
        result["lat_max"] = to_ms(match.group(2))
        result["lat_mean"] = to_ms(match.group(3))
    match = re.search(r"^req/s\s+:\s+([\d.]+)", text, re.M)
    if match:
        result["client_min"] = float(match.group(1))
    if not result["ok"]:   # h2load did not finish: count the whole run as failed
        result["failed"] = max(result["failed"], 1)
    return result


def parse_samples(path):
    established, queue = [], []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            established.append(int(fields[0]))
            queue.append(int(fields[1]))
    return established, queue


def load(results):
    meta = {}
    for line in (results / "meta").read_text().splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    clk_tck = float(meta.get("clk_tck", "100"))
    duration = float(meta.get("duration", "5"))
    runs = defaultdict(list)   # (case, proxy) -> [measurement]
    for line in (results / "runs.tsv").read_text().splitlines():
        (case, proxy, round_, h2load_file, samples_file, ticks, app_ticks, closed, opened,
         open_after, queue_timeouts, load1) = line.split("\t")
        m = parse_h2load(h2load_file, duration)
        established, queue = parse_samples(samples_file)
        per_request = (lambda t: int(t) / clk_tck * 1e6 / m["done"]) if m["done"] else \
            (lambda t: float("nan"))
        m.update(round=int(round_), cpu_us=per_request(ticks), app_cpu_us=per_request(app_ticks),
                 peak=max(established, default=0), samples=len(established),
                 est_median=median(established) if established else float("nan"),
                 queue_peak=max(queue, default=0), closed=int(closed),
                 opened=None if opened == "-" else int(opened),
                 open_after=None if open_after == "-" else int(open_after),
                 queue_timeouts=int(queue_timeouts), load1=float(load1))
        runs[(case, proxy)].append(m)
    return meta, runs


def case_label(case):
    proto, conns, streams = case.split(":")
    if proto == "h1":
        return f"HTTP/1.1, {conns} conns" + (f" x {streams} pipelined" if streams != "1" else "")
    return f"HTTP/2, {conns} conns x {streams} streams"


def short_label(case):
    proto, conns, streams = case.split(":")
    if proto == "h1":
        return f"HTTP/1.1 {conns}" + (f"×{streams}" if streams != "1" else "")
    return f"HTTP/2 {conns}×{streams}"


def cpu_cell(case, value):
    """The CPU ratio, marked against the target in the HTTP/2 cases; the HTTP/1.1 case
    is there for reference (each proxy's HTTP/2 cost against its own HTTP/1.1 cost)."""
    if case.startswith("h2:"):
        return mark(value, lambda v: v <= CPU_TARGET)
    return fmt(value)


def summarize(ms):
    def med(key):
        return median([m[key] for m in ms if m[key] is not None])
    s = {key: med(key) for key in ("rps", "cpu_us", "app_cpu_us", "lat_mean", "lat_max",
                                   "client_min", "peak", "est_median", "queue_peak", "closed",
                                   "load1")}
    s["failures"] = sum(m["failed"] + m["non2xx"] for m in ms)
    s["opened"] = med("opened") if any(m["opened"] is not None for m in ms) else None
    s["open_after"] = med("open_after") if any(m["open_after"] is not None for m in ms) else None
    s["queue_timeouts"] = sum(m["queue_timeouts"] for m in ms)
    s["samples"] = median([m["samples"] for m in ms])
    s["peak_max"] = max(m["peak"] for m in ms)
    return s


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: http2_report.py RESULTS_DIR")
    meta, runs = load(Path(sys.argv[1]))
    cases = list(dict.fromkeys(case for case, _ in runs))
    bound = int(meta.get("max_conns", "0"))
    rounds = meta.get("rounds", "?")
    summary = {key: summarize(ms) for key, ms in runs.items()}

    print(f"#### HTTP/2 and HTTP/1.1 through the proxies (medians of {rounds} round(s), "
          f"{meta.get('duration', '?')} s each, GET {meta.get('path', '?')})")
    print()
    print(f"{meta.get('workers')} proxy workers; pool: poolgate max_idle {meta.get('pool')} per "
          f"worker + max_conns {bound} across workers, nginx keepalive {meta.get('pool')} per "
          f"worker; app: {meta.get('app_workers')} demo-upstream workers per proxy. "
          "CPU: utime+stime per request done (proxy: master + workers; app: its master + "
          "workers). Latency: h2load's mean and max time for request of the completed requests; "
          "slowest client: the lowest per-connection req/s. App conns: established connections "
          "to the app's port (ss every 50 ms; peak [samples], median), the app's accept queue "
          "at its peak, connections closed during the run (TIME-WAIT entries on the app's port "
          "younger than the run) and, for poolgate, new connections (/stats "
          "upstream_opened_total) and upstream_open after the run. Failed: h2load's failed + "
          "non-2xx, summed over the rounds.")
    print()
    print("| case | proxy | req/s | CPU µs/req | app CPU µs/req | latency mean ms | latency max ms "
          "| slowest client req/s | failed | app conns peak [samples] | median | accept queue peak "
          "| closed in run | opened (/stats) | open after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        for proxy in PROXIES:
            s = summary.get((case, proxy))
            if not s:
                continue
            opened = "" if s["opened"] is None else f"{s['opened']:.0f}"
            open_after = "" if s["open_after"] is None else f"{s['open_after']:.0f}"
            print(f"| {case_label(case)} | {proxy} | {s['rps']:.0f} | {fmt(s['cpu_us'], 1)} | "
                  f"{fmt(s['app_cpu_us'], 1)} | {fmt(s['lat_mean'])} | {fmt(s['lat_max'], 1)} | "
                  f"{fmt(s['client_min'], 1)} | {s['failures']} | {s['peak']:.0f} "
                  f"[{s['samples']:.0f}] | {s['est_median']:.0f} | {s['queue_peak']:.0f} | "
                  f"{s['closed']:.0f} | {opened} | {open_after} |")
    print()

    print(f"#### Ratios poolgate / nginx (target, HTTP/2 cases: CPU/req ≤ {CPU_TARGET}× nginx; "
          f"poolgate's app connections ≤ workers × max_idle = {bound})")
    print()
    print("| case | req/s pg/nginx | CPU/req pg/nginx | app CPU/req pg/nginx | app conns peak "
          "pg / nginx | pg peak ≤ bound in every round | closed in run pg / nginx |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for case in cases:
        pg, ng = summary.get((case, "poolgate")), summary.get((case, "nginx"))
        if not pg or not ng:
            continue
        within = "yes" if pg["peak_max"] <= bound else f"no (max {pg['peak_max']})"
        print(f"| {case_label(case)} | {fmt(ratio(pg['rps'], ng['rps']))} | "
              f"{cpu_cell(case, ratio(pg['cpu_us'], ng['cpu_us']))} | "
              f"{fmt(ratio(pg['app_cpu_us'], ng['app_cpu_us']))} | "
              f"{pg['peak']:.0f} / {ng['peak']:.0f} | {within} | "
              f"{pg['closed']:.0f} / {ng['closed']:.0f} |")
    print()

    h1 = [c for c in cases if c.startswith("h1:")]
    h2 = [c for c in cases if c.startswith("h2:")]
    if h1 and h2:
        print("#### HTTP/2 against HTTP/1.1, same proxy, same run (CPU µs per request)")
        print()
        print("| proxy | " + " | ".join(case_label(c) for c in h2 + h1) + " | "
              + " | ".join(f"{short_label(c)} / {short_label(h1[0])}" for c in h2) + " |")
        print("|---|" + "---:|" * (len(h2) + len(h1) + len(h2)))
        for proxy in PROXIES:
            cells = [fmt(summary[(c, proxy)]["cpu_us"], 1) if (c, proxy) in summary else "-"
                     for c in h2 + h1]
            base = summary.get((h1[0], proxy), {}).get("cpu_us", float("nan"))
            cells += [fmt(ratio(summary[(c, proxy)]["cpu_us"], base)) if (c, proxy) in summary
                      else "-" for c in h2]
            print(f"| {proxy} | " + " | ".join(cells) + " |")
        print()

    per_round = defaultdict(list)
    for (case, proxy), ms in runs.items():
        for m in sorted(ms, key=lambda m: m["round"]):
            per_round[(case, proxy)].append(m)
    print("#### Every round (req/s, CPU µs/req; 1-minute load average when the run started)")
    print()
    print("| case | proxy | " + " | ".join(f"round {i + 1}" for i in range(int(rounds))) + " |")
    print("|---|---|" + "---|" * int(rounds))
    for case in cases:
        for proxy in PROXIES:
            ms = per_round.get((case, proxy), [])
            print(f"| {case_label(case)} | {proxy} | " + " | ".join(
                f"{m['rps']:.0f}, {fmt(m['cpu_us'], 1)} (load {m['load1']:.1f})" for m in ms) + " |")
    print()
    timeouts = sum(s["queue_timeouts"] for (c, p), s in summary.items() if p == "poolgate")
    print(f"poolgate queue timeouts (503 after queue_timeout) over all runs: {timeouts}. "
          f"Load average: {meta.get('load_start', '?')} at the start, "
          f"{meta.get('load_end', '?')} at the end.")


if __name__ == "__main__":
    main()
