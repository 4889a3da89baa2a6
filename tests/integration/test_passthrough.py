"""Pass-through: status, headers and bodies reach the client unchanged; keys, hop-by-hop headers,
X-Forwarded-*, Via and request ids are handled; retries are bounded and counted at the origin."""
import hashlib
import json
import re
import socket
import subprocess
import time
import urllib.request

import pytest
import requests

from dexcache import Dexcache, free_port, wait_for

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: "{access_log}", level: info }}
upstreams:
  jupiter:
    url: "%(jup)s"
    keys: ["k1", "k2"]
    key_header: x-api-key
    connect_timeout: 1s
    timeout: 2s
    retries: 2
    retry_backoff: 20ms
    breaker: {{ failures: 1000 }}  # tests here fail this upstream back to back on purpose (see test_adv_outage)
  jupiter_badkey:
    url: "%(jup)s"
    keys: ["bad-key", "k3"]
    retries: 2
    retry_backoff: 10ms
  jupiter_client_key:
    url: "%(jup)s"
    keys: ["k1"]
  meteora:
    url: "%(meteora)s"
    timeout: 5s
  dead:
    url: "http://127.0.0.1:%(dead_port)d"
    connect_timeout: 1s
    retries: 2
    retry_backoff: 20ms
    breaker: {{ failures: 1000 }}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
  - {{ prefix: /jupbad, upstream: jupiter_badkey }}
  - {{ prefix: /jupown, upstream: jupiter_client_key, forward_client_key: true }}
  - {{ prefix: /meteora, upstream: meteora, max_body: 2KiB }}
  - {{ prefix: /dead, upstream: dead }}
"""


@pytest.fixture(scope="module")
def proxy(fake):
    cfg = CONFIG % {"jup": fake.url("jup"), "meteora": fake.url("meteora"), "dead_port": free_port()}
    d = Dexcache(cfg)
    d.start()
    yield d
    d.stop()


def last_requests(origin, n=None):
    reqs = origin.requests(0)
    return reqs if n is None else reqs[-n:]


def strip_seq(body):
    obj = json.loads(body)
    if isinstance(obj, dict):
        obj.pop("_fakeSeq", None)
    return obj


def test_get_json_identical_to_origin(proxy, origin):
    path = "/swap/v1/quote?inputMint=So11111111111111111111111111111111111111112&outputMint=EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v&amount=100000000"
    direct = requests.get(origin.url("jup") + path, headers={"x-api-key": "k1"})
    via = requests.get(proxy.url + "/jup" + path)
    assert via.status_code == 200 == direct.status_code
    assert strip_seq(via.content) == strip_seq(direct.content)
    assert via.headers["content-type"] == direct.headers["content-type"]
    assert via.headers["x-fake-key"] == direct.headers["x-fake-key"]
    assert via.headers["x-cache"] == "BYPASS"
    assert via.headers["cache-status"] == "dexcache; fwd=bypass"
    assert re.fullmatch(r"upstream;dur=\d+\.\d", via.headers["server-timing"])
    assert via.headers["via"] == "1.1 dexcache"
    assert origin.stats()["jup"]["total"] == 2


def test_binary_body_byte_identical(proxy, origin):
    n = 3 * 1024 * 1024 + 17
    direct = requests.get(origin.url("jup") + "/bytes?n=%d" % n).content
    via = requests.get(proxy.url + "/jup/bytes?n=%d" % n)
    assert via.status_code == 200
    assert int(via.headers["content-length"]) == n
    assert hashlib.sha256(via.content).hexdigest() == hashlib.sha256(direct).hexdigest()


def test_upstream_error_status_passes_through(proxy, origin):
    r = requests.get(proxy.url + "/jup/swap/v1/quote?inputMint=x")  # missing params -> 400 at the origin
    assert r.status_code == 400
    assert "error" in r.json()
    r = requests.get(proxy.url + "/meteora/pair/NoSuchPair")
    assert r.status_code == 404
    assert origin.stats()["jup"]["total"] == 1  # a 400 is not retried
    assert origin.stats()["meteora"]["total"] == 1


def test_post_body_forwarded_once(proxy, origin):
    body = b'{"quoteResponse":{"x":1},"userPublicKey":"abc"}' * 10
    r = requests.post(proxy.url + "/jup/echo?q=1", data=body, headers={"content-type": "application/json"})
    assert r.status_code == 200
    e = r.json()
    assert e["method"] == "POST"
    assert e["body_len"] == len(body)
    assert e["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert e["query"] in ("q=1", "?q=1")
    assert e["headers"]["content-type"] == "application/json"
    assert origin.stats()["jup"]["total"] == 1


def test_swap_post_unique_each_call(proxy, origin):
    ids = set()
    for _ in range(3):
        r = requests.post(proxy.url + "/jup/swap/v1/swap", json={"quoteResponse": {}, "userPublicKey": "u"})
        assert r.status_code == 200
        ids.add(r.content)
    assert len(ids) == 3
    assert origin.stats()["jup"]["total"] == 3


def test_key_injected_rotated_and_client_key_not_leaked(proxy, origin):
    for _ in range(4):
        r = requests.get(proxy.url + "/jup/echo", headers={"x-api-key": "client-secret"})
        assert r.status_code == 200
        h = r.json()["headers"]
        assert h["x-api-key"] in ("k1", "k2")
        assert "client-secret" not in json.dumps(h)
    keys = [q["api_key"] for q in last_requests(origin)]
    assert sorted(keys) == ["k1", "k1", "k2", "k2"]


def test_forward_client_key_replaces_ours(proxy, origin):
    r = requests.get(proxy.url + "/jupown/echo", headers={"x-api-key": "k2"})
    assert r.json()["headers"]["x-api-key"] == "k2"
    r = requests.get(proxy.url + "/jupown/echo")
    assert r.json()["headers"]["x-api-key"] == "k1"
    assert [q["api_key"] for q in last_requests(origin)] == ["k2", "k1"]


def test_forwarding_headers_and_hop_by_hop(proxy, origin):
    r = requests.get(proxy.url + "/jup/echo", headers={
        "Connection": "keep-alive, X-Secret",
        "X-Secret": "hop",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Forwarded-For": "203.0.113.9",
        "Via": "1.1 cdn",
        "X-Custom": "kept",
    })
    h = r.json()["headers"]
    for gone in ("x-secret", "keep-alive", "te", "proxy-authorization", "connection"):
        assert gone not in h, gone
    assert h["x-custom"] == "kept"
    # the peer is not a trusted proxy: its X-Forwarded-For is not believed (test_adv_origin.py has
    # the trusted case)
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["via"] == "1.1 cdn, 1.1 dexcache"
    assert h["host"] == origin.url("jup").split("//")[1]


def test_request_id_generated_or_kept(proxy, origin):
    r = requests.get(proxy.url + "/jup/echo")
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{20}", rid)
    assert r.json()["headers"]["x-request-id"] == rid
    r = requests.get(proxy.url + "/jup/echo", headers={"X-Request-Id": "my-trace.42"})
    assert r.headers["x-request-id"] == "my-trace.42"
    assert r.json()["headers"]["x-request-id"] == "my-trace.42"
    r = requests.get(proxy.url + "/jup/echo", headers={"X-Request-Id": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{20}", r.headers["x-request-id"])
    # the access log line is written when h2o disposes of the request, just after the response
    assert wait_for(lambda: any("rid=my-trace.42" in l for l in proxy.access_lines()), timeout=5)


def test_access_log_line(proxy, origin):
    requests.get(proxy.url + "/jup/echo?a=1", headers={"X-Request-Id": "log-check-1"})
    assert wait_for(lambda: any("rid=log-check-1" in l for l in proxy.access_lines()), timeout=5)
    line = [l for l in proxy.access_lines() if "rid=log-check-1" in l][-1]
    assert re.search(r'^time=\S+Z client=127\.0\.0\.1 method=GET path="/jup/echo\?a=1" status=200 bytes=\d+ '
                     r'dur_ms=\d+\.\d+ up_ms=\d+\.\d+ attempts=1 cache=BYPASS rid=log-check-1$', line), line


def test_unknown_route_404_json(proxy, origin):
    r = requests.get(proxy.url + "/nowhere/x", headers={"X-Request-Id": "r404"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "no route for this path", "status": 404, "request_id": "r404"}
    r = requests.get(proxy.url + "/jupiter/x")  # "/jup" must not match "/jupiter"
    assert r.status_code == 404
    assert origin.stats()["jup"]["total"] == 0


def test_retries_bounded_and_counted(proxy, origin):
    origin.add_rule({"route": "/price/v3*", "status": 503, "next": 2})
    r = requests.get(proxy.url + "/jup/price/v3?ids=So11111111111111111111111111111111111111112")
    assert r.status_code == 200
    assert origin.stats()["jup"]["total"] == 3
    origin.reset()
    origin.add_rule({"route": "/price/v3*", "status": 503, "every": 1})
    r = requests.get(proxy.url + "/jup/price/v3?ids=So11111111111111111111111111111111111111112")
    assert r.status_code == 503  # retries exhausted: the origin's answer is passed through
    assert origin.stats()["jup"]["total"] == 3  # 1 + retries (2), never more


def test_post_never_retried(proxy, origin):
    origin.add_rule({"route": "/echo*", "status": 502, "every": 1})
    r = requests.post(proxy.url + "/jup/echo", data=b"x")
    assert r.status_code == 502
    assert origin.stats()["jup"]["total"] == 1


def test_reset_before_headers_retried(proxy, origin):
    origin.add_rule({"route": "/echo*", "reset_before_headers": True, "next": 1})
    r = requests.get(proxy.url + "/jup/echo")
    assert r.status_code == 200
    assert origin.stats()["jup"]["total"] == 2


def test_bad_key_quarantined_and_retried(proxy, origin):
    statuses = [requests.get(proxy.url + "/jupbad/echo").status_code for _ in range(6)]
    assert statuses == [200] * 6
    keys = [q["api_key"] for q in last_requests(origin)]
    assert keys.count("bad-key") == 1  # answered 401 once, then set aside
    assert keys.count("k3") == 6
    assert proxy.metric("dexcache_upstream_key_quarantines_total") >= 1


def test_connection_refused_502_fast(proxy, origin):
    t = time.time()
    r = requests.get(proxy.url + "/dead/x", headers={"X-Request-Id": "r502"})
    assert time.time() - t < 2.0
    assert r.status_code == 502
    body = r.json()
    assert re.fullmatch(r"Failed to connect to 127\.0\.0\.1 port \d+ after \d+ ms: .+", body.pop("cause")), body
    assert body == {"error": "upstream connection refused", "status": 502, "upstream": "dead", "request_id": "r502"}
    assert r.headers["retry-after"] == "2"  # issue 18: connect failures say when to come back


def test_timeout_504_within_deadline(proxy, origin):
    origin.add_rule({"route": "/echo*", "timeout": True, "every": 1})
    t = time.time()
    r = requests.get(proxy.url + "/jup/echo", timeout=10)
    elapsed = time.time() - t
    assert r.status_code == 504
    assert r.json()["error"] == "upstream timed out"
    assert 1.8 <= elapsed < 3.5  # upstream timeout is 2s; no retry after a timeout
    assert origin.stats()["jup"]["total"] == 1


def test_http2_prior_knowledge(proxy, origin):
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                          proxy.url + "/jup/echo"], capture_output=True, text=True, timeout=10).stdout
    assert out == "2 200"


def test_head_request(proxy, origin):
    r = requests.head(proxy.url + "/jup/bytes?n=1000")
    assert r.status_code == 200
    assert r.headers["content-length"] == "1000"
    assert r.content == b""
    # the connection stays usable after a HEAD
    s = requests.Session()
    assert s.head(proxy.url + "/jup/bytes?n=10").status_code == 200
    assert s.get(proxy.url + "/jup/bytes?n=10").content.__len__() == 10


def test_concurrent_requests_reach_origin_in_parallel(proxy, origin):
    """Pass-through never serialises: 50 concurrent GETs are 50 concurrent upstream requests."""
    import threading
    origin.gate("/echo")
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        requests.get(proxy.url + "/jup/echo?i=%d" % i, timeout=15).status_code)) for i in range(50)]
    for t in threads:
        t.start()
    try:
        assert origin.wait_held(50, timeout=10) == 50
    finally:
        origin.release()
    for t in threads:
        t.join(15)
    assert results == [200] * 50
    assert origin.stats()["jup"]["max_inflight"] == 50


def test_post_on_a_reused_connection_is_sent_once_when_the_origin_resets(proxy, origin):
    """A POST (a swap) after a GET has left a keep-alive connection to the origin: the origin reads
    it and resets before answering. libcurl resends a request by itself when a reused connection
    dies before any answer byte: the origin saw the swap twice and the client got a 200. A request
    that is not idempotent now goes on a fresh connection: sent once, the client gets the 502."""
    for i in range(3):  # the GET leaves a connection in the pool of whichever worker runs it
        with requests.Session() as s:
            assert s.get(proxy.url + "/jup/echo?warm=%d" % i, timeout=10).status_code == 200
            origin.add_rule({"route": "/echo*", "method": "POST", "reset_before_headers": True, "next": 1})
            r = s.post(proxy.url + "/jup/echo", data=b'{"swap":%d}' % i, timeout=10)
            posts = [q for q in origin.requests(0) if q["method"] == "POST" and q["body_len"] == len(b'{"swap":0}')]
            assert r.status_code == 502, (i, r.status_code, r.text)
            assert len(posts) == i + 1, (i, posts)
