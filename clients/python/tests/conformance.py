#!/usr/bin/env python3
"""The Python library's conformance runner: one JSON step per line on stdin, one JSON result
per line on stdout (clients/conformance/README.md). Run by clients/conformance/run.py:

    python3 clients/conformance/run.py --regent target/release/regent -- \
        python3 clients/python/tests/conformance.py
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from regent_client import (Journal, JournalCompacted, Kv, Leadership,  # noqa: E402
                           RegentError, monotonic_ns)


class Host:
    """A Leadership, a Journal and a Kv on one socket; a journal host also tails the journal
    from 1 and applies it (here: keeps the indexes), reporting its progress to Leadership."""

    def __init__(self, step):
        timeout = step.get("timeout_ms", 15000) / 1000
        self.lock = threading.Lock()
        self.events = []
        self.applied = 0
        self.in_order = True
        self.stop = threading.Event()
        # Set: the applier applies; cleared by hold_apply (the host falls behind).
        self.gate = threading.Event()
        self.gate.set()
        self.leadership = Leadership(step["socket"], on_active=self.on_active,
                                     on_inactive=self.on_inactive,
                                     journal_host=step.get("journal_host", False))
        forward = step.get("forward", False)
        self.journal = Journal(step["socket"], self.leadership, timeout=timeout, forward=forward)
        self.kv = Kv(step["socket"], self.leadership, timeout=timeout, forward=forward)
        self.leadership.start()
        if step.get("journal_host"):
            threading.Thread(target=self.apply, daemon=True).start()

    def on_active(self, term, catch_up_index):
        with self.lock:
            self.events.append({"kind": "active", "term": term, "catch_up_index": catch_up_index,
                                "applied": self.applied, "at_ns": monotonic_ns(),
                                "deadline_ns": self.leadership.deadline_ns()})

    def on_inactive(self, reason):
        with self.lock:
            self.events.append({"kind": "inactive", "reason": reason, "at_ns": monotonic_ns(),
                                "deadline_ns": self.leadership.deadline_ns()})

    def apply(self):
        for entry in self.journal.tail(1, stop=self.stop):
            self.gate.wait()
            with self.lock:
                if entry.index != self.applied + 1:
                    self.in_order = False
                self.applied = entry.index
            self.leadership.applied(entry.index)


def error(e):
    out = {"error": e.code, "status": e.status, "message": e.message}
    for k, v in e.body.items():
        out.setdefault(k, v)
    out["error"] = e.code
    return out


def run(step, hosts):
    do = step["do"]
    if do == "open":
        hosts[step["host"]] = Host(step)
        return {"ok": True}
    if do == "tail":
        return tail(step)
    h = hosts[step["host"]]
    term = step.get("expected_term")
    if do == "events":
        with h.lock:
            return {"events": list(h.events)}
    if do == "is_writable":
        return {"writable": h.leadership.is_writable(), "term": h.leadership.term(),
                "deadline_ns": h.leadership.deadline_ns(), "now_ns": monotonic_ns()}
    if do == "writable_after_deadline":
        end = time.monotonic() + step.get("timeout_ms", 30000) / 1000
        while time.monotonic() < end:
            deadline = h.leadership.deadline_ns()
            now = monotonic_ns()
            if now >= deadline:
                writable = h.leadership.is_writable()
                if h.leadership.deadline_ns() != deadline:
                    continue  # a renewal read just before the stop landed meanwhile
                return {"writable": writable, "now_ns": now, "deadline_ns": deadline}
            time.sleep(min((deadline - now) / 1e9, 0.05))
        return {"error": "deadline_not_reached"}
    if do == "append":
        a = h.journal.append([o.encode() for o in step["ops"]], expected_term=term)
        return a._asdict()
    if do == "kv_put":
        return h.kv.put(step["key"], step["value"], expected_term=term)
    if do == "kv_delete":
        return h.kv.delete(step["key"], expected_term=term)
    if do == "kv_get":
        kv = h.kv.get(step["key"], step.get("consistency", "linearizable"))
        if kv is None:
            return {"value": None}
        return {"value": kv.value.decode(), "mod_revision": kv.mod_revision,
                "create_revision": kv.create_revision, "version": kv.version}
    if do == "kv_range":
        kvs, more = h.kv.range(step.get("prefix", ""), step.get("limit", 1000))
        return {"keys": [k.key.decode() for k in kvs], "more": more}
    if do == "kv_txn":
        t = step["txn"]
        return h.kv.txn(t.get("compare", []), t.get("success", []), t.get("failure", []),
                        expected_term=term)
    if do == "hold_apply":
        h.gate.clear()
        return {"ok": True}
    if do == "release_apply":
        h.gate.set()
        return {"ok": True}
    if do == "kv_watch":
        return kv_watch(h, step)
    if do == "wait_applied":
        end = time.monotonic() + step.get("timeout_ms", 30000) / 1000
        while time.monotonic() < end:
            with h.lock:
                if h.applied >= step["index"]:
                    return {"applied": h.applied, "in_order": h.in_order}
            time.sleep(0.05)
        return {"error": "not_applied", "applied": h.applied}
    if do == "close":
        h.stop.set()
        h.leadership.close()
        del hosts[step["host"]]
        return {"ok": True}
    return {"error": "unknown_step", "do": do}


def kv_watch(h, step):
    """Collects `count` changes under `prefix` from `from_revision`."""
    changes = []
    stop = threading.Event()

    def collect():
        for c in h.kv.watch(step["prefix"], step.get("from_revision"), stop=stop):
            changes.append(c)
            if len(changes) >= step["count"]:
                stop.set()
                return

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    t.join(step.get("timeout_ms", 30000) / 1000)
    stop.set()
    if len(changes) < step["count"]:
        return {"error": "watch_timed_out", "changes": len(changes)}
    return {"keys": [c.key.decode() for c in changes], "types": [c.type for c in changes],
            "values": [None if c.value is None else c.value.decode() for c in changes],
            "first_revision": changes[0].revision, "last_revision": changes[-1].revision}


def tail(step):
    """Reads the journal from `from` until index `until` (reconnecting inside the library)."""
    journal = Journal(step["socket"])
    stop = threading.Event()
    timer = threading.Timer(step.get("timeout_ms", 30000) / 1000, stop.set)
    timer.start()
    entries = []
    try:
        for e in journal.tail(step["from"], stop=stop):
            entries.append(e)
            if e.index >= step["until"]:
                break
    finally:
        timer.cancel()
    if not entries:
        return {"error": "no_entries"}
    return {"first": entries[0].index, "last": entries[-1].index, "count": len(entries),
            "in_order": all(b.index == a.index + 1 for a, b in zip(entries, entries[1:])),
            "last_op": entries[-1].op.decode(errors="replace")}


def main():
    hosts = {}
    for line in sys.stdin:
        step = json.loads(line)
        try:
            result = run(step, hosts)
        except JournalCompacted as e:
            result = error(e)
        except RegentError as e:
            result = error(e)
        except Exception as e:  # a bug in the runner or the library: reported, not fatal
            result = {"error": "exception", "message": repr(e)}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    for h in hosts.values():
        h.leadership.close()


if __name__ == "__main__":
    main()
