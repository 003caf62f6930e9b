#!/usr/bin/env python3
"""The body of tools/demo-prefork-redis/run (which installs the packages, builds poolgate
and then runs this file). See that script, or `--help`, for what it shows.

Every process is started in its own session, so that it and the workers it forks form
one process group, stopped at the end by that group's id (TERM, then KILL).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.realpath(__file__))
APPS = ("gunicorn", "starlet")
NOTE = "demo-prefork-redis"
LEGEND = """\
   workers        the app server's prefork workers
   answered       how many of them answered a request of the load (X-Worker)
   redis_clients  Redis CLIENT LIST, the connections this app's workers opened
   peak_open      poolgate's connections to the app server, busiest /stats sample (0.1 s)
   max_conns      poolgate's cap across all its workers (set to the app's workers)
   app_conns      established connections on the app server's port after the load (ss)
   WxP            poolgate workers x pool max_idle: the bound on idle connections
   | open..reused poolgate /stats after the load, summed over its workers
"""


class DemoError(Exception):
    """A step failed; the message says which, the logs named by `logs` say why."""

    def __init__(self, message, logs=()):
        super().__init__(message)
        self.logs = logs


def say(text=""):
    print(text, flush=True)


# ------------------------------------------------------------------ processes

class Group:
    """A started process and the workers it forks: one process group, one log file."""

    def __init__(self, name, argv, log_path, env=None, pass_fds=(), stop_signal=signal.SIGTERM):
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, pass_fds=pass_fds,
                                         start_new_session=True, cwd=HERE)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def children(self):
        return children_of(self.pid)

    def stop(self):
        """The leader gets its own stop signal and 5 s; then the group gets TERM, KILL."""
        if self.alive():
            try:
                self.proc.send_signal(self.stop_signal)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                say(f"{NOTE}: {self.name} (pid {self.pid}) did not stop within 5 s")
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0)):
            if not group_exists(self.pid):
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + grace
            while group_exists(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def group_exists(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            kids.append(int(entry))
    return sorted(kids)


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def wait_until(what, check, seconds, watch=(), logs=()):
    """Polls check() every 0.1 s until it returns a true value, which it returns. Fails
    when a process of `watch` exits, or after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        for group in watch:
            if not group.alive():
                raise DemoError(f"{group.name} exited while waiting for {what}",
                                logs=[group.log_path, *logs])
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {seconds:g} s waiting for {what}",
                            logs=[g.log_path for g in watch] + list(logs))
        time.sleep(0.1)


def listening_socket():
    """A loopback socket on a port the kernel picks, already listening, so an app server
    can inherit it (gunicorn's fd://N, Starlet's SERVER_STARTER_PORT) with no race."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def free_port():
    """For redis-server, which cannot take a socket or port 0: bound, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ observing

def established(ports):
    """`ss -Htn state established`: connections whose local port is one of `ports`,
    i.e. accepted by the server on that port. {port: count}."""
    expr = " or ".join(f"sport = :{p}" for p in ports)
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( {expr} )"],
                         capture_output=True, text=True, check=True).stdout
    counts = {p: 0 for p in ports}
    for line in out.splitlines():
        fields = line.split()
        # Recv-Q Send-Q Local:Port Peer:Port (the state column is left out with `state`)
        if len(fields) >= 3:
            port = int(fields[2].rsplit(":", 1)[1])
            if port in counts:
                counts[port] += 1
    return counts


class RedisView:
    """The script's own connection to Redis, named 'observer' so it is not counted."""

    def __init__(self, port):
        import redis  # installed by tools/install-deps demo-redis
        self.client = redis.Redis(host="127.0.0.1", port=port, client_name="observer",
                                  socket_timeout=5)

    def ping(self):
        try:
            return self.client.ping()
        except Exception:  # not up yet
            return False

    def clients(self):
        """{name prefix: count} of the connections other than this one."""
        counts = {}
        for c in self.client.client_list():
            name = c.get("name", "")
            if name == "observer":
                continue
            kind = name.split(":", 1)[0] or "(unnamed)"
            counts[kind] = counts.get(kind, 0) + 1
        return counts


class Poolgate:
    def __init__(self, binary, work_dir, groups):
        self.binary = binary
        self.groups = groups  # the demo's list of started groups, for the clean-up
        self.config = os.path.join(work_dir, "poolgate.conf")
        self.log_path = os.path.join(work_dir, "poolgate.log")
        self.group = None
        self.proxy = "127.0.0.1:0"
        self.admin = "127.0.0.1:0"
        self.generation = 0

    def write_config(self, workers, pool, servers):
        """servers: {upstream name: (address, app workers)}."""
        upstreams = ",\n".join(
            f'  {{ name = "{name}"; servers = ( {{ address = "{address}"; }} );\n'
            f'    pool = {{ max_idle = {pool}; max_conns = {app_workers}; idle_timeout = 30.0; }}; }}'
            for name, (address, app_workers) in servers.items())
        routes = ",\n".join(f'  {{ host = "*"; prefix = "/{name}/"; upstream = "{name}"; }}'
                            for name in servers)
        text = (f"# Written by tools/demo-prefork-redis/run.\n"
                f"workers = {workers};\nshutdown_timeout = 5.0;\n"
                f'log = {{ level = "info"; error = "stderr"; }};\n'
                f'listen = ( {{ address = "{self.proxy}"; }} );\n'
                f'admin = {{ address = "{self.admin}"; }};\n'
                f"upstreams = (\n{upstreams}\n);\nroutes = (\n{routes}\n);\n")
        with open(self.config, "w") as f:
            f.write(text)
        check = subprocess.run([self.binary, "-t", "-c", self.config],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise DemoError(f"poolgate -t rejected {self.config}:\n{check.stdout}{check.stderr}")

    def start(self, workers):
        self.group = Group("poolgate", [self.binary, "-c", self.config], self.log_path)
        self.groups.append(self.group)
        pattern = re.compile(r"listening on (127\.0\.0\.1:\d+) \((proxy|admin)\)")

        def ports():
            found = dict((kind, addr) for addr, kind in pattern.findall(tail(self.log_path, 50)))
            return found if len(found) == 2 else None

        found = wait_until("poolgate's listening ports in its log", ports, 15, [self.group])
        self.proxy, self.admin = found["proxy"], found["admin"]
        self.generation = 1
        self.wait_running(workers)

    def reload(self, workers):
        """SIGHUP: the master re-reads the file and starts generation g+1 on the same
        sockets; waits until it runs and the old generation has drained away."""
        self.group.proc.send_signal(signal.SIGHUP)
        self.generation += 1
        self.wait_running(workers)

    def stats(self):
        with urllib.request.urlopen(f"http://{self.admin}/stats", timeout=5) as r:
            return json.load(r)

    def wait_running(self, workers):
        def ready():
            try:
                s = self.stats()
            except OSError:
                return None
            ws = s["workers"]
            ok = (s["generation"] == self.generation and len(ws) == workers
                  and all(w["state"] == "running" and w["generation"] == self.generation
                          for w in ws))
            return s if ok else None

        wait_until(f"{workers} poolgate worker(s) of generation {self.generation}", ready, 30,
                   [self.group])


# ------------------------------------------------------------------ load

class Load:
    """threads[app] client threads per app, each with one keep-alive connection to poolgate,
    each sending `requests` GETs to /APP/ one after the other. Meanwhile a sampler notes
    the peak of poolgate's open connections to each app server."""

    def __init__(self, proxy, app_ports, threads, requests, stats):
        self.host, port = proxy.rsplit(":", 1)
        self.port = int(port)
        self.app_ports = app_ports  # {app: port}
        self.threads, self.requests = threads, requests
        self.ok = {a: 0 for a in app_ports}
        self.failed = {a: 0 for a in app_ports}
        self.workers_seen = {a: set() for a in app_ports}
        self.peak_open = {a: 0 for a in app_ports}  # poolgate's open, summed over workers
        self.stats = stats
        self.lock = threading.Lock()
        self.running = True

    def client(self, app):
        conn = None
        ok = failed = 0
        seen = set()
        for _ in range(self.requests):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
                conn.request("GET", f"/{app}/")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    ok += 1
                    seen.add(resp.getheader("X-Worker"))
                else:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with self.lock:
            self.ok[app] += ok
            self.failed[app] += failed
            self.workers_seen[app] |= seen

    def sample(self):
        # From /stats, not ss: ss walks the kernel's table while connections come and go,
        # so under churn (gunicorn closes every connection) it can count one twice.
        while self.running:
            try:
                s = self.stats()
            except OSError:
                s = None
            for app in self.app_ports if s else ():
                self.peak_open[app] = max(self.peak_open[app], pool_sums(s, app)["open"])
            time.sleep(0.1)

    def run(self):
        sampler = threading.Thread(target=self.sample, daemon=True)
        sampler.start()
        clients = [threading.Thread(target=self.client, args=(app,), daemon=True)
                   for app in self.app_ports for _ in range(self.threads[app])]
        start = time.monotonic()
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        self.seconds = time.monotonic() - start
        self.running = False
        sampler.join()


# ------------------------------------------------------------------ printing

def table(headers, rows, indent="  "):
    """Aligned columns: numbers to the right, text to the left. `headers` is a list of
    header lines (each a list of cells, one per column)."""
    cells = [[str(c) for c in row] for row in headers + rows]
    width = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    numeric = [i > 0 and all(re.fullmatch(r"[\d .x|-]*", row[i]) for row in cells[len(headers):])
               for i in range(len(width))]

    def line(row):
        return indent + "  ".join(c.rjust(width[i]) if numeric[i] else c.ljust(width[i])
                                  for i, c in enumerate(row)).rstrip()

    out = [line(r) for r in cells[:len(headers)]]
    out.append(indent + "  ".join("-" * w for w in width))
    out += [line(r) for r in cells[len(headers):]]
    say("\n".join(out))


def server_of(worker, upstream):
    for u in worker.get("upstreams", []):
        if u["name"] == upstream and u.get("servers"):
            return u["servers"][0]
    return None


def pool_sums(stats, upstream):
    keys = ("open", "idle", "active", "opened_total", "reused_total")
    sums = dict.fromkeys(keys, 0)
    for w in stats["workers"]:
        s = server_of(w, upstream)
        if s:
            for k in keys:
                sums[k] += s.get(k, 0)
    return sums


# ------------------------------------------------------------------ the demo

class Demo:
    def __init__(self, args):
        self.args = args
        self.work_dir = tempfile.mkdtemp(prefix="poolgate-redis-demo.")
        self.groups = []
        self.redis = None
        self.poolgate = Poolgate(args.poolgate, self.work_dir, self.groups)
        self.apps = {}   # app name -> {"group", "port", "workers"}

    def log(self, name):
        return os.path.join(self.work_dir, name + ".log")

    def start(self, name, argv, **kw):
        group = Group(name, argv, self.log(name), **kw)
        self.groups.append(group)
        return group

    def stop_all(self):
        """poolgate first: a Starlet worker waiting on one of its keep-alive connections
        would finish that connection before it obeys SIGTERM."""
        if self.poolgate.group in self.groups:
            self.groups.remove(self.poolgate.group)
            self.poolgate.group.stop()
        while self.groups:
            self.groups.pop().stop()

    # -- Redis
    def start_redis(self):
        for _ in range(3):  # a port chosen by free_port() may be taken in between
            port = free_port()
            group = self.start("redis-server", [
                "redis-server", "--bind", "127.0.0.1", "--port", str(port),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.work_dir, "--logfile", "", "--loglevel", "warning",
                "--protected-mode", "yes"])
            view = RedisView(port)
            try:
                wait_until("redis-server to answer PING", view.ping, 10, [group])
            except DemoError:
                if group.alive():
                    raise
                self.groups.remove(group)
                group.stop()
                continue
            self.redis, self.redis_port = view, port
            return
        raise DemoError("redis-server did not start", logs=[self.log("redis-server")])

    # -- app servers
    def app_env(self):
        env = dict(os.environ)
        env["DEMO_REDIS"] = f"127.0.0.1:{self.redis_port}"
        env["DEMO_DELAY"] = str(self.args.delay)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the tree
        return env

    def start_app(self, app, workers, log_name=None):
        sock = listening_socket()
        port, fd = sock.getsockname()[1], sock.fileno()
        env = self.app_env()
        if app == "gunicorn":
            argv = ["gunicorn", "--bind", f"fd://{fd}", "--workers", str(workers),
                    "--worker-class", "sync", "--graceful-timeout", "3",
                    "--log-level", "warning", "app:application"]
        else:
            env["SERVER_STARTER_PORT"] = f"127.0.0.1:{port}={fd}"
            argv = ["plackup", "-s", "Starlet", "-E", "deployment",
                    "--max-workers", str(workers), "--max-keepalive-reqs", "1000000",
                    "--keepalive-timeout", "60", "--max-reqs-per-child", "1000000",
                    "app.psgi"]
        try:
            group = self.start(log_name or app, argv, env=env, pass_fds=(fd,))
        finally:
            sock.close()  # the app server has its copy
        self.apps[app] = {"group": group, "port": port, "workers": workers}
        self.wait_app(app)

    def wait_app(self, app):
        a = self.apps[app]
        group, workers = a["group"], a["workers"]
        wait_until(f"{app} to run {workers} workers",
                   lambda: len(group.children()) == workers, 30, [group])

        def pong():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", a["port"], timeout=2)
                conn.request("GET", "/ping", headers={"Connection": "close"})
                ok = conn.getresponse().status == 200
                conn.close()
                return ok
            except (OSError, http.client.HTTPException):
                return False

        wait_until(f"{app} to answer on 127.0.0.1:{a['port']}", pong, 30, [group])

    def resize_gunicorn(self, workers):
        """gunicorn's master adds a worker per SIGTTIN and retires one per SIGTTOU."""
        a = self.apps["gunicorn"]
        sig = signal.SIGTTIN if workers > a["workers"] else signal.SIGTTOU
        for _ in range(abs(workers - a["workers"])):
            a["group"].proc.send_signal(sig)
            time.sleep(0.2)  # the master handles one queued signal per loop turn
        a["workers"] = workers
        self.wait_app("gunicorn")

    def servers(self):
        return {app: (f"127.0.0.1:{a['port']}", a["workers"]) for app, a in self.apps.items()}

    # -- one measured phase
    def phase(self, number, w, p):
        ports = {app: a["port"] for app, a in self.apps.items()}
        # One client per app worker by default: every worker gets requests (and so opens
        # its Redis connection), and no request has to wait for a place under max_conns.
        threads = {app: self.args.threads or a["workers"] for app, a in self.apps.items()}
        load = Load(self.poolgate.proxy, ports, threads, self.args.requests,
                    self.poolgate.stats)
        load.run()
        # After the load: wait for the pools to settle (a connection over max_idle is
        # closed as its request completes; gunicorn closes every connection itself).
        def settled():
            s = self.poolgate.stats()
            return s if all(pool_sums(s, app)["active"] == 0 for app in APPS) else None
        stats = wait_until("poolgate's upstream connections to go idle", settled, 10,
                           [self.poolgate.group])
        now = established(list(ports.values()) + [self.redis_port])
        clients = self.redis.clients()

        total = sum(load.ok.values()) + sum(load.failed.values())
        say(f"\n== phase {number}: poolgate {w} workers x pool max_idle {p} "
            f"(bound W x P = {w * p} idle connections per app server)")
        say(f"   load: {total} requests (client threads: "
            f"{', '.join(f'{n} for {app}' for app, n in threads.items())}; "
            f"{self.args.requests} requests each) in {load.seconds:.1f} s; "
            f"{sum(load.ok.values())} answered 200, {sum(load.failed.values())} failed\n")
        if number == 1:
            say(LEGEND)
        headers = [["app server", "workers", "answered", "redis_clients", "peak_open",
                    "max_conns", "app_conns", "WxP", "|", "open", "idle", "active", "opened",
                    "reused"]]
        rows = []
        for app in APPS:
            pool = pool_sums(stats, app)
            rows.append([app, self.apps[app]["workers"], len(load.workers_seen[app]),
                         clients.get(app, 0), load.peak_open[app], self.apps[app]["workers"],
                         now[ports[app]], w * p, "|", pool["open"], pool["idle"],
                         pool["active"], pool["opened_total"], pool["reused_total"]])
        table(headers, rows)
        say(f"\n   Redis: CLIENT LIST {sum(clients.values())} app connections "
            f"(+1, this script); ss on its port: {now[self.redis_port]} established.")
        say("\n   poolgate /stats per worker (upstream connections of each worker):")
        rows = []
        for wk in stats["workers"]:
            for app in APPS:
                s = server_of(wk, app) or {}
                closed = ", ".join(f"{k} {v}" for k, v in s.get("no_reuse", {}).items() if v)
                rows.append([wk["slot"], wk["pid"], wk["generation"], wk["state"], app,
                             s.get("open", 0), s.get("idle", 0), s.get("active", 0),
                             s.get("opened_total", 0), s.get("reused_total", 0),
                             closed or "-"])
        table([["worker", "pid", "gen", "state", "upstream", "open", "idle", "active",
                "opened_total", "reused_total", "no_reuse (closed, not pooled)"]], rows)
        if sum(load.failed.values()):
            raise DemoError(f"{sum(load.failed.values())} requests failed in phase {number}",
                            logs=[self.poolgate.log_path])
        return {app: (clients.get(app, 0), now[ports[app]]) for app in APPS}

    # -- the leak
    def leak(self, w, p):
        say(f"\n== leak mode: every request to /gunicorn/leak and /starlet/leak opens a NEW "
            f"Redis connection\n   and keeps it (never closed). One request to each app per "
            f"step, one at a time.\n   Dashboard: http://{self.poolgate.admin}/ (with --hold it "
            f"stays up: poolgate's upstream connections stay flat\n   under the W x P line "
            f"while Redis's count climbs; the leak is behind the app servers, not in front)\n")
        host, port = self.poolgate.proxy.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=15)
        ports = [a["port"] for a in self.apps.values()]
        steps = self.args.leak
        samples = sorted({1, 2, 3, 4, 5, steps // 4, steps // 2, steps} - {0})
        rows = []
        for step in range(1, steps + 1):
            for app in APPS:
                conn.request("GET", f"/{app}/leak")
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise DemoError(f"GET /{app}/leak answered {resp.status}",
                                    logs=[self.poolgate.log_path, self.log(app)])
            if step in samples:
                c = self.redis.clients()
                s = self.poolgate.stats()["totals"]
                rows.append([step, 2 * step, sum(c.values()), c.get("gunicorn-leak", 0),
                             c.get("starlet-leak", 0),
                             c.get("gunicorn", 0) + c.get("starlet", 0),
                             sum(established(ports).values()), s["upstream_open"], 2 * w * p])
        conn.close()
        table([["step", "requests", "Redis", "leaked:", "leaked:", "cached", "app conns",
                "poolgate", "bound"],
               ["", "", "CLIENT LIST", "gunicorn", "starlet", "(1/worker)", "(ss)",
                "upstream open", "2 x W x P"]], rows)
        return rows[-1][2]

    def hold(self, w, p):
        say(f"\n== holding (--hold): dashboard http://{self.poolgate.admin}/ , "
            f"proxy http://{self.poolgate.proxy}/gunicorn/ and /starlet/\n"
            f"   one leak request per app every second; Ctrl-C stops everything.\n")
        host, port = self.poolgate.proxy.rsplit(":", 1)
        while True:
            for app in APPS:
                conn = http.client.HTTPConnection(host, int(port), timeout=15)
                conn.request("GET", f"/{app}/leak")
                conn.getresponse().read()
                conn.close()
            c = self.redis.clients()
            t = self.poolgate.stats()["totals"]
            say(f"   {time.strftime('%H:%M:%S')}  Redis clients {sum(c.values()):5d}   "
                f"poolgate upstream open {t['upstream_open']} (bound {2 * w * p})")
            time.sleep(1)

    def run(self):
        a = self.args
        (w1, p1, g1, s1), (w2, p2, g2, s2) = a.first, a.second
        say(f"{NOTE}: working in {self.work_dir}")
        self.start_redis()
        say(f"{NOTE}: redis-server on 127.0.0.1:{self.redis_port} (no persistence)")
        self.start_app("gunicorn", g1)
        self.start_app("starlet", s1)
        for app, x in self.apps.items():
            say(f"{NOTE}: {app} on 127.0.0.1:{x['port']}, {x['workers']} prefork workers "
                f"(pid {x['group'].pid}; workers {' '.join(map(str, x['group'].children()))})")
        self.poolgate.write_config(w1, p1, self.servers())
        self.poolgate.start(w1)
        say(f"{NOTE}: poolgate (pid {self.poolgate.group.pid}) proxy http://{self.poolgate.proxy}/, "
            f"admin http://{self.poolgate.admin}/ ; routes /gunicorn/ and /starlet/")
        say(f"{NOTE}: before any load, Redis has {sum(self.redis.clients().values())} "
            f"app connections: each worker connects on its first request")
        first = self.phase(1, w1, p1)

        say(f"\n== changing: poolgate workers {w1} -> {w2} and max_idle {p1} -> {p2} "
            f"(SIGHUP reload), gunicorn workers {g1} -> {g2} (SIGTTIN/SIGTTOU),\n"
            f"   Starlet workers {s1} -> {s2} (a new Starlet; the reload points poolgate at it)")
        old_starlet = self.apps["starlet"]["group"]
        self.resize_gunicorn(g2)
        self.start_app("starlet", s2, log_name="starlet-2")
        self.poolgate.write_config(w2, p2, self.servers())
        self.poolgate.reload(w2)
        self.groups.remove(old_starlet)
        old_starlet.stop()
        c = self.redis.clients()
        say(f"   done: poolgate generation {self.poolgate.generation} runs {w2} workers; before "
            f"the next load Redis has {c.get('gunicorn', 0)} connections from gunicorn, "
            f"{c.get('starlet', 0)} from Starlet")
        second = self.phase(2, w2, p2)

        leaked = self.leak(w2, p2)
        say("\n== summary")
        rows = [["poolgate workers W x max_idle P", f"{w1} x {p1}", f"{w2} x {p2}"]]
        for i, app in enumerate(APPS):
            rows.append([f"{app} workers", (g1, s1)[i], (g2, s2)[i]])
            rows.append([f"  Redis connections from {app}", first[app][0], second[app][0]])
            rows.append([f"  {app} connections from poolgate", first[app][1], second[app][1]])
        rows.append(["Redis connections after the leak steps", "", leaked])
        table([["", "phase 1", "phase 2"]], rows)
        say("\nRedis connections = app workers (one cached connection each), whatever poolgate "
            "does;\nconnections the app servers accept from poolgate stay <= W x P once idle "
            "(gunicorn's sync\nworkers close every connection, so none stays open to them).")
        if a.hold:
            self.hold(w2, p2)


def phase_arg(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or min(values) < 1 or max(values) > 32:
        raise argparse.ArgumentTypeError("want W,P,GUNICORN,STARLET: four integers 1..32")
    return values


def main():
    parser = argparse.ArgumentParser(prog="tools/demo-prefork-redis/run",
                                     description="see tools/demo-prefork-redis/run")
    parser.add_argument("--poolgate", required=True, help="the poolgate binary")
    parser.add_argument("--first", type=phase_arg, default=[2, 2, 4, 6],
                        help="phase 1: poolgate workers, max_idle, gunicorn and Starlet "
                             "workers (default 2,2,4,6)")
    parser.add_argument("--second", type=phase_arg, default=[3, 1, 6, 3],
                        help="phase 2, the same four (default 3,1,6,3)")
    parser.add_argument("--threads", type=int, default=0,
                        help="client threads per app server (default 0: as many as it has "
                             "workers)")
    parser.add_argument("--requests", type=int, default=100,
                        help="requests per client thread (default 100)")
    parser.add_argument("--delay", type=float, default=0.01,
                        help="seconds each app request sleeps (default 0.01)")
    parser.add_argument("--leak", type=int, default=40,
                        help="leak steps, one request to each app per step (default 40)")
    parser.add_argument("--hold", action="store_true",
                        help="at the end keep everything running (and leaking slowly) "
                             "until Ctrl-C, to watch the dashboard")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (configs, logs)")
    args = parser.parse_args()
    if not (0 <= args.threads <= 32 and 1 <= args.requests <= 1000 and 1 <= args.leak <= 500):
        parser.error("--threads 0..32, --requests 1..1000, --leak 1..500")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    demo = Demo(args)
    status = 0
    try:
        demo.run()
    except DemoError as e:
        say(f"\n{NOTE}: FAILED: {e}")
        for path in dict.fromkeys(e.logs):
            text = tail(path)
            if text:
                say(f"---- {os.path.basename(path)} (last lines)\n{text.rstrip()}")
        status = 1
    except Exception:  # a bug or an unexpected answer: say where, still clean up
        say(f"\n{NOTE}: FAILED with an unexpected error:\n{traceback.format_exc().rstrip()}")
        status = 1
    except KeyboardInterrupt:
        say(f"\n{NOTE}: interrupted")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        demo.stop_all()
        if args.keep:
            say(f"{NOTE}: kept {demo.work_dir}")
        else:
            shutil.rmtree(demo.work_dir, ignore_errors=True)
        say(f"{NOTE}: stopped every process it started")
    return status


if __name__ == "__main__":
    sys.exit(main())
