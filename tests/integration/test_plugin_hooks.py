"""Plugin hooks in the request path, with the real binary, the test plugin (tests/plugins/testplug.c)
and the fake origin: on_request answering 401 itself (never cached, never upstream), cache_key,
on_deliver on hits and misses, limit.by: plugin, a removed request header, and suspend / resume:
from another thread, after the client left (HTTP/1 close, HTTP/2 RST_STREAM), and never (504 at
the route's deadline)."""
import json
import os
import socket

import requests

from dexcache import BIN, Dexcache, wait_for
from h2client import H2

PLUGDIR = os.path.join(os.path.dirname(BIN), "tests", "plugins")
TESTHOOKS = os.path.join(PLUGDIR, "testhooks.so")

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: off }}
upstreams:
  jupiter: {{ url: "%(jup)s", timeout: %(timeout)s, retries: 0 }}
  short: {{ url: "%(jup)s", timeout: 300ms, retries: 0 }}
plugins:
  - name: auth
    path: %(so)s
    config: {{ deny: {{ header: x-key, value: sesame }}, strip_header: x-key }}
  - name: tenant
    path: %(so)s
    config: {{ key_header: x-tenant, deliver: {{ name: x-plugin, value: "yes" }} }}
  - name: who
    path: %(so)s
    config: {{ identity_header: x-user }}
  - name: waits
    path: %(so)s
    config: {{ suspend: thread, delay: %(delay)s }}
  - name: never
    path: %(so)s
    config: {{ suspend: never }}
  - name: late
    path: %(so)s
    config: {{ suspend: thread, delay: 1s }}
routes:
  - prefix: /auth
    upstream: jupiter
    plugins: [auth, tenant]
    cache: [{{ path: /echo, ttl: 60s }}]
  - prefix: /tenant
    upstream: jupiter
    plugins: [tenant]
    cache: [{{ path: /echo, ttl: 60s }}]
  - prefix: /limited
    upstream: jupiter
    plugins: [who]
    limit: {{ rate: 2/1m, by: plugin }}
  - prefix: /wait
    upstream: jupiter
    plugins: [waits, tenant]
    cache: [{{ path: /echo, ttl: 60s }}]
  - prefix: /never
    upstream: jupiter
    plugins: [never]
  - prefix: /late
    upstream: short
    plugins: [late]
  - prefix: /plain
    upstream: jupiter
    cache: [{{ path: /echo, ttl: 60s }}]
"""


def cfg(fake, timeout="10s", delay="100ms"):
    return CONFIG % {"jup": fake.url("jup"), "so": TESTHOOKS, "timeout": timeout, "delay": delay}


def upstream_count(origin):
    return origin.stats()["jup"]["total"]


def test_on_request_answers_401_never_cached_never_upstream(fake, origin):
    with Dexcache(cfg(fake)) as d:
        r = requests.get(d.url + "/auth/echo?a=1", timeout=10)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert r.headers["cache-control"] == "no-store"
        assert "x-plugin" not in r.headers  # no on_deliver on a plugin's own answer
        body = r.json()
        assert body["status"] == 401 and body["error"] == "missing or bad key"
        assert body["request_id"] == r.headers["x-request-id"]
        assert requests.get(d.url + "/auth/echo?a=1", headers={"x-key": "wrong"}, timeout=10).status_code == 401
        assert upstream_count(origin) == 0
        ok = requests.get(d.url + "/auth/echo?a=1", headers={"x-key": "sesame"}, timeout=10)
        assert ok.status_code == 200 and ok.headers["x-cache"] == "MISS"
        assert "x-key" not in ok.json()["headers"]  # removed by the plugin: the origin never saw it
        hit = requests.get(d.url + "/auth/echo?a=1", headers={"x-key": "sesame"}, timeout=10)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
        # the entry is warm: a client without the key still gets no hit
        again = requests.get(d.url + "/auth/echo?a=1", timeout=10)
        assert again.status_code == 401 and again.headers.get("x-cache") != "HIT"
        assert upstream_count(origin) == 1


def test_cache_key_bytes_split_answers(fake, origin):
    with Dexcache(cfg(fake)) as d:
        a1 = requests.get(d.url + "/tenant/echo?q=1", headers={"x-tenant": "alpha"}, timeout=10)
        b1 = requests.get(d.url + "/tenant/echo?q=1", headers={"x-tenant": "beta"}, timeout=10)
        a2 = requests.get(d.url + "/tenant/echo?q=1", headers={"x-tenant": "alpha"}, timeout=10)
        b2 = requests.get(d.url + "/tenant/echo?q=1", headers={"x-tenant": "beta"}, timeout=10)
        assert [r.headers["x-cache"] for r in (a1, b1, a2, b2)] == ["MISS", "MISS", "HIT", "HIT"]
        assert upstream_count(origin) == 2
        # without the header: the plain key (a third entry)
        n = requests.get(d.url + "/tenant/echo?q=1", timeout=10)
        assert n.headers["x-cache"] == "MISS" and upstream_count(origin) == 3


def test_on_deliver_on_hits_misses_and_errors(fake, origin):
    with Dexcache(cfg(fake)) as d:
        miss = requests.get(d.url + "/tenant/echo?d=1", timeout=10)
        hit = requests.get(d.url + "/tenant/echo?d=1", timeout=10)
        for r, xc in ((miss, "MISS"), (hit, "HIT")):
            assert r.status_code == 200 and r.headers["x-cache"] == xc
            assert r.headers["x-plugin"] == "yes" and r.headers["x-plugin-status"] == "200"
        nf = requests.get(d.url + "/tenant/nope", timeout=10)  # the origin's 404, passed through
        assert nf.status_code == 404 and nf.headers["x-plugin-status"] == "404"
        plain = requests.get(d.url + "/plain/echo?d=1", timeout=10)  # a route without plugins
        assert plain.status_code == 200 and "x-plugin" not in plain.headers


def test_limit_by_plugin_identity(fake, origin):
    with Dexcache(cfg(fake)) as d:
        def get(user=None):
            h = {"x-user": user} if user else {}
            return requests.get(d.url + "/limited/echo", headers=h, timeout=10).status_code
        assert [get("alice") for _ in range(3)] == [200, 200, 429]
        assert [get("bob") for _ in range(3)] == [200, 200, 429]
        # no identity set: limited by the client IP, a bucket of its own
        assert [get() for _ in range(3)] == [200, 200, 429]
        assert get("alice") == 429


def test_suspend_resumes_from_another_thread(fake, origin):
    with Dexcache(cfg(fake)) as d:
        r = requests.get(d.url + "/wait/echo?s=1", timeout=10)
        assert r.status_code == 200 and r.headers["x-resumed"] == "thread"
        assert r.headers["x-plugin"] == "yes" and r.headers["x-cache"] == "MISS"
        r2 = requests.get(d.url + "/wait/echo?s=1", timeout=10)
        assert r2.status_code == 200 and r2.headers["x-cache"] == "HIT" and r2.headers["x-resumed"] == "thread"
        assert upstream_count(origin) == 1


def gone_lines(d):
    return d.stderr().count("plugin testhooks: resumed after the request was gone")


def test_resume_after_the_client_left_is_dropped(fake, origin):
    with Dexcache(cfg(fake, delay="700ms")) as d:
        # HTTP/2: RST_STREAM on the suspended stream (h2o disposes of the request at once); another
        # stream on the connection goes on
        h2 = H2(d.port)
        try:
            sid = h2.get("/wait/echo?gone=1")
            h2.reset(sid)
            sid2 = h2.get("/tenant/echo?after=1")
            assert h2.wait_ended([sid2]) == {sid2: "200"}
            assert wait_for(lambda: gone_lines(d) == 1, timeout=15)
        finally:
            h2.close()
        # HTTP/1: h2o notices a closed client only when it writes; the route's deadline (300ms)
        # writes the 504 into the closed socket, the request goes, the resume (1s) comes after
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(b"GET /late/echo?gone=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
        assert wait_for(lambda: gone_lines(d) == 2, timeout=15)
        # a client that stays gets the 504, and its late resume is dropped too
        r = requests.get(d.url + "/late/echo?gone=3", timeout=10)
        assert r.status_code == 504 and r.json()["error"] == "plugin late did not answer in time"
        assert wait_for(lambda: gone_lines(d) == 3, timeout=15)
        assert upstream_count(origin) == 1  # only /tenant/echo?after=1
        r = requests.get(d.url + "/wait/echo?gone=4", timeout=10)
        assert r.status_code == 200 and r.headers["x-resumed"] == "thread"
        assert upstream_count(origin) == 2


def test_never_resumed_gets_the_route_deadline_504(fake, origin):
    with Dexcache(cfg(fake, timeout="1s")) as d:
        r = requests.get(d.url + "/never/echo", timeout=15)
        assert r.status_code == 504
        assert r.json()["error"] == "plugin never did not answer in time"
        assert r.elapsed.total_seconds() >= 0.9
        assert upstream_count(origin) == 0
        # HTTP/2 as well, while the first handle is still outstanding
        h2 = H2(d.port)
        try:
            sid = h2.get("/never/echo")
            assert h2.wait_ended([sid]) == {sid: "504"}
            assert json.loads(h2.bodies[sid])["status"] == 504
        finally:
            h2.close()
    # stop() asserted no sanitizer report: the never-resumed handles were released at exit
