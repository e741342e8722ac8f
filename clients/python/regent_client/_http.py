"""HTTP/1.1 over regent's Unix socket with the standard library: one connection per request,
and streams on a connection of their own."""

import http.client
import json
import socket
import time
import urllib.parse

from .errors import Unavailable, from_answer


def monotonic_ns():
    """CLOCK_MONOTONIC in ns: the clock of regent's `deadline_monotonic_ns` (Python's
    `time.monotonic_ns()` reads the same clock on Linux)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("regent", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def query(path, **params):
    """`path` with the parameters that are not None, percent-encoded."""
    items = [(k, str(v).lower() if isinstance(v, bool) else str(v))
             for k, v in params.items() if v is not None]
    if not items:
        return path
    return f"{path}?{urllib.parse.urlencode(items)}"


def encode_key(key):
    """A key (str or bytes) for a path segment (`/` stays as it is)."""
    if isinstance(key, str):
        key = key.encode()
    return urllib.parse.quote(key, safe="/-._~")


class Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def check(self):
        """Raises the typed error of a non-2xx answer; returns self otherwise."""
        if 200 <= self.status < 300:
            return self
        raise from_answer(self.status, self.json())


def request(sock_path, method, path, body=b"", timeout=15.0, headers=None):
    """One request; any failure to connect, send or read (a timeout included) is
    `Unavailable`, whose `sent` says whether the request may have left."""
    conn = _UnixConnection(sock_path, timeout)
    sent = False
    try:
        conn.connect()
        conn.request(method, path, body=body, headers=headers or {})
        sent = True
        resp = conn.getresponse()
        data = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    except (OSError, http.client.HTTPException) as e:
        err = Unavailable(f"{method} {path} on {sock_path}: {e!r}")
        err.sent = sent
        err.timeout = isinstance(e, socket.timeout)
        raise err from e
    finally:
        conn.close()


class Stream:
    """A streaming answer (chunked NDJSON or bytes), read until it ends or `close()`."""

    def __init__(self, sock_path, path, timeout=None):
        self.conn = _UnixConnection(sock_path, timeout)
        try:
            self.conn.connect()
            self.conn.request("GET", path)
            self.resp = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            raise Unavailable(f"GET {path} on {sock_path}: {e!r}") from e
        if self.resp.status != 200:
            data = self.resp.read()
            self.conn.close()
            Answer(self.resp.status, {}, data).check()

    def lines(self):
        """The body's lines (bytes, without the line end); ends quietly with the stream."""
        try:
            for line in self.resp:
                line = line.rstrip(b"\r\n")
                if line:
                    yield line
        except Exception:  # noqa: BLE001 - a stream cut by close() fails in many ways: ended
            return

    def close(self):
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
