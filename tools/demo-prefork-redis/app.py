"""The WSGI app of tools/demo-prefork-redis, served by gunicorn's sync (prefork) workers.

Each request INCRs a counter in Redis and answers with the worker's pid and the count.
The Redis connection is opened on the worker's first request and kept for every later
one: the usual "one cached connection" of a client library, which a prefork server
multiplies by its number of workers. A path ending in /leak opens a NEW connection on
every request and keeps it referenced, so it is never closed (the leak). /ping answers
without touching Redis (the script's readiness probe).

Environment: DEMO_REDIS (host:port), DEMO_DELAY (seconds per request, default 0.01).
"""

import os
import time

import redis

REDIS_HOST, REDIS_PORT = os.environ["DEMO_REDIS"].rsplit(":", 1)
DELAY = float(os.environ.get("DEMO_DELAY", "0.01"))

cached = None  # this worker's one connection; None until its first request
leaked = []    # leak mode: every connection opened, still referenced, never closed


def connect(kind):
    return redis.Redis(host=REDIS_HOST, port=int(REDIS_PORT),
                       client_name="%s:%d" % (kind, os.getpid()))


def application(environ, start_response):
    global cached
    path = environ.get("PATH_INFO", "")
    if path.endswith("/ping"):
        body = b"pong\n"
    else:
        if path.endswith("/leak"):
            conn = connect("gunicorn-leak")
            leaked.append(conn)
        else:
            if cached is None:
                cached = connect("gunicorn")
            conn = cached
        count = conn.incr("demo:gunicorn")
        time.sleep(DELAY)
        body = ("gunicorn worker %d count %d\n" % (os.getpid(), count)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("X-Worker", str(os.getpid()))])
    return [body]
