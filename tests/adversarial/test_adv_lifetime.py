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
