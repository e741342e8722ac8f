"""Kv: the replicated key-value store (docs/api.md, "The replicated key-value store").

Writes (`put`, `delete`, `txn`) are fenced with the Leadership's term and sent exactly once in
a session (see `session.py`). Reads take a consistency level: `linearizable` (default),
`lease` or `local`. `watch` yields the changes under a prefix, reconnecting from the next
revision; `Compacted` when that revision is gone.
"""

import json
import threading
from collections import namedtuple

from . import _http
from .errors import Compacted, KeyNotFound, RegentError
from .session import Session, decode_bytes, encode_bytes

KeyValue = namedtuple("KeyValue", "key value create_revision mod_revision version")
Change = namedtuple("Change", "type key value revision create_revision version")

LINEARIZABLE, LEASE, LOCAL = "linearizable", "lease", "local"


class Kv:
    def __init__(self, socket, leadership=None, timeout=15.0, retry_for=30.0, forward=False,
                 reconnect_ms=200):
        self.socket = socket
        self.timeout = timeout
        self.reconnect_ms = reconnect_ms
        self.session = Session(socket, leadership, timeout=timeout, retry_for=retry_for,
                               forward=forward)

    def get(self, key, consistency=LINEARIZABLE):
        """The key's `KeyValue`, or None when it is absent."""
        path = _http.query("/v1/kv/" + _http.encode_key(key), consistency=consistency)
        a = _http.request(self.socket, "GET", path, timeout=self.timeout)
        try:
            a.check()
        except KeyNotFound:
            return None
        h = a.headers
        return KeyValue(key if isinstance(key, bytes) else key.encode(), a.body,
                        int(h.get("x-regent-create-revision", 0)),
                        int(h.get("x-regent-revision", 0)), int(h.get("x-regent-version", 0)))

    def put(self, key, value, expected_term=None):
        """Returns the answer: `{"revision", "index", "term"}`."""
        if isinstance(value, str):
            value = value.encode()
        return self.session.write("PUT", "/v1/kv/" + _http.encode_key(key), value,
                                  expected_term=expected_term)

    def delete(self, key, expected_term=None):
        """Returns the answer: `{"revision", "index", "term", "deleted"}`."""
        return self.session.write("DELETE", "/v1/kv/" + _http.encode_key(key),
                                  expected_term=expected_term)

    def range(self, prefix="", limit=1000, consistency=LINEARIZABLE):
        """(list of `KeyValue`, more)."""
        path = _http.query("/v1/kv", prefix=prefix, limit=limit, consistency=consistency)
        a = _http.request(self.socket, "GET", path, timeout=self.timeout).check().json()
        kvs = [KeyValue(decode_bytes(k["key"]), decode_bytes(k["value"]), k["create_revision"],
                        k["mod_revision"], k["version"]) for k in a["kvs"]]
        return kvs, a["more"]

    def txn(self, compare=(), success=(), failure=(), expected_term=None):
        """A transaction as docs/api.md writes it (keys and values as str, bytes or the
        API's objects). Returns the answer: `{"succeeded", "revision", "responses", ...}`."""
        body = {"compare": [_encode_ops(c) for c in compare],
                "success": [_encode_ops(o) for o in success],
                "failure": [_encode_ops(o) for o in failure]}
        return self.session.write("POST", "/v1/txn", json.dumps(body).encode(),
                                  expected_term=expected_term)

    def watch(self, prefix="", from_revision=None, stop=None):
        """Yields `Change`s under `prefix` from `from_revision` (default: from now), in order,
        reconnecting from the next revision. Raises `Compacted` when it is gone."""
        stop = stop or threading.Event()
        next_rev = from_revision
        while not stop.is_set():
            path = _http.query("/v1/watch", prefix=prefix, from_revision=next_rev)
            try:
                stream = _http.Stream(self.socket, path)
            except Compacted:
                raise
            except RegentError:
                stop.wait(self.reconnect_ms / 1000)
                continue
            try:
                for line in stream.lines():
                    e = json.loads(line)
                    if "error" in e:
                        break
                    next_rev = e["revision"] + 1
                    yield Change(e["type"], decode_bytes(e["key"]), decode_bytes(e.get("value")),
                                 e["revision"], e.get("create_revision"), e.get("version"))
                    if stop.is_set():
                        return
            finally:
                stream.close()
            stop.wait(self.reconnect_ms / 1000)


def _encode_ops(op):
    """Keys and values given as bytes become the API's `{"base64": ...}` objects."""
    if isinstance(op, dict):
        return {k: (encode_bytes(v) if isinstance(v, (bytes, bytearray)) else _encode_ops(v))
                for k, v in op.items()}
    return op
