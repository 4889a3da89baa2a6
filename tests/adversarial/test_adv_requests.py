"""Bad requests over raw sockets (issue 13 item 8): each is answered with its exact 4xx and the JSON
error, the connection is closed where framing is in doubt, and neither origin sees a request. The
ones tests/integration/test_request_checks.py already covers (414/431 under libh2o's limits, CL+TE,
two Content-Lengths, two Hosts, methods, body caps) are not repeated here, except as variants that
also assert the close and the origin's silence.

Request targets are normalised before routing: what is routed is what is keyed and forwarded."""
import json
import socket
import time

import pytest
import requests

from dexcache import Dexcache, PREAMBLE
from rawhttp import read_response

CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%s" }}
  meteora: {{ url: "%s" }}
routes:
  - {{ prefix: /b, upstream: jupiter, cache: [ {{ path: /echo, ttl: 60s }} ] }}
  - {{ prefix: /o, upstream: meteora }}
"""


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % (fake.url("jup"), fake.url("meteora")))
    d.start()
    yield d
    d.stop()


def exchange(proxy, data, timeout=10):
    """Send raw bytes on a new connection; return (status, headers, body, closed): `closed` says
    the server closed the connection after its answer (EOF or reset within `timeout`)."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole request was read: the answer is still there to read
        status, headers, body = read_response(s, timeout)
        closed = False
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                if not s.recv(65536):
                    closed = True
                    break
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            closed = False
        return status, headers, body, closed
    finally:
        s.close()


def total(origin):
    st = origin.stats()
    return st["jup"]["total"] + st["meteora"]["total"]


HEADERS_101 = b"".join(b"X-H%d: v\r\n" % i for i in range(100))  # + Host = 101 lines
HEADERS_150 = b"".join(b"X-H%d: v\r\n" % i for i in range(149))

BAD = [
    # (id, raw request, status, message)
    ("http11-no-host", b"GET /b/echo HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "missing Host header"),
    ("obs-fold-sp", b"GET /b/echo HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n continued\r\n\r\n", 400,
     "obsolete line folding in request headers"),
    ("obs-fold-tab", b"GET /b/echo HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400,
     "obsolete line folding in request headers"),
    ("chunk-size-bare-lf", b"POST /b/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"4\nabcd\r\n0\r\n\r\n", 400, "malformed request body"),
    ("chunk-end-bare-lf", b"POST /b/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"4\r\nabcd\n0\r\n\r\n", 400, "malformed request body"),
    ("last-chunk-bare-lf", b"POST /b/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"4\r\nabcd\r\n0\n\r\n", 400, "malformed request body"),
    ("pct00", b"GET /b/echo%00x HTTP/1.1\r\nHost: a\r\n\r\n", 400, "NUL byte in path"),
    ("pct-bare", b"GET /b/echo% HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed percent-encoding in path"),
    ("pct-short", b"GET /b/echo%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed percent-encoding in path"),
    ("pct-nonhex", b"GET /b/%zzecho HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed percent-encoding in path"),
    ("101-headers", b"GET /b/echo HTTP/1.1\r\nHost: a\r\n" + HEADERS_101 + b"\r\n", 431,
     "too many request headers"),
    ("150-headers", b"GET /b/echo HTTP/1.1\r\nHost: a\r\n" + HEADERS_150 + b"\r\n", 431,
     "too many request headers"),
    ("dotdot-above-root", b"GET /.. HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path climbs above the root"),
    ("pct2e-above-root", b"GET /%2e%2e/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path climbs above the root"),
    ("climb-out-of-route", b"GET /b/../../o/echo HTTP/1.1\r\nHost: a\r\n\r\n", 400, "path climbs above the root"),
    ("not-a-path", b"GET http://a/b/echo HTTP/1.1\r\nHost: a\r\n\r\n", 400,
     "request target is not an absolute path"),
    # a request line or header block that never ends: answered once over the caps, not when
    # libh2o's 408 KiB buffer is full
    ("endless-request-line", b"GET /b/" + b"a" * 20000, 414, "request URI too long"),
    ("endless-header-block", b"GET /b/echo HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 40000, 431,
     "request header fields too large"),
    # variants of tests/integration/test_request_checks.py, with the close asserted
    ("te-then-cl", b"POST /b/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
     b"4\r\nabcd\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"),
    ("two-cl-same", b"POST /b/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\ncontent-length: 4\r\n\r\nabcd", 400,
     "more than one Content-Length header"),
    ("two-hosts-http10", b"GET /b/echo HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400, "more than one Host header"),
]


@pytest.mark.parametrize("raw,status,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_request_refused(proxy, origin, raw, status, message):
    st, headers, body, closed = exchange(proxy, raw)
    assert st == status, (st, body)
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    doc = json.loads(body)
    assert doc["error"] == message and doc["status"] == status
    assert len(doc["request_id"]) > 0 and headers["x-request-id"] == doc["request_id"]
    assert closed, "the connection must not be reused after a refused request"
    assert total(origin) == 0
    # a clean request on a new connection still works, and was not cached by the bad one
    r = requests.get(proxy.url + "/o/echo", timeout=10)
    assert r.status_code == 200 and r.json()["path"] == "/echo"
    assert total(origin) == 1


def test_http10_without_host_allowed(proxy, origin):
    st, _, body, _ = exchange(proxy, b"GET /o/echo HTTP/1.0\r\n\r\n")
    assert st == 200 and json.loads(body)["path"] == "/echo"
    assert origin.stats()["meteora"]["total"] == 1


def test_101_headers_on_http10_and_100_pass(proxy, origin):
    # 100 lines is libh2o's array: it passes; one more is 431 whatever the version
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(99))
    st, _, body, _ = exchange(proxy, b"GET /o/echo HTTP/1.1\r\nHost: a\r\n" + hdrs + b"\r\n")
    assert st == 200
    st, _, body, closed = exchange(proxy, b"GET /o/echo HTTP/1.0\r\n" + HEADERS_101 + b"X-Last: v\r\n\r\n")
    assert st == 431 and json.loads(body)["status"] == 431 and closed
    assert origin.stats()["meteora"]["total"] == 1


def test_valid_chunked_body_still_forwarded(proxy, origin):
    st, _, body, _ = exchange(proxy, b"POST /o/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                     b"Connection: close\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n")
    assert st == 200 and json.loads(body)["body_len"] == 7
    assert origin.stats()["meteora"]["total"] == 1


@pytest.mark.parametrize("target,route,upstream_path", [
    (b"/b/../o/echo", "meteora", "/echo"),        # not routed by /b: it is /o/echo
    (b"/b/%2e%2e/o/echo", "meteora", "/echo"),
    (b"/b/.%2E/o/echo", "meteora", "/echo"),
    (b"//b//echo?i=1", "jup", "/echo"),  # distinct queries: /b/echo is cached
    (b"/b/./echo?i=2", "jup", "/echo"),
    (b"/b/%2e/echo?i=3", "jup", "/echo"),
    (b"/o/x/../echo?q=/../a", "meteora", "/echo"),  # the query is not a path
])
def test_path_normalised_before_routing(proxy, origin, target, route, upstream_path):
    st, headers, body, _ = exchange(proxy, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert st == 200, body
    doc = json.loads(body)
    assert doc["path"] == upstream_path  # forwarded as normalised
    other = "jup" if route == "meteora" else "meteora"
    st_ = origin.stats()
    assert st_[route]["total"] == 1 and st_[other]["total"] == 0


def test_normalised_path_shares_the_cache_key(proxy, origin):
    r = requests.get(proxy.url + "/b/echo?k=norm", timeout=10)
    assert r.headers["x-cache"] == "MISS"
    for target in (b"/b/./echo?k=norm", b"//b/x/../echo?k=norm", b"/b/%2e/echo?k=norm"):
        st, headers, _, _ = exchange(proxy, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert st == 200 and headers["x-cache"] == "HIT", target
    assert origin.stats()["jup"]["total"] == 1


@pytest.mark.parametrize("bad", [
    b"4\nabcd\r\n0\r\n\r\n",            # chunk-size line ended by a bare LF
    b"4\r\nabcd\n0\r\n\r\n",            # chunk data ended by a bare LF
    b"4\r\nabcd\r\r\n0\r\n\r\n",        # CR CR LF after the data
    b"4\r\nabcd\r\n0\n\r\n",            # last-chunk line ended by a bare LF
    b"4\r\nabcd\r\n0\r\nX-T: 1\n\r\n",  # a bare-LF trailer line
    b"4 x\x01\r\nabcd\r\n0\r\n\r\n",    # a control character in a chunk extension
    b"4x\r\nabcd\r\n0\r\n\r\n",         # garbage right after the size
])
def test_bad_chunking_on_a_later_keepalive_request(proxy, origin, bad):
    """The gate judges a connection's first request; later ones are decoded by libh2o with our
    strict decoder (http/h1chunked.c): the same framing errors are refused there too, and the body
    is never forwarded."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        s.sendall(b"GET /o/echo?first=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        st, _, _ = read_response(s)
        assert st == 200
        s.sendall(b"POST /o/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + bad)
        st, headers, body = read_response(s)
        assert st == 400, body
        assert s.recv(65536) == b""  # closed: the framing is in doubt
    finally:
        s.close()
    assert total(origin) == 1  # only the first request reached an origin


def test_good_chunking_on_a_later_keepalive_request(proxy, origin):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    try:
        for i in range(3):
            s.sendall(b"POST /o/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"4\r\nabcd\r\n3;ext=1;q=\"a b\"\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n")
            st, _, body = read_response(s)
            assert st == 200 and json.loads(body)["body_len"] == 7
    finally:
        s.close()
    assert total(origin) == 3


def test_h2_target_with_whitespace_is_refused_and_never_counts_against_the_origin(proxy, origin):
    """HTTP/1 cannot carry a space in its request target, HTTP/2 can. Such a target made a URL curl
    could not use: a 502 that counted as an origin failure, so 8 such streams opened the upstream's
    breaker for every client (the origin never saw one of them). Now it is a 400 before routing."""
    from h2client import H2
    c = H2(proxy.port)
    try:
        paths = ["/b/echo?x=%d y" % i for i in range(10)] + ["/b/ec ho%d" % i for i in range(5)] + \
                ["/o/echo\t%d" % i for i in range(5)]
        sids = [c.get(p) for p in paths]
        out = c.wait_ended(sids)
        assert sorted(set(out.values())) == ["400"], out
    finally:
        c.close()
    assert total(origin) == 0
    h = proxy.health()["upstreams"]
    assert h["jupiter"]["breaker"]["state"] == "closed" and h["jupiter"]["consecutive_failures"] == 0, h
    assert h["meteora"]["breaker"]["state"] == "closed", h
    r = requests.get(proxy.url + "/b/echo?clean=1", timeout=10)
    assert r.status_code == 200


def test_pass_through_post_gets_no_invented_content_type(proxy, origin):
    """libcurl gives a body without Content-Type its own (application/x-www-form-urlencoded): the
    origin must see what the client sent, nothing more."""
    st, _, _, _ = exchange(proxy, b"POST /o/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd")
    assert st == 200
    seen = [x for x in origin.requests(0) if x["method"] == "POST"][-1]["headers"]
    assert "content-type" not in {k.lower() for k in seen}, seen
    r = requests.post(proxy.url + "/o/echo", data=b"{}", headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200
    seen = [x for x in origin.requests(0) if x["method"] == "POST"][-1]["headers"]
    assert {k.lower(): v for k, v in seen.items()}["content-type"] == "application/json"


def test_api_key_with_crlf_is_refused_by_the_config_check(tmp_path):
    """A key from ${VAR} with CR LF in it would have injected header lines toward the origin."""
    import subprocess
    from dexcache import BIN, sanitizer_env
    conf = tmp_path / "c.yaml"
    conf.write_text('listen: ["127.0.0.1:1"]\nupstreams:\n  u: { url: "http://127.0.0.1:1", keys: ["${K}"] }\n'
                    'routes:\n  - { prefix: /u, upstream: u }\n')
    env = sanitizer_env()
    env["K"] = "abc\r\nX-Evil: 1"
    p = subprocess.run([BIN, "-t", "-c", str(conf)], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 1, p.stderr
    assert "control characters" in p.stderr and "keys" in p.stderr, p.stderr
    env["K"] = "abc-123"
    assert subprocess.run([BIN, "-t", "-c", str(conf)], env=env, capture_output=True, timeout=30).returncode == 0
