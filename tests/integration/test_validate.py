"""Validation before caching and before sharing with collapsed waiters (issue 17): an error inside
a 200, an old payload timestamp, a body that is not JSON and a status listed in fail_statuses are
upstream failures: never stored, never handed to collapsed waiters as a success (they get the stale
copy or the same 502 naming the reason); batch routes' absent_ids; a stream's interval under a
longer route ttl."""
import json
import threading
import time
import urllib.parse

import requests

from dexcache import Dexcache, PREAMBLE, wait_for
from sse_client import SSEClient

CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0, breaker: {{ failures: 1000 }} }}
  jupretry: {{ url: "%(jup)s", retries: 1, retry_backoff: 10ms, breaker: {{ failures: 1000 }} }}
routes:
  - prefix: /retry
    upstream: jupretry
    cache:
      - {{ path: /tokens/v2, ttl: 30s, validate: json }}
  - prefix: /v
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 1s, stale_if_error: 30s, validate_rules: [{{ pointer: /error, absent: true }},
           {{ pointer: /data, nonempty_array: true }}], payload_time: /ts, max_payload_age: 30s }}
  - prefix: /nostale
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 30s, validate_rules: [{{ pointer: /error, absent: true }}], payload_time: /ts,
           max_payload_age: 30s }}
  - prefix: /json
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 30s, validate: json }}
  - prefix: /fs
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 30s, negative_ttl: 30s, fail_statuses: [400, 404] }}
  - prefix: /remember
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 30s, key_sets: [ids] }}
    batch: {{ path: /price/v3, param: ids, window: 5ms }}
  - prefix: /refetch
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 30s, key_sets: [ids] }}
    batch: {{ path: /price/v3, param: ids, window: 5ms, absent_ids: refetch }}
"""

MINT_A = "So11111111111111111111111111111111111111112"
MINT_B = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
UNPRICED_1 = "UnpricedMint1111111111111111111111111111111"
UNPRICED_2 = "UnpricedMint2222222222222222222222222222222"


def q(s):
    return urllib.parse.quote(s, safe="")


def start(fake):
    return Dexcache(CONFIG % {"jup": fake.url("jup")}).start()


def respond_calls(origin):
    return sum(1 for r in origin.requests(0) if r["path"] == "/respond")


def collapsed(d, origin, path, n=8):
    """n concurrent GETs of `path` held at the origin's gate: exactly one reaches it; returns the
    responses once it is released."""
    origin.gate("/respond")
    out = [None] * n

    def one(i):
        out[i] = requests.get(d.url + path, timeout=30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    base = d.metric("dexcache_requests_in_flight")
    try:
        for t in threads:
            t.start()
        origin.wait_held(1)
        assert wait_for(lambda: d.metric("dexcache_requests_in_flight") - base >= n, timeout=20)
        assert origin.held() == 1
    finally:
        origin.release()
    for t in threads:
        t.join(30)
    return out


def test_error_in_200_never_stored_nor_shared(fake, origin):
    d = start(fake)
    try:
        path = "/nostale/respond?body=" + q('{"error":"x","ts":$NOW}')
        out = collapsed(d, origin, path)
        assert respond_calls(origin) == 1
        for r in out:
            assert r.status_code == 502, (r.status_code, r.text)
            assert r.json()["error"] == "upstream answer failed validation: /error present"
            assert "x-fake-seq" not in r.headers  # nothing of the upstream's answer went out
        # nothing stored: the next request goes upstream again, and fails the same way
        r = requests.get(d.url + path)
        assert r.status_code == 502 and respond_calls(origin) == 2
        # the failure counted for the upstream's health
        assert d.health()["upstreams"]["jupiter"]["consecutive_failures"] >= 1
        # a good answer on the same route is stored
        good = "/nostale/respond?body=" + q('{"ts":$NOW,"data":[1]}')
        r = requests.get(d.url + good)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
        assert json.loads(r.text)["data"] == [1]
        r = requests.get(d.url + good)
        assert r.status_code == 200 and r.headers["x-cache"] == "HIT"
        assert respond_calls(origin) == 3
    finally:
        d.stop()


def test_old_payload_never_stored_nor_shared(fake, origin):
    d = start(fake)
    try:
        for body, reason in (('{"ts":1000}', "/ts older than max_payload_age"),
                             ('{"ts":"2020-01-01T00:00:00Z"}', "/ts older than max_payload_age"),
                             ('{"ts":"yesterday"}', "/ts not a timestamp"),
                             ('{"other":1}', "/ts not a timestamp")):
            origin.reset()
            path = "/nostale/respond?body=" + q(body)
            out = collapsed(d, origin, path, n=4)
            assert respond_calls(origin) == 1
            assert [r.status_code for r in out] == [502] * 4
            assert {r.json()["error"] for r in out} == {"upstream answer failed validation: " + reason}
            assert requests.get(d.url + path).status_code == 502
            assert respond_calls(origin) == 2
        # recent by its own clock: milliseconds, seconds as a string, RFC 3339
        now = time.time()
        for body in ('{"ts":$NOW_MS}', '{"ts":"$NOW"}',
                     '{"ts":"%s"}' % time.strftime("%Y-%m-%dT%H:%M:%S.123+00:00", time.gmtime(now))):
            path = "/nostale/respond?body=" + q(body)
            assert requests.get(d.url + path).status_code == 200
            assert requests.get(d.url + path).headers["x-cache"] == "HIT"
    finally:
        d.stop()


def test_stale_copy_served_to_leader_and_waiters(fake, origin):
    d = start(fake)
    try:
        for later in ('{"error":"x","ts":$NOW,"data":[1]}', '{"ts":1000,"data":[1]}', '{"ts":$NOW,"data":[]}'):
            origin.reset()
            v = origin.version()
            path = "/v/respond?body=%s&later=%s&later_from=%d" % (q('{"ts":$NOW,"data":[1]}'), q(later), v + 1)
            r = requests.get(d.url + path)
            assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
            good = r.content
            origin.version(v + 1)  # from now on the origin answers `later` for this URL
            time.sleep(1.1)  # ttl 1s: the copy is stale, inside stale_if_error
            out = collapsed(d, origin, path)
            assert respond_calls(origin) == 2
            for r in out:
                assert r.status_code == 200 and r.content == good, (r.status_code, r.text)
                assert r.headers["x-cache"] == "STALE"
            assert sum(1 for r in out if r.headers["cache-status"].endswith("; detail=invalid")) == 1  # the leader
            # never stored: after the refresh's backoff (0.5..1 s) the next request asks again
            time.sleep(1.1)
            r = requests.get(d.url + path)
            assert r.status_code == 200 and r.content == good and r.headers["x-cache"] == "STALE"
            assert respond_calls(origin) == 3
    finally:
        d.stop()


def test_validate_json_rejects_a_non_json_body(fake, origin):
    d = start(fake)
    try:
        path = "/json/respond?body=" + q("<html>maintenance</html>")
        out = collapsed(d, origin, path, n=4)
        assert [r.status_code for r in out] == [502] * 4
        assert out[0].json()["error"] == "upstream answer failed validation: not JSON"
        assert requests.get(d.url + path).status_code == 502
        assert respond_calls(origin) == 2
        ok = "/json/respond?body=" + q('{"a":1}')
        assert requests.get(d.url + ok).headers["x-cache"] == "MISS"
        assert requests.get(d.url + ok).headers["x-cache"] == "HIT"
    finally:
        d.stop()


def test_fail_statuses(fake, origin):
    d = start(fake)
    try:
        path = "/fs/respond?status=400"
        out = collapsed(d, origin, path, n=4)
        assert [r.status_code for r in out] == [502] * 4
        assert out[0].json()["error"] == "upstream status 400 counts as a failure for this route"
        assert requests.get(d.url + path).status_code == 502
        assert respond_calls(origin) == 2  # never stored, though negative_ttl would store a 400
        # a status not listed is as before: 410 stored under negative_ttl
        assert requests.get(d.url + "/fs/respond?status=410").status_code == 410
        r = requests.get(d.url + "/fs/respond?status=410")
        assert r.status_code == 410 and r.headers["x-cache"] == "HIT"
        assert respond_calls(origin) == 3
    finally:
        d.stop()


def price_calls(origin):
    return sum(1 for r in origin.requests(0) if r["path"] == "/price/v3")


def test_absent_ids_remember_and_refetch(fake, origin):
    origin.config({"unpriced": [UNPRICED_1, UNPRICED_2]})
    d = start(fake)
    try:
        for prefix, unpriced, remembered in (("/remember", UNPRICED_1, True), ("/refetch", UNPRICED_2, False)):
            origin.reset()
            origin.config({"unpriced": [UNPRICED_1, UNPRICED_2]})
            mint = MINT_A if remembered else MINT_B
            r = requests.get(d.url + "%s/price/v3?ids=%s,%s" % (prefix, mint, unpriced))
            assert r.status_code == 200 and list(r.json()) == [mint]
            assert price_calls(origin) == 1
            # the priced id is stored either way
            r = requests.get(d.url + "%s/price/v3?ids=%s" % (prefix, mint))
            assert r.headers["x-cache"] == "HIT" and price_calls(origin) == 1
            # the absent one: remembered, or asked again
            r = requests.get(d.url + "%s/price/v3?ids=%s" % (prefix, unpriced))
            assert r.status_code == 200 and r.json() == {}
            assert price_calls(origin) == (1 if remembered else 2)
            r = requests.get(d.url + "%s/price/v3?ids=%s" % (prefix, unpriced))
            assert price_calls(origin) == (1 if remembered else 3)
    finally:
        d.stop()


STREAM_CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 5s, key_sets: [ids] }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 500ms, on_change: true }}
"""


def test_stream_interval_under_longer_route_ttl(fake, origin):
    d = Dexcache(STREAM_CONFIG % {"jup": fake.url("jup")}).start()
    c = None
    stop = threading.Event()

    def bump():  # the price changes every 100 ms
        while not stop.is_set():
            origin.version(origin.version() + 1)
            stop.wait(0.1)
    bumper = threading.Thread(target=bump)
    try:
        c = SSEClient("127.0.0.1", d.port, "/jup/stream/price?ids=" + MINT_A)
        assert c.wait(lambda c: len(c.updates()) >= 1)
        bumper.start()
        n0, p0, t0 = len(c.updates()), price_calls(origin), time.time()
        time.sleep(3.0)  # 6 intervals, well inside the route's 5 s ttl
        n1, p1, el = len(c.updates()), price_calls(origin), time.time() - t0
        # about one poll (and, the price changing, one update) per interval: not one per 5 s ttl
        print("stream: %d updates, %d polls in %.2f s" % (n1 - n0, p1 - p0, el))
        assert n1 - n0 >= 4, (n1 - n0, el)
        assert p1 - p0 <= el / 0.5 + 2, (p1 - p0, el)
        # the refreshed entry serves plain GETs: the same data as the stream's last update
        stop.set()
        bumper.join(5)
        p_stop = price_calls(origin)
        assert wait_for(lambda: price_calls(origin) > p_stop, timeout=5)  # a poll of the final data
        assert wait_for(lambda: origin.stats()["jup"]["inflight_now"] == 0, timeout=5)
        r = requests.get(d.url + "/jup/price/v3?ids=" + MINT_A)
        assert r.status_code == 200 and r.headers["x-cache"] == "HIT"
        assert json.loads(r.text) == json.loads(c.updates()[-1]["data"])
    finally:
        stop.set()
        if bumper.is_alive():
            bumper.join(5)
        if c:
            c.close()
        d.stop()


def test_answer_failing_validation_is_retried_when_retries_allow(fake, origin):
    """One origin, retries: 1: an answer whose body fails validation is retried like a 5xx, and the
    good second answer is served and stored; the bad one was never seen."""
    origin.add_rule({"route": "/tokens/*", "html200": True, "next": 1})
    d = start(fake)
    try:
        r = requests.get(d.url + "/retry/tokens/v2/tag?query=verified", timeout=10)
        assert r.status_code == 200, r.text
        assert isinstance(r.json(), list) and r.headers["x-cache"] == "MISS"
        assert origin.stats()["jup"]["by_route"].get("/tokens/v2/tag", 0) == 2
        r = requests.get(d.url + "/retry/tokens/v2/tag?query=verified", timeout=10)
        assert r.headers["x-cache"] == "HIT"
    finally:
        d.stop()
