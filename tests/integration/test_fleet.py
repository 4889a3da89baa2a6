"""Fleet mode through a real redis-server with three real dexcache instances: per-client limits
shared exactly across instances, and Redis failures (killed, paused, scripts flushed) never
turning into client errors: limits fall back to each instance's share, and come back."""
import threading
import time

import requests

from dexcache import Dexcache, PREAMBLE, wait_for

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dctest:" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    limit: {{ rate: %(rate)s, burst: %(burst)d, by: "header:x-api-key" }}
"""


def fleet(fake, redis_server, n=3, rate="6/10s", burst=6):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url, "rate": rate, "burst": burst}
    ds = [Dexcache(conf).start() for _ in range(n)]
    assert wait_for(lambda: all(d.health()["redis"] == "up" and d.health()["instances"] == n for d in ds),
                    timeout=10), [d.health() for d in ds]
    return ds


def stop_all(ds):
    for d in ds:
        d.stop()


def test_limit_shared_exactly_across_instances(fake, origin, redis_server):
    ds = fleet(fake, redis_server)
    try:
        codes = []
        for i in range(12):  # round-robin over the 3 instances, one client key
            r = requests.get(ds[i % 3].url + "/jup/echo", headers={"x-api-key": "client-A"})
            codes.append(r.status_code)
        assert codes == [200] * 6 + [429] * 6
        assert origin.stats()["jup"]["total"] == 6
        # another client has its own bucket, on every instance
        assert requests.get(ds[1].url + "/jup/echo", headers={"x-api-key": "client-B"}).status_code == 200
        assert ds[0].metric("dexcache_limit_fallbacks_total") == 0
    finally:
        stop_all(ds)


def test_redis_killed_and_back_no_client_errors(fake, origin, redis_server):
    ds = fleet(fake, redis_server, rate="1000/1s", burst=1000)
    stop = threading.Event()
    bad = []
    ok = [0]

    def load(d):
        s = requests.Session()
        while not stop.is_set():
            try:
                r = s.get(d.url + "/jup/echo", headers={"x-api-key": "load"}, timeout=5)
                if r.status_code >= 500:
                    bad.append(r.status_code)
                else:
                    ok[0] += 1
            except requests.RequestException as e:
                bad.append(repr(e))

    threads = [threading.Thread(target=load, args=(d,)) for d in ds]
    try:
        for t in threads:
            t.start()
        assert wait_for(lambda: ok[0] >= 30, timeout=10)  # the load runs through Redis
        redis_server.kill()
        assert wait_for(lambda: ds[0].health()["redis"] == "down", timeout=5)
        assert ds[0].health()["status"] == "degraded"
        # serving on local shares meanwhile
        assert wait_for(lambda: sum(d.metric("dexcache_limit_fallbacks_total") for d in ds) > 0, timeout=10)
        before_down = ok[0]
        assert wait_for(lambda: ok[0] >= before_down + 30, timeout=10)
        redis_server.start()
        t_back = time.time()
        assert wait_for(lambda: all(d.health()["redis"] == "up" for d in ds), timeout=5)
        assert time.time() - t_back < 2.0  # reconnected within 2 s (backoff capped at 1 s)
        back = ok[0]
        assert wait_for(lambda: ok[0] >= back + 30, timeout=10)  # and the load goes on through Redis
        stop.set()
        for t in threads:
            t.join(10)
        assert bad == []
        assert ds[0].health()["status"] == "ok"
    finally:
        stop.set()
        stop_all(ds)


def test_local_fallback_uses_instance_share(fake, origin, redis_server):
    ds = fleet(fake, redis_server, rate="6/10s", burst=6)
    try:
        redis_server.kill()
        assert wait_for(lambda: all(d.health()["redis"] == "down" for d in ds), timeout=5)
        # 3 instances were seen: each allows 6 / 3 = 2 on its own
        codes = [requests.get(ds[0].url + "/jup/echo", headers={"x-api-key": "c"}).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]
    finally:
        stop_all(ds)


def test_redis_paused_then_resumed(fake, origin, redis_server):
    ds = fleet(fake, redis_server, n=1, rate="1000/1s", burst=1000)
    try:
        redis_server.pause()
        t = time.time()
        codes = [requests.get(ds[0].url + "/jup/echo", headers={"x-api-key": "p"}, timeout=5).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 200]  # each waited at most the command timeout, then fell back
        assert time.time() - t < 3.0
        redis_server.resume()
        assert wait_for(lambda: ds[0].health()["redis"] == "up", timeout=5)
        before = ds[0].metric("dexcache_limit_fallbacks_total")
        assert requests.get(ds[0].url + "/jup/echo", headers={"x-api-key": "p"}).status_code == 200
        assert ds[0].metric("dexcache_limit_fallbacks_total") == before
    finally:
        redis_server.resume()
        stop_all(ds)


def test_script_flush_is_transparent(fake, origin, redis_server):
    ds = fleet(fake, redis_server, n=1, rate="3/10s", burst=3)
    try:
        assert requests.get(ds[0].url + "/jup/echo", headers={"x-api-key": "f"}).status_code == 200
        assert redis_server.command("SCRIPT", "FLUSH") == "+OK"
        codes = [requests.get(ds[0].url + "/jup/echo", headers={"x-api-key": "f"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # the bucket survived, the script was reloaded
        assert ds[0].metric("dexcache_limit_fallbacks_total") == 0
    finally:
        stop_all(ds)


BUDGET_CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dcbud:" }}
upstreams:
  jupiter:
    url: "%(jup)s"
    rate: [10/1s, 300/60s]
    queue: {{ max: 100, timeout: 10s }}
    retries: 0
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""


def budget_fleet(fake, redis_server, n=3):
    conf = BUDGET_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    ds = [Dexcache(conf).start() for _ in range(n)]
    assert wait_for(lambda: all(d.health()["redis"] == "up" for d in ds), timeout=10)
    return ds


def test_upstream_budget_shared_by_the_fleet(fake, origin, redis_server):
    ds = budget_fleet(fake, redis_server)
    try:
        out = []

        def one(i):
            r = requests.post(ds[i % 3].url + "/jup/echo", data=b"x", timeout=30)
            out.append(r.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert out == [200] * 30  # queued, then served
        times = sorted(r["t_ms"] for r in origin.requests(0))
        assert len(times) == 30
        worst = max(sum(1 for u in times[i:] if u < t + 1000) for i, t in enumerate(times))
        assert worst <= 10, worst  # the budget holds across 3 instances, as the origin counts
        assert sum(d.metric("dexcache_limit_fallbacks_total") for d in ds) == 0
    finally:
        stop_all(ds)


def test_upstream_429_pauses_every_instance(fake, origin, redis_server):
    ds = budget_fleet(fake, redis_server)
    try:
        origin.add_rule({"route": "/echo*", "burst429": True, "retry_after": 1, "next": 1})
        assert requests.get(ds[0].url + "/jup/echo?a=1").status_code == 429
        t = time.time()
        assert requests.get(ds[1].url + "/jup/echo?a=2").status_code == 200
        assert requests.get(ds[2].url + "/jup/echo?a=3").status_code == 200
        assert time.time() - t > 0.85  # the other instances waited for the shared cooldown
        assert origin.stats()["jup"]["total"] == 3
    finally:
        stop_all(ds)


L2_CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dcl2:" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /, ttl: 30s }} ] }}
"""


def test_l2_shares_entries_between_instances(fake, origin, redis_server):
    conf = L2_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        r1 = requests.get(a.url + "/jup/echo?l2=1")
        assert r1.headers["x-cache"] == "MISS"
        assert wait_for(lambda: redis_server.command("EXISTS", "dcl2:l2:GET /jup/echo?l2=1") == ":1")
        r2 = requests.get(b.url + "/jup/echo?l2=1")
        assert r2.headers["x-cache"] == "HIT"
        assert r2.headers["cache-status"].endswith("; detail=l2")
        assert r2.content == r1.content
        assert requests.get(b.url + "/jup/echo?l2=1").headers["cache-status"] == "dexcache; hit; ttl=30"
        assert origin.stats()["jup"]["total"] == 1
        assert b.metric("dexcache_l2_hits_total") == 1
    finally:
        a.stop()
        b.stop()


def test_answer_stored_between_l2_miss_and_lock_is_not_fetched_again(fake, origin, redis_server):
    """The race that made a second instance fetch a key again: its L2 read misses, then the leader
    stores the answer and unlocks, then it takes the lock. CLIENT PAUSE WRITE lets its L2 read
    through and holds its lock attempt behind a write of ours that puts the answer back into L2: the
    lock round trip sees the answer and serves it, without a second origin request."""
    conf = L2_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        raced = 0
        for attempt in range(10):
            path = "/jup/echo?race=%d" % attempt
            key = "dcl2:l2:GET " + path
            assert requests.get(a.url + path).headers["x-cache"] == "MISS"
            assert wait_for(lambda: redis_server.command("EXISTS", key) == ":1")
            assert redis_server.command("RENAME", key, "dcl2:held") == "+OK"  # b's L2 read would miss
            # short: b's commands wait behind the pause (500 ms without a reply is a Redis failure)
            t0 = time.time()
            assert redis_server.command("CLIENT", "PAUSE", "250", "WRITE") == "+OK"
            back = threading.Thread(target=lambda: redis_server.command("RENAME", "dcl2:held", key))
            back.start()  # queued first, behind the pause
            time.sleep(0.03)
            asked_in_time = time.time() - t0 < 0.15
            r = requests.get(b.url + path, timeout=10)
            back.join(5)
            assert r.status_code == 200 and r.headers["x-cache"] == "HIT", (r.headers["cache-status"],
                                                                            b.stderr()[-3000:])
            assert origin.stats()["jup"]["total"] == attempt + 1  # never a second fetch
            # "detail=l2": b's read came after our write, so nothing raced (a heartbeat write of b's
            # was held by the pause, and its read queued behind it; or the machine was slow): again
            if asked_in_time and r.headers["cache-status"] == "dexcache; hit; collapsed; detail=fleet":
                raced += 1
                assert wait_for(lambda: redis_server.command("EXISTS", "dcl2:lk:GET " + path) == ":0")  # given back
                if raced == 2:
                    break
            # the pause is over once a write goes through again
            assert wait_for(lambda: redis_server.command("SET", "dcl2:probe", "1") == "+OK", timeout=5)
        assert raced == 2, "the race was set up %d times in 10 tries" % raced
    finally:
        a.stop()
        b.stop()


def test_concurrent_cold_requests_read_l2_once(fake, origin, redis_server):
    """40 requests for a key that is in L2 but not in this instance's L1, all arriving while Redis
    holds every command (CLIENT PAUSE ALL): one GET reaches Redis, the others wait for it."""
    conf = L2_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    path = "/jup/echo?herd=1"
    mon = None
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        assert requests.get(a.url + path).headers["x-cache"] == "MISS"
        assert wait_for(lambda: redis_server.command("EXISTS", "dcl2:l2:GET " + path) == ":1")
        mon = redis_server.monitor()  # registered when it returns
        n = 40
        barrier = threading.Barrier(n + 1)
        out = []

        def one():
            barrier.wait(5)
            out.append(requests.get(b.url + path, timeout=10))

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        assert redis_server.command("CLIENT", "PAUSE", "400", "ALL") == "+OK"
        barrier.wait(5)
        for t in threads:
            t.join(10)
        assert len(out) == n and all(r.status_code == 200 and r.headers["x-cache"] == "HIT" for r in out)
        assert origin.stats()["jup"]["total"] == 1
        gets = [line for line in mon.drain().split("\r\n")
                if '"GET" "dcl2:l2:GET %s"' % path in line and "lua]" not in line]
        assert len(gets) == 1, gets
    finally:
        if mon is not None:
            mon.close()
        a.stop()
        b.stop()


def test_corrupt_l2_entry_is_a_miss(fake, origin, redis_server):
    conf = L2_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    d = Dexcache(conf).start()
    try:
        assert wait_for(lambda: d.health()["redis"] == "up")
        for i, junk in enumerate(["garbage", "DCL2\x01" + "x" * 40, "DCL2\x09" + "y" * 80]):
            assert redis_server.command("SET", "dcl2:l2:GET /jup/echo?c=%d" % i, junk) == "+OK"
            r = requests.get(d.url + "/jup/echo?c=%d" % i)
            assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
            assert r.json()["query"] in ("c=%d" % i, "?c=%d" % i)
        assert origin.stats()["jup"]["total"] == 3
        assert "l2: unusable entry" in d.stderr()
        # the good answer replaced the junk: another instance would hit now
        assert wait_for(lambda: redis_server.command("GETRANGE", "dcl2:l2:GET /jup/echo?c=0", "0", "3") == "$4")
    finally:
        d.stop()


def test_300_cold_requests_over_3_instances_one_upstream_request(fake, origin, redis_server):
    conf = L2_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    ds = [Dexcache(conf).start() for _ in range(3)]
    try:
        assert wait_for(lambda: all(d.health()["redis"] == "up" for d in ds))
        origin.gate("/price/v3")
        out = []
        lock = threading.Lock()

        def one(i):
            r = requests.get(ds[i % 3].url + "/jup/price/v3?ids=So11111111111111111111111111111111111111112",
                             timeout=30)
            with lock:
                out.append((r.status_code, r.content, r.headers["cache-status"]))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(300)]
        for t in threads:
            t.start()
        try:
            assert wait_for(lambda: sum(d.metric("dexcache_requests_in_flight") for d in ds) == 300, timeout=30)
            assert origin.held() == 1
        finally:
            origin.release()
        for t in threads:
            t.join(30)
        assert len(out) == 300 and all(o[0] == 200 for o in out)
        assert len({o[1] for o in out}) == 1
        assert origin.stats()["jup"]["total"] == 1
        fleet_followers = sum(1 for o in out if o[2] == "dexcache; hit; collapsed; detail=fleet")
        assert fleet_followers == 2  # one local leader on each other instance
    finally:
        for d in ds:
            d.stop()


def test_fleet_leader_dies_another_takes_over(fake, origin, redis_server):
    conf = L2_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        origin.gate("/echo")
        def doomed():
            try:
                requests.get(a.url + "/jup/echo?die=1", timeout=30)
            except requests.RequestException:
                pass  # expected: its instance is killed

        ta = threading.Thread(target=doomed, daemon=True)
        ta.start()
        assert wait_for(lambda: origin.held() == 1)
        out = []
        tb = threading.Thread(target=lambda: out.append(requests.get(b.url + "/jup/echo?die=1", timeout=30)))
        tb.start()
        assert wait_for(lambda: b.metric("dexcache_requests_in_flight") == 1)  # b follows a's lock
        a.proc.kill()  # the leader dies holding the lock; its lock expires
        a.proc.wait(5)
        origin.release()
        tb.join(30)
        assert out[0].status_code == 200
        assert origin.stats()["jup"]["total"] == 2  # a's (lost) and b's own after the lock expired
    finally:
        origin.release()
        a.stop()
        b.stop()


def test_fleet_followers_are_woken_by_the_leaders_notice(fake, origin, redis_server):
    """Followers on another instance do not wait for their next poll (up to 250 ms apart once the
    leader has been slow): the leader's unlock publishes a notice and they look at once."""
    conf = L2_CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        lags = []
        for k in range(3):
            origin.gate("/echo")
            done = {}

            def get(name, d):
                requests.get(d.url + "/jup/echo?notice=%d" % k, timeout=30)
                done[name] = time.monotonic()

            ta = threading.Thread(target=get, args=("a", a))
            ta.start()
            assert wait_for(lambda: origin.held() == 1)
            tb = threading.Thread(target=get, args=("b", b))
            tb.start()
            time.sleep(1.0)  # b follows; its polls are 250 ms apart by now
            origin.release()
            ta.join(30)
            tb.join(30)
            lags.append(done["b"] - done["a"])
        assert origin.stats()["jup"]["total"] == 3
        assert max(lags) < 0.1, lags
    finally:
        origin.release()
        a.stop()
        b.stop()
