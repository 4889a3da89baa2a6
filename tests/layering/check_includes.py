#!/usr/bin/env python3
"""The module graph of proxy/ flows one way: this check fails when an include goes up or sideways.

Every C file under proxy/ belongs to one module of the table below (longest path prefix wins), and
every module sits on one layer. A file may include headers of its own module and of modules on a
strictly lower layer; modules on the same layer are independent of each other. A file that no
entry covers is an error too, so a new folder has to be placed in the table (and in
proxy/README.md, which draws the same table).

    check_includes.py [--root DIR]          check; exit 1 naming file:line and both layers
    check_includes.py --graph [--folders]   print the module -> module edges with include counts
    check_includes.py --self-test           the check on a small made-up tree (it must catch what it names)

Run by ctest (test `layering`).
"""
import argparse
import collections
import os
import re
import sys

# layer number -> what the layer is (bottom to top)
LAYERS = {
    0: "core: errors, log, time, metrics registry, small helpers",
    1: "config: YAML -> immutable config",
    2: "redis: the Redis client on uv, the fleet bus",
    3: "cache: the store and the pure cache logic (may keep fleet state in Redis)",
    4: "modules on the cache: inflight, ratelimit",
    5: "upstream: fetch, budget, key rotation, health",
    6: "runtime: config snapshot with per-route slots, per-worker context",
    7: "http: the request path",
    8: "request-facing modules on http: sse, admin, plugin",
    9: "wiring: server (threads, listeners, reload, admin and module registration)",
    10: "main.c: command line, signals",
}

# module -> (layer, path prefixes relative to the root)
MODULES = {
    "core": (0, ["core/"]),
    "config": (1, ["config/"]),
    "redis": (2, ["redis/"]),
    "cache": (3, ["cache/"]),
    "inflight": (4, ["inflight/"]),
    "ratelimit": (4, ["ratelimit/"]),
    "upstream": (5, ["upstream/"]),
    "runtime": (6, ["server/snapshot.h", "server/snapshot.c", "server/worker.h"]),
    "http": (7, ["http/"]),
    "sse": (8, ["sse/"]),
    "admin": (8, ["admin/"]),
    "plugin": (8, ["plugin/"]),
    "server": (9, ["server/"]),
    "main": (10, ["main.c"]),
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def module_of(rel):
    best = None
    for name, (_, prefixes) in MODULES.items():
        for p in prefixes:
            if (rel == p or (p.endswith("/") and rel.startswith(p))) and (best is None or len(p) > best[1]):
                best = (name, len(p))
    return best[0] if best else None


def sources(root):
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f.endswith((".c", ".h")):
                yield os.path.relpath(os.path.join(d, f), root)


def includes(root, rel):
    """(line, included path relative to root) for each quoted include that names a file under root."""
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            inc = m.group(1)
            # the compiler looks beside the including file first, then in the include path (root)
            beside = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
            if os.path.isfile(os.path.join(root, beside)):
                yield n, beside
            elif os.path.isfile(os.path.join(root, inc)):
                yield n, os.path.normpath(inc)


def self_test():
    """Run the check on a temporary tree: a downward include passes; an upward, a sideways and an
    unplaced file each fail with file:line and both layers."""
    import subprocess
    import tempfile

    def run(files):
        with tempfile.TemporaryDirectory() as d:
            root = os.path.join(d, "proxy")
            for rel, text in files.items():
                os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
                with open(os.path.join(root, rel), "w") as fh:
                    fh.write(text)
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--root", root], capture_output=True,
                               text=True)
            return p.returncode, p.stderr

    base = {"core/log.h": "", "config/config.h": '#include "core/log.h"\n', "http/request.h": "", "sse/sse.h": "",
            "admin/admin.c": "", "server/snapshot.h": '#include "config/config.h"\n'}
    rc, err = run(base)
    assert rc == 0, err
    rc, err = run({**base, "core/metrics.c": '#include "core/log.h"\n  #  include "sse/sse.h"\n'})
    assert rc == 1 and "proxy/core/metrics.c:2: core (layer 0) includes sse/sse.h of sse (layer 8" in err, err
    rc, err = run({**base, "admin/admin.c": '#include "sse/sse.h"\n'})
    assert rc == 1 and "proxy/admin/admin.c:1: admin (layer 8) includes sse/sse.h of sse (layer 8, the same" in err, err
    rc, err = run({**base, "server/snapshot.c": '#include "server/snapshot.h"\n#include "http/request.h"\n'})
    assert rc == 1 and "proxy/server/snapshot.c:2: runtime (layer 6) includes http/request.h of http (layer 7" in err, err
    rc, err = run({**base, "newmod/newmod.c": ""})
    assert rc == 1 and "proxy/newmod/newmod.c: not in the layer table" in err, err
    print("layering self-test: ok")
    return 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(here, "..", "..", "proxy"))
    ap.add_argument("--graph", action="store_true", help="print the edges instead of checking")
    ap.add_argument("--folders", action="store_true", help="with --graph: group by folder, not by module")
    ap.add_argument("--self-test", action="store_true", help="check the checker on a made-up tree")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    root = os.path.normpath(args.root)
    shown = os.path.basename(root)  # messages name files as proxy/dir/file.c:line

    def unit(rel):
        if args.folders:
            return rel.split("/")[0] if "/" in rel else "main"
        return module_of(rel)

    errors = []
    edges = collections.Counter()
    nfiles = ninc = 0
    for rel in sources(root):
        nfiles += 1
        src = module_of(rel)
        if src is None:
            errors.append(f"{shown}/{rel}: not in the layer table of tests/layering/check_includes.py")
            continue
        for line, inc in includes(root, rel):
            ninc += 1
            dst = module_of(inc)
            if unit(rel) != unit(inc):
                edges[(unit(rel), unit(inc))] += 1
            if dst is None or dst == src:
                continue
            ls, ld = MODULES[src][0], MODULES[dst][0]
            if ld >= ls:
                how = "a higher" if ld > ls else "the same"
                errors.append(
                    f"{shown}/{rel}:{line}: {src} (layer {ls}) includes {inc} of {dst} (layer {ld}, {how} layer): "
                    f"an include must go to a lower layer; register a callback or a slot with the layer below instead"
                )

    if args.graph:
        for (s, d), n in sorted(edges.items(), key=lambda e: (e[0][0], e[0][1])):
            print(f"{s:10s} -> {d:10s} {n}")
        return 0
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"layering: {len(errors)} include(s) going the wrong way (see proxy/README.md)", file=sys.stderr)
        return 1
    print(f"layering: {nfiles} files, {ninc} includes, every edge goes down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
