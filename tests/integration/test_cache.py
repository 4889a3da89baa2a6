"""The cache engine end to end: collapsing, normalised keys, never-cached requests, stale-while-
revalidate, stale-if-error, must-revalidate, ETag/304, HEAD, negative caching, hit-for-pass, purge,
eviction under a byte budget, and large objects shared by concurrent clients."""
import hashlib
import http.client
import json
import socket
import subprocess
import threading
import time

import pytest
import requests

from dexcache import Dexcache, wait_for
from h2client import H2

MINT_A = "So11111111111111111111111111111111111111112"
MINT_B = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
log: {{ access: "{access_log}" }}
cache: {{ memory: 256MiB, max_object: 64MiB }}
upstreams:
  # tests here fail this upstream back to back on purpose: the breaker has its own (test_adv_outage)
  jupiter: {{ url: "%(jup)s", keys: ["k1"], timeout: 3s, retries: 1, retry_backoff: 10ms, breaker: {{ failures: 1000 }} }}
  meteora: {{ url: "%(meteora)s", timeout: 30s }}
routes:
  - prefix: /jup
    upstream: jupiter
    no_cache: [/swap/v1/swap, /swap/v2/order, /swap/v2/build, /swap/v2/execute]
    cdn: {{ tag_params: [ids] }}
    cache:
      - {{ path: /price/v3, ttl: 1s, stale_while_revalidate: 10s, stale_if_error: 3s, key_sets: [ids] }}
      - {{ path: /swap/v1/quote, ttl: 2s, negative_ttl: 2s }}
      - {{ path: /respond, ttl: 1s, stale_if_error: 30s, respect_origin: true }}
      - {{ path: /echo, ttl: 30s, ignore_params: [nonce] }}
      - {{ path: /bytes, ttl: 60s }}
      - {{ path: /swap, ttl: 30s }}
  - prefix: /pre
    upstream: jupiter
    cache:
      - {{ path: /, ttl: 2s, prefetch: 0.5 }}
  - prefix: /rev
    upstream: jupiter
    cache:
      - {{ path: /, ttl: 30s, stale_if_error: 30s, client_no_cache: revalidate }}
  - prefix: /sie
    upstream: jupiter
    cache:
      - {{ path: /, ttl: 1s, stale_if_error: 1s }}
  - prefix: /meteora
    upstream: meteora
    cache:
      - {{ path: /, ttl: 60s }}
"""


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % {"jup": fake.url("jup"), "meteora": fake.url("meteora")})
    d.start()
    yield d
    d.stop()


@pytest.fixture
def clean(proxy, origin):
    """Empty cache and fresh origin counters for each test."""
    r = requests.post(proxy.admin_url + "/purge", json={"prefix": "/"}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    origin.config({"latency": {"fixed": 0}})
    origin.reset()
    return origin


def total(origin, profile="jup"):
    return origin.stats()[profile]["total"]


def get(proxy, path, **kw):
    return requests.get(proxy.url + path, timeout=15, **kw)



def test_miss_then_hit_headers(proxy, clean):
    r1 = get(proxy, "/jup/price/v3?ids=%s" % MINT_A)
    assert r1.status_code == 200
    assert r1.headers["x-cache"] == "MISS"
    assert r1.headers["cache-status"] == "dexcache; fwd=miss; stored"
    r2 = get(proxy, "/jup/price/v3?ids=%s" % MINT_A)
    assert r2.headers["x-cache"] == "HIT"
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=1"
    assert r2.headers["age"] == "0"
    assert r2.headers["etag"].startswith('"') and len(r2.headers["etag"]) == 34
    assert r2.content == r1.content
    assert r2.headers["x-fake-seq"] == r1.headers["x-fake-seq"]
    assert total(clean) == 1


def test_500_concurrent_cold_requests_one_upstream(proxy, clean):
    clean.gate("/price/v3")
    n = 500
    results = [None] * n

    def one(i):
        c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
        try:
            c.request("GET", "/jup/price/v3?ids=%s,%s" % (MINT_A, MINT_B))
            resp = c.getresponse()
            results[i] = (resp.status, resp.read(), resp.getheader("x-cache"))
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    collapsed = proxy.metric("dexcache_cache_collapsed_total", route="/jup")
    hits = proxy.metric("dexcache_cache_hits_total", route="/jup")
    misses = proxy.metric("dexcache_cache_misses_total", route="/jup")
    try:
        for t in threads:
            t.start()
        # every request has reached dexcache and exactly one reached the origin
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == n, timeout=30), \
            proxy.metric("dexcache_requests_in_flight")
        assert clean.held() == 1
    finally:
        clean.release()
    for t in threads:
        t.join(30)
    assert total(clean) == 1
    assert clean.stats()["jup"]["max_inflight"] == 1
    bodies = {r[1] for r in results}
    assert len(bodies) == 1 and all(r[0] == 200 for r in results)
    kinds = sorted({r[2] for r in results})
    assert kinds == ["HIT", "MISS"]  # the leader's MISS, 499 collapsed HITs
    assert sum(1 for r in results if r[2] == "MISS") == 1
    # exact counts: one miss, every other request collapsed onto it
    # (per-worker counters, summed when scraped: wait for the last increments to be visible)
    assert wait_for(lambda: proxy.metric("dexcache_cache_collapsed_total", route="/jup") - collapsed == n - 1,
                    timeout=5), proxy.metric("dexcache_cache_collapsed_total", route="/jup") - collapsed
    assert proxy.metric("dexcache_cache_misses_total", route="/jup") - misses == 1
    assert proxy.metric("dexcache_cache_hits_total", route="/jup") - hits == n - 1


def test_param_order_id_order_and_encoding_share_one_key(proxy, clean):
    variants = ["/jup/price/v3?ids=%s,%s" % (MINT_B, MINT_A),
                "/jup/price/v3?ids=%s,%s" % (MINT_A, MINT_B),
                "/jup/price/v3?ids=%s%%2C%s" % (MINT_A, MINT_B),
                "/jup/price/v3?ids=%s,%s,%s" % (MINT_A, MINT_B, MINT_A)]
    for v in variants:
        assert get(proxy, v).status_code == 200
    q1 = "/jup/swap/v1/quote?inputMint=%s&outputMint=%s&amount=100&slippageBps=50" % (MINT_A, MINT_B)
    q2 = "/jup/swap/v1/quote?slippageBps=50&amount=100&outputMint=%s&inputMint=%s" % (MINT_B, MINT_A)
    assert get(proxy, q1).headers["x-cache"] == "MISS"
    assert get(proxy, q2).headers["x-cache"] == "HIT"
    assert get(proxy, "/jup/echo?a=1&nonce=1").headers["x-cache"] == "MISS"
    assert get(proxy, "/jup/echo?nonce=2&a=1").headers["x-cache"] == "HIT"  # ignore_params
    assert total(clean) == 3


def test_never_cached(proxy, clean):
    for _ in range(3):
        r = requests.post(proxy.url + "/jup/swap/v1/swap", json={"quoteResponse": {}, "userPublicKey": "u"})
        assert r.status_code == 200 and r.headers["x-cache"] == "BYPASS"
    for path in ("/jup/swap/v2/order?inputMint=%s&outputMint=%s&amount=5&taker=T1" % (MINT_A, MINT_B),
                 "/jup/swap/v2/build?inputMint=%s&outputMint=%s&amount=5&taker=T1" % (MINT_A, MINT_B)):
        bodies = set()
        for _ in range(3):
            r = get(proxy, path)
            assert r.headers["x-cache"] != "HIT"
            bodies.add(r.content)
        assert len(bodies) == 3
    assert total(clean) == 9
    # Authorization makes an answer personal: not shared
    for _ in range(2):
        r = get(proxy, "/jup/echo?who=me", headers={"Authorization": "Bearer user-token"})
        assert r.headers["x-cache"] == "BYPASS"
    assert total(clean) == 11


def test_stale_while_revalidate_one_refresh(proxy, clean):
    clean.config({"latency": {"fixed": 500}})
    path = "/jup/price/v3?ids=%s" % MINT_B
    r = get(proxy, path)
    v0 = r.json()[MINT_B]
    assert r.headers["x-cache"] == "MISS"
    clean.version()
    stores = proxy.metric("dexcache_cache_stores_total", route="/jup")
    time.sleep(1.2)  # ttl 1s: now stale, inside the 10s SWR window
    results = []

    def one():
        t = time.time()
        rr = get(proxy, path)
        results.append((time.time() - t, rr.headers["x-cache"], rr.headers["cache-status"], rr.json()[MINT_B]))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for dur, xc, cs, body in results:
        assert xc == "STALE" and "detail=revalidating" in cs
        assert dur < 0.3, dur  # answered from cache, not after the 500 ms origin
        assert body == v0
    assert wait_for(lambda: proxy.metric("dexcache_cache_stores_total", route="/jup") == stores + 1, timeout=5)
    assert total(clean) == 2  # the first miss + exactly one background refresh
    r = get(proxy, path)
    assert r.headers["x-cache"] == "HIT"
    assert r.json()[MINT_B] != v0  # the refresh brought the new data_version


def test_stale_if_error(proxy, clean):
    path = "/jup/respond?case=sie"
    r = get(proxy, path)
    assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    body = r.content
    clean.add_rule({"route": "/respond*", "status": 503, "every": 1})
    time.sleep(1.1)
    r = get(proxy, path)
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["x-cache"] == "STALE"
    assert r.headers["cache-status"] == "dexcache; fwd=stale; fwd-status=503"
    clean.reset()
    clean.add_rule({"route": "/respond*", "reset_before_headers": True, "every": 1})
    # the failed refresh backs off (0.5..1 s): the stale copy answers without asking meanwhile
    r = get(proxy, path)
    assert r.status_code == 200 and r.headers["x-cache"] == "STALE"
    assert r.headers["cache-status"].endswith("; detail=origin-backoff")
    assert clean.stats()["jup"]["total"] == 0
    time.sleep(1.0)
    r = get(proxy, path)
    assert r.status_code == 200 and r.headers["x-cache"] == "STALE"
    assert r.headers["cache-status"] == "dexcache; fwd=stale; detail=error"


def test_stale_if_error_window_ends(proxy, clean):
    path = "/sie/echo?x=1"
    assert get(proxy, path).headers["x-cache"] == "MISS"
    clean.add_rule({"route": "/echo*", "reset_before_headers": True, "every": 1})
    time.sleep(1.2)
    r = get(proxy, path)
    assert r.status_code == 200 and r.headers["x-cache"] == "STALE"
    time.sleep(1.0)  # ttl 1s + stale_if_error 1s are over
    r = get(proxy, path)
    assert r.status_code == 502
    assert r.json()["error"] == "upstream connection reset"  # issue 18: the cause, not a bare "upstream failed"
    assert r.json()["upstream"] == "jupiter" and r.json()["cause"]


def test_must_revalidate_never_stale(proxy, clean):
    path = "/jup/respond?h=Cache-Control:max-age%3D1,must-revalidate"
    r = get(proxy, path)
    assert r.headers["x-cache"] == "MISS" and r.headers["cache-status"] == "dexcache; fwd=miss; stored"
    assert get(proxy, path).headers["x-cache"] == "HIT"
    clean.add_rule({"route": "/respond*", "status": 503, "every": 1})
    time.sleep(1.1)
    r = get(proxy, path)
    assert r.status_code == 503  # the origin's answer, never the stale copy
    assert r.headers["x-cache"] == "MISS"


def test_origin_cache_control_respected(proxy, clean):
    # respect_origin: max-age=30 beats the rule's 1s ttl
    path = "/jup/respond?h=Cache-Control:max-age%3D30"
    get(proxy, path)
    time.sleep(1.1)
    r = get(proxy, path)
    assert r.headers["x-cache"] == "HIT"
    for cc in ("no-store", "private"):
        p = "/jup/respond?h=Cache-Control:" + cc
        get(proxy, p)
        r = get(proxy, p)
        assert r.headers["x-cache"] == "MISS" and "detail=" in r.headers["cache-status"]
    assert total(clean) == 5


def test_set_cookie_hit_for_pass(proxy, clean):
    path = "/jup/respond?h=Set-Cookie:session%3Dabc"
    r = get(proxy, path)
    assert r.headers["x-cache"] == "MISS"
    assert r.headers["cache-status"] == "dexcache; fwd=miss; detail=set-cookie"
    assert r.headers["set-cookie"] == "session=abc"
    r = get(proxy, path)
    assert r.headers["cache-status"] == "dexcache; fwd=miss; detail=hit-for-pass"
    assert r.headers["set-cookie"] == "session=abc"
    assert total(clean) == 2


def test_etag_304_and_head(proxy, clean):
    path = "/jup/price/v3?ids=%s" % MINT_A
    r = get(proxy, path)
    r = get(proxy, path)
    etag = r.headers["etag"]
    r304 = get(proxy, path, headers={"If-None-Match": etag})
    assert r304.status_code == 304 and r304.content == b""
    assert r304.headers["etag"] == etag
    assert get(proxy, path, headers={"If-None-Match": '"nope", W/' + etag}).status_code == 304
    assert get(proxy, path, headers={"If-None-Match": '"other"'}).status_code == 200
    h = requests.head(proxy.url + path)
    assert h.status_code == 200 and h.headers["x-cache"] == "HIT"
    assert int(h.headers["content-length"]) == len(r.content) and h.content == b""
    assert total(clean) == 1
    # a HEAD miss fills the GET entry
    h = requests.head(proxy.url + "/jup/price/v3?ids=" + MINT_B)
    assert h.headers["x-cache"] == "MISS" and h.content == b""
    g = get(proxy, "/jup/price/v3?ids=" + MINT_B)
    assert g.headers["x-cache"] == "HIT" and len(g.content) > 0
    assert total(clean) == 2


def test_negative_caching(proxy, clean):
    path = "/jup/swap/v1/quote?inputMint=%s" % MINT_A  # missing params -> 400
    r1 = get(proxy, path)
    r2 = get(proxy, path)
    assert r1.status_code == r2.status_code == 400
    assert r2.headers["x-cache"] == "HIT"
    assert r2.content == r1.content
    assert total(clean) == 1
    time.sleep(2.1)
    assert get(proxy, path).headers["x-cache"] == "MISS"


def test_upstream_5xx_shared_with_waiters_not_stored(proxy, clean):
    clean.add_rule({"route": "/echo*", "status": 503, "every": 1})
    clean.gate("/echo")
    out = []
    threads = [threading.Thread(target=lambda: out.append(get(proxy, "/jup/echo?five=1"))) for _ in range(10)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 10)
    finally:
        clean.release()
    for t in threads:
        t.join(10)
    assert [r.status_code for r in out] == [503] * 10
    assert total(clean) == 1 + 1  # 1 + one retry (retries: 1), shared with the 9 waiters
    assert get(proxy, "/jup/echo?five=1").status_code == 503
    assert total(clean) == 4  # not stored: the next request goes to the origin again


def test_leader_disconnect_does_not_cancel_fetch(proxy, clean):
    """The leader's client really goes away (an HTTP/2 stream reset: h2o disposes of the request at
    once; a closed HTTP/1.1 socket would not be noticed before the answer is written) while the
    origin holds the fetch: the fill belongs to the key, so the waiter still gets the answer, it is
    stored, and the origin was asked once."""
    clean.gate("/price/v3")
    path = "/jup/price/v3?ids=" + MINT_B
    leader = H2(proxy.port)
    try:
        sid = leader.get(path)
        assert wait_for(lambda: clean.held() == 1)
        out = []
        t = threading.Thread(target=lambda: out.append(get(proxy, path)))
        t.start()
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 2)
        stores = proxy.metric("dexcache_cache_stores_total", route="/jup")
        leader.reset(sid)
        # the reset is seen: the leader's request is disposed of while the origin still holds the fetch
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 1)
        assert clean.held() == 1 and proxy.metric("dexcache_inflight_fetches") == 1
        clean.release()
        t.join(10)
    finally:
        clean.release()
        leader.close()
    assert out[0].status_code == 200
    assert out[0].headers["x-cache"] == "HIT"
    assert out[0].headers["cache-status"] == "dexcache; hit; collapsed"
    assert wait_for(lambda: proxy.metric("dexcache_cache_stores_total", route="/jup") == stores + 1)
    assert total(clean) == 1
    assert get(proxy, path).headers["x-cache"] == "HIT"
    assert total(clean) == 1


def test_leader_disconnect_without_waiters_still_stores(proxy, clean):
    """Nobody else waits: the fetch still completes and stores once (no second upstream request)."""
    clean.gate("/price/v3")
    path = "/jup/price/v3?ids=" + MINT_A
    leader = H2(proxy.port)
    try:
        sid = leader.get(path)
        assert wait_for(lambda: clean.held() == 1)
        stores = proxy.metric("dexcache_cache_stores_total", route="/jup")
        leader.reset(sid)
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 0)
        clean.release()
        assert wait_for(lambda: proxy.metric("dexcache_cache_stores_total", route="/jup") == stores + 1)
        assert wait_for(lambda: proxy.metric("dexcache_inflight_fetches") == 0)
    finally:
        clean.release()
        leader.close()
    r = get(proxy, path)
    assert r.status_code == 200 and r.headers["x-cache"] == "HIT"
    assert total(clean) == 1


def test_purge_by_url_key_prefix_tag(proxy, clean):
    auth = {"Authorization": "Bearer s3cret"}
    p1 = "/jup/price/v3?ids=%s,%s" % (MINT_B, MINT_A)
    p2 = "/jup/echo?z=1"
    for p in (p1, p2):
        get(proxy, p)
    assert wait_for(lambda: proxy.health()["cache"]["entries"] == 2)
    assert requests.post(proxy.admin_url + "/purge", json={"url": p1}).status_code == 401
    assert requests.post(proxy.admin_url + "/purge", json={"url": p1},
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = requests.post(proxy.admin_url + "/purge", json={"url": "/jup/price/v3?ids=%s%%2C%s" % (MINT_A, MINT_B)},
                      headers=auth)
    assert r.json() == {"purged": 1, "fleet": False}
    assert get(proxy, p1).headers["x-cache"] == "MISS"
    r = requests.post(proxy.admin_url + "/purge", json={"key": "GET /jup/echo?z=1"}, headers=auth)
    assert r.json() == {"purged": 1, "fleet": False}
    assert get(proxy, p2).headers["x-cache"] == "MISS"
    r = requests.post(proxy.admin_url + "/purge", json={"tag": MINT_A}, headers=auth)
    assert r.json() == {"purged": 1, "fleet": False}  # the price entry carries its ids as tags
    assert get(proxy, p1).headers["x-cache"] == "MISS"
    # the client can see its last byte a moment before the fill stores the entry
    assert wait_for(lambda: proxy.health()["cache"]["entries"] == 2)
    r = requests.post(proxy.admin_url + "/purge", json={"prefix": "/jup/"}, headers=auth)
    assert r.json()["purged"] == 2, r.json()
    r = requests.post(proxy.admin_url + "/purge", json={"nothing": 1}, headers=auth)
    assert r.status_code == 400


def test_large_object_fetched_once_for_concurrent_clients(proxy, clean):
    n = 20 * 1000 * 1000
    clean.gate("/bytes")
    digests = []

    def one():
        h = hashlib.sha256()
        with requests.get(proxy.url + "/meteora/bytes?n=%d" % n, stream=True, timeout=60) as r:
            assert r.status_code == 200
            for c in r.iter_content(1 << 20):
                h.update(c)
        digests.append(h.hexdigest())

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 20)
    finally:
        clean.release()
    for t in threads:
        t.join(60)
    assert total(clean, "meteora") == 1
    assert len(digests) == 20 and len(set(digests)) == 1
    direct = hashlib.sha256()
    with requests.get(clean.url("meteora") + "/bytes?n=%d" % n, stream=True) as r:
        for c in r.iter_content(1 << 20):
            direct.update(c)
    assert digests[0] == direct.hexdigest()


def test_cache_metrics_and_health(proxy, clean):
    get(proxy, "/jup/echo?m=1")
    get(proxy, "/jup/echo?m=1")
    h = proxy.health()
    assert h["cache"]["entries"] >= 1 and h["cache"]["bytes"] > 0
    assert proxy.metric("dexcache_cache_hits_total", route="/jup") >= 1
    assert proxy.metric("dexcache_cache_misses_total", route="/jup") >= 1
    assert proxy.metric("dexcache_cache_entries") >= 1


def test_refresh_ahead_keeps_hot_key_fresh(proxy, clean):
    path = "/pre/echo?hot=1"
    assert get(proxy, path).headers["x-cache"] == "MISS"
    time.sleep(1.6)  # past 0.5 of the 2 s ttl plus the largest jitter (0.25)
    assert get(proxy, path).headers["x-cache"] == "HIT"  # served, and a refresh starts behind it
    assert wait_for(lambda: total(clean) == 2)
    time.sleep(0.8)  # the original entry would be stale now; the refreshed one is not
    r = get(proxy, path)
    assert r.headers["x-cache"] == "HIT"
    assert total(clean) == 2


def test_client_no_cache_ignored_by_default(proxy, clean):
    path = "/jup/echo?nc=1"
    get(proxy, path)
    for h in ({"Cache-Control": "no-cache"}, {"Pragma": "no-cache"}, {"Cache-Control": "max-age=0"}):
        assert get(proxy, path, headers=h).headers["x-cache"] == "HIT"
    assert total(clean) == 1


def test_client_no_cache_revalidate(proxy, clean):
    path = "/rev/echo?nc=1"
    get(proxy, path)
    r = get(proxy, path, headers={"Cache-Control": "no-cache"})
    assert r.headers["x-cache"] == "MISS"
    assert r.headers["cache-status"] == "dexcache; fwd=request; stored"
    assert get(proxy, path).headers["x-cache"] == "HIT"
    assert total(clean) == 2
    clean.add_rule({"route": "/echo*", "status": 502, "every": 1})
    r = get(proxy, path, headers={"Cache-Control": "no-cache"})
    assert r.status_code == 200 and r.headers["x-cache"] == "STALE"
    assert r.headers["cache-status"] == "dexcache; fwd=stale; fwd-status=502"


def test_revalidation_with_etag_and_last_modified(proxy, clean):
    path = "/jup/respond?h=ETag:%22v1%22&h=Cache-Control:max-age%3D1"
    r1 = get(proxy, path)
    assert r1.headers["x-cache"] == "MISS"
    assert r1.headers["etag"] == '"v1"'  # the origin's validator reaches clients unchanged
    r2 = get(proxy, path)
    ours = r2.headers["etag"]
    assert ours == '"v1"'
    time.sleep(1.1)
    r3 = get(proxy, path)
    assert r3.status_code == 200
    assert r3.headers["x-cache"] == "HIT"
    assert r3.headers["cache-status"] == "dexcache; fwd=stale; fwd-status=304; stored"
    assert r3.content == r1.content and r3.headers["etag"] == ours
    reqs = clean.requests(0)
    assert len(reqs) == 2 and reqs[1]["headers"].get("if-none-match") == '"v1"'
    assert get(proxy, path).headers["cache-status"].startswith("dexcache; hit")
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    path = "/jup/respond?h=Last-Modified:" + lm.replace(" ", "%20").replace(",", "%2C") + "&h=Cache-Control:max-age%3D1"
    get(proxy, path)
    time.sleep(1.1)
    r = get(proxy, path)
    assert r.headers["cache-status"] == "dexcache; fwd=stale; fwd-status=304; stored"
    assert clean.requests(0)[-1]["headers"].get("if-modified-since") == lm


def test_waiters_get_bytes_as_they_arrive(proxy, clean):
    """A 24 MB answer arriving at 12 MB/s: collapsed clients (any worker) start receiving within a
    fraction of the transfer, not after it."""
    clean.config({"bw": 12})
    n = 24 * 1000 * 1000
    path = "/meteora/bytes?n=%d&stream=1" % n
    try:
        out = []
        leader_streaming = threading.Event()

        def one(i):
            t0 = time.time()
            r = requests.get(proxy.url + path, stream=True, timeout=60)
            it = r.raw.stream(65536, decode_content=False)
            first = next(it)
            ttfb = time.time() - t0
            if i == 0:
                leader_streaming.set()
            total = len(first) + sum(len(c) for c in it)
            out.append((ttfb, time.time() - t0, total, r.headers["x-cache"], r.headers["cache-status"]))

        leader = threading.Thread(target=one, args=(0,))
        leader.start()
        assert wait_for(lambda: proxy.metric("dexcache_inflight_fetches") == 1)
        # followers join once the answer is arriving (the leader has its first bytes)
        assert leader_streaming.wait(20)
        followers = [threading.Thread(target=one, args=(i,)) for i in range(1, 9)]
        for t in followers:
            t.start()
        for t in [leader] + followers:
            t.join(60)
        assert len(out) == 9 and all(o[2] == n for o in out)
        streamed = [o for o in out if o[4] == "dexcache; hit; collapsed; detail=streaming"]
        assert len(streamed) == 8, out
        for ttfb, total_t, _, _, _ in streamed:
            assert ttfb < 1.0 and total_t > 1.0, (ttfb, total_t)
        assert total(clean, "meteora") == 1
    finally:
        clean.config({"bw": 0})


def test_leader_timeout_shared_by_waiters(proxy, clean):
    """The origin never answers: the leader times out (3 s) and every collapsed waiter gets the same
    504 at the same moment, with exactly one upstream request (a timeout is not retried)."""
    clean.add_rule({"route": "/echo*", "timeout": True, "every": 1})
    out = []

    def one():
        t = time.time()
        r = get(proxy, "/jup/echo?never=1")
        out.append((r.status_code, time.time() - t, r.json()["error"]))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert [o[0] for o in out] == [504] * 6
    assert all(o[2] == "upstream timed out" for o in out)
    assert all(2.8 < o[1] < 5.0 for o in out), out
    assert total(clean) == 1


def requests_total(proxy):
    """Sum of dexcache_requests_total over every route and status class."""
    return sum(float(line.rpartition(" ")[2]) for line in proxy.metrics().splitlines()
               if line.startswith("dexcache_requests_total{"))


def test_every_request_is_disposed_once(proxy, clean):
    """Each client request, whatever its end (hit, miss, HEAD, 304, 404, HTTP/2, a client gone while
    it waited), is accounted exactly once when h2o disposes of it, and nothing stays in flight."""
    before = requests_total(proxy)
    sent = 0
    for _ in range(3):
        assert get(proxy, "/jup/echo?a=1").status_code == 200  # a miss, then hits
        sent += 1
    assert requests.head(proxy.url + "/jup/echo?a=1", timeout=15).status_code == 200
    etag = get(proxy, "/jup/echo?a=1").headers["etag"]
    assert get(proxy, "/jup/echo?a=1", headers={"If-None-Match": etag}).status_code == 304
    assert get(proxy, "/nowhere").status_code == 404
    sent += 4
    # two streams on one HTTP/2 connection (nghttp -s prints one line per stream: id, times, code, ...)
    out = subprocess.run(["nghttp", "-ns", proxy.url + "/jup/echo?a=1", proxy.url + "/jup/echo?b=2"],
                         capture_output=True, text=True, timeout=15).stdout
    codes = [line.split()[4] for line in out.splitlines() if line.strip().endswith(("/jup/echo?a=1", "/jup/echo?b=2"))]
    assert codes == ["200", "200"], out
    sent += 2
    clean.gate("/price/v3")
    gone = socket.create_connection(("127.0.0.1", proxy.port))
    gone.sendall(b"GET /jup/price/v3?ids=" + MINT_A.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: clean.held() == 1)
    gone.close()  # the client leaves while its request waits for the origin
    sent += 1
    clean.release()
    assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 0, timeout=10)
    assert wait_for(lambda: requests_total(proxy) - before == sent, timeout=10), (requests_total(proxy) - before, sent)
    time.sleep(0.3)
    assert requests_total(proxy) - before == sent
