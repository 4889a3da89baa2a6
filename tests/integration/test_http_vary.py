"""Vary (RFC 9111 4.1) end to end: one URL stored as several variants keyed by the normalised values
of the request headers its Vary names, against the real binary and the fake origin, whose /respond
answers carry the Vary the test asks for (h=Vary:..., or vary_from=header) and echo the request
headers the origin received (echo=name), so every body shows which variant it is."""
import threading

import pytest
import requests

from dexcache import Dexcache, wait_for

AUTH = {"Authorization": "Bearer s3cret"}

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
log: {{ access: off }}
upstreams:
  jupiter: {{ url: "%(jup)s", timeout: 10s }}
routes:
  - prefix: /jup
    upstream: jupiter
    forward_headers: [accept-language, x-tenant, x-fake-vary]
    cache:
      - {{ path: /respond, ttl: 60s, max_variants: 3 }}
  - prefix: /cold
    upstream: jupiter
    cache:
      - {{ path: /, ttl: 60s }}
"""

AL = "/jup/respond?h=Vary:Accept-Language&echo=accept-language"


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % {"jup": fake.url("jup")})
    d.start()
    yield d
    d.stop()


@pytest.fixture
def clean(proxy, origin):
    r = requests.post(proxy.admin_url + "/purge", json={"all": True}, headers=AUTH)
    assert r.status_code == 200
    origin.config({"latency": {"fixed": 0}})
    origin.reset()
    return origin


def total(origin):
    return origin.stats()["jup"]["total"]


def get(d, path, lang=None, **headers):
    h = {k.replace("_", "-"): v for k, v in headers.items()}
    if lang is not None:
        h["Accept-Language"] = lang
    return requests.get(d.url + path, headers=h, timeout=20)


def echo(r, name="accept-language"):
    return r.json()["echo"][name]


def test_two_variants_two_fetches_then_hits(proxy, clean):
    en = get(proxy, AL, "en")
    assert (en.status_code, en.headers["x-cache"], en.headers["cache-status"]) == \
        (200, "MISS", "dexcache; fwd=miss; stored")
    assert en.headers["vary"] == "Accept-Language"  # the leader: the origin's header
    fr = get(proxy, AL, "fr")
    assert fr.headers["x-cache"] == "MISS"
    assert (echo(en), echo(fr)) == ("en", "fr")
    assert en.json()["_fakeSeq"] != fr.json()["_fakeSeq"]
    assert total(clean) == 2
    for _ in range(2):
        h_en, h_fr = get(proxy, AL, "en"), get(proxy, AL, "fr")
        assert (h_en.headers["x-cache"], h_fr.headers["x-cache"]) == ("HIT", "HIT")
        assert h_en.content == en.content and h_fr.content == fr.content
        assert h_en.headers["vary"] == "accept-language"  # stored: the origin's names
    assert total(clean) == 2


def test_normalised_values_share_a_variant(proxy, clean):
    first = get(proxy, AL, "en, fr")
    assert first.headers["x-cache"] == "MISS"
    for same in ("en,fr", "en ,  fr  ", "EN, Fr", "en,,fr"):
        r = get(proxy, AL, same)
        assert r.headers["x-cache"] == "HIT", same
        assert r.content == first.content
    # the order of an Accept-Language list is a preference: another variant
    other = get(proxy, AL, "fr, en")
    assert other.headers["x-cache"] == "MISS" and echo(other) == "fr, en"
    assert total(clean) == 2


def test_absent_and_empty_are_different_variants(proxy, clean):
    absent = get(proxy, AL)
    empty = get(proxy, AL, "")
    assert (absent.headers["x-cache"], empty.headers["x-cache"]) == ("MISS", "MISS")
    assert echo(absent) is None and echo(empty) == ""
    assert get(proxy, AL).content == absent.content
    assert get(proxy, AL, "").content == empty.content
    assert total(clean) == 2


@pytest.mark.parametrize("vary", ["*", "Accept-Language,%20*", "Cookie", "Authorization", "Host"])
def test_vary_that_never_matches_is_not_stored(proxy, clean, vary):
    p = "/jup/respond?h=Vary:%s" % vary
    r1 = get(proxy, p, "en")
    assert (r1.headers["x-cache"], r1.headers["cache-status"]) == ("MISS", "dexcache; fwd=miss; detail=vary")
    r2 = get(proxy, p, "en")
    assert r2.headers["x-cache"] == "MISS"  # hit-for-pass: straight to the origin
    assert total(clean) == 2


def test_variant_limit_evicts_the_least_recently_used(proxy, clean):
    for lang in ("en", "fr", "de"):
        assert get(proxy, AL, lang).headers["cache-status"] == "dexcache; fwd=miss; stored"
    assert get(proxy, AL, "en").headers["x-cache"] == "HIT"  # fr is now the least recently used
    it = get(proxy, AL, "it")
    assert it.headers["cache-status"] == "dexcache; fwd=miss; stored; detail=vary-limit"
    assert get(proxy, AL, "de").headers["x-cache"] == "HIT"
    assert get(proxy, AL, "en").headers["x-cache"] == "HIT"
    fr = get(proxy, AL, "fr")  # evicted: fetched again (and "it" goes for it)
    assert fr.headers["cache-status"] == "dexcache; fwd=miss; stored; detail=vary-limit" and echo(fr) == "fr"
    assert get(proxy, AL, "it").headers["x-cache"] == "MISS"
    assert total(clean) == 6


def test_changed_vary_list_drops_the_other_variants(proxy, clean):
    p = "/jup/respond?vary_from=x-fake-vary&echo=accept-language&echo=x-tenant"
    one = {"X-Fake-Vary": "Accept-Language"}
    en = get(proxy, p, "en", **one)
    get(proxy, p, "fr", **one)
    assert get(proxy, p, "en", **one).content == en.content
    assert total(clean) == 2
    # the origin now varies on X-Tenant as well: the answer replaces the URL's vary record
    two = {"X-Fake-Vary": "Accept-Language, X-Tenant"}
    de = get(proxy, p, "de", X_Tenant="a", **two)
    assert de.headers["cache-status"] == "dexcache; fwd=miss; stored"
    assert de.json()["echo"] == {"accept-language": "de", "x-tenant": "a"}
    assert total(clean) == 3
    # en and fr were dropped with the old list; the new variant is keyed by both headers
    r = get(proxy, p, "en", **two)
    assert r.headers["x-cache"] == "MISS" and r.json()["echo"] == {"accept-language": "en", "x-tenant": None}
    assert get(proxy, p, "de", X_Tenant="a", **two).content == de.content
    assert get(proxy, p, "de", X_Tenant="b", **two).headers["x-cache"] == "MISS"
    assert get(proxy, p, "de", X_Tenant="a", **two).headers["x-cache"] == "HIT"
    assert total(clean) == 5


@pytest.mark.parametrize("how", ["url", "prefix", "tag"])
def test_purge_removes_every_variant(proxy, clean, how):
    for lang in ("en", "fr"):
        get(proxy, AL, lang)
    assert get(proxy, AL, "en").headers["x-cache"] == "HIT"
    body = {"url": AL, "prefix": "/jup/respond", "tag": "jup"}[how]
    r = requests.post(proxy.admin_url + "/purge", json={how: body}, headers=AUTH)
    # url and prefix: the record and both variants; tag: the variants and the record (it has the tags)
    assert r.json()["purged"] == 3, r.json()
    for lang in ("en", "fr"):
        r = get(proxy, AL, lang)
        assert r.headers["x-cache"] == "MISS" and echo(r) == lang
    assert total(clean) == 4


def test_collapsed_waiter_never_gets_another_variant(proxy, clean):
    clean.gate("/respond")
    out = {}

    def one(lang):
        out[lang] = get(proxy, AL, lang)

    threads = [threading.Thread(target=one, args=(lang,)) for lang in ("en", "fr")]
    try:
        threads[0].start()
        clean.wait_held(1)
        threads[1].start()
        # the second request waits on the first one's fill (one cold key, no vary record yet)
        assert wait_for(lambda: proxy.metric("dexcache_requests_in_flight") == 2, timeout=20)
        assert clean.held() == 1
    finally:
        clean.release()
    for t in threads:
        t.join(30)
    assert echo(out["en"]) == "en" and echo(out["fr"]) == "fr"
    assert out["en"].headers["x-cache"] == "MISS" and out["fr"].headers["x-cache"] == "MISS"
    assert total(clean) == 2
    assert get(proxy, AL, "en").content == out["en"].content
    assert get(proxy, AL, "fr").content == out["fr"].content
    assert total(clean) == 2


def test_first_fill_keyed_by_what_the_origin_saw(proxy, clean):
    # /cold does not forward Accept-Language until the URL is known to vary on it
    p = "/cold/respond?h=Vary:Accept-Language&echo=accept-language"
    first = get(proxy, p, "en")
    assert first.headers["x-cache"] == "MISS" and echo(first) is None
    second = get(proxy, p, "en")  # not the absent variant: its own, with the header sent
    assert second.headers["x-cache"] == "MISS" and echo(second) == "en"
    assert get(proxy, p, "en").content == second.content
    assert get(proxy, p).content == first.content  # absent: the first answer
    assert total(clean) == 2


def test_fleet_never_serves_a_wrong_variant(fake, origin, redis_server):
    conf = CONFIG % {"jup": fake.url("jup")}
    conf = conf.replace('log: {{ access: off }}', 'log: {{ access: off }}\nredis: {{ url: "%s", prefix: "dcv:" }}'
                        % redis_server.url)
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up", timeout=10)
        origin.reset()
        en = get(a, AL, "en")
        assert en.headers["x-cache"] == "MISS" and echo(en) == "en"
        # variants stay on the instance that fetched them: nothing in L2 for the URL
        assert redis_server.command("EXISTS", "dcv:l2:GET /jup/respond?echo=accept-language&h=Vary%3AAccept-Language") == ":0"
        fr = get(b, AL, "fr")
        assert fr.headers["x-cache"] == "MISS" and echo(fr) == "fr"
        en_b = get(b, AL, "en")
        assert en_b.headers["x-cache"] == "MISS" and echo(en_b) == "en"
        assert get(a, AL, "en").content == en.content
        assert get(b, AL, "fr").content == fr.content and get(b, AL, "en").content == en_b.content
        assert origin.stats()["jup"]["total"] == 3
    finally:
        a.stop()
        b.stop()
