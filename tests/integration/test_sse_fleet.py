"""Live streams in a fleet: exactly one instance polls a channel (a lease in Redis) and publishes its
events through pub/sub, numbered fleet-wide; every instance relays them to its own subscribers. When
the polling instance dies, another takes over within about two intervals."""
import time

from dexcache import Dexcache, PREAMBLE, wait_for
from sse_client import ManySSE, SSEClient

MINT = "So11111111111111111111111111111111111111112"

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "%(prefix)s" }}
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache: [ {{ path: /price/v3, ttl: 200ms, key_sets: [ids] }} ]
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 500ms, on_change: false }}
"""


def fleet(fake, redis_server, prefix, n=2):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url, "prefix": prefix}
    ds = [Dexcache(conf).start() for _ in range(n)]
    assert wait_for(lambda: all(d.health()["redis"] == "up" for d in ds), timeout=10)
    return ds


def polls(origin):
    return sum(1 for r in origin.requests(0) if r["path"] == "/price/v3")


def test_1000_subscribers_over_2_instances_one_poll_per_interval(fake, origin, redis_server):
    ds = fleet(fake, redis_server, "dcs1:")
    many = None
    try:
        targets = [("127.0.0.1", ds[i % 2].port) for i in range(1000)]
        many = ManySSE(targets, "/jup/stream/price?ids=" + MINT)
        assert wait_for(lambda: sum(d.metric("dexcache_sse_subscribers") for d in ds) == 1000, timeout=30)
        assert wait_for(lambda: min(many.counts()) >= 2, timeout=20), min(many.counts())
        p0, t0 = polls(origin), time.time()
        c0 = many.counts()
        assert wait_for(lambda: min(c - b for c, b in zip(many.counts(), c0)) >= 8, timeout=30)
        elapsed = time.time() - t0
        p = polls(origin) - p0
        assert p <= elapsed / 0.5 + 2, (p, elapsed)  # one poll per interval for the whole fleet
        assert sum(d.metric("dexcache_sse_channels") for d in ds) == 2  # one channel on each instance
        for ids in many.ids:
            assert ids == sorted(ids) and len(set(ids)) == len(ids), ids[:20]
            tail = ids[1:]  # after the first (latest state), every id, in order
            assert tail == list(range(tail[0], tail[0] + len(tail))), tail[:20]
        assert not many.errors
    finally:
        if many:
            many.close()
        for d in ds:
            d.stop()


def test_leader_dies_another_instance_polls_within_two_intervals(fake, origin, redis_server):
    ds = fleet(fake, redis_server, "dcs2:")
    subs = []
    try:
        subs = [SSEClient("127.0.0.1", d.port, "/jup/stream/price?ids=" + MINT) for d in ds]
        assert all(s.wait(lambda c: len(c.updates()) >= 3) for s in subs)
        leader = next(d for d in ds if "this instance polls" in d.stderr())
        survivor = next(d for d in ds if d is not leader)
        sub = subs[ds.index(survivor)]
        last = sub.updates()[-1]["id"]
        leader.proc.kill()
        leader.proc.wait(5)
        t_kill = time.time()
        n0 = polls(origin)
        assert wait_for(lambda: polls(origin) > n0, timeout=5)
        takeover = time.time() - t_kill
        assert takeover < 2 * 0.5 + 0.3, takeover
        assert sub.wait(lambda c: c.updates()[-1]["id"] >= last + 3, timeout=5)
        ids = [e["id"] for e in sub.updates()]
        assert ids == sorted(set(ids))  # still in order across the change of leader
        assert "this instance polls" in survivor.stderr()
    finally:
        for s in subs:
            s.close()
        for d in ds:
            d.stop()
