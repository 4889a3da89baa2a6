"""Upstream budget (rate + queue per upstream): attempts paced so the origin never sees more than
the budget in any sliding window, a bounded queue with a deadline (503 + Retry-After beyond it), and
upstream 429s pausing the upstream (Retry-After, or Jupiter's x-ratelimit-reset)."""
import threading
import time

import requests

from dexcache import Dexcache, PREAMBLE

CONFIG = PREAMBLE + """
upstreams:
  jupiter:
    url: "%(jup)s"
    rate: %(rate)s
    queue: {{ max: %(qmax)d, timeout: 5s }}
    retries: 0
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""


def start(fake, rate="5/1s", qmax=50):
    return Dexcache(CONFIG % {"jup": fake.url("jup"), "rate": rate, "qmax": qmax}).start()


def burst(d, n, path="/jup/echo"):
    out = [None] * n

    def one(i):
        r = requests.post(d.url + path, data=b"x", timeout=30)
        out[i] = (r.status_code, r.headers.get("retry-after"), r.content)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_paced_within_every_sliding_window(fake, origin):
    d = start(fake)
    try:
        t0 = time.time()
        out = burst(d, 12)
        elapsed = time.time() - t0
        assert [o[0] for o in out] == [200] * 12  # queued requests succeed
        times = sorted(r["t_ms"] for r in origin.requests(0))
        assert len(times) == 12
        for i, t in enumerate(times):
            assert sum(1 for u in times[i:] if u < t + 1000) <= 5, times
        assert 1.8 < elapsed < 5, elapsed  # 12 requests at 5/s
    finally:
        d.stop()


def test_queue_overflow_503_with_retry_after(fake, origin):
    d = start(fake, qmax=3)
    try:
        out = burst(d, 10)
        ok = [o for o in out if o[0] == 200]
        refused = [o for o in out if o[0] == 503]
        assert len(ok) == 4 and len(refused) == 6  # one at once, three queued
        for status, retry_after, body in refused:
            assert int(retry_after) >= 1
            assert b"upstream budget exhausted" in body
        assert origin.stats()["jup"]["total"] == 4
        assert d.health()["upstreams"]["jupiter"]["queue"] == 0
    finally:
        d.stop()


def test_429_with_retry_after_pauses_the_upstream(fake, origin):
    d = start(fake, rate="50/1s")
    try:
        origin.add_rule({"route": "/echo*", "burst429": True, "retry_after": 1, "next": 1})
        r = requests.get(d.url + "/jup/echo?a=1")
        assert r.status_code == 429
        t = time.time()
        r = requests.get(d.url + "/jup/echo?a=2")
        assert r.status_code == 200
        assert time.time() - t > 0.85  # waited for the cooldown instead of hammering
        assert origin.stats()["jup"]["total"] == 2
    finally:
        d.stop()


def test_429_jupiter_style_reset_only(fake, origin):
    """No Retry-After (Jupiter documents none): the pause comes from x-ratelimit-reset."""
    origin.config({"rl": ["3/2"], "retry_after": False})
    d = start(fake, rate="50/1s")
    try:
        codes = []
        t = time.time()
        for i in range(6):
            codes.append(requests.get(d.url + "/jup/echo?i=%d" % i, timeout=30).status_code)
        assert codes.count(429) == 1  # one 429, then every request waits for the window to reset
        assert codes[-1] == 200
        assert time.time() - t > 1.5
        assert origin.stats()["jup"]["rl_rejected"] == 1
    finally:
        origin.config({"rl": [], "retry_after": True})
        d.stop()
