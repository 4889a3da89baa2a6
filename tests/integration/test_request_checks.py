"""Each request check answers with its status and a JSON body, and nothing reaches the origin."""
import json
import socket

import pytest

from dexcache import Dexcache, PREAMBLE
from rawhttp import read_response

CONFIG = PREAMBLE + """
server: {{ max_body: 64KiB, max_uri: 8KiB, max_header_bytes: 16KiB, max_headers: 64 }}
upstreams:
  jupiter: {{ url: "%s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
  - {{ prefix: /small, upstream: jupiter, max_body: 1KiB }}
"""


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % fake.url("jup"))
    d.start()
    yield d
    d.stop()


def raw(proxy, data, timeout=5):
    """Send raw bytes, return (status, headers dict, body bytes) of the first response."""
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    try:
        s.sendall(data)
        return read_response(s)
    finally:
        s.close()


def check(proxy, origin, data, status, message):
    st, headers, body = raw(proxy, data)
    assert st == status, (st, body)
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["status"] == status and doc["error"] == message
    assert len(doc["request_id"]) > 0
    assert origin.stats()["jup"]["total"] == 0
    return headers


def test_uri_too_long_414(proxy, origin):
    check(proxy, origin, b"GET /jup/echo?x=" + b"a" * 8200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414,
          "request URI too long")


def test_too_many_headers_431(proxy, origin):
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(70))
    check(proxy, origin, b"GET /jup/echo HTTP/1.1\r\nHost: a\r\n" + hdrs + b"\r\n", 431, "too many request headers")


def test_header_block_too_large_431(proxy, origin):
    check(proxy, origin, b"GET /jup/echo HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * (17 * 1024) + b"\r\n\r\n", 431,
          "request header fields too large")


def test_cl_and_te_400(proxy, origin):
    h = check(proxy, origin, b"POST /jup/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n", 400,
              "both Content-Length and Transfer-Encoding")
    assert h["connection"] == "close"


def test_two_content_lengths_400(proxy, origin):
    check(proxy, origin, b"POST /jup/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
          400, "more than one Content-Length header")


def test_two_hosts_400(proxy, origin):
    check(proxy, origin, b"GET /jup/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "more than one Host header")


@pytest.mark.parametrize("method", [b"TRACE", b"CONNECT", b"FOO"])
def test_methods_405(proxy, origin, method):
    target = b"127.0.0.1:1" if method == b"CONNECT" else b"/jup/echo"
    h = check(proxy, origin, method + b" " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 405, "method not allowed")
    assert "GET" in h["allow"]


def test_body_over_route_cap_413(proxy, origin):
    check(proxy, origin, b"POST /small/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000, 413,
          "request body too large")


def test_body_over_server_cap_413(proxy, origin):
    st, _, _ = raw(proxy, b"POST /jup/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000)
    assert st == 413  # refused by the server-wide cap before the body is buffered
    assert origin.stats()["jup"]["total"] == 0


def test_clean_requests_still_pass(proxy, origin):
    st, _, body = raw(proxy, b"POST /small/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    assert st == 200 and json.loads(body)["body_len"] == 3
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(60))
    st, _, _ = raw(proxy, b"GET /jup/echo HTTP/1.1\r\nHost: a\r\n" + hdrs + b"\r\n")
    assert st == 200
    assert origin.stats()["jup"]["total"] == 2
