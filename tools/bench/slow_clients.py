#!/usr/bin/env python3
"""Helpers of tools/bench/slow-clients (Python standard library only).

  slow_clients.py probe  --port P --duration S --out FILE [--interval 0.1] [--timeout 5]
      Starts one GET /probe every INTERVAL seconds for S seconds, each on a new
      connection (Connection: close) in its own thread, with a TOTAL deadline of
      TIMEOUT seconds (connect + send + whole answer). A probe succeeds when the answer
      is "200" with the body "ok". Writes JSON: one record per probe (start offset,
      ok, elapsed seconds, reason).

  slow_clients.py watch  --port G --duration S --out FILE [--interval 0.1]
      Samples every INTERVAL seconds, for S seconds, the server side of the TCP
      connections to 127.0.0.1:G (the app server):
        ss -tnH state established '( sport = :G )'   -> established, peer addresses
        ss -ltnH '( sport = :G )'                    -> Recv-Q of the listener = the
                                                        accept queue (handshake done,
                                                        not accept()ed by a worker yet)
      Writes JSON: samples (t, established, queued) and the distinct peers seen.

  slow_clients.py ports  --log FILE --from N0 --to N1
      Prints the number of distinct client ports (the last field of each line) among
      lines N0+1 to N1 of gunicorn's access log (format '%(m)s %(U)s %(s)s
      %({remote_port}e)s'): the app connections that carried a request answered in
      that span. Counted exactly, unlike watch's samples: a sync worker closes each
      connection after one response, so most live far less than 100 ms.

  slow_clients.py h2slow --port P --conns C --streams N --path PATH --duration S --out FILE
                        [--rate R] [--window W] [--update U] [--every E]
      Slow HTTP/2 readers (h2c with prior knowledge; needs Debian's python3-h2, the one
      thing here beyond the standard library): opens C connections, R per second, each
      with N concurrent GET PATH streams and a stream window of W bytes
      (SETTINGS_INITIAL_WINDOW_SIZE). Every E seconds each stream's window (and the
      connection's, by as much) grows by U bytes (WINDOW_UPDATE). The socket itself is
      read at once: what holds the responses back is HTTP/2 flow control alone, the
      HTTP/2 form of slowhttptest -X. Runs S seconds, then writes JSON: connections open
      (peak), streams opened, responses completed, resets and GOAWAYs received.

  slow_clients.py report RESULTS_DIR
      Reads runs.tsv and the JSON files it points to, prints markdown tables
      (medians over rounds) with poolgate / nginx ratios.
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


# ------------------------------------------------------------------ probe

def one_probe(port, timeout, record):
    start = time.monotonic()
    deadline = start + timeout
    ok, reason = False, ""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(b"GET /probe HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1:2]
        if status == [b"200"] and body == b"ok":
            ok = True
        else:
            reason = "status " + (status[0].decode() if status else "none")
    except socket.timeout:
        reason = "timeout"
    except OSError as error:
        reason = type(error).__name__
    record.update(elapsed=time.monotonic() - start, ok=ok, reason=reason)


def probe(args):
    records, threads = [], []
    begin = time.monotonic()
    n = 0
    while True:
        at = begin + n * args.interval
        if at - begin >= args.duration:
            break
        now = time.monotonic()
        if at > now:
            time.sleep(at - now)
        record = {"start": round(time.monotonic() - begin, 3)}
        records.append(record)
        thread = threading.Thread(target=one_probe, args=(args.port, args.timeout, record),
                                  daemon=True)
        thread.start()
        threads.append(thread)
        n += 1
    for thread in threads:
        thread.join(args.timeout + 1)
    for record in records:          # a thread that did not finish (should not happen)
        record.setdefault("ok", False)
        record.setdefault("elapsed", args.timeout)
        record.setdefault("reason", "unfinished")
    Path(args.out).write_text(json.dumps({"probes": records}))


# ------------------------------------------------------------------ watch

def ss_lines(*arguments):
    out = subprocess.run(["ss", *arguments], capture_output=True, text=True, check=False)
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


def watch(args):
    samples, peers = [], set()
    begin = time.monotonic()
    while time.monotonic() - begin < args.duration:
        t = time.monotonic() - begin
        # With a state filter ss prints: Recv-Q Send-Q Local:Port Peer:Port
        established = ss_lines("-tnH", "state", "established", f"( sport = :{args.port} )")
        listener = ss_lines("-ltnH", f"( sport = :{args.port} )")
        queued = sum(int(fields[1]) for fields in listener if len(fields) > 1)
        for fields in established:
            if len(fields) >= 4:
                peers.add(fields[3])
        samples.append({"t": round(t, 3), "established": len(established), "queued": queued})
        next_at = begin + len(samples) * args.interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    Path(args.out).write_text(json.dumps({"samples": samples, "distinct_peers": len(peers)}))


# ------------------------------------------------------------------ ports

def distinct_ports(lines, first, last):
    """Distinct client ports among lines[first:last] of an access log whose lines end
    with the client's port; lines without a numeric last field are skipped."""
    ports = set()
    for line in lines[first:last]:
        fields = line.split()
        if len(fields) >= 4 and fields[-1].isdigit():
            ports.add(int(fields[-1]))
    return len(ports)


def ports(args):
    # Only whole lines: a line still being written at the end has no newline yet.
    text = Path(args.log).read_text(errors="replace")
    lines = text.split("\n")[:-1] if text else []
    print(distinct_ports(lines, args.first, args.last))


# ------------------------------------------------------------------ h2slow

def h2slow(args):
    import selectors
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    selector = selectors.DefaultSelector()
    clients = []  # dicts: sock, conn, streams (id -> bytes received), open
    stats = {"connections_opened": 0, "connections_peak": 0, "connect_errors": 0,
             "streams_opened": 0, "responses_completed": 0, "resets_received": 0,
             "goaways_received": 0, "closed_by_server": 0}

    def flush(client):
        data = client["conn"].data_to_send()
        if data and client["open"]:
            try:
                client["sock"].sendall(data)
            except OSError:
                close(client, by_server=True)

    def close(client, by_server=False):
        if not client["open"]:
            return
        client["open"] = False
        if by_server:
            stats["closed_by_server"] += 1
        try:
            selector.unregister(client["sock"])
        except (KeyError, ValueError):
            pass
        client["sock"].close()

    def connect():
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=5)
        except OSError:
            stats["connect_errors"] += 1
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: args.window})
        conn.initiate_connection()
        client = {"sock": sock, "conn": conn, "streams": {}, "open": True}
        for _ in range(args.streams):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                    (":authority", "bench"), (":path", args.path)],
                              end_stream=True)
            client["streams"][sid] = 0
            stats["streams_opened"] += 1
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, client)
        clients.append(client)
        stats["connections_opened"] += 1
        flush(client)

    def receive(client):
        try:
            data = client["sock"].recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            close(client, by_server=True)
            return
        try:
            events = client["conn"].receive_data(data)
        except Exception:  # a protocol error on our side of the exchange: drop it
            close(client)
            return
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                client["streams"][event.stream_id] = (
                    client["streams"].get(event.stream_id, 0) + len(event.data))
            elif isinstance(event, h2.events.StreamEnded):
                stats["responses_completed"] += 1
            elif isinstance(event, h2.events.StreamReset):
                stats["resets_received"] += 1
            elif isinstance(event, h2.events.ConnectionTerminated):
                stats["goaways_received"] += 1
        flush(client)

    def grant():
        for client in clients:
            if not client["open"]:
                continue
            conn = client["conn"]
            granted = 0
            for sid in list(client["streams"]):
                try:
                    conn.increment_flow_control_window(args.update, stream_id=sid)
                    granted += args.update
                except Exception:  # the stream has ended or was reset
                    client["streams"].pop(sid, None)
            if granted:
                try:
                    conn.increment_flow_control_window(granted)
                except Exception:
                    pass
            flush(client)

    begin = time.monotonic()
    next_connect, next_grant = begin, begin + args.every
    while True:
        now = time.monotonic()
        if now - begin >= args.duration:
            break
        while stats["connections_opened"] + stats["connect_errors"] < args.conns and next_connect <= now:
            connect()
            next_connect += 1.0 / args.rate
        if now >= next_grant:
            grant()
            next_grant += args.every
        open_now = sum(1 for c in clients if c["open"])
        stats["connections_peak"] = max(stats["connections_peak"], open_now)
        wake = min(next_grant, begin + args.duration)
        if stats["connections_opened"] + stats["connect_errors"] < args.conns:
            wake = min(wake, next_connect)
        for key, _ in selector.select(max(0.0, min(0.1, wake - time.monotonic()))):
            receive(key.data)
    for client in clients:
        close(client)
    Path(args.out).write_text(json.dumps(stats))
    print(json.dumps(stats))


# ------------------------------------------------------------------ report

def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def summarise_run(row, results):
    """One run -> a dict of figures."""
    figures = {}
    probes = json.loads((results / row["probe"]).read_text())["probes"]
    elapsed_ms = [p["elapsed"] * 1000 for p in probes]
    good = [p for p in probes if p["ok"]]
    figures["probes"] = len(probes)
    figures["success"] = 100.0 * len(good) / len(probes) if probes else float("nan")
    figures["p50"] = percentile(elapsed_ms, 0.50)
    figures["p99"] = percentile(elapsed_ms, 0.99)
    figures["ok_p50"] = percentile([p["elapsed"] * 1000 for p in good], 0.50)
    if row["watch"] != "-":
        watched = json.loads((results / row["watch"]).read_text())
        samples = watched["samples"]
        figures["app_est_peak"] = max((s["established"] for s in samples), default=0)
        figures["app_queue_peak"] = max((s["queued"] for s in samples), default=0)
        figures["app_distinct"] = watched["distinct_peers"]
        # Mean over the second half of the attack: the steady state once it ramped up.
        half = [s["established"] for s in samples if s["t"] >= samples[-1]["t"] / 2]
        figures["app_est_mean2"] = statistics.mean(half) if half else float("nan")
    for key in ("answered_probe", "answered_upload", "answered_big", "answered_large",
                "app_conns", "attack_peak"):
        value = row.get(key, "-")
        figures[key] = float(value) if value not in ("-", "") else float("nan")
    return figures


ROWS = [  # (key, label, format)
    ("attack_peak", "attack connections open (slowhttptest or h2slow, peak)", "{:.0f}"),
    ("success", "probe success %", "{:.1f}"),
    ("p50", "probe p50 ms (failures at their time to failure)", "{:.1f}"),
    ("p99", "probe p99 ms (same)", "{:.1f}"),
    ("ok_p50", "p50 ms of the successful probes only", "{:.1f}"),
    ("app_est_peak", "app connections established, peak (incl. accept queue)", "{:.0f}"),
    ("app_queue_peak", "app accept queue, peak (not accept()ed by a worker)", "{:.0f}"),
    ("app_est_mean2", "app connections established, mean over the 2nd half", "{:.1f}"),
    ("app_distinct", "distinct app connections seen (100 ms samples, a lower bound)", "{:.0f}"),
    ("app_conns", "app connections used during the window (distinct client ports in the "
                  "app's access log)", "{:.0f}"),
    ("answered_probe", "app answered GET /probe during the window", "{:.0f}"),
    ("answered_upload", "app answered POST /upload during the window", "{:.0f}"),
    ("answered_big", "app answered GET /big during the window", "{:.0f}"),
    ("answered_large", "app answered GET /large during the window", "{:.0f}"),
]

ATTACK_LABEL = {
    "rest": "no attack (probe only)",
    "body": "slow body: slowhttptest -B, POST /upload",
    "read": "slow read: slowhttptest -X, GET /big",
    "large": "slow read: slowhttptest -X, GET /large",
    "h2read": "slow HTTP/2 read: h2slow, GET /big",
    "h2large": "slow HTTP/2 read: h2slow, GET /large",
}


def fmt(value, pattern):
    if value != value:  # nan
        return "–"
    return pattern.format(value)


def ratio(a, b, pattern):
    """a / b, from the values as printed (0.04 printed as 0.0 gives no ratio)."""
    if a != a or b != b:
        return "–"
    a, b = float(pattern.format(a)), float(pattern.format(b))
    if b == 0:
        return "–" if a == 0 else "∞"
    return f"{a / b:.2f}"


def report(args):
    results = Path(args.results)
    header = None
    runs = []
    for line in (results / "runs.tsv").read_text().splitlines():
        fields = line.split("\t")
        if header is None:
            header = fields
            continue
        runs.append(dict(zip(header, fields)))
    by_case = {}
    for row in runs:
        by_case.setdefault((row["attack"], row["proxy"]), []).append(summarise_run(row, results))
    rounds = max((len(v) for v in by_case.values()), default=0)
    print(f"#### Side by side (median of {rounds} round(s) per case)")
    print()
    print("| attack | measure | poolgate | nginx | poolgate / nginx |")
    print("|---|---|---:|---:|---:|")
    for attack in ("rest", "body", "read", "large", "h2read", "h2large"):
        if (attack, "poolgate") not in by_case and (attack, "nginx") not in by_case:
            continue
        first = True
        for key, label, pattern in ROWS:
            values = {}
            for proxy in ("poolgate", "nginx"):
                figures = [f.get(key, float("nan")) for f in by_case.get((attack, proxy), [])]
                figures = [v for v in figures if v == v]
                values[proxy] = statistics.median(figures) if figures else float("nan")
            if all(v != v for v in values.values()):
                continue
            name = ATTACK_LABEL[attack] if first else ""
            first = False
            print(f"| {name} | {label} | {fmt(values['poolgate'], pattern)} | "
                  f"{fmt(values['nginx'], pattern)} | "
                  f"{ratio(values['poolgate'], values['nginx'], pattern)} |")
    if rounds > 1:
        print()
        print("#### Every run")
        print()
        print("| attack | proxy | round | success % | p50 ms | p99 ms | app est. peak | "
              "app queue peak | app conns used | answered probe / upload / big / large |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for row in runs:
            f = summarise_run(row, results)
            print(f"| {row['attack']} | {row['proxy']} | {row['round']} | "
                  f"{fmt(f['success'], '{:.1f}')} | {fmt(f['p50'], '{:.1f}')} | "
                  f"{fmt(f['p99'], '{:.1f}')} | {fmt(f.get('app_est_peak', float('nan')), '{:.0f}')} | "
                  f"{fmt(f.get('app_queue_peak', float('nan')), '{:.0f}')} | "
                  f"{fmt(f['app_conns'], '{:.0f}')} | "
                  f"{fmt(f['answered_probe'], '{:.0f}')} / {fmt(f['answered_upload'], '{:.0f}')}"
                  f" / {fmt(f['answered_big'], '{:.0f}')}"
                  f" / {fmt(f['answered_large'], '{:.0f}')} |")


# ------------------------------------------------------------------ main

def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--out", required=True)
    w = commands.add_parser("watch")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--duration", type=float, required=True)
    w.add_argument("--interval", type=float, default=0.1)
    w.add_argument("--out", required=True)
    c = commands.add_parser("ports")
    c.add_argument("--log", required=True)
    c.add_argument("--from", dest="first", type=int, required=True)
    c.add_argument("--to", dest="last", type=int, required=True)
    h = commands.add_parser("h2slow")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--conns", type=int, required=True)
    h.add_argument("--streams", type=int, default=4)
    h.add_argument("--path", default="/big")
    h.add_argument("--duration", type=float, required=True)
    h.add_argument("--rate", type=float, default=200)
    h.add_argument("--window", type=int, default=1024)
    h.add_argument("--update", type=int, default=32)
    h.add_argument("--every", type=float, default=5.0)
    h.add_argument("--out", required=True)
    r = commands.add_parser("report")
    r.add_argument("results")
    args = parser.parse_args()
    {"probe": probe, "watch": watch, "ports": ports, "h2slow": h2slow,
     "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
