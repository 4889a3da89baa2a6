"""Listeners and streaming: TLS with ALPN (HTTP/2 and HTTP/1.1), IPv6, and a 90 MB body to a slow
client with bounded memory."""
import hashlib
import os
import socket
import subprocess
import threading
import time

import pytest
import requests

from dexcache import Dexcache, PREAMBLE, RSS_CHECKS, workdir


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def cert():
    d = workdir(prefix="dexcache-tls-")
    crt, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def test_tls_alpn_h2_and_http11_and_ipv6(fake, origin, cert):
    crt, key = cert
    conf = """
listen: ["127.0.0.1:{port}", "[::1]:{port}"]
workers: 2
tls: {{ listen: ["127.0.0.1:{tls}"], cert: "%s", key: "%s" }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
upstreams:
  jupiter: {{ url: "%s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
""" % (crt, key, fake.url("jup"))
    with Dexcache(conf, extra_ports=("tls",)) as d:
        tls = "https://127.0.0.1:%d/jup/echo" % d.ports["tls"]
        out = subprocess.run(["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", tls],
                             capture_output=True, text=True, timeout=10).stdout
        assert out == "2 200"
        out = subprocess.run(["curl", "-sk", "--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", tls],
                             capture_output=True, text=True, timeout=10).stdout
        assert out == "1.1 200"
        r = requests.get(tls, verify=crt)
        assert r.status_code == 200 and r.json()["headers"]["x-forwarded-proto"] == "https"
        out = subprocess.run(["curl", "-s", "-g", "-o", "/dev/null", "-w", "%{http_code}",
                              "http://[::1]:%d/jup/echo" % d.port], capture_output=True, text=True, timeout=10).stdout
        assert out == "200"
        assert origin.stats()["jup"]["total"] == 4


def test_90mb_body_slow_client_bounded_rss(fake, origin):
    conf = PREAMBLE + """
upstreams:
  meteora: {{ url: "%s", timeout: 30s }}
routes:
  - {{ prefix: /meteora, upstream: meteora }}
""" % fake.url("meteora")
    n = 90 * 1000 * 1000
    with Dexcache(conf) as d:
        base = rss_kib(d.proc.pid)
        s = socket.create_connection(("127.0.0.1", d.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /meteora/bytes?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        # a reader that stalls: take 1 MB, then nothing for 3 s
        got = b""
        while len(got) < 1 << 20:
            got += s.recv(65536)
        peak = 0
        for _ in range(30):
            time.sleep(0.1)
            peak = max(peak, rss_kib(d.proc.pid))
        stalled_growth_mib = (peak - base) / 1024
        # then read the rest slowly-ish in bounded chunks and check every byte arrived
        h = hashlib.sha256()
        head, _, body = got.partition(b"\r\n\r\n")
        assert b"200 OK" in head.split(b"\r\n")[0]
        assert b"content-length: %d" % n in head.lower()
        total = len(body)
        h.update(body)
        s.settimeout(30)
        while total < n:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            h.update(chunk)
            if total % (8 << 20) < len(chunk):
                peak = max(peak, rss_kib(d.proc.pid))
        s.close()
        assert total == n
        direct = hashlib.sha256()
        with requests.get(fake.url("meteora") + "/bytes?n=%d" % n, stream=True) as r:
            for c in r.iter_content(1 << 20):
                direct.update(c)
        assert h.hexdigest() == direct.hexdigest()
        growth_mib = (peak - base) / 1024
        print("RSS base %.1f MiB, growth while stalled %.1f MiB, peak growth %.1f MiB" %
              (base / 1024, stalled_growth_mib, growth_mib))
        assert not RSS_CHECKS or growth_mib < 40, growth_mib  # a 90 MB body never sits in memory


def test_upstream_http2_when_offered(fake, origin, cert):
    """dexcache A -> https (ALPN h2) -> dexcache B -> fake origin. B's Via entry records the protocol
    A used toward it, so the origin sees 'Via: 1.1 dexcache, 2 dexcache'."""
    crt, key = cert
    conf_b = """
listen: ["127.0.0.1:{port}"]
workers: 1
tls: {{ listen: ["127.0.0.1:{tls}"], cert: "%s", key: "%s" }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
upstreams:
  jupiter: {{ url: "%s" }}
routes:
  - {{ prefix: /, upstream: jupiter }}
""" % (crt, key, fake.url("jup"))
    with Dexcache(conf_b, extra_ports=("tls",)) as b:
        conf_a = """
listen: ["127.0.0.1:{port}"]
workers: 1
admin: {{ listen: "127.0.0.1:{admin_port}" }}
upstreams:
  chained: {{ url: "https://127.0.0.1:%d", tls_verify: false }}
  chained_h1: {{ url: "https://127.0.0.1:%d", tls_verify: false, http2: false }}
routes:
  - {{ prefix: /h2, upstream: chained }}
  - {{ prefix: /h1, upstream: chained_h1 }}
""" % (b.ports["tls"], b.ports["tls"])
        with Dexcache(conf_a) as a:
            r = requests.get(a.url + "/h2/echo")
            assert r.status_code == 200
            assert r.json()["headers"]["via"] == "1.1 dexcache, 2 dexcache"
            r = requests.get(a.url + "/h1/echo")
            assert r.json()["headers"]["via"] == "1.1 dexcache, 1.1 dexcache"
            assert r.headers["via"] == "1.1 dexcache, 1.1 dexcache"
