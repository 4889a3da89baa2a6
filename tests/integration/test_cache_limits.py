"""Cache memory budget (eviction, RSS), CDN headers per route, and a Vary the cache cannot honour."""

import requests

from dexcache import Dexcache, PREAMBLE, RSS_CHECKS, SANITIZER_RSS_MIB, wait_for
from test_transport import rss_kib

MINT_A = "So11111111111111111111111111111111111111112"
MINT_B = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"


def test_eviction_keeps_memory_within_budget(fake, origin):
    conf = PREAMBLE + """
cache: {{ memory: 4MiB, max_object: 1MiB }}
upstreams:
  jupiter: {{ url: "%s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /bytes, ttl: 60s }} ] }}
""" % fake.url("jup")
    with Dexcache(conf) as d:
        s = requests.Session()
        s.get(d.url + "/jup/bytes?n=1000&warm=1")
        base = rss_kib(d.proc.pid)
        n, size = 1000, 40 * 1024  # 40 MB offered: 10x the budget
        for i in range(n):
            r = s.get(d.url + "/jup/bytes?n=%d&i=%d" % (size, i))
            assert r.status_code == 200 and len(r.content) == size
        # the last store lands a moment after its client read the last byte
        assert wait_for(lambda: d.metric("dexcache_cache_evictions_total") >= n - 110, timeout=5)
        h = d.health()["cache"]
        assert h["bytes"] <= 4 * 1024 * 1024
        assert h["entries"] < 110  # about 4 MiB / 40 KiB
        assert d.metric("dexcache_cache_evictions_total") >= n - 110
        growth = (rss_kib(d.proc.pid) - base) / 1024
        print("RSS growth %.1f MiB for 40 MB offered to a 4 MiB cache" % growth)
        assert not RSS_CHECKS or growth < 4 + 12 + SANITIZER_RSS_MIB  # budget + a margin (+ ASan's quarantine)
        # the most recent entries are still there, the oldest are gone
        assert s.get(d.url + "/jup/bytes?n=%d&i=%d" % (size, n - 1)).headers["x-cache"] == "HIT"
        assert s.get(d.url + "/jup/bytes?n=%d&i=0" % size).headers["x-cache"] == "MISS"
        # larger than max_object: served, never stored
        r = s.get(d.url + "/jup/bytes?n=%d" % (2 * 1024 * 1024))
        assert r.status_code == 200 and len(r.content) == 2 * 1024 * 1024
        assert r.headers["cache-status"] == "dexcache; fwd=miss; detail=too-big"
        r = s.get(d.url + "/jup/bytes?n=%d" % (2 * 1024 * 1024))
        assert r.headers["cache-status"] == "dexcache; fwd=miss; detail=hit-for-pass"


def test_cdn_headers_per_route(fake, origin):
    conf = """
listen: ["127.0.0.1:{port}"]
workers: 1
admin: {{ listen: "127.0.0.1:{admin_port}" }}
upstreams:
  jupiter: {{ url: "%s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    cdn: {{ max_age: 1s, s_maxage: 2s, stale_while_revalidate: 10s, stale_if_error: 5m, cdn_cache_control: true, tag_params: [ids] }}
    cache:
      - {{ path: /price/v3, ttl: 2s, key_sets: [ids] }}
      - {{ path: /swap/v1/quote, ttl: 1s, negative_ttl: 1s }}
  - prefix: /plain
    upstream: jupiter
    cache: [ {{ path: /, ttl: 5s }} ]
""" % fake.url("jup")
    with Dexcache(conf) as d:
        for expect in ("MISS", "HIT"):
            r = requests.get(d.url + "/jup/price/v3?ids=%s,%s" % (MINT_B, MINT_A))
            assert r.headers["x-cache"] == expect
            assert r.headers["cache-control"] == \
                "public, max-age=1, s-maxage=2, stale-while-revalidate=10, stale-if-error=300"
            assert r.headers["cdn-cache-control"] == "max-age=2, stale-while-revalidate=10, stale-if-error=300"
            assert r.headers["surrogate-key"] == "jup %s %s" % (MINT_B, MINT_A)
            assert r.headers["cache-tag"] == "jup,%s,%s" % (MINT_B, MINT_A)
        for expect in ("MISS", "HIT"):
            r = requests.get(d.url + "/jup/swap/v1/quote?inputMint=x")  # 400: negative
            assert r.status_code == 400 and r.headers["x-cache"] == expect
            assert r.headers["cache-control"] == "public, max-age=1, s-maxage=1"
        r = requests.get(d.url + "/plain/respond?h=Cache-Control:max-age%3D7")
        assert r.headers["cache-control"] == "max-age=7"  # no cdn block: the origin's header as is
        assert "surrogate-key" not in r.headers
        # never stored, never given CDN cache headers
        r = requests.post(d.url + "/jup/swap/v1/swap", json={})
        assert "surrogate-key" not in r.headers and "cdn-cache-control" not in r.headers


def test_vary_other_than_accept_encoding_not_stored(fake, origin):
    conf = """
listen: ["127.0.0.1:{port}"]
workers: 1
admin: {{ listen: "127.0.0.1:{admin_port}" }}
upstreams:
  jupiter: {{ url: "%s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /, ttl: 60s, respect_origin: true }} ] }}
""" % fake.url("jup")
    with Dexcache(conf) as d:
        p = "/jup/respond?h=Vary:Authorization"
        assert requests.get(d.url + p).headers["cache-status"] == "dexcache; fwd=miss; detail=vary"
        p = "/jup/respond?h=Vary:Accept-Encoding"
        requests.get(d.url + p)
        assert requests.get(d.url + p).headers["x-cache"] == "HIT"
        assert origin.stats()["jup"]["total"] == 2
