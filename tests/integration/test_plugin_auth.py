"""The `auth` plugin (lua-free-plugins/auth) in the real binary: API keys and JWT (HS256, RS256 from a
JWKS, ES256 from a PEM) in front of the fake origin. Refusals are 401 with an RFC 6750 challenge (or
403), a JSON error with the request id, never cached and never sent upstream; valid credentials get
200 and the upstream never sees them; the verified identity drives `limit: {by: plugin}`; keys
rotate on SIGHUP; a bad auth config fails `dexcache -t`.

Tokens are minted here with PyJWT and the throwaway keys of lua-free-plugins/auth/testdata."""
import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import time

import jwt as pyjwt
import pytest
import requests

from dexcache import BIN, ROOT, Dexcache, PREAMBLE, run_check, wait_for

AUTH_SO = os.path.join(os.path.dirname(BIN), "plugins", "auth.so")
TESTDATA = os.path.join(ROOT, "lua-free-plugins", "auth", "testdata")
SECRET = "integration-only-hmac-secret-0123456789abcdef"
ISS = "https://issuer.test"

pytestmark = pytest.mark.skipif(not os.path.exists(AUTH_SO), reason="plugins/auth.so is not built next to dexcache")


def read(name):
    with open(os.path.join(TESTDATA, name), "rb") as f:
        return f.read()


RSA_PRIV = read("test-only-rsa2048-private.pem")
RSA_PUB = read("test-rsa2048-public.pem")
EC_PRIV = read("test-only-ec-p256-private.pem")


def claims(**kw):
    now = int(time.time())
    c = {"sub": "alice", "iss": ISS, "aud": "dexcache", "exp": now + 600, "iat": now}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def hs(c=None, secret=SECRET, headers=None):
    return pyjwt.encode(c or claims(), secret, algorithm="HS256", headers=headers)


def rs(c=None, kid="rsa-a"):
    return pyjwt.encode(c or claims(), RSA_PRIV, algorithm="RS256", headers={"kid": kid})


def es(c=None):
    return pyjwt.encode(c or claims(), EC_PRIV, algorithm="ES256")


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


CONFIG = PREAMBLE + """
server: {{ trusted_proxies: ["127.0.0.1/32"] }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
plugins:
  - name: auth_hs
    path: "%(so)s"
    config:
      jwt: {{ alg: HS256, secret: "${{DC_TEST_JWT_SECRET}}", leeway: 30s, iss: "%(iss)s", aud: dexcache }}
  - name: auth_rs
    path: "%(so)s"
    config:
      jwt: {{ alg: RS256, jwks_file: jwks.json, iss: "%(iss)s", aud: [other, dexcache] }}
  - name: auth_es
    path: "%(so)s"
    config:
      jwt: {{ alg: ES256, public_key_file: ec.pem, tier_claim: plan }}
      tiers: {{ pro: pro, free: free }}
      default_tier: free
  - name: auth_keys
    path: "%(so)s"
    config:
      api_keys: {{ header: x-client-key, file: keys.txt }}
routes:
  - prefix: /hs
    upstream: jupiter
    plugins: [auth_hs]
    cache: [ {{ path: /echo, ttl: 60s, public: true }} ]
  - prefix: /rs
    upstream: jupiter
    plugins: [auth_rs]
  - prefix: /es
    upstream: jupiter
    plugins: [auth_es]
  - prefix: /keys
    upstream: jupiter
    plugins: [auth_keys]
    limit: {{ rate: 3/1m, burst: 3, by: plugin }}
  - prefix: /users
    upstream: jupiter
    plugins: [auth_hs]
    limit: {{ rate: 3/1m, burst: 3, by: plugin }}
"""


def write_keys(d, lines):
    with open(os.path.join(d.workdir, "keys.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def start(fake, keys=("key-alpha alpha pro", "key-beta beta")):
    d = Dexcache(CONFIG % {"jup": fake.url("jup"), "so": AUTH_SO, "iss": ISS},
                 env={"DC_TEST_JWT_SECRET": SECRET})
    shutil.copy(os.path.join(TESTDATA, "test-jwks.json"), os.path.join(d.workdir, "jwks.json"))
    shutil.copy(os.path.join(TESTDATA, "test-ec-p256-public.pem"), os.path.join(d.workdir, "ec.pem"))
    write_keys(d, keys)
    return d.start()


@pytest.fixture
def proxy(fake, origin):
    d = start(fake)
    yield d
    d.stop()


def get(d, path, token=None, headers=None, **kw):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    return requests.get(d.url + path, headers=h, timeout=30, **kw)


def assert_401(r, description=None):
    assert r.status_code == 401, (r.status_code, r.text)
    if description is None:
        assert r.headers["www-authenticate"] == 'Bearer realm="dexcache"'
    else:
        assert r.headers["www-authenticate"] == (
            'Bearer realm="dexcache", error="invalid_token", error_description="%s"' % description)
    body = r.json()
    assert body["status"] == 401 and body["request_id"] == r.headers["x-request-id"]
    assert body["error"].startswith("unauthorized: ")
    assert "x-cache" not in r.headers or r.headers["x-cache"] != "HIT"


def test_refusals_are_401_and_never_reach_upstream(proxy, origin):
    tok = hs()
    head, payload, sig = tok.split(".")
    forged_payload = b64(json.dumps(claims(sub="mallory")).encode())
    bad_sig = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]
    none_tok = b64(b'{"alg":"none","typ":"JWT"}') + "." + payload + "."
    cases = [
        (hs(claims(exp=int(time.time()) - 100)), "the token has expired"),
        (hs(claims(nbf=int(time.time()) + 3600)), "the token is not valid yet"),
        (hs(claims(iss="https://evil.test")), "the token issuer is not accepted"),
        (hs(claims(aud="someone-else")), "the token audience is not accepted"),
        (head + "." + forged_payload + "." + sig, "the token signature is invalid"),
        (head + "." + payload + "." + bad_sig, "the token signature is invalid"),
        (none_tok, "the token is not a well-formed JWT"),
        (b64(b'{"alg":"none"}') + "." + payload + "." + sig, "the token is not signed with the accepted algorithm"),
        (hs(secret="another-secret-of-enough-length-0123456789"), "the token signature is invalid"),
        (rs(), "the token is not signed with the accepted algorithm"),
        (head + "=." + payload + "." + sig, "the token is not a well-formed JWT"),
        (head + "." + payload.replace("e", "+", 1) + "." + sig, "the token is not a well-formed JWT"),
        (head + "." + payload, "the token is not a well-formed JWT"),
        (head + "." + payload + "." + sig + "." + sig, "the token is not a well-formed JWT"),
        ("A" * 9000, "the token is not a well-formed JWT"),
    ]
    for token, desc in cases:
        assert_401(get(proxy, "/hs/echo", token), desc)
    # no credential at all, or another scheme: a bare challenge
    assert_401(get(proxy, "/hs/echo"))
    assert_401(get(proxy, "/hs/echo", headers={"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}))
    # RS256 route: an HS256 token whose secret is the RSA public key's PEM text
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims()).encode())
    hs_pub = signing_input + "." + b64(hmac.new(RSA_PUB, signing_input.encode(), hashlib.sha256).digest())
    assert_401(get(proxy, "/rs/echo", hs_pub), "the token is not signed with the accepted algorithm")
    assert_401(get(proxy, "/rs/echo", rs(kid="rsa-unknown")), "no accepted key matches the token")
    # API keys
    assert_401(get(proxy, "/keys/echo", headers={"x-client-key": "key-gamma"}), "the API key is not valid")
    assert_401(get(proxy, "/keys/echo"))
    assert origin.stats()["jup"]["total"] == 0


def test_valid_credentials_each_algorithm(proxy, origin):
    for path, token in (("/hs/echo", hs()), ("/rs/echo?a=1", rs()),
                        ("/rs/echo?a=2", pyjwt.encode(claims(), read("test-only-rsa2048-b-private.pem"),
                                                      algorithm="RS256", headers={"kid": "rsa-b"})),
                        ("/es/echo", es())):
        r = get(proxy, path, token)
        assert r.status_code == 200, (path, r.status_code, r.text)
        seen = r.json()["headers"]
        assert "authorization" not in seen, (path, seen)
        assert token not in json.dumps(seen)
    r = get(proxy, "/keys/echo", headers={"x-client-key": "key-alpha"})
    assert r.status_code == 200
    assert "x-client-key" not in r.json()["headers"]
    assert "key-alpha" not in json.dumps(r.json())


def test_upstream_never_sees_token_on_pass_through(proxy, origin):
    """A POST is never cached: it is relayed with the client's headers, which must not include the
    credential the plugin consumed (needs a host function to drop it, see the h16-auth report)."""
    token = es()
    r = requests.post(proxy.url + "/es/echo", data=b"{}", timeout=30,
                      headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    assert r.status_code == 200
    assert "authorization" not in r.json()["headers"]
    r = requests.post(proxy.url + "/keys/echo", data=b"{}", timeout=30, headers={"x-client-key": "key-beta"})
    assert r.status_code == 200
    assert "x-client-key" not in r.json()["headers"]


def test_auth_runs_before_the_cache(proxy, origin):
    token = hs()
    r1 = get(proxy, "/hs/echo?x=1", token)
    r2 = get(proxy, "/hs/echo?x=1", token)
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert r1.headers["x-cache"] == "MISS" and r2.headers["x-cache"] == "HIT"
    # the stored answer exists, and still nobody without a valid token gets it
    assert_401(get(proxy, "/hs/echo?x=1"))
    assert_401(get(proxy, "/hs/echo?x=1", hs(claims(exp=int(time.time()) - 100))), "the token has expired")
    # a 401 is never stored: the next valid request is a HIT of the first answer, not of a 401
    r3 = get(proxy, "/hs/echo?x=1", token)
    assert r3.status_code == 200 and r3.headers["x-cache"] == "HIT"
    assert origin.stats()["jup"]["total"] == 1


def test_per_user_limit_follows_the_token(proxy, origin):
    """limit.by: plugin counts the token's subject, whatever address the requests come from (the
    proxy trusts 127.0.0.1's X-Forwarded-For here) and whichever token of that user is used."""
    codes = []
    for i in range(4):
        t = hs(claims(sub="user-42", iat=int(time.time()) - i))  # four distinct tokens, one user
        r = get(proxy, "/users/echo", t, headers={"X-Forwarded-For": "203.0.113.%d" % (i + 1)})
        codes.append(r.status_code)
    assert codes == [200, 200, 200, 429]
    # another user has a bucket of their own
    assert get(proxy, "/users/echo", hs(claims(sub="user-43")),
               headers={"X-Forwarded-For": "203.0.113.1"}).status_code == 200
    # API keys: the key id is the identity
    a = [get(proxy, "/keys/echo", headers={"x-client-key": "key-alpha"}).status_code for _ in range(4)]
    b = get(proxy, "/keys/echo", headers={"x-client-key": "key-beta"}).status_code
    assert a == [200, 200, 200, 429] and b == 200


def test_ten_thousand_keys_and_rotation_on_sighup(fake, origin):
    rng = random.Random(16)
    keys = ["sk_%032x" % rng.getrandbits(128) for _ in range(10000)]
    d = start(fake, keys=["%s id%d" % (k, i) for i, k in enumerate(keys)])
    try:
        for i in rng.sample(range(10000), 20):
            r = get(d, "/keys/echo?i=%d" % i, headers={"x-client-key": keys[i]})
            assert r.status_code == 200, (i, r.text)
        assert_401(get(d, "/keys/echo", headers={"x-client-key": keys[0][:-1] + "x"}), "the API key is not valid")
        # rotation: keys 0..4999 go, one new key comes; a SIGHUP rebuilds the instance
        write_keys(d, ["%s id%d" % (k, i) for i, k in enumerate(keys) if i >= 5000] + ["sk_new id-new"])
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: get(d, "/keys/echo?new", headers={"x-client-key": "sk_new"}).status_code == 200,
                        timeout=20)
        assert_401(get(d, "/keys/echo", headers={"x-client-key": keys[1]}), "the API key is not valid")
        assert get(d, "/keys/echo?k=9999", headers={"x-client-key": keys[9999]}).status_code == 200
        # a broken keys file on SIGHUP: the reload is refused and the keys in force stay
        write_keys(d, ["a b c d e"])
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: "keys.txt:1" in d.stderr(), timeout=20), d.stderr()
        assert get(d, "/keys/echo?after-bad", headers={"x-client-key": "sk_new"}).status_code == 200
    finally:
        d.stop()


def test_bad_auth_config_fails_the_check():
    base = PREAMBLE.format(port=1, admin_port=2) + """
upstreams:
  jupiter: { url: "http://127.0.0.1:1" }
plugins:
  - name: auth
    path: "%s"
    config:
      jwt: %s
routes:
  - { prefix: /x, upstream: jupiter, plugins: [auth] }
"""
    for jwt_conf, want in (
            ('{ alg: none, secret: "%s" }' % SECRET, "none is never accepted"),
            ('{ alg: HS256, public_key_file: "%s" }' % os.path.join(TESTDATA, "test-rsa2048-public.pem"),
             "an HS secret must never be a public key"),
            ('{ alg: HS256, secret: short }', "at least 32 are required"),
            ('{ alg: ES256, public_key_file: "%s" }' % os.path.join(TESTDATA, "test-rsa2048-public.pem"),
             "P-256"),
            ('{ alg: RS256, jwks_file: /nonexistent/jwks.json }', "/nonexistent/jwks.json"),
            ('{ alg: HS256, secret: "%s", bogus: 1 }' % SECRET, "bogus")):
        rc, out, path = run_check(base % (AUTH_SO, jwt_conf))
        assert rc == 1, out
        assert want in out, out
        assert path + ":" in out, out  # errors name the config file (file:line:col)


def test_tier_not_admitted_is_403_and_tier_claim_maps(proxy, origin):
    r = get(proxy, "/es/echo", es(claims(plan="gold")))
    assert r.status_code == 403
    assert "www-authenticate" not in r.headers
    assert r.json() == {"error": "forbidden: this credential's tier may not use this route", "status": 403,
                        "request_id": r.headers["x-request-id"]}
    assert get(proxy, "/es/echo", es(claims(plan="pro"))).status_code == 200
    assert get(proxy, "/es/echo", es()).status_code == 200  # no plan: default_tier free, admitted
    assert origin.stats()["jup"]["total"] == 2


def test_jwks_rotation_on_sighup(fake, origin):
    d = start(fake)
    try:
        a = rs(kid="rsa-a")
        b = pyjwt.encode(claims(), read("test-only-rsa2048-b-private.pem"), algorithm="RS256", headers={"kid": "rsa-b"})
        assert get(d, "/rs/echo?1", a).status_code == 200
        assert get(d, "/rs/echo?2", b).status_code == 200
        # key rsa-a is withdrawn from the JWK Set: a SIGHUP builds a new instance without it (and with
        # fresh token caches, so the token verified above is not served from a cache either)
        jwks = json.loads(read("test-jwks.json"))
        jwks["keys"] = [k for k in jwks["keys"] if k["kid"] != "rsa-a"]
        with open(os.path.join(d.workdir, "jwks.json"), "w") as f:
            json.dump(jwks, f)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: get(d, "/rs/echo?3", a).status_code == 401, timeout=20)
        assert_401(get(d, "/rs/echo?4", a), "no accepted key matches the token")
        assert get(d, "/rs/echo?5", b).status_code == 200
    finally:
        d.stop()


FLEET = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dctest:" }}
server: {{ trusted_proxies: ["127.0.0.1/32"] }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
plugins:
  - name: auth
    path: "%(so)s"
    config:
      jwt: {{ alg: HS256, secret: "%(secret)s" }}
routes:
  - prefix: /users
    upstream: jupiter
    plugins: [auth]
    limit: {{ rate: 6/10s, burst: 6, by: plugin }}
"""


def test_per_user_limit_across_three_instances(fake, origin, redis_server):
    conf = FLEET % {"jup": fake.url("jup"), "redis": redis_server.url, "so": AUTH_SO, "secret": SECRET}
    ds = [Dexcache(conf).start() for _ in range(3)]
    try:
        assert wait_for(lambda: all(d.health()["redis"] == "up" and d.health()["instances"] == 3 for d in ds),
                        timeout=10), [d.health() for d in ds]
        codes = []
        for i in range(12):  # one user, a new token and a new address each time, round-robin over 3
            t = hs(claims(sub="user-7", iat=int(time.time()) - i))
            r = get(ds[i % 3], "/users/echo", t, headers={"X-Forwarded-For": "198.51.100.%d" % (i + 1)})
            codes.append(r.status_code)
        assert codes == [200] * 6 + [429] * 6
        assert origin.stats()["jup"]["total"] == 6
        assert get(ds[2], "/users/echo", hs(claims(sub="user-8"))).status_code == 200
        assert ds[0].metric("dexcache_limit_fallbacks_total") == 0
    finally:
        for d in ds:
            d.stop()
