"""A real browser against dexcache (issue 19): headless Chromium (Debian's `chromium`, installed by
`make deps-test`) loads a page from a tiny static server on another loopback origin; the page calls
dexcache with fetch (reads Cache-Status and X-Request-Id), subscribes to an event stream with
EventSource (3 updates in order), reads a 429's Retry-After, and an iframe from a disallowed origin
(http://localhost:PORT, not in allow_origins) is refused by the browser's CORS check. The pages
report by POSTing JSON to the static server; the test asserts the reports exactly. Bounded time;
Chromium and the servers are stopped by the test."""
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading

import pytest

from dexcache import Dexcache, PREAMBLE, free_port, wait_for, workdir

MINT = "So11111111111111111111111111111111111111112"
CHROMIUM = shutil.which("chromium")

CONFIG = PREAMBLE + """
cors:
  allow_origins: ["http://127.0.0.1:%(page_port)d"]
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0 }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 60s, key_sets: [ids] }}
  - prefix: /lim
    upstream: jupiter
    limit: {{ rate: 1/60s, burst: 1 }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 200ms, on_change: false }}
"""

PAGE = """<!doctype html><html><body><h1>dexcache browser test</h1>
<iframe src="http://localhost:%(page_port)d/evil.html"></iframe>
<script>
const D = "http://127.0.0.1:%(dc_port)d";
function head(r) {
  return {status: r.status, xcache: r.headers.get("X-Cache"), cache_status: r.headers.get("Cache-Status"),
          request_id: r.headers.get("X-Request-Id")};
}
async function run() {
  const out = {};
  try {
    let r = await fetch(D + "/jup/price/v3?ids=%(mint)s");
    out.first = head(r);
    out.first.has_mint = "%(mint)s" in (await r.json());
    // X-Request-Id is not a safelisted request header: this one is preflighted
    r = await fetch(D + "/jup/price/v3?ids=%(mint)s", {headers: {"X-Request-Id": "browser-1"}});
    out.second = head(r);
    await r.text();
  } catch (e) { out.fetch_error = String(e); }
  try {
    const a = await fetch(D + "/lim/echo"); await a.text();
    const b = await fetch(D + "/lim/echo");
    out.limited = {statuses: [a.status, b.status], retry_after: b.headers.get("Retry-After"),
                   ratelimit: b.headers.get("RateLimit"), error: (await b.json()).status};
  } catch (e) { out.limit_error = String(e); }
  out.events = await new Promise(resolve => {
    const seen = [];
    const es = new EventSource(D + "/jup/stream/price?ids=%(mint)s");
    const done = () => { es.close(); resolve(seen); };
    es.addEventListener("update", e => {
      seen.push({id: e.lastEventId, has_mint: "%(mint)s" in JSON.parse(e.data)});
      if (seen.length >= 3) done();
    });
    es.onerror = () => { seen.push({error: es.readyState}); done(); };
    setTimeout(done, 20000);
  });
  await fetch("/report/main", {method: "POST", body: JSON.stringify(out)});
}
run();
</script></body></html>
"""

EVIL = """<!doctype html><html><body><script>
(async () => {
  const out = {};
  try {
    const r = await fetch("http://127.0.0.1:%(dc_port)d/jup/price/v3?ids=%(mint)s");
    out.status = r.status;
  } catch (e) { out.error = e.name + ": " + e.message; }
  await fetch("/report/evil", {method: "POST", body: JSON.stringify(out)});
})();
</script></body></html>
"""


class PageServer:
    """The page's origin: GET /page.html and /evil.html, POST /report/<name> stores the JSON."""

    def __init__(self, port, pages):
        self.reports = {}
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                body = pages.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(n) if 0 < n < 1 << 20 else b"{}"
                srv.reports[self.path.rsplit("/", 1)[-1]] = json.loads(data)
                self.send_response(204)
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def start_chromium(url):
    profile = workdir(prefix="dexcache-chromium-")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--user-data-dir=" + profile, url]
    log = open(os.path.join(profile, "chromium.log"), "wb")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log


def stop_chromium(p, log):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)
    log.close()


def test_browser_fetch_eventsource_429_and_refusal(fake, origin):
    assert CHROMIUM is not None, "chromium is not installed: make deps-test installs it"
    page_port = free_port()
    d = Dexcache(CONFIG % {"jup": fake.url("jup"), "page_port": page_port})
    d.start()
    try:
        fill = {"page_port": page_port, "dc_port": d.port, "mint": MINT}
        pages = {"/page.html": PAGE % fill, "/evil.html": EVIL % fill}
        with PageServer(page_port, pages) as ps:
            p, log = start_chromium("http://127.0.0.1:%d/page.html" % page_port)
            try:
                got = wait_for(lambda: "main" in ps.reports and "evil" in ps.reports, timeout=90, step=0.1)
            finally:
                stop_chromium(p, log)
            assert got, "the pages did not report: %r" % ps.reports
            main, evil = ps.reports["main"], ps.reports["evil"]
    finally:
        d.stop()
    print("browser reports:", json.dumps(main), json.dumps(evil))
    rid = re.compile(r"^[0-9a-f]{20}$")
    first, second = main["first"], main["second"]
    assert first["status"] == 200 and first["xcache"] == "MISS" and first["has_mint"] is True
    assert first["cache_status"] == "dexcache; fwd=miss; stored" and rid.match(first["request_id"])
    assert second["status"] == 200 and second["xcache"] == "HIT" and second["request_id"] == "browser-1"
    assert re.match(r"^dexcache; hit; ttl=\d+$", second["cache_status"]), second
    lim = main["limited"]
    assert lim["statuses"] == [200, 429] and lim["error"] == 429
    assert int(lim["retry_after"]) > 0 and lim["ratelimit"].startswith('"client";r=0;t=')
    ev = main["events"]
    assert len(ev) == 3 and all(e.get("has_mint") is True for e in ev), ev
    ids = [int(e["id"]) for e in ev]
    assert ids == sorted(ids) and len(set(ids)) == 3, ids
    # the disallowed origin's fetch reached dexcache but the browser refused the answer
    assert evil == {"error": "TypeError: Failed to fetch"}
    assert "fetch_error" not in main and "limit_error" not in main
