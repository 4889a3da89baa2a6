"""The circuit breaker shared by the fleet, outlier detection by failure ratio, and the fleet-wide
cordon (issue 17, "Tiers and failover", second bullet).

Three real dexcache instances share a real redis-server in front of one fake origin process with two
jup listeners, `jup_a` (tier 1) and `jup_b` (tier 2). The fake counts every request per listener:
what tier 1 saw is what is asserted, not what dexcache reports. Every request uses a distinct key
(nothing is served from cache)."""
import itertools
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import requests

from dexcache import Dexcache, wait_for, start_fleet
from fake import FakeOrigin

TOKEN = "breaker-fleet-token"

CONFIG = """listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "%(token)s" }}
log: {{ access: off, level: info }}
%(redis)s
upstreams:
  jupiter:
    tiers:
%(tiers)s
    retries: 0
    connect_timeout: 1s
    timeout: 3s
    breaker: {{ failures: %(failures)d, failure_ratio: %(ratio)s, window: 10s, min_requests: 20, backoff: %(backoff)s, max_backoff: %(max_backoff)s }}
    retry_budget: {{ percent: 100, min_concurrency: 1000 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 30s }}
"""

_seq = itertools.count()


def config(fo, redis=None, prefix="bf:", failures=3, ratio="0", backoff="3s", max_backoff="12s", tiers=2):
    urls = [fo.url("jup_a"), fo.url("jup_b")][:tiers]
    return CONFIG % {
        "token": TOKEN,
        "redis": 'redis: {{ url: "%s", prefix: "%s" }}' % (redis.url, prefix) if redis else "",
        "tiers": "\n".join('      - {{ url: "%s" }}' % u for u in urls),
        "failures": failures, "ratio": ratio, "backoff": backoff, "max_backoff": max_backoff}


@pytest.fixture
def fo():
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup_a", "jup_b")) as f:
        yield f


def tier1(fo):
    return fo.stats().get("jup_a", {}).get("total", 0)


def get(d, tag="k"):
    """One request on a key never asked before: (status, cache-status)."""
    r = requests.get(d.url + "/jup/price/v3?ids=%s%d" % (tag, next(_seq)), timeout=10)
    return r.status_code, r.headers.get("cache-status", "")


def th(d, n=1):
    return d.health()["upstreams"]["jupiter"]["tiers"][n - 1]


def admin_post(d, path):
    req = urllib.request.Request(d.admin_url + path, data=b"", method="POST",
                                 headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, json.loads(r.read())


def fleet(conf, n=3):
    return start_fleet(conf, n, timeout=15)


def stop_all(ds):
    for d in ds:
        d.stop()


def open_on(d, fo, n):
    """n requests through d while tier 1 answers 503: each fails over to tier 2 (200)."""
    for _ in range(n):
        st, cs = get(d, "open")
        assert st == 200 and "detail=tier-2" in cs, (st, cs)


def test_open_spreads_one_probe_closes_everywhere(fo, redis_server):
    """A sees 3 failures: its breaker opens; B and C learn at once and send tier 1 nothing until the
    pause ends; when it ends, requests to all three at once give exactly one probe fleet-wide (it
    fails: open again everywhere); the next probe succeeds (through B) and closes it everywhere."""
    fo.add_rule({"profile": "jup_a", "route": "*", "status": 503})
    ds = fleet(config(fo, redis_server, prefix="bf1:", backoff="4s"))
    a, b, c = ds
    try:
        t_open = time.monotonic()
        open_on(a, fo, 3)
        assert tier1(fo) == 3
        assert th(a)["circuit"] == "open" and th(a)["opened_by"] == "local"
        assert wait_for(lambda: all(th(d)["circuit"] == "open" and th(d)["opened_by"] == "fleet" for d in (b, c)),
                        timeout=3), [th(d) for d in (b, c)]
        for _ in range(5):
            for d in (b, c, a):
                st, cs = get(d, "while")
                assert st == 200 and "detail=tier-2" in cs
        assert time.monotonic() - t_open < 4.0  # all of it inside the pause
        assert tier1(fo) == 3  # nothing to tier 1 from anyone
        assert redis_server.command("EXISTS", "bf1:brk:jupiter~1") == ":1"
        assert b.metric("dexcache_upstream_tier_breaker_opened_by", upstream="jupiter", tier="1", by="fleet") == 1
        assert b.metric("dexcache_upstream_tier_state", upstream="jupiter", tier="1") == 1

        # half-open everywhere: 4 clients per instance at once, exactly one probe fleet-wide
        assert wait_for(lambda: all(th(d)["circuit"] == "half-open" for d in ds), timeout=10)
        codes = []
        lock = threading.Lock()

        def client(d):
            for _ in range(3):
                st, _ = get(d, "probe")
                with lock:
                    codes.append(st)

        ts = [threading.Thread(target=client, args=(d,)) for d in ds for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert codes == [200] * 36, codes
        assert tier1(fo) == 4  # one probe for the whole fleet
        # it failed: open again everywhere, for twice as long
        assert wait_for(lambda: all(th(d)["circuit"] == "open" for d in ds), timeout=3), [th(d) for d in ds]

        # tier 1 recovers; the next probe (through B) closes it on every instance
        fo.clear_rules()
        assert wait_for(lambda: th(b)["circuit"] == "half-open", timeout=15)
        st, cs = get(b, "recover")
        assert st == 200 and "detail=tier" not in cs  # tier 1 answered
        assert tier1(fo) == 5
        assert wait_for(lambda: all(th(d)["circuit"] == "closed" for d in ds), timeout=3), [th(d) for d in ds]
        assert redis_server.command("EXISTS", "bf1:brk:jupiter~1") == ":0"
        for d in (a, c):
            st, cs = get(d, "after")
            assert st == 200 and "detail=tier" not in cs
        assert tier1(fo) == 7
    finally:
        stop_all(ds)


def test_failure_ratio_opens_alone(fo):
    """Tier 1 fails 3 requests in 5 (never more than 2 in a row) with failures: 1000: only the
    failure ratio (0.5 over >= 20 attempts in 10 s) can open the breaker, and it does at the 20th
    attempt (a failure, 12 of 20); after that tier 1 sees nothing."""
    fo.add_rule({"profile": "jup_a", "route": "*", "status": 503, "every": 5})  # 1 in 5
    fo.add_rule({"profile": "jup_a", "route": "*", "status": 503, "every": 2})  # 2 of the other 4
    with Dexcache(config(fo, failures=1000, ratio="0.5", backoff="30s", max_backoff="60s")) as d:
        for i in range(19):
            assert get(d, "ratio")[0] == 200
            assert th(d)["circuit"] == "closed", (i, th(d))
        h = th(d)
        assert h["window_attempts"] == 19 and abs(h["failure_ratio"] - 11 / 19) < 0.001, h
        assert get(d, "ratio")[0] == 200
        assert tier1(fo) == 20
        h = th(d)
        assert h["circuit"] == "open" and h["opened"] == 1 and h["opened_by"] == "local", h
        for _ in range(10):
            st, cs = get(d, "ratio")
            assert st == 200 and "detail=tier-2" in cs
        assert tier1(fo) == 20


def test_cordon_fleet_wide_and_at_start(fo, redis_server):
    """A cordon on A: B and C send tier 1 nothing; an instance started later finds the cordon in
    Redis; uncordon on A: every instance sends to tier 1 again. Healthy traffic makes no breaker
    call to Redis (only the sync's MGET)."""
    conf = config(fo, redis_server, prefix="bf3:")
    ds = fleet(conf)
    a, b, c = ds
    late = None
    mon = redis_server.monitor()
    try:
        seen = []

        def traffic():
            for d in ds:
                assert get(d, "healthy")[0] == 200
            seen.extend(l for l in mon.drain(quiet=0.1).splitlines() if ":brk" in l or ":cordon:" in l)
            return any('"MGET"' in l for l in seen)

        assert wait_for(traffic, timeout=10)  # at least one sync ran meanwhile
        assert all('"MGET"' in l for l in seen), [l for l in seen if '"MGET"' not in l][:5]
        healthy_sent = tier1(fo)
        assert healthy_sent >= 3

        assert admin_post(a, "/upstreams/jupiter/tiers/1/cordon") == (
            200, {"upstream": "jupiter", "tier": 1, "cordoned": True, "fleet": True})
        assert wait_for(lambda: all(th(d)["circuit"] == "cordoned" for d in (b, c)), timeout=3)
        for d in (a, b, c):
            st, cs = get(d, "cordoned")
            assert st == 200 and "detail=tier-2" in cs
        assert tier1(fo) == healthy_sent
        assert b.metric("dexcache_upstream_tier_state", upstream="jupiter", tier="1") == 2

        late = Dexcache(conf).start()
        assert wait_for(lambda: th(late)["cordoned"], timeout=5), th(late)
        st, cs = get(late, "late")
        assert st == 200 and "detail=tier-2" in cs
        assert tier1(fo) == healthy_sent

        assert admin_post(a, "/upstreams/jupiter/tiers/1/uncordon")[1]["cordoned"] is False
        assert wait_for(lambda: not any(th(d)["cordoned"] for d in (b, c, late)), timeout=3)
        for d in (b, c, late):
            st, cs = get(d, "uncordoned")
            assert st == 200 and "detail=tier" not in cs
        assert tier1(fo) == healthy_sent + 3
    finally:
        mon.close()
        if late is not None:
            late.stop()
        stop_all(ds)


def test_redis_killed_mid_open(fo, redis_server):
    """The breaker is open fleet-wide when Redis dies: every instance keeps serving (tier 2 answers,
    no error reaches a client) and keeps its own breaker: after the pause each probes tier 1 on its
    own (no lock to take), the probe fails, and its breaker opens again."""
    fo.add_rule({"profile": "jup_a", "route": "*", "status": 503})
    ds = fleet(config(fo, redis_server, prefix="bf4:", backoff="1s", max_backoff="2s"))
    a, b, c = ds
    try:
        open_on(a, fo, 3)
        assert wait_for(lambda: all(th(d)["circuit"] == "open" for d in (b, c)), timeout=3)
        redis_server.kill()
        assert wait_for(lambda: all(d.health()["redis"] == "down" for d in ds), timeout=10)
        before = tier1(fo)
        t0 = time.monotonic()
        codes = []
        while time.monotonic() - t0 < 4.0:
            for d in ds:
                codes.append(get(d, "noredis")[0])
        elapsed = time.monotonic() - t0
        assert set(codes) == {200}, codes
        sent = tier1(fo) - before
        # each instance alone: at most one probe per pause (1 s, then 2 s), with a margin
        assert 1 <= sent <= 3 * (int(elapsed) + 2), (sent, elapsed)
        assert all(th(d)["circuit"] in ("open", "half-open") for d in ds)
        print("redis down: %d requests to all instances in %.1f s, tier 1 saw %d probes" % (len(codes), elapsed, sent))
    finally:
        stop_all(ds)


OUTAGE_S = 10


@pytest.mark.parametrize("breaker", ["off", "on"])
def test_outage_load_with_and_without_breaker(fo, redis_server, breaker):
    """A single-tier upstream is down (503) for OUTAGE_S while 3 clients per instance keep asking:
    what the origin receives per second, with the fleet-shared breaker (failures: 5, backoff 1s up to
    30s) and without it (never opens)."""
    fo.add_rule({"profile": "jup_a", "route": "*", "status": 503})
    failures = 5 if breaker == "on" else 1000000
    conf = config(fo, redis_server, prefix="bf5%s:" % breaker, failures=failures, ratio="0", backoff="1s",
                  max_backoff="30s", tiers=1)
    ds = fleet(conf)
    try:
        stop = time.monotonic() + OUTAGE_S
        codes = {}
        lock = threading.Lock()

        def client(d):
            s = requests.Session()
            i = 0
            while time.monotonic() < stop:
                i += 1
                try:
                    st = s.get(d.url + "/jup/price/v3?ids=out%d_%d" % (threading.get_ident(), i), timeout=10).status_code
                except requests.RequestException:
                    st = 0
                with lock:
                    codes[st] = codes.get(st, 0) + 1

        ts = [threading.Thread(target=client, args=(d,)) for d in ds for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(OUTAGE_S + 30)
        sent = tier1(fo)
        total = sum(codes.values())
        print("outage %ds, breaker %s: %d client requests, origin saw %d (%.1f/s)"
              % (OUTAGE_S, breaker, total, sent, sent / OUTAGE_S))
        assert 0 not in codes and set(codes) <= {502, 503}, codes
        if breaker == "off":
            assert sent == total  # every request went out
        else:
            # 5 failures per instance (+ 2 more in flight) at most before the first opening spreads,
            # then one probe fleet-wide per pause (1 s, 2 s, 4 s, 8 s: 4 in 10 s), with a margin
            assert sent <= 3 * 7 + 8, sent
            assert sent * 10 < total
    finally:
        stop_all(ds)
