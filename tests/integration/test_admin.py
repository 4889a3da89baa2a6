"""Admin listener: /health JSON and /metrics Prometheus text."""
import re

import pytest
import requests

from dexcache import Dexcache, free_port, PREAMBLE, wait_for

CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%s", keys: ["k1", "k2"], retries: 0 }}
  dead: {{ url: "http://127.0.0.1:%d", retries: 0 }}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
  - {{ prefix: /dead, upstream: dead }}
"""


@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % (fake.url("jup"), free_port()))
    d.start()
    yield d
    d.stop()


def test_health(proxy, origin):
    h = proxy.health()
    assert h["status"] == "ok"
    assert h["workers"] == 2
    assert h["uptime_s"] >= 0
    assert h["redis"] == "disabled"
    assert set(h["upstreams"]) == {"jupiter", "dead"}
    assert h["upstreams"]["jupiter"]["keys"] == {"total": 2, "usable": 2}
    assert h["upstreams"]["jupiter"]["state"] in ("unknown", "up")
    for _ in range(3):
        assert requests.get(proxy.url + "/dead/x").status_code == 502
    h = proxy.health()
    assert h["upstreams"]["dead"]["state"] == "down"
    assert h["status"] == "degraded"
    assert requests.post(proxy.admin_url + "/health").status_code == 405
    assert requests.get(proxy.admin_url + "/nope").status_code == 404


def test_connections_reported(proxy, origin):
    s = requests.Session()
    s.get(proxy.url + "/jup/echo")
    assert proxy.health()["connections"] >= 1
    assert proxy.metric("dexcache_connections_open") >= 1
    s.close()


def test_metrics(proxy, origin):
    """Exact deltas: 5 answers from the origin, its 400, a request no route takes, one failed fetch."""
    def snap():
        return {
            "2xx": proxy.metric("dexcache_requests_total", route="/jup", code="2xx"),
            "4xx": proxy.metric("dexcache_requests_total", route="/jup", code="4xx"),
            "none4xx": proxy.metric("dexcache_requests_total", route="none", code="4xx"),
            "dead5xx": proxy.metric("dexcache_requests_total", route="/dead", code="5xx"),
            "up": proxy.metric("dexcache_upstream_requests_total", upstream="jupiter"),
            "up2xx": proxy.metric("dexcache_upstream_responses_total", upstream="jupiter", code="2xx"),
            "up4xx": proxy.metric("dexcache_upstream_responses_total", upstream="jupiter", code="4xx"),
            "deaderr": proxy.metric("dexcache_upstream_responses_total", upstream="dead", code="error"),
            "lat": proxy.metric("dexcache_upstream_latency_seconds_count", upstream="jupiter"),
            "inf": proxy.metric("dexcache_upstream_latency_seconds_bucket", upstream="jupiter", le="+Inf"),
        }
    before = snap()
    for _ in range(5):
        assert requests.get(proxy.url + "/jup/echo").status_code == 200
    assert requests.get(proxy.url + "/jup/swap/v1/quote").status_code == 400  # from the origin
    assert requests.get(proxy.url + "/nothing").status_code == 404
    assert requests.get(proxy.url + "/dead/x").status_code == 502
    text = proxy.metrics()
    assert "# TYPE dexcache_requests_total counter" in text
    want = {"2xx": 5, "4xx": 1, "none4xx": 1, "dead5xx": 1, "up": 6, "up2xx": 5, "up4xx": 1, "deaderr": 1,
            "lat": 6, "inf": 6}
    # per-worker counters are summed when scraped; a request is counted when h2o disposes of it,
    # a moment after its client read the last byte
    assert wait_for(lambda: {k: v - before[k] for k, v in snap().items()} == want, timeout=5), \
        {k: v - before[k] for k, v in snap().items()}
    assert re.search(r'^dexcache_upstream_latency_seconds_bucket\{upstream="jupiter",le="0.001"\} \d+$', text, re.M)
    assert proxy.metric("dexcache_uptime_seconds") > 0
