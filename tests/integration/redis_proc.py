"""A redis-server process for tests: start, kill, restart on the same port, SIGSTOP/SIGCONT."""
import os
import signal
import socket
import subprocess
import time

from dexcache import free_port


class RedisServer:
    def __init__(self, workdir):
        self.port = free_port()
        self.workdir = workdir
        self.proc = None

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self, timeout=10):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", self.workdir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.command("PING") == "+PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def command(self, *args):
        """One command in RESP; returns the first reply line (enough for tests), or None."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                out = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                                        for a in args)
                s.sendall(out)
                return s.recv(65536).split(b"\r\n")[0].decode()
        except OSError:
            return None

    def monitor(self):
        """A MONITOR connection: call .drain() for the text of every command Redis ran since, and
        .close() when done."""
        return Monitor(self.port)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except OSError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


class Monitor:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        # Redis answers +OK once the connection is a monitor: every command after this is seen
        self.sock.settimeout(10)
        first = b""
        while not first.endswith(b"\r\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("MONITOR: connection closed")
            first += chunk
        if first != b"+OK\r\n":
            raise RuntimeError("MONITOR: unexpected answer %r" % first)

    def drain(self, quiet=0.3):
        """Everything received until `quiet` seconds pass without a byte, as text."""
        self.sock.settimeout(quiet)
        seen = b""
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                seen += chunk
        except OSError:
            pass
        return seen.decode(errors="replace")

    def close(self):
        self.sock.close()
