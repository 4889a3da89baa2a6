"""Self-tests of the fake origin.  Run: /usr/bin/python3 -m pytest -q tests/fakeorigin"""

import gzip
import hashlib
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from fake import FakeOrigin, expected_bytes  # noqa: E402

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
UNPRICED = "UnpricedMint1111111111111111111111111111111"
NOROUTE = "NoRouteMint11111111111111111111111111111111"
ALL = ("jup", "meteora", "orca", "birdeye")


@pytest.fixture(scope="module")
def fo():
    f = FakeOrigin(args=["--lat", "fixed=0", "--seed", "7", "--unpriced", UNPRICED,
                         "--noroute", NOROUTE, "--pairs", "300", "--tag-size", "200",
                         "--whirlpools", "50"], profiles=ALL)
    f.start()
    yield f
    t = time.monotonic()
    f.stop()
    assert time.monotonic() - t < 3, "SIGTERM should stop the fake quickly"


@pytest.fixture(autouse=True)
def _reset(request):
    if "fo" in request.fixturenames:
        request.getfixturevalue("fo").reset()
    yield


def get(fo, profile, path, headers=None, method="GET", body=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", fo.port(profile), timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def jget(fo, profile, path, headers=None):
    st, h, b = get(fo, profile, path, headers)
    return st, h, json.loads(b)


def q(**kw):
    return urllib.parse.urlencode(kw)


def strip_seq(d):
    d = dict(d)
    d.pop("_fakeSeq", None)
    return d


# --------------------------------------------------------------------------- bodies


def test_ready_ports(fo):
    assert set(fo.ports) == set(ALL) | {"control"}
    assert all(isinstance(p, int) and p > 0 for p in fo.ports.values())


def test_quote_body_and_headers(fo):
    st, h, d = jget(fo, "jup", "/swap/v1/quote?" + q(inputMint=SOL, outputMint=USDC, amount=100000000),
                    headers={"X-Api-Key": "abc", "X-Custom-Thing": "1"})
    assert st == 200
    assert int(h["x-fake-seq"]) == d["_fakeSeq"] >= 1
    assert h["x-fake-key"] == "/swap/v1/quote?amount=100000000&inputMint=%s&outputMint=%s" % (SOL, USDC)
    assert h["x-fake-api-key"] == "abc"
    names = h["x-fake-headers"].split(",")
    assert "x-custom-thing" in names and "x-api-key" in names and "host" in names
    assert "x-api-gateway-request-id" in h
    assert d["inputMint"] == SOL and d["outputMint"] == USDC and d["inAmount"] == "100000000"
    assert 1 <= len(d["routePlan"]) <= 3
    assert int(d["otherAmountThreshold"]) <= int(d["outAmount"])
    hops = set()
    for amt in range(100000000, 100000012):
        st, h, b = get(fo, "jup", "/swap/v1/quote?" + q(inputMint=SOL, outputMint=USDC, amount=amt))
        n = len(json.loads(b)["routePlan"])
        hops.add(n)
        assert 900 <= len(b) <= 2000, len(b)
    assert hops == {1, 2, 3}
    st, _, d2 = jget(fo, "jup", "/swap/v2/quote?" + q(inputMint=SOL, outputMint=USDC, amount=5))
    assert st == 200 and d2["inAmount"] == "5"


def test_quote_errors(fo):
    st, _, d = jget(fo, "jup", "/swap/v1/quote?" + q(inputMint=SOL, amount=1))
    assert st == 400 and "outputMint" in d["error"]
    st, _, d = jget(fo, "jup", "/swap/v1/quote?" + q(inputMint=SOL, outputMint=NOROUTE, amount=1))
    assert st == 400
    assert d["error"] == "Could not find any route" and d["errorCode"] == "COULD_NOT_FIND_ANY_ROUTE"
    st, _, d = jget(fo, "jup", "/swap/v2/quote?" + q(outputMint=SOL, inputMint=USDC))
    assert st == 400 and "amount" in d["error"]


def test_canonical_key(fo):
    variants = [
        "/price/v3?ids=%s,%s,%s" % (SOL, USDC, JUP),
        "/price/v3?ids=%s,%s,%s" % (JUP, SOL, USDC),
        "/price/v3?ids=%s%%2C%s%%2C%s" % (USDC, JUP, SOL),
        "/price/v3?ids=%s,%s,%s,%s" % (SOL, SOL, JUP, USDC),
    ]
    bodies = [get(fo, "jup", v)[2] for v in variants]
    assert len(set(bodies)) == 1  # price v3 has no _fakeSeq: identical bytes
    s = fo.stats()["jup"]
    assert s["by_key"] == {"/price/v3?ids=%s" % ",".join(sorted([SOL, USDC, JUP])): 4}
    # param order, + vs %20, list param sorting
    a = "/swap/v1/quote?inputMint=%s&outputMint=%s&amount=10&dexes=Whirlpool,Orca+V2" % (SOL, USDC)
    b = "/swap/v1/quote?dexes=Orca%%20V2%%2CWhirlpool&amount=10&outputMint=%s&inputMint=%s" % (USDC, SOL)
    (_, ha, ba), (_, hb, bb) = get(fo, "jup", a), get(fo, "jup", b)
    assert ha["x-fake-key"] == hb["x-fake-key"]
    assert "dexes=Orca%20V2,Whirlpool" in ha["x-fake-key"]
    assert strip_seq(json.loads(ba)) == strip_seq(json.loads(bb))
    assert int(hb["x-fake-seq"]) == int(ha["x-fake-seq"]) + 1


def test_price_v3(fo):
    st, h, d = jget(fo, "jup", "/price/v3?ids=%s,%s,%s" % (SOL, UNPRICED, USDC))
    assert st == 200 and set(d) == {SOL, USDC} and "_fakeSeq" not in d
    assert set(d[SOL]) == {"createdAt", "liquidity", "usdPrice", "blockId", "decimals", "priceChange24h"}
    _, _, single = jget(fo, "jup", "/price/v3?ids=" + SOL)
    assert single[SOL] == d[SOL]
    st, _, d = jget(fo, "jup", "/price/v3?ids=" + ",".join("M%043d" % i for i in range(51)))
    assert st == 400 and "error" in d
    st, _, d = jget(fo, "jup", "/price/v3?ids=" + ",".join("M%043d" % i for i in range(50)))
    assert st == 200 and len(d) == 50
    assert 150 * 50 <= len(json.dumps(d, separators=(",", ":"))) <= 260 * 50


def test_tokens(fo):
    st, _, d = jget(fo, "jup", "/tokens/v2/search?query=" + SOL)
    assert st == 200 and isinstance(d, list) and d[0]["id"] == SOL and d[0]["symbol"] == "SOL"
    st, _, d = jget(fo, "jup", "/tokens/v2/tag?query=verified")
    assert st == 200 and len(d) == 200
    st, _, d = jget(fo, "jup", "/tokens/v2/toptrending/1h?limit=7")
    assert st == 200 and len(d) == 7
    st, _, d = jget(fo, "jup", "/tokens/v2/toporganicscore/24h")
    assert st == 200 and len(d) == 50
    assert jget(fo, "jup", "/tokens/v2/toptrending/2h")[0] == 404
    st, _, d = jget(fo, "jup", "/tokens/v2/recent")
    assert st == 200 and len(d) > 0
    st, _, d = jget(fo, "jup", "/swap/v1/program-id-to-label")
    assert st == 200 and "Whirlpool" in d.values() and "_fakeSeq" in d


def test_never_cache_endpoints_unique(fo):
    tx = set()
    for _ in range(3):
        st, _, b = get(fo, "jup", "/swap/v1/swap", method="POST", body=b'{"quoteResponse":{}}',
                       headers={"Content-Type": "application/json"})
        assert st == 200
        tx.add(json.loads(b)["swapTransaction"])
    assert len(tx) == 3
    ids = set()
    for path in ("/swap/v2/order?" + q(inputMint=SOL, outputMint=USDC, amount=1, taker=SOL),
                 "/swap/v2/build?" + q(inputMint=SOL, outputMint=USDC, amount=1, taker=SOL)):
        for _ in range(2):
            st, _, d = jget(fo, "jup", path)
            assert st == 200
            ids.add(d["requestId"])
    assert len(ids) == 4
    st, _, b = get(fo, "jup", "/swap/v1/swap-instructions", method="POST", body=b"{}")
    assert st == 200 and "swapInstruction" in json.loads(b)
    st, _, b = get(fo, "jup", "/swap/v2/execute", method="POST", body=b'{"requestId":"r1"}')
    assert st == 200 and json.loads(b)["requestId"] == "r1"
    assert get(fo, "jup", "/swap/v1/swap")[0] == 405
    s = fo.stats()["jup"]
    assert s["by_route"]["/swap/v1/swap"] == 4


def test_meteora(fo):
    st, h, b = get(fo, "meteora", "/pair/all")
    arr = json.loads(b)
    assert st == 200 and isinstance(arr, list) and len(arr) == 300
    assert 1000 <= len(b) / 300 <= 1400
    p0 = arr[0]
    for k in ("address", "name", "mint_x", "mint_y", "reserve_x_amount", "bin_step", "liquidity",
              "fees", "fee_tvl_ratio", "volume", "tags", "is_verified", "hide"):
        assert k in p0
    st, _, d = jget(fo, "meteora", "/pair/all_with_pagination?page=1&limit=20&sort_key=tvl&order_by=desc")
    assert st == 200 and len(d["pairs"]) == 20 and d["total"] == 300 and "_fakeSeq" in d
    tvls = [float(p["liquidity"]) for p in d["pairs"]]
    assert tvls == sorted(tvls, reverse=True)
    st, _, d = jget(fo, "meteora", "/pair/all_with_pagination?include_token_mints=" + USDC)
    assert all(USDC in (p["mint_x"], p["mint_y"]) for p in d["pairs"]) and d["total"] < 300
    st, _, d = jget(fo, "meteora", "/pair/all_by_groups?limit=5")
    assert st == 200 and len(d["groups"]) == 5 and d["groups"][0]["pairs"]
    st, _, d = jget(fo, "meteora", "/pair/" + p0["address"])
    assert st == 200 and strip_seq(d) == p0
    st, _, d = jget(fo, "meteora", "/pair/NoSuchPair111")
    assert st == 404 and "error" in d
    st, _, d = jget(fo, "meteora", "/pools?page=2&page_size=25&sort_by=tvl:desc")
    assert st == 200 and len(d["data"]) == 25 and d["current_page"] == 2 and d["total"] == 300
    assert "token_x" in d["data"][0] and "pool_config" in d["data"][0]
    st, _, d = jget(fo, "meteora", "/pools/" + p0["address"])
    assert st == 200 and d["address"] == p0["address"]
    assert jget(fo, "meteora", "/pools/nope")[0] == 404


def test_orca_birdeye(fo):
    st, _, d = jget(fo, "orca", "/v1/whirlpool/list")
    assert st == 200 and len(d["whirlpools"]) == 50 and d["hasMore"] is False and "_fakeSeq" in d
    st, _, d = jget(fo, "orca", "/v2/solana/pools?size=20")
    assert st == 200 and len(d["data"]) == 20 and d["meta"]["cursor"]["next"]
    st, _, d2 = jget(fo, "orca", "/v2/solana/pools?size=40&next=" + d["meta"]["cursor"]["next"])
    assert len(d2["data"]) == 30 and d2["meta"]["cursor"]["next"] is None
    st, h, d = jget(fo, "birdeye", "/defi/price?address=" + SOL)
    assert st == 401 and "x-ratelimit-limit" not in h
    st, _, d = jget(fo, "birdeye", "/defi/price?address=" + SOL, headers={"X-API-KEY": "k"})
    assert st == 200 and d["success"] is True and d["data"]["value"] > 0
    st, _, d = jget(fo, "birdeye", "/defi/multi_price?list_address=%s,%s" % (USDC, SOL),
                    headers={"X-API-KEY": "k"})
    assert st == 200 and set(d["data"]) == {SOL, USDC}


def test_unknown_echo_head_keepalive(fo):
    st, _, d = jget(fo, "meteora", "/no/such/path")
    assert st == 404 and d["error"]
    body = os.urandom(70000)
    st, h, b = get(fo, "orca", "/echo?a=1&b=2", method="PUT", body=body,
                   headers={"X-Forwarded-For": "10.1.2.3", "Via": "1.1 dexcache"})
    d = json.loads(b)
    assert st == 200 and d["method"] == "PUT" and d["path"] == "/echo" and d["query"] == "a=1&b=2"
    assert d["body_len"] == len(body) and d["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert d["headers"]["x-forwarded-for"] == "10.1.2.3" and d["headers"]["via"] == "1.1 dexcache"
    assert d["_fakeSeq"] == int(h["x-fake-seq"])
    st, h, b = get(fo, "jup", "/price/v3?ids=" + SOL, method="HEAD")
    assert st == 200 and b == b"" and int(h["content-length"]) > 100
    c = http.client.HTTPConnection("127.0.0.1", fo.port("jup"), timeout=5)
    seqs = []
    for _ in range(5):
        c.request("GET", "/echo")
        r = c.getresponse()
        r.read()
        seqs.append(int(r.getheader("X-Fake-Seq")))
    c.close()
    assert seqs == list(range(seqs[0], seqs[0] + 5))


def test_bytes_streaming(fo):
    st, h, b = get(fo, "jup", "/bytes?n=300001")
    assert st == 200 and h["content-type"] == "application/octet-stream"
    assert b == expected_bytes(300001, seed=7)
    n = 60 * 1000 * 1000
    c = http.client.HTTPConnection("127.0.0.1", fo.port("meteora"), timeout=30)
    c.request("GET", "/bytes?n=%d" % n)
    r = c.getresponse()
    assert int(r.getheader("Content-Length")) == n
    got = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    c.close()
    assert got == n
    assert fo.stats()["meteora"]["bytes_out"] >= n


def test_version_bump(fo):
    p = "/price/v3?ids=" + SOL
    a, b = get(fo, "jup", p)[2], get(fo, "jup", p)[2]
    assert a == b
    _, _, pa = get(fo, "meteora", "/pair/all")
    v = fo.version()
    assert v >= 1
    c = get(fo, "jup", p)[2]
    assert c != a
    _, h, pb = get(fo, "meteora", "/pair/all")
    assert pb != pa and int(h["x-fake-version"]) == v


def test_requests_ring_and_stats(fo):
    s0 = fo.seq()
    get(fo, "jup", "/price/v3?ids=" + SOL, headers={"X-Api-Key": "kk", "X-Forwarded-For": "1.2.3.4"})
    get(fo, "meteora", "/pair/all_with_pagination?limit=1&page=0")
    rs = fo.requests(since=s0)
    assert [r["seq"] for r in rs] == [s0 + 1, s0 + 2]
    r = rs[0]
    assert r["profile"] == "jup" and r["method"] == "GET" and r["path"] == "/price/v3"
    assert r["raw_query"] == "ids=" + SOL and r["canonical_key"] == "/price/v3?ids=" + SOL
    assert r["api_key"] == "kk" and r["status"] == 200 and r["headers"]["x-forwarded-for"] == "1.2.3.4"
    assert rs[1]["canonical_key"] == "/pair/all_with_pagination?limit=1&page=0"
    s = fo.stats()
    assert s["seq"] == s0 + 2
    for k in ("total", "by_route", "by_key", "by_status", "max_inflight", "inflight_now",
              "bytes_out", "rl_rejected"):
        assert k in s["jup"]
    assert s["jup"]["by_status"] == {"200": 1} and s["jup"]["inflight_now"] == 0
    assert s["meteora"]["by_route"] == {"/pair/all_with_pagination": 1}


# --------------------------------------------------------------------------- limiter


def test_rate_limit_jup(fo):
    fo.config({"rl": ["3/60,profile=jup,scope=/price"]})
    try:
        p = "/price/v3?ids=" + SOL
        rems = []
        for _ in range(3):
            st, h, _ = get(fo, "jup", p)
            assert st == 200
            rems.append(int(h["x-ratelimit-remaining"]))
            assert h["x-ratelimit-limit"] == "3"
            assert abs(int(h["x-ratelimit-reset"]) - (time.time() + 60)) < 3
        assert rems == [2, 1, 0]
        st, h, b = get(fo, "jup", p)
        assert st == 429 and json.loads(b) == {"code": 429, "message": "[API Gateway] Too many requests"}
        assert h["x-ratelimit-remaining"] == "0" and 55 <= int(h["retry-after"]) <= 60
        # other scope is not limited, and no headers there
        st, h, _ = get(fo, "jup", "/tokens/v2/recent")
        assert st == 200 and "x-ratelimit-limit" not in h
        # an API key is its own account
        assert get(fo, "jup", p, headers={"x-api-key": "other"})[0] == 200
        fo.config({"retry_after": False})
        st, h, _ = get(fo, "jup", p)
        assert st == 429 and "retry-after" not in h
        fo.config({"count_rejected": True})
        st, h, _ = get(fo, "jup", p)
        assert st == 429 and int(h["x-ratelimit-remaining"]) < 0
        assert fo.stats()["jup"]["rl_rejected"] == 3
        # meteora body, short window
        fo.config({"rl": ["1/0.5,profile=meteora"], "retry_after": True, "count_rejected": False})
        assert get(fo, "meteora", "/pools")[0] == 200
        st, h, b = get(fo, "meteora", "/pools")
        assert st == 429 and json.loads(b) == {"message": "Too many requests"} and h["retry-after"] == "1"
        assert "x-ratelimit-limit" not in h
        time.sleep(0.55)
        assert get(fo, "meteora", "/pools")[0] == 200
    finally:
        fo.config({"rl": [], "retry_after": True, "count_rejected": False})


def test_cli_keys_chunked_gzip_rl():
    with FakeOrigin(args=["--lat", "fixed=0", "--keys", "k1,k2", "--chunked", "--gzip",
                          "--rl-preset", "jup-free", "--retry-after", "off", "--pairs", "50"],
                    profiles=("jup", "meteora")) as f:
        st, h, b = get(f, "jup", "/price/v3?ids=" + SOL, headers={"x-api-key": "bad"})
        assert st == 401 and json.loads(b) == {"code": 401, "message": "Invalid API key"}
        assert not any(k.startswith("x-ratelimit") for k in h)
        st, h, b = get(f, "jup", "/price/v3?ids=" + SOL, headers={"x-api-key": "k1"})
        assert st == 200 and h["x-ratelimit-limit"] == "60" and h["transfer-encoding"] == "chunked"
        assert "content-length" not in h and SOL in json.loads(b)
        st, h, b = get(f, "jup", "/price/v3?ids=" + SOL)  # keyless is allowed
        assert st == 200
        st, h, b = get(f, "meteora", "/pair/all", headers={"Accept-Encoding": "gzip"})
        assert st == 200 and h["content-encoding"] == "gzip"
        assert len(json.loads(gzip.decompress(b))) == 50
        st, h, b = get(f, "meteora", "/pair/all")
        assert "content-encoding" not in h and len(json.loads(b)) == 50
        cfg = f.config()
        assert cfg["rl"][0]["limit"] == 60 and cfg["retry_after"] is False and cfg["chunked"] is True


# --------------------------------------------------------------------------- error injection


def raw_request(port, path, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    return s


def read_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def test_inject_status_every_and_html(fo):
    fo.add_rule("route=/price/*,status=503,every=2")
    sts = [get(fo, "jup", "/price/v3?ids=" + SOL)[0] for _ in range(4)]
    assert sts == [200, 503, 200, 503]
    fo.config({"rules": []})
    fo.add_rule({"route": "/pair/*", "status": 502, "html": 1, "next": 1})
    st, h, b = get(fo, "meteora", "/pair/all")
    assert st == 502 and h["content-type"].startswith("text/html") and b"cloudflare" in b.lower()
    assert get(fo, "meteora", "/pair/all")[0] == 200
    fo.add_rule("route=/tokens/v2/recent,status=500,prob=1")
    st, _, b = get(fo, "jup", "/tokens/v2/recent")
    assert st == 500 and json.loads(b)["code"] == 500
    assert fo.stats()["jup"]["by_status"]["500"] == 1


def test_inject_timeouts_and_slow(fo):
    fo.add_rule("route=/echo,timeout,next=1")
    with pytest.raises(socket.timeout):
        get(fo, "jup", "/echo", timeout=0.5)
    fo.add_rule("route=/price/v3,timeout_ms=300,next=1")
    t = time.monotonic()
    assert get(fo, "jup", "/price/v3?ids=" + SOL)[0] == 200
    assert time.monotonic() - t >= 0.29
    fo.add_rule("route=/price/v2,slow_headers=300,next=1")
    t = time.monotonic()
    assert get(fo, "jup", "/price/v2?ids=" + SOL)[0] == 200
    assert time.monotonic() - t >= 0.25
    fo.config({"bw": 0.1})  # MB/s
    t = time.monotonic()
    st, _, b = get(fo, "jup", "/bytes?n=50000")
    assert st == 200 and len(b) == 50000 and time.monotonic() - t >= 0.45
    fo.config({"bw": 0, "latency": {"fixed": None, "price": "200:200"}})
    try:
        t = time.monotonic()
        assert get(fo, "jup", "/price/v2?ids=" + SOL)[0] == 200
        assert time.monotonic() - t >= 0.19
    finally:
        fo.config({"latency": {"fixed": 0}})
    fo.add_rule("route=/bytes,slow_body=40000,next=1")
    t = time.monotonic()
    st, _, b = get(fo, "jup", "/bytes?n=20000")
    assert st == 200 and len(b) == 20000 and time.monotonic() - t >= 0.4


def test_inject_resets_stall_truncate(fo):
    fo.add_rule("route=/echo,reset_before_headers,next=1")
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        get(fo, "jup", "/echo")
    fo.add_rule("route=/bytes,reset_after_bytes=5000,next=1")
    s = raw_request(fo.port("jup"), "/bytes?n=1000000")
    got = b""
    with pytest.raises(ConnectionResetError):
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    s.close()
    assert len(got) < 1000000
    fo.add_rule("route=/bytes,stall_after_bytes=1000,next=1")
    s = raw_request(fo.port("jup"), "/bytes?n=100000", timeout=0.5)
    got = b""
    with pytest.raises(socket.timeout):
        while True:
            d = s.recv(65536)
            assert d
            got += d
    s.close()
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"Content-Length: 100000" in head and len(body) == 1000
    fo.add_rule("route=/price/v3,truncate,next=1")
    s = raw_request(fo.port("jup"), "/price/v3?ids=" + SOL)
    head, _, body = read_all(s).partition(b"\r\n\r\n")
    s.close()
    cl = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0].split(b":")[1])
    assert 0 < len(body) < cl
    st = fo.stats()["jup"]["by_status"]
    assert st.get("reset_before_headers") == 1 and st.get("200", 0) >= 3


def test_inject_bad_json_html200_burst429(fo):
    fo.add_rule("route=/price/v3,bad_json,next=1")
    st, h, b = get(fo, "jup", "/price/v3?ids=" + SOL)
    assert st == 200 and h["content-type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(b)
    fo.add_rule("route=/price/v3,html200,next=1")
    st, h, b = get(fo, "jup", "/price/v3?ids=" + SOL)
    assert st == 200 and h["content-type"].startswith("text/html") and b"<html" in b
    fo.add_rule("route=/price/v3,burst429,next=1")
    st, h, b = get(fo, "jup", "/price/v3?ids=" + SOL)
    assert st == 429 and json.loads(b)["code"] == 429 and "retry-after" in h
    assert "x-ratelimit-remaining" in h
    fo.add_rule("route=/pools,burst429,next=1,retry_after=7")
    st, h, b = get(fo, "meteora", "/pools")
    assert st == 429 and json.loads(b) == {"message": "Too many requests"} and h["retry-after"] == "7"
    assert get(fo, "jup", "/price/v3?ids=" + SOL)[0] == 200


def test_inject_refuse(fo):
    port = fo.port("orca")
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # an idle keep-alive connection
    c.request("GET", "/echo")
    c.getresponse().read()
    fo.add_rule("route=/v2/solana/pools,refuse=600,next=1")
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        get(fo, "orca", "/v2/solana/pools")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)):
        c.request("GET", "/echo")  # the idle connection was closed too
        c.getresponse().read()
    c.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            assert get(fo, "orca", "/v2/solana/pools?size=1")[0] == 200
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


# --------------------------------------------------------------------------- gate


def test_gate_holds_and_releases(fo):
    fo.gate("/price/v3")
    path = "/price/v3?ids=%s,%s" % (USDC, SOL)
    results = []
    lock = threading.Lock()

    def worker():
        st, _, _ = get(fo, "jup", path, timeout=20)
        with lock:
            results.append(st)
    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    try:
        assert fo.wait_held(50, timeout=10) == 50
        s = fo.stats()["jup"]
        key = "/price/v3?ids=%s" % ",".join(sorted([SOL, USDC]))
        assert s["by_key"][key] == 50 and s["max_inflight"] == 50 and s["inflight_now"] == 50
        assert results == []
        # an ungated route still flows while the gate holds
        assert get(fo, "jup", "/tokens/v2/recent")[0] == 200
    finally:
        rel = fo.release("/price/v3")
    for t in threads:
        t.join(10)
    assert rel["released"] == 50
    assert results == [200] * 50 and fo.held() == 0
    assert get(fo, "jup", path)[0] == 200  # gate gone after release


def test_delay_answers_or_records_client_close(fo):
    """delay=MS answers after MS; a client that closes during the delay is recorded as client_closed
    (how hedging tests see a cancelled attempt), and nothing was answered."""
    fo.add_rule("route=/price/v3,delay=300,next=1")
    t = time.monotonic()
    assert get(fo, "jup", "/price/v3?ids=" + SOL)[0] == 200
    assert time.monotonic() - t >= 0.29
    seq0 = fo.stats()["seq"]
    fo.add_rule("route=/price/v3,delay=5000,next=1")
    s = socket.create_connection(("127.0.0.1", fo.ports["jup"]), timeout=5)
    s.sendall(b"GET /price/v3?ids=" + USDC.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 5
    while fo.stats()["seq"] == seq0 and time.monotonic() < deadline:
        time.sleep(0.02)
    s.close()
    t = time.monotonic()
    rec = []
    while time.monotonic() - t < 3 and not rec:
        rec = [r for r in fo.requests(since=seq0) if r.get("fault") == "client_closed"]
        time.sleep(0.05)
    assert time.monotonic() - t < 2.5  # seen well before the 5 s delay ended
    assert len(rec) == 1 and rec[0]["status"] == "client_closed"
