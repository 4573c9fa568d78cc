#!/usr/bin/env python3
"""A fake payment processor for the relay's tests: HTTPS on 127.0.0.1 with
its own test certificate, optionally requiring a client certificate.

It records every request it fully receives (method, path, headers, body) as
one JSON line in --record, and counts accepted TCP connections in --count
(the file always holds the current number), so a test can tell "nothing was
sent" from "sent but refused". Behaviour by path:

  /v1/charges     200 JSON {"id": "ch_test", "status": "succeeded", ...}
  /v1/echo        200, the request body echoed back with its content type
  /v1/redirect    302 to /v1/charges (a relay must never follow it)
  /v1/slow        answers after --slow seconds
  /v1/hang        never answers
  /v1/big         200 with a 10 MB body
  /v1/reset       the connection reset (RST) without an answer

  fake_processor.py --port P --cert C --key K [--client-ca CA]
                    --record FILE --count FILE [--slow S] [--weak-tls12] [--offer-h2]

--weak-tls12 makes it a processor that speaks only TLS 1.2 with a CBC suite
(ECDHE-ECDSA-AES128-SHA), one a strict client must refuse. --offer-h2 makes
it prefer HTTP/2 in ALPN (and still speak only HTTP/1.1): a client that
takes the offer fails.
"""
import argparse
import json
import socket
import socketserver
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

ARGS = None
LOCK = threading.Lock()
CONNECTIONS = 0


def bump_connections():
    global CONNECTIONS
    with LOCK:
        CONNECTIONS += 1
        with open(ARGS.count, "w") as f:
            f.write("%d\n" % CONNECTIONS)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the record file is the log
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _record(self, body):
        line = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        with LOCK:
            with open(ARGS.record, "a") as f:
                f.write(json.dumps(line) + "\n")

    def _answer(self, status, body, ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        body = self._body()
        self._record(body)
        path = self.path.split("?", 1)[0]
        if path == "/v1/echo":
            self._answer(200, body, self.headers.get("Content-Type") or "text/plain")
        elif path == "/v1/redirect":
            self._answer(302, b"", extra={"Location": "https://processor.test/v1/charges"})
        elif path == "/v1/slow":
            time.sleep(ARGS.slow)
            self._answer(200, b'{"status":"slow"}')
        elif path == "/v1/hang":
            time.sleep(3600)
        elif path == "/v1/big":
            chunk = b"x" * 65536
            total = 10 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(total))
            self.end_headers()
            try:
                for _ in range(total // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass
        elif path == "/v1/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        else:
            ans = {"id": "ch_test", "status": "succeeded", "received_bytes": len(body)}
            self._answer(200, json.dumps(ans).encode())

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = self.socket.accept()
        bump_connections()
        return sock, addr

    def process_request_thread(self, request, client_address):
        # The TLS handshake runs here, per connection: a failed one (untrusted
        # client, no client certificate) ends the connection, recording nothing.
        try:
            request.settimeout(30)
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        super().process_request_thread(tls, client_address)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-ca")
    p.add_argument("--record", required=True)
    p.add_argument("--count", required=True)
    p.add_argument("--slow", type=float, default=3.0)
    p.add_argument("--weak-tls12", action="store_true")
    p.add_argument("--offer-h2", action="store_true")
    ARGS = p.parse_args()
    open(ARGS.record, "a").close()
    with open(ARGS.count, "w") as f:
        f.write("0\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    if ARGS.offer_h2:
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    if ARGS.weak_tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA")
    if ARGS.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(ARGS.client_ca)
    srv = Server(("127.0.0.1", ARGS.port), Handler)
    srv.context = ctx
    srv.serve_forever()


if __name__ == "__main__":
    main()
