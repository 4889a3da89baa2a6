"""What an origin can do to us (issue 13 items 2, 5 and 6), against a raw-socket evil origin:

- invalid framing (CL+TE, two Content-Lengths, a bad Content-Length, a body longer or shorter than
  announced, bad or truncated chunking) becomes a 502 JSON error (or the stale copy within
  stale_if_error), is never stored nor shared with collapsed waiters, and the client's keep-alive
  connection stays in sync; on the cache path and on the pass-through path;
- the upstream `timeout` bounds the whole response and `idle_timeout` the gaps between bytes: 504
  (or the stale copy), nothing stored; a response already streaming is cut;
- request headers that are not in the cache key (X-Forwarded-Host, X-Original-URL, ...) never reach
  the origin on the cache path; X-Forwarded-For / Forwarded are ours; key_headers are forwarded and
  vary the key.
"""
import http.client
import json
import socket
import threading
import time

import pytest

from dexcache import Dexcache, PREAMBLE, wait_for
from evil_origin import EvilOrigin

CONFIG = PREAMBLE + """
cache: {{ memory: 64MiB, max_object: 16MiB }}
upstreams:
  evil: {{ url: "%(evil)s", connect_timeout: 1s, timeout: 3s, retries: 0 }}
  evil_retry: {{ url: "%(evil)s", connect_timeout: 1s, timeout: 3s, retries: 2, retry_backoff: 10ms }}
routes:
  - prefix: /c
    upstream: evil
    cache:
      - {{ path: /, ttl: 60s }}
  - prefix: /r
    upstream: evil_retry
    cache:
      - {{ path: /, ttl: 60s }}
  - prefix: /s
    upstream: evil
    cache:
      - {{ path: /, ttl: 1s, stale_if_error: 60s }}
  - prefix: /p
    upstream: evil
"""

# keys added by these fixes (an older binary refuses this file)
CONFIG_NEW_KEYS = PREAMBLE + """
server: {{ trusted_proxies: ["127.0.0.1"] }}
upstreams:
  evil: {{ url: "%(evil)s", connect_timeout: 1s, timeout: 10s, idle_timeout: 1s, retries: 0 }}
routes:
  - prefix: /i
    upstream: evil
    cache:
      - {{ path: /, ttl: 60s }}
  - prefix: /is
    upstream: evil
    cache:
      - {{ path: /, ttl: 1s, stale_if_error: 60s }}
  - prefix: /k
    upstream: evil
    forward_headers: [x-extra]
    cache:
      - {{ path: /, ttl: 60s, key_headers: [x-tenant] }}
"""

FRAMING = ["clte", "twocl", "badcl", "long", "short", "badchunk", "chunkeof"]
BAD_RESPONSE = "upstream sent an invalid response"


@pytest.fixture(scope="module")
def evil():
    with EvilOrigin() as o:
        yield o


@pytest.fixture(scope="module")
def proxy(evil):
    d = Dexcache(CONFIG % {"evil": evil.url})
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def proxy_new(evil):
    d = Dexcache(CONFIG_NEW_KEYS % {"evil": evil.url})
    d.start()
    yield d
    d.stop()


# ---- a raw HTTP/1.1 client: one response read by its own framing, nothing more ------------------

class RawConn:
    def __init__(self, port, timeout=20):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.s.close()

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def get(self, path, headers=()):
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % path
        req += "".join("%s: %s\r\n" % h for h in headers)
        self.s.sendall((req + "\r\n").encode())
        return self.read_response()

    def read_response(self):
        """(status, headers dict, body): exactly one response, by Content-Length or chunked."""
        status_line = self._line().decode("latin-1")
        assert status_line.startswith("HTTP/1.1 "), "out of sync: %r" % status_line
        status = int(status_line.split(" ")[1])
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            k = k.strip().lower()
            assert k not in ("content-length", "transfer-encoding") or k not in headers, "two %s" % k
            headers[k] = v.strip()
        assert not ("content-length" in headers and "transfer-encoding" in headers)
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._take(size)
                assert self._take(2) == b"\r\n"
        else:
            body = b""
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            body, self.buf = self.buf, b""
        return status, headers, body


def error_body(status, message, headers, upstream, cause):
    """The exact error body: an upstream failure names the upstream and its cause (issue 18)."""
    return json.dumps({"error": message, "status": status, "upstream": upstream, "cause": cause,
                       "request_id": headers["x-request-id"]}, separators=(",", ":")).encode()


def is_error_body(body, status, message, headers):
    """body is exactly error_body() for one of the evil upstreams, with a non-empty cause (its words
    vary by failure)."""
    d = json.loads(body)
    cause, upstream = d.get("cause"), d.get("upstream")
    return (upstream in ("evil", "evil_retry") and isinstance(cause, str) and cause != ""
            and body == error_body(status, message, headers, upstream, cause))


def http_get(proxy, path, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def assert_bad_gateway(status, headers, body, message=BAD_RESPONSE):
    assert status == 502, (status, headers, body)
    assert is_error_body(body, 502, message, headers), body
    assert headers["content-type"] == "application/json"


# ---- item 2: framing ------------------------------------------------------------------------------

@pytest.mark.parametrize("behaviour", FRAMING)
@pytest.mark.parametrize("route", ["/c", "/p"])
def test_framing_error_is_502_and_keepalive_stays_in_sync(proxy, evil, behaviour, route):
    path = "/%s/sync%s" % (behaviour, route.strip("/"))
    c = RawConn(proxy.port)
    try:
        status, headers, body = c.get(route + path)
        assert_bad_gateway(status, headers, body)
        # the same connection answers the next request correctly
        status, headers, body = c.get(route + "/ok/after-" + behaviour + route.strip("/"))
        assert status == 200
        assert json.loads(body) == {"path": "/ok/after-" + behaviour + route.strip("/"), "n": 1}
    finally:
        c.close()
    assert evil.count(path) == 1
    # nothing stored: the same request goes to the origin again
    status, headers, body = http_get(proxy, route + path)
    assert_bad_gateway(status, headers, body)
    assert evil.count(path) == 2


@pytest.mark.parametrize("behaviour", FRAMING)
def test_framing_error_collapsed_waiters_get_502(proxy, evil, behaviour):
    path = "/%s/collapsed" % behaviour
    evil.gate(path)
    n = 4
    results = [None] * n

    def client(i):
        results[i] = http_get(proxy, "/c" + path)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: evil.count(path) >= 1)
        # every client's request is in dexcache (so joined the one flight) while the origin holds it
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == n)
        assert evil.count(path) == 1
    finally:
        evil.open(path)
    for t in threads:
        t.join(30)
    for status, headers, body in results:
        assert_bad_gateway(status, headers, body)
    assert evil.count(path) == 1  # one fetch for all of them, and its answer was not shared


@pytest.fixture(scope="module")
def stale_copies(proxy, evil):
    """One good copy per framing behaviour, all stored then all past their 1 s ttl (inside the 60 s
    stale_if_error) after a single wait; the origin now answers each path with its bad framing."""
    first = {}
    for behaviour in FRAMING:
        path = "/st/" + behaviour
        evil.set(path, "ok")
        status, headers, body = http_get(proxy, "/s" + path)
        assert status == 200 and headers["x-cache"] == "MISS"
        first[behaviour] = body
        evil.set(path, behaviour)
    time.sleep(1.2)  # ttl 1s: the copies are stale now
    return first


@pytest.mark.parametrize("behaviour", FRAMING)
def test_framing_error_serves_stale_copy(proxy, evil, behaviour, stale_copies):
    path = "/st/" + behaviour
    first = stale_copies[behaviour]
    status, headers, body = http_get(proxy, "/s" + path)
    assert status == 200 and body == first
    assert headers["x-cache"] == "STALE"
    assert headers["cache-status"] == "dexcache; fwd=stale; detail=error"
    assert evil.count(path) == 2


@pytest.mark.parametrize("behaviour", ["clte", "twocl", "badcl"])
def test_framing_error_in_head_is_not_retried(proxy, evil, behaviour):
    path = "/%s/noretry" % behaviour
    status, headers, body = http_get(proxy, "/r" + path)
    assert_bad_gateway(status, headers, body)
    assert evil.count(path) == 1


def test_origin_framing_headers_never_reach_the_client(proxy, evil):
    for route in ("/c", "/p"):
        c = RawConn(proxy.port)
        try:
            status, headers, body = c.get(route + "/ok/frame")
            assert status == 200
            assert int(headers["content-length"]) == len(body)
            assert "transfer-encoding" not in headers
        finally:
            c.close()


# ---- item 5: timeouts -----------------------------------------------------------------------------

def test_drip_is_cut_at_the_whole_response_deadline(proxy, evil):
    path = "/drip/a"
    t0 = time.monotonic()
    status, headers, body = http_get(proxy, "/c" + path + "?n=20&rate=1")
    took = time.monotonic() - t0
    assert status == 504 and is_error_body(body, 504, "upstream timed out", headers)
    assert 2.5 <= took < 5.5, took
    assert evil.count(path) == 1
    status, headers, body = http_get(proxy, "/c" + path + "?n=20&rate=1")
    assert status == 504
    assert evil.count(path) == 2  # nothing was stored


@pytest.mark.parametrize("behaviour,query", [("drip", "?n=20&rate=1"), ("slowhead", "?delay=6")])
def test_timed_out_attempt_is_not_retried(proxy, evil, behaviour, query):
    """retries: 2, but the deadline covers every attempt: one attempt, 504 at the deadline."""
    path = "/%s/retry" % behaviour
    t0 = time.monotonic()
    status, headers, body = http_get(proxy, "/r" + path + query)
    took = time.monotonic() - t0
    assert status == 504 and is_error_body(body, 504, "upstream timed out", headers)
    assert took < 5.5, took
    assert evil.count(path) == 1


def test_drip_on_pass_through_is_cut_too(proxy, evil):
    path = "/drip/p"
    t0 = time.monotonic()
    status, headers, body = http_get(proxy, "/p" + path + "?n=20&rate=1")
    took = time.monotonic() - t0
    assert status == 504 and is_error_body(body, 504, "upstream timed out", headers)
    assert took < 5.5, took


def test_drip_serves_stale_copy(proxy, evil):
    path = "/st/drip"
    evil.set(path, "ok")
    status, headers, first = http_get(proxy, "/s" + path + "?n=20&rate=1")
    assert status == 200 and headers["x-cache"] == "MISS"
    evil.set(path, "drip")
    time.sleep(1.2)
    t0 = time.monotonic()
    status, headers, body = http_get(proxy, "/s" + path + "?n=20&rate=1")
    took = time.monotonic() - t0
    assert status == 200 and body == first and headers["x-cache"] == "STALE"
    assert headers["cache-status"] == "dexcache; fwd=stale; detail=timeout"
    assert took < 5.5, took


def test_streaming_response_is_cut_at_the_deadline(proxy, evil):
    """A large body already streaming to the client, never idle for long but not done by the
    deadline: its end is an error (the client never gets all the announced bytes), nothing stored."""
    path = "/drip/big"
    q = "?n=600020&first=600000&rate=2"  # 20 bytes at 2/s after 600 kB: done after 10 s, timeout 3s
    for attempt in (1, 2):
        c = RawConn(proxy.port)
        t0 = time.monotonic()
        try:
            c.s.sendall(("GET /c%s%s HTTP/1.1\r\nHost: x\r\n\r\n" % (path, q)).encode())
            with pytest.raises(EOFError):
                c.read_response()
        finally:
            c.close()
        took = time.monotonic() - t0
        assert took < 6.5, took
        assert evil.count(path) == attempt  # the cut answer was not stored


def test_idle_timeout_between_bytes(proxy_new, evil):
    path = "/stall/idle"
    t0 = time.monotonic()
    status, headers, body = http_get(proxy_new, "/i" + path + "?n=10&first=5&pause=4")
    took = time.monotonic() - t0
    assert status == 504 and is_error_body(body, 504, "upstream timed out", headers)
    assert 0.8 <= took < 3.5, took
    status, headers, body = http_get(proxy_new, "/i" + path + "?n=10&first=5&pause=4")
    assert status == 504
    assert evil.count(path) == 2


def test_idle_timeout_serves_stale_copy(proxy_new, evil):
    path = "/st/stall"
    evil.set(path, "ok")
    status, headers, first = http_get(proxy_new, "/is" + path + "?n=10&first=5&pause=4")
    assert status == 200
    evil.set(path, "stall")
    time.sleep(1.2)
    status, headers, body = http_get(proxy_new, "/is" + path + "?n=10&first=5&pause=4")
    assert status == 200 and body == first and headers["x-cache"] == "STALE"


def test_slow_body_within_limits_is_fine(proxy_new, evil):
    path = "/drip/fine"
    status, headers, body = http_get(proxy_new, "/i" + path + "?n=4&rate=4")
    assert status == 200 and body == b"xxxx"


# ---- item 6: unkeyed request headers --------------------------------------------------------------

SPOOFS = {
    "X-Forwarded-Host": "evil.example",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "DELETE",
    "Forwarded": "for=6.6.6.6;host=evil.example;proto=https",
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Port": "4443",
    "X-Forwarded-Server": "evil.example",
    "X-Host": "evil.example",
    "X-Real-IP": "6.6.6.6",
    "X-Forwarded-Scheme": "https",
    "X-Original-Host": "evil.example",
    "X-Custom-Junk": "evil.example",
}


def reflected(body):
    return {k: v for k, v in json.loads(body)["headers"]}


def test_spoofable_headers_never_reach_origin_on_cache_path(proxy, evil):
    path = "/reflect/cache"
    status, headers, body = http_get(proxy, "/c" + path, headers=dict(SPOOFS))
    assert status == 200 and headers["x-cache"] == "MISS"
    seen = evil.last_headers(path)
    assert b"evil.example" not in body and b"6.6.6.6" not in body and b"/admin" not in body
    assert b"DELETE" not in body
    for name in SPOOFS:
        if name.lower() in ("x-forwarded-for", "x-forwarded-proto", "forwarded"):
            continue
        assert name.lower() not in seen, name
    # ours, from what we know: the client is 127.0.0.1 on plain http
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["forwarded"] == "for=127.0.0.1;proto=http"
    # a clean client gets the same clean answer from the cache
    status, headers, body2 = http_get(proxy, "/c" + path)
    assert status == 200 and headers["x-cache"] == "HIT" and body2 == body
    assert evil.count(path) == 1


def test_cache_path_forwards_the_allow_list(proxy, evil):
    path = "/reflect/allow"
    sent = {"Accept": "application/json", "Accept-Language": "en", "User-Agent": "ua/1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "a=b",
            "Content-Type": "application/json", "Cookie": "sid=secret", "X-Api-Key": "client-key"}
    status, headers, body = http_get(proxy, "/c" + path, headers=sent)
    assert status == 200
    seen = evil.last_headers(path)
    for name in ("accept", "user-agent", "traceparent", "tracestate", "content-type"):
        assert seen[name] == sent[next(k for k in sent if k.lower() == name)], name
    # not in the key, so not forwarded by default (a route adds them with forward_headers/key_headers)
    assert "cookie" not in seen and "x-api-key" not in seen and "accept-language" not in seen


def test_pass_through_forwards_client_headers_but_not_spoofs(proxy, evil):
    path = "/reflect/pass"
    status, headers, body = http_get(proxy, "/p" + path, headers=dict(SPOOFS))
    assert status == 200
    seen = evil.last_headers(path)
    assert seen["x-custom-junk"] == "evil.example"  # the client's own headers go through
    assert seen["x-http-method-override"] == "DELETE"
    for name in ("x-forwarded-port", "x-forwarded-server", "x-real-ip", "x-forwarded-scheme", "x-original-host",
                 "x-host", "x-original-url", "x-rewrite-url"):
        assert name not in seen, name
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    host = "127.0.0.1:%d" % proxy.port
    assert seen["x-forwarded-host"] == host
    assert seen["forwarded"] == "for=127.0.0.1;host=\"%s\";proto=http" % host


def test_key_headers_are_forwarded_and_vary_the_key(proxy_new, evil):
    path = "/reflect/tenant"
    s1, h1, b1 = http_get(proxy_new, "/k" + path, headers={"X-Tenant": "a", "X-Extra": "e1", "X-Other": "o"})
    assert s1 == 200 and h1["x-cache"] == "MISS"
    seen = evil.last_headers(path)
    assert seen["x-tenant"] == "a" and seen["x-extra"] == "e1" and "x-other" not in seen
    s2, h2, b2 = http_get(proxy_new, "/k" + path, headers={"X-Tenant": "b"})
    assert s2 == 200 and h2["x-cache"] == "MISS" and reflected(b2)["x-tenant"] == "b"
    s3, h3, b3 = http_get(proxy_new, "/k" + path, headers={"X-Tenant": "a"})
    assert h3["x-cache"] == "HIT" and b3 == b1
    s4, h4, b4 = http_get(proxy_new, "/k" + path)
    assert h4["x-cache"] == "MISS" and "x-tenant" not in reflected(b4)
    assert evil.count(path) == 3


def test_x_forwarded_for_from_a_trusted_proxy_is_extended(proxy_new, evil):
    path = "/reflect/trusted"
    status, headers, body = http_get(proxy_new, "/i" + path,
                                     headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=6.6.6.6"})
    assert status == 200
    seen = evil.last_headers(path)
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["forwarded"] == "for=127.0.0.1;proto=http"


@pytest.mark.parametrize("coding", ["x-unheard-of", "br"])
def test_undecodable_content_encoding_marks_the_key_pass(proxy, evil, coding):
    """An answer in a coding dexcache can't turn into identity (anything but gzip) is private to the
    client that asked, like every other pass: the bytes reach it untouched, nothing is stored, and the
    key is remembered as hit-for-pass, so the next request goes straight to the origin instead of
    queueing behind a leader."""
    path = "/coding/%s" % coding
    evil.set(path, "coding")
    status, headers, body = http_get(proxy, "/c%s?ce=%s" % (path, coding))
    assert status == 200 and headers["x-cache"] == "MISS"
    assert headers["content-encoding"] == coding
    assert json.loads(body) == {"path": path, "n": 1}
    assert headers["cache-status"] == "dexcache; fwd=miss; detail=content-encoding", headers["cache-status"]
    status, headers, body = http_get(proxy, "/c%s?ce=%s" % (path, coding))
    assert status == 200 and headers["x-cache"] == "MISS"
    assert headers["cache-status"] == "dexcache; fwd=miss; detail=hit-for-pass", headers["cache-status"]
    assert json.loads(body) == {"path": path, "n": 2}
    assert evil.count(path) == 2
