"""An origin that misbehaves on purpose: a raw-socket HTTP/1.1 server on loopback whose answer is
chosen per path, for attack tests that need what a real server library would refuse to send.

    with EvilOrigin() as o:
        o.url                      # "http://127.0.0.1:PORT"
        o.count("/clte/a")         # requests seen for that path (query excluded)
        o.last_headers("/clte/a")  # the last request's headers for that path (names lowercased)
        o.set("/x/y", "clte")      # answer /x/y with behaviour "clte" from now on (None: back to default)
        o.gate("/x/y"); o.open("/x/y")   # hold answers on that path until opened

The behaviour of a path is its override (set()) or else the path's first segment: /clte/anything is
answered by `clte`. Query parameters tune some behaviours (see BEHAVIOURS). Every answer carries
no Vary and no Cache-Control unless a behaviour says otherwise: the proxy's cache rules decide.

Behaviours (bodies are small JSON or text; `n` = this path's request count, so a body tells which
origin request produced it):
  ok         200, Content-Length, body {"path":..., "n":N}
  clte       Content-Length: 3 and Transfer-Encoding: chunked, chunked body "hello"
  twocl      two Content-Length headers (5 and 3), body "hello"
  badcl      Content-Length: abc
  long       Content-Length: 3, body "hello" (longer than announced)
  short      Content-Length: 10, body "hello", then close (shorter than announced)
  badchunk   chunked, chunk size "zz"
  chunkeof   chunked, one chunk then close without the last chunk
  drip       Content-Length: n, `first` bytes at once (default 0), the rest at `rate` bytes/s (?n=20&rate=1)
  stall      Content-Length: n, `first` bytes, a pause of `pause` seconds, the rest (?n=10&first=5&pause=4)
  slowhead   waits `delay` seconds (default 1), then as ok
  reflect    200, body = JSON of every request header received (lowercased names), no Vary
Add behaviours by adding a method `b_<name>(self, conn, req)` (or to BEHAVIOURS); it writes the
whole answer and returns True to keep the connection open.
"""
import json
import socket
import threading
import time
import urllib.parse


class Request:
    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        u = urllib.parse.urlsplit(target)
        self.path = u.path
        self.query = dict(urllib.parse.parse_qsl(u.query))
        self.version = version
        self.headers = headers  # list of (lowercased name, value), in order

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def qf(self, name, default):
        return float(self.query.get(name, default))


class EvilOrigin:
    def __init__(self, host="127.0.0.1"):
        self.host = host
        self._lock = threading.Lock()
        self._counts = {}
        self._headers = {}
        self._overrides = {}
        self._gates = {}
        self._stop = threading.Event()
        self._sock = None
        self._threads = []
        self._conns = set()

    # ---- control -------------------------------------------------------------------------------

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def count(self, path):
        with self._lock:
            return self._counts.get(path, 0)

    def last_headers(self, path):
        """Headers of the last request for `path` as a dict (lowercased names; a repeated name
        keeps every value joined by ', ')."""
        with self._lock:
            hs = self._headers.get(path)
        if hs is None:
            return None
        out = {}
        for k, v in hs:
            out[k] = out[k] + ", " + v if k in out else v
        return out

    def set(self, path, behaviour):
        with self._lock:
            if behaviour is None:
                self._overrides.pop(path, None)
            else:
                self._overrides[path] = behaviour

    def gate(self, path):
        with self._lock:
            self._gates[path] = threading.Event()

    def open(self, path):
        with self._lock:
            ev = self._gates.pop(path, None)
        if ev is not None:
            ev.set()

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        with self._lock:
            gates = list(self._gates.values())
            self._gates.clear()
            conns = list(self._conns)
        for g in gates:
            g.set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(10)
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._conns.add(conn)
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    # ---- HTTP/1.1 reading ----------------------------------------------------------------------

    def _read_request(self, conn, buf):
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None, buf
            buf += chunk
            if len(buf) > 1 << 20:
                return None, buf
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        req = Request(method, target, version, headers)
        cl = int(req.header("content-length") or 0)
        while len(rest) < cl:
            chunk = conn.recv(65536)
            if not chunk:
                return None, b""
            rest += chunk
        return req, rest[cl:]

    def _serve(self, conn):
        conn.settimeout(30)
        buf = b""
        try:
            while not self._stop.is_set():
                req, buf = self._read_request(conn, buf)
                if req is None:
                    return
                with self._lock:
                    self._counts[req.path] = self._counts.get(req.path, 0) + 1
                    n = self._counts[req.path]
                    self._headers[req.path] = list(req.headers)
                    name = self._overrides.get(req.path) or req.path.strip("/").split("/")[0]
                    gate = self._gates.get(req.path)
                req.n = n
                if gate is not None:
                    gate.wait(30)
                if self._stop.is_set():
                    return
                keep = getattr(self, "b_" + name, self.b_notfound)(conn, req)
                if not keep:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    # ---- behaviours ----------------------------------------------------------------------------

    @staticmethod
    def _head(status, headers):
        reason = {200: "OK", 404: "Not Found"}.get(status, "X")
        lines = ["HTTP/1.1 %d %s" % (status, reason)] + ["%s: %s" % kv for kv in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _json(self, req):
        return json.dumps({"path": req.path, "n": req.n}).encode()

    def b_notfound(self, conn, req):
        body = b'{"error":"no such behaviour"}'
        conn.sendall(self._head(404, [("Content-Type", "application/json"), ("Content-Length", len(body))]) + body)
        return True

    def b_ok(self, conn, req):
        body = self._json(req)
        conn.sendall(self._head(200, [("Content-Type", "application/json"), ("Content-Length", len(body))]) + body)
        return True

    def b_coding(self, conn, req):
        """A cacheable 200 in a content coding named by ?ce= (default a made-up one)."""
        body = self._json(req)
        conn.sendall(self._head(200, [("Content-Type", "application/json"), ("Cache-Control", "max-age=60"),
                                      ("Content-Encoding", req.query.get("ce", "x-unheard-of")),
                                      ("Content-Length", len(body))]) + body)
        return True

    def b_slowhead(self, conn, req):
        time.sleep(req.qf("delay", 1))
        return self.b_ok(conn, req)

    def b_clte(self, conn, req):
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Content-Length", "3"),
                                      ("Transfer-Encoding", "chunked")]) + b"5\r\nhello\r\n0\r\n\r\n")
        return True

    def b_twocl(self, conn, req):
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Content-Length", "5"),
                                      ("Content-Length", "3")]) + b"hello")
        return True

    def b_badcl(self, conn, req):
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Content-Length", "abc")]) + b"hello")
        return False

    def b_long(self, conn, req):
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Content-Length", "3")]) + b"hello")
        return True

    def b_short(self, conn, req):
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Content-Length", "10")]) + b"hello")
        return False

    def b_badchunk(self, conn, req):
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")]) +
                     b"zz\r\nhello\r\n0\r\n\r\n")
        return False

    def b_chunkeof(self, conn, req):
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked")]) +
                     b"5\r\nhello\r\n")
        return False

    def b_drip(self, conn, req):
        n = int(req.qf("n", 20))
        first = int(req.qf("first", 0))
        gap = 1.0 / req.qf("rate", 1)
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Content-Length", n)]) + b"x" * first)
        for _ in range(n - first):
            if self._stop.wait(gap):
                return False
            conn.sendall(b"x")
        return True

    def b_stall(self, conn, req):
        n = int(req.qf("n", 10))
        first = int(req.qf("first", 5))
        conn.sendall(self._head(200, [("Content-Type", "text/plain"), ("Content-Length", n)]) + b"x" * first)
        if self._stop.wait(req.qf("pause", 4)):
            return False
        conn.sendall(b"y" * (n - first))
        return True

    def b_reflect(self, conn, req):
        body = json.dumps({"n": req.n, "headers": req.headers}).encode()
        conn.sendall(self._head(200, [("Content-Type", "application/json"), ("Content-Length", len(body))]) + body)
        return True
