"""Request cache directives (RFC 9111 §5.2.1) and 1xx handling end to end: only-if-cached (504 on a
miss, no upstream request), no-store (the answer is not stored), max-age / min-fresh / max-stale /
no-cache honoured under client_no_cache: revalidate and reported ignored under the default; interim
1xx answers from the origin absorbed and never stored; Expect: 100-continue on a POST pass-through."""
import hashlib
import os
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from dexcache import Dexcache, wait_for

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 60s }}
      - {{ path: /short, ttl: 1s }}
  - prefix: /rev
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 60s, client_no_cache: revalidate }}
  - prefix: /revs
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 1s, stale_if_error: 60s, client_no_cache: revalidate }}
"""


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % {"jup": fake.url("jup")})
    d.start()
    yield d
    d.stop()


@pytest.fixture
def clean(proxy, origin):
    r = requests.post(proxy.admin_url + "/purge", json={"all": True}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200
    origin.reset()
    return origin


def get(proxy, path, cc=None, **kw):
    h = {"Cache-Control": cc} if cc else {}
    h.update(kw.pop("headers", {}))
    return requests.get(proxy.url + path, headers=h, timeout=15, **kw)


def total(origin):
    return origin.stats()["jup"]["total"]


def test_only_if_cached_504_on_a_miss_and_stored_answer_otherwise(proxy, clean):
    r = get(proxy, "/jup/respond?o=1", "only-if-cached")
    assert r.status_code == 504
    assert total(clean) == 0  # never asked the origin
    assert get(proxy, "/jup/respond?o=1").headers["x-cache"] == "MISS"
    r = get(proxy, "/jup/respond?o=1", "only-if-cached")
    assert r.status_code == 200 and r.headers["x-cache"] == "HIT"
    assert total(clean) == 1


def test_only_if_cached_with_max_stale_gets_the_stale_copy(proxy, clean):
    path = "/revs/respond?o=2"
    assert get(proxy, path).headers["x-cache"] == "MISS"
    # expired (ttl 1s; kept for stale-if-error): without max-stale only-if-cached cannot be answered
    assert wait_for(lambda: get(proxy, path, "only-if-cached").status_code == 504, timeout=10)
    r = get(proxy, path, "only-if-cached, max-stale")
    assert r.status_code == 200 and r.headers["x-cache"] == "STALE"
    assert r.headers["cache-status"].endswith("detail=max-stale")
    assert total(clean) == 1


def test_request_no_store_is_never_stored_but_may_be_served(proxy, clean):
    r = get(proxy, "/jup/respond?ns=1", "no-store")
    assert r.status_code == 200 and r.headers["x-cache"] == "MISS"
    assert "detail=client-no-store" in r.headers["cache-status"]
    assert get(proxy, "/jup/respond?ns=1").headers["x-cache"] == "MISS"  # not stored by the first
    assert total(clean) == 2
    r = get(proxy, "/jup/respond?ns=1", "no-store")  # the stored answer may serve it
    assert r.headers["x-cache"] == "HIT"
    assert total(clean) == 2


@pytest.mark.parametrize("cc", ["no-cache", "max-age=0", "min-fresh=3600"])
def test_freshness_directives_honoured_under_revalidate(proxy, clean, cc):
    path = "/rev/respond?d=" + cc
    assert get(proxy, path).headers["x-cache"] == "MISS"
    assert get(proxy, path, "max-age=3600").headers["x-cache"] == "HIT"  # young enough
    r = get(proxy, path, cc)
    assert r.headers["x-cache"] == "MISS" and "fwd=request" in r.headers["cache-status"]
    assert total(clean) == 2


@pytest.mark.parametrize("cc", ["no-cache", "max-age=0", "min-fresh=3600", "max-stale=5"])
def test_freshness_directives_ignored_by_default_and_said_so(proxy, clean, cc):
    path = "/jup/respond?i=" + cc
    assert get(proxy, path).headers["x-cache"] == "MISS"
    r = get(proxy, path, cc)
    assert r.headers["x-cache"] == "HIT"
    assert r.headers["cache-status"].endswith("; detail=client-cc-ignored")
    r = get(proxy, path, headers={"Pragma": "no-cache"})
    assert r.headers["x-cache"] == "HIT" and r.headers["cache-status"].endswith("; detail=client-cc-ignored")
    assert get(proxy, path).headers["cache-status"].startswith("dexcache; hit; ttl=")  # no detail without one
    assert "detail" not in get(proxy, path).headers["cache-status"]
    assert total(clean) == 1


def test_max_age_younger_than_the_entry_refetches(proxy, clean):
    path = "/rev/respond?age=1"
    assert get(proxy, path).headers["x-cache"] == "MISS"
    assert wait_for(lambda: int(get(proxy, path).headers["age"]) >= 1, timeout=10)
    before = total(clean)
    r = get(proxy, path, "max-age=0")
    assert r.headers["x-cache"] == "MISS"
    assert total(clean) == before + 1


def test_interim_1xx_from_the_origin_is_absorbed_and_never_stored(proxy, clean):
    path = "/jup/respond?interim=103&n=1"
    r1 = get(proxy, path)
    assert r1.status_code == 200 and r1.headers["x-cache"] == "MISS"
    assert "link" not in r1.headers or "style.css" not in r1.headers.get("link", "")  # 103's fields stay there
    r2 = get(proxy, path)
    assert r2.status_code == 200 and r2.headers["x-cache"] == "HIT" and r2.content == r1.content
    assert total(clean) == 1
    # on a pass-through too (POST): the client gets the final answer
    r = requests.post(proxy.url + path, data=b"{}", timeout=15)
    assert r.status_code == 200 and r.headers["x-cache"] == "BYPASS"


def test_expect_100_continue_post_pass_through(proxy, clean):
    body = os.urandom(64 * 1024)
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(body)
    try:
        t0 = time.monotonic()
        # curl sends Expect: 100-continue for large bodies (asked explicitly here, whatever the curl
        # version's threshold); with a 20 s expect timeout, an answer
        # well under that means dexcache sent the 100 (or the final answer) without being waited on
        out = subprocess.run(["curl", "-sS", "-v", "--expect100-timeout", "20", "-X", "POST", "--data-binary",
                              "@" + f.name, "-H", "Content-Type: application/octet-stream",
                              "-H", "Expect: 100-continue",
                              proxy.url + "/jup/echo"], capture_output=True, timeout=60)
    finally:
        os.unlink(f.name)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert b"> Expect: 100-continue" in out.stderr
    assert took < 10, took
    import json
    j = json.loads(out.stdout)
    assert j["method"] == "POST" and j["body_len"] == len(body)
    assert j["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert "expect" not in j["headers"]  # hop-by-hop: never forwarded
    assert total(clean) == 1


def test_pragma_counts_only_without_cache_control(proxy, clean):
    """RFC 9111 5.4: Pragma: no-cache is ignored when the request has Cache-Control."""
    path = "/rev/respond?pragma=1"
    assert get(proxy, path).headers["x-cache"] == "MISS"
    r = get(proxy, path, "max-stale=5", headers={"Pragma": "no-cache"})
    assert r.headers["x-cache"] == "HIT", r.headers["cache-status"]
    r = get(proxy, path, headers={"Pragma": "no-cache"})
    assert r.headers["x-cache"] == "MISS" and "fwd=request" in r.headers["cache-status"]
    assert total(clean) == 2


def test_request_no_store_never_leads_the_shared_fetch(proxy, clean):
    """A no-store request on a cold key fetches for itself: a plain request arriving meanwhile
    leads its own (shared, stored) fetch instead of collapsing onto an answer that will not be
    stored, so a client sending no-store cannot keep a hot key uncached for everyone."""
    path = "/jup/respond?ns=lead"
    clean.gate("/respond")
    out = {}

    def one(name, cc):
        out[name] = get(proxy, path, cc)

    threads = [threading.Thread(target=one, args=("ns", "no-store")), threading.Thread(target=one, args=("plain", None))]
    try:
        threads[0].start()
        clean.wait_held(1)
        threads[1].start()
        clean.wait_held(2)  # the plain request did not wait on the no-store one: 2 origin requests
    finally:
        clean.release()
    for t in threads:
        t.join(30)
    assert "detail=client-no-store" in out["ns"].headers["cache-status"]
    assert out["plain"].headers["cache-status"] == "dexcache; fwd=miss; stored", out["plain"].headers["cache-status"]
    assert get(proxy, path).headers["x-cache"] == "HIT"
    assert total(clean) == 2
