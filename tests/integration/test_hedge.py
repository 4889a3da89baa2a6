"""Hedged GETs (issue 17, "Hedged GETs"): when the first attempt of a cache fill has no response
head after the rule's `hedge.after`, one more attempt goes; the first good head wins and the other
is cancelled. The fake origin's `delay=MS` rule action delays a share of the answers and records a
request whose client closed the connection meanwhile as `client_closed` (a cancelled loser)."""
import time

import requests

from dexcache import Dexcache, PREAMBLE, wait_for
from fake import FakeOrigin

CONFIG = PREAMBLE + """
upstreams:
  jupiter:
    url: "%(jup)s"
    retries: 0
    timeout: 5s
    %(rate)s
    retry_budget: {{ percent: %(percent)d, min_concurrency: %(min_conc)d }}
routes:
  - prefix: /jup
    upstream: jupiter
    no_cache: [/swap/]
    cache:
      - {{ path: /price/v3, ttl: 60s %(hedge)s }}
      - {{ path: /echo, ttl: 60s %(hedge)s }}
"""

HEDGE_50MS = ", hedge: {{ after: 50ms }}"


def config(fo, hedge=HEDGE_50MS, percent=20, min_conc=3, rate=""):
    return CONFIG % {"jup": fo.url("jup"), "hedge": hedge, "percent": percent, "min_conc": min_conc,
                     "rate": rate}


def origin_total(fo):
    return fo.stats().get("jup", {}).get("total", 0)


def closed_records(fo):
    return [r for r in fo.requests(since=0) if r.get("fault") == "client_closed"]


def hedges(d, outcome):
    return d.metric("dexcache_upstream_hedges_total", upstream="jupiter", outcome=outcome)


def pctl(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))]


def run_cold_keys(d, n, prefix):
    """n distinct cold keys, one after the other: client latencies in seconds."""
    lat = []
    s = requests.Session()
    for i in range(n):
        t0 = time.monotonic()
        r = s.get(d.url + "/jup/price/v3?ids=%s%d" % (prefix, i), timeout=10)
        lat.append(time.monotonic() - t0)
        assert r.status_code == 200, (i, r.status_code, r.text)
    return lat


N = 200


def test_hedge_cuts_the_tail():
    """5% of answers delayed 800 ms, hedge after 50 ms: client p99 < 300 ms, the origin sees at most
    N * 1.05 + slack requests; every delayed primary that lost was cancelled (the origin saw its
    connection closed); each key stored once (a second pass is all HITs, no origin request)."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        fo.add_rule({"route": "/price/v3", "prob": 0.05, "delay": 800})
        with Dexcache(config(fo)) as d:
            lat = run_cold_keys(d, N, "H")
            p50, p99 = pctl(lat, 50), pctl(lat, 99)
            total = origin_total(fo)
            won, lost, skipped = hedges(d, "won"), hedges(d, "lost"), hedges(d, "skipped_budget")
            print("hedging on: p50 %.1f ms p99 %.1f ms max %.1f ms; origin %d requests for %d keys; "
                  "hedges won %d lost %d skipped %d" % (p50 * 1000, p99 * 1000, max(lat) * 1000, total, N,
                                                        won, lost, skipped))
            assert p99 < 0.300
            assert total <= N * 1.05 + 10
            assert won >= 3  # ~10 delayed primaries, each rescued by its hedge
            assert skipped == 0
            assert total - N <= won + lost  # every extra origin request was a hedge
            # the losers' connections were closed: the fake saw it during their delay
            wait_for(lambda: len(closed_records(fo)) >= 1, timeout=5)
            assert len(closed_records(fo)) <= won
            # nothing stored twice: one store per key, then hits only
            assert d.metric("dexcache_cache_stores_total", route="/jup") == N
            before = origin_total(fo)
            s = requests.Session()
            for i in range(0, N, 10):
                r = s.get(d.url + "/jup/price/v3?ids=H%d" % i, timeout=10)
                assert r.headers["x-cache"] == "HIT"
            assert origin_total(fo) == before


def test_without_hedging_the_tail_stays():
    """The same origin without `hedge`: p99 >= 800 ms (the test above can fail), and exactly one
    origin request per key."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        fo.add_rule({"route": "/price/v3", "prob": 0.05, "delay": 800})
        with Dexcache(config(fo, hedge="")) as d:
            lat = run_cold_keys(d, N, "O")
            p50, p99 = pctl(lat, 50), pctl(lat, 99)
            print("hedging off: p50 %.1f ms p99 %.1f ms; origin %d requests for %d keys"
                  % (p50 * 1000, p99 * 1000, origin_total(fo), N))
            assert p99 >= 0.800
            assert origin_total(fo) == N
            assert hedges(d, "won") == hedges(d, "lost") == hedges(d, "skipped_budget") == 0


def test_never_for_post_or_never_cached_routes():
    """Every answer delayed 300 ms: a POST on a hedged rule's path and a GET on a no_cache route
    each reach the origin exactly once; no hedge is counted."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        fo.add_rule({"route": "*", "delay": 300})
        with Dexcache(config(fo)) as d:
            for i in range(3):
                r = requests.post(d.url + "/jup/echo?p=%d" % i, data=b"x", timeout=10)
                assert r.status_code == 200
                r = requests.get(d.url + "/jup/swap/v1/quote?i=%d" % i, timeout=10)
                assert r.status_code in (200, 400), r.text
            assert origin_total(fo) == 6
            st = fo.stats()["jup"]["by_route"]
            assert sum(st.values()) == 6
            assert hedges(d, "won") == hedges(d, "lost") == hedges(d, "skipped_budget") == 0
            # the same delay on a hedged GET does hedge (the config is live)
            r = requests.get(d.url + "/jup/echo?g=1", timeout=10)
            assert r.status_code == 200
            assert origin_total(fo) == 8
            assert hedges(d, "won") + hedges(d, "lost") == 1


def test_no_hedge_without_retry_budget():
    """retry_budget with no room (percent 0, min_concurrency 0): every first attempt is slow (300 ms)
    but no hedge goes: exactly one origin request per key, one skipped_budget per request."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        fo.add_rule({"route": "/price/v3", "delay": 300})
        with Dexcache(config(fo, percent=0, min_conc=0)) as d:
            for i in range(5):
                r = requests.get(d.url + "/jup/price/v3?ids=R%d" % i, timeout=10)
                assert r.status_code == 200
            assert origin_total(fo) == 5
            assert hedges(d, "skipped_budget") == 5
            assert hedges(d, "won") == hedges(d, "lost") == 0
            assert closed_records(fo) == []


def test_no_hedge_without_upstream_budget():
    """The upstream budget (1 request per 10 s) has no slot free when the hedge is due: the hedge is
    not sent (it never queues): exactly one origin request, skipped_budget 1."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        fo.add_rule({"route": "/price/v3", "delay": 300})
        with Dexcache(config(fo, rate='rate: "1/10s"')) as d:
            r = requests.get(d.url + "/jup/price/v3?ids=U1", timeout=10)
            assert r.status_code == 200
            assert origin_total(fo) == 1
            wait_for(lambda: hedges(d, "skipped_budget") == 1, timeout=5)
            assert hedges(d, "won") == hedges(d, "lost") == 0
            assert closed_records(fo) == []
            # a hedge that yields is no client turned away: the budget-exhausted alert stays quiet
            assert d.metric("dexcache_upstream_budget_rejected_total", upstream="jupiter") == 0


def test_loser_cancelled_and_winner_validated():
    """The first attempt is delayed 2 s, its hedge answers at once: the client gets the hedge's answer
    well before 2 s, the origin sees the first connection closed (client_closed), the entry is stored
    once and is a HIT next. A hedge that answers 503 does not win: the slow first answer is used."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        fo.add_rule({"route": "/price/v3", "key": "*ids=C1*", "next": 1, "delay": 2000})
        with Dexcache(config(fo)) as d:
            t0 = time.monotonic()
            r = requests.get(d.url + "/jup/price/v3?ids=C1", timeout=10)
            took = time.monotonic() - t0
            assert r.status_code == 200
            assert took < 1.5
            assert origin_total(fo) == 2
            wait_for(lambda: len(closed_records(fo)) == 1, timeout=5)
            assert hedges(d, "won") == 1 and hedges(d, "lost") == 0
            r = requests.get(d.url + "/jup/price/v3?ids=C1", timeout=10)
            assert r.headers["x-cache"] == "HIT"
            assert origin_total(fo) == 2
            assert d.metric("dexcache_cache_stores_total", route="/jup") == 1
            # the hedge's 503 loses: the first attempt (delayed 400 ms) answers
            fo.add_rule({"route": "/price/v3", "key": "*ids=C2*", "next": 1, "delay": 400})
            fo.add_rule({"route": "/price/v3", "key": "*ids=C2*", "next": 1, "status": 503})
            r = requests.get(d.url + "/jup/price/v3?ids=C2", timeout=10)
            assert r.status_code == 200
            assert origin_total(fo) == 4
            assert hedges(d, "won") == 1 and hedges(d, "lost") == 1


def test_after_p95_uses_the_tier_latency_once_known():
    """after: p95 (floor 30 ms, fallback 2 s): with no samples yet, a first attempt delayed 800 ms is
    not hedged (the fallback is longer); after 30 fast answers the tier's p95 is a few ms, so the delay
    is the floor and the next delayed first attempt is rescued by its hedge well before 800 ms."""
    hedge = ", hedge: {{ after: p95, floor: 30ms, fallback: 2s }}"
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        with Dexcache(config(fo, hedge=hedge)) as d:
            fo.add_rule({"route": "/price/v3", "next": 1, "delay": 800})
            t0 = time.monotonic()
            assert requests.get(d.url + "/jup/price/v3?ids=P0", timeout=10).status_code == 200
            assert time.monotonic() - t0 >= 0.8
            assert hedges(d, "won") + hedges(d, "lost") == 0
            assert origin_total(fo) == 1
            run_cold_keys(d, 30, "PW")  # (one slower than 30 ms under load may hedge: deltas below)
            won0, total0 = hedges(d, "won"), origin_total(fo)
            fo.add_rule({"route": "/price/v3", "next": 1, "delay": 800})
            t0 = time.monotonic()
            assert requests.get(d.url + "/jup/price/v3?ids=P1", timeout=10).status_code == 200
            took = time.monotonic() - t0
            assert took < 0.6, took
            assert hedges(d, "won") == won0 + 1
            assert origin_total(fo) == total0 + 2


def test_winner_is_validated():
    """validate: json applies to the hedge that won: the first attempt is delayed 2 s, the hedge answers
    at once with a body that is not JSON: the client gets a 502 (no stale copy), nothing is stored (the
    next request goes to the origin again)."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        with Dexcache(config(fo, hedge=", validate: json" + HEDGE_50MS)) as d:
            fo.add_rule({"route": "/price/v3", "key": "*ids=V1*", "next": 1, "delay": 2000})
            fo.add_rule({"route": "/price/v3", "key": "*ids=V1*", "next": 1, "bad_json": True})
            r = requests.get(d.url + "/jup/price/v3?ids=V1", timeout=10)
            assert r.status_code == 502, r.text
            assert hedges(d, "won") == 1
            assert origin_total(fo) == 2
            assert d.metric("dexcache_cache_stores_total", route="/jup") == 0
            r = requests.get(d.url + "/jup/price/v3?ids=V1", timeout=10)
            assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
            assert origin_total(fo) == 3


def test_winner_failing_validation_is_retried_when_retries_allow():
    """The hedge answers first but its body fails validation (the good first attempt, still on its way,
    was cancelled at the adoption): the fetch goes on like after a rejected answer of its own, and the
    hedge does not use up its retries: the retry's good answer is served and stored (it was a 502)."""
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",)) as fo:
        conf = config(fo, hedge=", validate: json" + HEDGE_50MS).replace("retries: 0", "retries: 1")
        with Dexcache(conf) as d:
            fo.add_rule({"route": "/price/v3", "key": "*ids=V2*", "next": 1, "delay": 600})
            fo.add_rule({"route": "/price/v3", "key": "*ids=V2*", "next": 1, "bad_json": True})
            t0 = time.monotonic()
            r = requests.get(d.url + "/jup/price/v3?ids=V2", timeout=10)
            assert r.status_code == 200, r.text
            r.json()
            assert time.monotonic() - t0 < 3.0
            assert hedges(d, "won") == 1
            assert origin_total(fo) == 3  # the cancelled first attempt, the bad hedge, the retry
            r = requests.get(d.url + "/jup/price/v3?ids=V2", timeout=10)
            assert r.headers["x-cache"] == "HIT" and origin_total(fo) == 3
