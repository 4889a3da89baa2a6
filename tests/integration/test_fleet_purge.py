"""Fleet-wide purge and API-key quarantine through the bus (Redis pub/sub plus a capped log):
three real dexcache processes, a real redis-server and the fake origin. A purge at one instance
empties every instance's L1, an L2 copy stored before the purge is refused, and an instance that
was not listening (started later) catches up from the log."""
import time

import requests

from dexcache import Dexcache, wait_for

AUTH = {"Authorization": "Bearer s3cret"}

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
log: {{ access: off }}
redis: {{ url: "%(redis)s", prefix: "%(prefix)s" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /, ttl: 60s }} ] }}
"""


def start(fake, redis_server, prefix, n):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url, "prefix": prefix}
    ds = [Dexcache(conf).start() for _ in range(n)]
    assert wait_for(lambda: all(d.metric("dexcache_bus_up") == 1 and d.health()["redis"] == "up" for d in ds),
                    timeout=10)
    return conf, ds


def received(d):
    return d.metric("dexcache_bus_messages_total", direction="received")


def test_purge_reaches_every_instance_and_l2(fake, origin, redis_server):
    _, ds = start(fake, redis_server, "dcp1:", 3)
    try:
        a, b, c = ds
        assert requests.get(a.url + "/jup/echo?p=1").headers["x-cache"] == "MISS"
        assert wait_for(lambda: redis_server.command("EXISTS", "dcp1:l2:GET /jup/echo?p=1") == ":1")
        for d in (b, c):  # L2 -> L1 on each
            assert requests.get(d.url + "/jup/echo?p=1").headers["x-cache"] == "HIT"
        assert origin.stats()["jup"]["total"] == 1
        time.sleep(0.01)  # purge times are wall-clock ms: stored strictly before

        r = requests.post(a.admin_url + "/purge", json={"prefix": "/jup/echo"}, headers=AUTH)
        assert r.json() == {"purged": 1, "fleet": True}
        assert wait_for(lambda: received(b) == 1 and received(c) == 1), (received(b), received(c))
        assert a.metric("dexcache_bus_messages_total", direction="published") == 1
        assert b.metric("dexcache_cache_purged_total") == 1 and c.metric("dexcache_cache_purged_total") == 1

        # b's L1 lost it and the L2 copy (stored before the purge) is refused: one new fetch
        r = requests.get(b.url + "/jup/echo?p=1")
        assert r.headers["x-cache"] == "MISS", r.headers["cache-status"]
        assert origin.stats()["jup"]["total"] == 2
        # the new copy, stored after the purge, is good for everyone
        assert wait_for(lambda: requests.get(c.url + "/jup/echo?p=1").headers["x-cache"] == "HIT")
        assert requests.get(a.url + "/jup/echo?p=1").headers["x-cache"] == "HIT"
        assert origin.stats()["jup"]["total"] == 2
    finally:
        for d in ds:
            d.stop()


def test_instance_started_after_a_purge_catches_up(fake, origin, redis_server):
    conf, (a,) = start(fake, redis_server, "dcp2:", 1)
    late = None
    try:
        assert requests.get(a.url + "/jup/echo?q=1").headers["x-cache"] == "MISS"
        assert wait_for(lambda: redis_server.command("EXISTS", "dcp2:l2:GET /jup/echo?q=1") == ":1")
        time.sleep(0.01)
        r = requests.post(a.admin_url + "/purge", json={"key": "GET /jup/echo?q=1"}, headers=AUTH)
        assert r.json() == {"purged": 1, "fleet": True}
        assert wait_for(lambda: a.metric("dexcache_bus_messages_total", direction="published") == 1)
        # the L2 value is still in Redis, but the purge is in the bus log
        assert redis_server.command("EXISTS", "dcp2:l2:GET /jup/echo?q=1") == ":1"
        assert redis_server.command("LLEN", "dcp2:bus:log") == ":1"

        late = Dexcache(conf).start()
        assert wait_for(lambda: received(late) == 1, timeout=10)  # replayed from the log
        r = requests.get(late.url + "/jup/echo?q=1")
        assert r.headers["x-cache"] == "MISS", r.headers["cache-status"]
        assert origin.stats()["jup"]["total"] == 2
    finally:
        a.stop()
        if late is not None:
            late.stop()


def test_purge_posted_while_redis_is_down_is_delivered_later(fake, origin, redis_server):
    _, ds = start(fake, redis_server, "dcp3:", 2)
    try:
        a, b = ds
        for d in ds:
            assert requests.get(d.url + "/jup/echo?w=1").status_code == 200
        assert origin.stats()["jup"]["total"] == 1  # b found it in L2
        time.sleep(0.01)
        redis_server.kill()
        assert wait_for(lambda: a.metric("dexcache_bus_up") == 0)
        r = requests.post(a.admin_url + "/purge", json={"tag": "jup"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["fleet"] is True
        assert requests.get(b.url + "/jup/echo?w=1").headers["x-cache"] == "HIT"  # not told yet
        redis_server.start()
        assert wait_for(lambda: received(b) == 1, timeout=10)
        assert requests.get(b.url + "/jup/echo?w=1").headers["x-cache"] == "MISS"
    finally:
        for d in ds:
            d.stop()
