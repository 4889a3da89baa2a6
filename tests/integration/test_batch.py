"""Price-id batching (batch: on a route): per-id cache entries, the misses of concurrent requests
fetched in as few upstream calls as the API allows, answers equal to what the upstream returns for
each client's own id list, and ids the upstream leaves out remembered as absent."""
import json
import random
import threading

import requests

from dexcache import Dexcache, PREAMBLE, wait_for

CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 30s, key_sets: [ids] }}
    batch: {{ path: /price/v3, param: ids, max: 50, window: %(window)s }}
"""

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def mints(n, seed=7):
    rnd = random.Random(seed)
    return ["".join(rnd.choice(ALPHABET) for _ in range(43)) + "x%d" % i for i in range(n)]


def start(fake, window="20ms"):
    return Dexcache(CONFIG % {"jup": fake.url("jup"), "window": window}).start()


def price_calls(origin):
    return [r for r in origin.requests(0) if r["path"] == "/price/v3"]


def test_200_clients_3_ids_of_120_batched(fake, origin):
    ids = mints(120)
    unpriced = ids[:5]
    origin.config({"unpriced": unpriced})
    d = start(fake, window="50ms")
    try:
        rnd = random.Random(1)
        asks = [rnd.sample(ids, 3) for _ in range(200)]
        out = [None] * 200
        gate = threading.Barrier(200)

        def one(i):
            gate.wait()
            out[i] = requests.get(d.url + "/jup/price/v3?ids=" + ",".join(asks[i]), timeout=30)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        calls = price_calls(origin)
        asked = {m for a in asks for m in a}
        # every id fetched once, in calls of at most 50 ids: at most ceil(120/50) per window, and
        # the 200 requests arrived within one or two windows
        fetched = [m for c in calls for m in json.loads(json.dumps(c["raw_query"])).split("ids=")[1].split("%2C")
                   for m in m.split(",")]
        assert sorted(fetched) == sorted(asked), (len(fetched), len(asked))
        # the requests trickle in over a few windows; each window's calls start together
        windows = []
        for c in sorted(calls, key=lambda c: c["t_ms"]):
            if windows and c["t_ms"] - windows[-1][0] < 15:
                windows[-1][1].append(c)
            else:
                windows.append((c["t_ms"], [c]))
        for _, cs in windows:
            n_ids = sum(len(c["raw_query"].split("ids=")[1].split(",")) for c in cs)
            assert len(cs) <= -(-n_ids // 50) <= 3, [(len(cs), n_ids) for _, cs in windows]
        assert len(calls) < 200 // 10
        assert all(len(c["raw_query"].split("ids=")[1].replace("%2C", ",").split(",")) <= 50 for c in calls)
        # each answer has the same content as the upstream's answer for that id list
        origin_answers = {}
        for i, r in enumerate(out):
            assert r.status_code == 200, r.text
            want = requests.get(fake.url("jup") + "/price/v3?ids=" + ",".join(asks[i])).json()
            assert r.json() == want
            assert list(r.json()) == [m for m in asks[i] if m not in unpriced]  # the client's order
            assert "detail=batch" in r.headers["cache-status"]
        before = len(price_calls(origin))
        # absent ids are remembered: asking again costs nothing
        r = requests.get(d.url + "/jup/price/v3?ids=" + ",".join(unpriced[:3]))
        assert r.json() == {} and r.headers["x-cache"] == "HIT"
        r = requests.get(d.url + "/jup/price/v3?ids=%s,%s" % (ids[60], unpriced[0]))
        assert r.headers["x-cache"] == "HIT" and list(r.json()) == [ids[60]]
        # a single-id request is the per-id entry itself
        r = requests.get(d.url + "/jup/price/v3?ids=" + ids[61])
        assert r.headers["x-cache"] == "HIT"
        assert r.content == requests.get(fake.url("jup") + "/price/v3?ids=" + ids[61]).content
        assert len(price_calls(origin)) == before + 1  # only our own comparison call above
        print("batching: %d upstream calls in %d windows for %d requests (%d distinct ids); unbatched: %d" %
              (len(calls), len(windows), 200, len(asked), 200))
    finally:
        origin.config({"unpriced": []})
        d.stop()


def test_upstream_error_for_a_batch(fake, origin):
    d = start(fake)
    try:
        origin.add_rule({"route": "/price/*", "status": 503})
        r = requests.get(d.url + "/jup/price/v3?ids=AAA,BBB")
        # the upstream's status, in dexcache's JSON error, never stored
        assert r.status_code == 503, r.status_code
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body == {"error": "upstream answered an error", "status": 503,
                        "request_id": r.headers["x-request-id"]}, body
        # one batch call for both ids, retried twice (retries: 2 by default): three upstream calls
        assert [c["raw_query"] for c in price_calls(origin)] == ["ids=AAA,BBB"] * 3
        origin.clear_rules()
        r = requests.get(d.url + "/jup/price/v3?ids=AAA,BBB")
        assert r.status_code == 200 and set(r.json()) == {"AAA", "BBB"}
        assert r.headers["cache-status"] == "dexcache; fwd=miss; stored; detail=batch"
        assert len(price_calls(origin)) == 4  # the error was not stored
    finally:
        d.stop()


def test_too_many_ids_are_not_batched(fake, origin):
    d = start(fake)
    try:
        r = requests.get(d.url + "/jup/price/v3?ids=" + ",".join(mints(51)))
        assert r.status_code == 400  # the upstream's own answer
        assert "detail=batch" not in r.headers.get("cache-status", "")
    finally:
        d.stop()


def test_per_id_entries_are_shared_through_l2(fake, origin, redis_server):
    conf = (CONFIG % {"jup": fake.url("jup"), "window": "5ms"}).replace(
        "upstreams:", 'redis: {{ url: "%s", prefix: "dcbatch:" }}\nupstreams:' % redis_server.url)
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        ids = mints(2, seed=3)
        r = requests.get(a.url + "/jup/price/v3?ids=" + ",".join(ids))
        assert r.status_code == 200 and list(r.json()) == ids
        key = "dcbatch:l2:GET /jup/price/v3?ids=" + ids[0]
        assert wait_for(lambda: redis_server.command("EXISTS", key) == ":1")
        r = requests.get(b.url + "/jup/price/v3?ids=" + ids[0])  # a single id: the normal cache path
        assert r.headers["x-cache"] == "HIT" and r.headers["cache-status"].endswith("detail=l2")
        assert r.json() == {ids[0]: requests.get(fake.url("jup") + "/price/v3?ids=" + ids[0]).json()[ids[0]]}
        assert len(price_calls(origin)) == 2  # the batch, and our comparison call
    finally:
        a.stop()
        b.stop()
