"""Compressed variants: identity, gzip and br made once per entry and chosen per Accept-Encoding;
gzip asked from the origin and decoded for clients that do not accept it; large bodies encoded off
the event loop; a 90 MB /pair/all fetched once for 50 concurrent clients."""
import gzip
import hashlib
import json
import threading
import time

import pytest
import requests

from dexcache import Dexcache, PREAMBLE, RSS_CHECKS, SANITIZER_RSS_MIB, wait_for
from fake import FakeOrigin
from test_transport import rss_kib

MINTS = ["So11111111111111111111111111111111111111112", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"] + \
        ["Mint%040d" % i for i in range(20)]

CONFIG = PREAMBLE + """
cache: {{ memory: 512MiB, max_object: 256MiB }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
  meteora: {{ url: "%(meteora)s", timeout: 60s }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /, ttl: 60s, key_sets: [ids] }} ] }}
  - {{ prefix: /meteora, upstream: meteora, cache: [ {{ path: /, ttl: 60s }} ] }}
"""


def raw_get(url, ae=None):
    """GET without automatic decoding: returns (response, raw bytes)."""
    headers = {"Accept-Encoding": ae if ae is not None else "identity"}
    r = requests.get(url, headers=headers, stream=True, timeout=60)
    data = r.raw.read(decode_content=False)
    return r, data



@pytest.fixture(scope="module")
def proxy(fake):
    d = Dexcache(CONFIG % {"jup": fake.url("jup"), "meteora": fake.url("meteora")})
    d.start()
    yield d
    d.stop()


def _brotli_decode(data):
    import brotli  # python3-brotli, installed by `make deps-test`
    return brotli.decompress(data)


def test_small_body_variants(proxy, origin):
    origin.config({"gzip": False})
    path = proxy.url + "/jup/price/v3?ids=" + ",".join(MINTS)
    r0, ident = raw_get(path)
    assert r0.headers["x-cache"] == "MISS"
    assert "content-encoding" not in r0.headers
    assert len(ident) > 1024
    r1, gz = raw_get(path, "gzip, deflate")
    assert r1.headers["x-cache"] == "HIT"
    assert r1.headers["content-encoding"] == "gzip"
    assert r1.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(gz) == ident
    assert int(r1.headers["content-length"]) == len(gz) < len(ident)
    # brotli is only made for bodies of 32 KiB and more: a br-preferring client gets gzip here
    r2, gz2 = raw_get(path, "br;q=1.0, gzip;q=0.5")
    assert r2.headers["content-encoding"] == "gzip" and gz2 == gz
    r3, plain = raw_get(path)
    assert "content-encoding" not in r3.headers and plain == ident
    # the origin sent no ETag: identity gets our strong digest tag, the gzip made here its weak form
    # (its bytes are ours, semantically the same: REFERENCE.md "Validators")
    assert r3.headers["etag"].startswith('"') and r1.headers["etag"] == "W/" + r3.headers["etag"]
    # If-None-Match uses the weak comparison: either tag revalidates either representation
    assert requests.get(path, headers={"Accept-Encoding": "gzip", "If-None-Match": r1.headers["etag"]}).status_code == 304
    assert requests.get(path, headers={"Accept-Encoding": "identity",
                                       "If-None-Match": r1.headers["etag"]}).status_code == 304
    assert requests.get(path, headers={"Accept-Encoding": "identity",
                                       "If-None-Match": '"other"'}).status_code == 200
    # If-Match uses the strong comparison: the weak tag of the gzip made here never matches
    assert requests.get(path, headers={"Accept-Encoding": "gzip", "If-Match": r3.headers["etag"]}).status_code == 412
    assert requests.get(path, headers={"Accept-Encoding": "identity",
                                       "If-Match": r3.headers["etag"]}).status_code == 200
    assert origin.stats()["jup"]["total"] == 1
    # the origin was asked for gzip (it did not send it: this fake was not told to)
    assert origin.requests(0)[0]["headers"].get("accept-encoding") == "gzip"


def test_origin_gzip_decoded_for_identity_clients(proxy, origin):
    origin.config({"gzip": True})
    try:
        path = proxy.url + "/jup/tokens/v2/toptrending/1h?limit=60"
        r0, ident = raw_get(path)  # the leader does not accept gzip: decoded on the fly
        assert r0.status_code == 200 and r0.headers["x-cache"] == "MISS"
        assert "content-encoding" not in r0.headers
        doc = json.loads(ident)
        assert isinstance(doc, list) and len(doc) > 0
        r1, gz = raw_get(path, "gzip")
        assert r1.headers["x-cache"] == "HIT" and r1.headers["content-encoding"] == "gzip"
        assert gzip.decompress(gz) == ident
        path2 = proxy.url + "/jup/tokens/v2/toptrending/24h?limit=40"
        r2, gz2 = raw_get(path2, "gzip")  # a gzip leader gets the origin's bytes as they come
        assert r2.headers["content-encoding"] == "gzip"
        r3, ident2 = raw_get(path2)
        assert "content-encoding" not in r3.headers and gzip.decompress(gz2) == ident2
        assert origin.stats()["jup"]["total"] == 2
    finally:
        origin.config({"gzip": False})


def test_large_body_variants_made_off_loop(proxy, origin):
    origin.config({"gzip": False})
    path = proxy.url + "/jup/tokens/v2/tag?query=verified"
    r0, ident = raw_get(path)
    assert len(ident) > 1024 * 1024
    # the identity entry serves at once; gzip and br follow when the thread pool is done
    assert wait_for(lambda: raw_get(path, "gzip")[0].headers.get("content-encoding") == "gzip", timeout=60)
    r1, gz = raw_get(path, "gzip")
    assert r1.headers["x-cache"] == "HIT" and gzip.decompress(gz) == ident
    assert wait_for(lambda: raw_get(path, "br")[0].headers.get("content-encoding") == "br", timeout=60)
    r2, br = raw_get(path, "br")
    assert _brotli_decode(br) == ident and r2.headers["etag"] == r1.headers["etag"]
    # both made here: the weak form of our digest tag, which the identity hit carries strong
    assert r1.headers["etag"] == "W/" + raw_get(path)[0].headers["etag"]
    assert origin.stats()["jup"]["total"] == 1


def test_90mb_pair_all_once_for_50_clients(proxy):
    with FakeOrigin(args=["--lat", "fixed=0", "--pairs", "72000", "--gzip"], profiles=("meteora",),
                    startup_timeout=90) as big:
        conf = CONFIG % {"jup": big.url("meteora"), "meteora": big.url("meteora")}
        with Dexcache(conf) as d:
            base = rss_kib(d.proc.pid)
            big.gate("/pair/all")
            results = []

            def client(ae, slow):
                h = hashlib.sha256()
                n = 0
                r = requests.get(d.url + "/meteora/pair/all", headers={"Accept-Encoding": ae}, stream=True, timeout=120)
                for chunk in r.raw.stream(1 << 20, decode_content=False):
                    h.update(chunk)
                    n += len(chunk)
                    if slow:
                        time.sleep(0.01)
                results.append((ae, r.headers.get("content-encoding"), n, h.hexdigest()))

            threads = [threading.Thread(target=client, args=("gzip" if i % 2 else "identity", i % 5 == 0))
                       for i in range(50)]
            for t in threads:
                t.start()
            assert wait_for(lambda: d.metric("dexcache_requests_in_flight") == 50)
            big.release()
            peak = 0
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_kib(d.proc.pid))
                time.sleep(0.1)
            for t in threads:
                t.join(1)
            assert big.stats()["meteora"]["total"] == 1
            assert len(results) == 50
            gz = {(n, dg) for ae, ce, n, dg in results if ae == "gzip"}
            ident = {(n, dg) for ae, ce, n, dg in results if ae == "identity"}
            assert all(ce == "gzip" for ae, ce, n, dg in results if ae == "gzip")
            assert all(ce is None for ae, ce, n, dg in results if ae == "identity")
            assert len(gz) == 1 and len(ident) == 1
            ident_n = next(iter(ident))[0]
            gz_n = next(iter(gz))[0]
            assert ident_n > 80 * 1000 * 1000 and gz_n < ident_n / 2
            growth = (peak - base) / 1024
            print("90 MB /pair/all: identity %.1f MB, gzip %.1f MB, RSS growth %.0f MiB" %
                  (ident_n / 1e6, gz_n / 1e6, growth))
            # stored once (identity + gzip + br) plus bounded per-client state
            assert not RSS_CHECKS or growth < ident_n / 1048576 * 1.6 + 64 + SANITIZER_RSS_MIB * 4
