"""A hostile Redis: a server that speaks RESP but not sanely. hiredis 0.14 aborts the process on a
reply no command asked for (outside pub/sub) and on a pub/sub array it cannot route, and allocates
whatever array size or buffers whatever bulk length a server announces. dexcache must stay up,
keep serving from local state, drop such a connection as a protocol error and not reconnect to
that server in a tight loop (proxy/redis/redis_conn.c, the reply guard)."""
import socket
import threading
import time

import requests

from dexcache import Dexcache, PREAMBLE, free_port, wait_for

CONFIG = PREAMBLE + """
redis: {{ url: "redis://127.0.0.1:%(redis_port)d/0", prefix: "dchostile:" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache: [ {{ path: /price/v3, ttl: 30s }} ]
"""


def _commands(buf):
    """Split complete RESP commands (arrays of bulk strings) off buf: ([[b'SET', ...], ...], rest)."""
    out = []
    while buf.startswith(b"*"):
        end = buf.find(b"\r\n")
        if end < 0:
            break
        n, pos, args = int(buf[1:end]), end + 2, []
        for _ in range(n):
            e = buf.find(b"\r\n", pos)
            if e < 0 or buf[pos:pos + 1] != b"$":
                return out, buf
            ln = int(buf[pos + 1:e])
            if len(buf) < e + 2 + ln + 2:
                return out, buf
            args.append(buf[e + 2:e + 2 + ln])
            pos = e + 2 + ln + 2
        if len(args) < n:
            break
        out.append(args)
        buf = buf[pos:]
    return out, buf


class HostileRedis:
    """Answers each command with `answer(args)` (bytes). Counts connections; for `stream_bulk`,
    after the first command, announces a 2 GiB bulk string and streams junk until the peer closes,
    recording how many bytes it took."""

    def __init__(self, answer, stream_bulk=False):
        self.answer, self.stream_bulk = answer, stream_bulk
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.connections = 0
        self.bulk_bytes_taken = []
        self.stop_evt = threading.Event()
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop_evt.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(0.5)
        buf = b""
        try:
            while not self.stop_evt.is_set():
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    return
                cmds, buf = _commands(buf + d)
                for args in cmds:
                    if self.stream_bulk and args[0].upper() not in (b"PING", b"SELECT", b"CLIENT"):
                        self._stream(c)
                        return
                    c.sendall(self.answer(args))
        except OSError:
            pass
        finally:
            c.close()

    def _stream(self, c):
        c.sendall(b"$2147483647\r\n")
        junk, sent = b"x" * (1 << 20), 0
        c.settimeout(5)
        try:
            while sent < (200 << 20) and not self.stop_evt.is_set():
                c.sendall(junk)
                sent += len(junk)
        except OSError:
            pass
        self.bulk_bytes_taken.append(sent)

    def close(self):
        self.stop_evt.set()
        self.thread.join(2)
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def _ok(args):
    return b"+OK\r\n"


def _double(args):
    return b"+OK\r\n+OK\r\n"  # one reply more than asked for


def _huge_array(args):
    if args[0].upper() in (b"PING", b"SELECT", b"CLIENT"):
        return b"+PONG\r\n" if args[0].upper() == b"PING" else b"+OK\r\n"
    return b"*2147483647\r\n"


def _bad_pubsub(args):
    cmd = args[0].upper()
    if cmd == b"SUBSCRIBE":
        return b"*1\r\n+x\r\n"  # hiredis asserts reply->elements >= 2
    if cmd == b"UNSUBSCRIBE":
        return b"*2\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n"  # element[2] read past the end
    if cmd == b"PING":
        return b"+PONG\r\n"
    return b"$-1\r\n"


def _bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


def _pubsub_stray(args):
    cmd = args[0].upper()
    if cmd == b"SUBSCRIBE":
        # a proper confirmation, then what finds no callback in hiredis: a message for a channel
        # never subscribed, a pattern message, a repeated PONG (hiredis 0.14 ran the previous
        # reply's callback again for each: a second call on a freed command)
        return (b"*3\r\n" + _bulk(b"subscribe") + _bulk(args[1]) + b":1\r\n" +
                b"*3\r\n" + _bulk(b"message") + _bulk(b"not-ours") + _bulk(b"x") +
                b"*4\r\n" + _bulk(b"pmessage") + _bulk(b"*") + _bulk(b"c") + _bulk(b"x") +
                b"+PONG\r\n")
    if cmd == b"PING":
        return b"+PONG\r\n+PONG\r\n"
    return b"$-1\r\n"


def _run(fake, hostile, seconds=4.0):
    conf = CONFIG % {"jup": fake.url("jup"), "redis_port": hostile.port}
    d = Dexcache(conf).start(wait=False)
    try:
        assert wait_for(lambda: _get(d) == 200, timeout=20), d.stderr()
        t0, codes = time.time(), []
        while time.time() - t0 < seconds and len(codes) < 2000:
            codes.append(_get(d, "&n=%d" % (len(codes) % 5)))
        elapsed = time.time() - t0
        assert d.proc.poll() is None, d.stderr()[-3000:]
        return codes, elapsed, d.stderr()
    finally:
        d.stop()


def _get(d, extra=""):
    try:
        return requests.get(d.url + "/jup/price/v3?ids=SOL" + extra, timeout=5).status_code
    except requests.RequestException:
        return None


def _assert_survived(fake, answer, **kw):
    hostile = HostileRedis(answer, **kw)
    try:
        before = hostile.connections
        codes, elapsed, err = _run(fake, hostile)
        rate = (hostile.connections - before) / elapsed
        print("%s: %d requests, codes %s, %d Redis connections in %.1f s (%.1f/s)"
              % (answer.__name__, len(codes), sorted(set(codes), key=str), hostile.connections, elapsed, rate))
        assert set(codes) == {200}, codes
        assert "AddressSanitizer" not in err and "Assertion" not in err, err[-3000:]
        return hostile, rate, err
    finally:
        hostile.close()


def test_extra_replies_do_not_abort_and_reconnects_back_off(fake, origin):
    """A server answering every command twice: before the guard, hiredis asserted at once
    (async.c: redisProcessCallbacks) and the process died. Now: a protocol error, the connection
    is dropped, reconnects back off (6 clients per instance, each at most ~2 connects/s once the
    strikes add up)."""
    hostile, rate, err = _assert_survived(fake, _double)
    assert "protocol error" in err
    assert rate < 30, rate


def test_huge_array_header_is_refused(fake, origin):
    """'*2147483647': the guard refuses the array before hiredis allocates 16 GiB of pointers."""
    hostile, rate, err = _assert_survived(fake, _huge_array)
    assert "protocol error" in err


def test_malformed_pubsub_does_not_abort(fake, origin):
    """A SUBSCRIBE answered with a one-element array, an unsubscribe without its count."""
    _assert_survived(fake, _bad_pubsub)


def test_stray_pubsub_replies_never_reach_another_callback(fake, origin):
    """Pub/sub values no subscription owns: refused before hiredis hands them to the last
    callback it ran (ASan: heap-use-after-free in dc__redis_on_reply before the guard)."""
    hostile, rate, err = _assert_survived(fake, _pubsub_stray)
    assert "protocol error" in err


def test_endless_bulk_string_is_cut_off(fake, origin):
    """'$2147483647' then junk: the connection is dropped once 64 MiB are buffered (or the command
    times out first: hiredis reads 16 KiB per call), never buffered toward 2 GiB."""
    hostile, rate, err = _assert_survived(fake, _ok, stream_bulk=True)
    assert hostile.bulk_bytes_taken, "no command reached the streaming branch"
    assert max(hostile.bulk_bytes_taken) < (100 << 20), hostile.bulk_bytes_taken
    assert "a reply over" in err or "timed out" in err
