"""Writes exactly once: an exactly-once session (`POST /v1/session`), a `seq` per write, and
retries of that very `seq` on answers that leave the outcome open.

A write is retried (same `client_id`, same `seq`) on `busy`, `superseded`, `outcome_unknown`,
`leader_unreachable`, `shutting_down`, a timeout or a broken connection, until `retry_for`
seconds have passed. It ends with:
- the answer: the first outcome, carried out once (regent records it per `seq`);
- `TermMismatch`: fenced, nothing was carried out; the host is deposed;
- `NotLeader`: on the first attempt only (nothing can have landed);
- `OutcomeUnknown`: an earlier attempt may have landed and the node stopped leading, or the
  retries ran out.
"""

import json
import threading
import time

from . import _http
from .errors import (Busy, CommandRefused, LeaderUnreachable, NotLeader, NotWritable,
                     OutcomeUnknown, RegentError, ShuttingDown, Superseded, TermMismatch,
                     Unavailable)

# Answers after which the same seq is sent again.
_RETRIED = (Busy, Superseded, OutcomeUnknown, LeaderUnreachable, ShuttingDown, Unavailable)

# A session outlives any retry: a day (toy_master's choice).
SESSION_TTL_MS = 24 * 3600 * 1000


class Session:
    """One exactly-once session on one regent, shared by the writes of a host."""

    def __init__(self, socket, leadership=None, timeout=15.0, retry_for=30.0,
                 retry_pause=0.2, forward=False):
        self.socket = socket
        self.leadership = leadership
        self.timeout = timeout
        self.retry_for = retry_for
        self.retry_pause = retry_pause
        self.forward = forward
        self._lock = threading.Lock()
        self._client_id = None
        self._seq = 0
        # Sequence numbers whose write is in flight: acked_below stays at or under the lowest.
        self._in_flight = set()

    @property
    def client_id(self):
        return self._client_id

    def _open(self):
        answer = _http.request(self.socket, "POST", _http.query("/v1/session", forward=self._fwd()),
                               json.dumps({"ttl_ms": SESSION_TTL_MS}).encode(),
                               timeout=self.timeout).check()
        return answer.json()["client_id"]

    def _fwd(self):
        return True if self.forward else None

    def _fence(self):
        """The expected term: the Leadership's while it is writable, else NotWritable."""
        if self.leadership is None:
            return None
        term = self.leadership.term()
        if term is None or not self.leadership.is_writable():
            raise NotWritable("this host's regent is not a writable leader (or not caught up)")
        return term

    def write(self, method, path, body=b"", params=None, headers=None, expected_term=None):
        """Sends one write exactly once; returns the answer's JSON."""
        if expected_term is None:
            expected_term = self._fence()
        with self._lock:
            if self._client_id is None:
                self._client_id = self._open()
            client_id = self._client_id
            self._seq += 1
            seq = self._seq
            self._in_flight.add(seq)
        try:
            return self._send(method, path, body, params or {}, headers, expected_term,
                              client_id, seq)
        finally:
            with self._lock:
                self._in_flight.discard(seq)

    def _send(self, method, path, body, params, headers, expected_term, client_id, seq):
        deadline = time.monotonic() + self.retry_for
        may_have_landed = False
        last = None
        while True:
            with self._lock:
                acked_below = min(self._in_flight | {seq})
            url = _http.query(path, **params, expected_term=expected_term, client_id=client_id,
                              seq=seq, acked_below=acked_below, forward=self._fwd())
            try:
                return _http.request(self.socket, method, url, body, timeout=self.timeout,
                                     headers=headers).check().json()
            except TermMismatch:
                if self.leadership is not None:
                    self.leadership.fenced(expected_term)
                raise
            except NotLeader as e:
                if may_have_landed:
                    raise OutcomeUnknown(f"an earlier attempt may have landed, then: {e}",
                                         body=e.body) from e
                raise
            except CommandRefused as e:
                if "session" in e.message and not may_have_landed:
                    # The session is gone (expired, or never known here): nothing landed.
                    with self._lock:
                        if self._client_id == client_id:
                            self._client_id = None
                raise
            except _RETRIED as e:
                last = e
                if not isinstance(e, (LeaderUnreachable,)) and getattr(e, "sent", True):
                    may_have_landed = True
            if time.monotonic() >= deadline:
                if may_have_landed:
                    raise OutcomeUnknown(f"retries ran out after {self.retry_for} s: {last}")
                raise last
            time.sleep(self.retry_pause)


def decode_bytes(value):
    """The API's `{"text": ...}` / `{"base64": ...}` (or a plain string) as bytes."""
    import base64
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if "text" in value:
        return value["text"].encode()
    return base64.b64decode(value["base64"])


def encode_bytes(value):
    import base64
    if isinstance(value, str):
        return {"text": value}
    try:
        return {"text": value.decode()}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}


__all__ = ["Session", "RegentError"]
