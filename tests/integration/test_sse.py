"""Live streams (streams: in the config): one upstream poll per channel per interval however many
subscribers, event ids in order for everyone, errors as events, Last-Event-ID resume, heartbeats,
and a stalled subscriber dropped without holding memory."""
import json
import time

import requests

from dexcache import Dexcache, PREAMBLE, wait_for
from sse_client import SSEClient
from test_transport import rss_kib

MINT = "So11111111111111111111111111111111111111112"
MINT2 = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"

CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: %(ttl)s, key_sets: [ids] }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: %(interval)s,
      on_change: %(on_change)s, heartbeat: %(heartbeat)s, max_subscriber_buffer: %(maxbuf)s }}
  - {{ path: /jup/stream/bytes, upstream: jupiter, upstream_path: /bytes, interval: 50ms, on_change: false,
      max_subscriber_buffer: 64KiB }}
"""


def start(fake, ttl="400ms", interval="500ms", on_change="false", heartbeat="15s", maxbuf="1MiB"):
    return Dexcache(CONFIG % {"jup": fake.url("jup"), "ttl": ttl, "interval": interval, "on_change": on_change,
                              "heartbeat": heartbeat, "maxbuf": maxbuf}).start()


def sub(d, path, **kw):
    return SSEClient("127.0.0.1", d.port, path, **kw)


def price_polls(origin):
    return sum(1 for r in origin.requests(0) if r["path"] == "/price/v3")


def test_one_poll_per_interval_for_many_subscribers(fake, origin):
    d = start(fake)
    clients = []
    try:
        # the same channel however the client spells the id set
        paths = ["/jup/stream/price?ids=%s,%s" % (MINT, MINT2), "/jup/stream/price?ids=%s%%2C%s" % (MINT2, MINT)]
        clients = [sub(d, paths[i % 2]) for i in range(60)]
        assert wait_for(lambda: all(c.status == 200 for c in clients), timeout=10)
        assert clients[0].headers["content-type"] == "text/event-stream"
        assert wait_for(lambda: d.metric("dexcache_sse_subscribers") == 60)
        assert d.metric("dexcache_sse_channels") == 1
        t0 = time.time()
        assert wait_for(lambda: all(len(c.updates()) >= 6 for c in clients), timeout=15)
        elapsed = time.time() - t0
        polls = price_polls(origin)
        assert polls <= elapsed / 0.5 + 3, (polls, elapsed)  # one upstream call per interval in total
        for c in clients:
            ids = [e["id"] for e in c.updates()]
            assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # in order, none missing
            body = json.loads(c.updates()[-1]["data"])
            assert MINT in body and MINT2 in body
        # plain GETs for the same key share the stream's polls
        before = price_polls(origin)
        hits = 0
        for _ in range(5):
            r = requests.get(d.url + "/jup/price/v3?ids=%s,%s" % (MINT, MINT2))
            assert r.status_code == 200
            hits += r.headers["x-cache"] == "HIT"
            time.sleep(0.1)
        assert hits >= 3 and price_polls(origin) - before <= 2
    finally:
        for c in clients:
            c.close()
        assert wait_for(lambda: d.metric("dexcache_sse_subscribers") == 0)
        assert wait_for(lambda: d.metric("dexcache_sse_channels") == 0, timeout=5)  # polling stops
        n = price_polls(origin)
        time.sleep(1.2)
        assert price_polls(origin) == n
        d.stop()


def test_upstream_errors_are_events_and_the_stream_stays(fake, origin):
    d = start(fake, ttl="100ms", interval="200ms")
    c = None
    try:
        c = sub(d, "/jup/stream/price?ids=" + MINT)
        assert c.wait(lambda c: len(c.updates()) >= 1)
        origin.add_rule({"route": "/price/*", "status": 500})
        assert c.wait(lambda c: len(c.of("error")) >= 1)
        err = json.loads(c.of("error")[0]["data"])
        assert err["status"] in (500, 502), err
        n_err = price_polls(origin)
        time.sleep(1.0)
        # backoff: 200, 400, 800 ms between polls after errors, not 5 polls a second
        assert price_polls(origin) - n_err <= 3
        origin.clear_rules()
        last = c.updates()[-1]["id"]
        assert c.wait(lambda c: c.updates()[-1]["id"] > last, timeout=10)
        assert not c.closed
    finally:
        if c:
            c.close()
        d.stop()


def test_last_event_id_resumes_from_the_ring(fake, origin):
    d = start(fake, ttl="50ms", interval="100ms")
    try:
        a = sub(d, "/jup/stream/price?ids=" + MINT)
        assert a.wait(lambda c: len(c.updates()) >= 5)
        ids = [e["id"] for e in a.updates()]
        resume_from = ids[-3]
        b = sub(d, "/jup/stream/price?ids=" + MINT, headers={"Last-Event-ID": str(resume_from)})
        assert b.wait(lambda c: len(c.updates()) >= 3)
        got = [e["id"] for e in b.updates()]
        assert got[:3] == [resume_from + 1, resume_from + 2, resume_from + 3], (resume_from, got)
        assert b.events[0]["event"] == "retry"
        # unknown/old ids: the latest state, then on
        c = sub(d, "/jup/stream/price?ids=" + MINT)
        assert c.wait(lambda c: len(c.updates()) >= 1)
        assert c.updates()[0]["id"] >= ids[-1]
        for x in (a, b, c):
            x.close()
    finally:
        d.stop()


def test_heartbeats_on_a_quiet_channel(fake, origin):
    d = start(fake, ttl="30s", interval="100ms", on_change="true", heartbeat="300ms")
    try:
        t0 = time.time()
        c = sub(d, "/jup/stream/price?ids=" + MINT)
        assert c.wait(lambda c: len(c.comments) >= 3, timeout=5)
        assert len(c.updates()) == 1  # the body did not change: no more updates
        # the interval, not the route's 30 s ttl, says how fresh the data must be: polled each interval
        polls, el = price_polls(origin), time.time() - t0
        assert 2 <= polls <= el / 0.1 + 2, (polls, el)
        c.close()
    finally:
        d.stop()


def test_stalled_subscriber_is_dropped_and_memory_stays_bounded(fake, origin):
    d = start(fake)
    try:
        good = sub(d, "/jup/stream/bytes?n=200000")
        stalled = sub(d, "/jup/stream/bytes?n=200000", read=False)
        assert good.wait(lambda c: len(c.updates()) >= 2)
        rss0 = rss_kib(d.proc.pid) / 1024
        assert wait_for(lambda: d.metric("dexcache_sse_drops_total") == 1, timeout=30)
        n = len(good.updates())
        assert good.wait(lambda c: len(c.updates()) >= n + 10)  # the others keep receiving
        assert rss_kib(d.proc.pid) / 1024 - rss0 < 64, rss0
        stalled.close()
        good.close()
    finally:
        d.stop()


def test_post_on_a_stream_is_405(fake, origin):
    d = start(fake)
    try:
        r = requests.post(d.url + "/jup/stream/price?ids=" + MINT, data=b"x")
        assert r.status_code == 405 and r.headers["allow"] == "GET"
        assert r.json()["status"] == 405
    finally:
        d.stop()


def test_http2_client_holds_many_streams_on_one_connection(fake, origin):
    import re
    import subprocess
    d = start(fake, ttl="100ms", interval="200ms")
    try:
        urls = ["http://127.0.0.1:%d/jup/stream/price?ids=%s&n=%d" % (d.port, MINT, i) for i in range(20)]
        p = subprocess.Popen(["nghttp", "-nv"] + urls, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert wait_for(lambda: d.metric("dexcache_sse_subscribers") == 20, timeout=10)
            assert d.metric("dexcache_connections_open") == 1  # all on one HTTP/2 connection
            time.sleep(1.0)
        finally:
            p.terminate()
        out = p.communicate(timeout=10)[0]
        streams = set(re.findall(r"recv DATA frame <length=\d+, flags=0x00, stream_id=(\d+)>", out))
        assert len(streams) == 20, streams
        assert wait_for(lambda: d.metric("dexcache_sse_subscribers") == 0)
    finally:
        d.stop()


def test_subscriptions_count_against_the_routes_client_limit(fake, origin):
    conf = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache: [ {{ path: /price/v3, ttl: 1s, key_sets: [ids] }} ]
    limit: {{ rate: 2/10s, burst: 2, by: client }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 200ms }}
""" % {"jup": fake.url("jup")}
    d = Dexcache(conf).start()
    subs = []
    try:
        subs = [sub(d, "/jup/stream/price?ids=" + MINT) for _ in range(2)]
        assert all(s.wait(lambda c: len(c.updates()) >= 1) for s in subs)
        assert subs[0].headers["ratelimit-policy"] == '"client";q=2;w=10'
        r = requests.get(d.url + "/jup/stream/price?ids=" + MINT, stream=True, timeout=5)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["status"] == 429
    finally:
        for s in subs:
            s.close()
        d.stop()
