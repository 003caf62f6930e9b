#!/usr/bin/env python3
"""Turns the raw results of tools/bench/run into tables of medians and ratios.

Input (a results directory written by tools/bench/run):
  runs.tsv    one line per wrk run:
              proxy workers conns body round wrk_file cpu_ticks upstream_held
              pg_opened pg_reused   (the last two: deltas of poolgate's /stats, or -)
              proxy: poolgate, nginx, haproxy, and with --baseline poolgate-base
  memory.tsv  one line per proxy, worker count and listener:
              proxy workers hwm_kb rss_before_kb rss_after_kb idle_requested
              idle_opened idle_ok listener
              (listener: plain, or tls with --tls; files without the column are plain)
  meta        key=value lines (clk_tck, mode, ...; with --baseline: baseline, the
              git describe of the revision poolgate-base was built at)
  poolgate_totals.tsv, poolgate-base_totals.tsv
              workers reuse_ratio opened reused requests (/stats totals)
  economy.tsv (--economy) one line per measured window:
              scenario proxy workers conns round wrk_file cpu_ticks upstream_accepts
              peak_established samples held_after, then poolgate's /stats deltas summed
              over workers and servers (or - for the others): opened reused trimmed
              pool_full yielded direct expired queue_timeouts
  scenarios.tsv (--economy) scenario workers conns max_conns max_idle

Output: markdown tables on stdout (readable in a terminal, pasteable into
BENCHMARKS.md).
"""

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

# The proxies in table order; a results directory holds those it measured (poolgate-base
# only with --baseline), and the tables show those present.
KNOWN_PROXIES = ("poolgate", "poolgate-base", "nginx", "haproxy")
POOLGATES = ("poolgate", "poolgate-base")   # the ones with /stats and a reuse ratio
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


def present_proxies(names):
    """The proxies among names, in table order (unknown names last, sorted)."""
    names = set(names)
    return tuple([p for p in KNOWN_PROXIES if p in names] +
                 sorted(names - set(KNOWN_PROXIES)))


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
        proxy, workers, conns, body, round_, wrk_file, ticks, held, opened, reused = fields
        wrk = parse_wrk(wrk_file)
        cpu_us = (int(ticks) / clk_tck * 1e6 / wrk["requests"]) if wrk["requests"] else float("nan")
        reuse = float("nan")
        if opened != "-" and reused != "-" and int(opened) + int(reused) > 0:
            reuse = int(reused) / (int(opened) + int(reused))
        wrk.update(cpu_us=cpu_us, held=int(held), reuse=reuse, round=int(round_))
        runs[(int(workers), int(conns), body, proxy)].append(wrk)

    memory = {}
    memory_file = results / "memory.tsv"
    if memory_file.exists():
        for line in memory_file.read_text().splitlines():
            fields = line.split("\t")
            proxy, workers, hwm, before, after, requested, opened, ok = fields[:8]
            listener = fields[8] if len(fields) > 8 else "plain"
            memory[(int(workers), listener, proxy)] = dict(
                hwm_kb=int(hwm), before_kb=int(before), after_kb=int(after),
                requested=int(requested), opened=int(opened), ok=int(ok))
    totals = []  # [(proxy, fields)]
    for proxy in POOLGATES:
        totals_file = results / f"{proxy}_totals.tsv"
        if totals_file.exists():
            totals += [(proxy, line.split("\t"))
                       for line in totals_file.read_text().splitlines()]
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
    proxies = present_proxies([p for (_w, _c, _b, p) in summary] +
                              [p for (_w, _l, p) in memory])
    cases = sorted({(w, c, b) for (w, c, b, _p) in summary},
                   key=lambda case: (case[0], case[1], BODY_ORDER.get(case[2], 9)))

    if not cases:
        print("(no wrk runs)")
        print()
    else:
        print_load_tables(meta, summary, cases, proxies)
    if "poolgate-base" in proxies:
        print_baseline_tables(meta, runs, summary, cases, memory)
    if memory:
        print_memory_table(memory, proxies)
    if totals:
        several = len({proxy for proxy, _fields in totals}) > 1
        print("### poolgate /stats totals over the whole load phase (warm-up included)")
        print()
        print(("| proxy " if several else "") +
              "| workers | totals.reuse_ratio | upstream opened | upstream reused | requests |")
        print(("|---" if several else "") + "|---|---:|---:|---:|---:|")
        for proxy, fields in totals:
            print(("| " + proxy + " " if several else "") + "| " + " | ".join(fields) + " |")
        print()


def print_load_tables(meta, summary, cases, proxies):
    print(f"### Throughput, latency, CPU (medians of {meta.get('rounds', '?')} rounds, "
          f"{meta.get('duration', '?')} s each, wrk -t2)")
    print()
    print("| workers | conns | body | proxy | req/s | p50 ms | p99 ms | CPU µs/req "
          "| upstream conns | reuse | errors |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for workers, conns, body in cases:
        for proxy in proxies:
            s = summary.get((workers, conns, body, proxy))
            if not s:
                continue
            print(f"| {workers} | {conns} | {body} | {proxy} | {s['rps']:.0f} | "
                  f"{fmt(s['p50'])} | {fmt(s['p99'])} | {fmt(s['cpu_us'], 1)} | "
                  f"{s['held']:.0f} | {fmt(s['reuse'], 4) if proxy in POOLGATES else ''} | "
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


def paired_ratios(runs, case, field, a="poolgate", b="poolgate-base"):
    """a/b of one figure per round, for the rounds where both ran (back to back)."""
    by_round_a = {m["round"]: m[field] for m in runs.get(case + (a,), [])}
    by_round_b = {m["round"]: m[field] for m in runs.get(case + (b,), [])}
    return [ratio(by_round_a[r], by_round_b[r]) for r in sorted(by_round_a.keys() & by_round_b.keys())]


def ratio_range(values):
    """'0.97' for one round; 'median (min–max)' over several."""
    values = [v for v in values if v == v]
    if not values:
        return "-", float("nan")
    mid = median(values)
    if len(values) == 1:
        return fmt(mid), mid
    return f"{mid:.2f} ({min(values):.2f}–{max(values):.2f})", mid


def geometric_mean(values):
    values = [v for v in values if v == v and v > 0]
    if not values:
        return float("nan")
    return statistics.geometric_mean(values)


def print_baseline_tables(meta, runs, summary, cases, memory):
    """--baseline: poolgate against itself at the baseline revision, measured in the same
    run and rounds (each case ran on poolgate then poolgate-base, back to back)."""
    current = meta.get("poolgate", "this tree")
    baseline = meta.get("baseline") or meta.get("baseline_rev") or "?"
    rounds = max((len(v) for (_w, _c, _b, p), v in runs.items() if p == "poolgate-base"),
                 default=0)
    print(f"### poolgate / poolgate-base: {current} against the baseline {baseline}")
    print()
    both = [case for case in cases
            if summary.get(case + ("poolgate",)) and summary.get(case + ("poolgate-base",))]
    if both:
        print("Same configuration, same run, interleaved. Ratios poolgate / poolgate-base: "
              "req/s above 1 and CPU/req, p50, p99 below 1 mean poolgate is better than its "
              "baseline. "
              + ("Per case: the median of the per-round ratios (the two ran back to back in "
                 "each round), min–max over the rounds in brackets; "
                 if rounds > 1 else "One round: a single measurement per case, ")
              + "the last row is the geometric mean over the cases.")
        print()
        print("| workers | conns | body | req/s pg | req/s pg-base | req/s pg/base "
              "| CPU µs/req pg | CPU µs/req pg-base | CPU/req pg/base | p50 pg/base "
              "| p99 pg/base | errors pg, pg-base |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        columns = {"rps": [], "cpu_us": [], "p50": [], "p99": []}
        for case in both:
            pg = summary.get(case + ("poolgate",))
            base = summary.get(case + ("poolgate-base",))
            cells = {}
            for field in columns:
                cells[field], mid = ratio_range(paired_ratios(runs, case, field))
                columns[field].append(mid)
            workers, conns, body = case
            print(f"| {workers} | {conns} | {body} | {pg['rps']:.0f} | {base['rps']:.0f} | "
                  f"{cells['rps']} | {fmt(pg['cpu_us'], 1)} | {fmt(base['cpu_us'], 1)} | "
                  f"{cells['cpu_us']} | {cells['p50']} | {cells['p99']} | "
                  f"{pg['errors']}, {base['errors']} |")
        if any(columns["rps"]):
            print(f"| all | | geometric mean | | | {fmt(geometric_mean(columns['rps']))} | | | "
                  f"{fmt(geometric_mean(columns['cpu_us']))} | "
                  f"{fmt(geometric_mean(columns['p50']))} | "
                  f"{fmt(geometric_mean(columns['p99']))} | |")
        print()

    rows = []
    for workers, listener in sorted({(w, l) for (w, l, _p) in memory},
                                    key=lambda k: (k[0], LISTENER_ORDER.get(k[1], 9))):
        pg = memory.get((workers, listener, "poolgate"))
        base = memory.get((workers, listener, "poolgate-base"))
        if pg and base:
            rows.append((workers, listener, pg, base))
    if rows:
        print("Memory, poolgate / poolgate-base (peak RSS and RSS per idle client connection, "
              "as in the memory table):")
        print()
        print("| workers | listener | peak RSS MiB pg | peak RSS MiB pg-base | peak RSS pg/base "
              "| bytes / idle conn pg | bytes / idle conn pg-base | bytes / idle conn pg/base |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for workers, listener, pg, base in rows:
            per_conn = [(m["after_kb"] - m["before_kb"]) * 1024 / m["opened"]
                        if m["opened"] else float("nan") for m in (pg, base)]
            print(f"| {workers} | {listener} | {pg['hwm_kb'] / 1024:.1f} | "
                  f"{base['hwm_kb'] / 1024:.1f} | {fmt(ratio(pg['hwm_kb'], base['hwm_kb']))} | "
                  f"{fmt(per_conn[0], 0)} | {fmt(per_conn[1], 0)} | "
                  f"{fmt(ratio(per_conn[0], per_conn[1]))} |")
        print()


LISTENER_ORDER = {"plain": 0, "tls": 1}


def print_memory_table(memory, proxies):
    listeners = sorted({l for (_w, l, _p) in memory}, key=lambda l: LISTENER_ORDER.get(l, 9))
    title = ("RSS per idle keep-alive client connection" if listeners == ["plain"] else
             "RSS per idle keep-alive client connection, plain HTTP and TLS")
    print(f"### Memory (peak RSS after the load runs; {title})")
    print()
    if "tls" in listeners:
        print("TLS rows (--tls): as many idle clients on a TLS listener (self-signed P-256 "
              "certificate, HTTP/1.1), after the proxies were restarted with it and warmed up "
              "again: their peak RSS is that of the fresh processes (warm-up only, no load "
              "runs). \"vs nginx\" compares with nginx on the same listener and worker count.")
        print()
    print("| workers | listener | proxy | peak RSS MiB (VmHWM sum) | idle conns opened | "
          "RSS before MiB | RSS with idle conns MiB | bytes / idle conn | vs nginx |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for workers in sorted({w for (w, _l, _p) in memory}):
        for listener in listeners:
            per_conn = {}
            for proxy in proxies:
                m = memory.get((workers, listener, proxy))
                if m and m["opened"]:
                    per_conn[proxy] = (m["after_kb"] - m["before_kb"]) * 1024 / m["opened"]
            for proxy in proxies:
                m = memory.get((workers, listener, proxy))
                if not m:
                    continue
                bytes_per = per_conn.get(proxy, float("nan"))
                versus = ratio(bytes_per, per_conn.get("nginx", float("nan")))
                versus_text = (mark(versus, lambda r: r <= 1.0) if proxy == "poolgate"
                               else fmt(versus))
                print(f"| {workers} | {listener} | {proxy} | {m['hwm_kb'] / 1024:.1f} | "
                      f"{m['opened']}/{m['requested']} (ok {m['ok']}) | "
                      f"{m['before_kb'] / 1024:.1f} | {m['after_kb'] / 1024:.1f} | "
                      f"{fmt(bytes_per, 0)} | {versus_text} |")
    print()


PG_COUNTERS = ("opened", "reused", "trimmed", "pool_full", "yielded", "direct", "expired",
               "queue_timeouts", "handed", "received")


def load_economy(results):
    """Economy runs: {(scenario, proxy): [measurement]}, scenarios in run order."""
    scenarios = {}
    scenarios_file = results / "scenarios.tsv"
    if scenarios_file.exists():
        for line in scenarios_file.read_text().splitlines():
            name, workers, conns, max_conns, max_idle = line.split("\t")
            scenarios[name] = dict(workers=int(workers), conns=int(conns),
                                   max_conns=int(max_conns), max_idle=int(max_idle))
    meta = {}
    for line in (results / "meta").read_text().splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    clk_tck = float(meta.get("clk_tck", "100"))
    runs = defaultdict(list)
    economy_file = results / "economy.tsv"
    for line in economy_file.read_text().splitlines() if economy_file.exists() else []:
        fields = line.split("\t")
        scenario, proxy, _w, _c, _round, wrk_file, ticks, accepts, peak, samples, held = \
            fields[:11]
        wrk = parse_wrk(wrk_file)
        errors = wrk["non2xx"] + wrk["socket_errors"]
        ok = max(wrk["requests"] - wrk["non2xx"], 0)
        cpu_s = int(ticks) / clk_tck
        m = dict(wrk, errors=errors, ok=ok,
                 ok_rps=wrk["rps"] * ok / wrk["requests"] if wrk["requests"] else 0.0,
                 cpu_us=cpu_s * 1e6 / wrk["requests"] if wrk["requests"] else float("nan"),
                 cpu_us_ok=cpu_s * 1e6 / ok if ok else float("nan"),
                 accepts=int(accepts), peak=int(peak), samples=int(samples),
                 held=int(held),
                 per_k=int(accepts) * 1000 / ok if ok else float("nan"))
        pg = fields[11:21]
        if pg and pg[0] != "-":
            m.update({key: int(value) for key, value in zip(PG_COUNTERS, pg)})
            for key in PG_COUNTERS[len(pg):]:  # results saved before a counter existed
                m[key] = 0
            total = m["opened"] + m["reused"]
            m["reuse"] = m["reused"] / total if total else float("nan")
        runs[(scenario, proxy)].append(m)
    return meta, scenarios, runs


def fmt_ratio(value):
    """Fewer digits for large ratios (new connections against a proxy that opened ~none)."""
    if value != value:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def print_economy(meta, scenarios, runs):
    names = list(scenarios) or sorted({s for (s, _p) in runs})
    proxies = present_proxies(p for (_s, p) in runs)
    rounds = max((len(v) for v in runs.values()), default=0)
    print(f"### Pools smaller than the load (--economy): medians of {rounds} round(s), "
          f"{meta.get('duration', '?')} s each after a 1 s warm-up, wrk -t2, 100 B")
    print()
    for name in names:
        sc = scenarios.get(name)
        if sc:
            cap = f"max_conns {sc['max_conns']}" if sc["max_conns"] else "no max_conns"
            print(f"- **{name}**: {sc['workers']} worker(s), {sc['conns']} clients, {cap}, "
                  f"max_idle {sc['max_idle']} per worker")
    print()
    print("New upstream conns: accepted by the upstream during the measured window (its "
          "stub_status `accepts`, after − before − 1). Peak: the most established "
          "connections to the proxy's upstream port seen by `ss` (sampled every 50 ms plus "
          "the time ss takes; samples per window in brackets). Held: established after the window. Errors: "
          "non-2xx + socket errors, summed over the rounds. CPU µs per answer (any status) "
          "and per 2xx answer.")
    print()
    print("| scenario | proxy | req/s | 2xx/s | p50 ms | p99 ms | errors | CPU µs/req "
          "| CPU µs/2xx | new upstream conns | per 1000 2xx | peak upstream conns "
          "| held after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    med = {}
    for name in names:
        for proxy in proxies:
            ms = runs.get((name, proxy))
            if not ms:
                continue
            s = {key: median([m[key] for m in ms])
                 for key in ("rps", "ok_rps", "p50", "p99", "cpu_us", "cpu_us_ok",
                             "accepts", "per_k", "peak", "held", "samples")}
            s["errors"] = sum(m["errors"] for m in ms)
            s["requests"] = sum(m["requests"] for m in ms)
            med[(name, proxy)] = s
            error_share = (f" ({100 * s['errors'] / s['requests']:.0f} %)"
                           if s["errors"] and s["requests"] else "")
            print(f"| {name} | {proxy} | {s['rps']:.0f} | {s['ok_rps']:.0f} | "
                  f"{fmt(s['p50'])} | {fmt(s['p99'])} | {s['errors']}{error_share} | "
                  f"{fmt(s['cpu_us'], 1)} | {fmt(s['cpu_us_ok'], 1)} | {s['accepts']:.0f} | "
                  f"{fmt(s['per_k'], 1)} | {s['peak']:.0f} [{s['samples']:.0f}] | "
                  f"{s['held']:.0f} |")
    print()

    print("### Ratios, pools smaller than the load (poolgate / nginx, poolgate / HAProxy)")
    print()
    print("| scenario | 2xx/s pg/nginx | 2xx/s pg/haproxy | p99 pg/nginx | p99 pg/haproxy "
          "| CPU/2xx pg/nginx | CPU/2xx pg/haproxy | new conns pg/nginx "
          "| new conns pg/haproxy | peak pg/nginx | peak pg/haproxy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        pg, ng, hp = (med.get((name, proxy)) for proxy in ("poolgate", "nginx", "haproxy"))
        if not (pg and ng and hp):
            continue
        cells = []
        for key in ("ok_rps", "p99", "cpu_us_ok", "accepts", "peak"):
            cells += [fmt_ratio(ratio(pg[key], ng[key])), fmt_ratio(ratio(pg[key], hp[key]))]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()

    if "poolgate-base" in proxies:
        baseline = meta.get("baseline") or meta.get("baseline_rev") or "?"
        print(f"### Ratios, pools smaller than the load: poolgate / poolgate-base "
              f"({meta.get('poolgate', 'this tree')} against the baseline {baseline})")
        print()
        print("| scenario | 2xx/s | p99 | CPU/2xx | new upstream conns | peak upstream conns |")
        print("|---|---:|---:|---:|---:|---:|")
        for name in names:
            pg, base = med.get((name, "poolgate")), med.get((name, "poolgate-base"))
            if not (pg and base):
                continue
            cells = [fmt_ratio(ratio(pg[key], base[key]))
                     for key in ("ok_rps", "p99", "cpu_us_ok", "accepts", "peak")]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()

    poolgates = [p for p in proxies if p in POOLGATES]
    several = len(poolgates) > 1
    print("### poolgate's /stats over the measured windows (deltas summed over workers; "
          "medians of the rounds)")
    print()
    print("| scenario " + ("| proxy " if several else "") +
          "| requests | opened | reused | reuse ratio | trimmed_total "
          "| no_reuse.pool_full | no_reuse.yielded | direct_total | expired_total "
          "| queue_timeouts_total | handed_total | received_total |")
    print("|---" + ("|---" if several else "") + "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, proxy in ((n, p) for n in names for p in poolgates):
        ms = [m for m in runs.get((name, proxy), []) if "opened" in m]
        if not ms:
            continue
        s = {key: median([m[key] for m in ms]) for key in PG_COUNTERS + ("reuse",)}
        print(f"| {name} | " + (f"{proxy} | " if several else "") +
              f"{median([m['opened'] + m['reused'] for m in ms]):.0f} | "
              f"{s['opened']:.0f} | {s['reused']:.0f} | {fmt(s['reuse'], 4)} | "
              f"{s['trimmed']:.0f} | {s['pool_full']:.0f} | {s['yielded']:.0f} | "
              f"{s['direct']:.0f} | {s['expired']:.0f} | {s['queue_timeouts']:.0f} | "
              f"{s['handed']:.0f} | {s['received']:.0f} |")
    print()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py RESULTS_DIR")
    results = Path(sys.argv[1])
    if (results / "economy.tsv").exists():
        print_economy(*load_economy(results))
        return
    print_tables(*load(results))


if __name__ == "__main__":
    main()
