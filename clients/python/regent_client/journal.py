"""Journal: the host's operation log (docs/api.md, "The host's operation journal").

- `append(ops)`: fenced with the Leadership's term, exactly once in a session (see
  `session.py`); one operation, or several as one batch (consecutive indexes, atomically);
- `tail(from_index)`: the committed operations in order, reconnecting from the next index when
  the stream breaks; `JournalCompacted` (with `first_index`) when the journal no longer holds
  the next index;
- `ack(index)`: the hand-over ack (`Leadership` sends it itself for a journal host);
- `checkpoint(index)`: this host's durable checkpoint covers the journal up to `index`.
"""

import base64
import json
import struct
import threading
from collections import namedtuple

from . import _http
from .errors import JournalCompacted, RegentError
from .session import Session

Entry = namedtuple("Entry", "index term op")
Appended = namedtuple("Appended", "index term first_index last_index log_index")


class Journal:
    def __init__(self, socket, leadership=None, timeout=15.0, retry_for=30.0, forward=False,
                 reconnect_ms=200):
        self.socket = socket
        self.leadership = leadership
        self.timeout = timeout
        self.reconnect_ms = reconnect_ms
        self.session = Session(socket, leadership, timeout=timeout, retry_for=retry_for,
                               forward=forward)

    def append(self, ops, expected_term=None):
        """Appends `ops` (bytes, or a list of bytes: one batch). Returns `Appended`."""
        if isinstance(ops, (bytes, bytearray, str)):
            ops = [ops]
        ops = [o.encode() if isinstance(o, str) else bytes(o) for o in ops]
        if len(ops) == 1:
            body, params = ops[0], {}
        else:
            body = b"".join(struct.pack(">I", len(o)) + o for o in ops)
            params = {"batch": "true"}
        a = self.session.write("POST", "/v1/journal", body, params=params,
                               expected_term=expected_term)
        return Appended(a["index"], a["term"], a["first_index"], a["last_index"],
                        a.get("log_index"))

    def tail(self, from_index=1, follow=True, stop=None):
        """Yields `Entry(index, term, op)` from `from_index` on, each once and in order,
        reconnecting from the next index after a broken stream (until `stop` is set, a
        `threading.Event`). Raises `JournalCompacted` when the next index is gone."""
        stop = stop or threading.Event()
        next_index = from_index
        while not stop.is_set():
            path = _http.query("/v1/journal", **{"from": next_index}, format="ndjson",
                               follow=None if follow else "false")
            try:
                stream = _http.Stream(self.socket, path)
            except JournalCompacted:
                raise
            except RegentError:
                stop.wait(self.reconnect_ms / 1000)
                continue
            try:
                for line in stream.lines():
                    item = json.loads(line)
                    if "error" in item:
                        if item["error"] == "journal_compacted":
                            raise JournalCompacted(item.get("message", "journal compacted"),
                                                   status=410, body=item)
                        break
                    if item["index"] != next_index:
                        raise RegentError(f"journal index {item['index']} after "
                                          f"{next_index - 1}", code="bad_stream")
                    next_index += 1
                    yield Entry(item["index"], item["term"], base64.b64decode(item["op"]))
                    if stop.is_set():
                        return
            finally:
                stream.close()
            if not follow:
                return
            stop.wait(self.reconnect_ms / 1000)

    def ack(self, index):
        """`POST /v1/journal/applied`: this host applied the journal up to `index`."""
        return self._report("/v1/journal/applied", index)

    def checkpoint(self, index):
        """`POST /v1/journal/checkpoint`: this host's checkpoint covers up to `index`."""
        return self._report("/v1/journal/checkpoint", index)

    def state(self):
        return _http.request(self.socket, "GET", "/v1/journal/state",
                             timeout=self.timeout).check().json()

    def _report(self, path, index):
        return _http.request(self.socket, "POST", path, json.dumps({"index": index}).encode(),
                             timeout=self.timeout).check().json()
