#!/usr/bin/env python3
"""Turns the raw results of tools/bench/run into tables of medians and ratios.

Input (a results directory written by tools/bench/run):
  runs.tsv    one line per wrk run:
              proxy workers conns body round wrk_file cpu_ticks upstream_held
              pg_opened pg_reused   (the last two: deltas of poolgate's /stats, or -)
  memory.tsv  one line per proxy and worker count:
              proxy workers hwm_kb rss_before_kb rss_after_kb idle_requested
              idle_opened idle_ok
  meta        key=value lines (clk_tck, mode, ...)

Output: markdown tables on stdout (readable in a terminal, pasteable into
BENCHMARKS.md).
"""

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

PROXIES = ("poolgate", "nginx", "haproxy")
BODY_ORDER = {"100b": 0, "16k": 1, "1m": 2}

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_latency(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(match.group(1)) * UNIT_MS[match.group(2)]


def parse_wrk(path):
    """Returns requests, req/s, p50/p99 (ms) and error counts of one wrk output."""
    text = Path(path).read_text(errors="replace")
    result = {"requests": 0, "rps": 0.0, "p50": float("nan"), "p99": float("nan"),
              "non2xx": 0, "socket_errors": 0}
    match = re.search(r"(\d+) requests in", text)
    if match:
        result["requests"] = int(match.group(1))
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        result["rps"] = float(match.group(1))
    for percent, key in (("50", "p50"), ("99", "p99")):
        match = re.search(rf"^\s+{percent}%\s+(\S+)", text, re.M)
        if match:
            result[key] = parse_latency(match.group(1))
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if match:
        result["non2xx"] = int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      text)
    if match:
        result["socket_errors"] = sum(int(g) for g in match.groups())
    return result


def median(values):
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def ratio(a, b):
    return a / b if b and a == a and b == b else float("nan")


def fmt(value, digits=2):
    return "-" if value != value else f"{value:.{digits}f}"


def mark(value, ok):
    """A ratio with a target marker: '1.31 ok' or '0.92 MISS'."""
    if value != value:
        return "-"
    return f"{value:.2f} {'ok' if ok(value) else 'MISS'}"


def load(results):
    meta = {}
    for line in (results / "meta").read_text().splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    clk_tck = float(meta.get("clk_tck", "100"))

    runs = defaultdict(list)  # (workers, conns, body, proxy) -> [measurement]
    runs_file = results / "runs.tsv"
    run_lines = runs_file.read_text().splitlines() if runs_file.exists() else []
    for line in run_lines:
        fields = line.split("\t")
        proxy, workers, conns, body, _round, wrk_file, ticks, held, opened, reused = fields
        wrk = parse_wrk(wrk_file)
        cpu_us = (int(ticks) / clk_tck * 1e6 / wrk["requests"]) if wrk["requests"] else float("nan")
        reuse = float("nan")
        if opened != "-" and reused != "-" and int(opened) + int(reused) > 0:
            reuse = int(reused) / (int(opened) + int(reused))
        wrk.update(cpu_us=cpu_us, held=int(held), reuse=reuse)
        runs[(int(workers), int(conns), body, proxy)].append(wrk)

    memory = {}
    memory_file = results / "memory.tsv"
    if memory_file.exists():
        for line in memory_file.read_text().splitlines():
            proxy, workers, hwm, before, after, requested, opened, ok = line.split("\t")
            memory[(int(workers), proxy)] = dict(
                hwm_kb=int(hwm), before_kb=int(before), after_kb=int(after),
                requested=int(requested), opened=int(opened), ok=int(ok))
    totals_file = results / "poolgate_totals.tsv"
    totals = ([line.split("\t") for line in totals_file.read_text().splitlines()]
              if totals_file.exists() else [])
    return meta, runs, memory, totals


def summarize(runs):
    """Median of each figure over the rounds of each case."""
    summary = {}
    for key, measurements in runs.items():
        summary[key] = {
            "rounds": len(measurements),
            "rps": median([m["rps"] for m in measurements]),
            "p50": median([m["p50"] for m in measurements]),
            "p99": median([m["p99"] for m in measurements]),
            "cpu_us": median([m["cpu_us"] for m in measurements]),
            "held": median([m["held"] for m in measurements]),
            "reuse": median([m["reuse"] for m in measurements]),
            "errors": sum(m["non2xx"] + m["socket_errors"] for m in measurements),
        }
    return summary


def print_tables(meta, runs, memory, totals):
    summary = summarize(runs)
    cases = sorted({(w, c, b) for (w, c, b, _p) in summary},
                   key=lambda case: (case[0], case[1], BODY_ORDER.get(case[2], 9)))

    if not cases:
        print("(no wrk runs)")
        print()
    else:
        print_load_tables(meta, summary, cases)
    if memory:
        print_memory_table(memory)
    if totals:
        print("### poolgate /stats totals over the whole load phase (warm-up included)")
        print()
        print("| workers | totals.reuse_ratio | upstream opened | upstream reused | requests |")
        print("|---|---:|---:|---:|---:|")
        for fields in totals:
            print("| " + " | ".join(fields) + " |")
        print()


def print_load_tables(meta, summary, cases):
    print(f"### Throughput, latency, CPU (medians of {meta.get('rounds', '?')} rounds, "
          f"{meta.get('duration', '?')} s each, wrk -t2)")
    print()
    print("| workers | conns | body | proxy | req/s | p50 ms | p99 ms | CPU µs/req "
          "| upstream conns | reuse | errors |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for workers, conns, body in cases:
        for proxy in PROXIES:
            s = summary.get((workers, conns, body, proxy))
            if not s:
                continue
            print(f"| {workers} | {conns} | {body} | {proxy} | {s['rps']:.0f} | "
                  f"{fmt(s['p50'])} | {fmt(s['p99'])} | {fmt(s['cpu_us'], 1)} | "
                  f"{s['held']:.0f} | {fmt(s['reuse'], 4) if proxy == 'poolgate' else ''} | "
                  f"{s['errors']} |")
    print()

    print("### Ratios poolgate / nginx and poolgate / HAProxy (targets of issue 7: "
          "req/s ≥ 1.25× nginx and ≥ 1× HAProxy, p99 ≤ nginx, CPU/req ≤ 0.75× nginx)")
    print()
    print("| workers | conns | body | req/s pg/nginx | req/s pg/haproxy | p99 pg/nginx "
          "| p99 pg/haproxy | CPU/req pg/nginx | CPU/req pg/haproxy |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for workers, conns, body in cases:
        pg = summary.get((workers, conns, body, "poolgate"))
        ng = summary.get((workers, conns, body, "nginx"))
        hp = summary.get((workers, conns, body, "haproxy"))
        if not (pg and ng and hp):
            continue
        print(f"| {workers} | {conns} | {body} | "
              f"{mark(ratio(pg['rps'], ng['rps']), lambda r: r >= 1.25)} | "
              f"{mark(ratio(pg['rps'], hp['rps']), lambda r: r >= 1.0)} | "
              f"{mark(ratio(pg['p99'], ng['p99']), lambda r: r <= 1.0)} | "
              f"{fmt(ratio(pg['p99'], hp['p99']))} | "
              f"{mark(ratio(pg['cpu_us'], ng['cpu_us']), lambda r: r <= 0.75)} | "
              f"{fmt(ratio(pg['cpu_us'], hp['cpu_us']))} |")
    print()



def print_memory_table(memory):
    if True:
        print("### Memory (peak RSS after the load runs; RSS per idle keep-alive client "
              "connection)")
        print()
        print("| workers | proxy | peak RSS MiB (VmHWM sum) | idle conns opened | "
              "RSS before MiB | RSS with idle conns MiB | bytes / idle conn | vs nginx |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for workers in sorted({w for (w, _p) in memory}):
            per_conn = {}
            for proxy in PROXIES:
                m = memory.get((workers, proxy))
                if m and m["opened"]:
                    per_conn[proxy] = (m["after_kb"] - m["before_kb"]) * 1024 / m["opened"]
            for proxy in PROXIES:
                m = memory.get((workers, proxy))
                if not m:
                    continue
                bytes_per = per_conn.get(proxy, float("nan"))
                versus = ratio(bytes_per, per_conn.get("nginx", float("nan")))
                versus_text = (mark(versus, lambda r: r <= 1.0) if proxy == "poolgate"
                               else fmt(versus))
                print(f"| {workers} | {proxy} | {m['hwm_kb'] / 1024:.1f} | "
                      f"{m['opened']}/{m['requested']} (ok {m['ok']}) | "
                      f"{m['before_kb'] / 1024:.1f} | {m['after_kb'] / 1024:.1f} | "
                      f"{fmt(bytes_per, 0)} | {versus_text} |")
        print()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS_DIR")
    print_tables(*load(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
