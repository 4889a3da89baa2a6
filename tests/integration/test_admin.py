"""Admin listener: /health JSON and /metrics Prometheus text."""
import re

import pytest
import requests

from dexcache import Dexcache, free_port, PREAMBLE

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
    before = proxy.metric("dexcache_requests_total", route="/jup", code="2xx")
    for _ in range(5):
        requests.get(proxy.url + "/jup/echo")
    requests.get(proxy.url + "/jup/swap/v1/quote")  # 400 from the origin
    requests.get(proxy.url + "/nothing")
    text = proxy.metrics()
    assert "# TYPE dexcache_requests_total counter" in text
    assert proxy.metric("dexcache_requests_total", route="/jup", code="2xx") == before + 5
    assert proxy.metric("dexcache_requests_total", route="/jup", code="4xx") >= 1
    assert proxy.metric("dexcache_requests_total", route="none", code="4xx") >= 1
    assert proxy.metric("dexcache_upstream_requests_total", upstream="jupiter") >= 6
    assert proxy.metric("dexcache_upstream_responses_total", upstream="jupiter", code="2xx") >= 5
    assert proxy.metric("dexcache_upstream_responses_total", upstream="dead", code="error") >= 1
    assert proxy.metric("dexcache_upstream_latency_seconds_count", upstream="jupiter") >= 6
    assert proxy.metric("dexcache_upstream_latency_seconds_bucket", upstream="jupiter", le="+Inf") >= 6
    assert re.search(r'^dexcache_upstream_latency_seconds_bucket\{upstream="jupiter",le="0.001"\} \d+$', text, re.M)
    assert proxy.metric("dexcache_uptime_seconds") > 0
