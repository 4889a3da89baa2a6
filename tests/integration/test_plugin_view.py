"""Derived views (issue 16, json_view): the real binary with plugins/json_view.so in front of the
fake origin's Meteora profile. A view of /pair/all is answered from the cached source: one upstream
request and one index build for any number of cold view requests; answers equal filtering the
origin's JSON in Python; a source refresh changes them; a purge of the source empties its views;
bad queries are 400s naming the parameter; RSS stays under the cache budget with a big source."""
import concurrent.futures
import json
import os
import random
import re
import threading
import time
import urllib.request

import pytest
import requests

from dexcache import BIN, RSS_CHECKS, SANITIZER_RSS_MIB, Dexcache, wait_for
from fake import FakeOrigin

JSON_VIEW = os.path.join(os.path.dirname(BIN), "plugins", "json_view.so")

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: off, level: info }}
cache: {{ memory: %(memory)s, max_object: %(max_object)s }}
upstreams:
  meteora_legacy: {{ url: "%(meteora)s", timeout: 60s, retries: 0 }}
plugins:
  - name: pairs
    path: %(so)s
    config:
      source: /pair/all
      view: /pairs
      match: {{ mint: [mint_x, mint_y], address: [address] }}
      min: [liquidity, trade_volume_24h]
      max: [liquidity]
      sort: [liquidity, trade_volume_24h, apr]
      max_limit: 1000
routes:
  - prefix: /meteora-legacy
    upstream: meteora_legacy
    plugins: [pairs]
    cache:
      - {{ path: /pair/all, ttl: %(ttl)s, stale_if_error: 60s }}
      - {{ path: /pairs, ttl: 60s }}
"""

NUM = ("liquidity", "trade_volume_24h", "apr")


def cfg(fo, ttl="60s", memory="256MB", max_object="128MB"):
    return CONFIG % {"meteora": fo.url("meteora"), "so": JSON_VIEW, "ttl": ttl, "memory": memory,
                     "max_object": max_object}


@pytest.fixture(scope="module")
def meteora():
    f = FakeOrigin(args=["--lat", "fixed=0", "--pairs", "3000"], profiles=("meteora",))
    f.start()
    yield f
    f.stop()


@pytest.fixture
def mo(meteora):
    meteora.reset()
    return meteora


def source_requests(fo):
    return fo.stats()["meteora"]["by_route"].get("/pair/all", 0)


def builds(d):
    return len(re.findall(r"view index built for GET /meteora-legacy/pair/all", d.stderr()))


def origin_pairs(fo):
    with urllib.request.urlopen(fo.url("meteora") + "/pair/all", timeout=60) as r:
        return json.loads(r.read())


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def expected(pairs, mints=None, addresses=None, mins=None, maxs=None, sort=None, limit=1000, offset=0,
             fields=None):
    out = []
    for p in pairs:
        if mints is not None and p.get("mint_x") not in mints and p.get("mint_y") not in mints:
            continue
        if addresses is not None and p.get("address") not in addresses:
            continue
        ok = True
        for f, v in (mins or {}).items():
            x = num(p.get(f))
            ok = ok and x is not None and x >= v
        for f, v in (maxs or {}).items():
            x = num(p.get(f))
            ok = ok and x is not None and x <= v
        if ok:
            out.append(p)
    if sort is not None:
        desc, f = sort.startswith("-"), sort.lstrip("-")
        have = [p for p in out if num(p.get(f)) is not None]
        rest = [p for p in out if num(p.get(f)) is None]
        out = sorted(have, key=lambda p: num(p[f]), reverse=desc) + rest
    out = out[offset:offset + limit]
    if fields is not None:
        out = [{k: p[k] for k in fields if k in p} for p in out]
    return out


def get(d, q, **kw):
    return requests.get(d.url + "/meteora-legacy/pairs" + q, timeout=120, **kw)


def test_cold_views_collapse_to_one_fetch_and_one_build(mo):
    with Dexcache(cfg(mo)) as d:
        n = 500
        barrier = threading.Barrier(n)
        mint = origin_pairs(mo)[0]["mint_x"]
        mo.reset()
        mo.gate("/pair/all")

        def one(i):
            barrier.wait(timeout=60)
            # a few distinct view keys, many requests each
            return get(d, "?mint=%s&limit=%d" % (mint, 10 + i % 5))

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
            futs = [ex.submit(one, i) for i in range(n)]
            mo.wait_held(1, timeout=60)
            # every request has reached dexcache and waits (on its view key, or on the source)
            assert wait_for(lambda: d.metric("dexcache_requests_in_flight") >= n, timeout=60)
            mo.release()
            res = [f.result(timeout=180) for f in futs]
        assert [r.status_code for r in res] == [200] * n
        assert source_requests(mo) == 1
        assert mo.stats()["meteora"]["total"] == 1  # the views themselves never went upstream
        wait_for(lambda: builds(d) >= 1, timeout=10)
        assert builds(d) == 1
        for r in res:
            body = r.json()
            assert 1 <= len(body) <= 14
            assert all(mint in (p["mint_x"], p["mint_y"]) for p in body)
        # a view answer is cached like any answer: ETag, Cache-Status, a 304 for its validator
        r = get(d, "?mint=%s&limit=10" % mint)
        assert r.headers["x-cache"] == "HIT"
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-status"].startswith("dexcache; hit")
        etag = r.headers["etag"]
        assert get(d, "?mint=%s&limit=10" % mint, headers={"if-none-match": etag}).status_code == 304
        assert source_requests(mo) == 1 and builds(d) == 1
