"""Per-client limits (in-process GCRA): headers on every answer of a limited route, 429 with
Retry-After when over, separate buckets per client, X-Forwarded-For believed only from trusted
proxies, limits by API-key header."""
import time

import pytest
import requests

from dexcache import Dexcache, PREAMBLE

CONFIG = PREAMBLE + """
server: {{ trusted_proxies: [%(trusted)s] }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    limit: {{ rate: 5/1s, burst: 5, by: client }}
    cache: [ {{ path: /price/v3, ttl: 60s, key_sets: [ids] }} ]
  - prefix: /keyed
    upstream: jupiter
    limit: {{ rate: 2/1s, burst: 2, by: "header:x-api-key" }}
  - prefix: /free
    upstream: jupiter
"""


def start(fake, trusted=""):
    return Dexcache(CONFIG % {"jup": fake.url("jup"), "trusted": trusted}).start()


def test_limit_headers_and_429(fake, origin):
    d = start(fake)
    try:
        s = requests.Session()
        codes = []
        for i in range(7):
            r = s.get(d.url + "/jup/price/v3?ids=So11111111111111111111111111111111111111112")
            codes.append(r.status_code)
            assert r.headers["ratelimit-policy"] == '"client";q=5;w=1'
            assert r.headers["x-ratelimit-limit"] == "5"
            if r.status_code == 200:
                assert r.headers["ratelimit"] == '"client";r=%d;t=1' % (4 - i)
                assert r.headers["x-ratelimit-remaining"] == str(4 - i)
        assert codes == [200] * 5 + [429] * 2
        assert r.headers["retry-after"] == "1"
        assert r.headers["ratelimit"].startswith('"client";r=0;t=')
        assert r.json() == {"error": "rate limit exceeded", "status": 429, "request_id": r.headers["x-request-id"]}
        assert r.headers["cache-control"] == "no-store"
        # hits count against the limit too, and a refused request reaches neither cache nor origin
        assert origin.stats()["jup"]["total"] == 1
        assert d.metric("dexcache_limited_total", route="/jup") == 2
        time.sleep(0.25)  # 200 ms is one emission interval
        assert s.get(d.url + "/jup/echo").status_code == 200
        # an unlimited route carries no limit headers
        r = s.get(d.url + "/free/echo")
        assert r.status_code == 200 and "ratelimit" not in r.headers
    finally:
        d.stop()


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(fake, origin):
    d = start(fake)  # no trusted proxies: X-Forwarded-For can't pick a bucket
    try:
        codes = [requests.get(d.url + "/jup/echo", headers={"X-Forwarded-For": "203.0.113.%d" % i}).status_code
                 for i in range(7)]
        assert codes == [200] * 5 + [429] * 2
    finally:
        d.stop()


def test_trusted_proxy_forwarded_for_gives_buckets(fake, origin):
    d = start(fake, trusted='"127.0.0.1/32"')
    try:
        a = [requests.get(d.url + "/jup/echo", headers={"X-Forwarded-For": "203.0.113.1"}).status_code
             for _ in range(6)]
        b = [requests.get(d.url + "/jup/echo", headers={"X-Forwarded-For": "203.0.113.2, 127.0.0.1"}).status_code
             for _ in range(6)]
        c = [requests.get(d.url + "/jup/echo", headers={"CF-Connecting-IP": "198.51.100.4"}).status_code
             for _ in range(6)]
        assert a == b == c == [200] * 5 + [429]
    finally:
        d.stop()


def test_limit_by_api_key_header(fake, origin):
    d = start(fake)
    try:
        k1 = [requests.get(d.url + "/keyed/echo", headers={"x-api-key": "user-1"}).status_code for _ in range(3)]
        k2 = [requests.get(d.url + "/keyed/echo", headers={"x-api-key": "user-2"}).status_code for _ in range(3)]
        assert k1 == k2 == [200, 200, 429]
    finally:
        d.stop()
