"""Leadership: may this host write now, and with which fencing term.

Three threads keep it:
- the watcher keeps `GET /v1/leadership/watch` open (reconnecting); its events say when this
  node becomes writable (with the term and `catch_up_index`) and when it stops;
- the refresher asks `GET /v1/status` every `refresh_ms` while writable: the watch stream does
  not carry lease renewals, so the renewed `lease.deadline_monotonic_ns` is read there;
- the clock wakes at the lease deadline and ends the activation if nothing renewed it.

Invariant: `is_writable()` is true only while the activation's term is current and the local
CLOCK_MONOTONIC is before the last deadline regent gave; it turns false the instant the
deadline passes, whatever the stream says (a stopped daemon says nothing).

A journal host (`journal_host=True`) becomes active only once it has applied the journal up to
the `catch_up_index` of the event that made its regent writable (reported by `applied(index)`)
and regent acknowledged that (`POST /v1/journal/applied`): the hand-over rule.

The callbacks `on_active(term, catch_up_index)` and `on_inactive(reason)` come in order from the
library's threads; they should return quickly. One that raises is printed and the Leadership goes
on.
"""

import json
import threading
import traceback

from . import _http
from .errors import RegentError

monotonic_ns = _http.monotonic_ns


def _call(callback, *args):
    """A callback that raises is the host's bug: printed, and the Leadership goes on."""
    try:
        callback(*args)
    except Exception:  # noqa: BLE001
        traceback.print_exc()


class Leadership:
    def __init__(self, socket, on_active=None, on_inactive=None, journal_host=False,
                 refresh_ms=100, reconnect_ms=200, request_timeout=1.0):
        self.socket = socket
        self._on_active = on_active
        self._on_inactive = on_inactive
        self.journal_host = journal_host
        self.refresh_ms = refresh_ms
        self.reconnect_ms = reconnect_ms
        self.request_timeout = request_timeout
        # Held while a transition is decided and its callback runs: callbacks come in order.
        self._transition = threading.RLock()
        self._lock = threading.Condition()
        self._closed = False
        self._stream = None
        # What the stream last said: writable in `_term` until `_deadline_ns`.
        self._writable = False
        self._term = None
        self._deadline_ns = 0
        # A lease warning not yet followed by a renewal.
        self._warned = False
        # The catch-up target of the pending activation (journal hosts).
        self._catch_up_index = None
        self._catch_up_target = None
        self._applied = 0
        # The term this host is active in, or None.
        self._active_term = None
        self._threads = []

    # ----- Public -----

    def start(self):
        for target in (self._watch, self._refresh, self._clock):
            t = threading.Thread(target=target, daemon=True, name=f"regent-{target.__name__}")
            t.start()
            self._threads.append(t)
        return self

    def close(self):
        with self._lock:
            self._closed = True
            stream = self._stream
            self._lock.notify_all()
        if stream is not None:
            stream.close()
        self._deactivate("closed")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def is_writable(self):
        """True while active and the lease's deadline is ahead on the local monotonic clock."""
        with self._lock:
            return (self._active_term is not None and not self._warned
                    and monotonic_ns() < self._deadline_ns)

    def term(self):
        """The fencing term of the current activation (send it as `expected_term`), or None."""
        with self._lock:
            return self._active_term

    def deadline_ns(self):
        """The lease's deadline on CLOCK_MONOTONIC as regent last gave it (0 if none)."""
        with self._lock:
            return self._deadline_ns

    def applied(self, index):
        """A journal host reports the journal index it has applied up to."""
        with self._lock:
            if index > self._applied:
                self._applied = index
        self._maybe_activate()

    def fenced(self, term):
        """A write in `term` was refused with term_mismatch: this host is deposed."""
        with self._lock:
            current = self._active_term == term
        if current:
            self._deactivate(f"term_mismatch: a write in term {term} was fenced")

    # ----- Transitions -----

    def _maybe_activate(self):
        with self._transition:
            with self._lock:
                if (self._closed or not self._writable or self._active_term == self._term
                        or self._warned or monotonic_ns() >= self._deadline_ns):
                    return
                term, target, applied = self._term, self._catch_up_target, self._applied
                catch_up = self._catch_up_index
            if self.journal_host:
                if target is None or applied < target:
                    return
                try:
                    _http.request(self.socket, "POST", "/v1/journal/applied",
                                  json.dumps({"index": applied}).encode(),
                                  timeout=self.request_timeout).check()
                except RegentError:
                    return  # the next event, refresh or applied() tries again
            with self._lock:
                if not self._writable or self._term != term or monotonic_ns() >= self._deadline_ns:
                    return
                self._active_term = term
                self._lock.notify_all()
            if self._on_active is not None:
                _call(self._on_active, term, catch_up)

    def _deactivate(self, reason):
        with self._transition:
            with self._lock:
                if self._active_term is None:
                    return
                self._active_term = None
                self._lock.notify_all()
            if self._on_inactive is not None:
                _call(self._on_inactive, reason)

    def _on_event(self, event):
        writable = bool(event.get("writable"))
        lease = event.get("lease") or {}
        deadline = lease.get("deadline_monotonic_ns") or 0
        term = event.get("term")
        if not writable:
            with self._lock:
                self._writable = False
                self._lock.notify_all()
            self._deactivate(f"not writable (role {event.get('role')}, term {term})")
            return
        with self._lock:
            new_term = term != self._term or not self._writable
            old_active = self._active_term
        if new_term and old_active is not None and old_active != term:
            self._deactivate(f"term {old_active} ended (now {term})")
        with self._lock:
            if new_term:
                self._term = term
                self._writable = True
                self._deadline_ns = deadline
                self._warned = False
                catch_up = event.get("catch_up_index")
                if catch_up is None:
                    # Acked already (a host restarted in the term): everything committed.
                    catch_up_target = (event.get("journal") or {}).get("last_index") or 0
                else:
                    catch_up_target = catch_up
                self._catch_up_index = catch_up
                self._catch_up_target = catch_up_target
            elif event.get("event") == "lease_warning":
                # Not renewed lately: stop until a later deadline shows up.
                if deadline <= self._deadline_ns:
                    self._warned = True
            elif deadline > self._deadline_ns:
                self._deadline_ns = deadline
                self._warned = False
            self._lock.notify_all()
        self._maybe_activate()

    # ----- Threads -----

    def _watch(self):
        while True:
            with self._lock:
                if self._closed:
                    return
            try:
                stream = _http.Stream(self.socket, "/v1/leadership/watch")
                with self._lock:
                    self._stream = stream
                    closed = self._closed
                if closed:
                    stream.close()
                    return
                for line in stream.lines():
                    try:
                        event = json.loads(line)
                    except ValueError:
                        break
                    self._on_event(event)
                stream.close()
                reason = "the leadership watch ended"
            except RegentError as e:
                reason = f"the leadership watch failed: {e}"
            # A stream that broke says nothing about the lease: assume it ended.
            with self._lock:
                self._writable = False
                self._lock.notify_all()
            self._deactivate(reason)
            with self._lock:
                self._lock.wait(self.reconnect_ms / 1000)

    def _refresh(self):
        while True:
            with self._lock:
                if self._closed:
                    return
                writable, term = self._writable, self._term
            if writable:
                try:
                    status = _http.request(self.socket, "GET", "/v1/status",
                                           timeout=self.request_timeout).check().json()
                    self._on_status(status, term)
                except RegentError:
                    pass  # the lease runs out on its own; the clock ends it
            with self._lock:
                if not self._closed:
                    self._lock.wait(self.refresh_ms / 1000)

    def _on_status(self, status, term):
        lease = status.get("lease") or {}
        deadline = lease.get("deadline_monotonic_ns") or 0
        with self._lock:
            if self._term != term or not self._writable:
                return
            if status.get("term") == term and status.get("writable") and lease.get("valid"):
                if deadline > self._deadline_ns:
                    self._deadline_ns = deadline
                    self._warned = False
                if self._catch_up_target is None:
                    self._catch_up_target = (status.get("journal") or {}).get("last_index") or 0
            self._lock.notify_all()
        self._maybe_activate()

    def _clock(self):
        while True:
            with self._lock:
                if self._closed:
                    return
                active = self._active_term is not None
                now = monotonic_ns()
                if active and now >= self._deadline_ns:
                    expired = self._deadline_ns
                else:
                    expired = None
                    wait = (self._deadline_ns - now) / 1e9 if active else None
                    self._lock.wait(wait)
            if expired is not None:
                self._deactivate(f"the lease ran out unrenewed at {expired} ns")
