"""Nothing that outlives a request points into its pool (issue 13 "Where we stand", issue 14).

The attack: a client resets its HTTP/2 stream while its request waits on another instance's fetch
(the cross-instance fleet wait). The wait went on using the request's key, which lived in the
request's pool: once h2o handed that memory to the next requests of the connection, the wait's
peeks, locks and L1 entry were keyed by other bytes. AddressSanitizer does not see it (h2o recycles
pool chunks), so the test looks at what reaches Redis: every key named there must be a real key."""
import re
import socket
import threading
import time

import h2.config
import h2.connection
import h2.events
import requests

from dexcache import Dexcache, PREAMBLE, wait_for

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dclife:" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter, cache: [ {{ path: /echo, ttl: 30s }} ] }}
"""


class H2:
    """A bare HTTP/2 client (h2c, prior knowledge) that can reset its streams."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                     (":authority", "127.0.0.1")], end_stream=True)
        self.flush()
        return sid

    def reset(self, sid):
        self.conn.reset_stream(sid)
        self.flush()

    def wait_ended(self, sids, timeout=20):
        """Read until every stream in sids has ended; returns {sid: status}."""
        left, status = set(sids), {}
        deadline = time.time() + timeout
        while left and time.time() < deadline:
            data = self.sock.recv(1 << 16)
            if not data:
                break
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = dict(ev.headers)[b":status"].decode()
                elif isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    left.discard(ev.stream_id)
            self.flush()
        return status

    def close(self):
        self.sock.close()


def test_reset_during_fleet_wait_keeps_its_key(fake, origin, redis_server):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    a, b = Dexcache(conf).start(), Dexcache(conf).start()
    path = "/jup/echo?life=1"
    mon = client = None
    out = {}
    try:
        assert wait_for(lambda: a.health()["redis"] == "up" and b.health()["redis"] == "up")
        origin.gate("/echo")
        ta = threading.Thread(target=lambda: out.__setitem__("a", requests.get(a.url + path, timeout=30)))
        ta.start()
        origin.wait_held(1)  # a leads fleet-wide and holds the lock
        mon = redis_server.monitor()
        time.sleep(0.1)
        client = H2(b.port)
        sid = client.get(path)  # b follows a: its fleet wait polls the lock and L2
        assert wait_for(lambda: b.metric("dexcache_requests_in_flight") >= 1, timeout=5)
        time.sleep(0.4)
        client.reset(sid)  # the client is gone; b's wait goes on (its local waiters need it)
        # the same connection's next requests take the pool memory the reset request had
        filler = ["/nope/" + "Z" * (40 + i) for i in range(60)]
        sids = [client.get(p) for p in filler]
        client.wait_ended(sids)
        time.sleep(0.4)  # b's wait polls a few more times with whatever its key now is
        origin.release()
        ta.join(30)
        assert out["a"].status_code == 200 and out["a"].headers["x-cache"] == "MISS"
        time.sleep(0.5)
        # b's wait served the answer into its L1 under the right key: a HIT, no second fetch
        r = requests.get(b.url + path, timeout=10)
        assert r.status_code == 200 and r.headers["x-cache"] == "HIT", r.headers["cache-status"]
        assert origin.stats()["jup"]["total"] == 1
        seen = mon.drain()
        keys = set(re.findall(r'"(dclife:(?:l2|lk|fl)[^"]*)"', seen))
        assert "dclife:lk:GET " + path in keys, sorted(keys)[:10]
        bad = [k for k in keys if not k.endswith("GET " + path)]
        assert not bad, bad[:10]
    finally:
        origin.release()
        if client is not None:
            client.close()
        if mon is not None:
            mon.close()
        a.stop()
        b.stop()
