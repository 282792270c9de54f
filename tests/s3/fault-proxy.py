#!/usr/bin/python3
"""fault-proxy.py — a test double (issue 14): an HTTP/1.1 proxy on
127.0.0.1 in front of the lab's S3 gateway that injects faults, to prove
the S3 backend's retries and clean failures. It is not S3: it forwards each
request unchanged (so the client's SigV4 signature, made for the proxy's
Host, still holds at the gateway) and answers with Connection: close, so
every request is a new connection and faults hit requests, not connections.

  fault-proxy.py UPSTREAM_PORT PLAN PORT_FILE LOG_FILE

PLAN is a comma-separated cycle of actions applied to requests in turn:
  ok     forward the request
  503    answer 503 SlowDown without forwarding it
  reset  read the request, then close the connection without an answer
  cut    forward it, then send only the first half of the answer and close
  slowN  wait N seconds, then forward it
  down   503 for every request from now on
With $FAULT_PROXY_FAIL_MATCH set, every request whose path contains that
text is answered 503 (whatever the plan; such requests take no turn in
it): a fault that lasts, for one kind of request (issue 14: one part of a
multipart upload).
With $FAULT_PROXY_TURN_MATCH set, only requests whose path contains that
text take turns in the plan (and meet "down" once it came); the others
are forwarded: a plan counted in, say, pack GETs only ("/packs/").
The port it listens on is written to PORT_FILE; one line per request to
LOG_FILE ("METHOD PATH ACTION"; with $FAULT_PROXY_LOG_BYTES set, "METHOD
PATH ACTION BYTES", BYTES the request's body: what the client sent, for
bench/sync.sh). Ends on SIGTERM.
"""
import http.client
import os
import socket
import socketserver
import sys
import threading
import time

upstream_port = int(sys.argv[1])
plan = sys.argv[2].split(",")
port_file, log_file = sys.argv[3], sys.argv[4]
lock = threading.Lock()
state = {"n": 0, "down": False}
fail_match = os.environ.get("FAULT_PROXY_FAIL_MATCH", "")
turn_match = os.environ.get("FAULT_PROXY_TURN_MATCH", "")
log_bytes = bool(os.environ.get("FAULT_PROXY_LOG_BYTES"))


def next_action():
    with lock:
        if state["down"]:
            return "503"
        a = plan[state["n"] % len(plan)]
        state["n"] += 1
        if a == "down":
            state["down"] = True
            return "503"
        return a


def log(line):
    with lock, open(log_file, "a") as f:
        f.write(line + "\n")


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(65537).decode("latin-1").rstrip("\r\n")
        if not line:
            return
        method, path, _ = line.split(" ", 2)
        headers = []
        while True:
            h = self.rfile.readline(65537).decode("latin-1").rstrip("\r\n")
            if not h:
                break
            k, v = h.split(":", 1)
            headers.append((k.strip(), v.strip()))
        hd = {k.lower(): v for k, v in headers}
        length = int(hd.get("content-length", "0"))
        if hd.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        body = self.rfile.read(length) if length else b""
        if fail_match and fail_match in path:
            action = "503"
        elif turn_match and turn_match not in path:
            action = "ok"
        else:
            action = next_action()
        log("%s %s %s" % (method, path, action)
            + (" %d" % len(body) if log_bytes else ""))
        if action == "503":
            msg = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown'
                   b'</Code><Message>injected</Message></Error>')
            self.wfile.write(b"HTTP/1.1 503 Slow Down\r\nContent-Type: "
                             b"application/xml\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n" % len(msg) + msg)
            return
        if action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return
        if action.startswith("slow"):
            time.sleep(float(action[4:]))
        up = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
        up.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            if k.lower() not in ("expect", "connection"):
                up.putheader(k, v)
        up.endheaders(body if body or method == "PUT" else None)
        r = up.getresponse()
        data = r.read()
        out = b"HTTP/1.1 %d %s\r\n" % (r.status, r.reason.encode("latin-1"))
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                out += b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
        if method == "HEAD":
            out += b"Content-Length: %s\r\n" % r.getheader("Content-Length", "0").encode()
        else:
            out += b"Content-Length: %d\r\n" % len(data)
        out += b"Connection: close\r\n\r\n"
        up.close()
        if action == "cut":
            whole = out + data
            self.wfile.write(whole[: len(out) + len(data) // 2])
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return
        self.wfile.write(out + (b"" if method == "HEAD" else data))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
import os
os.rename(port_file + ".tmp", port_file)
import signal
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
srv.serve_forever()
