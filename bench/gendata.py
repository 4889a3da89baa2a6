#!/usr/bin/python3
"""Deterministic DEX-like JSON payloads for the benchmarks, pre-gzipped beside each file.

    gendata.py DIR [--large-mb 90]

writes into DIR: quote.json (~2.5 KB Jupiter quote), price.json (~10 KB price v3),
pair_all_2m.json (~2.5 MB Meteora /pair/all) and pair_all_large.json (~90 MB by default), each with
a .gz twin (gzip -6) that nginx's gzip_static serves. The same arguments give the same bytes.
DIR/manifest.json records the sizes; a DIR whose manifest matches is left as it is.
"""
import gzip
import json
import os
import random
import sys

VERSION = 2
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
WSOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USDT = "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"
LABELS = ["Raydium", "Raydium CLMM", "Whirlpool", "Meteora DLMM", "Phoenix", "Lifinity V2", "Saber", "Orca V2"]


def addr(r):
    return "".join(r.choices(B58, k=44))


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def quote(r, target=2500):
    """A Jupiter /swap/v1/quote answer, its route plan grown until the body reaches `target` bytes."""
    body = {"inputMint": WSOL, "inAmount": "1000000000", "outputMint": USDC, "outAmount": "146523887",
            "otherAmountThreshold": "145791268", "swapMode": "ExactIn", "slippageBps": 50,
            "platformFee": None, "priceImpactPct": "0.0000412", "routePlan": [],
            "contextSlot": 365012345, "timeTaken": 0.012345678, "swapUsdValue": "146.52",
            "simplerRouteUsed": False, "mostReliableAmmsQuoteReport": {"info": {}},
            "useIncurredSlippageForQuoting": None, "otherRoutePlans": None, "loadedLongtailToken": False}
    mints = [WSOL, USDT, USDC]
    while len(dumps(body)) < target - 420:
        amm = addr(r)
        body["routePlan"].append({"swapInfo": {"ammKey": amm, "label": r.choice(LABELS),
                                               "inputMint": r.choice(mints), "outputMint": r.choice(mints),
                                               "inAmount": str(r.randrange(10**9)), "outAmount": str(r.randrange(10**9)),
                                               "feeAmount": str(r.randrange(10**6)), "feeMint": r.choice(mints)},
                                  "percent": r.choice([20, 30, 50, 100]), "bps": r.choice([2000, 5000, 10000])})
        if len(body["mostReliableAmmsQuoteReport"]["info"]) < 2:
            body["mostReliableAmmsQuoteReport"]["info"][amm] = str(r.randrange(10**9))
    raw = dumps(body)
    pad = max(0, target - len(raw) - len(',"_pad":""'))
    body["_pad"] = "".join(r.choices(B58, k=pad))
    return dumps(body)


def price(r, target=10240):
    """A Jupiter /price/v3 answer keyed by mint, grown to `target` bytes."""
    body = {}
    while len(dumps(body)) < target:
        body[addr(r)] = {"usdPrice": round(r.uniform(1e-6, 200), 9), "blockId": 365000000 + r.randrange(10**6),
                         "decimals": r.choice([5, 6, 8, 9]), "priceChange24h": round(r.uniform(-30, 30), 12)}
    return dumps(body)


def pair(r, i):
    """One pair; like the real list, most pools are dead (zero volume, fees and yields)."""
    x, y = addr(r), r.choice([WSOL, USDC, USDT])
    if r.random() < 0.75:
        return dead_pair(r, i, x, y)
    liq = r.uniform(0, 5e6)
    return {"address": addr(r), "name": "TOK%d-%s" % (i, "SOL" if y == WSOL else "USDC"), "mint_x": x, "mint_y": y,
            "reserve_x": addr(r), "reserve_y": addr(r), "reserve_x_amount": r.randrange(10**15),
            "reserve_y_amount": r.randrange(10**12), "bin_step": r.choice([1, 5, 10, 20, 80, 100]),
            "base_fee_percentage": r.choice(["0.01", "0.05", "0.1", "0.25", "1"]), "max_fee_percentage": "10",
            "protocol_fee_percentage": "5", "liquidity": "%.12f" % liq, "reward_mint_x": "11111111111111111111111111111111",
            "reward_mint_y": "11111111111111111111111111111111", "fees_24h": round(r.uniform(0, 1e4), 6),
            "today_fees": round(r.uniform(0, 1e4), 6), "trade_volume_24h": round(r.uniform(0, 1e6), 6),
            "cumulative_trade_volume": "%.2f" % r.uniform(0, 1e8), "cumulative_fee_volume": "%.2f" % r.uniform(0, 1e6),
            "current_price": r.uniform(1e-9, 1e3), "apr": r.uniform(0, 50), "apy": r.uniform(0, 100),
            "farm_apr": 0, "farm_apy": 0, "hide": False, "is_blacklisted": False,
            "fees": {"min_30": round(r.uniform(0, 10), 4), "hour_1": round(r.uniform(0, 50), 4),
                     "hour_2": round(r.uniform(0, 90), 4), "hour_4": round(r.uniform(0, 200), 4),
                     "hour_12": round(r.uniform(0, 500), 4), "hour_24": round(r.uniform(0, 900), 4)},
            "volume": {"min_30": round(r.uniform(0, 1e3), 4), "hour_1": round(r.uniform(0, 5e3), 4),
                       "hour_24": round(r.uniform(0, 9e4), 4)},
            "tags": r.choice([[], [], ["new"], ["verified"]]), "launchpad": None}


def dead_pair(r, i, x, y):
    zero = {"min_30": 0, "hour_1": 0, "hour_2": 0, "hour_4": 0, "hour_12": 0, "hour_24": 0}
    return {"address": addr(r), "name": "TOK%d-%s" % (i, "SOL" if y == WSOL else "USDC"), "mint_x": x, "mint_y": y,
            "reserve_x": addr(r), "reserve_y": addr(r), "reserve_x_amount": r.choice([0, r.randrange(10**6)]),
            "reserve_y_amount": 0, "bin_step": r.choice([1, 5, 10, 20, 80, 100]),
            "base_fee_percentage": r.choice(["0.01", "0.05", "0.1", "0.25", "1"]), "max_fee_percentage": "10",
            "protocol_fee_percentage": "5", "liquidity": "0", "reward_mint_x": "11111111111111111111111111111111",
            "reward_mint_y": "11111111111111111111111111111111", "fees_24h": 0, "today_fees": 0,
            "trade_volume_24h": 0, "cumulative_trade_volume": "0.00", "cumulative_fee_volume": "0.00",
            "current_price": round(r.uniform(1e-9, 1e3), 9), "apr": 0, "apy": 0, "farm_apr": 0, "farm_apy": 0,
            "hide": False, "is_blacklisted": False, "fees": zero, "fee_tvl_ratio": zero,
            "volume": {"min_30": 0, "hour_1": 0, "hour_24": 0}, "tags": [], "launchpad": None}


def pair_all(seed, target):
    """A flat array of Meteora DLMM pairs, at least `target` bytes."""
    r = random.Random(seed)
    out, n, i = [b"["], 1, 0
    while n < target:
        b = dumps(pair(r, i))
        if i:
            out.append(b",")
            n += 1
        out.append(b)
        n += len(b)
        i += 1
    out.append(b"]")
    return b"".join(out)


def write(d, name, data):
    with open(os.path.join(d, name + ".tmp"), "wb") as f:
        f.write(data)
    os.replace(os.path.join(d, name + ".tmp"), os.path.join(d, name))
    gz = gzip.compress(data, compresslevel=6, mtime=0)
    with open(os.path.join(d, name + ".gz.tmp"), "wb") as f:
        f.write(gz)
    os.replace(os.path.join(d, name + ".gz.tmp"), os.path.join(d, name + ".gz"))
    return {"bytes": len(data), "gzip_bytes": len(gz)}


def generate(d, large_mb=90):
    """Fills `d` unless its manifest already matches; returns the manifest."""
    os.makedirs(d, exist_ok=True)
    want = {"version": VERSION, "large_mb": large_mb}
    mpath = os.path.join(d, "manifest.json")
    try:
        with open(mpath) as f:
            m = json.load(f)
        if all(m.get(k) == v for k, v in want.items()) and all(
                os.path.getsize(os.path.join(d, n)) == m["files"][n]["bytes"] for n in m["files"]):
            return m
    except (OSError, ValueError, KeyError):
        pass
    files = {"quote.json": write(d, "quote.json", quote(random.Random(1))),
             "price.json": write(d, "price.json", price(random.Random(2))),
             "pair_all_2m.json": write(d, "pair_all_2m.json", pair_all(3, 2_500_000)),
             "pair_all_large.json": write(d, "pair_all_large.json", pair_all(4, int(large_mb * 1_000_000)))}
    m = dict(want, files=files)
    with open(mpath, "w") as f:
        json.dump(m, f, indent=1)
    return m


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    mb = float(sys.argv[sys.argv.index("--large-mb") + 1]) if "--large-mb" in sys.argv else 90
    print(json.dumps(generate(sys.argv[1], mb), indent=1))
