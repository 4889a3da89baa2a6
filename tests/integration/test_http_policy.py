"""What is stored and for how long (issue 15, RFC 9111 3 / 4.2 / 5, RFC 9213), end to end against the
real binary and the fake origin's /respond (status and headers chosen per request, plus the
date_offset / lm_ago / expires_in knobs): statuses with explicit freshness, today's DEX defaults,
ttl 0 + respect_origin, heuristic freshness, Age and Date, invalid max-age / past Expires,
must-understand, no-cache (bare and with field names), private with field names, proxy-revalidate,
s-maxage, and the targeted CDN-Cache-Control / Dexcache-Cache-Control fields."""
import time

import pytest
import requests

from dexcache import Dexcache

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
log: {{ access: "{access_log}" }}
upstreams:
  # one answer per request (no retries of a 503), and failing answers never open the breaker
  jupiter: {{ url: "%(jup)s", timeout: 5s, retries: 0, breaker: {{ failures: 1000 }} }}
routes:
  - prefix: /ro
    upstream: jupiter
    cache: [{{ path: /, ttl: 1s, respect_origin: true }}]
  - prefix: /sie
    upstream: jupiter
    cache: [{{ path: /, ttl: 1s, stale_if_error: 30s, respect_origin: true }}]
  - prefix: /dex
    upstream: jupiter
    cache: [{{ path: /, ttl: 30s, negative_ttl: 30s }}]
  - prefix: /zero
    upstream: jupiter
    cache: [{{ path: /, ttl: 0, respect_origin: true }}]
  - prefix: /heur
    upstream: jupiter
    cache: [{{ path: /, ttl: 1s, respect_origin: true, heuristic: 10%%, heuristic_max: 1h }}]
  - prefix: /swr
    upstream: jupiter
    cache: [{{ path: /, ttl: 1s, stale_while_revalidate: 30s, respect_origin: true }}]
  - prefix: /pt
    upstream: jupiter
  - prefix: /cdnq
    upstream: jupiter
    cdn: {{ max_age: 10s, s_maxage: 20s, cdn_cache_control: true }}
    cache: [{{ path: /, ttl: 60s }}]
  - prefix: /cdnr
    upstream: jupiter
    cache: [{{ path: /, ttl: 1s, respect_origin: true, cdn_role: true, forward_cdn_cache_control: false }}]
"""


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
    origin.config({"latency": {"fixed": 0}})
    origin.reset()
    return origin


def get(proxy, path, **kw):
    return requests.get(proxy.url + path, timeout=15, allow_redirects=False, **kw)


def total(origin):
    return origin.stats()["jup"]["total"]


def stored_then_hit(proxy, path, status=200):
    """First request a MISS that is stored, the second a HIT with the same origin answer."""
    r1 = get(proxy, path)
    assert r1.status_code == status, (r1.status_code, r1.text)
    assert r1.headers["x-cache"] == "MISS"
    assert r1.headers["cache-status"] == "dexcache; fwd=miss; stored", r1.headers["cache-status"]
    r2 = get(proxy, path)
    assert r2.status_code == status
    assert r2.headers["x-cache"] == "HIT", r2.headers["cache-status"]
    assert r2.headers["x-fake-seq"] == r1.headers["x-fake-seq"]
    return r1, r2


PRIVATE = ("private", "no-store", "must-understand", "set-cookie")


def never_stored(proxy, path, detail, status=200):
    """Two requests, both forwarded: the first says why; after an answer private to its client
    (no-store, private...) the key is hit-for-pass for a while, which the second says."""
    for i in range(2):
        r = get(proxy, path)
        assert r.status_code == status
        assert r.headers["x-cache"] == "MISS"
        want = "hit-for-pass" if i == 1 and detail in PRIVATE else detail
        assert r.headers["cache-status"] == "dexcache; fwd=miss; " + \
            ("fwd-status=%d; " % status if detail not in PRIVATE and detail != "hit-for-pass" else "") + \
            "detail=" + want, r.headers["cache-status"]


def test_any_status_with_explicit_freshness_is_stored(proxy, clean):
    # 503 / 302 / 403 with max-age (or Expires) are stored under respect_origin (RFC 9111 3)
    stored_then_hit(proxy, "/ro/respond?status=503&h=Cache-Control:max-age%3D30", 503)
    stored_then_hit(proxy, "/ro/respond?status=302&h=Location:/x&h=Cache-Control:max-age%3D30", 302)
    stored_then_hit(proxy, "/ro/respond?status=403&expires_in=30", 403)
    stored_then_hit(proxy, "/ro/respond?status=302&h=Location:/y&h=Cache-Control:public", 302)
    assert total(clean) == 4
    # without explicit freshness: a 403 / 302 is not stored, nor is a 404 with negative_ttl 0
    never_stored(proxy, "/ro/respond?status=403", "status", 403)
    never_stored(proxy, "/ro/respond?status=302&h=Location:/z", "status", 302)
    never_stored(proxy, "/ro/respond?status=404", "status", 404)
    # never a 206, whatever it says
    # a 206 answers no question dexcache asked (Range never goes upstream on the cache path): private
    # to the client it went to, not shared with waiters, the key then passes for a while
    for want in ("detail=status", "detail=hit-for-pass"):
        r = get(proxy, "/ro/respond?status=206&h=Cache-Control:public,max-age%3D30")
        assert (r.status_code, r.headers["x-cache"]) == (206, "MISS")
        assert r.headers["cache-status"] == "dexcache; fwd=miss; " + want, r.headers["cache-status"]
    assert total(clean) == 4 + 8


def test_dex_defaults_without_respect_origin(proxy, clean):
    # respect_origin false: the origin's lifetime adds no status, the rule's ttl stays
    never_stored(proxy, "/dex/respond?status=503&h=Cache-Control:max-age%3D30", "status", 503)
    # 451 joins the negative_ttl statuses
    r1, r2 = stored_then_hit(proxy, "/dex/respond?status=451", 451)
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=30"
    # max-age=1 does not shorten the rule's 30 s
    r1, r2 = stored_then_hit(proxy, "/dex/respond?h=Cache-Control:max-age%3D1")
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=30"
    assert total(clean) == 4


def test_ttl_zero_the_origin_decides(proxy, clean):
    never_stored(proxy, "/zero/respond", "no-origin-freshness")
    r1, r2 = stored_then_hit(proxy, "/zero/respond?h=Cache-Control:max-age%3D30")
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=30"
    assert total(clean) == 3


def test_heuristic_freshness(proxy, clean):
    # Last-Modified 1000 s ago, no explicit freshness: 10% = 100 s instead of the rule's 1 s
    path = "/heur/respond?lm_ago=1000"
    r1, r2 = stored_then_hit(proxy, path)
    time.sleep(1.2)
    r3 = get(proxy, path)
    assert r3.headers["x-cache"] == "HIT"
    ttl = int(r3.headers["cache-status"].rsplit("ttl=", 1)[1])
    assert 97 <= ttl <= 99, r3.headers["cache-status"]
    # explicit freshness wins over the heuristic
    r1, r2 = stored_then_hit(proxy, "/heur/respond?lm_ago=1000&h=Cache-Control:max-age%3D5")
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=5"
    # without Last-Modified: the rule's 1 s
    path = "/heur/respond?x=1"
    stored_then_hit(proxy, path)
    time.sleep(1.2)
    assert get(proxy, path).headers["x-cache"] == "MISS"
    assert total(clean) == 4


@pytest.mark.parametrize("age,want", [("10", 10), ("7, 9", 7), ("20&h=Age:60", 20), ("abc", 0), ("-50", 0),
                                      ("50.5", 0), ("50x", 0), ("99999999999", 2147483648)])
def test_age_parsed_and_counted(proxy, clean, age, want):
    # RFC 9111 5.1: the first member (of a list, or of several lines); not a non-negative integer:
    # ignored; huge: 2^31 (older than any lifetime). No Date, so the apparent age adds nothing.
    path = "/ro/respond?date=none&h=Cache-Control:max-age%3D100&h=Age:" + requests.utils.quote(age, safe="&=:")
    if want >= 100:
        # older than its lifetime on arrival, no validator: not stored
        never_stored(proxy, path, "zero-ttl")
        return
    r1, r2 = stored_then_hit(proxy, path)
    assert int(r2.headers["age"]) in (want, want + 1)
    ttl = int(r2.headers["cache-status"].rsplit("ttl=", 1)[1])
    assert 100 - want - 1 <= ttl <= 100 - want


def test_date_gives_apparent_age(proxy, clean):
    # the origin's Date is 30 s old: apparent age 29..30 s (counted from the end of Date's second)
    path = "/ro/respond?date_offset=-30&h=Cache-Control:max-age%3D100"
    r1, r2 = stored_then_hit(proxy, path)
    assert 29 <= int(r2.headers["age"]) <= 31
    ttl = int(r2.headers["cache-status"].rsplit("ttl=", 1)[1])
    assert 69 <= ttl <= 71
    # Expires - Date: a lifetime of 60 s from a Date 30 s old leaves about 30 s
    path = "/ro/respond?date_offset=-30&expires_in=30"
    r1, r2 = stored_then_hit(proxy, path)
    ttl = int(r2.headers["cache-status"].rsplit("ttl=", 1)[1])
    assert 29 <= ttl <= 31


def test_stale_on_arrival(proxy, clean):
    # an invalid max-age, a past or invalid Expires: stale on arrival; without a validator not kept
    never_stored(proxy, "/ro/respond?h=Cache-Control:max-age%3D1a", "zero-ttl")
    never_stored(proxy, "/ro/respond?expires_in=-10", "zero-ttl")
    never_stored(proxy, "/ro/respond?h=Expires:0", "zero-ttl")
    assert total(clean) == 6
    # a quoted max-age is valid, and the first of two wins
    r1, r2 = stored_then_hit(proxy, "/ro/respond?h=Cache-Control:max-age%3D%2240%22,max-age%3D5")
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=40"
    # with a validator an answer stale on arrival is kept and revalidated (304) before use
    path = "/ro/respond?expires_in=-10&h=ETag:%22v1%22"
    r1 = get(proxy, path)
    assert r1.headers["cache-status"] == "dexcache; fwd=miss; stored"
    seq = clean.stats()["seq"]
    r2 = get(proxy, path)
    assert r2.status_code == 200 and r2.headers["x-cache"] == "HIT"
    assert r2.headers["cache-status"] == "dexcache; fwd=stale; fwd-status=304; stored"
    sent = [q for q in clean.requests(since=seq) if q["path"] == "/respond"]
    assert len(sent) == 1 and sent[0]["status"] == 304
    assert r2.content == r1.content


def test_no_cache_is_stored_but_always_revalidated(proxy, clean):
    path = "/ro/respond?h=Cache-Control:no-cache,max-age%3D60&h=ETag:%22nc1%22"
    r1 = get(proxy, path)
    assert r1.headers["cache-status"] == "dexcache; fwd=miss; stored"
    for _ in range(2):
        seq = clean.stats()["seq"]
        r = get(proxy, path)
        assert r.headers["x-cache"] == "HIT"
        assert r.headers["cache-status"] == "dexcache; fwd=stale; fwd-status=304; stored"
        sent = [q for q in clean.requests(since=seq) if q["path"] == "/respond"]
        assert len(sent) == 1 and sent[0]["status"] == 304
    assert total(clean) == 3
    # without a validator there is nothing to revalidate with: not kept
    never_stored(proxy, "/ro/respond?h=Cache-Control:no-cache,max-age%3D60", "zero-ttl")


def test_field_names_in_no_cache_and_private(proxy, clean):
    # no-cache="Set-Cookie": stored without Set-Cookie (the leader gets it, hits do not)
    path = "/ro/respond?h=Cache-Control:max-age%3D30,no-cache%3D%22Set-Cookie%22&h=Set-Cookie:s%3D1"
    r1, r2 = stored_then_hit(proxy, path)
    assert r1.headers["set-cookie"] == "s=1"
    assert "set-cookie" not in r2.headers
    # private="X-User": a shared cache does not store X-User, stores the rest
    path = "/ro/respond?h=Cache-Control:max-age%3D30,private%3D%22X-User%22&h=X-User:alice&h=X-Other:1"
    r1, r2 = stored_then_hit(proxy, path)
    assert r1.headers["x-user"] == "alice"
    assert "x-user" not in r2.headers and r2.headers["x-other"] == "1"
    # unqualified private: not stored
    never_stored(proxy, "/ro/respond?h=Cache-Control:max-age%3D30,private", "private")
    assert total(clean) == 4


def test_must_understand(proxy, clean):
    # an understood status: no-store is ignored
    stored_then_hit(proxy, "/ro/respond?h=Cache-Control:must-understand,no-store,max-age%3D30")
    # a status whose caching rules dexcache does not implement: not stored (not even shared)
    never_stored(proxy, "/ro/respond?status=202&h=Cache-Control:must-understand,no-store,max-age%3D30",
                 "must-understand", 202)
    assert total(clean) == 3


def test_proxy_revalidate_and_s_maxage_forbid_stale(proxy, clean):
    paths = {"max-age": "/sie/respond?h=Cache-Control:max-age%3D1",
             "proxy-revalidate": "/sie/respond?h=Cache-Control:max-age%3D1,proxy-revalidate",
             "s-maxage": "/sie/respond?h=Cache-Control:s-maxage%3D1,max-age%3D100"}
    for p in paths.values():
        r1, r2 = stored_then_hit(proxy, p)
        assert r2.headers["cache-status"] == "dexcache; hit; ttl=1"  # s-maxage over max-age
    clean.add_rule({"route": "/respond*", "status": 503, "every": 1})
    time.sleep(1.2)
    r = get(proxy, paths["max-age"])  # stale_if_error applies
    assert r.status_code == 200 and r.headers["x-cache"] == "STALE"
    for name in ("proxy-revalidate", "s-maxage"):  # never served stale
        r = get(proxy, paths[name])
        assert r.status_code == 503, name
        assert r.headers["x-cache"] == "MISS"


def test_targeted_cache_control(proxy, clean):
    # cdn_role: CDN-Cache-Control decides over Cache-Control, and is not passed on (forward false)
    path = "/cdnr/respond?h=Cache-Control:no-store&h=CDN-Cache-Control:max-age%3D30"
    r1, r2 = stored_then_hit(proxy, path)
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=30"
    assert r1.headers["cache-control"] == "no-store" and r2.headers["cache-control"] == "no-store"
    assert "cdn-cache-control" not in r1.headers and "cdn-cache-control" not in r2.headers
    # an invalid sf-dictionary is ignored as if absent: Cache-Control decides
    never_stored(proxy, "/cdnr/respond?h=Cache-Control:no-store&h=CDN-Cache-Control:max-age%3D1a", "no-store")
    # without cdn_role, CDN-Cache-Control is not ours: passed on, Cache-Control decides
    path = "/ro/respond?h=Cache-Control:no-store&h=CDN-Cache-Control:max-age%3D30"
    never_stored(proxy, path, "no-store")
    assert get(proxy, path).headers["cdn-cache-control"] == "max-age=30"
    # Dexcache-Cache-Control is for dexcache alone: it decides on any route, and never leaves
    path = "/ro/respond?h=Cache-Control:max-age%3D30&h=Dexcache-Cache-Control:no-store"
    never_stored(proxy, path, "no-store")
    assert "dexcache-cache-control" not in get(proxy, path).headers
    path = "/ro/respond?h=Cache-Control:no-store&h=Dexcache-Cache-Control:max-age%3D20"
    r1, r2 = stored_then_hit(proxy, path)
    assert r2.headers["cache-status"] == "dexcache; hit; ttl=20"
    assert "dexcache-cache-control" not in r1.headers and "dexcache-cache-control" not in r2.headers


def test_no_cache_is_honoured_without_respect_origin(proxy, clean):
    """RFC 9111 5.2.2.4 on a DEX-default rule (ttl 30s, respect_origin false): an answer with
    no-cache and a validator is stored but revalidated before every use (a 304 each time, no HIT);
    without a validator it is not stored at all."""
    path = "/dex/respond?k=nc1&h=Cache-Control:no-cache&h=ETag:%22n1%22"
    r1 = get(proxy, path)
    assert r1.status_code == 200 and r1.headers["x-cache"] == "MISS"
    for _ in range(2):
        r = get(proxy, path)
        assert r.status_code == 200, r.status_code
        assert r.headers["cache-status"] == "dexcache; fwd=stale; fwd-status=304; stored", r.headers["cache-status"]
        assert r.headers["etag"] == '"n1"'
    assert [q["status"] for q in clean.requests(0)] == [200, 304, 304]
    clean.reset()
    path2 = "/dex/respond?k=nc2&h=Cache-Control:no-cache"
    for _ in range(2):
        r = get(proxy, path2)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS", r.headers["cache-status"]
    assert total(clean) == 2


def test_stale_windows_run_from_when_the_answer_became_stale(proxy, clean):
    """max-age=60 with Age 1000: stale 940 s before it arrived, so a 30 s stale-while-revalidate
    window is long over (RFC 5861): the next request goes to the origin, nothing is served stale."""
    path = "/swr/respond?k=sw1&h=Cache-Control:max-age%3D60&h=Age:1000"
    r1 = get(proxy, path)
    assert r1.status_code == 200 and r1.headers["x-cache"] == "MISS"
    r2 = get(proxy, path)
    assert r2.headers["x-cache"] == "MISS", r2.headers["cache-status"]
    assert total(clean) == 2
    # while an answer 10 s past its lifetime keeps 20 s of its 30 s window
    clean.reset()
    path = "/swr/respond?k=sw2&h=Cache-Control:max-age%3D60&h=Age:70"
    get(proxy, path)
    r = get(proxy, path)
    assert r.headers["x-cache"] == "STALE", r.headers["cache-status"]


def test_origin_age_reaches_clients_on_miss_and_pass_through(proxy, clean):
    """Age is end to end (RFC 9111 5.1): a CDN in front must see the origin's share on the first
    answer too, not only on hits."""
    r = get(proxy, "/ro/respond?k=ag1&h=Cache-Control:max-age%3D60&h=Age:50")
    assert r.headers["x-cache"] == "MISS" and r.headers["age"] == "50"
    r = get(proxy, "/pt/respond?k=ag2&h=Cache-Control:max-age%3D60&h=Age:50")
    assert r.headers.get("age") == "50", dict(r.headers)
    r = get(proxy, "/ro/respond?k=ag1&h=Cache-Control:max-age%3D60&h=Age:50")
    assert r.headers["x-cache"] == "HIT" and int(r.headers["age"]) >= 50


def test_status_outside_200_599_is_no_answer(proxy, clean):
    """A final status of 999 (or 600) is not relayed: 502, nothing stored."""
    for path in ("/dex/respond?k=s999&status=999", "/pt/respond?k=s600&status=600"):
        r = get(proxy, path)
        assert r.status_code == 502, (path, r.status_code)
        assert r.json()["error"] == "upstream sent an invalid response", r.text


@pytest.mark.parametrize("cc,field,value", [
    ('private="X-Session-Token"', "X-Session-Token", "alice-secret"),
    ('no-cache="Set-Cookie"', "Set-Cookie", "session=alice"),
])
def test_fields_named_by_qualifiers_never_reach_the_cdn(proxy, clean, cc, field, value):
    """On a route whose cdn: block writes Cache-Control for the CDN in front, the origin's field-name
    qualifiers are gone from what the CDN sees: the fields they name must not go out with it, on the
    first answer either (before: the MISS carried them under 'public, s-maxage=20')."""
    path = "/cdnq/respond?k=%s&h=Cache-Control:%s&h=%s:%s" % (field, requests.utils.quote(cc), field, value)
    for want in ("MISS", "HIT"):
        r = get(proxy, path)
        assert r.status_code == 200 and r.headers["x-cache"] == want, r.headers["cache-status"]
        assert field.lower() not in {k.lower() for k in r.headers}, dict(r.headers)
        assert "s-maxage=20" in r.headers["cache-control"]
