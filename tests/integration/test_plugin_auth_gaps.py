"""Issue 16 gaps, in the real binary with the real auth plugin: limit tiers (a plugin-set tier selects
a rate, also across a fleet through Redis), auth refusals counted in /metrics by reason
(host->metric_add), an API key in the query string removed before the upstream and the cache key
(host->req_remove_query), the failed-auth flood protection (no signature check for a blocked
address), and the crash report naming the loaded plugins."""
import base64
import json
import os
import re
import signal
import time

import jwt as pyjwt
import pytest
import requests

from dexcache import BIN, ROOT, Dexcache, PREAMBLE, run_check, wait_for

AUTH_SO = os.path.join(os.path.dirname(BIN), "plugins", "auth.so")
TESTPLUG = os.path.join(os.path.dirname(BIN), "tests", "plugins", "testhooks.so")
TESTDATA = os.path.join(ROOT, "lua-free-plugins", "auth", "testdata")
SECRET = "integration-only-hmac-secret-0123456789abcdef"

pytestmark = pytest.mark.skipif(not os.path.exists(AUTH_SO), reason="plugins/auth.so is not built next to dexcache")


def read(name):
    with open(os.path.join(TESTDATA, name), "rb") as f:
        return f.read()


EC_PRIV = read("test-only-ec-p256-private.pem")


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def claims(**kw):
    now = int(time.time())
    c = {"sub": "alice", "exp": now + 600, "iat": now}
    c.update(kw)
    return c


def hs(**kw):
    return pyjwt.encode(claims(**kw), SECRET, algorithm="HS256")


def es(**kw):
    return pyjwt.encode(claims(**kw), EC_PRIV, algorithm="ES256")


def forged_es(i):
    """A well-formed ES256 token with a random signature: it costs a full signature check."""
    head = b64(b'{"alg":"ES256","typ":"JWT"}')
    return head + "." + b64(json.dumps(claims(sub="mallory-%d" % i)).encode()) + "." + b64(os.urandom(64))


def get(d, path, token=None, headers=None):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    return requests.get(d.url + path, headers=h, timeout=30)


def events(d, event, reason=""):
    return d.metric("dexcache_plugin_events_total", plugin="auth", event=event, reason=reason)


# ---- 1. tiers select a rate ----------------------------------------------------------------------

TIERS = PREAMBLE + """
server: {{ trusted_proxies: ["127.0.0.1/32"] }}
%(redis)s
upstreams:
  jupiter: {{ url: "%(jup)s" }}
plugins:
  - name: auth
    path: "%(so)s"
    config:
      jwt: {{ alg: HS256, secret: "%(secret)s", tier_claim: plan }}
routes:
  - prefix: /t
    upstream: jupiter
    plugins: [auth]
    limit: {{ rate: 5/1m, by: plugin, tiers: {{ pro: {{ rate: 600/1m, burst: 50 }}, trial: {{ rate: 3/1h }} }} }}
"""


def tiers_conf(fake, redis=None):
    return TIERS % {"jup": fake.url("jup"), "so": AUTH_SO, "secret": SECRET,
                    "redis": 'redis: {{ url: "%s", prefix: "dctiers:" }}' % redis.url if redis else ""}


def test_tier_selects_the_rate(fake, origin):
    with Dexcache(tiers_conf(fake)) as d:
        free = [get(d, "/t/echo", hs(sub="free-user")) for _ in range(6)]
        assert [r.status_code for r in free] == [200] * 5 + [429]
        assert free[0].headers["x-ratelimit-limit"] == "5"
        pro = [get(d, "/t/echo", hs(sub="pro-user", plan="pro")) for _ in range(20)]
        assert [r.status_code for r in pro] == [200] * 20
        assert pro[0].headers["x-ratelimit-limit"] == "600"
        assert pro[-1].headers["ratelimit-policy"] == '"client";q=600;w=60'
        trial = [get(d, "/t/echo", hs(sub="trial-user", plan="trial")).status_code for _ in range(4)]
        assert trial == [200, 200, 200, 429]
        # a tier the limit does not list falls back to the route's rate
        gold = [get(d, "/t/echo", hs(sub="gold-user", plan="gold")) for _ in range(6)]
        assert [r.status_code for r in gold] == [200] * 5 + [429]
        assert gold[0].headers["x-ratelimit-limit"] == "5"
        # the same user moved to pro is a bucket of its own (the tier is in the key)
        assert get(d, "/t/echo", hs(sub="free-user", plan="pro")).status_code == 200
        assert get(d, "/t/echo", hs(sub="free-user")).status_code == 429
        assert origin.stats()["jup"]["total"] == 5 + 20 + 3 + 5 + 1


def test_tier_rates_across_two_instances(fake, origin, redis_server):
    conf = tiers_conf(fake, redis_server)
    ds = [Dexcache(conf).start() for _ in range(2)]
    try:
        assert wait_for(lambda: all(d.health()["redis"] == "up" and d.health()["instances"] == 2 for d in ds),
                        timeout=10), [d.health() for d in ds]
        free = [get(ds[i % 2], "/t/echo", hs(sub="f1", iat=int(time.time()) - i)).status_code for i in range(8)]
        assert free == [200] * 5 + [429] * 3
        trial = [get(ds[i % 2], "/t/echo", hs(sub="t1", plan="trial")).status_code for i in range(6)]
        assert trial == [200] * 3 + [429] * 3
        pro = [get(ds[i % 2], "/t/echo", hs(sub="p1", plan="pro")) for i in range(20)]
        assert [r.status_code for r in pro] == [200] * 20
        assert {r.headers["x-ratelimit-limit"] for r in pro} == {"600"}
        assert origin.stats()["jup"]["total"] == 5 + 3 + 20
        assert ds[0].metric("dexcache_limit_fallbacks_total") == 0
    finally:
        for d in ds:
            d.stop()


def test_tier_config_errors():
    base = PREAMBLE.format(port=1, admin_port=2) + """
upstreams:
  jupiter: { url: "http://127.0.0.1:1" }
routes:
  - prefix: /x
    upstream: jupiter
    limit: { rate: 5/1m, by: %s,
             tiers: { pro: { rate: %s } } }
"""
    line = [i + 1 for i, l in enumerate(base.splitlines()) if "tiers:" in l][0]
    rc, out, path = run_check(base % ("plugin", "600/1m"))
    assert rc == 0, out
    rc, out, path = run_check(base % ("plugin", "600/fortnight"))
    assert rc == 1 and "%s:%d:36: routes[0].limit.tiers.pro.rate: expected a rate" % (path, line) in out, out
    rc, out, path = run_check(base % ("client", "600/1m"))
    assert rc == 1 and "%s:%d:" % (path, line) in out and "expected tiers only with by: plugin" in out, out


# ---- 2, 3, 4: metrics by reason, query keys, flood protection -----------------------------------

AUTH = PREAMBLE + """
server: {{ trusted_proxies: ["127.0.0.1/32"] }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
plugins:
  - name: auth
    path: "%(so)s"
    config:
      jwt: {{ alg: ES256, public_key_file: "%(ec)s" }}
      flood: {{ failures: 5, window: 1m, block: 3s }}
  - name: qkeys
    path: "%(so)s"
    config:
      api_keys: {{ query: api_key, keys: [ {{ key: qk-one-0123456789, id: one }}, {{ key: qk-two-0123456789, id: two }} ] }}
routes:
  - prefix: /a
    upstream: jupiter
    plugins: [auth]
  - prefix: /q
    upstream: jupiter
    plugins: [qkeys]
    cache: [ {{ path: /echo, ttl: 60s }} ]
"""


@pytest.fixture
def proxy(fake, origin):
    d = Dexcache(AUTH % {"jup": fake.url("jup"), "so": AUTH_SO,
                         "ec": os.path.join(TESTDATA, "test-ec-p256-public.pem")})
    d.start()
    yield d
    d.stop()


def test_refusals_counted_by_reason(proxy, origin):
    expired = es(exp=int(time.time()) - 100)
    seq = [(expired, 401), (expired, 401), (forged_es(1), 401), (None, 401), ("not.a-jwt", 401),
           (es(), 200)]
    # one keep-alive connection: one worker, whose refusal cache the repeated token must hit (the
    # token caches are per worker; on two connections the count depended on where they landed)
    with requests.Session() as s:
        for i, (tok, want) in enumerate(seq):
            # a new address for each: the flood protection stays out of this count
            h = {"X-Forwarded-For": "198.51.100.%d" % (i + 1)}
            if tok is not None:
                h["Authorization"] = "Bearer " + tok
            r = s.get(proxy.url + "/a/echo?%d" % i, headers=h, timeout=30)
            assert r.status_code == want, (i, r.status_code, r.text)
    assert events(proxy, "refused", "expired") == 2
    assert events(proxy, "refused", "bad_signature") == 1
    assert events(proxy, "refused", "missing") == 1
    assert events(proxy, "refused", "malformed") == 1
    assert events(proxy, "refused", "flood") == 0
    # the second expired token came from the refusal cache: 4 tokens were parsed and checked
    assert events(proxy, "jwt_checks") == 4
    r = get(proxy, "/q/echo", headers={"X-Forwarded-For": "198.51.100.50"})
    assert r.status_code == 401
    r = requests.get(proxy.url + "/q/echo?api_key=wrong", timeout=30)
    assert r.status_code == 401
    assert proxy.metric("dexcache_plugin_events_total", plugin="qkeys", event="refused", reason="unknown_key") == 1
    assert proxy.metric("dexcache_plugin_events_total", plugin="qkeys", event="refused", reason="missing") == 1
    assert origin.stats()["jup"]["total"] == 1


def test_query_key_never_reaches_upstream_nor_cache_key(proxy, origin):
    r1 = requests.get(proxy.url + "/q/echo?x=1&api_key=qk-one-0123456789&y=2", timeout=30)
    assert r1.status_code == 200, r1.text
    assert r1.headers["x-cache"] == "MISS"
    assert r1.json()["query"] == "x=1&y=2"
    # another client, another key, the key elsewhere in the query: the same shared answer
    r2 = requests.get(proxy.url + "/q/echo?api_key=qk-two-0123456789&x=1&y=2", timeout=30)
    assert r2.status_code == 200 and r2.headers["x-cache"] == "HIT"
    assert r2.content == r1.content
    # the key alone: the upstream URL loses its '?'
    r3 = requests.get(proxy.url + "/q/echo?api_key=qk-one-0123456789", timeout=30)
    assert r3.status_code == 200 and r3.json()["query"] == ""
    seen = [r for r in origin.requests(0)]
    assert len(seen) == 2
    for r in seen:
        assert "api_key" not in r["raw_query"] and "qk-" not in json.dumps(r), r
    assert sorted(r["raw_query"] for r in seen) == ["", "x=1&y=2"]


def test_flood_of_forged_tokens_is_refused_without_verification(proxy, origin):
    a = {"X-Forwarded-For": "203.0.113.7"}
    b = {"X-Forwarded-For": "203.0.113.8"}
    for i in range(5):
        r = get(proxy, "/a/echo", forged_es(i), headers=a)
        assert r.status_code == 401, (i, r.text)
    assert events(proxy, "jwt_checks") == 5
    assert events(proxy, "flood_blocks") == 1
    r = get(proxy, "/a/echo", forged_es(99), headers=a)
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 3
    assert r.json()["error"] == "too many failed authentication attempts from this address"
    assert r.json()["request_id"] == r.headers["x-request-id"]
    # no signature was checked for it, nor for a valid token from the blocked address
    assert get(proxy, "/a/echo", es(sub="bob"), headers=a).status_code == 429
    assert events(proxy, "jwt_checks") == 5
    assert events(proxy, "refused", "flood") == 2
    # a request without a credential is not gated (it costs nothing): a plain 401
    assert get(proxy, "/a/echo", headers=a).status_code == 401
    # another address is unaffected
    assert get(proxy, "/a/echo", forged_es(100), headers=b).status_code == 401
    assert get(proxy, "/a/echo?b", es(sub="carol"), headers=b).status_code == 200
    assert events(proxy, "jwt_checks") == 7
    # once the block is over, a valid token from the first address passes
    assert wait_for(lambda: get(proxy, "/a/echo?after", es(sub="bob"), headers=a).status_code == 200,
                    timeout=15, step=0.25)
    assert origin.stats()["jup"]["total"] == 2


# ---- 5. crash report -----------------------------------------------------------------------------

CRASH = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s" }}
plugins:
  - {{ name: crashy, path: "%(tp)s", config: {{ crash_header: x-crash }} }}
  - {{ name: auth, path: "%(so)s", config: {{ jwt: {{ alg: HS256, secret: "%(secret)s" }} }} }}
routes:
  - {{ prefix: /c, upstream: jupiter, plugins: [crashy] }}
"""


def _abi():
    text = open(os.path.join(os.path.dirname(__file__), "../../lua-free-plugins/include/dexcache/plugin.h")).read()
    return (int(re.search(r"#define DEXCACHE_PLUGIN_ABI_MAJOR (\d+)", text).group(1)),
            int(re.search(r"#define DEXCACHE_PLUGIN_ABI_MINOR (\d+)", text).group(1)))


ABI = _abi()


@pytest.mark.parametrize("what,sig", [("segv", signal.SIGSEGV), ("abort", signal.SIGABRT),
                                      ("bus", signal.SIGBUS), ("fpe", signal.SIGFPE)])
def test_crash_report_names_plugins(fake, origin, what, sig):
    d = Dexcache(CRASH % {"jup": fake.url("jup"), "tp": TESTPLUG, "so": AUTH_SO, "secret": SECRET})
    d.start()
    try:
        assert get(d, "/c/echo").status_code == 200
        with pytest.raises(requests.RequestException):
            get(d, "/c/echo", headers={"x-crash": what})
        d.proc.wait(20)
        assert d.proc.returncode == -sig, (d.proc.returncode, d.stderr())
        err = d.stderr()
        assert "dexcache crash: signal %d (%s)" % (sig, signal.Signals(sig).name) in err, err
        assert "dexcache 0.1.0 (plugin ABI 1." in err, err
        assert "plugin crashy: testhooks 0.3.1 (ABI 1." in err and os.path.realpath(TESTPLUG) in err, err
        assert "plugin auth: auth 1.1.0 (ABI %d.%d, %s)" % (ABI + (os.path.realpath(AUTH_SO),)) in err, err
        assert "backtrace:" in err and "end of dexcache crash report" in err, err
        # frames: the plugins run from private copies (/proc/self/fd/N), named by their files
        frames = err[err.index("backtrace:\n"):err.index("end of dexcache crash report")].splitlines()[1:]
        assert len(frames) >= 3, err
        assert any(f.startswith(os.path.realpath(TESTPLUG) + "(") for f in frames), err
        assert "/proc/self/fd" not in err, err
    finally:
        d.stop()


QLOG = """listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: "{access_log}", format: %(format)s }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
plugins:
  - name: qkeys
    path: "%(so)s"
    config:
      api_keys: {{ query: api_key, keys: [ {{ key: qk-one-0123456789, id: one }} ] }}
routes:
  - prefix: /q
    upstream: jupiter
    plugins: [qkeys]
    cache: [ {{ path: /echo, ttl: 60s }} ]
"""


@pytest.mark.parametrize("fmt", ["kv", "json", "combined"])
def test_query_key_is_redacted_in_the_access_log(fake, origin, fmt):
    """A key sent in the query is a credential: the access log shows REDACTED in its place, for an
    accepted key, a refused one and a percent-encoded parameter name alike; the other parameters
    keep their bytes."""
    with Dexcache(QLOG % {"jup": fake.url("jup"), "so": AUTH_SO, "format": fmt}) as d:
        want = [("/q/echo?x=1&api_key=qk-one-0123456789&y=2", 200),
                ("/q/echo?api_key=qk-wrong-secret-42", 401),
                ("/q/echo?api%5Fkey=qk-one-0123456789", 200),
                ("/q/echo?api_key=", 401)]
        for path, status in want:
            assert requests.get(d.url + path, timeout=30).status_code == status, path
        assert wait_for(lambda: len(d.access_lines()) == len(want), timeout=10), d.access_lines()
        lines = d.access_lines()
        text = "\n".join(lines)
        assert "qk-" not in text, text
        assert "/q/echo?x=1&api_key=REDACTED&y=2" in lines[0]
        assert "/q/echo?api_key=REDACTED" in lines[1]
        assert re.search(r"/q/echo\?api(_|%5F)key=REDACTED", lines[2]), lines[2]  # h2o may decode %5F
        assert "/q/echo?api_key=" in lines[3] and "REDACTED" not in lines[3]  # nothing to hide
