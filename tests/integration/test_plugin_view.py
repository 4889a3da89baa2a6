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

from dexcache import BIN, RSS_CHECKS, SANITIZER_RSS_MIB, Dexcache, wait_for, start_fleet
from test_transport import rss_kib
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
      - {{ path: /pair/all, ttl: %(ttl)s, stale_if_error: 60s%(swr)s }}
      - {{ path: /pairs, ttl: 60s }}
"""

NUM = ("liquidity", "trade_volume_24h", "apr")


def cfg(fo, ttl="60s", memory="256MB", max_object="128MB", swr=None):
    return CONFIG % {"meteora": fo.url("meteora"), "so": JSON_VIEW, "ttl": ttl, "memory": memory,
                     "max_object": max_object, "swr": ", stale_while_revalidate: %s" % swr if swr else ""}


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


def raw_members(fo):
    """address -> the member's exact bytes in the origin's /pair/all."""
    with urllib.request.urlopen(fo.url("meteora") + "/pair/all", timeout=60) as r:
        text = r.read().decode()
    dec, out, i = json.JSONDecoder(), {}, 1
    while i < len(text) and text[i] != "]":
        obj, end = dec.raw_decode(text, i)
        out[obj["address"]] = text[i:end].encode()
        i = end + 1 if text[end] == "," else end
    return out


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


def test_answers_equal_filtering_the_origin_json(mo):
    with Dexcache(cfg(mo)) as d:
        pairs = origin_pairs(mo)
        raw = raw_members(mo)
        rng = random.Random(16)
        mints = sorted({p["mint_x"] for p in pairs} | {p["mint_y"] for p in pairs})
        for i in range(50):
            q, kw = [], {}
            if rng.random() < 0.8:
                ms = rng.sample(mints, rng.choice((1, 1, 2, 3)))
                q.append("mint=" + ",".join(ms))
                kw["mints"] = set(ms)
            if rng.random() < 0.2:
                a = [p["address"] for p in rng.sample(pairs, 3)]
                q.append("address=" + ",".join(a))
                kw["addresses"] = set(a)
            if rng.random() < 0.5:
                f = rng.choice(("liquidity", "trade_volume_24h"))
                v = round(10 ** rng.uniform(1, 5), 2)
                q.append("min_%s=%s" % (f, v))
                kw["mins"] = {f: v}
            if rng.random() < 0.2:
                v = round(10 ** rng.uniform(3, 7), 2)
                q.append("max_liquidity=%s" % v)
                kw["maxs"] = {"liquidity": v}
            if rng.random() < 0.7:
                s = rng.choice(("", "-")) + rng.choice(NUM)
                q.append("sort=" + s)
                kw["sort"] = s
            kw["limit"] = rng.choice((1, 10, 50, 1000))
            kw["offset"] = rng.choice((0, 0, 3))
            q.append("limit=%d&offset=%d" % (kw["limit"], kw["offset"]))
            if rng.random() < 0.3:
                kw["fields"] = ["address", "name", "liquidity"]
                q.append("fields=address,name,liquidity")
            r = get(d, "?" + "&".join(q))
            assert r.status_code == 200, (q, r.text)
            assert r.json() == expected(pairs, **kw), q
            if "fields" not in kw:  # byte for byte: each member is the source's own text
                want = b"[" + b",".join(raw[p["address"]] for p in expected(pairs, **kw)) + b"]"
                assert r.content == want, q
        assert source_requests(mo) == 3  # ours (2) and dexcache's one, not one per query
        assert builds(d) == 1


def test_repeated_values_in_a_list_count_once(mo):
    """mint=a,a (any of) is mint=a: each member at most once in the answer."""
    with Dexcache(cfg(mo)) as d:
        pairs = origin_pairs(mo)
        m1, m2 = pairs[0]["mint_x"], pairs[0]["mint_y"]
        want = expected(pairs, mints={m1, m2})
        r = get(d, "?mint=%s,%s,%s" % (m1, m1, m2))
        assert r.status_code == 200 and r.json() == want
        addrs = [p["address"] for p in r.json()]
        assert len(addrs) == len(set(addrs))
        r = get(d, "?mint=%s&address=%s,%s&fields=address,name" % (m1, pairs[0]["address"], pairs[0]["address"]))
        assert r.status_code == 200
        assert r.json() == [{"address": pairs[0]["address"], "name": pairs[0]["name"]}]
        assert r.text.count('"address"') == 1


def test_source_refresh_changes_the_answers_after_its_ttl(mo):
    with Dexcache(cfg(mo, ttl="2s")) as d:
        pairs = origin_pairs(mo)
        mint = pairs[0]["mint_x"]
        q = "?mint=%s&sort=-liquidity" % mint
        first = get(d, q)
        assert first.status_code == 200 and first.json() == expected(pairs, mints={mint}, sort="-liquidity")
        assert get(d, q).headers["x-cache"] == "HIT"
        mo.version()  # new data at the origin
        new = origin_pairs(mo)
        assert new != pairs
        want = expected(new, mints={mint}, sort="-liquidity")
        assert want != first.json()
        # never longer than the source's freshness: within its ttl (2 s) the answer changes
        assert wait_for(lambda: get(d, q).json() == want, timeout=10, step=0.2)
        assert builds(d) >= 2
        r = get(d, q)
        assert r.status_code == 200 and r.json() == want


def test_stale_while_revalidate_source_one_background_refresh(mo):
    with Dexcache(cfg(mo, ttl="2s", swr="60s")) as d:
        pairs = origin_pairs(mo)
        mint = pairs[2]["mint_x"]
        q = "?mint=%s&sort=apr" % mint
        assert get(d, q).json() == expected(pairs, mints={mint}, sort="apr")
        mo.version()
        new = origin_pairs(mo)
        # once the source is stale: answered at once from it (STALE, not stored), one refresh
        last = []
        assert wait_for(lambda: last.append(get(d, q)) or last[-1].headers["x-cache"] == "STALE", timeout=10,
                        step=0.1)
        assert last[-1].json() == expected(pairs, mints={mint}, sort="apr")
        want = expected(new, mints={mint}, sort="apr")
        assert wait_for(lambda: get(d, q).json() == want, timeout=10, step=0.1)
        assert source_requests(mo) == 4  # ours (2), dexcache's fill and its one refresh
        assert builds(d) == 2


def test_purge_of_the_source_empties_its_views(mo):
    with Dexcache(cfg(mo)) as d:
        mint = origin_pairs(mo)[0]["mint_x"]
        views = ["?mint=%s" % mint, "?mint=%s&limit=5" % mint, "?sort=-apr&limit=3"]
        for v in views:
            assert get(d, v).headers["x-cache"] == "MISS"
            assert get(d, v).headers["x-cache"] == "HIT"
        assert source_requests(mo) == 2
        r = requests.post(d.admin_url + "/purge", json={"url": "/meteora-legacy/pair/all"}, timeout=10)
        assert r.status_code == 200 and r.json()["purged"] == 1 + len(views)  # the source and its 3 views
        for v in views:
            assert get(d, v).headers["x-cache"] == "MISS"
        assert source_requests(mo) == 3  # fetched again, once
        assert builds(d) == 2


def test_stale_source_within_stale_if_error_when_the_origin_fails(mo):
    with Dexcache(cfg(mo, ttl="1s")) as d:
        pairs = origin_pairs(mo)
        mint = pairs[1]["mint_y"]
        want = expected(pairs, mints={mint})
        assert get(d, "?mint=%s" % mint).json() == want
        mo.add_rule("route=/pair/all,status=503")
        try:
            # once the source's ttl (1 s) has run out, the view is rendered from the stale source
            last = []
            assert wait_for(lambda: last.append(get(d, "?mint=%s&limit=7" % mint)) or
                            last[-1].headers["x-cache"] == "STALE", timeout=10, step=0.1)
            r = last[-1]
            assert r.status_code == 200 and all(x.status_code == 200 for x in last)
            assert r.json() == want[:7]
            # not stored: a stale source makes no fresh view
            assert get(d, "?mint=%s&limit=7" % mint).headers["x-cache"] != "HIT"
        finally:
            mo.clear_rules()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_source_over_max_object_is_fetched_once_per_ttl_not_once_per_view(mo, framing):
    """A source larger than cache.max_object can't be stored, so no view of it can be answered:
    known at the head (Content-Length) or while it streams to the view (chunked). The views answer
    502 with the reason, and the source is fetched once per source ttl, not once per view request
    (it was: 6 view requests, 6 downloads of the whole source); one error line names the cause and
    the config keys to change."""
    if framing == "chunked":
        mo.config({"chunked": True})
    try:
        with Dexcache(cfg(mo, ttl="5s", memory="8MiB", max_object="1MiB")) as d:
            t0 = time.monotonic()
            res = [get(d, "?limit=%d" % (i + 1)) for i in range(6)]
            assert [r.status_code for r in res] == [502] * 6
            assert source_requests(mo) == 1
            assert mo.stats()["meteora"]["total"] == 1
            for r in res:
                body = r.json()
                assert body["status"] == 502 and "larger than cache.max_object" in body["error"], body
                assert body["request_id"] == r.headers["x-request-id"]
                assert r.headers["cache-control"] == "no-store"
            lines = [ln for ln in d.stderr().splitlines() if "cannot be cached" in ln]
            assert len(lines) == 1, lines
            assert "[error]" in lines[0] and "GET /meteora-legacy/pair/all" in lines[0] and "too-big" in lines[0]
            assert "cache.max_object is 1048576 bytes" in lines[0] and "cache.memory" in lines[0]
            # once the memo (the source rule's ttl, 5 s) has run out: exactly one more fetch
            assert wait_for(lambda: get(d, "?limit=7").status_code == 502 and source_requests(mo) >= 2,
                            timeout=60, step=0.25)
            assert time.monotonic() - t0 >= 4.9
            assert source_requests(mo) == 2
            assert [get(d, "?limit=%d" % i).status_code for i in (1, 8, 9)] == [502] * 3
            assert source_requests(mo) == 2
            assert len([ln for ln in d.stderr().splitlines() if "cannot be cached" in ln]) == 2
    finally:
        mo.config({"chunked": False})


def test_reload_forgets_that_the_source_was_too_big(mo):
    """The memo belongs to a config generation: raise cache.max_object (as the log line says) and
    reload, and the next view fetches the source, stores it and answers 200."""
    with Dexcache(cfg(mo, memory="64MB", max_object="1MiB")) as d:
        assert get(d, "?limit=1").status_code == 502
        assert get(d, "?limit=2").status_code == 502
        assert source_requests(mo) == 1
        d.reload(cfg(mo, memory="64MB", max_object="32MB"))
        assert wait_for(lambda: d.metric("dexcache_config_reloads_total") == 1, timeout=15)
        r = get(d, "?limit=2")
        assert r.status_code == 200 and len(r.json()) == 2
        assert source_requests(mo) == 2
        assert get(d, "?limit=3").status_code == 200 and source_requests(mo) == 2


@pytest.mark.parametrize("query,status,param", [
    ("?colour=red", 400, "colour"),
    ("?mint=", 400, "mint"),
    ("?min_liquidity=abc", 400, "min_liquidity"),
    ("?min_apr=1", 400, "min_apr"),
    ("?limit=1001", 400, "limit"),
    ("?limit=-1", 400, "limit"),
    ("?offset=x", 400, "offset"),
    ("?sort=name", 400, "sort"),
    ("?sort=-liquidity&sort=apr", 400, "sort"),
    ("?fields=address,no_such_field", 400, "fields"),
    ("?fields=address,address", 400, "fields"),  # it was a 200 with {"address":..,"address":..}
    ("?fields=address&fields=name", 400, "fields"),
    ("?min_liquidity=1&min_liquidity=2", 400, "min_liquidity"),
])
def test_bad_queries_are_400_naming_the_parameter(mo, query, status, param):
    with Dexcache(cfg(mo)) as d:
        r = get(d, query)
        assert r.status_code == status
        body = r.json()
        assert body["status"] == status and param in body["error"]
        assert body["request_id"] == r.headers["x-request-id"]
        assert r.headers["cache-control"] == "no-store"
        r2 = get(d, query)
        assert r2.status_code == status and r2.headers.get("x-cache") != "HIT"
        # only an unknown `fields` name needs the index (the source's names): the others never cost a fetch
        assert source_requests(mo) == (1 if "no_such_field" in query else 0)


def test_big_source_index_is_charged_and_rss_stays_under_the_budget():
    pairs_n = 30000  # about 38 MB of JSON
    budget_mib = 128
    with FakeOrigin(args=["--lat", "fixed=0", "--pairs", str(pairs_n)], profiles=("meteora",)) as fo:
        with Dexcache(cfg(fo, memory="%dMB" % budget_mib, max_object="100MB")) as d:
            base = rss_kib(d.proc.pid)
            t0 = time.time()
            r = get(d, "?sort=-trade_volume_24h&limit=50")
            assert r.status_code == 200 and len(r.json()) == 50
            print("first view (fetch %d pairs + index + render): %.2f s" % (pairs_n, time.time() - t0))
            m = re.search(r"view index built for \S+ \S+ \((\d+) bytes of source\): (\d+) bytes in ([\d.]+) ms",
                          d.stderr())
            assert m, d.stderr()
            src_bytes, ix_bytes, ms = int(m.group(1)), int(m.group(2)), float(m.group(3))
            print("index: %d bytes for %d bytes of source (%.1f%%), built in %.1f ms" %
                  (ix_bytes, src_bytes, 100.0 * ix_bytes / src_bytes, ms))
            assert src_bytes > 30 * 10**6 and ix_bytes < src_bytes / 4
            # the index is charged to the cache budget, with the source
            charged = d.metric("dexcache_cache_bytes")
            assert charged >= src_bytes + ix_bytes
            assert charged <= budget_mib * 2**20
            pairs = json.loads(urllib.request.urlopen(fo.url("meteora") + "/pair/all", timeout=60).read())
            rng = random.Random(7)
            t0 = time.time()
            for p in rng.sample(pairs, 200):
                r = get(d, "?mint=%s&sort=-liquidity&limit=20" % p["mint_x"])
                assert r.status_code == 200 and r.json() == expected(pairs, mints={p["mint_x"]},
                                                                     sort="-liquidity", limit=20)
            print("200 distinct views: %.2f s" % (time.time() - t0))
            assert builds(d) == 1 and source_requests(fo) == 2
            growth = (rss_kib(d.proc.pid) - base) / 1024
            print("RSS growth %.1f MiB for a %.1f MB source under a %d MiB budget" %
                  (growth, src_bytes / 1e6, budget_mib))
            # ASan adds its shadow memory (1/8 of what is mapped) and its quarantine to the process
            assert not RSS_CHECKS or growth < budget_mib * (1.125 if SANITIZER_RSS_MIB else 1) + SANITIZER_RSS_MIB
            assert d.metric("dexcache_cache_bytes") <= budget_mib * 2**20


FLEET = 'redis: {{ url: "%s", prefix: "dcview:" }}\n'


def view_fleet(mo, redis_server, n=3, **kw):
    conf = FLEET % redis_server.url + cfg(mo, **kw)
    return start_fleet(conf, n, timeout=15)


def test_fleet_cold_views_on_three_instances_fetch_the_source_once(mo, redis_server):
    """The source is fetched like any key in a fleet: one upstream request for cold view requests
    spread over three instances (the others follow the fleet lock and adopt the L2 copy), and an
    instance that starts later answers from L2 without going upstream."""
    ds = view_fleet(mo, redis_server)
    late = None
    try:
        pairs = origin_pairs(mo)
        mint = pairs[0]["mint_x"]
        mo.reset()
        mo.gate("/pair/all")
        per, n = 40, 40 * len(ds)
        barrier = threading.Barrier(n)

        def one(i):
            barrier.wait(timeout=60)
            return get(ds[i % len(ds)], "?mint=%s&limit=%d" % (mint, 10 + i % 4))

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
            futs = [ex.submit(one, i) for i in range(n)]
            mo.wait_held(1, timeout=60)
            # every instance has all of its requests waiting (on the view key, or the source)
            assert wait_for(lambda: all(d.metric("dexcache_requests_in_flight") >= per for d in ds), timeout=60)
            time.sleep(0.3)  # the followers' lock round trips are answered (they poll, they never fetch)
            assert mo.wait_held(1, timeout=1) and source_requests(mo) == 1
            mo.release()
            res = [f.result(timeout=180) for f in futs]
        assert [r.status_code for r in res] == [200] * n
        assert source_requests(mo) == 1
        assert mo.stats()["meteora"]["total"] == 1
        want = expected(pairs, mints={mint}, limit=10)
        assert [get(d, "?mint=%s&limit=10" % mint).json() for d in ds] == [want] * len(ds)
        for d in ds:  # each instance builds its own index, once
            assert wait_for(lambda: builds(d) == 1, timeout=10), builds(d)
        # a fourth instance, cold: the source comes from L2, no upstream request
        late = Dexcache(FLEET % redis_server.url + cfg(mo)).start()
        assert wait_for(lambda: late.health()["redis"] == "up", timeout=15)
        r = get(late, "?mint=%s&limit=10" % mint)
        assert r.status_code == 200 and r.json() == want
        assert r.headers["x-cache"] == "MISS"
        assert source_requests(mo) == 1
        assert builds(late) == 1
    finally:
        mo.release()
        for d in ds + ([late] if late else []):
            d.stop()


def test_fleet_stale_source_is_refreshed_once_for_the_fleet(mo, redis_server):
    """Inside stale-while-revalidate, views on every instance answer STALE at once and the source is
    refreshed by one instance for the whole fleet; the others adopt its copy from L2."""
    ds = view_fleet(mo, redis_server, ttl="2s", swr="60s")
    try:
        pairs = origin_pairs(mo)
        mint = pairs[1]["mint_x"]
        q = "?mint=%s&sort=apr" % mint
        mo.reset()
        for d in ds:
            assert get(d, q).json() == expected(pairs, mints={mint}, sort="apr")
        assert source_requests(mo) == 1
        mo.version()
        new = origin_pairs(mo)
        mo.reset()
        mo.gate("/pair/all")
        time.sleep(2.2)  # the source's ttl passes
        # the view entries expired with the source: each instance renders from the stale source
        # and asks for one refresh: one instance takes the fleet lock, the others let it refresh
        for d in ds:
            r = get(d, q)
            assert r.status_code == 200 and r.headers["x-cache"] == "STALE", r.headers
        mo.wait_held(1, timeout=30)
        time.sleep(0.3)
        assert source_requests(mo) == 1
        mo.release()
        want = expected(new, mints={mint}, sort="apr")
        for d in ds:
            assert wait_for(lambda: get(d, q).json() == want, timeout=15, step=0.2)
        assert source_requests(mo) == 1
    finally:
        mo.release()
        for d in ds:
            d.stop()


def test_reload_keeps_the_indexes_of_unchanged_views_and_rebuilds_changed_ones(mo):
    """SIGHUP with the view's config unchanged: no rebuild (the new instance renders from the index
    the old one built); the old instance stays alive for it (ASan would see a use after free). With
    the view's config changed: one rebuild, and the new config applies."""
    with Dexcache(cfg(mo)) as d:
        pairs = origin_pairs(mo)
        mint = pairs[3]["mint_x"]
        mo.reset()
        assert get(d, "?mint=%s" % mint).json() == expected(pairs, mints={mint})
        assert wait_for(lambda: builds(d) == 1, timeout=10)
        d.reload(cfg(mo))  # the same config, written again
        assert wait_for(lambda: d.metric("dexcache_config_reloads_total") == 1, timeout=15)
        for q, kw in (("?mint=%s&sort=-apr" % mint, {"sort": "-apr"}), ("?mint=%s&limit=3" % mint, {"limit": 3})):
            assert get(d, q).json() == expected(pairs, mints={mint}, **kw)
        assert (builds(d), source_requests(mo)) == (1, 1)
        # max_limit changes: another view config, another index (and its limit applies)
        d.reload(cfg(mo).replace("max_limit: 1000", "max_limit: 5"))
        assert wait_for(lambda: d.metric("dexcache_config_reloads_total") == 2, timeout=15)
        assert get(d, "?mint=%s&limit=2&sort=apr" % mint).json() == expected(pairs, mints={mint}, limit=2,
                                                                              sort="apr")
        assert wait_for(lambda: builds(d) == 2, timeout=10)
        r = get(d, "?mint=%s&limit=6" % mint)
        assert r.status_code == 400 and "limit" in r.json()["error"]
        assert source_requests(mo) == 1
