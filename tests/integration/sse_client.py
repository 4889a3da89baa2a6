"""A small Server-Sent Events client over a raw socket (HTTP/1.1), for tests: collects events in a
background thread; can also stop reading on purpose (a stalled subscriber)."""
import socket
import threading
import time


class SSEClient:
    def __init__(self, host, port, path, headers=None, read=True, timeout=10):
        self.events = []       # dicts: id, event, data
        self.comments = []
        self.status = None
        self.headers = {}
        self.closed = False
        self.lock = threading.Lock()
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if not read:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port), "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.thread = None
        if read:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if self.status is None and b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    hl = head.decode("latin-1").split("\r\n")
                    self.status = int(hl[0].split()[1])
                    for h in hl[1:]:
                        k, _, v = h.partition(":")
                        self.headers[k.strip().lower()] = v.strip()
                    self.body = b""
                if self.status is not None:
                    buf = self._dechunk(buf)
        except OSError:
            pass
        self.closed = True

    def _dechunk(self, buf):
        # chunked transfer coding: feed complete chunks to the event parser
        while True:
            if b"\r\n" not in buf:
                return buf
            size_line, rest = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                self.closed = True
                return b""
            if len(rest) < size + 2:
                return buf
            self.body += rest[:size]
            buf = rest[size + 2:]
            self._parse()

    def _parse(self):
        while b"\n\n" in self.body:
            block, self.body = self.body.split(b"\n\n", 1)
            ev = {"id": None, "event": "message", "data": None}
            data = []
            comment = None
            for line in block.decode("latin-1").split("\n"):
                if line.startswith(":"):
                    comment = line[1:].strip()
                    continue
                k, _, v = line.partition(":")
                v = v[1:] if v.startswith(" ") else v
                if k == "data":
                    data.append(v)
                elif k == "id":
                    ev["id"] = int(v)
                elif k == "event":
                    ev["event"] = v
                elif k == "retry":
                    ev["event"] = "retry"
                    data.append(v)
            with self.lock:
                if comment is not None and not data and ev["event"] == "message":
                    self.comments.append(comment)
                else:
                    ev["data"] = "\n".join(data)
                    self.events.append(ev)

    def updates(self):
        with self.lock:
            return [e for e in self.events if e["event"] == "update"]

    def of(self, name):
        with self.lock:
            return [e for e in self.events if e["event"] == name]

    def wait(self, pred, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if pred(self):
                return True
            time.sleep(0.02)
        return False

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.thread is not None:
            self.thread.join(5)


class ManySSE:
    """Many SSE subscribers on raw sockets served by one thread (selectors): for fan-out tests
    with hundreds or thousands of clients. Records, per client, the update ids in arrival order."""

    def __init__(self, targets, path):
        import selectors
        self.sel = selectors.DefaultSelector()
        self.ids = []
        self.errors = []
        self.lock = threading.Lock()
        self.stop = False
        self.socks = []
        for i, (host, port) in enumerate(targets):
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n" % (path, host)).encode())
            s.setblocking(False)
            self.socks.append(s)
            self.ids.append([])
            self.sel.register(s, selectors.EVENT_READ, [i, b""])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            for key, _ in self.sel.select(timeout=0.1):
                i, buf = key.data
                try:
                    chunk = key.fileobj.recv(262144)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self.errors.append((i, str(e)))
                    self.sel.unregister(key.fileobj)
                    continue
                if not chunk:
                    self.sel.unregister(key.fileobj)
                    continue
                buf += chunk
                # ids only: "\nid: N\n" lines inside the chunked stream (chunk framing never splits
                # the parse below because we only look at complete lines)
                while True:
                    p = buf.find(b"id: ")
                    if p < 0:
                        buf = buf[-8:] if len(buf) > 8 else buf
                        break
                    e = buf.find(b"\n", p)
                    if e < 0:
                        buf = buf[p:]
                        break
                    if p == 0 or buf[p - 1:p] == b"\n":
                        with self.lock:
                            self.ids[i].append(int(buf[p + 4:e]))
                    buf = buf[e:]
                key.data[1] = buf

    def counts(self):
        with self.lock:
            return [len(x) for x in self.ids]

    def close(self):
        self.stop = True
        self.thread.join(5)
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
