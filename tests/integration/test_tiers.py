"""Tiers and failover, the retry budget, cordon (issue 17, "Tiers and failover").

One fake origin process with two jup listeners, `jup_a` (tier 1) and `jup_b` (tier 2): the fake
counts every request per listener, so each test asserts exactly which origin saw what. Rules aimed
at one tier use the listener name as `profile` (a rule's profile matches the listener name or its
base profile, and the base profile `jup` would match both)."""
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import requests

from dexcache import Dexcache, wait_for
from fake import FakeOrigin

TOKEN = "tiers-admin-token"

CONFIG = """listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}", token: "%(token)s" }}
log: {{ access: "{access_log}", level: info }}
upstreams:
  jupiter:
    tiers:
      - {{ url: "%(t1)s" }}
      - {{ url: "%(t2)s" }}
    retries: %(retries)d
    retry_backoff: 20ms
    connect_timeout: 1s
    timeout: 3s
    attempt_timeout: %(attempt_timeout)s
    breaker: {{ failures: %(failures)d, backoff: 1s, max_backoff: 2s }}
    retry_budget: {{ percent: %(percent)d, min_concurrency: %(min_conc)d }}
routes:
  - prefix: /jup
    upstream: jupiter
    no_cache: [/swap/]
    cache:
      - {{ path: /price/v3, ttl: 30s }}
      - {{ path: /tokens/v2, ttl: 30s, validate: json }}
      - {{ path: /respond, ttl: 30s, fail_statuses: [404] }}
"""


def config(fo, retries=0, failures=1000, percent=20, min_conc=3, attempt_timeout="0"):
    return CONFIG % {"token": TOKEN, "t1": fo.url("jup_a"), "t2": fo.url("jup_b"), "retries": retries,
                     "failures": failures, "percent": percent, "min_conc": min_conc,
                     "attempt_timeout": attempt_timeout}


@pytest.fixture
def fo():
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup_a", "jup_b")) as f:
        yield f


def totals(fo):
    st = fo.stats()
    return st.get("jup_a", {}).get("total", 0), st.get("jup_b", {}).get("total", 0)


def admin_post(d, path, token=TOKEN):
    req = urllib.request.Request(d.admin_url + path, data=b"", method="POST",
                                 headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def tier_health(d, n):
    return d.health()["upstreams"]["jupiter"]["tiers"][n - 1]


def access_line(d, rid):
    found = []
    wait_for(lambda: found.extend(l for l in d.access_lines() if ("rid=" + rid) in l) or found, timeout=10)
    return found[0]


def test_tier1_refused_tier2_answers(fo):
    """Tier 1's listener is closed: the request is answered by tier 2 within the deadline, once;
    Cache-Status and the access log name tier 2; tier 1 saw nothing."""
    fo.refuse("jup_a", 20000)
    with Dexcache(config(fo)) as d:
        t0 = time.monotonic()
        r = requests.get(d.url + "/jup/price/v3?ids=A", headers={"X-Request-Id": "tier-refused-1"}, timeout=10)
        took = time.monotonic() - t0
        assert r.status_code == 200
        assert r.headers["cache-status"] == "dexcache; fwd=miss; stored; detail=tier-2"
        assert r.headers["x-fake-profile"] in ("jup", "jup_b")
        assert totals(fo) == (0, 1)
        assert took < 3.0  # within `timeout`
        print("failover time, tier 1 refused -> tier 2 answer: %.1f ms" % (took * 1000))
        line = access_line(d, "tier-refused-1")
        assert line.endswith(" tier=2"), line
        # stored: a hit next, no origin
        r = requests.get(d.url + "/jup/price/v3?ids=A", timeout=10)
        assert r.headers["x-cache"] == "HIT"
        assert totals(fo) == (0, 1)
        assert tier_health(d, 1)["consecutive_failures"] == 1
        assert d.metric("dexcache_upstream_tier_answers_total", upstream="jupiter", tier="2") == 1
        assert d.metric("dexcache_upstream_retry_budget_total", upstream="jupiter", outcome="failover") == 1


def test_attempt_timeout_moves_down(fo):
    """Tier 1 never answers: after attempt_timeout the request moves to tier 2, well before `timeout`."""
    fo.add_rule({"profile": "jup_a", "route": "*", "timeout": True})
    with Dexcache(config(fo, attempt_timeout="300ms")) as d:
        t0 = time.monotonic()
        r = requests.get(d.url + "/jup/price/v3?ids=T", timeout=10)
        took = time.monotonic() - t0
        assert r.status_code == 200
        assert "detail=tier-2" in r.headers["cache-status"]
        assert totals(fo) == (1, 1)
        assert 0.3 <= took < 2.0
        print("failover time, tier 1 silent (attempt_timeout 300ms) -> tier 2 answer: %.1f ms" % (took * 1000))


@pytest.mark.parametrize("rule,label", [({"status": 503}, "503"), ({"burst429": True, "retry_after": 5}, "429")])
def test_tier1_error_answer_moves_down(fo, rule, label):
    """Tier 1 answers 503 (or 429): tier 2's answer goes to the client; each origin saw one request."""
    rule = dict(rule, profile="jup_a", route="*")
    fo.add_rule(rule)
    with Dexcache(config(fo)) as d:
        r = requests.get(d.url + "/jup/price/v3?ids=E" + label, timeout=10)
        assert r.status_code == 200
        assert r.headers["cache-status"] == "dexcache; fwd=miss; stored; detail=tier-2"
        assert totals(fo) == (1, 1)
        st = fo.stats()
        assert st["jup_a"]["by_status"] == {label: 1}
        assert st["jup_b"]["by_status"] == {"200": 1}


def test_breaker_skips_tier1_then_probe_closes(fo):
    """3 failures open tier 1's breaker: later requests go straight to tier 2 (tier 1 sees 0) until
    the half-open probe, which tier 1 (recovered) answers; then it is tier 1 again."""
    fo.add_rule({"profile": "jup_a", "route": "*", "status": 503})
    with Dexcache(config(fo, failures=3)) as d:
        for i in range(3):
            r = requests.get(d.url + "/jup/price/v3?ids=B%d" % i, timeout=10)
            assert r.status_code == 200 and "detail=tier-2" in r.headers["cache-status"]
        assert totals(fo) == (3, 3)
        assert tier_health(d, 1)["breaker"] == "open"
        for i in range(3, 8):
            r = requests.get(d.url + "/jup/price/v3?ids=B%d" % i, timeout=10)
            assert r.status_code == 200 and "detail=tier-2" in r.headers["cache-status"]
        assert totals(fo) == (3, 8)  # nothing to tier 1 while open
        assert d.metric("dexcache_upstream_tier_state", upstream="jupiter", tier="1") == 1
        fo.clear_rules()  # tier 1 recovers
        wait_for(lambda: tier_health(d, 1)["breaker"] == "half-open", timeout=10)
        r = requests.get(d.url + "/jup/price/v3?ids=P", timeout=10)
        assert r.status_code == 200
        assert r.headers["cache-status"] == "dexcache; fwd=miss; stored"  # tier 1: no detail
        assert totals(fo) == (4, 8)
        assert tier_health(d, 1)["breaker"] == "closed"
        r = requests.get(d.url + "/jup/price/v3?ids=Q", timeout=10)
        assert r.headers["cache-status"] == "dexcache; fwd=miss; stored"
        assert totals(fo) == (5, 8)


def outage_load(d, nthreads, per_thread, tag):
    """nthreads clients, per_thread requests each on distinct keys; returns the status counts."""
    codes = {}
    lock = threading.Lock()

    def client(t):
        s = requests.Session()
        for i in range(per_thread):
            try:
                c = s.get(d.url + "/jup/price/v3?ids=%s%d_%d" % (tag, t, i), timeout=15).status_code
            except requests.RequestException:
                c = 0
            with lock:
                codes[c] = codes.get(c, 0) + 1

    ts = [threading.Thread(target=client, args=(t,)) for t in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return codes


@pytest.mark.parametrize("budget", ["off", "on"])
def test_retry_budget_caps_full_outage(fo, budget):
    """Both tiers answer 503 to everything. Without a retry budget each request costs 1 + 1 failover +
    2 retries x 2 tiers = 6 origin requests; with Envoy's default-like budget (20%, min 1) retries and
    failovers stay a share of the active requests: the origin sees far fewer."""
    fo.add_rule({"route": "*", "status": 503})
    nthreads, per_thread = 12, 10
    n = nthreads * per_thread
    percent, min_conc = (100, 100000) if budget == "off" else (20, 1)
    with Dexcache(config(fo, retries=2, percent=percent, min_conc=min_conc)) as d:
        codes = outage_load(d, nthreads, per_thread, "O")
        assert sum(codes.values()) == n and set(codes) == {503}, codes
        a, b = totals(fo)
        print("retry budget %s: %d client requests -> %d origin requests (tier 1 %d, tier 2 %d)"
              % (budget, n, a + b, a, b))
        denied = d.metric("dexcache_upstream_retry_budget_total", upstream="jupiter", outcome="denied")
        if budget == "off":
            assert (a, b) == (3 * n, 3 * n)
            assert denied == 0
        else:
            assert n <= a + b <= 2 * n
            assert denied > 0


def test_cordon_and_uncordon(fo):
    """A cordoned tier 1 takes nothing (tier 2 answers); uncordoned, it answers again. The call needs
    the admin token and names an existing upstream and tier."""
    with Dexcache(config(fo)) as d:
        assert admin_post(d, "/upstreams/jupiter/tiers/1/cordon", token=None)[0] == 401
        assert admin_post(d, "/upstreams/jupiter/tiers/3/cordon")[0] == 404
        assert admin_post(d, "/upstreams/nope/tiers/1/cordon")[0] == 404
        st, body = admin_post(d, "/upstreams/jupiter/tiers/1/cordon")
        assert (st, body) == (200, {"upstream": "jupiter", "tier": 1, "cordoned": True, "fleet": False})
        assert tier_health(d, 1)["cordoned"] is True
        assert d.metric("dexcache_upstream_tier_state", upstream="jupiter", tier="1") == 2
        for i in range(4):
            r = requests.get(d.url + "/jup/price/v3?ids=C%d" % i, timeout=10)
            assert r.status_code == 200 and "detail=tier-2" in r.headers["cache-status"]
        assert totals(fo) == (0, 4)
        st, body = admin_post(d, "/upstreams/jupiter/tiers/1/uncordon")
        assert st == 200 and body["cordoned"] is False
        r = requests.get(d.url + "/jup/price/v3?ids=U", timeout=10)
        assert r.headers["cache-status"] == "dexcache; fwd=miss; stored"
        assert totals(fo) == (1, 4)
        # both cordoned: nothing goes out, 503
        admin_post(d, "/upstreams/jupiter/tiers/1/cordon")
        admin_post(d, "/upstreams/jupiter/tiers/2/cordon")
        r = requests.get(d.url + "/jup/price/v3?ids=Z", timeout=10)
        assert r.status_code == 503
        body = r.json()  # says why: cordoned by hand, not an old error of the origin
        assert (body["error"], body["upstream"], body["cause"]) == (
            "upstream unavailable: circuit breaker open or cordoned", "jupiter", "every tier is cordoned (admin)"), body
        assert totals(fo) == (1, 4)


def test_pass_through_post_not_failed_over_once_sent(fo):
    """A POST swap and a no_cache GET order reached tier 1, which answered 503: the client gets that
    503 and tier 2 never sees them (never retried once their bytes reached an origin). A POST whose
    connection tier 1 refused (nothing sent) does go to tier 2."""
    fo.add_rule({"profile": "jup_a", "route": "/swap/*", "status": 503})
    with Dexcache(config(fo, retries=2)) as d:
        r = requests.post(d.url + "/jup/swap/v1/swap", data=b'{"quoteResponse":{}}',
                          headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 503
        assert totals(fo) == (1, 0)
        r = requests.get(d.url + "/jup/swap/v2/order?taker=T&inputMint=a&outputMint=b&amount=1", timeout=10)
        assert r.status_code == 503
        assert totals(fo) == (2, 0)
        fo.clear_rules()
        fo.refuse("jup_a", 20000)
        r = requests.post(d.url + "/jup/swap/v1/swap", data=b'{"quoteResponse":{}}',
                          headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 200
        assert r.headers["cache-status"] == "dexcache; fwd=bypass; detail=tier-2"
        assert totals(fo) == (2, 1)


def test_tier1_answer_failing_validation_moves_down(fo):
    """Tier 1 answers 200 with a body that is not JSON on a `validate: json` rule: the answer is a
    failure of tier 1 (its health counts it) and tier 2's answer is served and stored; tier 1's is
    never seen by anyone."""
    fo.add_rule({"profile": "jup_a", "route": "/tokens/*", "html200": True})
    with Dexcache(config(fo)) as d:
        r = requests.get(d.url + "/jup/tokens/v2/tag?query=verified", timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["cache-status"] == "dexcache; fwd=miss; stored; detail=tier-2"
        r.json()
        assert totals(fo) == (1, 1)
        assert tier_health(d, 1)["consecutive_failures"] == 1
        assert tier_health(d, 2)["consecutive_failures"] == 0
        r = requests.get(d.url + "/jup/tokens/v2/tag?query=verified", timeout=10)
        assert r.headers["x-cache"] == "HIT" and totals(fo) == (1, 1)


def test_failed_validation_on_every_tier_counts_on_each_and_stores_nothing(fo):
    """Both tiers answer HTML in a 200: one attempt each, the client gets the 502 naming the reason,
    each tier's own health counts its failure (it used to be tier 1's whatever tier answered), and
    nothing is stored."""
    fo.add_rule({"route": "/tokens/*", "html200": True})
    with Dexcache(config(fo)) as d:
        r = requests.get(d.url + "/jup/tokens/v2/tag?query=verified", timeout=10)
        assert r.status_code == 502 and "validation" in r.json()["error"], r.text
        assert totals(fo) == (1, 1)
        assert tier_health(d, 1)["consecutive_failures"] == 1
        assert tier_health(d, 2)["consecutive_failures"] == 1
        fo.reset()
        r = requests.get(d.url + "/jup/tokens/v2/tag?query=verified", timeout=10)
        assert r.status_code == 200 and r.headers["x-cache"] == "MISS"


def test_tier1_fail_status_moves_down(fo):
    """A status the rule lists in fail_statuses (404) from tier 1 is a failure of tier 1: tier 2's
    200 is served; a 404 from both is the client's 502 and stores nothing."""
    fo.add_rule({"profile": "jup_a", "route": "/respond", "status": 404})
    with Dexcache(config(fo)) as d:
        r = requests.get(d.url + "/jup/respond?x=1", timeout=10)
        assert r.status_code == 200 and "detail=tier-2" in r.headers["cache-status"], (r.status_code, r.headers)
        assert totals(fo) == (1, 1)
        assert tier_health(d, 1)["consecutive_failures"] == 1
        r = requests.get(d.url + "/jup/respond?x=2&status=404", timeout=10)
        assert r.status_code == 502 and "404" in r.json()["error"], r.text
        assert totals(fo) == (2, 2)


def test_breaker_opened_by_5xx_names_the_status_not_an_older_error(fo):
    """Tier 1 resets once (a transport error), later answers 503 until its breaker opens: the 503 of
    the open breaker names the last failure, the 503s, not the older reset."""
    fo.add_rule({"profile": "jup_a", "route": "/price/v3", "key": "*ids=R0*", "reset_before_headers": True})
    fo.add_rule({"profile": "jup_a", "route": "/price/v3", "status": 503})
    fo.refuse("jup_b", 60000)
    with Dexcache(config(fo, failures=3)) as d:
        requests.get(d.url + "/jup/price/v3?ids=R0", timeout=10)
        for i in range(3):
            requests.get(d.url + "/jup/price/v3?ids=S%d" % i, timeout=10)
        r = requests.get(d.url + "/jup/price/v3?ids=OPEN", timeout=10)
        assert r.status_code == 503, r.text
        assert tier_health(d, 1)["last_error"]["message"] == "answered 503"
        assert "reset" not in r.json().get("cause", ""), r.json()
