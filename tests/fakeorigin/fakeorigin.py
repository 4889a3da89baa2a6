#!/usr/bin/python3
"""fakeorigin.py - fake DEX upstream (Jupiter, Meteora, Orca, Birdeye) for the
dexcache integration tests.  Python 3.11 standard library only.

Spec: shared/upstreams.md section 5.  Quick reference:

  fakeorigin.py --listen jup=127.0.0.1:0 --listen meteora=127.0.0.1:0 \
                --control 127.0.0.1:0 [--seed N] [--lat fixed=0] ...

  After every socket is bound it prints one line to stdout:
      READY {"jup": 41234, "meteora": 41235, "control": 41236}

A listener name is a profile (jup, meteora, orca, birdeye) or a profile plus a
suffix ("jup2", "jup_b") when a test needs two origins of one profile; stats
are keyed by listener name.

Options (see --help): --seed --chunked --gzip --keys --unpriced --noroute
--pairs --tag-size --whirlpools --rl LIMIT/WINDOW_S[,scope=PREFIX][,profile=P]
[,who=keyless|keyed] --rl-preset NAME --preset bench-large
--retry-after on|off --count-rejected --lat ROUTE=MEDIAN_MS:P99_MS
--lat fixed=N --bw MB/s --rule 'route=/price/*,status=503,every=2' -v

Control API (on --control, JSON): GET /__fake/stats, GET /__fake/requests?since=N,
POST /__fake/reset, GET|POST /__fake/config, POST /__fake/version,
GET|POST /__fake/gate, POST /__fake/release, GET /__fake/rules,
POST /__fake/rule, POST /__fake/refuse, GET /__fake/health.
"""

import argparse
import base64
import collections
import gzip
import hashlib
import json
import math
import os
import random
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
from fnmatch import translate as _glob_translate
from urllib.parse import quote, unquote, unquote_plus

PROFILES = ("jup", "meteora", "orca", "birdeye")
LIST_PARAMS = frozenset(("ids", "list_address", "dexes", "excludeDexes",
                         "include_token_mints", "tags"))
SAFE_Q = "-._~,"
SAFE_PATH = "/-._~,:@!$&'()*+;="
MAX_LINE = 16384
MAX_HEADERS = 131072
KEEP_BODY_MAX = 1 << 20
IDLE_TIMEOUT = 300.0
RING_MAX = 10000

STOP = threading.Event()
VERBOSE = False
SEED = 1


def log(*a):
    if VERBOSE:
        print("fakeorigin:", *a, file=sys.stderr, flush=True)


def warn(*a):
    print("fakeorigin:", *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# deterministic helpers

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


_B58_2 = [B58[i // 58] + B58[i % 58] for i in range(58 * 58)]


def b58(b):
    n = int.from_bytes(b, "big")
    out = []
    while n:
        n, r = divmod(n, 11316496)     # 58**4
        hi, lo = divmod(r, 3364)
        out.append(_B58_2[lo])
        out.append(_B58_2[hi])
    s = "".join(reversed(out)).lstrip("1")
    pad = len(b) - len(b.lstrip(b"\0"))
    return "1" * pad + s


def hbytes(n, *parts):
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=n).digest()


def hint(*parts):
    return int.from_bytes(hbytes(8, *parts), "big")


def hfl(*parts):
    return hint(*parts) / 18446744073709551616.0


def rng(*parts):
    return random.Random(hint(SEED, *parts))


def addr(*parts):
    return b58(hbytes(32, SEED, *parts))


def iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % (int(ts * 1000) % 1000)


BASE_TS = 1767225600  # 2026-01-01T00:00:00Z, data timestamps are fixed offsets from it

_uniq_lock = threading.Lock()
_uniq_n = [0]


def unique_bytes(n, seq):
    with _uniq_lock:
        _uniq_n[0] += 1
        k = _uniq_n[0]
    seed = "%s|uniq|%d|%d|%d|%d" % (SEED, seq, k, os.getpid(), time.time_ns())
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.blake2b((seed + "|%d" % i).encode(), digest_size=64).digest()
        i += 1
    return out[:n]


def unique_uuid(seq):
    b = bytearray(unique_bytes(16, seq))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def jdump(o):
    return json.dumps(o, separators=(",", ":")).encode()


# --------------------------------------------------------------------------
# token universe and prices

KNOWN_TOKENS = [
    ("So11111111111111111111111111111111111111112", "SOL", "Wrapped SOL", 9, 150.0),
    ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", "USDC", "USD Coin", 6, 1.0),
    ("Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", "USDT", "USDT", 6, 1.0),
    ("JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", "JUP", "Jupiter", 6, 0.52),
    ("DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", "Bonk", "Bonk", 5, 0.0000213),
    ("EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm", "$WIF", "dogwifhat", 6, 0.91),
    ("mSoLzYCxHdYgdzU16g5QSh3i5K3z3KZK7ytfqcJm7So", "mSOL", "Marinade staked SOL", 9, 191.4),
    ("J1toso1uCk3RLmjorhTtrVwY9HJ7X8V9yYac6Y7kGCPn", "JitoSOL", "Jito Staked SOL", 9, 184.7),
    ("jtojtomepa8beP8AuQc6eXt5FriJwfFMwQx2v2f9mCL", "JTO", "JITO", 9, 1.93),
    ("4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R", "RAY", "Raydium", 6, 2.41),
    ("orcaEKTdK7LKz57vaAYr9QeNsVEPfiu6QeMU1kektZE", "ORCA", "Orca", 6, 2.07),
    ("HZ1JovNiVvGrGNiiYvEozEVgZ58xaU3RKwX8eACQBCt3", "PYTH", "Pyth Network", 6, 0.146),
]
KNOWN_BY_MINT = {t[0]: t for t in KNOWN_TOKENS}
WSOL = KNOWN_TOKENS[0][0]
USDC = KNOWN_TOKENS[1][0]
USDT = KNOWN_TOKENS[2][0]
WORDS = ["Moon", "Cat", "Dog", "Pepe", "Sol", "Based", "Giga", "Chad", "Frog", "Ape",
         "Wojak", "Pump", "Rocket", "Degen", "Labs", "Finance", "Protocol", "Coin",
         "Token", "Inu", "AI", "Agent", "World", "Cash", "Gold", "Meme", "Lord", "King"]

_tok_lock = threading.Lock()
_tokens = []          # universe: list of (mint, symbol, name, decimals)
_mint_meta = {}


def _derive_meta(mint):
    r = random.Random(hint(SEED, "meta", mint))
    sym = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(r.randint(3, 6)))
    name = r.choice(WORDS) + " " + r.choice(WORDS)
    dec = r.choice((6, 6, 6, 9, 9, 8, 5))
    return (mint, sym, name, dec)


def mint_meta(mint):
    t = KNOWN_BY_MINT.get(mint)
    if t is not None:
        return t[:4]
    m = _mint_meta.get(mint)
    if m is None:
        m = _derive_meta(mint)
        if len(_mint_meta) > 200000:
            _mint_meta.clear()
        _mint_meta[mint] = m
    return m


def token(i):
    """i-th token of the deterministic universe."""
    if i < len(_tokens):
        return _tokens[i]
    with _tok_lock:
        while len(_tokens) <= i:
            j = len(_tokens)
            if j < len(KNOWN_TOKENS):
                _tokens.append(KNOWN_TOKENS[j][:4])
            else:
                m = addr("tok", j)
                _tokens.append(_derive_meta(m))
        return _tokens[i]


_price_cache = {}


def usd_price(mint, version):
    k = (mint, version)
    p = _price_cache.get(k)
    if p is None:
        t = KNOWN_BY_MINT.get(mint)
        base = t[4] if t else 10 ** (hfl(SEED, "pb", mint) * 7 - 5)
        p = base * math.exp((hfl(SEED, "pv", mint, version) - 0.5) * 0.04)
        if len(_price_cache) > 100000:
            _price_cache.clear()
        _price_cache[k] = p
    return p


def price_v3_entry(mint, version):
    r = rng("p3", mint, version)
    dec = mint_meta(mint)[3]
    return {"createdAt": iso(BASE_TS - r.randrange(10 ** 7, 6 * 10 ** 7) + r.random()),
            "liquidity": round(r.uniform(1e3, 6e8), 6),
            "usdPrice": usd_price(mint, version),
            "blockId": 348000000 + version * 150 + r.randrange(150),
            "decimals": dec,
            "priceChange24h": r.uniform(-12, 12)}


# --------------------------------------------------------------------------
# Jupiter bodies

DEX_LABELS = ["Meteora DLMM", "Raydium CLMM", "Whirlpool", "Raydium", "SolFi", "Obric V2",
              "Lifinity V2", "HumidiFi", "Tessera V", "Orca V2", "Raydium CP",
              "Meteora DAMM v2", "ZeroFi", "GoonFi", "Stabble Stable Swap", "Phoenix",
              "Manifest", "Pump.fun Amm", "Meteora", "Saber", "Invariant", "Aldrin"]
PROGRAM_LABELS = {}


def program_labels():
    if not PROGRAM_LABELS:
        known = {"LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo": "Meteora DLMM",
                 "CAMMCzo5YL8w4VFF8KVHrK22GGUsp5VTaW7grrKgrWqK": "Raydium CLMM",
                 "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc": "Whirlpool",
                 "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8": "Raydium"}
        for k, v in known.items():
            PROGRAM_LABELS[k] = v
        for lab in DEX_LABELS[4:]:
            PROGRAM_LABELS[addr("prog", lab)] = lab
    return PROGRAM_LABELS


class HttpError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body


def quote_core(c, v2=False):
    p = c.p
    for f in ("inputMint", "outputMint", "amount"):
        if not p.get(f):
            raise HttpError(400, {"error": "Failed to deserialize query string: missing field `%s`" % f})
    amt_s = p["amount"]
    if not amt_s.isdigit():
        raise HttpError(400, {"error": "Failed to deserialize query string: amount: invalid digit found in string"})
    amount = int(amt_s)
    im, om = p["inputMint"], p["outputMint"]
    if im == om:
        raise HttpError(400, {"error": "inputMint cannot be the same as outputMint",
                              "errorCode": "CIRCULAR_ARBITRAGE_IS_DISABLED"})
    if om in CFG.noroute:
        raise HttpError(400, {"error": "Could not find any route",
                              "errorCode": "COULD_NOT_FIND_ANY_ROUTE"})
    try:
        slip = int(p.get("slippageBps", "50"))
    except ValueError:
        raise HttpError(400, {"error": "Failed to deserialize query string: slippageBps: invalid digit found in string"})
    mode = p.get("swapMode", "ExactIn")
    ver = c.version
    r = rng("quote", c.key, ver)
    hops = 1 + hint(SEED, "hops", c.key) % 3
    if p.get("onlyDirectRoutes", "").lower() in ("true", "1"):
        hops = 1
    labels = DEX_LABELS
    if p.get("dexes"):
        labels = p["dexes"].split(",")
    elif p.get("excludeDexes"):
        ex = set(p["excludeDexes"].split(","))
        labels = [x for x in DEX_LABELS if x not in ex] or DEX_LABELS
    mids = [m for m in (WSOL, USDC, USDT, KNOWN_TOKENS[3][0]) if m not in (im, om)]
    path = [im] + mids[:hops - 1] + [om]
    din = mint_meta(im)[3]
    pin = usd_price(im, ver)
    plan = []
    cur = amount
    for h in range(hops):
        a, b = path[h], path[h + 1]
        da, db = mint_meta(a)[3], mint_meta(b)[3]
        nxt = int(cur * usd_price(a, ver) / usd_price(b, ver) * 10 ** (db - da) * (1 - r.uniform(0.0005, 0.004)))
        fee = int(nxt * r.uniform(0.0001, 0.003))
        plan.append({"swapInfo": {"ammKey": addr("amm", a, b, h, r.randrange(4)),
                                  "label": r.choice(labels),
                                  "inputMint": a, "outputMint": b,
                                  "inAmount": str(cur), "outAmount": str(nxt),
                                  "feeAmount": str(fee), "feeMint": b},
                     "percent": 100, "bps": 10000})
        cur = nxt
    out = cur
    thr = out * (10000 - slip) // 10000
    usd = amount / 10 ** din * pin
    pfb = p.get("platformFeeBps", "0")
    body = {"inputMint": im, "inAmount": str(amount), "outputMint": om, "outAmount": str(out),
            "otherAmountThreshold": str(thr), "swapMode": mode, "slippageBps": slip,
            "platformFee": {"amount": "0", "feeBps": int(pfb) if pfb.isdigit() else 0},
            "priceImpactPct": "%.16f" % (r.random() * 0.003),
            "routePlan": plan,
            "contextSlot": 365000000 + ver * 150 + r.randrange(150),
            "timeTaken": round(r.uniform(0.002, 0.04), 9),
            "swapUsdValue": "%.16f" % usd,
            "simplerRouteUsed": False,
            "mostReliableAmmsQuoteReport": {"info": {pl["swapInfo"]["ammKey"]: str(int(out * r.uniform(0.98, 1.0)))
                                                     for pl in plan[:2]}},
            "useIncurredSlippageForQuoting": None,
            "otherRoutePlans": None,
            "loadedLongtailToken": False,
            "instructionVersion": p.get("instructionVersion"),
            }
    if v2:
        body["router"] = "metis"
        body["quoteVersion"] = "v2"
    return body


def h_quote(c):
    return 200, quote_core(c)


def h_quote2(c):
    return 200, quote_core(c, v2=True)


def h_order(c):
    body = quote_core(c, v2=True)
    taker = c.p.get("taker")
    tx = base64.b64encode(unique_bytes(900, c.seq)).decode() if taker else None
    body.update({"mode": "ultra", "swapType": "aggregator", "router": "iris",
                 "feeBps": 10, "feeMint": body["outputMint"], "taker": taker,
                 "gasless": False, "prioritizationFeeLamports": 7031,
                 "transaction": tx, "requestId": unique_uuid(c.seq),
                 "totalTime": round(random.uniform(100, 400), 3),
                 "expireAt": str(int(time.time()) + 60)})
    return 200, body


def _instructions(seq):
    u = unique_bytes(256, seq)

    def ix(prog, n, data):
        return {"programId": prog,
                "accounts": [{"pubkey": b58(u[i * 7:i * 7 + 32]), "isSigner": i == 0, "isWritable": i < 3}
                             for i in range(n)],
                "data": base64.b64encode(data).decode()}
    return {"tokenLedgerInstruction": None,
            "computeBudgetInstructions": [ix("ComputeBudget111111111111111111111111111111", 0, u[:9]),
                                          ix("ComputeBudget111111111111111111111111111111", 0, u[9:14])],
            "setupInstructions": [ix("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL", 6, b"\x01")],
            "swapInstruction": ix("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4", 14, u[100:180]),
            "cleanupInstruction": ix("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA", 3, b"\x09"),
            "otherInstructions": [],
            "addressLookupTableAddresses": [b58(u[200:232]), b58(u[220:252])]}


def h_build(c):
    q = quote_core(c, v2=True)
    body = {k: q[k] for k in ("inputMint", "outputMint", "inAmount", "outAmount",
                              "otherAmountThreshold", "swapMode", "slippageBps", "routePlan")}
    body.update(_instructions(c.seq))
    body["blockhashWithMetadata"] = {"blockhash": b58(unique_bytes(32, c.seq)),
                                     "lastValidBlockHeight": 340000000 + c.seq}
    body["requestId"] = unique_uuid(c.seq)
    return 200, body


def h_swap(c):
    return 200, {"swapTransaction": base64.b64encode(unique_bytes(1100, c.seq)).decode(),
                 "lastValidBlockHeight": 340000000 + c.seq,
                 "prioritizationFeeLamports": 7031, "computeUnitLimit": 216530,
                 "prioritizationType": {"computeBudget": {"microLamports": 32471,
                                                          "estimatedMicroLamports": 32471}},
                 "simulationSlot": None, "dynamicSlippageReport": None,
                 "simulationError": None, "addressesByLookupTableAddress": None,
                 "requestId": unique_uuid(c.seq)}


def h_swap_ix(c):
    body = _instructions(c.seq)
    body.update({"prioritizationFeeLamports": 7031, "computeUnitLimit": 216530,
                 "prioritizationType": {"computeBudget": {"microLamports": 32471,
                                                          "estimatedMicroLamports": 32471}},
                 "simulationSlot": None, "dynamicSlippageReport": None,
                 "simulationError": None, "requestId": unique_uuid(c.seq)})
    return 200, body


def h_execute(c):
    rid = None
    try:
        j = json.loads(c.req.body or b"{}")
        if isinstance(j, dict):
            rid = j.get("requestId")
    except ValueError:
        pass
    return 200, {"status": "Success", "signature": b58(unique_bytes(64, c.seq)),
                 "slot": str(365000000 + c.seq), "code": 0,
                 "inputAmountResult": "100000000", "outputAmountResult": "17057460",
                 "swapEvents": [{"inputMint": WSOL, "inputAmount": "100000000",
                                 "outputMint": USDC, "outputAmount": "17057460"}],
                 "requestId": rid or unique_uuid(c.seq)}


def h_price3(c):
    ids = c.p.get("ids")
    if not ids:
        raise HttpError(400, {"error": "Query parameter ids is required"})
    lst = ids.split(",")
    if len(lst) > 50:
        raise HttpError(400, {"error": "Too many ids: %d, max is 50" % len(lst)})
    out = {}
    unp = CFG.unpriced
    v = c.version
    for m in lst:
        if m not in unp:
            out[m] = price_v3_entry(m, v)
    return 200, Raw(jdump(out))


def h_price2(c):
    ids = c.p.get("ids")
    if not ids:
        raise HttpError(400, {"error": "Query parameter ids is required"})
    lst = ids.split(",")
    if len(lst) > 100:
        raise HttpError(400, {"error": "Too many ids"})
    data = {}
    for m in lst:
        data[m] = None if m in CFG.unpriced else {"id": m, "type": "derivedPrice",
                                                  "price": "%.9f" % usd_price(m, c.version)}
    return 200, {"data": data, "timeTaken": round(random.uniform(0.001, 0.005), 9)}


def token_info(mint, version):
    mint, sym, name, dec = mint_meta(mint)
    r = rng("ti", mint, version)
    price = usd_price(mint, version)
    supply = r.uniform(1e6, 1e10)

    def stats():
        return {"priceChange": round(r.uniform(-20, 20), 4), "liquidityChange": round(r.uniform(-5, 5), 4),
                "volumeChange": round(r.uniform(-50, 50), 4), "buyVolume": round(r.uniform(0, 1e6), 2),
                "sellVolume": round(r.uniform(0, 1e6), 2), "numBuys": r.randrange(10000),
                "numSells": r.randrange(10000), "numTraders": r.randrange(5000),
                "numNetBuyers": r.randrange(500)}
    return {"id": mint, "name": name, "symbol": sym,
            "icon": "https://ipfs.io/ipfs/Qm" + b58(hbytes(32, "icon", mint))[:44],
            "decimals": dec, "twitter": "https://x.com/" + sym.lower(),
            "website": "https://%s.example" % sym.lower(),
            "dev": b58(hbytes(32, "dev", mint)),
            "circSupply": round(supply * r.uniform(0.5, 1), 2), "totalSupply": round(supply, 2),
            "tokenProgram": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
            "launchpad": r.choice(("pump.fun", "met-dbc", None)),
            "firstPool": {"id": b58(hbytes(32, "fp", mint)), "createdAt": iso(BASE_TS - r.randrange(10 ** 8))},
            "holderCount": r.randrange(100, 2000000),
            "audit": {"mintAuthorityDisabled": True, "freezeAuthorityDisabled": True,
                      "topHoldersPercentage": round(r.uniform(1, 60), 4)},
            "organicScore": round(r.uniform(0, 100), 4), "organicScoreLabel": r.choice(("high", "medium", "low")),
            "isVerified": r.random() < 0.7, "cexes": r.sample(["Binance", "Bybit", "OKX", "Coinbase", "Kraken"], 2),
            "tags": ["verified", "strict"] if r.random() < 0.5 else ["community"],
            "fdv": round(supply * price, 2), "mcap": round(supply * price * 0.8, 2), "usdPrice": price,
            "priceBlockId": 348000000 + version * 150 + r.randrange(150),
            "liquidity": round(r.uniform(1e3, 1e8), 4),
            "stats5m": stats(), "stats1h": stats(), "stats24h": stats(),
            "ctLikes": r.randrange(1000), "smartCtLikes": r.randrange(100),
            "updatedAt": iso(BASE_TS + version * 60 + r.randrange(60))}


LRU_LOCK = threading.Lock()
LRU = collections.OrderedDict()
LRU_MAX = 16


def lru_get(key, build):
    with LRU_LOCK:
        v = LRU.get(key)
        if v is not None:
            LRU.move_to_end(key)
            return v
    v = build()
    with LRU_LOCK:
        LRU[key] = v
        while len(LRU) > LRU_MAX:
            LRU.popitem(last=False)
    return v


def token_list_bytes(kind, start, n, version):
    def build():
        return b"[" + b",".join(jdump(token_info(token(start + i)[0], version)) for i in range(n)) + b"]"
    return lru_get(("tokens", kind, start, n, version, SEED), build)


MINT_LIKE = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


def h_search(c):
    q = c.p.get("query")
    if not q:
        raise HttpError(400, {"error": "Query parameter query is required"})
    parts = [x for x in q.split(",") if x]
    if parts and all(MINT_LIKE.match(x) for x in parts):
        if len(parts) > 100:
            raise HttpError(400, {"error": "Too many mints, max is 100"})
        return 200, Raw(b"[" + b",".join(jdump(token_info(m, c.version)) for m in parts) + b"]")
    try:
        limit = min(max(int(c.p.get("limit", "20")), 1), 100)
    except ValueError:
        limit = 20
    ql = q.lower()
    res = []
    for i in range(2000):
        t = token(i)
        if ql in t[1].lower() or ql in t[2].lower():
            res.append(t[0])
            if len(res) >= limit:
                break
    return 200, Raw(b"[" + b",".join(jdump(token_info(m, c.version)) for m in res) + b"]")


TAG_SIZES = {"verified": None, "lst": 300, "stocks": 200, "toporganicscore": 100, "pump": 1000}


def h_tag(c):
    q = c.p.get("query")
    if not q:
        raise HttpError(400, {"error": "Query parameter query is required"})
    if q not in TAG_SIZES:
        raise HttpError(400, {"error": "Invalid tag: %s" % q})
    n = CFG.tag_size if TAG_SIZES[q] is None else min(TAG_SIZES[q], CFG.tag_size)
    start = {"verified": 0, "lst": 6, "stocks": 5000, "toporganicscore": 0, "pump": 7000}[q]
    return 200, Raw(token_list_bytes("tag", start, n, c.version))


TOP_CATS = frozenset(("toporganicscore", "toptraded", "toptrending"))
TOP_INTERVALS = frozenset(("5m", "1h", "6h", "24h"))


def h_top(c):
    _, _, _, cat, interval = c.req.path.split("/")
    try:
        limit = int(c.p.get("limit", "50"))
    except ValueError:
        raise HttpError(400, {"error": "Query parameter limit is invalid"})
    limit = min(max(limit, 1), 100)
    start = hint(SEED, cat, interval, c.version) % 1000
    return 200, Raw(token_list_bytes("top", start, limit, c.version))


def h_recent(c):
    return 200, Raw(token_list_bytes("recent", 3000 + c.version * 7, 30, c.version))


def h_labels(c):
    return 200, dict(program_labels())


# --------------------------------------------------------------------------
# Meteora dataset (legacy /pair/* and new /pools)

BIN_STEPS = (1, 2, 4, 5, 8, 10, 15, 20, 25, 50, 80, 100, 125, 200, 250, 400)
WIN_OLD = ("min_30", "hour_1", "hour_2", "hour_4", "hour_12", "hour_24")
WIN_NEW = ("30m", "1h", "2h", "4h", "12h", "24h")
SYSTEM = "11111111111111111111111111111111"
_pair_static = []
_pair_static_lock = threading.Lock()


def pair_static(i, n=None):
    """version-independent part of pair i (independent of the dataset size too)"""
    if i < len(_pair_static):
        return _pair_static[i]
    with _pair_static_lock:
        while len(_pair_static) <= i:
            j = len(_pair_static)
            r = rng("pairs", j)
            yi = r.choice((0, 0, 1, 1, 1, 2, 3))
            xi = 4 + r.randrange(min(4000, 300 + j // 10))
            x, y = token(xi), token(yi)
            if x[0] == y[0]:
                x = token(xi + 1)
            bs = r.choice(BIN_STEPS)
            _pair_static.append({
                "i": j, "address": addr("pair", j), "name": "%s-%s" % (x[1], y[1]),
                "mint_x": x[0], "mint_y": y[0], "dec_x": x[3], "dec_y": y[3],
                "reserve_x": addr("rx", j), "reserve_y": addr("ry", j),
                "bin_step": bs, "base_fee": bs * r.choice((0.01, 0.02, 0.04, 0.1)),
                "tags": r.choice(([], [], [], ["pump"], ["launchpad"], ["stable"])),
                "hide": r.random() < 0.02, "blacklisted": r.random() < 0.005,
                "reward_x": addr("rwx", j) if r.random() < 0.05 else SYSTEM,
                "verified": r.random() < 0.6,
                "created": BASE_TS - r.randrange(6 * 10 ** 7)})
        return _pair_static[i]


def pair_dyn(s, version):
    r = rng("pairv", s["i"], version)
    px = usd_price(s["mint_x"], version)
    py = usd_price(s["mint_y"], version)
    tvl = round(10 ** r.uniform(1, 7.5), 6)
    vol = {w: round(tvl * r.uniform(0, 0.05) * k, 4) for w, k in zip(WIN_OLD, (0.02, 0.04, 0.08, 0.17, 0.5, 1))}
    fee_pct = s["base_fee"] / 100
    fees = {w: round(vol[w] * fee_pct, 4) for w in WIN_OLD}
    ratio = {w: round(fees[w] / tvl * 100, 8) for w in WIN_OLD}
    return {"tvl": tvl, "px": px, "py": py, "vol": vol, "fees": fees, "ratio": ratio,
            "rx": int(tvl / 2 / px * 10 ** s["dec_x"]), "ry": int(tvl / 2 / py * 10 ** s["dec_y"]),
            "apr": round(ratio["hour_24"] * 365, 6), "cum_vol": round(tvl * r.uniform(10, 2000), 2),
            "price": float("%.10g" % (px / py))}


def pair_legacy(s, d):
    return {"address": s["address"], "name": s["name"], "mint_x": s["mint_x"], "mint_y": s["mint_y"],
            "reserve_x": s["reserve_x"], "reserve_y": s["reserve_y"],
            "reserve_x_amount": d["rx"], "reserve_y_amount": d["ry"], "bin_step": s["bin_step"],
            "base_fee_percentage": "%g" % s["base_fee"], "max_fee_percentage": "10",
            "protocol_fee_percentage": "5", "liquidity": "%.6f" % d["tvl"],
            "reward_mint_x": s["reward_x"], "reward_mint_y": SYSTEM,
            "fees_24h": d["fees"]["hour_24"], "today_fees": round(d["fees"]["hour_12"] * 1.3, 4),
            "trade_volume_24h": d["vol"]["hour_24"],
            "cumulative_trade_volume": "%.2f" % d["cum_vol"],
            "cumulative_fee_volume": "%.2f" % (d["cum_vol"] * s["base_fee"] / 100),
            "current_price": d["price"], "apr": d["apr"], "apy": round((math.exp(min(d["apr"], 500) / 100) - 1) * 100, 6),
            "farm_apr": 0, "farm_apy": 0, "hide": s["hide"], "is_blacklisted": s["blacklisted"],
            "fees": d["fees"], "fee_tvl_ratio": d["ratio"], "volume": d["vol"],
            "tags": s["tags"], "is_verified": s["verified"]}


def _tok_new(mint, dec, price):
    sym, name = mint_meta(mint)[1:3]
    return {"address": mint, "name": name, "symbol": sym, "decimals": dec, "is_verified": True,
            "holders": hint(SEED, "holders", mint) % 1000000, "freeze_authority_disabled": True,
            "total_supply": 1e9, "price": price, "market_cap": price * 1e9}


def pool_new(s, d):
    cx = dict(zip(WIN_NEW, (d["vol"][w] for w in WIN_OLD)))
    fx = dict(zip(WIN_NEW, (d["fees"][w] for w in WIN_OLD)))
    return {"address": s["address"], "name": s["name"],
            "token_x": _tok_new(s["mint_x"], s["dec_x"], d["px"]),
            "token_y": _tok_new(s["mint_y"], s["dec_y"], d["py"]),
            "reserve_x": s["reserve_x"], "reserve_y": s["reserve_y"],
            "token_x_amount": d["rx"] / 10 ** s["dec_x"], "token_y_amount": d["ry"] / 10 ** s["dec_y"],
            "created_at": s["created"], "reward_mint_x": s["reward_x"], "reward_mint_y": SYSTEM,
            "pool_config": {"bin_step": s["bin_step"], "base_fee_pct": s["base_fee"],
                            "max_fee_pct": 10.0, "protocol_fee_pct": 5.0},
            "dynamic_fee_pct": s["base_fee"], "tvl": d["tvl"], "current_price": d["price"],
            "apr": d["apr"], "apy": d["apr"] * 1.05, "has_farm": False, "farm_apr": 0, "farm_apy": 0,
            "volume": cx, "fees": fx,
            "protocol_fees": {k: v * 0.05 for k, v in fx.items()},
            "fee_tvl_ratio": dict(zip(WIN_NEW, (d["ratio"][w] for w in WIN_OLD))),
            "cumulative_metrics": {"volume": d["cum_vol"], "trade_fee": d["cum_vol"] * s["base_fee"] / 100,
                                   "protocol_fee": d["cum_vol"] * s["base_fee"] / 2000},
            "is_blacklisted": s["blacklisted"], "launchpad": None, "tags": s["tags"]}


class MeteoraDS:
    def __init__(self, n, version):
        t0 = time.monotonic()
        self.n, self.version = n, version
        self.static = [pair_static(i, n) for i in range(n)]
        self.dyn = [pair_dyn(s, version) for s in self.static]
        self.rendered = [jdump(pair_legacy(s, d)) for s, d in zip(self.static, self.dyn)]
        self.by_addr = {s["address"]: i for i, s in enumerate(self.static)}
        self.all = b"[" + b",".join(self.rendered) + b"]"
        self.all_gz = gzip.compress(self.all, 6 if len(self.all) < (16 << 20) else 1, mtime=0)
        self._orders = {}
        self._lock = threading.Lock()
        log("meteora dataset n=%d v=%d %d bytes (gz %d) in %.2fs" % (
            n, version, len(self.all), len(self.all_gz), time.monotonic() - t0))

    SORTS = {"volume": lambda d: d["vol"]["hour_24"], "tvl": lambda d: d["tvl"],
             "feetvlratio": lambda d: d["ratio"]["hour_24"], "apr": lambda d: d["apr"],
             "fee24h": lambda d: d["fees"]["hour_24"], "lm": lambda d: d["apr"]}

    def order(self, key, desc):
        k = (key, desc)
        o = self._orders.get(k)
        if o is None:
            f = self.SORTS.get(key, self.SORTS["volume"])
            o = sorted(range(self.n), key=lambda i: f(self.dyn[i]), reverse=desc)
            with self._lock:
                self._orders[k] = o
        return o


_ds_lock = threading.Lock()
_ds = [None]


def meteora_ds():
    n, v = CFG.pairs, STATE.version
    ds = _ds[0]
    if ds is not None and ds.n == n and ds.version == v:
        return ds
    with _ds_lock:
        ds = _ds[0]
        if ds is None or ds.n != n or ds.version != v:
            ds = MeteoraDS(n, v)
            _ds[0] = ds
        return ds


def _int(p, name, default, lo=None, hi=None):
    v = p.get(name)
    if v is None or v == "":
        x = default
    else:
        try:
            x = int(v)
        except ValueError:
            raise HttpError(400, {"error": "invalid %s" % name})
    if lo is not None and x < lo:
        raise HttpError(400, {"error": "%s must be >= %d" % (name, lo)})
    if hi is not None and x > hi:
        x = hi
    return x


def _truthy(v):
    return v is not None and v.lower() in ("true", "1", "yes")


def meteora_filtered(c, ds):
    p = c.p
    key = p.get("sort_key", "volume")
    desc = p.get("order_by", "desc").lower() != "asc"
    idx = ds.order(key, desc)
    st = ds.static
    term = p.get("search_term")
    mints = p.get("include_token_mints")
    tags = p.get("tags")
    pairs = p.get("include_pool_token_pairs")
    low_tvl = p.get("hide_low_tvl")
    if term or mints or tags or pairs or low_tvl or _truthy(p.get("hide_low_apr")) \
            or p.get("include_unknown", "true").lower() == "false":
        term = term.lower() if term else None
        ms = set(mints.split(",")) if mints else None
        ts = set(tags.split(",")) if tags else None
        ps = set()
        if pairs:
            for pp in pairs.split(","):
                a, _, b = pp.partition("-")
                ps.add((a, b))
                ps.add((b, a))
        try:
            thr = float(low_tvl) if low_tvl and low_tvl.lower() not in ("true", "false") else (
                600.0 if _truthy(low_tvl) else None)
        except ValueError:
            thr = None
        hide_apr = _truthy(p.get("hide_low_apr"))
        known_only = p.get("include_unknown", "true").lower() == "false"
        out = []
        for i in idx:
            s = st[i]
            if term and term not in s["name"].lower() and term != s["address"].lower():
                continue
            if ms and s["mint_x"] not in ms and s["mint_y"] not in ms:
                continue
            if ts and not ts.intersection(s["tags"]):
                continue
            if ps and (s["mint_x"], s["mint_y"]) not in ps:
                continue
            if thr is not None and ds.dyn[i]["tvl"] < thr:
                continue
            if hide_apr and ds.dyn[i]["apr"] < 0.01:
                continue
            if known_only and not s["verified"]:
                continue
            out.append(i)
        idx = out
    return idx


def h_pair_all(c):
    return 200, PairAll(meteora_ds())


def h_pair_page(c):
    ds = meteora_ds()
    page = _int(c.p, "page", 0, 0)
    limit = _int(c.p, "limit", 50, 0, 1000)
    skip = _int(c.p, "skip_size", 0, 0)
    idx = meteora_filtered(c, ds)
    a = page * limit + skip
    sl = idx[a:a + limit]
    body = b'{"pairs":[' + b",".join(ds.rendered[i] for i in sl) + b'],"total":%d' % len(idx)
    return 200, Pre(body)


def h_pair_groups(c):
    ds = meteora_ds()
    page = _int(c.p, "page", 0, 0)
    limit = _int(c.p, "limit", 50, 0, 1000)
    idx = meteora_filtered(c, ds)
    groups = collections.OrderedDict()
    for i in idx:
        groups.setdefault(ds.static[i]["name"], []).append(i)
    names = list(groups)
    sl = names[page * limit:page * limit + limit]
    parts = []
    for nm in sl:
        parts.append(b'{"name":' + jdump(nm) + b',"pairs":[' +
                     b",".join(ds.rendered[i] for i in groups[nm]) + b"]}")
    return 200, Pre(b'{"groups":[' + b",".join(parts) + b'],"total":%d' % len(names))


def h_pair_one(c):
    a = c.req.path[len("/pair/"):]
    ds = meteora_ds()
    i = ds.by_addr.get(a)
    if i is None:
        raise HttpError(404, {"error": "Pair not found"})
    return 200, Pre(ds.rendered[i][:-1])


NEW_SORTS = {"tvl": "tvl", "volume": "volume", "fee_tvl_ratio": "feetvlratio", "fees": "fee24h",
             "apr": "apr"}


def h_pools(c):
    ds = meteora_ds()
    p = c.p
    page = _int(p, "page", 1, 1)
    size = _int(p, "page_size", 10, 1, 1000)
    sb = p.get("sort_by", "volume_24h:desc")
    metric, _, direction = sb.partition(":")
    base = metric.rsplit("_", 1)[0] if metric.rsplit("_", 1)[-1] in WIN_NEW else metric
    idx = ds.order(NEW_SORTS.get(base, "volume"), direction.lower() != "asc")
    q = p.get("query")
    if q:
        ql = q.lower()
        idx = [i for i in idx if ql in ds.static[i]["name"].lower() or q == ds.static[i]["address"]
               or q in (ds.static[i]["mint_x"], ds.static[i]["mint_y"])]
    total = len(idx)
    sl = idx[(page - 1) * size:page * size]
    data = [pool_new(ds.static[i], ds.dyn[i]) for i in sl]
    return 200, {"total": total, "pages": (total + size - 1) // size, "current_page": page,
                 "page_size": size, "data": data}


def h_pool_one(c):
    a = c.req.path[len("/pools/"):]
    ds = meteora_ds()
    i = ds.by_addr.get(a)
    if i is None:
        raise HttpError(404, {"error": "Pool not found"})
    return 200, pool_new(ds.static[i], ds.dyn[i])


def h_pool_group(c):
    g = c.req.path[len("/pools/groups/"):]
    a, _, b = g.partition("-")
    if not a or not b:
        raise HttpError(400, {"error": "group must be mintA-mintB"})
    ds = meteora_ds()
    page = _int(c.p, "page", 1, 1)
    size = _int(c.p, "page_size", 10, 1, 100)
    idx = [i for i in ds.order("volume", True)
           if {ds.static[i]["mint_x"], ds.static[i]["mint_y"]} == {a, b}]
    sl = idx[(page - 1) * size:page * size]
    return 200, {"total": len(idx), "pages": (len(idx) + size - 1) // size, "current_page": page,
                 "page_size": size, "data": [pool_new(ds.static[i], ds.dyn[i]) for i in sl]}


# --------------------------------------------------------------------------
# Orca

def whirlpool(i, version):
    s = pair_static(i, max(CFG.whirlpools, 3))
    r = rng("wp", i, version)
    ta, tb = mint_meta(s["mint_x"]), mint_meta(s["mint_y"])
    pa, pb = usd_price(ta[0], version), usd_price(tb[0], version)
    tvl = 10 ** r.uniform(2, 7.5)
    vd = tvl * r.uniform(0, 2)

    def tok(t):
        return {"mint": t[0], "symbol": t[1], "name": t[2], "decimals": t[3],
                "logoURI": "https://static.orca.so/%s.png" % t[1].lower(),
                "coingeckoId": t[2].lower().replace(" ", "-"), "whitelisted": True, "poolToken": False,
                "token2022": False}

    def dwm(x):
        return {"day": x, "week": x * r.uniform(5, 8), "month": x * r.uniform(20, 32)}
    fa = dwm(vd * 0.003 * 365 / tvl)
    return {"address": addr("wp", i), "tokenA": tok(ta), "tokenB": tok(tb), "whitelisted": True,
            "token2022": False, "tickSpacing": r.choice((1, 2, 4, 8, 16, 64, 128, 256)),
            "price": pa / pb, "lpFeeRate": 0.003, "protocolFeeRate": 0.13,
            "whirlpoolsConfig": "2LecshUwdy9xi7meFgHtFJQNSKk4KdTrcpvaB56dP2NQ",
            "modifiedTimeMs": (BASE_TS + version * 60) * 1000, "tvl": tvl,
            "volume": dwm(vd), "volumeDenominatedA": dwm(vd / pa), "volumeDenominatedB": dwm(vd / pb),
            "priceRange": {"day": {"min": pa / pb * 0.97, "max": pa / pb * 1.03},
                           "week": {"min": pa / pb * 0.9, "max": pa / pb * 1.1},
                           "month": {"min": pa / pb * 0.8, "max": pa / pb * 1.2}},
            "feeApr": fa, "reward0Apr": dwm(0), "reward1Apr": dwm(0), "reward2Apr": dwm(0),
            "totalApr": fa}


def orca_v2_pool(i, version):
    w = whirlpool(i, version)
    r = rng("wp2", i, version)
    return {"address": w["address"], "whirlpoolsConfig": w["whirlpoolsConfig"], "whirlpoolBump": [255],
            "tickSpacing": w["tickSpacing"], "tickSpacingSeed": [w["tickSpacing"], 0],
            "feeRate": 3000, "protocolFeeRate": 1300, "liquidity": str(r.randrange(10 ** 15)),
            "sqrtPrice": str(r.randrange(10 ** 19)), "tickCurrentIndex": r.randrange(-40000, 40000),
            "tokenMintA": w["tokenA"]["mint"], "tokenVaultA": addr("va", i),
            "tokenMintB": w["tokenB"]["mint"], "tokenVaultB": addr("vb", i),
            "updatedAt": iso(BASE_TS + version * 60), "updatedSlot": 365000000 + version * 150,
            "hasWarning": False, "poolType": "whirlpool",
            "tokenA": {"address": w["tokenA"]["mint"], "symbol": w["tokenA"]["symbol"],
                       "decimals": w["tokenA"]["decimals"]},
            "tokenB": {"address": w["tokenB"]["mint"], "symbol": w["tokenB"]["symbol"],
                       "decimals": w["tokenB"]["decimals"]},
            "price": str(w["price"]), "tvlUsdc": str(w["tvl"]),
            "stats": {"24h": {"volume": str(w["volume"]["day"]), "fees": str(w["volume"]["day"] * 0.003)},
                      "7d": {"volume": str(w["volume"]["week"]), "fees": str(w["volume"]["week"] * 0.003)},
                      "30d": {"volume": str(w["volume"]["month"]), "fees": str(w["volume"]["month"] * 0.003)}},
            "rewards": [], "lockedLiquidityPercent": []}


def h_whirlpools(c):
    n, v = CFG.whirlpools, c.version
    body = lru_get(("wp", n, v, SEED), lambda: b'{"whirlpools":[' + b",".join(
        jdump(whirlpool(i, v)) for i in range(n)) + b'],"hasMore":false')
    return 200, Pre(body)


def h_orca_pools(c):
    n = CFG.whirlpools
    size = _int(c.p, "size", 100, 1, 3000)
    off = 0
    cur = c.p.get("next") or c.p.get("after")
    if cur:
        try:
            off = int(base64.urlsafe_b64decode(cur.encode() + b"==").decode().split(":")[1])
        except (ValueError, IndexError):
            raise HttpError(400, {"inner": "invalid cursor", "status": 400})
    end = min(n, off + size)
    data = [orca_v2_pool(i, c.version) for i in range(off, end)]
    nxt = base64.urlsafe_b64encode(b"o:%d" % end).decode().rstrip("=") if end < n else None
    prev = base64.urlsafe_b64encode(b"o:%d" % max(0, off - size)).decode().rstrip("=") if off > 0 else None
    return 200, {"data": data, "meta": {"cursor": {"previous": prev, "next": nxt}}}


def h_orca_pool(c):
    a = c.req.path[len("/v2/solana/pools/"):]
    for i in range(CFG.whirlpools):
        if addr("wp", i) == a:
            return 200, {"data": orca_v2_pool(i, c.version), "meta": {"cursor": None}}
    raise HttpError(404, {"inner": "pool not found", "status": 404})


# --------------------------------------------------------------------------
# Birdeye

def birdeye_entry(m, v):
    r = rng("be", m, v)
    t = BASE_TS + v * 60 + r.randrange(60)
    return {"value": usd_price(m, v), "updateUnixTime": t,
            "updateHumanTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)),
            "priceChange24h": r.uniform(-12, 12), "priceInNative": usd_price(m, v) / usd_price(WSOL, v),
            "liquidity": r.uniform(1e3, 1e8)}


def h_be_price(c):
    a = c.p.get("address")
    if not a:
        raise HttpError(400, {"success": False, "message": "address is invalid format"})
    if a in CFG.unpriced:
        return 200, {"data": None, "success": True}
    return 200, {"data": birdeye_entry(a, c.version), "success": True}


def h_be_multi(c):
    la = c.p.get("list_address")
    if not la:
        raise HttpError(400, {"success": False, "message": "list_address is invalid format"})
    lst = la.split(",")
    if len(lst) > 100:
        raise HttpError(400, {"success": False, "message": "list_address: max 100 addresses"})
    return 200, {"data": {m: (None if m in CFG.unpriced else birdeye_entry(m, c.version)) for m in lst},
                 "success": True}


# --------------------------------------------------------------------------
# common: /echo and /bytes

def h_echo(c):
    r = c.req
    return 200, {"method": r.method, "path": r.path, "query": r.raw_query,
                 "headers": r.hdict, "body_len": r.body_len, "body_sha256": r.body_sha}


def respond_time_knobs(c):
    """/respond knobs for clock-relative headers (cache-policy tests): date_offset=N sends Date N
    seconds from now (negative: in the past), date=none sends no Date, lm_ago=N a Last-Modified N
    seconds before now, expires_in=N an Expires N seconds from now. Returns header lines."""
    out = []
    now = int(time.time())

    def fmt(t):
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))
    try:
        if c.p.get("date") == "none":
            out.append("Date: -")  # send_response: no Date at all
        elif "date_offset" in c.p:
            out.append("Date: " + fmt(now + int(c.p["date_offset"])))
        if "lm_ago" in c.p:
            out.append("Last-Modified: " + fmt(now - int(c.p["lm_ago"])))
        if "expires_in" in c.p:
            out.append("Expires: " + fmt(now + int(c.p["expires_in"])))
    except ValueError:
        raise HttpError(400, {"error": "date_offset, lm_ago and expires_in must be integers"})
    return out


def h_respond(c):
    """GET /respond?status=N&h=Name:value&h=...: an answer with the status and response headers the
    test chooses (cache-policy tests: Cache-Control, Expires, Set-Cookie, Vary, ETag...). The body
    is {"version": data_version, "key": canonical key, "_fakeSeq": seq}."""
    try:
        status = int(c.p.get("status", "200"))
    except ValueError:
        raise HttpError(400, {"error": "status must be an integer"})
    extra = [v for (k, v) in c.plist if k == "h" and ":" in v] + respond_time_knobs(c)
    extra += respond_interim(c)
    # conditional requests: 304 when If-None-Match names the ETag (or If-Modified-Since equals the
    # Last-Modified) this answer carries, so revalidation can be tested
    given = {h.split(":", 1)[0].strip().lower(): h.split(":", 1)[1].strip() for h in extra}
    inm = c.req.hdict.get("if-none-match")
    ims = c.req.hdict.get("if-modified-since")
    if (inm is not None and "etag" in given and given["etag"] in [t.strip() for t in inm.split(",")]) or \
            (ims is not None and inm is None and given.get("last-modified") == ims):
        if c.p.get("no304") is None:
            return 304, Raw(b""), respond_304_knobs(c, extra)
    body = respond_body(c)
    if body is None:
        body = {"version": c.version, "key": c.key}
        respond_echo(c, body)
    return status, body, extra + respond_vary_from(c) + respond_echo_origin(c)


def respond_body(c):
    """/respond knobs for the body itself (validation tests: an error inside a 200, an old
    payload timestamp): `body=TEXT` (url-encoded) is sent as is instead of the default JSON, with
    `$NOW_MS` and `$NOW` replaced by the unix time in milliseconds / seconds; `later=TEXT` with
    `later_from=V` is sent instead once data_version >= V (one URL, a good answer then a bad one).
    Returns Raw, or None for the default body."""
    text = c.p.get("body")
    if "later" in c.p:
        try:
            if c.version >= int(c.p.get("later_from", "0")):
                text = c.p["later"]
        except ValueError:
            raise HttpError(400, {"error": "later_from must be an integer"})
    if text is None:
        return None
    now = time.time()
    text = text.replace("$NOW_MS", str(int(now * 1000))).replace("$NOW", str(int(now)))
    return Raw(text.encode())


def respond_echo_origin(c):
    """/respond knob echo_origin=1: CORS done by the origin as many apps do it, echoing the request's
    Origin: always Vary: Origin, and with an Origin, Access-Control-Allow-Origin: <it> and
    Access-Control-Allow-Credentials: true (CORS poisoning tests)."""
    if c.p.get("echo_origin") is None:
        return []
    o = c.req.hdict.get("origin")
    out = [] if c.p.get("echo_origin") == "novary" else ["Vary: Origin"]  # novary: the careless kind
    if o:
        out += ["Access-Control-Allow-Origin: " + o, "Access-Control-Allow-Credentials: true"]
    return out


def respond_vary_from(c):
    """/respond knob vary_from=Name: the answer's Vary is the value of the request header Name (no
    Vary when the request has none), so one URL's Vary can change between requests."""
    name = c.p.get("vary_from", "").strip().lower()
    v = c.req.hdict.get(name) if name else None
    return ["Vary: " + v] if v else []


def respond_echo(c, body):
    """/respond knob echo=Name (repeatable): the body's "echo" maps each named request header
    (lower case) to the value the origin received, or null when it was absent (Vary tests)."""
    names = [v.strip().lower() for (k, v) in c.plist if k == "echo" and v.strip()]
    if names:
        body["echo"] = {n: c.req.hdict.get(n) for n in names}


def respond_304_knobs(c, extra):
    """/respond knobs for the 304 it gives (conditional-request tests): `etag304=V` sends ETag V on
    the 304 instead of the answer's (a 304 about another representation); `nov304=1` sends the 304
    without ETag and Last-Modified. (`no304=1`, read by h_respond, never answers 304.)"""
    out = extra
    if c.p.get("nov304") is not None:
        out = [h for h in out if h.split(":", 1)[0].strip().lower() not in ("etag", "last-modified")]
    if c.p.get("etag304") is not None:
        out = [h for h in out if h.split(":", 1)[0].strip().lower() != "etag"] + ["ETag:" + c.p["etag304"]]
    return out


def respond_interim(c):
    """/respond?interim=1NN: an interim response (e.g. 103 Early Hints, 100 Continue) is sent
    before the final one (1xx handling tests); returned as a marker header send_response acts on."""
    v = c.p.get("interim", "")
    if len(v) == 3 and v.isdigit() and v[0] == "1" and v != "101":
        return ["X-Fake-Interim-Status: " + v]
    return []


_BLOCK = [None]


def bytes_block():
    if _BLOCK[0] is None:
        _BLOCK[0] = b"".join(hashlib.sha256(("%d:%d" % (SEED, j)).encode()).digest() for j in range(2048))
    return _BLOCK[0]


class ByteStream:
    def __init__(self, n):
        self.length = n

    def iter(self):
        mv = memoryview(bytes_block())
        left = self.length
        while left > 0:
            k = 65536 if left > 65536 else left
            yield mv[:k]
            left -= k


def h_bytes(c):
    n = c.p.get("n")
    if n is None or not n.isdigit():
        raise HttpError(400, {"error": "n must be a non-negative integer"})
    if c.p.get("ranges") == "1":
        ranged = bytes_range(c, int(n))
        if ranged is not None:
            return ranged
    return 200, ByteStream(int(n))


def bytes_range(c, n):
    """/bytes?n=N&ranges=1: a single `Range: bytes=F-L` (or F-, or -S) is answered 206 with
    Content-Range and those bytes (pass-through range tests); anything else: None (the whole 200)."""
    v = c.req.hdict.get("range", "")
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", v.strip())
    if m is None or (m.group(1) == "" and m.group(2) == "") or n == 0:
        return None
    if m.group(1) == "":
        first, last = max(0, n - int(m.group(2))), n - 1
    else:
        first = int(m.group(1))
        last = min(n - 1, int(m.group(2))) if m.group(2) else n - 1
    if first >= n:
        return 416, Raw(b""), ["Content-Range: bytes */%d" % n]
    if last < first:
        return None
    block = bytes_block()
    out = (block * (last // len(block) + 1))[first:last + 1]
    return 206, Raw(out), ["Content-Range: bytes %d-%d/%d" % (first, last, n)]


# --------------------------------------------------------------------------
# body wrappers

class Raw:
    """bytes returned as is (JSON whose top level must not get _fakeSeq)."""
    __slots__ = ("b",)

    def __init__(self, b):
        self.b = b


class Pre:
    """a JSON object rendered without its closing brace: _fakeSeq is appended."""
    __slots__ = ("b",)

    def __init__(self, b):
        self.b = b


class PairAll:
    __slots__ = ("ds",)

    def __init__(self, ds):
        self.ds = ds


# --------------------------------------------------------------------------
# routing

class Route:
    __slots__ = ("name", "lat", "methods")

    def __init__(self, name, lat, methods):
        self.name, self.lat, self.methods = name, lat, methods


def _r(name, lat, **methods):
    return Route(name, lat, methods)


EXACT = {
    "jup": {r.name: r for r in (
        _r("/swap/v1/quote", "quote", GET=h_quote),
        _r("/swap/v2/quote", "quote", GET=h_quote2),
        _r("/swap/v2/order", "swap", GET=h_order),
        _r("/ultra/v1/order", "swap", GET=h_order),
        _r("/swap/v2/build", "swap", GET=h_build),
        _r("/swap/v1/swap", "swap", POST=h_swap),
        _r("/swap/v1/swap-instructions", "swap", POST=h_swap_ix),
        _r("/swap/v2/execute", "swap", POST=h_execute),
        _r("/ultra/v1/execute", "swap", POST=h_execute),
        _r("/price/v3", "price", GET=h_price3),
        _r("/price/v2", "price", GET=h_price2),
        _r("/tokens/v2/search", "tokens", GET=h_search),
        _r("/tokens/v2/tag", "tokens", GET=h_tag),
        _r("/tokens/v2/recent", "tokens", GET=h_recent),
        _r("/swap/v1/program-id-to-label", "tokens", GET=h_labels),
    )},
    "meteora": {r.name: r for r in (
        _r("/pair/all", "pair_all", GET=h_pair_all),
        _r("/pair/all_with_pagination", "pair", GET=h_pair_page),
        _r("/pair/all_by_groups", "pair", GET=h_pair_groups),
        _r("/pools", "pair", GET=h_pools),
    )},
    "orca": {r.name: r for r in (
        _r("/v1/whirlpool/list", "pair_all", GET=h_whirlpools),
        _r("/v2/solana/pools", "pair", GET=h_orca_pools),
    )},
    "birdeye": {r.name: r for r in (
        _r("/defi/price", "price", GET=h_be_price),
        _r("/defi/multi_price", "price", GET=h_be_multi),
    )},
}
ECHO_METHODS = {m: h_echo for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
COMMON = {"/echo": Route("/echo", "echo", ECHO_METHODS), "/bytes": _r("/bytes", "bytes", GET=h_bytes),
          "/respond": _r("/respond", "echo", GET=h_respond, HEAD=h_respond, POST=h_respond, PUT=h_respond,
                         DELETE=h_respond, PATCH=h_respond)}
R_TOP = _r("/tokens/v2/{category}/{interval}", "tokens", GET=h_top)
R_PAIR = _r("/pair/{address}", "pair", GET=h_pair_one)
R_POOLGROUP = _r("/pools/groups/{pair}", "pair", GET=h_pool_group)
R_POOL = _r("/pools/{address}", "pair", GET=h_pool_one)
R_ORCAPOOL = _r("/v2/solana/pools/{address}", "pair", GET=h_orca_pool)


def lookup(profile, path):
    r = EXACT[profile].get(path)
    if r is not None:
        return r
    r = COMMON.get(path)
    if r is not None:
        return r
    if profile == "jup":
        if path.startswith("/tokens/v2/"):
            parts = path.split("/")
            if len(parts) == 5 and parts[3] in TOP_CATS and parts[4] in TOP_INTERVALS:
                return R_TOP
    elif profile == "meteora":
        if path.startswith("/pair/") and path.count("/") == 2 and len(path) > 6:
            return R_PAIR
        if path.startswith("/pools/groups/") and path.count("/") == 3 and len(path) > 14:
            return R_POOLGROUP
        if path.startswith("/pools/") and path.count("/") == 2 and len(path) > 7:
            return R_POOL
    elif profile == "orca":
        if path.startswith("/v2/solana/pools/") and path.count("/") == 4 and len(path) > 17:
            return R_ORCAPOOL
    return None


# --------------------------------------------------------------------------
# canonical key

def _dec(s):
    if "%" in s or "+" in s:
        return unquote_plus(s)
    return s


def canon_params(raw_query):
    if not raw_query:
        return []
    out = []
    for part in raw_query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        k = _dec(k)
        v = _dec(v)
        if k in LIST_PARAMS:
            v = ",".join(sorted(set(x for x in (y.strip() for y in v.split(",")) if x)))
        out.append((k, v))
    out.sort(key=lambda kv: kv[0])
    return out


_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" + SAFE_Q)


def _enc(s):
    for ch in s:
        if ch not in _SAFE_CHARS:
            return quote(s, safe=SAFE_Q)
    return s


def canon_path(path):
    if "%" in path:
        return quote(unquote(path), safe=SAFE_PATH)
    return path


def canon_key(path, params):
    p = canon_path(path)
    if not params:
        return p
    return p + "?" + "&".join(_enc(k) + "=" + _enc(v) for k, v in params)


# --------------------------------------------------------------------------
# configuration, limiter, latency, rules, gates

DEFAULT_LAT = {"quote": (80, 400), "price": (30, 150), "tokens": (50, 300), "pair": (60, 300),
               "pair_all": (800, 3000), "swap": (80, 400), "echo": (0, 0), "bytes": (0, 0),
               "other": (0, 0)}
RL_PRESETS = {"jup-keyless": (30, 60, "jup"), "jup-free": (60, 60, "jup"), "jup-dev": (600, 60, "jup"),
              "jup-pro-legacy-1": (100, 10, "jup"), "meteora": (30, 1, "meteora"),
              "birdeye-standard": (1, 1, "birdeye")}


class Glob:
    __slots__ = ("pat", "exact", "rx")

    def __init__(self, pat):
        self.pat = pat or "*"
        if any(ch in self.pat for ch in "*?["):
            self.exact = None
            self.rx = re.compile(_glob_translate(self.pat))
        else:
            self.exact = self.pat
            self.rx = None

    def match(self, s):
        if self.exact is not None:
            return s == self.exact
        return self.rx.match(s) is not None


class RLSpec:
    def __init__(self, limit, window, scope=None, profile=None, who=None, name=None):
        self.limit, self.window = int(limit), float(window)
        self.scope, self.profile, self.who = scope, profile, who
        self.name = name
        self.logs = {}

    def describe(self):
        return {"limit": self.limit, "window": self.window, "scope": self.scope,
                "profile": self.profile, "who": self.who, "preset": self.name}


def parse_rl(s):
    if isinstance(s, dict):
        d = dict(s)
        if "preset" in d:
            lim, win, prof = RL_PRESETS[d["preset"]]
            return RLSpec(lim, win, d.get("scope"), d.get("profile", prof), d.get("who"), d["preset"])
        return RLSpec(d["limit"], d.get("window", d.get("window_s", 60)), d.get("scope"),
                      d.get("profile"), d.get("who"))
    s = s.strip()
    head, *opts = s.split(",")
    kw = {}
    for o in opts:
        k, _, v = o.partition("=")
        kw[k.strip()] = v.strip()
    if head in RL_PRESETS:
        lim, win, prof = RL_PRESETS[head]
        return RLSpec(lim, win, kw.get("scope"), kw.get("profile", prof), kw.get("who"), head)
    lim, _, win = head.partition("/")
    if not lim.isdigit():
        raise ValueError("bad --rl %r (want LIMIT/WINDOW_S[,scope=/prefix][,profile=P])" % s)
    return RLSpec(int(lim), float(win or 1), kw.get("scope"), kw.get("profile"), kw.get("who"))


def parse_lat(items, cfg):
    if isinstance(items, str):
        items = [items]
    if isinstance(items, dict):
        items = ["%s=%s" % (k, (v if not isinstance(v, (list, tuple)) else "%s:%s" % tuple(v)))
                 if v is not None else "%s=" % k for k, v in items.items()]
    for it in items:
        k, _, v = it.partition("=")
        k = k.strip()
        v = v.strip()
        if k == "fixed":
            cfg.lat_fixed = float(v) if v not in ("", "none", "None", "null", "off") else None
            continue
        if k == "default":
            cfg.lat = dict(DEFAULT_LAT)
            cfg.lat_fixed = None
            continue
        med, _, p99 = v.partition(":")
        med = float(med)
        p99 = float(p99) if p99 else med
        if k.startswith("/"):
            cfg.lat_globs = [g for g in cfg.lat_globs if g[0].pat != k] + [(Glob(k), (med, p99))]
        else:
            cfg.lat[k] = (med, p99)


def sample_latency(cls, path):
    cfg = CFG
    if cfg.lat_fixed is not None:
        return cfg.lat_fixed / 1000.0
    mp = None
    for g, v in cfg.lat_globs:
        if g.match(path):
            mp = v
            break
    if mp is None:
        mp = cfg.lat.get(cls) or cfg.lat.get("other", (0, 0))
    med, p99 = mp
    if med <= 0:
        return 0.0
    if p99 <= med:
        return med / 1000.0
    sigma = (math.log(p99) - math.log(med)) / 2.3263
    v = random.lognormvariate(math.log(med), sigma)
    return min(v, p99 * 5, 60000) / 1000.0


RULE_FLAGS = ("timeout", "reset_before_headers", "truncate", "bad_json", "html200", "burst429", "html")
RULE_KEYS = frozenset(("route", "profile", "method", "key", "prob", "every", "next",
                       "status", "html", "timeout", "timeout_ms", "ms", "reset_before_headers",
                       "reset_after_bytes", "slow_headers", "slow_body", "stall_after_bytes",
                       "truncate", "bad_json", "html200", "refuse", "burst429", "retry_after", "id", "delay"))


def _num(v):
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


class Rule:
    _ids = [0]

    def __init__(self, spec):
        if isinstance(spec, str):
            d = {}
            for item in spec.split(","):
                item = item.strip()
                if not item:
                    continue
                k, eq, v = item.partition("=")
                d[k.strip()] = _num(v.strip()) if eq else True
        else:
            d = dict(spec)
        unknown = set(d) - RULE_KEYS
        if unknown:
            raise ValueError("unknown rule fields: %s" % ", ".join(sorted(unknown)))
        self.spec = d
        self.route = Glob(str(d.get("route", "*")))
        self.key = Glob(str(d["key"])) if d.get("key") else None
        self.profile = d.get("profile")
        self.method = d.get("method")
        self.prob = float(d["prob"]) if d.get("prob") is not None else None
        self.every = int(d["every"]) if d.get("every") else None
        self.next = int(d["next"]) if d.get("next") is not None else None
        self.count = 0
        self.fired = 0
        Rule._ids[0] += 1
        self.id = d.get("id") or Rule._ids[0]
        self.fx = {k: v for k, v in d.items() if k not in ("route", "profile", "method", "key", "prob",
                                                          "every", "next", "id")}
        if "ms" in self.fx and "timeout" in self.fx:
            self.fx["timeout"] = self.fx.pop("ms")
        if self.fx.get("timeout_ms"):
            self.fx["timeout"] = self.fx.pop("timeout_ms")
        st = self.fx.get("status")
        if st is not None and not isinstance(st, int):
            raise ValueError("rule status must be an integer")
        if not self.fx:
            raise ValueError("rule has no action: %r" % (spec,))

    def matches(self, lname, profile, method, path, key):
        if self.profile and self.profile not in (lname, profile):
            return False
        if self.method and self.method.upper() != method:
            return False
        if not self.route.match(path):
            return False
        if self.key is not None and not self.key.match(key):
            return False
        return True

    def fire(self):
        self.count += 1
        if self.next is not None:
            if self.fired >= self.next:
                return False
        elif self.every:
            if self.count % self.every:
                return False
        elif self.prob is not None:
            if RULE_RNG.random() >= self.prob:
                return False
        self.fired += 1
        return True

    def describe(self):
        d = dict(self.spec)
        d.update({"id": self.id, "matched": self.count, "fired": self.fired})
        return d


RULE_RNG = random.Random(1)


class Gate:
    def __init__(self, route, profile=None, key=None):
        self.route = Glob(route)
        self.profile = profile
        self.key = Glob(key) if key else None
        self.event = threading.Event()
        self.held = 0

    def matches(self, lname, profile, path, key):
        if self.profile and self.profile not in (lname, profile):
            return False
        if not self.route.match(path):
            return False
        return self.key is None or self.key.match(key)


class Config:
    def __init__(self):
        self.chunked = False
        self.gzip = False
        self.keys = None
        self.unpriced = frozenset()
        self.noroute = frozenset()
        self.pairs = 2000
        self.tag_size = 5000
        self.whirlpools = 1000
        self.bw = 0.0            # bytes/s
        self.retry_after = True
        self.count_rejected = False
        self.lat_fixed = None
        self.lat = dict(DEFAULT_LAT)
        self.lat_globs = []

    def describe(self):
        return {"seed": SEED, "chunked": self.chunked, "gzip": self.gzip,
                "keys": sorted(self.keys) if self.keys is not None else None,
                "unpriced": sorted(self.unpriced), "noroute": sorted(self.noroute),
                "pairs": self.pairs, "tag_size": self.tag_size, "whirlpools": self.whirlpools,
                "bw": self.bw / 1e6, "retry_after": self.retry_after,
                "count_rejected": self.count_rejected,
                "latency": {"fixed": self.lat_fixed, "routes": {k: list(v) for k, v in self.lat.items()},
                            "globs": {g.pat: list(v) for g, v in self.lat_globs}},
                "rl": [s.describe() for s in STATE.rl],
                "rules": [r.describe() for r in STATE.rules]}


class PStats:
    def __init__(self):
        self.inflight_now = 0
        self.clear()

    def clear(self):
        self.total = 0
        self.by_route = collections.Counter()
        self.by_key = collections.Counter()
        self.by_status = collections.Counter()
        self.max_inflight = self.inflight_now
        self.bytes_out = 0
        self.rl_rejected = 0

    def describe(self):
        return {"total": self.total, "by_route": dict(self.by_route), "by_key": dict(self.by_key),
                "by_status": dict(self.by_status), "max_inflight": self.max_inflight,
                "inflight_now": self.inflight_now, "bytes_out": self.bytes_out,
                "rl_rejected": self.rl_rejected}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.version = 0
        self.stats = {}
        self.ring = collections.deque(maxlen=RING_MAX)
        self.rl = []
        self.rl_lock = threading.Lock()
        self.rules = []
        self.rule_lock = threading.Lock()
        self.gates = []
        self.gate_lock = threading.Lock()
        self.held = 0
        self.listeners = {}
        self.t0 = time.time()


CFG = Config()
STATE = State()


def rl_check(lname, profile, path, account, keyed, now=None):
    """Returns None (no limit applies) or (rejected, limit, remaining, current, reset_at, retry_after).
    `now`: the request's arrival (kernel receive time), else the time of the call."""
    specs = STATE.rl
    if not specs:
        return None
    app = []
    for s in specs:
        if s.profile and s.profile not in (lname, profile):
            continue
        if s.scope and not path.startswith(s.scope):
            continue
        if s.who == "keyless" and keyed or s.who == "keyed" and not keyed:
            continue
        app.append(s)
    if not app:
        return None
    if now is None:
        now = time.time()
    with STATE.rl_lock:
        rej = None
        logs = []
        for s in app:
            lg = s.logs.get(account)
            if lg is None:
                lg = s.logs[account] = collections.deque()
            cut = now - s.window
            while lg and lg[0] <= cut:
                lg.popleft()
            logs.append(lg)
            if rej is None and len(lg) >= s.limit:
                rej = s
        if rej is None or CFG.count_rejected:
            for lg in logs:
                lg.append(now)
        if rej is not None:
            chosen, lg = rej, logs[app.index(rej)]
        else:
            k = min(range(len(app)), key=lambda i: app[i].limit - len(logs[i]))
            chosen, lg = app[k], logs[k]
        cur = len(lg)
        remaining = chosen.limit - cur
        reset_at = (lg[0] if lg else now) + chosen.window
        retry = None
        if rej is not None:
            j = max(0, len(lg) - chosen.limit)
            free_at = (lg[j] if j < len(lg) else now) + chosen.window
            retry = max(1, math.ceil(free_at - now))
    return (rej is not None, chosen.limit, remaining, cur, reset_at, retry)


def match_rule(lname, profile, method, path, key):
    rules = STATE.rules
    if not rules:
        return None
    with STATE.rule_lock:
        for r in rules:
            if r.matches(lname, profile, method, path, key) and r.fire():
                return r.fx
    return None


def find_gate(lname, profile, path, key):
    gates = STATE.gates
    if not gates:
        return None
    with STATE.gate_lock:
        for g in gates:
            if not g.event.is_set() and g.matches(lname, profile, path, key):
                g.held += 1
                STATE.held += 1
                return g
    return None


def release_gates(route=None):
    with STATE.gate_lock:
        keep, rel = [], []
        for g in STATE.gates:
            (rel if route is None or g.route.pat == route else keep).append(g)
        STATE.gates = keep
        n = 0
        for g in rel:
            n += g.held
            g.event.set()
    return n, len(rel)


# --------------------------------------------------------------------------
# HTTP engine

REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 411: "Length Required",
           413: "Payload Too Large", 414: "URI Too Long", 429: "Too Many Requests",
           431: "Request Header Fields Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}

_date_cache = [0, ""]


def http_date():
    t = int(time.time())
    if t != _date_cache[0]:
        _date_cache[1] = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))
        _date_cache[0] = t
    return _date_cache[1]


class BadRequest(Exception):
    def __init__(self, status, msg):
        self.status, self.msg = status, msg


class Request:
    __slots__ = ("method", "target", "path", "raw_query", "version", "headers", "hdict",
                 "body", "body_len", "body_sha", "keep_alive")


class Conn:
    __slots__ = ("sock", "rfile", "peer", "listener", "dead", "arrival")

    def __init__(self, sock, peer, listener):
        self.sock, self.peer, self.listener = sock, peer, listener
        self.rfile = None
        self.dead = False
        self.arrival = None

    def abort(self):
        """close with RST (SO_LINGER 0)"""
        if self.dead:
            return
        self.dead = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def close(self):
        self.dead = True
        try:
            if self.rfile is not None:
                self.rfile.close()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def finish_fin(self):
        """half-close (FIN) and close"""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close()

    def wait_close_for(self, secs):
        """wait `secs` before answering, watching the socket: True (and closed) when the peer closed
        the connection meanwhile (a cancelled request: a hedge that lost)"""
        end = time.monotonic() + secs
        while not STOP.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return False
            try:
                r, _, _ = select.select([self.sock], [], [], min(left, 0.5))
                if not r:
                    continue
                if self.sock.recv(1, socket.MSG_PEEK):
                    time.sleep(max(0.0, end - time.monotonic()))  # a pipelined request: just wait
                    return False
            except (OSError, ValueError):
                pass
            self.close()
            return True
        return False

    def wait_client_close(self):
        """never answer: block until the peer closes or the server stops"""
        try:
            self.sock.settimeout(1.0)
        except OSError:
            return
        while not STOP.is_set():
            try:
                d = self.sock.recv(65536)
                if not d:
                    break
            except socket.timeout:
                continue
            except OSError:
                break
        self.close()



class _BodySink:
    """Request body reader: counts and hashes every byte, keeps the first KEEP_BODY_MAX."""

    def __init__(self):
        self.sha = hashlib.sha256()
        self.kept = []
        self.kept_n = 0
        self.n = 0

    def read_exact(self, rf, left):
        while left:
            d = rf.read(min(left, 262144))
            if not d:
                return False
            left -= len(d)
            self.n += len(d)
            self.sha.update(d)
            if self.kept_n < KEEP_BODY_MAX:
                self.kept.append(d)
                self.kept_n += len(d)
        return True

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS


def arrival_stamps_on(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return True
    except OSError:
        return False


def kernel_arrival(sock):
    """Wait for the next bytes and return the kernel's receive time of the first of them (epoch
    seconds), without consuming them (MSG_PEEK); None when it is not known."""
    try:
        data, anc, _, _ = sock.recvmsg(1, 64, socket.MSG_PEEK)
    except (OSError, ValueError):
        return None
    if not data:
        return None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = struct.unpack("qq", payload[:16])
            return sec + nsec / 1e9
    return None


def read_request(conn):
    rf = conn.rfile
    line = rf.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):
        line = rf.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise BadRequest(414, "request line too long")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "bad request line")
    req = Request()
    req.method, target, req.version = parts
    headers = []
    hd = {}
    total = 0
    while True:
        h = rf.readline(MAX_LINE + 1)
        if not h:
            return None
        if h in (b"\r\n", b"\n"):
            break
        total += len(h)
        if total > MAX_HEADERS or len(h) > MAX_LINE:
            raise BadRequest(431, "headers too large")
        s = h.decode("latin-1")
        i = s.find(":")
        if i <= 0:
            raise BadRequest(400, "bad header line")
        name = s[:i].strip().lower()
        val = s[i + 1:].strip()
        headers.append((name, val))
        if name in hd:
            hd[name] = hd[name] + ", " + val
        else:
            hd[name] = val
    req.headers = headers
    req.hdict = hd
    if target.startswith("http://") or target.startswith("https://"):
        j = target.find("/", target.find("//") + 2)
        target = target[j:] if j >= 0 else "/"
    req.target = target
    h = target.find("#")
    if h >= 0:
        target = target[:h]
    q = target.find("?")
    if q >= 0:
        req.path, req.raw_query = target[:q], target[q + 1:]
    else:
        req.path, req.raw_query = target, ""
    conn_h = hd.get("connection", "").lower()
    if req.version == "HTTP/1.1":
        req.keep_alive = "close" not in conn_h
    else:
        req.keep_alive = "keep-alive" in conn_h
    # body
    te = hd.get("transfer-encoding")
    cl = hd.get("content-length")
    sink = _BodySink()
    if te is not None and "chunked" in te.lower():
        if hd.get("expect", "").lower() == "100-continue":
            conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            sl = rf.readline(MAX_LINE)
            if not sl:
                return None
            try:
                size = int(sl.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest(400, "bad chunk size")
            if size == 0:
                while True:
                    t = rf.readline(MAX_LINE)
                    if not t or t in (b"\r\n", b"\n"):
                        break
                break
            if not sink.read_exact(rf, size):
                return None
            rf.readline(MAX_LINE)
    elif cl is not None:
        try:
            left = int(cl)
            if left < 0:
                raise ValueError
        except ValueError:
            raise BadRequest(400, "bad content-length")
        if left and hd.get("expect", "").lower() == "100-continue":
            conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not sink.read_exact(rf, left):
            return None
    req.body = b"".join(sink.kept)
    req.body_len = sink.n
    req.body_sha = sink.sha.hexdigest()
    return req


def simple_response(conn, status, body, ctype="application/json", keep=True, extra=()):
    head = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status")),
            "Date: " + http_date(), "Server: fakeorigin", "Content-Type: " + ctype,
            "Content-Length: %d" % len(body)]
    head.extend(extra)
    head.append("Connection: keep-alive" if keep else "Connection: close")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    conn.sock.sendall(data)
    return len(data)


def accepts_gzip(req):
    ae = req.hdict.get("accept-encoding")
    if not ae:
        return False
    for part in ae.lower().split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() in ("gzip", "x-gzip", "*"):
            params = params.replace(" ", "")
            if params.startswith("q=0") and params.strip("q=0.") == "":
                return False
            return True
    return False


def send_response(conn, req, status, ctype, body, extra, fx, keep, gz_body=None):
    """Send a response. body: bytes or ByteStream.  Returns (bytes_sent, keep, fault)."""
    cfg = CFG
    head_only = req.method == "HEAD"
    is_stream = not isinstance(body, (bytes, bytearray))
    gz = False
    if cfg.gzip and not is_stream and body and accepts_gzip(req) and not ctype.startswith("application/octet"):
        body = gz_body if gz_body is not None else gzip.compress(body, 5, mtime=0)
        gz = True
    blen = body.length if is_stream else len(body)
    truncate = bool(fx and fx.get("truncate"))
    chunked = cfg.chunked and req.version == "HTTP/1.1" and not truncate and status not in (204, 304)
    if req.version != "HTTP/1.1" and not req.keep_alive:
        keep = False
    # a handler's own Date line replaces ours ("Date: -": none at all)
    own_date = [] if any(x[:5].lower() == "date:" for x in extra) else ["Date: " + http_date()]
    h = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))] + own_date + \
        ["Server: fakeorigin", "Content-Type: " + ctype]
    if chunked:
        h.append("Transfer-Encoding: chunked")
    else:
        h.append("Content-Length: %d" % blen)
    if gz:
        h.append("Content-Encoding: gzip")
    if cfg.gzip:
        h.append("Vary: Accept-Encoding")
    h.extend(x for x in extra if x != "Date: -")
    h.append("Connection: keep-alive" if keep else "Connection: close")
    head = ("\r\n".join(h) + "\r\n\r\n").encode("latin-1")
    for e in extra:
        if e.startswith("X-Fake-Interim-Status: "):  # respond_interim: a 1xx goes first
            code = int(e.split(": ", 1)[1])
            head = (b"HTTP/1.1 %d %s\r\nLink: </style.css>; rel=preload\r\n\r\n"
                    % (code, REASONS.get(code, "Interim").encode())) + head
    sock = conn.sock
    sent = 0
    # rate and cut-off
    rate = cfg.bw
    cutoff = None
    action = None
    if fx:
        sb = fx.get("slow_body")
        if sb:
            rate = min(rate, float(sb)) if rate else float(sb)
        for a in ("reset_after_bytes", "stall_after_bytes"):
            if fx.get(a) is not None and fx.get(a) is not False:
                cutoff = int(fx[a])
                action = a
                break
        if truncate and action is None:
            cutoff = blen // 2
            action = "truncate"
        sh = fx.get("slow_headers")
        if sh:
            pieces = 10
            step = max(1, len(head) // pieces + 1)
            delay = float(sh) / 1000.0 / pieces
            for i in range(0, len(head), step):
                sock.sendall(head[i:i + step])
                time.sleep(delay)
            sent += len(head)
            head = b""
    if head_only:
        if head:
            sock.sendall(head)
            sent += len(head)
        return sent, keep, None
    # fast path
    if not is_stream and not chunked and not rate and cutoff is None and blen <= 262144:
        sock.sendall(head + body if head else body)
        return sent + len(head) + blen, keep, None
    if head:
        sock.sendall(head)
        sent += len(head)

    def wire():
        if is_stream:
            src = body.iter()
        else:
            mv = memoryview(body)
            src = (mv[i:i + 65536] for i in range(0, blen, 65536))
        if chunked:
            for piece in src:
                yield b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n"
            yield b"0\r\n\r\n"
        else:
            yield from src
    bsent = 0
    t0 = time.monotonic()
    step = 262144
    if rate:
        step = max(64, min(65536, int(rate / 50)))
    for piece in wire():
        mv = memoryview(piece)
        while len(mv):
            n = len(mv)
            if rate and n > step:
                n = step
            if cutoff is not None:
                n = min(n, cutoff - bsent)
                if n <= 0:
                    break
            sock.sendall(mv[:n])
            bsent += n
            mv = mv[n:]
            if rate:
                d = t0 + bsent / rate - time.monotonic()
                if d > 0:
                    time.sleep(d)
        if cutoff is not None and bsent >= cutoff:
            break
    sent += bsent
    if action == "reset_after_bytes":
        conn.abort()
        return sent, False, "reset"
    if action == "stall_after_bytes":
        conn.wait_client_close()
        return sent, False, "stall"
    if action == "truncate":
        conn.finish_fin()
        return sent, False, "truncate"
    return sent, keep, None


HTML_ERR = ("<!DOCTYPE html>\n<html><head><title>%(host)s | %(code)d: %(reason)s</title>"
            "<meta charset=\"UTF-8\"/></head><body><div id=\"cf-wrapper\"><div id=\"cf-error-details\">"
            "<h1><span class=\"cf-error-type\">Error</span> <span class=\"cf-error-code\">%(code)d</span></h1>"
            "<h2 class=\"cf-subheadline\">%(reason)s</h2><p>The web server reported a %(lower)s error.</p>"
            "<p>Cloudflare Ray ID: <strong>%(ray)s</strong> &bull; Performance &amp; security by Cloudflare</p>"
            "</div></div></body></html>\n")
HTML_200 = (b"<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title>"
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\"></head>"
            b"<body><noscript>Enable JavaScript and cookies to continue</noscript>"
            b"<div id=\"challenge-stage\"></div></body></html>\n")


def profile_429(profile):
    if profile == "jup":
        return b'{"code":429,"message":"[API Gateway] Too many requests"}'
    return b'{"message":"Too many requests"}'


class Ctx:
    __slots__ = ("req", "p", "plist", "key", "version", "seq")


class Listener:
    def __init__(self, name, profile, host, port, control=False):
        self.name, self.profile, self.host = name, profile, host
        self.control = control
        self.lock = threading.Lock()
        self.down_until = 0.0
        self.conns = set()
        self.sock = self._bind(port)
        self.port = self.sock.getsockname()[1]

    def _bind(self, port):
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, port))
        s.listen(4096)
        return s

    def start(self):
        threading.Thread(target=self.serve, name="accept-" + self.name, daemon=True).start()

    def serve(self):
        while not STOP.is_set():
            s = self.sock
            if s is None:
                self._wait_and_rebind()
                continue
            try:
                c, a = s.accept()
            except OSError:
                if STOP.is_set():
                    return
                if self.sock is s:
                    time.sleep(0.01)
                continue
            try:
                threading.Thread(target=self.conn_main, args=(c, a), daemon=True).start()
            except RuntimeError:
                c.close()

    def _wait_and_rebind(self):
        while not STOP.is_set():
            with self.lock:
                d = self.down_until - time.monotonic()
            if d > 0:
                time.sleep(min(d, 0.02))
                continue
            try:
                ns = self._bind(self.port)
            except OSError:
                time.sleep(0.01)
                continue
            with self.lock:
                if self.down_until > time.monotonic():
                    ns.close()
                    continue
                self.sock = ns
                self.down_until = 0.0
            log("listener %s reopened on %d" % (self.name, self.port))
            return

    def refuse(self, ms, except_conn=None):
        with self.lock:
            self.down_until = max(self.down_until, time.monotonic() + ms / 1000.0)
            s, self.sock = self.sock, None
            conns = list(self.conns)
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for c in conns:
            if c is not except_conn:
                try:
                    c.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        log("listener %s refusing for %d ms" % (self.name, ms))

    def close(self):
        with self.lock:
            s, self.sock = self.sock, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def conn_main(self, sock, peer):
        conn = Conn(sock, peer, self)
        with self.lock:
            self.conns.add(conn)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(IDLE_TIMEOUT)
            conn.rfile = sock.makefile("rb", 65536)
            handle = self.handle_control if self.control else self.handle_data
            stamps = not self.control and arrival_stamps_on(sock)
            while not STOP.is_set() and not conn.dead:
                # clients here send a request only after the previous answer (no pipelining), so
                # the next request's first bytes are the first bytes in the socket's queue
                conn.arrival = kernel_arrival(sock) if stamps else None
                try:
                    req = read_request(conn)
                except BadRequest as e:
                    simple_response(conn, e.status, jdump({"error": e.msg}), keep=False)
                    break
                if req is None:
                    break
                if not handle(conn, req):
                    break
        except (OSError, ValueError):
            pass
        except Exception as e:  # pragma: no cover - keep the server alive
            warn("connection error: %r" % (e,))
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    # ---------------------------------------------------------------- data
    def handle_data(self, conn, req):
        lname, prof = self.name, self.profile
        method = req.method
        rmethod = "GET" if method == "HEAD" else method
        path = req.path
        route = lookup(prof, path)
        params = canon_params(req.raw_query)
        key = canon_key(path, params)
        api_key = req.hdict.get("x-api-key")
        rname = route.name if route is not None else "404"
        # when the request reached this machine, not when this thread got to it: under CPU load a
        # Python thread wakes tens of ms late, and rate windows counted at that time are wrong
        t_start = conn.arrival if conn.arrival is not None else time.time()
        st = STATE.stats[lname]
        with STATE.lock:
            STATE.seq += 1
            seq = STATE.seq
            st.total += 1
            st.by_route[rname] += 1
            st.by_key[key] += 1
            st.inflight_now += 1
            if st.inflight_now > st.max_inflight:
                st.max_inflight = st.inflight_now
            rec = {"seq": seq, "t_ms": round(t_start * 1000, 3), "profile": lname, "method": method,
                   "path": path, "raw_query": req.raw_query, "canonical_key": key, "api_key": api_key,
                   "status": None, "headers": req.hdict, "client": conn.peer[0],
                   "body_len": req.body_len, "route": rname}
            STATE.ring.append(rec)
        names = []
        for n, _ in req.headers:
            if n not in names:
                names.append(n)
        extra = ["X-Fake-Seq: %d" % seq, "X-Fake-Key: " + key,
                 "X-Fake-Api-Key: " + (api_key if api_key else "-"),
                 "X-Fake-Headers: " + ",".join(names),
                 "X-Fake-Profile: " + lname, "X-Fake-Version: %d" % STATE.version]
        if prof == "jup":
            extra.append("x-api-gateway-request-id: %08x%08x" % (seq, hint(SEED, "gw", seq) & 0xFFFFFFFF))
        status = 0
        fault = None
        sent = 0
        keep = req.keep_alive
        try:
            status, sent, keep, fault = self._process(conn, req, lname, prof, rmethod, path, route,
                                                      params, key, api_key, seq, extra, keep)
            return keep
        except OSError:
            fault = fault or "client_gone"
            return False
        finally:
            label = fault if fault and status == 0 else str(status)
            with STATE.lock:
                st.inflight_now -= 1
                st.by_status[label] += 1
                st.bytes_out += sent
                rec["status"] = status if status else fault
                if fault:
                    rec["fault"] = fault
                rec["dur_ms"] = round((time.time() - t_start) * 1000, 3)
            if VERBOSE:
                log("%s #%d %s %s -> %s" % (lname, seq, method, key, label))

    def _process(self, conn, req, lname, prof, rmethod, path, route, params, key, api_key, seq, extra, keep):
        cfg = CFG
        JSON = "application/json; charset=utf-8"
        # 1. auth
        if api_key is not None and cfg.keys is not None and api_key not in cfg.keys and prof in ("jup", "birdeye"):
            body = (b'{"code":401,"message":"Invalid API key"}' if prof == "jup"
                    else b'{"success":false,"message":"Unauthorized"}')
            n, keep, f = send_response(conn, req, 401, JSON, body, extra, None, keep)
            return 401, n, keep, f
        if prof == "birdeye" and not api_key and path.startswith("/defi/"):
            n, keep, f = send_response(conn, req, 401, JSON, b'{"success":false,"message":"Unauthorized"}',
                                       extra, None, keep)
            return 401, n, keep, f
        # 2. rate limit
        if STATE.rl:
            account = ("key:" + api_key) if api_key else ("ip:" + conn.peer[0])
            res = rl_check(lname, prof, path, account, bool(api_key), conn.arrival)
            if res is not None:
                rejected, limit, remaining, cur, reset_at, retry = res
                if prof == "jup":
                    extra = extra + ["x-ratelimit-limit: %d" % limit, "x-ratelimit-remaining: %d" % remaining,
                                     "x-ratelimit-current: %d" % cur,
                                     "x-ratelimit-reset: %d" % math.ceil(reset_at)]
                if rejected:
                    with STATE.lock:
                        STATE.stats[lname].rl_rejected += 1
                    if cfg.retry_after:
                        extra = extra + ["Retry-After: %d" % retry]
                    n, keep, f = send_response(conn, req, 429, JSON, profile_429(prof), extra, None, keep)
                    return 429, n, keep, f
        # 3. error-injection rules and gates
        fx = match_rule(lname, prof, rmethod, path, key)
        g = find_gate(lname, prof, path, key)
        if g is not None:
            try:
                while not g.event.wait(0.5):
                    if STOP.is_set():
                        return 0, 0, False, "stopped"
            finally:
                with STATE.gate_lock:
                    g.held -= 1
                    STATE.held -= 1
        if fx:
            if fx.get("refuse"):
                self.refuse(float(fx["refuse"]), except_conn=conn)
                conn.abort()
                return 0, 0, False, "refused"
            if fx.get("reset_before_headers"):
                conn.abort()
                return 0, 0, False, "reset_before_headers"
            dl = fx.get("delay")
            if dl and conn.wait_close_for(float(dl) / 1000.0):
                return 0, 0, False, "client_closed"
            t = fx.get("timeout")
            if t is True:
                conn.wait_client_close()
                return 0, 0, False, "timeout"
            if t:
                time.sleep(float(t) / 1000.0)
            if fx.get("burst429"):
                ex = list(extra)
                if prof == "jup" and not any(x.startswith("x-ratelimit-") for x in ex):
                    ex += ["x-ratelimit-limit: 0", "x-ratelimit-remaining: 0", "x-ratelimit-current: 0",
                           "x-ratelimit-reset: %d" % math.ceil(time.time() + 1)]
                ra = fx.get("retry_after")
                if ra is not None and ra is not False:
                    ex = [x for x in ex if not x.startswith("Retry-After")] + ["Retry-After: %d" % int(ra)]
                elif cfg.retry_after and not any(x.startswith("Retry-After") for x in ex):
                    ex.append("Retry-After: 1")
                n, keep, f = send_response(conn, req, 429, JSON, profile_429(prof), ex, fx, keep)
                return 429, n, keep, f
        # 4. latency (after counting)
        lat = sample_latency(route.lat if route is not None else "other", path)
        if lat > 0:
            time.sleep(lat)
        # 5. body
        ctype = JSON
        gz_body = None
        status = 200
        if fx and fx.get("status"):
            status = int(fx["status"])
            reason = REASONS.get(status, "Error")
            if fx.get("html"):
                ctype = "text/html; charset=UTF-8"
                body = (HTML_ERR % {"host": "api.example", "code": status, "reason": reason,
                                    "lower": reason.lower(), "ray": "%016x" % hint(SEED, "ray", seq)}).encode()
            else:
                body = jdump({"error": reason, "code": status})
        elif fx and fx.get("html200"):
            ctype = "text/html; charset=UTF-8"
            body = HTML_200
        else:
            if route is None:
                status, body = 404, {"error": "Not Found", "path": path}
            else:
                h = route.methods.get(rmethod)
                if h is None:
                    status, body = 405, {"error": "Method Not Allowed"}
                    extra = extra + ["Allow: " + ", ".join(sorted(route.methods))]
                else:
                    c = Ctx()
                    c.req, c.key, c.version, c.seq = req, key, STATE.version, seq
                    c.p = dict(params)
                    c.plist = list(params)
                    try:
                        res = h(c)
                        status, body = res[0], res[1]
                        if len(res) > 2:
                            extra = list(extra) + list(res[2])
                    except HttpError as e:
                        status, body = e.status, e.body
                    except Exception as e:
                        warn("handler error on %s: %r" % (key, e))
                        status, body = 500, {"error": "fake handler error: %r" % (e,)}
            seqb = b',"_fakeSeq":%d}' % seq
            if isinstance(body, dict):
                body["_fakeSeq"] = seq
                body = jdump(body)
            elif isinstance(body, Pre):
                body = body.b + seqb
            elif isinstance(body, Raw):
                body = body.b
            elif isinstance(body, PairAll):
                gz_body = body.ds.all_gz
                body = body.ds.all
            elif isinstance(body, ByteStream):
                ctype = "application/octet-stream"
            elif isinstance(body, list):
                body = jdump(body)
            if fx and fx.get("bad_json") and isinstance(body, bytes):
                body = body[:max(1, len(body) // 2)] + b'\x00<bad json'
                gz_body = None
        n, keep, f = send_response(conn, req, status, ctype, body, extra, fx, keep, gz_body)
        return status, n, keep, f

    # ------------------------------------------------------------- control
    def handle_control(self, conn, req):
        try:
            status, body = control(req)
        except (ValueError, KeyError, TypeError) as e:
            status, body = 400, {"error": str(e)}
        simple_response(conn, status, jdump(body), keep=req.keep_alive)
        return req.keep_alive


# --------------------------------------------------------------------------
# control API

def _jbody(req):
    if not req.body:
        return {}
    j = json.loads(req.body)
    if not isinstance(j, dict):
        raise ValueError("JSON object expected")
    return j


def stats_snapshot():
    with STATE.lock:
        out = {name: st.describe() for name, st in STATE.stats.items()}
        out["seq"] = STATE.seq
        out["data_version"] = STATE.version
    out["held"] = STATE.held
    return out


def apply_config(d):
    cfg = CFG
    unknown = set(d) - {"latency", "lat", "rl", "rl_preset", "retry_after", "count_rejected", "rules",
                        "add_rules", "pairs", "tag_size", "whirlpools", "bw", "chunked", "gzip", "keys",
                        "unpriced", "noroute"}
    if unknown:
        raise ValueError("unknown config keys: %s" % ", ".join(sorted(unknown)))
    for k in ("latency", "lat"):
        if k in d:
            parse_lat(d[k], cfg)
    if "rl" in d or "rl_preset" in d:
        specs = []
        rl = d.get("rl") or []
        if isinstance(rl, (str, dict)):
            rl = [rl]
        specs += [parse_rl(x) for x in rl]
        pr = d.get("rl_preset") or []
        if isinstance(pr, str):
            pr = [pr]
        specs += [parse_rl(x) for x in pr]
        with STATE.rl_lock:
            STATE.rl = specs
    if "retry_after" in d:
        v = d["retry_after"]
        cfg.retry_after = v if isinstance(v, bool) else str(v).lower() in ("on", "true", "1")
    if "count_rejected" in d:
        cfg.count_rejected = bool(d["count_rejected"])
    if "rules" in d:
        rules = [Rule(x) for x in (d["rules"] or [])]
        with STATE.rule_lock:
            STATE.rules = rules
    if "add_rules" in d:
        rules = [Rule(x) for x in d["add_rules"]]
        with STATE.rule_lock:
            STATE.rules = STATE.rules + rules
    for k in ("pairs", "tag_size", "whirlpools"):
        if k in d:
            setattr(cfg, k, int(d[k]))
    if "bw" in d:
        cfg.bw = float(d["bw"] or 0) * 1e6
    for k in ("chunked", "gzip"):
        if k in d:
            setattr(cfg, k, bool(d[k]))
    if "keys" in d:
        cfg.keys = frozenset(_list(d["keys"])) if d["keys"] is not None else None
    for k in ("unpriced", "noroute"):
        if k in d:
            setattr(cfg, k, frozenset(_list(d[k])))


def _list(v):
    if v is None:
        return []
    if isinstance(v, str):
        return [x for x in v.split(",") if x]
    return list(v)


def settle_inflight(max_wait=0.1):
    """A request's status is counted just after its response is sent: a client that has read its
    response may ask for stats before that. Wait (briefly) until every request in flight is one a
    gate holds, so what a client has received is always counted."""
    deadline = time.time() + max_wait
    while time.time() < deadline:
        with STATE.lock:
            busy = sum(st.inflight_now for st in STATE.stats.values()) - STATE.held
        if busy <= 0:
            return
        time.sleep(0.002)


def control(req):
    path, m = req.path, req.method
    if path == "/__fake/stats" and m == "GET":
        settle_inflight()
        return 200, stats_snapshot()
    if path == "/__fake/requests" and m == "GET":
        settle_inflight()
        since = 0
        for part in req.raw_query.split("&"):
            k, _, v = part.partition("=")
            if k == "since" and v:
                since = int(v)
        with STATE.lock:
            out = [dict(r) for r in STATE.ring if r["seq"] > since]
        return 200, out
    if path == "/__fake/reset" and m == "POST":
        with STATE.rule_lock:
            STATE.rules = []
        release_gates()
        with STATE.rl_lock:
            for s in STATE.rl:
                s.logs.clear()
        with STATE.lock:
            for st in STATE.stats.values():
                st.clear()
            STATE.ring.clear()
        return 200, {"ok": True, "seq": STATE.seq}
    if path == "/__fake/config":
        if m == "GET":
            return 200, CFG.describe()
        if m == "POST":
            apply_config(_jbody(req))
            return 200, CFG.describe()
    if path == "/__fake/version" and m == "POST":
        d = _jbody(req)
        with STATE.lock:
            if "version" in d:
                STATE.version = int(d["version"])
            else:
                STATE.version += 1
            v = STATE.version
        if any(L.profile == "meteora" for L in STATE.listeners.values()):
            threading.Thread(target=meteora_ds, daemon=True).start()
        return 200, {"data_version": v, "version": v}
    if path == "/__fake/version" and m == "GET":
        return 200, {"data_version": STATE.version, "version": STATE.version}
    if path == "/__fake/gate":
        if m == "GET":
            with STATE.gate_lock:
                gates = [{"route": g.route.pat, "profile": g.profile, "held": g.held} for g in STATE.gates]
                return 200, {"held": STATE.held, "gates": gates}
        if m == "POST":
            d = _jbody(req)
            route = d.get("route")
            if not route:
                raise ValueError("route is required")
            if d.get("hold", True):
                g = Gate(route, d.get("profile"), d.get("key"))
                with STATE.gate_lock:
                    STATE.gates.append(g)
                return 200, {"ok": True, "gates": len(STATE.gates)}
            n, k = release_gates(route)
            return 200, {"released": n, "gates_removed": k}
    if path == "/__fake/release" and m == "POST":
        d = _jbody(req)
        n, k = release_gates(d.get("route"))
        return 200, {"released": n, "gates_removed": k}
    if path == "/__fake/rules" and m == "GET":
        with STATE.rule_lock:
            return 200, [r.describe() for r in STATE.rules]
    if path in ("/__fake/rule", "/__fake/rules") and m == "POST":
        d = _jbody(req)
        spec = d.get("rule", d) if isinstance(d.get("rule", d), (str, dict)) else d
        r = Rule(spec)
        with STATE.rule_lock:
            STATE.rules = STATE.rules + [r]
        return 200, r.describe()
    if path == "/__fake/rules" and m == "DELETE":
        with STATE.rule_lock:
            STATE.rules = []
        return 200, {"ok": True}
    if path == "/__fake/refuse" and m == "POST":
        d = _jbody(req)
        L = STATE.listeners.get(d.get("profile", ""))
        if L is None:
            return 404, {"error": "unknown listener"}
        L.refuse(float(d.get("ms", 1000)))
        return 200, {"ok": True}
    if path == "/__fake/health":
        return 200, {"ok": True, "seq": STATE.seq}
    return 404, {"error": "unknown control endpoint", "path": path}


# --------------------------------------------------------------------------
# main

def parse_hostport(s):
    host, _, port = s.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def profile_of(name):
    if name in PROFILES:
        return name
    for p in PROFILES:
        if name.startswith(p) and (name[len(p):].isdigit() or name[len(p):len(p) + 1] in ("_", "-", ".")):
            return p
    raise ValueError("unknown profile in listener name %r (want one of %s)" % (name, ", ".join(PROFILES)))


def main(argv=None):
    global VERBOSE, SEED, RULE_RNG
    ap = argparse.ArgumentParser(description="fake DEX origin for dexcache tests")
    ap.add_argument("--listen", action="append", default=[], metavar="PROFILE=HOST:PORT")
    ap.add_argument("--control", default=None, metavar="HOST:PORT")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunked", action="store_true")
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--keys", default=None, help="comma list of valid API keys")
    ap.add_argument("--unpriced", default="")
    ap.add_argument("--noroute", default="")
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--tag-size", type=int, default=5000)
    ap.add_argument("--whirlpools", type=int, default=1000)
    ap.add_argument("--rl", action="append", default=[], metavar="LIMIT/WINDOW_S[,scope=PREFIX]")
    ap.add_argument("--rl-preset", action="append", default=[], choices=sorted(RL_PRESETS))
    ap.add_argument("--preset", action="append", default=[], choices=["bench-large"])
    ap.add_argument("--retry-after", choices=["on", "off"], default="on")
    ap.add_argument("--count-rejected", action="store_true")
    ap.add_argument("--lat", action="append", default=[], metavar="ROUTE=MEDIAN_MS:P99_MS|fixed=N")
    ap.add_argument("--bw", type=float, default=None, metavar="MB/s")
    ap.add_argument("--rule", action="append", default=[])
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    VERBOSE = a.verbose
    SEED = a.seed
    RULE_RNG = random.Random(hint(SEED, "rules"))
    random.seed(hint(SEED, "global"))
    threading.stack_size(512 * 1024)

    cfg = CFG
    cfg.chunked, cfg.gzip = a.chunked, a.gzip
    cfg.keys = frozenset(_list(a.keys)) if a.keys is not None else None
    cfg.unpriced = frozenset(_list(a.unpriced))
    cfg.noroute = frozenset(_list(a.noroute))
    cfg.tag_size, cfg.whirlpools = a.tag_size, a.whirlpools
    cfg.pairs = 2000
    bw = None
    if "bench-large" in a.preset:
        cfg.pairs = 72000
        bw = 20.0
    if a.pairs is not None:
        cfg.pairs = a.pairs
    if a.bw is not None:
        bw = a.bw
    cfg.bw = (bw or 0.0) * 1e6
    cfg.retry_after = a.retry_after == "on"
    cfg.count_rejected = a.count_rejected
    try:
        parse_lat(a.lat, cfg)
        STATE.rl = [parse_rl(x) for x in a.rl] + [parse_rl(x) for x in a.rl_preset]
        STATE.rules = [Rule(x) for x in a.rule]
    except (ValueError, KeyError) as e:
        ap.error(str(e))
    if not a.listen:
        ap.error("at least one --listen PROFILE=HOST:PORT is required")

    specs = []
    for item in a.listen:
        name, eq, hp = item.partition("=")
        if not eq:
            ap.error("--listen wants PROFILE=HOST:PORT, got %r" % item)
        try:
            specs.append((name, profile_of(name), *parse_hostport(hp)))
        except ValueError as e:
            ap.error(str(e))
    # pre-render before binding so READY means "fast from the first request"
    if any(p == "meteora" for _, p, _, _ in specs):
        meteora_ds()
    bytes_block()
    program_labels()

    ports = {}
    for name, prof, host, port in specs:
        if name in STATE.listeners:
            ap.error("duplicate listener name %r" % name)
        L = Listener(name, prof, host, port)
        STATE.listeners[name] = L
        STATE.stats[name] = PStats()
        ports[name] = L.port
    ctl = None
    if a.control:
        host, port = parse_hostport(a.control)
        ctl = Listener("control", "control", host, port, control=True)
        ports["control"] = ctl.port

    def on_signal(signum, frame):
        STOP.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    for L in STATE.listeners.values():
        L.start()
    if ctl:
        ctl.start()
    sys.stdout.write("READY " + json.dumps(ports) + "\n")
    sys.stdout.flush()
    while not STOP.wait(0.5):
        pass
    for L in list(STATE.listeners.values()) + ([ctl] if ctl else []):
        L.close()
    log("stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
