#!/usr/bin/env python3
"""A stand-in payment processor for tests/scenarios/relay.sh: HTTPS on one
port, optionally requiring a client certificate. It appends every accepted
TCP connection to LOGDIR/connections and every request (method, path, body)
to LOGDIR/requests, and answers by path:
  /v1/charges   200, JSON echoing the body it received (as a processor's
                error echo would: the card comes back in the answer)
  /v1/redirect  302 to /v1/charges (must never be followed)
  /v1/slow      answers after 10 s
  /v1/silent    never answers
  /v1/big       200 with 10 MB of body
  /v1/reset     closes the connection with a TCP reset, no answer
usage: relay-processor.py PORT CERT KEY CLIENT_CA|- LOGDIR"""
import http.server
import os
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

port, cert, key, client_ca, logdir = sys.argv[1:6]
lock = threading.Lock()


def log(name, text):
    with lock, open(f"{logdir}/{name}", "ab") as f:
        f.write(text)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        log("requests", b"%s %s\n" % (self.command.encode(), self.path.encode()) + body + b"\n--\n")
        if self.path == "/v1/redirect":
            self.answer(302, b"", [("Location", "/v1/charges")])
        elif self.path == "/v1/slow":
            time.sleep(10)
            self.answer(200, b"{}")
        elif self.path == "/v1/silent":
            time.sleep(3600)
        elif self.path == "/v1/big":
            self.answer(200, b"x" * (10 * 1024 * 1024))
        elif self.path == "/v1/reset":
            # SO_LINGER 0 and a close of the descriptor itself: an RST now
            # (closing the Python object would wait for its file wrappers).
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(self.connection.detach())
            self.close_connection = True
        else:
            echo = json.dumps({"id": "ch_1", "paid": True, "received": body.decode("utf-8", "replace")})
            self.answer(200, echo.encode(), [("Content-Type", "application/json"),
                                             ("Set-Cookie", "session=secret")])

    def answer(self, code, body, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def get_request(self):
        sock, addr = self.socket.accept()
        log("connections", b"tcp\n")
        return sock, addr


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if client_ca != "-":
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_ca)
srv = Server(("127.0.0.1", int(port)), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=True)
print("ready", flush=True)
srv.serve_forever()
