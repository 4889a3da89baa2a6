"""Invalidation by unsafe methods (RFC 9111 §4.4) end to end: a successful POST/PUT/DELETE/PATCH
removes the stored answers of its target URI (by its normalised GET key) and of the Location /
Content-Location URIs of its answer on the same host and route; failures invalidate nothing; in a
fleet every instance drops them through the purge bus (real redis-server, two instances)."""
import time
from urllib.parse import quote

import requests

from dexcache import Dexcache, wait_for

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "s3cret" }}
%(redis)s
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 60s }}
  - prefix: /other
    upstream: jupiter
    cache:
      - {{ path: /respond, ttl: 60s }}
"""


def conf(fake, redis_url=None, prefix="dci:"):
    redis = 'redis: {{ url: "%s", prefix: "%s" }}' % (redis_url, prefix) if redis_url else ""
    return CONFIG % {"jup": fake.url("jup"), "redis": redis}


def h(name, value):
    return "h=" + quote("%s:%s" % (name, value), safe="")


def xc(d, path):
    return requests.get(d.url + path, timeout=15).headers["x-cache"]


def stored(d, path):
    """GET twice: MISS then HIT."""
    assert xc(d, path) == "MISS"
    assert xc(d, path) == "HIT"


def test_unsafe_methods_invalidate_the_target_uri(fake, origin):
    with Dexcache(conf(fake)) as d:
        for i, method in enumerate(("POST", "PUT", "DELETE", "PATCH")):
            path = "/jup/respond?b=%d&a=1" % i
            stored(d, path)
            # another spelling of the same key (parameter order): the key is normalised
            r = requests.request(method, d.url + "/jup/respond?a=1&b=%d" % i, data=b"x" * 10, timeout=15)
            assert r.status_code == 200 and r.headers["x-cache"] == "BYPASS"
            assert xc(d, path) == "MISS", method
            assert xc(d, path) == "HIT"
        # per method: GET, POST, GET = 3 upstream requests
        assert origin.stats()["jup"]["total"] == 12


def test_failed_or_safe_requests_invalidate_nothing(fake, origin):
    with Dexcache(conf(fake)) as d:
        stored(d, "/jup/respond?k=1")
        origin.add_rule("route=/respond,method=POST,status=503")
        assert requests.post(d.url + "/jup/respond?k=1", data=b"{}", timeout=15).status_code == 503
        assert requests.options(d.url + "/jup/respond?k=1", timeout=15).status_code in (200, 405)
        assert xc(d, "/jup/respond?k=1") == "HIT"
        origin.clear_rules()
        # 404 from the origin for a DELETE: not a success either
        assert requests.delete(d.url + "/jup/respond?k=1&status=404", timeout=15).status_code == 404
        assert xc(d, "/jup/respond?k=1") == "HIT"


def test_location_and_content_location_on_the_same_route(fake, origin):
    with Dexcache(conf(fake)) as d:
        for p in ("/jup/respond?id=5", "/jup/respond?id=6", "/jup/respond?id=7", "/jup/respond?id=8",
                  "/other/respond?id=9"):
            stored(d, p)
        up = fake.url("jup")  # http://127.0.0.1:PORT: the origin's own absolute URIs
        q = "&".join([h("Location", "/respond?id=5"),                 # origin path on this route
                      h("Content-Location", up + "/respond?id=6")])    # absolute, the origin's host
        r = requests.post(d.url + "/jup/respond?op=create&" + q, data=b"{}", timeout=15)
        assert r.status_code == 200
        assert xc(d, "/jup/respond?id=5") == "MISS"
        assert xc(d, "/jup/respond?id=6") == "MISS"
        # another host, or a URI whose route is another: untouched
        q = "&".join([h("Location", "http://elsewhere.example/respond?id=7"),
                      h("Content-Location", "/respond?id=9")])
        assert requests.put(d.url + "/jup/respond?op=update&" + q, data=b"{}", timeout=15).status_code == 200
        assert xc(d, "/jup/respond?id=7") == "HIT"
        assert xc(d, "/jup/respond?id=8") == "HIT"
        assert xc(d, "/other/respond?id=9") == "HIT"
        # a 303 with a relative Location (resolved against the request's upstream path)
        q = "status=303&" + h("Location", "respond?id=8")
        r = requests.post(d.url + "/jup/respond?" + q, data=b"{}", timeout=15, allow_redirects=False)
        assert r.status_code == 303
        assert xc(d, "/jup/respond?id=8") == "MISS"


def test_fleet_instances_drop_invalidated_entries(fake, origin, redis_server):
    c = conf(fake, redis_server.url, "dcinv:")
    a, b = Dexcache(c).start(), Dexcache(c).start()
    try:
        assert wait_for(lambda: all(x.metric("dexcache_bus_up") == 1 for x in (a, b)), timeout=10)
        path = "/jup/respond?fleet=1"
        stored(a, path)
        assert wait_for(lambda: redis_server.command("EXISTS", "dcinv:l2:GET " + path) == ":1")
        assert xc(b, path) == "HIT"  # from L2 into b's L1
        assert origin.stats()["jup"]["total"] == 1
        time.sleep(0.01)  # purge times are wall-clock ms: the copies are stored strictly before
        assert requests.delete(a.url + path, timeout=15).status_code == 200
        assert wait_for(lambda: b.metric("dexcache_bus_messages_total", direction="received") >= 1), \
            b.metric("dexcache_bus_messages_total", direction="received")
        assert xc(b, path) == "MISS"  # b's L1 dropped it, and the L2 copy is refused
        assert origin.stats()["jup"]["total"] == 3  # GET, DELETE, GET
        assert wait_for(lambda: xc(a, path) == "HIT")  # the new copy is good everywhere
        assert origin.stats()["jup"]["total"] == 3
    finally:
        a.stop()
        b.stop()
