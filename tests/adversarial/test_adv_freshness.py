"""Freshness is never extended by the path that found an entry (issue 13, item 1).

The attack: with redis: set and a rule {ttl: 1s, stale_if_error: 5m}, every request after the
first MISS was a HIT ("dexcache; hit; collapsed; detail=fleet") with Age 1, 2, 3, 5, ... and the
origin was never asked again until the L2 copy's keep time ran out: the fleet lock round trip read
the L2 copy and served it whatever its age. An entry adopted from L2 keeps its stored freshness:
fresh -> HIT, stale -> the same SWR/SIE rules as a stale L1 entry. Each test waits past the ttl and
asserts what must not happen: a HIT past its ttl, a stale copy shared as fresh with a waiter."""
import threading
import time

import requests

from dexcache import Dexcache, PREAMBLE, wait_for

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dcfresh:" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /echo, ttl: 1s, stale_if_error: 5m }}
      - {{ path: /price/v3, ttl: 1s, stale_while_revalidate: 30s, stale_if_error: 5m }}
"""


def pair(fake, redis_server):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up", timeout=10)
    return a, b


def check_never_hit_past_ttl(rs):
    """Every HIT is younger than the 1 s ttl: Age 0 (Age counts whole seconds since storing)."""
    for r in rs:
        if r.headers["x-cache"] == "HIT":
            assert int(r.headers["age"]) == 0, (r.headers["age"], r.headers["cache-status"])


def test_fleet_copy_past_ttl_is_never_a_hit(fake, origin, redis_server):
    """SIE-only rule: after the ttl both instances go to the origin (the stale copy is only a
    fallback); over 4 s of requests to both, no HIT has an Age past the ttl and the origin is
    asked again after each expiry."""
    a, b = pair(fake, redis_server)
    try:
        first = requests.get(a.url + "/jup/echo?exp=1", timeout=10)
        assert first.headers["x-cache"] == "MISS"
        assert wait_for(lambda: redis_server.command("EXISTS", "dcfresh:l2:GET /jup/echo?exp=1") == ":1")
        rs = []
        t_end = time.time() + 4.0
        i = 0
        while time.time() < t_end and i < 200:
            rs.append(requests.get((a if i % 2 == 0 else b).url + "/jup/echo?exp=1", timeout=10))
            i += 1
            time.sleep(0.1)
        assert all(r.status_code == 200 for r in rs)
        check_never_hit_past_ttl(rs)
        # one origin request per expiry at least (4 s at ttl 1 s); not one per request
        total = origin.stats()["jup"]["total"]
        assert 4 <= total <= 2 * 5 + 1, total
        seqs = {r.headers["x-fake-seq"] for r in rs}
        assert len(seqs) >= 3, seqs  # the answers really came from new fetches
    finally:
        a.stop()
        b.stop()


def test_instance_without_l1_copy_treats_stale_l2_copy_as_stale(fake, origin, redis_server):
    """b never had the key in L1: its first request after the ttl reads the L2 copy, which is
    stale: with SWR it is served STALE while one refresh runs, never HIT."""
    a, b = pair(fake, redis_server)
    try:
        assert requests.get(a.url + "/jup/price/v3?ids=SWR1", timeout=10).headers["x-cache"] == "MISS"
        assert wait_for(lambda: redis_server.command("EXISTS", "dcfresh:l2:GET /jup/price/v3?ids=SWR1") == ":1")
        time.sleep(1.3)  # past the 1 s ttl, inside stale-while-revalidate
        r = requests.get(b.url + "/jup/price/v3?ids=SWR1", timeout=10)
        assert r.headers["x-cache"] == "STALE", r.headers["cache-status"]
        assert "revalidating" in r.headers["cache-status"]
        assert wait_for(lambda: origin.stats()["jup"]["total"] == 2, timeout=5)  # the refresh
        r2 = requests.get(b.url + "/jup/price/v3?ids=SWR1", timeout=10)
        assert r2.headers["x-cache"] == "HIT" and int(r2.headers["age"]) == 0
        assert r2.headers["x-fake-seq"] != r.headers["x-fake-seq"]
    finally:
        a.stop()
        b.stop()


def test_follower_does_not_take_stale_l2_copy_while_leader_fetches(fake, origin, redis_server):
    """b leads the refresh of an expired key (holding the fleet lock, its origin request held by
    the gate); a's request for the same key follows b: the stale L2 copy it sees meanwhile must not
    end its wait as a HIT. Both get the new answer once the origin answers."""
    a, b = pair(fake, redis_server)
    path = "/jup/echo?follow=1"
    try:
        first = requests.get(a.url + path, timeout=10)
        assert first.headers["x-cache"] == "MISS"
        assert wait_for(lambda: redis_server.command("EXISTS", "dcfresh:l2:GET " + path) == ":1")
        time.sleep(1.3)  # past the ttl: only stale-if-error remains
        origin.gate("/echo")
        out = {}
        tb = threading.Thread(target=lambda: out.__setitem__("b", requests.get(b.url + path, timeout=20)))
        tb.start()
        origin.wait_held(1)
        assert redis_server.command("EXISTS", "dcfresh:lk:GET " + path) == ":1"  # b leads fleet-wide
        ta = threading.Thread(target=lambda: out.__setitem__("a", requests.get(a.url + path, timeout=20)))
        ta.start()
        time.sleep(0.5)  # a polls L2 and the lock meanwhile, and sees the stale copy
        assert "a" not in out, out["a"].headers.get("cache-status")  # not answered from the stale copy
        origin.release()
        tb.join(20)
        ta.join(20)
        assert out["b"].headers["x-cache"] == "MISS"
        assert out["a"].status_code == 200
        assert out["a"].headers["x-fake-seq"] == out["b"].headers["x-fake-seq"] != first.headers["x-fake-seq"]
        assert int(out["a"].headers["age"]) == 0
        assert origin.stats()["jup"]["total"] == 2  # a did not fetch too
    finally:
        origin.release()
        a.stop()
        b.stop()


def test_fleet_revalidates_once(fake, origin, redis_server):
    """Three instances serve a key past its ttl inside stale-while-revalidate at the same moment:
    each answers STALE, and the fleet sends one refresh (the lock that the others find taken), not
    one per instance; the others then adopt the refreshed copy from L2 instead of fetching."""
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    ds = [Dexcache(conf).start() for _ in range(3)]
    path = "/jup/price/v3?ids=FLEETSWR"
    try:
        assert wait_for(lambda: all(d.health()["redis"] == "up" for d in ds), timeout=10)
        assert requests.get(ds[0].url + path, timeout=10).headers["x-cache"] == "MISS"
        for d in ds[1:]:  # every instance has it in L1 (from L2)
            assert requests.get(d.url + path, timeout=10).headers["x-cache"] == "HIT"
        time.sleep(1.3)  # past the ttl, inside stale-while-revalidate
        origin.gate("/price/v3")
        out = [requests.get(d.url + path, timeout=10) for d in ds]
        assert [r.headers["x-cache"] for r in out] == ["STALE"] * 3
        origin.wait_held(1)
        time.sleep(0.5)  # the other instances' refresh attempts have found the lock taken
        assert origin.held() == 1
        origin.release()
        assert wait_for(lambda: origin.stats()["jup"]["total"] == 2, timeout=5)
        seq = None
        for d in ds:  # each serves the refreshed answer (adopted from L2 by its next refresh attempt)
            def fresh():
                r = requests.get(d.url + path, timeout=10)
                return r if r.headers["x-cache"] == "HIT" else None
            assert wait_for(fresh, timeout=5, step=0.1)
            r = requests.get(d.url + path, timeout=10)
            seq = seq or r.headers["x-fake-seq"]
            assert r.headers["x-fake-seq"] == seq
        assert origin.stats()["jup"]["total"] == 2
    finally:
        origin.release()
        for d in ds:
            d.stop()


SETS_CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s", breaker: {{ failures: 1000 }} }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache: [ {{ path: /echo, ttl: 30s, negative_ttl: 30s, key_sets: [ids], ignore_params: [utm] }} ]
"""


def test_what_is_keyed_is_what_is_forwarded(fake, origin):
    """key_sets merge, sort and deduplicate ids in the cache key; the origin was sent the raw query.
    An attacker's odd spelling (?ids=USDC,,SOL, ids=SOL&ids=USDC, a duplicate) that a strict origin
    refuses was stored under the key a clean ?ids=SOL,USDC maps to: the victim got the 400 as a HIT.
    A cacheable request is now forwarded in its key's canonical form, ignored params left out."""
    d = Dexcache(SETS_CONFIG % {"jup": fake.url("jup")}).start()
    try:
        for q in ["ids=USDC,,SOL&utm=x", "ids=SOL&ids=USDC&ids=SOL", "ids=USDC%2CSOL", "i%64s=SOL,USDC"]:
            r = requests.get(d.url + "/jup/echo?" + q, timeout=10)
            assert r.status_code == 200
        reqs = [x for x in origin.requests(0) if x["path"] == "/echo"]
        assert len(reqs) == 1, reqs  # one key: one fetch, the rest HITs of it
        assert reqs[0]["raw_query"] == "ids=SOL,USDC", reqs[0]["raw_query"]
        r = requests.get(d.url + "/jup/echo?ids=SOL,USDC", timeout=10)
        assert r.headers["x-cache"] == "HIT"
    finally:
        d.stop()
