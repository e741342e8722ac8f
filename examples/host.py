#!/usr/bin/env python3
"""A toy master beside regent: it writes only while its regent says it may, and fences every write.

    python3 examples/host.py --socket demo/node1/regent.sock [--seconds 30]

It keeps GET /v1/leadership/watch open in a thread. When an event makes this node writable it
takes that event's term as its fencing token; every write carries ?expected_term=TERM. It stops
writing the moment an event says it is no longer writable, a lease warning is not followed by a
renewal, or a write is refused with term_mismatch. Python standard library only.
"""

import argparse
import http.client
import json
import socket
import sys
import threading
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("regent", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Leadership:
    """What the watch stream last said, shared between the watcher and the writer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.writable = False
        self.term = None
        self.deadline_ns = None
        self.warned = False

    def may_write(self):
        with self.lock:
            if not self.writable or self.warned or self.deadline_ns is None:
                return None
            if time.monotonic_ns() >= self.deadline_ns:  # the lease ran out unrenewed
                return None
            return self.term


def watch(path, state):
    while True:
        try:
            conn = UnixHTTPConnection(path, timeout=None)
            conn.request("GET", "/v1/leadership/watch")
            resp = conn.getresponse()
            for line in resp:
                event = json.loads(line)
                with state.lock:
                    was = (state.writable, state.term)
                    state.writable = event["writable"]
                    state.deadline_ns = event["lease"]["deadline_monotonic_ns"]
                    if event["event"] == "lease_warning":
                        state.warned = True
                    else:
                        state.warned = False
                    if state.writable:
                        state.term = event["term"]
                    now = (state.writable, state.term)
                if now != was:
                    print(f"[watch] {event['event']}: role={event['role']} term={event['term']} "
                          f"writable={event['writable']}", flush=True)
        except (OSError, http.client.HTTPException, ValueError) as e:
            with state.lock:
                state.writable = False
            print(f"[watch] stream lost ({e}); retrying", flush=True)
            time.sleep(0.5)


def put(path, key, value, term):
    conn = UnixHTTPConnection(path)
    conn.request("PUT", f"/v1/kv/{key}?expected_term={term}", body=value)
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"{}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--key", default="toy-master/counter")
    args = p.parse_args()

    state = Leadership()
    threading.Thread(target=watch, args=(args.socket, state), daemon=True).start()
    written = refused = 0
    counter = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        term = state.may_write()
        if term is None:
            time.sleep(0.01)
            continue
        counter += 1
        try:
            status, body = put(args.socket, args.key, str(counter).encode(), term)
        except OSError as e:
            print(f"[write] {e}", flush=True)
            time.sleep(0.1)
            continue
        if status == 200:
            written += 1
            if written % 100 == 0:
                print(f"[write] {written} writes in term {term}, revision {body['revision']}", flush=True)
        else:
            refused += 1
            print(f"[write] refused: {body.get('error')}: {body.get('message')}", flush=True)
            if body.get("error") == "term_mismatch":
                with state.lock:
                    state.writable = False
        time.sleep(0.005)
    print(f"host: written={written} refused={refused}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
