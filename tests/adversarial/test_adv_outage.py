"""A failing origin under load sees a bounded, backing-off trickle (issue 13, item 4).

The attack: with the origin dead for 30 s under load on 50 warm keys, dexcache made about 19,000
upstream attempts (~635/s): every stale answer started a refresh plus its retries. Now a key whose
refresh failed is not refreshed again for a pause that grows (its stale copy answers meanwhile), and
the upstream's breaker opens after `failures` consecutive failures: nothing goes out while it is
open, then one probe. Counts are taken at the origin (the fake counts every request it answers)."""
import random
import threading
import time

import requests

from advlib import scale
from dexcache import Dexcache, PREAMBLE, wait_for

CONFIG = PREAMBLE + """
upstreams:
  jupiter:
    url: "{jup}"
    retries: 2
    retry_backoff: 20ms
    timeout: 2s
    breaker: {{ failures: 5, backoff: 500ms, max_backoff: 2s }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 1s, stale_while_revalidate: 2s, stale_if_error: 5m }}
      - {{ path: /echo, ttl: 1s, stale_if_error: 5m }}
"""

KEYS = 50


def load(url, paths, seconds, out, stop):
    s = requests.Session()
    t_end = time.time() + seconds
    n = 0
    while time.time() < t_end and not stop.is_set() and n < 100000:
        n += 1
        try:
            r = s.get(url + random.choice(paths), timeout=10)
            out.append((r.status_code, r.headers.get("x-cache"), r.headers.get("cache-status", "")))
        except requests.RequestException as e:
            out.append((0, repr(e), ""))


def run_outage(d, origin, paths, seconds, threads=4):
    before = origin.stats()["jup"]["total"]
    origin.add_rule({"route": "*", "status": 503})
    out, stop = [], threading.Event()
    ts = [threading.Thread(target=load, args=(d.url, paths, seconds, out, stop)) for _ in range(threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    time.sleep(seconds / 2)
    half = origin.stats()["jup"]["total"]
    for t in ts:
        t.join(seconds + 30)
    elapsed = time.time() - t0
    during = origin.stats()["jup"]["total"] - before
    second_half = origin.stats()["jup"]["total"] - half
    return out, during, second_half, elapsed


def test_dead_origin_gets_a_trickle_and_clients_get_stale(fake, origin):
    d = Dexcache(CONFIG.replace("{jup}", fake.url("jup"))).start()
    try:
        paths = ["/jup/price/v3?ids=K%d" % i for i in range(KEYS // 2)] + \
                ["/jup/echo?k=%d" % i for i in range(KEYS // 2)]
        for p in paths:
            assert requests.get(d.url + p, timeout=10).headers["x-cache"] == "MISS"
        assert origin.stats()["jup"]["total"] == KEYS
        time.sleep(1.1)  # every key past its ttl
        seconds = scale(8, 30)
        out, during, second_half, elapsed = run_outage(d, origin, paths, seconds)
        codes = {}
        for c, _, _ in out:
            codes[c] = codes.get(c, 0) + 1
        stale = sum(1 for c, x, _ in out if c == 200 and x == "STALE")
        print("\noutage %.1f s: %d client requests %s, %d STALE; origin attempts %d (%.2f/s), second half %d"
              % (elapsed, len(out), codes, stale, during, during / elapsed, second_half))
        assert len(out) > 200  # the load really ran
        assert codes == {200: len(out)}, codes  # every warm key answered from its stale copy
        assert stale >= len(out) - KEYS  # (a few answers may be fresh HITs of the first moment)
        # the floor: the first failures (a burst until the breaker opens), then probes only: one per
        # pause (0.5, 1, 2, 2, ... s); before this, ~635 attempts per second
        assert during <= 40 + seconds, during
        assert second_half <= 2 + seconds // 2, second_half
        h = d.health()["upstreams"]["jupiter"]["breaker"]
        assert h["state"] in ("open", "half-open") and h["opened"] >= 1 and h["refused"] > 0, h
        assert d.metric("dexcache_upstream_breaker_opened_total", upstream="jupiter") == h["opened"]
        assert d.metric("dexcache_upstream_breaker_refused_total", upstream="jupiter") >= h["refused"]

        # a cold key while the breaker is open: refused here, nothing sent, Retry-After given
        if d.health()["upstreams"]["jupiter"]["breaker"]["state"] == "open":
            n0 = origin.stats()["jup"]["total"]
            r = requests.get(d.url + "/jup/echo?cold=1", timeout=10)
            assert r.status_code == 503 and "circuit breaker" in r.json()["error"]
            assert int(r.headers["retry-after"]) >= 1
            assert origin.stats()["jup"]["total"] == n0

        # the origin comes back: the next probe closes the breaker and keys refresh
        origin.clear_rules()

        def fresh_again():
            r = requests.get(d.url + paths[0], timeout=10)
            return r.headers["x-cache"] in ("HIT", "MISS") or "revalidating" in r.headers["cache-status"]

        assert wait_for(fresh_again, timeout=10, step=0.2)
        assert wait_for(lambda: d.health()["upstreams"]["jupiter"]["breaker"]["state"] == "closed", timeout=10)
    finally:
        origin.clear_rules()
        d.stop()


def test_failed_refresh_backs_off_per_key(fake, origin):
    """One key, its origin path failing (the rest of the upstream healthy, so the breaker stays
    closed): each failed refresh pauses the next one, and its stale copy answers meanwhile."""
    d = Dexcache(CONFIG.replace("{jup}", fake.url("jup"))).start()
    try:
        assert requests.get(d.url + "/jup/echo?one=1", timeout=10).headers["x-cache"] == "MISS"
        time.sleep(1.1)
        origin.add_rule({"route": "/echo", "status": 503})
        t_end = time.time() + 3.0
        answers = []
        while time.time() < t_end:
            r = requests.get(d.url + "/jup/echo?one=1", timeout=10)
            answers.append((r.status_code, r.headers["x-cache"], r.headers["cache-status"]))
            requests.get(d.url + "/jup/price/v3?ids=OK%d" % len(answers), timeout=10)  # healthy traffic
            time.sleep(0.02)
        echo_attempts = origin.stats()["jup"]["by_route"].get("/echo", 0) - 1  # less the first MISS
        print("\nper-key backoff: %d requests in 3 s, %d attempts at the origin" % (len(answers), echo_attempts))
        assert all(a[0] == 200 and a[1] == "STALE" for a in answers), answers[:5]
        assert any("origin-backoff" in a[2] for a in answers)
        # refreshes after 0, then pauses of 250..500 ms, 0.5..1 s, 1..2 s: at most 5 refreshes in
        # 3 s, each up to 3 attempts (503 is retried); ~100 requests were answered
        assert 2 <= echo_attempts <= 5 * 3, echo_attempts  # it was tried again, but seldom
        assert len(answers) > 30
        assert d.health()["upstreams"]["jupiter"]["breaker"]["state"] == "closed"
    finally:
        origin.clear_rules()
        d.stop()


def test_origin_refusing_connections_gets_a_trickle(fake, origin):
    """The origin's listener is closed (connection refused) for the whole outage: the fake cannot
    count what never reaches it, so dexcache's own count of attempts is read; the same floor holds."""
    d = Dexcache(CONFIG.replace("{jup}", fake.url("jup"))).start()
    try:
        paths = ["/jup/price/v3?ids=R%d" % i for i in range(KEYS)]
        for p in paths:
            assert requests.get(d.url + p, timeout=10).headers["x-cache"] == "MISS"
        time.sleep(1.1)
        seconds = scale(6, 30)
        n0 = d.metric("dexcache_upstream_requests_total", upstream="jupiter")
        origin.refuse("jup", int((seconds + 1) * 1000))
        out, stop = [], threading.Event()
        ts = [threading.Thread(target=load, args=(d.url, paths, seconds, out, stop)) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(seconds + 30)
        attempts = d.metric("dexcache_upstream_requests_total", upstream="jupiter") - n0
        print("\nrefused %d s: %d client requests, %d upstream attempts (%.2f/s)"
              % (seconds, len(out), attempts, attempts / seconds))
        assert len(out) > 100 and all(c == 200 and x == "STALE" for c, x, _ in out), out[:3]
        assert attempts <= 40 + seconds, attempts
    finally:
        d.stop()
