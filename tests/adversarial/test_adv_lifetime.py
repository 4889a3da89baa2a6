"""Nothing that outlives a request points into its pool (issue 13 "Where we stand", issue 14).

The attack: a client resets its HTTP/2 stream while its request waits on another instance's fetch
(the cross-instance fleet wait). The wait went on using the request's key, which lived in the
request's pool: once h2o handed that memory to the next requests of the connection, the wait's
peeks, locks and L1 entry were keyed by other bytes. AddressSanitizer does not see it (h2o recycles
pool chunks), so the test looks at what reaches Redis: every key named there must be a real key."""
import re
import threading
import time

import requests

from dexcache import Dexcache, PREAMBLE, wait_for
from h2client import H2

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dclife:" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /echo, ttl: 30s }} ] }}
"""


def test_reset_during_fleet_wait_keeps_its_key(fake, origin, redis_server):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    path = "/jup/echo?life=1"
    mon = client = None
    out = {}
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        origin.gate("/echo")
        ta = threading.Thread(target=lambda: out.__setitem__("a", requests.get(a.url + path, timeout=30)))
        ta.start()
        origin.wait_held(1)  # a leads fleet-wide and holds the lock
        mon = redis_server.monitor()  # registered when it returns
        client = H2(b.port)
        sid = client.get(path)  # b follows a: its fleet wait polls the lock and L2
        assert wait_for(lambda: b.metric("dexcache_requests_in_flight") >= 1, timeout=5)
        time.sleep(0.4)
        client.reset(sid)  # the client is gone; b's wait goes on (its local waiters need it)
        # the same connection's next requests take the pool memory the reset request had
        filler = ["/nope/" + "Z" * (40 + i) for i in range(60)]
        sids = [client.get(p) for p in filler]
        client.wait_ended(sids)
        time.sleep(0.4)  # b's wait polls a few more times with whatever its key now is
        origin.release()
        ta.join(30)
        assert out["a"].status_code == 200 and out["a"].headers["x-cache"] == "MISS"
        time.sleep(0.5)
        # b's wait served the answer into its L1 under the right key: a HIT, no second fetch
        r = requests.get(b.url + path, timeout=10)
        assert r.status_code == 200 and r.headers["x-cache"] == "HIT", r.headers["cache-status"]
        assert origin.stats()["jup"]["total"] == 1
        seen = mon.drain()
        keys = set(re.findall(r'"(dclife:(?:l2|lk|fl)[^"]*)"', seen))
        assert "dclife:lk:GET " + path in keys, sorted(keys)[:10]
        bad = [k for k in keys if not k.endswith("GET " + path)]
        assert not bad, bad[:10]
    finally:
        origin.release()
        if client is not None:
            client.close()
        if mon is not None:
            mon.close()
        a.stop()
        b.stop()


LEASE_CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dclease:" }}
upstreams:
  jupiter: {{ url: "%(jup)s", timeout: 10s }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /echo, ttl: 30s }} ] }}
"""


def test_lock_of_a_dead_leader_holds_followers_back_for_a_lease_only(fake, origin, redis_server):
    """A fleet lock nobody will release (its leader died; or its unlock was lost, or a frozen Redis
    ran a lock command its sender had given up on) held other instances' followers back for the
    whole fetch deadline (connect_timeout + timeout + 2 s = 14 s here), longer than a client waits.
    Locks are short leases (3 s) renewed by the fill that holds them: a follower takes over within
    one lease."""
    conf = LEASE_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    path = "/jup/echo?lease=1"
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        origin.add_rule({"route": "/echo*", "timeout": True, "next": 1})  # a's fetch never answers
        def doomed():
            try:
                requests.get(a.url + path, timeout=30)
            except requests.RequestException:
                pass  # expected: its instance is killed

        ta = threading.Thread(target=doomed, daemon=True)
        ta.start()
        assert wait_for(lambda: redis_server.command("EXISTS", "dclease:lk:GET " + path) == ":1", timeout=10)
        a.proc.kill()  # the leader dies holding the lock
        a.proc.wait(5)
        t0 = time.time()
        r = requests.get(b.url + path, timeout=20)
        waited = time.time() - t0
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS", r.headers.get("cache-status")
        assert waited < 3.0 + 2.0, waited  # one lease (3 s) and a fetch, not the 14 s deadline
        assert origin.stats()["jup"]["total"] == 2
    finally:
        origin.clear_rules()
        a.stop()
        b.stop()


def test_a_long_fetch_keeps_its_lock(fake, origin, redis_server):
    """The lease is renewed while the leader's fetch runs: a fetch longer than the lease (5 s here)
    keeps the other instances following, and the origin is asked once."""
    conf = LEASE_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    path = "/jup/echo?lease=2"
    out = {}
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        origin.gate("/echo")
        ta = threading.Thread(target=lambda: out.__setitem__("a", requests.get(a.url + path, timeout=30)))
        ta.start()
        origin.wait_held(1)
        tb = threading.Thread(target=lambda: out.__setitem__("b", requests.get(b.url + path, timeout=30)))
        tb.start()
        time.sleep(5.0)  # longer than the 3 s lease: renewed meanwhile
        assert redis_server.command("EXISTS", "dclease:lk:GET " + path) == ":1"
        assert origin.held() == 1  # b still follows: it did not fetch
        origin.release()
        ta.join(30)
        tb.join(30)
        assert out["a"].headers["x-cache"] == "MISS" and out["b"].status_code == 200
        assert out["b"].headers["x-fake-seq"] == out["a"].headers["x-fake-seq"]
        assert origin.stats()["jup"]["total"] == 1
    finally:
        origin.release()
        a.stop()
        b.stop()
