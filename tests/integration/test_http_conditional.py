"""Validators and conditional requests (RFC 9110 §8.8, §13, §15.4.5; RFC 9111 §3.2, §4.3): the
origin's ETag and Last-Modified pass through on every answer, preconditions answered 304 / 412 from
the cache, revalidation with the origin, conditionals on pass-through and on a miss."""
import gzip
import http.client
import threading
import urllib.parse

import pytest
import requests

from dexcache import Dexcache, wait_for

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
log: {{ access: "{access_log}" }}
cache: {{ memory: 64MiB, max_object: 16MiB }}
upstreams:
  jupiter: {{ url: "%(jup)s", timeout: 5s, retries: 0, breaker: {{ failures: 1000 }} }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 1s, stale_if_error: 30s, respect_origin: true, negative_ttl: 30s }}
  - prefix: /pass
    upstream: jupiter
"""

LM = "Wed, 21 Oct 2015 07:28:00 GMT"
BEFORE = "Wed, 21 Oct 2015 07:27:59 GMT"


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % {"jup": fake.url("jup")})
    d.start()
    yield d
    d.stop()


@pytest.fixture
def clean(proxy, origin):
    r = requests.post(proxy.admin_url + "/purge", json={"prefix": "/"}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    origin.config({"latency": {"fixed": 0}, "gzip": False})
    origin.reset()
    return origin


def respond(tag, *headers, **params):
    """A /respond path: its own key (tag), the given response headers and knobs."""
    q = [("t", tag)] + [("h", h) for h in headers] + list(params.items())
    return "/respond?" + urllib.parse.urlencode(q)


def get(proxy, path, **headers):
    return requests.get(proxy.url + path, headers={k.replace("_", "-"): v for k, v in headers.items()}, timeout=15)


def raw(proxy, path, headers):
    """One request with exactly these headers (no Accept-Encoding added): (status, headers, body)."""
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=15)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def total(origin):
    return origin.stats()["jup"]["total"]


def test_origin_validators_pass_through_on_every_answer(proxy, clean):
    """Leader, hit, collapsed waiters and the stale answer carry the origin's ETag and Last-Modified
    as sent (before: the leader had none, hits had a digest dexcache made up)."""
    path = "/jup" + respond("pt", 'ETag:"v1"', "Last-Modified:" + LM, "Cache-Control:max-age=1")
    r1 = get(proxy, path)
    assert r1.headers["x-cache"] == "MISS"
    assert r1.headers["etag"] == '"v1"' and r1.headers["last-modified"] == LM
    r2 = get(proxy, path)
    assert r2.headers["x-cache"] == "HIT"
    assert r2.headers["etag"] == '"v1"' and r2.headers["last-modified"] == LM
    # collapsed waiters
    path2 = "/jup" + respond("pt2", 'ETag:W/"w7"', "Cache-Control:max-age=30")
    clean.gate("/respond")
    out = []
    ts = [threading.Thread(target=lambda: out.append(get(proxy, path2))) for _ in range(6)]
    for t in ts:
        t.start()
    try:
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 6)
    finally:
        clean.release()
    for t in ts:
        t.join(20)
    assert len(out) == 6 and all(r.status_code == 200 and r.headers["etag"] == 'W/"w7"' for r in out)
    assert clean.stats()["jup"]["by_key"] and total(clean) == 2
    # stale-if-error: the stale copy keeps the origin's validators
    clean.add_rule({"route": "/respond*", "status": 503, "every": 1})
    assert wait_for(lambda: get(proxy, path).headers["x-cache"] == "STALE", timeout=5)
    r3 = get(proxy, path)
    assert r3.headers["x-cache"] == "STALE" and r3.headers["etag"] == '"v1"' and r3.headers["last-modified"] == LM


def test_tags_of_representations_made_here(proxy, clean):
    """The origin sends gzip with a strong ETag: gzip clients get it unchanged (the origin's bytes),
    identity clients get the body inflated here under W/ (REFERENCE.md "Validators")."""
    clean.config({"gzip": True})
    path = "/jup" + respond("gz", 'ETag:"g1"', "Cache-Control:max-age=30", pad="x" * 3000)
    s, h, body = raw(proxy, path, {"Accept-Encoding": "gzip"})
    assert s == 200 and h["content-encoding"] == "gzip" and h["etag"] == '"g1"'
    s, h, plain = raw(proxy, path, {})
    assert s == 200 and "content-encoding" not in h and h["x-cache"] == "HIT" and h["etag"] == 'W/"g1"'
    assert gzip.decompress(body) == plain
    s, h, _ = raw(proxy, path, {"Accept-Encoding": "gzip"})
    assert h["x-cache"] == "HIT" and h["etag"] == '"g1"'
    # a leader that does not accept gzip is sent the inflated body: weak tag too
    path2 = "/jup" + respond("gz2", 'ETag:"g2"', "Cache-Control:max-age=30", pad="y" * 3000)
    s, h, _ = raw(proxy, path2, {})
    assert s == 200 and h["x-cache"] == "MISS" and "content-encoding" not in h and h["etag"] == 'W/"g2"'
    # If-Match (strong comparison) fails on the weak tag, If-None-Match (weak) matches it
    assert raw(proxy, path, {"If-Match": '"g1"'})[0] == 412
    assert raw(proxy, path, {"If-Match": '"g1"', "Accept-Encoding": "gzip"})[0] == 200
    assert raw(proxy, path, {"If-None-Match": '"g1"'})[0] == 304
    assert total(clean) == 2


def test_if_none_match_and_if_modified_since_answered_304_from_cache(proxy, clean):
    path = "/jup" + respond("inm", 'ETag:"v1"', "Last-Modified:" + LM, "Cache-Control:max-age=30",
                            "Content-Location:/x", "Expires:Thu, 01 Jan 2037 00:00:00 GMT")
    full = get(proxy, path)
    assert full.status_code == 200
    s, h, body = raw(proxy, path, {"If-None-Match": '"a", W/"v1"'})
    assert s == 304 and body == b""
    # RFC 9110 §15.4.5: only these, plus dexcache's own (Age, Via, X-Cache, Cache-Status, X-Request-Id)
    assert set(h) - {"date", "server", "connection"} == {
        "cache-control", "content-location", "etag", "expires", "age", "via", "x-cache", "cache-status",
        "x-request-id"}, h
    assert h["etag"] == '"v1"' and h["cache-control"] == "max-age=30" and h["x-cache"] == "HIT"
    assert "content-length" not in h and "content-type" not in h and "last-modified" not in h
    assert raw(proxy, path, {"If-None-Match": "*"})[0] == 304
    assert raw(proxy, path, {"If-None-Match": '"v2"'})[0] == 200
    # If-Modified-Since: only without If-None-Match; an invalid date is ignored
    assert raw(proxy, path, {"If-Modified-Since": LM})[0] == 304
    assert raw(proxy, path, {"If-Modified-Since": BEFORE})[0] == 200
    assert raw(proxy, path, {"If-Modified-Since": "yesterday"})[0] == 200
    assert raw(proxy, path, {"If-None-Match": '"v2"', "If-Modified-Since": LM})[0] == 200
    # HEAD too
    assert requests.head(proxy.url + path, headers={"If-None-Match": '"v1"'}).status_code == 304
    assert total(clean) == 1


def test_if_match_and_if_unmodified_since_412(proxy, clean):
    path = "/jup" + respond("im", 'ETag:"v1"', "Last-Modified:" + LM, "Cache-Control:max-age=30")
    get(proxy, path)
    s, h, body = raw(proxy, path, {"If-Match": '"v2"'})
    assert s == 412 and h["x-cache"] == "HIT" and "etag" not in h and b"precondition" in body
    assert raw(proxy, path, {"If-Match": 'W/"v1"'})[0] == 412  # strong comparison
    assert raw(proxy, path, {"If-Match": '"v2", "v1"'})[0] == 200
    assert raw(proxy, path, {"If-Match": "*"})[0] == 200
    assert raw(proxy, path, {"If-Unmodified-Since": BEFORE})[0] == 412
    assert raw(proxy, path, {"If-Unmodified-Since": LM})[0] == 200
    assert raw(proxy, path, {"If-Unmodified-Since": "garbage"})[0] == 200
    # If-Match passes -> If-Unmodified-Since is not evaluated; then If-None-Match decides
    assert raw(proxy, path, {"If-Match": '"v1"', "If-Unmodified-Since": BEFORE})[0] == 200
    assert raw(proxy, path, {"If-Match": '"v1"', "If-None-Match": '"v1"'})[0] == 304
    # preconditions apply to 2xx only: a stored 404 is served as it is
    p404 = "/jup" + respond("nf", 'ETag:"n1"', status="404")
    assert get(proxy, p404).status_code == 404
    s, h, _ = raw(proxy, p404, {"If-None-Match": '"n1"'})
    assert s == 404 and h["x-cache"] == "HIT"
    assert raw(proxy, p404, {"If-Match": '"zz"'})[0] == 404
    assert total(clean) == 2


def test_revalidation_sends_both_validators_and_304_updates(proxy, clean):
    path = "/jup" + respond("rv", 'ETag:"v1"', "Last-Modified:" + LM, "Cache-Control:max-age=1", "X-Extra:one")
    r1 = get(proxy, path)
    assert wait_for(lambda: "fwd=" in get(proxy, path).headers["cache-status"], timeout=5, step=0.1)
    reqs = clean.requests(0)
    assert len(reqs) == 2
    assert "if-none-match" not in reqs[0]["headers"] and "if-modified-since" not in reqs[0]["headers"]
    assert reqs[1]["headers"]["if-none-match"] == '"v1"'
    assert reqs[1]["headers"]["if-modified-since"] == LM
    r = get(proxy, path)
    assert r.headers["x-cache"] == "HIT" and r.content == r1.content and r.headers["etag"] == '"v1"'
    assert total(clean) == 2


def test_304_with_another_etag_does_not_update_and_refetches(proxy, clean):
    """RFC 9111 §4.3.4: a 304 whose strong ETag is not the stored one selects nothing: dexcache asks
    again without validators and stores the new answer."""
    path = "/jup" + respond("mm", 'ETag:"v1"', "Cache-Control:max-age=1", etag304='"v9"')
    r1 = get(proxy, path)
    assert r1.headers["etag"] == '"v1"'
    revalidated = []
    assert wait_for(lambda: revalidated.append(get(proxy, path)) or "fwd=" in revalidated[-1].headers["cache-status"],
                    timeout=5, step=0.1)
    r2 = revalidated[-1]
    assert r2.status_code == 200 and r2.headers["x-cache"] == "MISS" and len(r2.content) > 0
    assert total(clean) == 3
    reqs = clean.requests(0)
    assert [q["status"] for q in reqs] == [200, 304, 200]
    assert reqs[1]["headers"]["if-none-match"] == '"v1"'
    assert "if-none-match" not in reqs[2]["headers"]
    r = get(proxy, path)
    assert r.status_code == 200 and r.headers["x-cache"] == "HIT" and r.json()["_fakeSeq"] == reqs[2]["seq"]
    # a 304 without any validator names no stored response (RFC 9111 §4.3.4: ours has one): not
    # updated, fetched again unconditionally
    clean.reset()
    p2 = "/jup" + respond("nv", 'ETag:"v1"', "Cache-Control:max-age=1", nov304="1")
    get(proxy, p2)
    assert wait_for(lambda: "fwd=" in get(proxy, p2).headers["cache-status"], timeout=5, step=0.1)
    reqs = clean.requests(0)
    assert [q["status"] for q in reqs] == [200, 304, 200]
    assert "if-none-match" in reqs[1]["headers"] and "if-none-match" not in reqs[2]["headers"]
    r = get(proxy, p2)
    assert r.headers["x-cache"] == "HIT" and r.headers["etag"] == '"v1"'


def test_client_conditional_on_a_miss_is_ours_upstream(proxy, clean):
    """On the cache path the client's conditionals stay here: the origin gets our unconditional
    request, the answer is stored, and the client is answered 304 from it."""
    path = "/jup" + respond("lc", 'ETag:"v1"', "Last-Modified:" + LM, "Cache-Control:max-age=30")
    s, h, body = raw(proxy, path, {"If-None-Match": '"v1"'})
    assert s == 304 and body == b"" and h["etag"] == '"v1"' and h["x-cache"] == "MISS"
    assert "content-length" not in h and "content-type" not in h
    reqs = clean.requests(0)
    assert len(reqs) == 1 and reqs[0]["status"] == 200
    assert "if-none-match" not in reqs[0]["headers"]
    r = get(proxy, path)
    assert r.status_code == 200 and r.headers["x-cache"] == "HIT" and len(r.content) > 0
    p2 = "/jup" + respond("lc2", 'ETag:"v1"', "Cache-Control:max-age=30")
    s, h, body = raw(proxy, p2, {"If-Match": '"nope"'})
    assert s == 412 and h["x-cache"] == "MISS"
    assert raw(proxy, p2, {})[1]["x-cache"] == "HIT"
    assert total(clean) == 2


def test_client_conditional_forwarded_on_pass_through(proxy, clean):
    """Nothing is stored on a route without cache rules: the client's conditionals go to the origin
    as sent, and its 304 comes back."""
    path = "/pass" + respond("ps", 'ETag:"v1"', "Last-Modified:" + LM)
    s, h, body = raw(proxy, path, {"If-None-Match": '"v1"', "If-Modified-Since": LM})
    assert s == 304 and body == b""
    q = clean.requests(0)
    assert len(q) == 1 and q[0]["headers"]["if-none-match"] == '"v1"'
    assert q[0]["headers"]["if-modified-since"] == LM
    s, h, body = raw(proxy, path, {"If-Match": '"x"', "If-Unmodified-Since": BEFORE})
    q = clean.requests(0)
    assert len(q) == 2 and q[1]["headers"]["if-match"] == '"x"'
    assert q[1]["headers"]["if-unmodified-since"] == BEFORE
    assert s == 200 and h["etag"] == '"v1"'  # this origin ignores If-Match: its answer is passed on


def test_304_to_an_unconditional_request_is_no_answer(proxy, clean):
    """An origin 304 to a fetch that sent no validator answers no question (RFC 9110 15.4.5): 502,
    never relayed to a client that sent no conditional, nothing stored."""
    path = "/jup/respond?k=u304&status=304"
    for _ in range(2):
        r = get(proxy, path)
        assert r.status_code == 502, r.status_code
        assert r.json()["error"] == "upstream sent an invalid response"
    assert [q["status"] for q in clean.requests(0)] == [304, 304]
