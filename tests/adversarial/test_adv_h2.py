"""HTTP/2 abuse on a cleartext (h2c, prior knowledge) connection, with a raw frame-level client
(python3-hpack for header blocks, frames written by hand so that the client can break the rules):
rapid reset (CVE-2023-44487), its "reverse" form (streams opened with a zero window and never
read), CONTINUATION and stream floods, DATA that disagrees with content-length, and a legitimate
client that cancels a few streams (never disconnected)."""
import http.client
import os
import socket
import struct
import threading
import time

import hpack
import pytest

from advlib import scale
from dexcache import Dexcache, RSS_CHECKS, SANITIZER_RSS_MIB, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
NO_ERROR, PROTOCOL_ERROR, CANCEL, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x8, 0x7, 0xb
SETTINGS_INITIAL_WINDOW_SIZE = 0x4

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 1
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: off }}
server: {{ h2_stall_timeout: 2s }}
upstreams:
  jupiter: {{ url: "%(jup)s", keys: ["k1"], timeout: 5s, retries: 0 }}
  meteora: {{ url: "%(meteora)s", timeout: 10s, retries: 0 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /echo, ttl: 60s }}
  - {{ prefix: /meteora, upstream: meteora }}
"""


def conf(fake):
    return CONFIG % {"jup": fake.url("jup"), "meteora": fake.url("meteora")}


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, sid) + payload


def settings_frame(settings=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in settings))


def rst(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


class RawH2:
    """A client connection speaking HTTP/2 frames directly. Reads are done by recv_until()."""

    def __init__(self, port, settings=(), window=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.enc = hpack.Encoder()
        self.buf = b""
        self.frames = []  # (type, flags, stream id, payload)
        self.closed = False  # the peer closed (EOF or reset seen while reading)
        self.send_failed = False
        out = PREFACE + settings_frame(settings)
        if window:
            out += frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", window))
        self.send(out)

    def headers(self, sid, path, method="GET", extra=(), end_stream=True):
        block = self.enc.encode([(":method", method), (":scheme", "http"), (":authority", "127.0.0.1"),
                                 (":path", path)] + list(extra))
        return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)

    def send(self, data):
        """Send, tolerating a peer that already closed (returns False then)."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.send_failed = True
            return False

    def _parse(self):
        while len(self.buf) >= 9:
            n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
            if len(self.buf) < 9 + n:
                return
            ftype, flags, sid = struct.unpack(">BBI", self.buf[3:9])
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            self.frames.append((ftype, flags, sid & 0x7FFFFFFF, payload))
            if ftype == SETTINGS and not flags & ACK:
                self.send(frame(SETTINGS, ACK, 0))

    def recv_until(self, cond, timeout):
        """Read frames until cond(self) is true, the peer closes, or `timeout` s pass."""
        deadline = time.monotonic() + timeout
        while not cond(self) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(min(left, 0.5))
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:  # reset by the peer (it closed with our frames unread)
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            self.buf += chunk
            self._parse()
        return cond(self)

    def goaways(self):
        return [struct.unpack(">II", p[:8]) for t, _, _, p in self.frames if t == GOAWAY]

    def resets(self, code=None):
        return [sid for t, _, sid, p in self.frames
                if t == RST_STREAM and (code is None or struct.unpack(">I", p)[0] == code)]

    def ended(self):
        """Streams whose response ended (END_STREAM on HEADERS or DATA)."""
        return {sid for t, f, sid, _ in self.frames if t in (HEADERS, DATA) and f & END_STREAM}

    def status(self, sid):
        dec = hpack.Decoder()
        for t, f, s, p in self.frames:
            if t == HEADERS:
                hs = dec.decode(p)  # every block goes through the decoder to keep its table in step
                if s == sid:
                    return dict(hs)[":status"]
        return None

    def close(self):
        self.sock.close()


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def h2_get(port, path):
    """One clean request on a new HTTP/2 connection: (status, connection)."""
    c = RawH2(port, window=1 << 30)
    c.send(c.headers(1, path))
    c.recv_until(lambda c: 1 in c.ended(), 10)
    return c.status(1), c


class Bystander(threading.Thread):
    """Another client on its own HTTP/1.1 keep-alive connection, timing cache hits until stopped."""

    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.lat = []
        self.errors = 0
        self.stop_ev = threading.Event()

    def run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        deadline = time.monotonic() + 120
        while not self.stop_ev.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                c.request("GET", self.path)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    self.errors += 1
            except OSError:
                self.errors += 1
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.lat.append(time.monotonic() - t0)
            time.sleep(0.005)
        c.close()

    def p99_ms(self):
        s = sorted(self.lat)
        return 1000 * s[min(len(s) - 1, int(len(s) * 0.99))] if s else 0.0


def test_rapid_reset_goaway_bounded_origin_cpu_rss(fake, origin):
    pairs = scale(10000, 50000)
    with Dexcache(conf(fake)) as d:
        # the bystander's key is cached first, so all it measures is the worker's responsiveness
        st, c = h2_get(d.port, "/jup/echo?u=bystander")
        c.close()
        assert st == "200"
        base_origin = origin.stats()["jup"]["total"]
        assert base_origin == 1
        pid = d.proc.pid
        rss0, cpu0 = rss_mib(pid), cpu_s(pid)
        by = Bystander(d.port, "/jup/echo?u=bystander")
        by.start()
        wait_for(lambda: len(by.lat) >= 5, 10)

        a = RawH2(d.port)
        out = bytearray()
        for i in range(pairs):
            sid = 1 + 2 * i
            out += a.headers(sid, "/jup/echo?u=%d" % i)  # a unique key: each one a miss
            out += rst(sid)
        t0 = time.monotonic()
        peak = rss0
        # send in chunks while the server may close on us
        for off in range(0, len(out), 1 << 16):
            if not a.send(bytes(out[off:off + (1 << 16)])):
                break
            peak = max(peak, rss_mib(pid))
        a.recv_until(lambda c: c.goaways(), 30)
        attack_s = time.monotonic() - t0
        # origin requests settle (none should be in flight)
        wait_for(lambda: origin.stats()["jup"]["inflight_now"] == 0, 15)
        time.sleep(0.5)
        by.stop_ev.set()
        by.join(15)
        peak = max(peak, rss_mib(pid))
        origin_reqs = origin.stats()["jup"]["total"] - base_origin
        cpu = cpu_s(pid) - cpu0
        closed_metric = d.metric("dexcache_h2_abuse_closed_total", reason="resets")
        early = d.metric("dexcache_h2_early_resets_total")
        dropped = d.metric("dexcache_h2_deferred_dropped_total")
        print("rapid reset x%d: goaway=%s closed=%s origin requests=%d cpu=%.2fs rss %.1f -> peak %.1f MiB "
              "(+%.1f) bystander p99=%.1fms n=%d errors=%d early resets=%d dropped=%d attack %.2fs"
              % (pairs, a.goaways(), a.closed, origin_reqs, cpu, rss0, peak, peak - rss0, by.p99_ms(),
                 len(by.lat), by.errors, early, dropped, attack_s))

        assert a.goaways() and a.goaways()[0][1] == ENHANCE_YOUR_CALM, a.goaways()
        assert a.recv_until(lambda c: c.closed, 10), "the connection stays open after GOAWAY"
        assert closed_metric == 1
        # the default budget is 100: the connection is closed at 200 net resets, and no upstream
        # work starts for a request that a reset in the same read batch cancelled
        assert 200 <= early <= 400, early
        assert origin_reqs <= 100, origin_reqs
        assert cpu < 5.0, cpu
        assert not RSS_CHECKS or peak - rss0 < 32 + SANITIZER_RSS_MIB, (rss0, peak)
        assert by.errors == 0
        assert by.p99_ms() < 500, by.p99_ms()
        # a clean client afterwards
        st, c = h2_get(d.port, "/jup/echo?u=after")
        assert st == "200" and not c.goaways()
        c.close()


@pytest.mark.parametrize("body", [20000, 1000000], ids=["deadline", "bytes"])
def test_reverse_rapid_reset_zero_window_closed(fake, origin, body):
    """Streams opened with a zero window whose responses can never be sent: the connection is
    closed once its output has been stalled for h2_stall_timeout (2 s here; small bodies), or at
    once when it holds more than 8 MiB of unsent bytes (1 MB bodies); memory stays bounded."""
    nstreams = scale(50, 100)
    with Dexcache(conf(fake)) as d:
        pid = d.proc.pid
        rss0 = rss_mib(pid)
        a = RawH2(d.port, settings=[(SETTINGS_INITIAL_WINDOW_SIZE, 0)])
        out = b"".join(a.headers(1 + 2 * i, "/meteora/bytes?n=%d&u=%d" % (body, i)) for i in range(nstreams))
        a.send(out)
        t0 = time.monotonic()
        # responses start (HEADERS need no window) but no DATA can follow
        a.recv_until(lambda c: len([f for f in c.frames if f[0] == HEADERS]) >= nstreams, 15)
        peak = rss0

        def done(c):
            nonlocal peak
            peak = max(peak, rss_mib(pid))
            return c.closed

        a.recv_until(done, 15)
        took = time.monotonic() - t0
        print("zero window x%d: goaway=%s closed=%s after %.1fs, rss %.1f -> peak %.1f MiB, data frames %d"
              % (nstreams, a.goaways(), a.closed, took, rss0, peak,
                 len([f for f in a.frames if f[0] == DATA and f[3]])))
        assert a.closed, "a connection with zero-window streams was kept open"
        assert a.goaways() and a.goaways()[0][1] == ENHANCE_YOUR_CALM, a.goaways()
        assert took < 12, took
        if body * nstreams < 8 << 20:
            assert took >= 1.5, took  # the deadline, not the byte cap
        assert not any(f[0] == DATA and f[3] for f in a.frames), "DATA sent past a zero window"
        assert not RSS_CHECKS or peak - rss0 < 64 + SANITIZER_RSS_MIB, (rss0, peak)
        assert d.metric("dexcache_h2_abuse_closed_total", reason="stalled") == 1
        a.close()
        st, c = h2_get(d.port, "/jup/echo?u=after")
        assert st == "200"
        c.close()


def test_continuation_flood_closed_bounded(fake, origin):
    """HEADERS without END_HEADERS followed by 16 KB CONTINUATION frames that never end the block:
    libh2o caps the block (H2O_MAX_REQLEN), refuses the stream and closes the connection."""
    nframes = scale(400, 4000)  # 6.4 MB (short) of header block fragments
    with Dexcache(conf(fake)) as d:
        pid = d.proc.pid
        rss0 = rss_mib(pid)
        a = RawH2(d.port)
        block = a.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                              (":path", "/jup/echo?u=cont")])
        a.send(frame(HEADERS, END_STREAM, 1, block))
        chunk = frame(CONTINUATION, 0, 1, b"a" * 16384)
        sent = 0
        for _ in range(nframes):
            if not a.send(chunk):
                break
            sent += 1
        a.recv_until(lambda c: c.closed, 15)
        peak = rss_mib(pid)
        print("continuation flood: sent %d frames, closed=%s goaway=%s resets=%s rss %.1f -> %.1f MiB"
              % (sent, a.closed, a.goaways(), a.resets(), rss0, peak))
        assert a.closed
        assert sent < nframes or a.goaways(), "the whole flood was taken without closing"
        assert not RSS_CHECKS or peak - rss0 < 16 + SANITIZER_RSS_MIB
        assert origin.stats()["jup"]["total"] == 0
        assert d.health()["status"] in ("ok", "degraded")


def test_stream_flood_refused_beyond_max_concurrent(fake, origin):
    """150 streams opened at once (requests whose bodies never come) on one connection: libh2o
    allows SETTINGS_MAX_CONCURRENT_STREAMS (100) and refuses the rest with REFUSED_STREAM."""
    n = 150
    with Dexcache(conf(fake)) as d:
        pid = d.proc.pid
        rss0 = rss_mib(pid)
        a = RawH2(d.port)
        a.send(b"".join(a.headers(1 + 2 * i, "/meteora/echo?u=%d" % i, method="POST",
                                  extra=[("content-length", "10")], end_stream=False) for i in range(n)))
        a.recv_until(lambda c: len(c.resets(REFUSED_STREAM)) >= n - 100, 10)
        refused = sorted(a.resets(REFUSED_STREAM))
        print("stream flood: %d refused (first %s), rss %.1f -> %.1f MiB"
              % (len(refused), refused[:1], rss0, rss_mib(pid)))
        assert len(refused) == n - 100, refused
        assert refused == [1 + 2 * i for i in range(100, n)]
        assert not a.goaways() and not a.closed
        assert not RSS_CHECKS or rss_mib(pid) - rss0 < 16 + SANITIZER_RSS_MIB
        assert origin.stats()["meteora"]["total"] == 0  # no body came: nothing went upstream
        a.close()


def test_data_length_mismatch_is_a_stream_error(fake, origin):
    """A POST whose DATA disagrees with its content-length (short, then long) is refused with
    RST_STREAM(PROTOCOL_ERROR); nothing reaches the origin; the connection goes on."""
    with Dexcache(conf(fake)) as d:
        a = RawH2(d.port, window=1 << 30)
        a.send(a.headers(1, "/meteora/echo", method="POST", extra=[("content-length", "10")], end_stream=False)
               + frame(DATA, END_STREAM, 1, b"hello"))
        a.send(a.headers(3, "/meteora/echo", method="POST", extra=[("content-length", "3")], end_stream=False)
               + frame(DATA, END_STREAM, 3, b"hello"))
        assert a.recv_until(lambda c: {1, 3} <= set(c.resets(PROTOCOL_ERROR)), 10), a.frames
        a.send(a.headers(5, "/meteora/echo", method="POST", extra=[("content-length", "5")], end_stream=False)
               + frame(DATA, END_STREAM, 5, b"hello"))
        assert a.recv_until(lambda c: 5 in c.ended(), 10)
        assert a.status(5) == "200"
        assert not a.goaways()
        assert origin.stats()["meteora"]["total"] == 1  # only the well-formed one
        a.close()


def test_legitimate_cancels_not_disconnected(fake, origin):
    """200 requests in batches of 10 with 1 of each batch cancelled right away (20 resets before
    the answer, all misses): the connection is never closed or delayed into errors."""
    with Dexcache(conf(fake)) as d:
        a = RawH2(d.port, window=1 << 30)
        sid = 1
        answered = cancelled = 0
        for batch in range(20):
            sids = []
            out = b""
            for j in range(10):
                out += a.headers(sid, "/jup/echo?u=legit%d" % sid)
                if j < 1:
                    out += rst(sid)
                    cancelled += 1
                else:
                    sids.append(sid)
                sid += 2
            a.send(out)
            assert a.recv_until(lambda c: set(sids) <= c.ended(), 15), "batch %d not answered" % batch
            assert all(a.status(s) == "200" for s in sids)
            answered += len(sids)
        a.send(a.headers(sid, "/jup/echo?u=final"))
        assert a.recv_until(lambda c: sid in c.ended(), 10)
        assert a.status(sid) == "200"
        assert not a.goaways() and not a.closed
        assert (answered, cancelled) == (180, 20)
        assert d.metric("dexcache_h2_abuse_closed_total", reason="resets") == 0
        # the cancelled misses never went upstream (reset in the same read batch)
        assert 181 <= origin.stats()["jup"]["total"] <= 201
        a.close()
