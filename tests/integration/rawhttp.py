"""Raw HTTP/1 for tests that send bytes no client library would: read one answer off a socket."""


def read_response(s, timeout=10):
    """(status, headers, body) of one Content-Length-framed answer on socket s (headers lower-cased;
    a body cut short by a close is returned as far as it came). Fails if the connection closes
    before a whole head arrived."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "connection closed without an answer (got %r)" % buf[:200]
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:n]
