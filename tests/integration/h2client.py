"""A bare HTTP/2 client (h2c with prior knowledge, python3-h2) for tests that must reset streams.

In this libh2o an HTTP/1.1 socket is not read while its request is being processed, so closing it
is only noticed on the next write: the one way for a test to make a client really go away while its
request waits (for the origin, another instance, Redis) is an HTTP/2 RST_STREAM, which h2o reads at
once and answers by disposing of the request.

    c = H2(port)
    sid = c.get("/jup/echo?x=1")
    c.reset(sid)                      # the client is gone; dexcache disposes of the request
    out = c.wait_ended([c.get(p) for p in paths])   # {sid: status} for the streams that answered
    c.close()
"""
import socket
import time

import h2.config
import h2.connection
import h2.errors
import h2.events


class H2:
    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()
        self.bodies = {}

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path, headers=()):
        """Sends a GET on a new stream; returns its id."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"),
                                     (":authority", "127.0.0.1")] + list(headers), end_stream=True)
        self.flush()
        return sid

    def reset(self, sid):
        """RST_STREAM (CANCEL) on one stream."""
        self.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
        self.flush()

    def wait_ended(self, sids, timeout=20):
        """Reads until every stream in sids has ended (or was reset); returns {sid: status} for those
        that got a response head. Bodies are in self.bodies[sid]."""
        left, status = set(sids), {}
        deadline = time.time() + timeout
        while left and time.time() < deadline:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not data:
                break
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status[ev.stream_id] = dict(ev.headers)[b":status"].decode()
                elif isinstance(ev, h2.events.DataReceived):
                    self.bodies[ev.stream_id] = self.bodies.get(ev.stream_id, b"") + ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    left.discard(ev.stream_id)
            self.flush()
        return status

    def close(self):
        self.sock.close()
