"""CORS done by dexcache (cors: at the top level and per route): preflights answered here (204,
never upstream, not charged to the client limit), Access-Control-* on every answer for an allowed
Origin (hits, misses, stale, batches, streams, pass-through, dexcache's own 429/503/502/504/404),
none for another, the upstream's own CORS headers replaced (never stored), and with no policy an
upstream that echoes Origin keyed by its Vary so one origin's header never reaches another."""
import socket

import pytest
import requests

from dexcache import Dexcache, PREAMBLE, free_port, run_check, wait_for

MINT = "So11111111111111111111111111111111111111112"
MINT2 = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
APP = "https://app.example"
DEFAULT_EXPOSE = "X-Cache, Cache-Status, Age, X-Request-Id, RateLimit-Policy, RateLimit, Retry-After"
DEFAULT_HEADERS = "Content-Type, Authorization, X-Api-Key, X-Request-Id"

CONFIG = PREAMBLE + """
cors:
  allow_origins: ["https://app.example", "https://*.example.org", "http://127.0.0.1:3000"]
  credentials: true
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0, timeout: 10s }}
  slow: {{ url: "%(jup)s", retries: 0, timeout: 300ms }}
  dead: {{ url: "http://127.0.0.1:%(dead)d", retries: 0, connect_timeout: 1s }}
  budget: {{ url: "%(jup)s", retries: 0, rate: 1/60s, queue: {{ max: 0 }} }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 60s, key_sets: [ids] }}
      - {{ path: /respond, ttl: 60s }}
      - {{ path: /bytes, ttl: 100ms, stale_if_error: 60s }}
    batch: {{ path: /price/v3, param: ids, max: 50, window: 1ms }}
  - prefix: /pub
    upstream: jupiter
    cors: {{ allow_origins: ["*"], allow_methods: [GET], allow_headers: [], expose_headers: [X-Cache], max_age: 1h }}
    cache:
      - {{ path: /respond, ttl: 60s }}
  - prefix: /lim
    upstream: jupiter
    limit: {{ rate: 1/60s, burst: 1 }}
  - {{ prefix: /slow, upstream: slow }}
  - {{ prefix: /dead, upstream: dead }}
  - {{ prefix: /budget, upstream: budget }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 200ms, on_change: false }}
"""

# no cors: anywhere: the upstream's CORS passes through, keyed by its Vary
PLAIN = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /fwd
    upstream: jupiter
    forward_headers: [origin]
    cache:
      - {{ path: /respond, ttl: 60s }}
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 60s }}
"""


@pytest.fixture(scope="module")
def proxy(fake):
    with socket.socket() as s:  # a port nobody listens on: the dead upstream
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    d = Dexcache(CONFIG % {"jup": fake.url("jup"), "dead": dead})
    d.start()
    yield d
    d.stop()


def cors_of(r):
    """The answer's Access-Control-* headers, lower-cased names."""
    return {k.lower(): v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


def allowed(origin, credentials=True, expose=DEFAULT_EXPOSE):
    h = {"access-control-allow-origin": origin, "access-control-expose-headers": expose}
    if credentials:
        h["access-control-allow-credentials"] = "true"
    return h


def vary_has_origin(r):
    return "origin" in [v.strip().lower() for v in r.headers.get("vary", "").split(",")]


def total(origin):
    return origin.stats().get("jup", {}).get("total", 0)


def test_preflight_answered_here_with_exact_headers(proxy, origin):
    pre = {"Origin": APP, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-request-id"}
    r = requests.options(proxy.url + "/jup/price/v3?ids=" + MINT, headers=pre, timeout=10)
    assert r.status_code == 204 and r.content == b""
    assert cors_of(r) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, HEAD, POST",
        "access-control-allow-headers": DEFAULT_HEADERS,
        "access-control-max-age": "600",
    }
    assert r.headers["vary"] == "Origin" and r.headers["x-request-id"]
    # a route's own policy replaces the top-level one as a whole
    r = requests.options(proxy.url + "/pub/respond", headers={**pre, "Origin": "https://any.test"}, timeout=10)
    assert r.status_code == 204
    assert cors_of(r) == {"access-control-allow-origin": "*", "access-control-allow-methods": "GET",
                          "access-control-max-age": "3600"}
    assert "vary" not in r.headers
    # a disallowed origin: a bare 204 the browser refuses, still never upstream
    for bad in ("https://evil.test", "null", "https://example.org", "http://a.example.org"):
        r = requests.options(proxy.url + "/jup/price/v3", headers={**pre, "Origin": bad}, timeout=10)
        assert r.status_code == 204 and cors_of(r) == {}, bad
    # a stream's preflight too; and a preflight to a route whose upstream is down is still 204
    r = requests.options(proxy.url + "/jup/stream/price?ids=" + MINT, headers=pre, timeout=10)
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == APP
    r = requests.options(proxy.url + "/dead/x", headers=pre, timeout=10)
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == APP
    assert total(origin) == 0  # nothing reached the upstream
    # preflights are not charged to the client limit: the limited route's one token is still there
    for _ in range(3):
        assert requests.options(proxy.url + "/lim/echo", headers=pre, timeout=10).status_code == 204
    r = requests.get(proxy.url + "/lim/echo", headers={"Origin": APP}, timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
    assert total(origin) == 1
    # a plain OPTIONS (no Access-Control-Request-Method) is the upstream's to answer
    r = requests.options(proxy.url + "/jup/echo", headers={"Origin": APP}, timeout=10)
    assert r.status_code == 200 and total(origin) == 2
    assert r.headers["access-control-allow-origin"] == APP


def test_allowed_wildcard_disallowed_and_null_origins(proxy, origin):
    url = proxy.url + "/jup/respond?k=origins"
    base = requests.get(url, timeout=10)  # no Origin: MISS, no CORS header, Vary: Origin all the same
    assert base.status_code == 200 and base.headers["x-cache"] == "MISS"
    assert cors_of(base) == {} and vary_has_origin(base)
    for o in (APP, "https://a.example.org", "https://a.b.example.org", "http://127.0.0.1:3000"):
        r = requests.get(url, headers={"Origin": o}, timeout=10)
        assert r.headers["x-cache"] == "HIT" and cors_of(r) == allowed(o), o
        assert vary_has_origin(r) and r.content == base.content
    for o in ("https://example.org", "https://evilexample.org", "https://a.example.org.evil.test",
              "http://a.example.org", "https://app.example:8443", "http://127.0.0.1:3001", "null", ""):
        r = requests.get(url, headers={"Origin": o}, timeout=10)
        assert r.status_code == 200 and r.headers["x-cache"] == "HIT" and cors_of(r) == {}, o
        assert r.content == base.content and vary_has_origin(r)
    assert total(origin) == 1
    # "*" without credentials: any Origin, null included, gets "*" and nothing varies
    r = requests.get(proxy.url + "/pub/respond?k=star", headers={"Origin": "null"}, timeout=10)
    assert cors_of(r) == {"access-control-allow-origin": "*", "access-control-expose-headers": "X-Cache"}
    assert not vary_has_origin(r)


def test_every_path_carries_cors(proxy, origin):
    o = {"Origin": "https://shop.example.org"}
    # miss, then hit, both through the batcher (ids= on the batch path)
    for xc in ("MISS", "HIT"):
        r = requests.get(proxy.url + "/jup/price/v3?ids=%s,%s" % (MINT, MINT2), headers=o, timeout=10)
        assert r.status_code == 200 and cors_of(r) == allowed(o["Origin"]), xc
    # pass-through (POST)
    r = requests.post(proxy.url + "/jup/echo", data=b"x", headers=o, timeout=10)
    assert r.status_code == 200 and r.headers["x-cache"] == "BYPASS" and cors_of(r) == allowed(o["Origin"])
    # stale (the origin fails, stale_if_error serves the old copy)
    r = requests.get(proxy.url + "/jup/bytes?n=64", headers=o, timeout=10)
    assert r.status_code == 200
    origin.add_rule("route=/bytes*,status=503")

    def stale():
        s = requests.get(proxy.url + "/jup/bytes?n=64", headers=o, timeout=10)
        return s if s.headers.get("x-cache") == "STALE" else None
    assert wait_for(stale, timeout=10)
    assert cors_of(stale()) == allowed(o["Origin"])
    # an event stream's head
    with requests.get(proxy.url + "/jup/stream/price?ids=" + MINT, headers=o, stream=True, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert cors_of(r) == allowed(o["Origin"])


def test_dexcache_errors_carry_cors(proxy, origin):
    o = {"Origin": APP}
    want = allowed(APP)
    # 429 from the client limit, with its Retry-After and RateLimit headers readable by the page
    for _ in range(3):  # its one token may be spent already (module-wide proxy)
        r = requests.get(proxy.url + "/lim/echo", headers=o, timeout=10)
        if r.status_code == 429:
            break
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and r.headers["ratelimit"]
    assert cors_of(r) == want and r.json()["status"] == 429
    # 503: the upstream budget is spent and its queue takes nobody
    assert requests.get(proxy.url + "/budget/echo", headers=o, timeout=10).status_code == 200
    r = requests.get(proxy.url + "/budget/echo", headers=o, timeout=10)
    assert r.status_code == 503 and cors_of(r) == want and r.json()["status"] == 503
    # 502: connection refused
    r = requests.get(proxy.url + "/dead/x", headers=o, timeout=10)
    assert r.status_code == 502 and cors_of(r) == want and r.json()["status"] == 502
    # 504: the upstream does not answer within the route's timeout
    origin.add_rule("route=/hang*,timeout=3000")
    r = requests.get(proxy.url + "/slow/hang", headers=o, timeout=10)
    assert r.status_code == 504 and cors_of(r) == want and r.json()["status"] == 504
    # 404: no route (the top-level policy)
    r = requests.get(proxy.url + "/nowhere", headers=o, timeout=10)
    assert r.status_code == 404 and cors_of(r) == want
    # a disallowed origin gets the same errors without any CORS header
    r = requests.get(proxy.url + "/dead/x", headers={"Origin": "https://evil.test"}, timeout=10)
    assert r.status_code == 502 and cors_of(r) == {}


def test_upstream_cors_replaced_and_never_stored(proxy, origin):
    url = "/jup/respond?echo_origin=1&k=poison"
    evil = requests.get(proxy.url + url, headers={"Origin": "https://evil.test"}, timeout=10)
    assert evil.headers["x-cache"] == "MISS" and cors_of(evil) == {}  # the upstream echoed it: dropped
    assert origin.requests(0)[-1]["headers"].get("origin") is None  # not forwarded either
    # the upstream's Vary: Origin still makes one variant per Origin (the URL now forwards Origin)
    r = requests.get(proxy.url + url, headers={"Origin": APP}, timeout=10)
    assert r.headers["x-cache"] == "MISS" and cors_of(r) == allowed(APP)
    assert origin.requests(0)[-1]["headers"].get("origin") == APP
    for _ in range(2):  # evil again: still nothing of the upstream's
        r = requests.get(proxy.url + url, headers={"Origin": "https://evil.test"}, timeout=10)
        assert cors_of(r) == {}
    r = requests.get(proxy.url + url, headers={"Origin": APP}, timeout=10)
    assert r.headers["x-cache"] == "HIT" and cors_of(r) == allowed(APP)
    r = requests.get(proxy.url + url, headers={"Origin": "https://other.example.org"}, timeout=10)
    assert cors_of(r) == allowed("https://other.example.org")  # never APP's
    # "*" route: the upstream's echo and its credentials are replaced by "*"
    r = requests.get(proxy.url + "/pub/respond?echo_origin=1", headers={"Origin": "https://x.test"}, timeout=10)
    assert cors_of(r) == {"access-control-allow-origin": "*", "access-control-expose-headers": "X-Cache"}
    assert r.headers["vary"] == "Origin"  # the upstream's own, passed on


def test_config_checks():
    up = 'upstreams: { u: { url: "http://127.0.0.1:1" } }\nroutes: [ { prefix: /, upstream: u } ]\n'
    cases = [
        ('cors: { allow_origins: ["*"], credentials: true }\n', "1:44: cors.credentials: expected false"),
        ('cors: { allow_origins: ["https://a.example/"] }\n', "1:25: cors.allow_origins[0]: expected an origin "
                                                              "without a path"),
        ('cors: { allow_origins: ["null"] }\n', "1:25: cors.allow_origins[0]: expected an origin other than null"),
        ('cors: { allow_origins: ["ftp://a.example"] }\n', "1:25: cors.allow_origins[0]: expected an origin: "),
        ('cors: { allow_origins: ["https://*.org"] }\n', "1:25: cors.allow_origins[0]: expected a wildcard origin"),
        ('cors: { allow_origins: ["*", "https://a.example"] }\n', "1:24: cors.allow_origins: expected either"),
        ('cors: { allow_origins: [] }\n', "1:24: cors.allow_origins: expected at least one origin"),
        ('cors: { credentials: false }\n', "cors.allow_origins: "),
        ('cors: { allow_origins: ["https://a.example:99999"] }\n', "1:25: cors.allow_origins[0]: expected an origin"),
    ]
    for text, want in cases:
        rc, out, path = run_check(text + up)
        assert rc == 1 and path + ":" + want in out or (rc == 1 and want in out and want.startswith("cors.")), out
    rc, out, path = run_check(
        'cors: { allow_origins: ["HTTPS://App.Example:443", "https://*.example.org", "http://[::1]:8080"] }\n' + up)
    assert rc == 0, out
    rc, out, path = run_check(up[:-1] + '\n' + 'routes: [ { prefix: /, upstream: u, cors: { allow_origins: '
                              '["*"], credentials: true } } ]\n')
    assert rc == 1, out


def test_no_policy_upstream_cors_keyed_by_vary(fake, origin):
    d = Dexcache(PLAIN % {"jup": fake.url("jup")})
    d.start()
    try:
        a, b = {"Origin": "https://a.test"}, {"Origin": "https://b.test"}
        url = d.url + "/fwd/respond?echo_origin=1"
        r = requests.get(url, headers=a, timeout=10)
        assert r.headers["x-cache"] == "MISS" and r.headers["access-control-allow-origin"] == "https://a.test"
        r = requests.get(url, headers=b, timeout=10)  # another variant: never a's header
        assert r.headers["x-cache"] == "MISS" and r.headers["access-control-allow-origin"] == "https://b.test"
        r = requests.get(url, headers=a, timeout=10)
        assert r.headers["x-cache"] == "HIT" and r.headers["access-control-allow-origin"] == "https://a.test"
        r = requests.get(url, timeout=10)
        assert r.headers["x-cache"] == "MISS" and cors_of(r) == {}
        assert total(origin) == 3
        # without forward_headers: [origin] the first answer was made without an Origin; it never
        # carries a's origin to b
        url = d.url + "/jup/respond?echo_origin=1"
        seen = [requests.get(url, headers=h, timeout=10) for h in (a, b, a, b)]
        for r, h in zip(seen, (a, b, a, b)):
            assert r.headers.get("access-control-allow-origin") in (None, h["Origin"])
        # no policy: a preflight is the upstream's
        r = requests.options(d.url + "/jup/echo", headers={**a, "Access-Control-Request-Method": "GET"}, timeout=10)
        assert r.headers["x-cache"] == "BYPASS"
    finally:
        d.stop()



def test_origin_echoed_without_vary_is_never_stored(fake, origin):
    """An origin that echoes Origin into Access-Control-Allow-Origin without Vary: Origin made that
    answer for one origin: stored, the next origin got the first one's grant (and credentials).
    Now private to its client (detail=cors-origin), whoever asks next gets its own."""
    d = Dexcache(PLAIN % {"jup": fake.url("jup")})
    d.start()
    try:
        url = d.url + "/fwd/respond?echo_origin=novary"
        r = requests.get(url, headers={"Origin": "https://evil.test"}, timeout=10)
        assert r.headers["access-control-allow-origin"] == "https://evil.test"
        assert r.headers["cache-status"] == "dexcache; fwd=miss; detail=cors-origin", r.headers["cache-status"]
        r = requests.get(url, headers={"Origin": "https://app.example"}, timeout=10)
        assert r.headers["access-control-allow-origin"] == "https://app.example", dict(r.headers)
        assert r.headers["x-cache"] != "HIT"
    finally:
        d.stop()


def test_star_route_answers_star_without_origin(proxy, origin):
    """On a `*` route every answer carries ACAO: * (also to a request without Origin: a navigation,
    curl, a server-side render), so one answer cached in front of dexcache serves fetch() too."""
    r = requests.get(proxy.url + "/pub/respond?star=1", timeout=10)
    assert r.headers["access-control-allow-origin"] == "*", dict(r.headers)
    assert "origin" not in r.headers.get("vary", "").lower()
    r = requests.get(proxy.url + "/pub/respond?star=1", headers={"Origin": "https://any.test"}, timeout=10)
    assert r.headers["x-cache"] == "HIT" and r.headers["access-control-allow-origin"] == "*"


STREAMS = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /pub
    upstream: jupiter
    cors: {{ allow_origins: ["*"] }}
  - prefix: /jup
    upstream: jupiter
    cors: {{ allow_origins: ["https://app.example"], credentials: true }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 200ms, on_change: false }}
"""


def test_stream_takes_the_policy_of_the_route_covering_its_path(fake, origin):
    """A stream under /jup is /jup's: before, the first route to the same upstream (/pub, `*`) gave
    its policy (and plugins, and limit) to the stream."""
    d = Dexcache(STREAMS % {"jup": fake.url("jup")})
    d.start()
    try:
        pre = {"Access-Control-Request-Method": "GET"}
        r = requests.options(d.url + "/jup/stream/price", headers={"Origin": "https://evil.test", **pre}, timeout=10)
        assert r.status_code == 204 and cors_of(r) == {}, dict(r.headers)
        r = requests.options(d.url + "/jup/stream/price", headers={"Origin": "https://app.example", **pre},
                             timeout=10)
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert r.headers["access-control-allow-credentials"] == "true"
        with requests.get(d.url + "/jup/stream/price?ids=SOL", headers={"Origin": "https://evil.test"}, stream=True,
                          timeout=10) as s:
            assert s.status_code == 200 and "access-control-allow-origin" not in s.headers, dict(s.headers)
    finally:
        d.stop()
