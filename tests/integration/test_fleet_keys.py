"""API keys in a fleet: a key the upstream rejects (401/403) is set aside by every instance, not
only the one that saw it; and with `rate_per: key` each key has its own fleet-wide budget."""
import threading

import requests

from dexcache import Dexcache, PREAMBLE, wait_for

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "%(prefix)s" }}
upstreams:
  jupiter:
    url: "%(jup)s"
    keys: [ "key-good-1", "key-bad", "key-good-2" ]
    %(extra)s
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""


def start(fake, redis_server, prefix, n, extra=""):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url, "prefix": prefix, "extra": extra}
    ds = [Dexcache(conf).start() for _ in range(n)]
    assert wait_for(lambda: all(d.metric("dexcache_bus_up") == 1 and d.health()["redis"] == "up" for d in ds),
                    timeout=10)
    return ds


def keys_seen(origin):
    out = {}
    for r in origin.requests(0):
        out[r["api_key"]] = out.get(r["api_key"], 0) + 1
    return out


def test_rejected_key_is_set_aside_by_every_instance(fake, origin, redis_server):
    origin.config({"keys": ["key-good-1", "key-good-2"]})
    ds = start(fake, redis_server, "dck1:", 3)
    try:
        a, b, c = ds
        # a's round robin reaches the bad key within three requests; each is retried with a good key
        for i in range(3):
            assert requests.get(a.url + "/jup/echo?a=%d" % i).status_code == 200
        assert keys_seen(origin).get("key-bad") == 1
        assert a.metric("dexcache_upstream_key_quarantines_total") == 1
        assert wait_for(lambda: b.metric("dexcache_upstream_key_quarantines_total") == 1 and
                        c.metric("dexcache_upstream_key_quarantines_total") == 1)
        for d in (b, c):
            for i in range(6):
                assert requests.get(d.url + "/jup/echo?b=%d" % i).status_code == 200
        seen = keys_seen(origin)
        assert seen.get("key-bad") == 1, seen  # nobody else ever sent it
        assert seen["key-good-1"] + seen["key-good-2"] == 3 + 12
        assert "rejected at another instance" in b.stderr()
    finally:
        origin.config({"keys": None})
        for d in ds:
            d.stop()


def test_each_key_has_its_own_fleet_budget(fake, origin, redis_server):
    # the origin limits 5/1s per key: the fleet may send 5/1s on each key, never 6 on one
    origin.config({"rl": ["5/1"]})
    ds = start(fake, redis_server, "dck2:", 2, "rate: 5/1s\n    rate_per: key\n    queue: {{ max: 100, timeout: 10s }}")
    try:
        out = []
        lock = threading.Lock()

        def one(i):
            r = requests.get(ds[i % 2].url + "/jup/echo?u=%d" % i, timeout=30)
            with lock:
                out.append(r.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert out == [200] * 24
        reqs = origin.requests(0)
        assert len(reqs) == 24
        assert all(r["status"] == 200 for r in reqs), [r["status"] for r in reqs]  # no 429 from the origin
        seen = keys_seen(origin)
        # key-bad is a valid key here (the origin does not check keys): three keys, three budgets
        assert set(seen) == {"key-good-1", "key-bad", "key-good-2"} and all(v == 8 for v in seen.values()), seen

        def worst(times):
            times = sorted(times)
            return max(sum(1 for u in times[i:] if u < t + 1000) for i, t in enumerate(times))

        for k in seen:
            assert worst([r["t_ms"] for r in reqs if r["api_key"] == k]) <= 5, k
        # three budgets of 5/1s: the fleet sends up to 15 in one second, three times one key's budget
        assert worst([r["t_ms"] for r in reqs]) >= 13, worst([r["t_ms"] for r in reqs])
    finally:
        origin.config({"rl": []})
        for d in ds:
            d.stop()
