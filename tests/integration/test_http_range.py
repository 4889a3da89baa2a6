"""Byte ranges (RFC 9110 §14) end to end: 206 / 416 / 200-whole from the cache, Accept-Ranges,
If-Range, the miss path (one full fetch, collapsed, Range never sent upstream; the leader is answered
206 from the body as it arrives), pass-through ranges, and a 206 from the origin never stored."""
import http.client
import socket
import threading

import pytest
import requests

from dexcache import Dexcache, wait_for
from fake import expected_bytes

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
cache: {{ memory: 256MiB, max_object: 64MiB }}
upstreams:
  jupiter: {{ url: "%(jup)s", keys: ["k1"], timeout: 20s }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /bytes, ttl: 60s }}
      - {{ path: /respond, ttl: 60s, respect_origin: true }}
  - prefix: /pass
    upstream: jupiter
"""

ID = {"Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % {"jup": fake.url("jup")})
    d.start()
    yield d
    d.stop()


@pytest.fixture
def clean(proxy, origin):
    r = requests.post(proxy.admin_url + "/purge", json={"all": True}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    origin.reset()
    return origin


def raw_get(proxy, path, headers):
    """(status, headers dict lowercased, body) with nothing decoded."""
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    try:
        h = {"Accept-Encoding": "identity"}
        h.update(headers)
        c.request("GET", path, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def warm(proxy, path):
    r = requests.get(proxy.url + path, headers=ID, timeout=30)
    assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    return r


def test_single_suffix_and_open_ranges_from_the_cache(proxy, clean):
    n = 100000
    path = "/jup/bytes?n=%d" % n
    full = expected_bytes(n)
    warm(proxy, path)
    cases = [("bytes=100-199", 100, 199), ("bytes=-300", n - 300, n - 1), ("bytes=99990-", 99990, n - 1),
             ("bytes=0-999999999", 0, n - 1), ("bytes=5-5", 5, 5)]
    for spec, f, l in cases:
        st, h, body = raw_get(proxy, path, {"Range": spec})
        assert st == 206, spec
        assert h["content-range"] == "bytes %d-%d/%d" % (f, l, n)
        assert h["content-length"] == str(l - f + 1)
        assert h["accept-ranges"] == "bytes"
        assert h["x-cache"] == "HIT"
        assert body == full[f:l + 1]
    st, h, body = raw_get(proxy, path, {})
    assert st == 200 and h["accept-ranges"] == "bytes" and "content-range" not in h and body == full
    assert clean.stats()["jup"]["total"] == 1


def test_unsatisfiable_is_416_with_star_length(proxy, clean):
    path = "/jup/bytes?n=1000"
    warm(proxy, path)
    for spec in ("bytes=1000-", "bytes=5000-6000", "bytes=-0"):
        st, h, body = raw_get(proxy, path, {"Range": spec})
        assert st == 416, spec
        assert h["content-range"] == "bytes */1000"
        assert h["content-length"] == "0"
        assert body == b""
    assert clean.stats()["jup"]["total"] == 1


def test_multiple_ranges_and_invalid_syntax_get_the_whole_200(proxy, clean):
    path = "/jup/bytes?n=5000"
    full = expected_bytes(5000)
    warm(proxy, path)
    for spec in ("bytes=0-9,20-29", "bytes=5-1", "bytes=abc", "items=0-9", "bytes=", "bytes 0-9"):
        st, h, body = raw_get(proxy, path, {"Range": spec})
        assert st == 200, spec
        assert "content-range" not in h
        assert h["content-length"] == "5000"
        assert body == full
    assert clean.stats()["jup"]["total"] == 1


def test_if_range_strong_etag_or_exact_date(proxy, clean):
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    path = "/jup/respond?h=Cache-Control:max-age%3D60&h=Last-Modified:" + lm.replace(" ", "%20").replace(",", "%2C")
    warm(proxy, path)
    st, h, full = raw_get(proxy, path, {})
    etag = h["etag"]
    assert st == 200 and etag.startswith('"') and h["last-modified"] == lm
    st, h, body = raw_get(proxy, path, {"Range": "bytes=0-3", "If-Range": etag})
    assert st == 206 and body == full[:4] and h["content-range"] == "bytes 0-3/%d" % len(full)
    st, h, body = raw_get(proxy, path, {"Range": "bytes=0-3", "If-Range": lm})
    assert st == 206 and body == full[:4]
    for other in ('"nope"', "W/" + etag, "Wed, 21 Oct 2015 07:28:01 GMT"):
        st, h, body = raw_get(proxy, path, {"Range": "bytes=0-3", "If-Range": other})
        assert st == 200, other
        assert body == full and "content-range" not in h
    assert clean.stats()["jup"]["total"] == 1


def test_cold_50_concurrent_ranges_one_full_fetch(proxy, clean):
    n = 4 * 1024 * 1024
    path = "/jup/bytes?n=%d" % n
    full = expected_bytes(n)
    clean.gate("/bytes")
    k = 50
    out = [None] * k

    def one(i):
        f = (i * 80000) % (n - 1000)
        try:
            out[i] = (f,) + raw_get(proxy, path, {"Range": "bytes=%d-%d" % (f, f + 999)})
        except Exception as e:  # recorded, asserted below
            out[i] = e

    ts = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    for t in ts:
        t.start()
    try:
        # every request is in dexcache (queued on the one flight) before the origin answers
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == k, timeout=30), \
            proxy.metric("dexcache_requests_in_flight")
        assert clean.held() == 1
    finally:
        clean.release()
    for t in ts:
        t.join(60)
    for i in range(k):
        assert not isinstance(out[i], Exception), out[i]
        f, st, h, body = out[i]
        assert st == 206
        assert h["content-range"] == "bytes %d-%d/%d" % (f, f + 999, n)
        assert h["content-length"] == "1000"
        assert body == full[f:f + 1000]
    assert clean.stats()["jup"]["total"] == 1
    reqs = [r for r in clean.requests() if r["path"] == "/bytes"]
    assert len(reqs) == 1
    assert "range" not in reqs[0]["headers"] and "if-range" not in reqs[0]["headers"]
    st, h, body = raw_get(proxy, path, {})
    assert st == 200 and h["x-cache"] == "HIT" and body == full


def test_leader_alone_gets_206_and_the_object_is_stored(proxy, clean):
    n = 3 * 1024 * 1024  # larger than the head is held for: the range is cut from the arriving body
    path = "/jup/bytes?n=%d" % n
    full = expected_bytes(n)
    st, h, body = raw_get(proxy, path, {"Range": "bytes=2000000-2000099"})
    assert st == 206 and h["x-cache"] == "MISS"
    assert h["content-range"] == "bytes 2000000-2000099/%d" % n
    assert h["content-length"] == "100" and body == full[2000000:2000100]
    st, h, body = raw_get(proxy, "/jup/bytes?n=100", {"Range": "bytes=10-19"})  # small: complete first
    assert st == 206 and h["x-cache"] == "MISS" and body == expected_bytes(100)[10:20]
    st, h, body = raw_get(proxy, path, {})
    assert st == 200 and h["x-cache"] == "HIT" and body == full
    assert clean.stats()["jup"]["total"] == 2


def test_pass_through_forwards_range_and_passes_the_206_back(proxy, clean):
    n = 10000
    st, h, body = raw_get(proxy, "/pass/bytes?n=%d&ranges=1" % n, {"Range": "bytes=100-149"})
    assert st == 206
    assert h["content-range"] == "bytes 100-149/%d" % n
    assert body == expected_bytes(n)[100:150]
    reqs = clean.requests()
    assert len(reqs) == 1 and reqs[0]["headers"].get("range") == "bytes=100-149"


def test_206_from_the_origin_is_never_stored(proxy, clean):
    path = "/jup/respond?status=206&h=Content-Range:bytes%200-1/10&h=Cache-Control:max-age%3D60"
    for _ in range(2):
        st, h, body = raw_get(proxy, path, {})
        assert st == 206 and h["x-cache"] == "MISS"
    assert clean.stats()["jup"]["total"] == 2


def test_two_range_lines_are_no_range(proxy, clean):
    """Two Range field lines combine into "bytes=0-9, bytes=20-29", which is no valid ranges-specifier
    (RFC 9110 14.2): ignored, the whole 200 (before: the first line was answered 206)."""
    path = "/jup/bytes?n=5000"
    full = expected_bytes(5000)
    warm(proxy, path)
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\nRange: bytes=0-9\r\n"
                   "Range: bytes=20-29\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head[:40]
    assert b"content-range" not in head.lower()
    assert body == full
