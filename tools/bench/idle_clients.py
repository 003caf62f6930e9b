#!/usr/bin/env python3
"""Open K idle keep-alive client connections to a proxy and hold them.

Used by tools/bench/run to measure the memory a proxy spends per idle client
connection. Each connection sends one request, reads the complete response
(Content-Length framed) and then stays open and silent. When all connections are
open the script prints one line

    ready opened=K ok=N failed=F

on stdout (flushed) and then holds the connections until it gets SIGTERM/SIGINT or
--hold seconds pass.
"""

import argparse
import resource
import signal
import socket
import sys
import time


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = hard if hard != resource.RLIM_INFINITY else needed
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, target), hard))


def read_response(sock):
    """Reads one Content-Length framed response; returns the status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--path", default="/100b")
    parser.add_argument("--hold", type=float, default=600.0)
    parser.add_argument("--tls", action="store_true",
                        help="speak TLS to the port (the certificate is not checked)")
    parser.add_argument("--sni", default="bench", help="server name sent with --tls")
    args = parser.parse_args()

    context = None
    if args.tls:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    raise_fd_limit(args.count + 64)
    request = (f"GET {args.path} HTTP/1.1\r\nHost: bench\r\n"
               f"User-Agent: idle_clients\r\n\r\n").encode()

    connections = []
    ok = failed = consecutive_failures = 0
    for _ in range(args.count):
        try:
            sock = socket.create_connection((args.host, args.port), timeout=5)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=args.sni)
            sock.sendall(request)
            if 200 <= read_response(sock) < 300:
                ok += 1
            else:
                failed += 1
            connections.append(sock)
            consecutive_failures = 0
        except OSError as error:
            failed += 1
            consecutive_failures += 1
            print(f"idle_clients: {error}", file=sys.stderr)
            if len(connections) == 0 or consecutive_failures >= 3:
                break  # the proxy stopped accepting: report what is open

    print(f"ready opened={len(connections)} ok={ok} failed={failed}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + args.hold
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for sock in connections:
            sock.close()


if __name__ == "__main__":
    main()
