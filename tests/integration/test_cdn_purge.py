"""The purge forwarder (cdn.purge.cloudflare): a purge at the admin listener is also sent to
Cloudflare's purge API. A stand-in API (http.server on loopback) records every call; it can answer
from a script (500 then 200, 429 with Retry-After) or hang, to prove the local purge never waits for
the CDN."""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from dexcache import ROOT, Dexcache, run_check, wait_for

TOKEN = "cf-tok-7f3a9c"
ZONE = "023e105f4ecef8ad9ca31a8372d0c353"
AUTH = {"Authorization": "Bearer adm1n"}
MINT_A = "So11111111111111111111111111111111111111112"
MINT_B = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "adm1n" }}
log: {{ access: off }}
upstreams:
  jupiter: {{ url: "%(jup)s", keys: ["k1"], timeout: 3s }}
routes:
  - prefix: /jup
    upstream: jupiter
    cdn: {{ tag_params: [ids] }}
    cache:
      - {{ path: /price/v3, ttl: 60s, key_sets: [ids] }}
      - {{ path: /echo, ttl: 60s }}
cdn:
  purge:
    cloudflare:
      zone: "%(zone)s"
      token: "${{DC_TEST_CF_TOKEN}}"
      api: "%(api)s"
      base_url: "https://dex.example.com/"
      %(extra)s
"""


class StandIn:
    """A stand-in Cloudflare API: records (path, headers, body) of every POST; answers from
    `script` (a list of (status, headers, body), one per call, then 200 success) or, while `hang`
    is set, holds the call until released (bounded)."""

    def __init__(self):
        self.calls = []
        self.times = []
        self.script = []
        self.hang = False
        self.release = threading.Event()
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with stand_in.lock:
                    stand_in.calls.append({"path": self.path, "headers": dict(self.headers),
                                           "body": json.loads(body)})
                    stand_in.times.append(time.monotonic())
                    step = stand_in.script.pop(0) if stand_in.script else None
                    hang = stand_in.hang
                if hang:
                    stand_in.release.wait(30)
                status, headers, out = step or (200, {}, {"success": True, "errors": [], "result": {"id": ZONE}})
                raw = json.dumps(out).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # dexcache gave up on this call (its timeout)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api(self):
        return "http://127.0.0.1:%d/client/v4" % self.server.server_address[1]

    def bodies(self):
        with self.lock:
            return [c["body"] for c in self.calls]

    def ncalls(self):
        with self.lock:
            return len(self.calls)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def cf():
    s = StandIn()
    yield s
    s.close()


def make(fake, cf, extra="window: 0s", zone=ZONE):
    return Dexcache(CONFIG % {"jup": fake.url("jup"), "api": cf.api, "zone": zone, "extra": extra},
                    env={"DC_TEST_CF_TOKEN": TOKEN})


def purge(d, order, timeout=10):
    r = requests.post(d.admin_url + "/purge", json=order, headers=AUTH, timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json()


def test_cdn_purge_bodies_token_and_metric(fake, origin, cf):
    """Each kind of purge becomes Cloudflare's documented body, with the bearer token, on
    POST {api}/zones/{zone}/purge_cache; the admin answer says it was queued."""
    with make(fake, cf) as d:
        p1 = "/jup/price/v3?ids=%s,%s" % (MINT_B, MINT_A)
        assert requests.get(d.url + p1, timeout=10).headers["x-cache"] == "MISS"
        assert wait_for(lambda: d.health()["cache"]["entries"] == 1)
        orders = [
            ({"tag": MINT_A}, 1, {"tags": [MINT_A]}),
            ({"url": p1}, 0, {"files": ["https://dex.example.com" + p1]}),
            ({"key": "GET /jup/echo?z=1"}, 0, {"files": ["https://dex.example.com/jup/echo?z=1"]}),
            ({"prefix": "/jup/price"}, 0, {"prefixes": ["dex.example.com/jup/price"]}),
            ({"all": True}, 0, {"purge_everything": True}),
        ]
        for i, (order, purged, body) in enumerate(orders):
            assert purge(d, order) == {"purged": purged, "fleet": False, "cdn": "queued"}
            assert wait_for(lambda: cf.ncalls() == i + 1), cf.calls
            call = cf.calls[i]
            assert call["path"] == "/client/v4/zones/%s/purge_cache" % ZONE
            assert call["headers"]["Authorization"] == "Bearer " + TOKEN
            assert call["headers"]["Content-Type"] == "application/json"
            assert call["body"] == body
        # the tag purge removed the entry locally too
        assert requests.get(d.url + p1, timeout=10).headers["x-cache"] == "MISS"
        assert wait_for(lambda: d.metric("dexcache_cdn_purges_total", result="ok") == 5)
        for r in ("retry", "failed", "rejected", "dropped"):
            assert d.metric("dexcache_cdn_purges_total", result=r) == 0
        time.sleep(0.3)
        assert cf.ncalls() == 5  # nothing more went out
        d.stop()
        err = d.stderr()
    assert TOKEN not in err
    assert "cdn purge: cloudflare zone %s: 1 tags purged (attempt 1)" % ZONE in err


def test_cdn_purge_retries_500_and_honours_retry_after(fake, origin, cf):
    """500, then 429 with Retry-After: 1, then 200: three calls with the same body; the pause after
    the 429 is Retry-After's, not the 50 ms backoff."""
    cf.script = [(500, {}, {"success": False}), (429, {"Retry-After": "1"}, {"success": False})]
    with make(fake, cf, "window: 0s\n      backoff: 50ms\n      retries: 3") as d:
        t0 = time.monotonic()
        assert purge(d, {"tag": MINT_B}) == {"purged": 0, "fleet": False, "cdn": "queued"}
        assert time.monotonic() - t0 < 1.0
        assert wait_for(lambda: d.metric("dexcache_cdn_purges_total", result="ok") == 1, timeout=15)
        assert cf.bodies() == [{"tags": [MINT_B]}] * 3
        assert cf.times[1] - cf.times[0] < 0.9  # the 50 ms backoff
        assert cf.times[2] - cf.times[1] >= 0.95  # Retry-After: 1
        assert d.metric("dexcache_cdn_purges_total", result="retry") == 2
        assert d.metric("dexcache_cdn_purges_total", result="failed") == 0
        err = d.stderr()
    assert "1 tags: HTTP 500 (attempt 1 of 4), retrying in 50 ms" in err
    assert "1 tags: HTTP 429 (attempt 2 of 4), retrying in 1000 ms" in err


def test_cdn_purge_gives_up_and_does_not_retry_4xx(fake, origin, cf):
    """Always 503: 1 + retries calls, then failed. A 403 is final at once: rejected."""
    cf.script = [(503, {}, {"success": False})] * 3 + [(403, {}, {"success": False, "errors": [{"code": 10000}]})]
    with make(fake, cf, "window: 0s\n      backoff: 20ms\n      retries: 2") as d:
        purge(d, {"tag": "jup"})
        assert wait_for(lambda: d.metric("dexcache_cdn_purges_total", result="failed") == 1, timeout=15)
        assert cf.ncalls() == 3
        purge(d, {"tag": "other"})
        assert wait_for(lambda: d.metric("dexcache_cdn_purges_total", result="rejected") == 1, timeout=15)
        time.sleep(0.3)
        assert cf.ncalls() == 4
        assert cf.bodies() == [{"tags": ["jup"]}] * 3 + [{"tags": ["other"]}]
        assert d.metric("dexcache_cdn_purges_total", result="retry") == 2
        assert d.metric("dexcache_cdn_purges_total", result="ok") == 0
        err = d.stderr()
    assert "1 tags not purged: HTTP 503 (gave up after 3 attempts)" in err
    assert "1 tags not purged: HTTP 403, answer {" in err
    assert TOKEN not in err


def test_cdn_purge_hanging_api_never_blocks_the_local_purge(fake, origin, cf):
    """While the API holds every call, purges still answer at once and take effect locally; the
    hung call ends at its timeout (failed, no retry left); stopping dexcache with a call in flight
    exits cleanly (no leak, no sanitizer report)."""
    cf.hang = True
    with make(fake, cf, "window: 0s\n      timeout: 2s\n      retries: 0") as d:
        p = "/jup/echo?h=1"
        requests.get(d.url + p, timeout=10)
        assert wait_for(lambda: d.health()["cache"]["entries"] == 1)
        t0 = time.monotonic()
        assert purge(d, {"url": p}, timeout=5) == {"purged": 1, "fleet": False, "cdn": "queued"}
        assert time.monotonic() - t0 < 1.0
        assert wait_for(lambda: cf.ncalls() == 1)  # the stand-in holds it now
        t0 = time.monotonic()
        assert purge(d, {"tag": "jup"}, timeout=5)["cdn"] == "queued"
        assert requests.get(d.admin_url + "/health", timeout=5).status_code == 200
        assert time.monotonic() - t0 < 1.0
        assert requests.get(d.url + p, timeout=10).headers["x-cache"] == "MISS"  # purged here
        assert wait_for(lambda: d.metric("dexcache_cdn_purges_total", result="failed") == 2, timeout=15)
        assert d.metric("dexcache_cdn_purges_total", result="ok") == 0
        # a third call hangs while dexcache stops
        purge(d, {"tag": "late"}, timeout=5)
        assert wait_for(lambda: cf.ncalls() == 3)
        t0 = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - t0 < 10
        err = d.stderr()
    assert "1 files not purged: Operation timed out" in err
    assert "1 tags dropped (shutting down)" in err


def test_cdn_purge_batches_a_window(fake, origin, cf):
    """Orders within the window go out as one call per kind, duplicates once, in arrival order."""
    with make(fake, cf, "window: 1500ms") as d:
        for o in ({"tag": MINT_A}, {"tag": MINT_B}, {"url": "/jup/echo?b=1"}, {"tag": MINT_A}, {"tag": "jup"}):
            assert purge(d, o)["cdn"] == "queued"
        assert wait_for(lambda: cf.ncalls() == 2, timeout=10)  # both from one flush: nothing follows
        assert sorted(cf.bodies(), key=json.dumps) == sorted(
            [{"files": ["https://dex.example.com/jup/echo?b=1"]}, {"tags": [MINT_A, MINT_B, "jup"]}], key=json.dumps)
        assert d.metric("dexcache_cdn_purges_total", result="ok") == 2
        # 31 distinct tags: a full call (30) goes at once, the last one with the window
        for i in range(31):
            purge(d, {"tag": "t%02d" % i})
        assert wait_for(lambda: cf.ncalls() == 4, timeout=10)
        bodies = cf.bodies()[2:]
        assert bodies == [{"tags": ["t%02d" % i for i in range(30)]}, {"tags": ["t30"]}]


def test_cdn_purge_off_without_zone(fake, origin, cf):
    """An empty zone (an unset ${CF_ZONE_ID:-}) forwards nothing: the answer has no "cdn", no call."""
    with make(fake, cf, zone="${{DC_TEST_UNSET_ZONE:-}}") as d:
        assert purge(d, {"tag": "jup"}) == {"purged": 0, "fleet": False}
        time.sleep(0.3)
        assert cf.ncalls() == 0
        err = d.stderr()
    assert "cdn.purge.cloudflare: zone or token is empty: purges stay local" in err


def test_cloudflare_origin_config(fake, origin, cf):
    """conf/cloudflare-origin.yaml passes `-t` without its env vars (the forwarder is then off), and
    with them (addresses moved to loopback, the API to the stand-in) its answers carry
    CDN-Cache-Control and Cache-Tag and a purge by tag reaches the API with the token."""
    text = open(os.path.join(ROOT, "conf", "cloudflare-origin.yaml")).read()
    rc, out, _ = run_check(text)
    assert rc == 0, out
    cfg = text.replace("{", "{{").replace("}", "}}")
    for old, new in (('["0.0.0.0:8080", "[::]:8080"]', '["127.0.0.1:{port}"]'),
                     ('"127.0.0.1:9090"', '"127.0.0.1:{admin_port}"'),
                     ('"https://api.jup.ag"', '"%s"' % fake.url("jup")),
                     ('      token: "${{CF_API_TOKEN:-}}"', '      api: "%s"\n      token: "${{CF_API_TOKEN:-}}"' % cf.api)):
        assert old in cfg, old
        cfg = cfg.replace(old, new)
    env = {"CF_ZONE_ID": ZONE, "CF_API_TOKEN": TOKEN, "DEXCACHE_ADMIN_TOKEN": "adm1n", "JUP_API_KEY": "k1"}
    with Dexcache(cfg, env=env) as d:
        r = requests.get(d.url + "/jup/price/v3?ids=" + MINT_A, timeout=10)
        assert r.status_code == 200
        assert r.headers["cache-tag"] == "jup," + MINT_A
        assert r.headers["cdn-cache-control"] == "max-age=1, stale-while-revalidate=10, stale-if-error=300"
        assert r.headers["cache-control"] == "public, max-age=1, s-maxage=1, stale-while-revalidate=10, stale-if-error=300"
        assert purge(d, {"tag": MINT_A})["cdn"] == "queued"
        assert wait_for(lambda: cf.ncalls() == 1, timeout=10)
        assert cf.calls[0]["body"] == {"tags": [MINT_A]}
        assert cf.calls[0]["headers"]["Authorization"] == "Bearer " + TOKEN
        assert cf.calls[0]["path"] == "/client/v4/zones/%s/purge_cache" % ZONE
