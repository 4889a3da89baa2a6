"""Upstream failures by cause (issue 18, "Clear upstream and Redis errors").

Each cause reaches the client as its own JSON error naming the upstream, with libcurl's words for
it (never the request's secrets), 504 for a timeout else 502, and Retry-After only when retrying soon
makes sense; the error log gets one line per upstream and cause for N identical failures within
the 10 s window; /health shows the last error; nothing is stored (a later good origin gives a MISS).
Every origin here is on loopback or a `.invalid` host (resolves nowhere), served by this file's own
raw-socket servers or `openssl s_server`."""
import json
import os
import re
import select
import socket
import struct
import subprocess
import threading
import time

import pytest
import requests

from dexcache import Dexcache, PREAMBLE, free_port, wait_for, workdir

SECRET = "SEKRETq7Zk"  # in every request's query: must show nowhere
N = 5  # identical failures per test, well inside the log's 10 s window

BODY = b'{"ok":true}'


class RawOrigin:
    """A loopback origin whose behaviour can change at run time:
    ok: a small cacheable 200 (Cache-Control: max-age=30), then close;
    reset: read the request, then close with SO_LINGER 0 (RST);
    silent: read the request and never answer (closed at stop);
    garbage: answer whatever comes (a TLS hello too) with bytes that are neither HTTP nor TLS."""

    def __init__(self, mode, port=None):
        self.mode = mode
        self.port = port or free_port()
        self.accepted = 0
        self._stop = False
        self._held = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self._sock], [], [], 0.1)
            if not r:
                continue
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _read_request(self, c):
        c.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
                if self.mode == "garbage":
                    break  # a TLS hello has no blank line
        except OSError:
            pass
        return data

    def _serve(self, c):
        self._read_request(c)
        mode = self.mode
        try:
            if mode == "ok":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=30\r\n"
                          b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY))
                c.close()
            elif mode == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            elif mode == "garbage":
                c.sendall(b"this is neither HTTP nor TLS\r\n" * 8)
                c.close()
            else:  # silent
                self._held.append(c)
        except OSError:
            pass

    def stop(self):
        self._stop = True
        self._thread.join(5)
        self._sock.close()
        for c in self._held:
            c.close()


def config(upstreams, extra=""):
    """upstreams: name -> (url, extra upstream yaml); one cached route /<name> per upstream."""
    ups = "".join('  %s: {{ url: "%s", retries: 0, connect_timeout: 2s, timeout: %s, breaker: {{ failures: 1000 }}%s }}\n'
                  % (n, u, t, x) for n, (u, t, x) in upstreams.items())
    routes = "".join("  - prefix: /%s\n    upstream: %s\n    cache:\n"
                     "      - {{ path: /, ttl: 1s, stale_if_error: 30s }}\n" % (n, n) for n in upstreams)
    return PREAMBLE + extra + "upstreams:\n" + ups + "routes:\n" + routes


def get(d, path, timeout=20):
    return requests.get(d.url + path, timeout=timeout)


def check_error(r, status, error, upstream, retry_after):
    """The exact answer for a cause: status, JSON fields, Retry-After, no secret anywhere."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "status", "upstream", "cause", "request_id"}, body
    assert body["error"] == error and body["status"] == status and body["upstream"] == upstream, body
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["cause"], body
    assert SECRET not in r.text and "api-key" not in body["cause"]
    assert r.headers.get("retry-after") == retry_after, r.headers
    assert r.headers["cache-control"] == "no-store"
    return body


def log_lines(d, upstream, cause):
    return [l for l in d.stderr().splitlines() if "upstream %s: %s failure:" % (upstream, cause) in l]


def check_log_and_health(d, upstream, cause, text):
    """One error-log line for the N failures (the rest are in the window), and /health's last error."""
    assert wait_for(lambda: len(log_lines(d, upstream, cause)) >= 1, timeout=5)
    lines = log_lines(d, upstream, cause)
    assert len(lines) == 1, lines
    assert "[error] upstream %s: %s failure: %s" % (upstream, cause, text) in lines[0], lines
    assert SECRET not in d.stderr()
    h = d.health()
    le = h["upstreams"][upstream]["last_error"]
    assert le["cause"] == cause and le["message"] == text, le
    assert abs(le["time"] - time.time()) < 60, le
    assert h["upstreams"][upstream]["tiers"][0]["last_error"] == le
    return lines[0]


def n_failures(d, path, *args):
    bodies = [check_error(get(d, path + "?ids=1&api-key=" + SECRET), *args) for _ in range(N)]
    assert len({b["cause"] for b in bodies}) == 1, bodies
    return bodies[0]["cause"]


def test_dns_failure():
    cfg = config({"jupdns": ("http://nosuch-dexcache.invalid", "2s", "")})
    with Dexcache(cfg) as d:
        assert d.health()["upstreams"]["jupdns"]["last_error"] is None
        cause = n_failures(d, "/jupdns/price", 502, "upstream dns failure", "jupdns", "5")
        assert cause == "Could not resolve host: nosuch-dexcache.invalid"
        check_log_and_health(d, "jupdns", "dns", cause)


def test_connect_refused_then_good_origin_is_a_miss():
    port = free_port()
    cfg = config({"jupconn": ("http://127.0.0.1:%d" % port, "2s", "")})
    with Dexcache(cfg) as d:
        cause = n_failures(d, "/jupconn/price", 502, "upstream connection refused", "jupconn", "2")
        assert re.fullmatch(r"Failed to connect to 127\.0\.0\.1 port %d after \d+ ms: .+" % port, cause), cause
        check_log_and_health(d, "jupconn", "connect", cause)
        good = RawOrigin("ok", port)
        try:
            r = get(d, "/jupconn/price?ids=1&api-key=" + SECRET)
            assert r.status_code == 200 and r.content == BODY and r.headers["x-cache"] == "MISS"  # nothing stored
            r = get(d, "/jupconn/price?ids=1&api-key=" + SECRET)
            assert r.headers["x-cache"] == "HIT"
            assert good.accepted == 1
        finally:
            good.stop()


def test_reset_then_good_origin_is_a_miss():
    o = RawOrigin("reset")
    try:
        cfg = config({"jupreset": ("http://127.0.0.1:%d" % o.port, "2s", "")})
        with Dexcache(cfg) as d:
            cause = n_failures(d, "/jupreset/price", 502, "upstream connection reset", "jupreset", "1")
            assert "reset by peer" in cause or "Empty reply" in cause, cause
            check_log_and_health(d, "jupreset", "reset", cause)
            assert o.accepted == N  # retries: 0
            o.mode = "ok"
            r = get(d, "/jupreset/price?ids=1&api-key=" + SECRET)
            assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    finally:
        o.stop()


def test_timeout_then_good_origin_is_a_miss():
    o = RawOrigin("silent")
    try:
        cfg = config({"jupslow": ("http://127.0.0.1:%d" % o.port, "1s", "")})
        with Dexcache(cfg) as d:
            t0 = time.monotonic()
            cause = n_failures(d, "/jupslow/price", 504, "upstream timed out", "jupslow", "2")
            assert time.monotonic() - t0 >= N * 0.9
            assert cause == "no complete answer within 1000 ms"
            check_log_and_health(d, "jupslow", "timeout", cause)
            o.mode = "ok"
            r = get(d, "/jupslow/price?ids=1&api-key=" + SECRET)
            assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    finally:
        o.stop()


def test_waiters_get_the_cause_too():
    """Collapsed requests (one fetch, the others wait on it) each get the cause, not a bare error."""
    o = RawOrigin("silent")
    try:
        cfg = config({"jupwait": ("http://127.0.0.1:%d" % o.port, "2s", "")})
        with Dexcache(cfg) as d:
            out = [None] * 6

            def one(i):
                out[i] = get(d, "/jupwait/price?ids=7&api-key=" + SECRET)

            ts = [threading.Thread(target=one, args=(i,)) for i in range(len(out))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            for r in out:
                check_error(r, 504, "upstream timed out", "jupwait", "2")
                assert r.json()["cause"] == "no complete answer within 2000 ms"
            assert o.accepted == 1  # one fetch for all of them
            assert len(log_lines(d, "jupwait", "timeout")) == 1
    finally:
        o.stop()


def self_signed(dirpath):
    key, crt = os.path.join(dirpath, "k.pem"), os.path.join(dirpath, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-days", "1", "-keyout", key, "-out", crt], check=True, capture_output=True, timeout=60)
    return key, crt


def test_tls_self_signed_certificate():
    port = free_port()
    key, crt = self_signed(workdir())
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-key", key, "-cert", crt,
                            "-www", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_for(listening, timeout=20)
        cfg = config({"juptls": ("https://127.0.0.1:%d" % port, "3s", "")})
        with Dexcache(cfg) as d:
            cause = n_failures(d, "/juptls/price", 502, "upstream tls failure", "juptls", None)
            assert "certificate" in cause, cause
            check_log_and_health(d, "juptls", "tls", cause)
    finally:
        srv.terminate()
        srv.wait(10)


def test_tls_handshake_with_a_non_tls_server():
    o = RawOrigin("garbage")
    try:
        cfg = config({"jupgarb": ("https://127.0.0.1:%d" % o.port, "2s", "")})
        with Dexcache(cfg) as d:
            cause = n_failures(d, "/jupgarb/price", 502, "upstream tls failure", "jupgarb", None)
            check_log_and_health(d, "jupgarb", "tls", cause)
    finally:
        o.stop()


def test_stale_if_error_still_wins():
    o = RawOrigin("ok")
    try:
        cfg = config({"jupstale": ("http://127.0.0.1:%d" % o.port, "2s", "")})
        with Dexcache(cfg) as d:
            path = "/jupstale/price?ids=1"
            assert get(d, path).headers["x-cache"] == "MISS"
            o.mode = "reset"
            time.sleep(1.2)  # ttl 1s: the copy is stale, stale_if_error 30s lets it stand in
            for _ in range(3):
                r = get(d, path)
                assert r.status_code == 200 and r.content == BODY and r.headers["x-cache"] == "STALE", r.text
            # the failure behind it is still logged and shown
            assert wait_for(lambda: len(log_lines(d, "jupstale", "reset")) == 1, timeout=5)
            assert d.health()["upstreams"]["jupstale"]["last_error"]["cause"] == "reset"
    finally:
        o.stop()


def test_redis_last_error_in_health():
    port = free_port()  # nobody listens: every connect is refused
    cfg = config({"jupr": ("http://127.0.0.1:%d" % free_port(), "2s", "")},
                 extra='redis: {{ url: "redis://127.0.0.1:%d", prefix: "dcerr:" }}\n' % port)
    with Dexcache(cfg) as d:
        assert wait_for(lambda: d.health()["redis_last_error"] is not None, timeout=10)
        h = d.health()
        assert h["redis"] == "down"
        le = h["redis_last_error"]
        assert le["message"].startswith("connect failed: "), le
        assert "refused" in le["message"].lower(), le
        assert abs(le["time"] - time.time()) < 60


def test_log_line_after_the_window_counts_the_suppressed():
    """Failures past the first in the 10 s window write nothing; the first line after it says how many
    were left out (every request here is one attempt: retries: 0)."""
    port = free_port()
    cfg = config({"jupwin": ("http://127.0.0.1:%d" % port, "2s", "")})
    with Dexcache(cfg) as d:
        t0 = time.monotonic()
        sent = 0

        def fail_once():
            nonlocal sent
            r = get(d, "/jupwin/price?ids=1&api-key=" + SECRET)
            sent += 1
            assert r.status_code == 502 and r.json()["error"] == "upstream connection refused"

        for _ in range(N):
            fail_once()
        assert len(log_lines(d, "jupwin", "connect")) == 1

        def second_line():
            fail_once()
            return len(log_lines(d, "jupwin", "connect")) >= 2

        assert wait_for(second_line, timeout=30, step=0.5)
        assert time.monotonic() - t0 >= 10.0
        lines = log_lines(d, "jupwin", "connect")
        assert len(lines) == 2, lines
        assert lines[1].endswith("(%d more since the last line)" % (sent - 2)), (sent, lines)
        assert "more since" not in lines[0]


def test_breaker_opened_by_dns_failures_names_the_cause():
    """Once failures open the breaker nothing goes out; the 503 still says which upstream and what
    failure opened it (leader and waiters alike)."""
    cfg = PREAMBLE + """upstreams:
  jupbrk: {{ url: "http://nosuch-dexcache.invalid", retries: 0, breaker: {{ failures: 2, backoff: 60s }} }}
routes:
  - prefix: /jupbrk
    upstream: jupbrk
    cache:
      - {{ path: /, ttl: 1s }}
"""
    with Dexcache(cfg) as d:
        for _ in range(2):
            check_error(get(d, "/jupbrk/price?ids=1&api-key=" + SECRET), 502, "upstream dns failure", "jupbrk", "5")
        for i in range(3):
            r = get(d, "/jupbrk/price?ids=%d&api-key=%s" % (i, SECRET))
            assert r.status_code == 503, r.text
            body = r.json()
            assert body == {"error": "upstream unavailable: circuit breaker open or cordoned", "status": 503,
                            "upstream": "jupbrk", "cause": "Could not resolve host: nosuch-dexcache.invalid",
                            "request_id": r.headers["x-request-id"]}, body
            assert 1 <= int(r.headers["retry-after"]) <= 60
        assert d.health()["upstreams"]["jupbrk"]["breaker"]["state"] == "open"
        assert len(log_lines(d, "jupbrk", "dns")) == 1  # the breaker's refusals log nothing more


def test_batched_route_says_the_cause_too():
    """A batched request whose batch fetch fails gets the same error as a plain one: the upstream,
    the cause and Retry-After (it got only the message)."""
    port = free_port()
    cfg = config({"jupb": ("http://127.0.0.1:%d" % port, "2s", "")}).replace(
        "      - {{ path: /, ttl: 1s, stale_if_error: 30s }}\n",
        "      - {{ path: /, ttl: 1s, stale_if_error: 30s }}\n"
        "    batch: {{ path: /price/v3, param: ids, max: 50, window: 5ms }}\n")
    with Dexcache(cfg) as d:
        r = get(d, "/jupb/price/v3?ids=a,b&api-key=" + SECRET)
        body = check_error(r, 502, "upstream connection refused", "jupb", "2")
        assert body["cause"].startswith("Failed to connect to 127.0.0.1 port %d" % port), body
