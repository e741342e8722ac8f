#!/usr/bin/env python3
"""A toy master whose own state is replicated through regent's operation journal.

The master keeps a tiny in-memory namespace (mkdir, create, rename, delete). Every mutation goes
through POST /v1/journal with ?expected_term=TERM (the fencing token of the term in which its
regent became writable), and the namespace is nothing but the journal applied in order:

- a tail thread follows GET /v1/journal?from=APPLIED+1&format=ndjson on its own regent and
  applies each operation once, in index order (standby or active alike);
- a watch thread follows GET /v1/leadership/watch; when an event makes this node writable it
  carries catch_up_index, and the master becomes active only once its tail has applied up to
  it and it has said so (POST /v1/journal/applied): it never writes on a state older than its
  predecessor's;
- it serves its clients (HTTP on --port) only while active: a mutation is validated against
  the namespace, appended, and answered once the tail has applied it;
- it checkpoints its namespace to STATE_DIR/checkpoint.json (atomically) and reports the index
  the checkpoint covers (POST /v1/journal/checkpoint); on start it loads the checkpoint and
  tails from the next index. If regent answers 410 (the journal no longer holds that index) it
  copies the newest checkpoint of a peer (--peer STATE_DIR) that covers the gap, as docs/api.md
  describes, and tails from there.

STATE_DIR/status.json always holds {"active", "term", "applied", "digest", "entries"}; the
digest is a SHA-256 of the namespace, so two masters with the same digest hold the same state.

    python3 examples/toy_master.py serve --socket SOCK --state-dir DIR --port 7001 [--peer DIR2 ...]
    python3 examples/toy_master.py client --ports 7001,7002,7003 --random 100
    python3 examples/toy_master.py client --ports 7001,7002,7003 mkdir /a
    python3 examples/toy_master.py digest DIR1 DIR2 DIR3

Written on the Python client library (clients/python: Leadership, Journal), which keeps the
watch, the lease's deadline, the hand-over ack, fencing and the exactly-once session. Python
standard library only; runs from a source checkout without installing anything.
"""

import argparse
import hashlib
import http.client
import http.server
import json
import os
import random
import sys
import threading
import time

# The client library (clients/python): installed (pip install ./clients/python), or beside this
# file in a source checkout.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))
from regent_client import (Journal, JournalCompacted, Leadership, NotLeader,  # noqa: E402
                           NotWritable, RegentError, TermMismatch)


def log(name, text):
    print(f"[{name}] {text}", flush=True)


class Namespace:
    """Paths to kinds ("dir" or "file"); "/" always exists. Applying is deterministic."""

    def __init__(self, entries=None):
        self.entries = dict(entries or {"/": "dir"})

    @staticmethod
    def parent(path):
        head = path.rsplit("/", 1)[0]
        return head or "/"

    def check(self, op):
        """Why `op` cannot apply to this namespace, or None."""
        kind = op.get("op")
        if kind in ("mkdir", "create"):
            path = op.get("path", "")
            if not path.startswith("/") or path == "/" or path.endswith("/"):
                return f"bad path {path!r}"
            if path in self.entries:
                return f"{path} exists"
            if self.entries.get(self.parent(path)) != "dir":
                return f"no directory {self.parent(path)}"
            return None
        if kind == "delete":
            path = op.get("path", "")
            if path == "/" or path not in self.entries:
                return f"no {path}"
            if any(p.startswith(path + "/") for p in self.entries):
                return f"{path} is not empty"
            return None
        if kind == "rename":
            src, dst = op.get("from", ""), op.get("to", "")
            if src == "/" or src not in self.entries:
                return f"no {src}"
            if dst in self.entries or not dst.startswith("/") or dst.endswith("/"):
                return f"bad target {dst!r}"
            if self.entries.get(self.parent(dst)) != "dir":
                return f"no directory {self.parent(dst)}"
            if dst.startswith(src + "/"):
                return f"{dst} is inside {src}"
            return None
        return f"unknown op {kind!r}"

    def apply(self, op):
        """Applies `op`; an op that does not apply (a refused write never reaches the journal,
        so this does not happen) is skipped the same way on every master."""
        if self.check(op) is not None:
            return False
        kind = op["op"]
        if kind == "mkdir":
            self.entries[op["path"]] = "dir"
        elif kind == "create":
            self.entries[op["path"]] = "file"
        elif kind == "delete":
            del self.entries[op["path"]]
        elif kind == "rename":
            src, dst = op["from"], op["to"]
            moved = {p: k for p, k in self.entries.items() if p == src or p.startswith(src + "/")}
            for p in moved:
                del self.entries[p]
            for p, k in moved.items():
                self.entries[dst + p[len(src):]] = k
        return True

    def digest(self):
        text = json.dumps(sorted(self.entries.items()), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def write_json_atomically(path, value):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(state_dir):
    try:
        with open(os.path.join(state_dir, "checkpoint.json")) as f:
            c = json.load(f)
        return c["index"], c["namespace"]
    except (OSError, ValueError, KeyError):
        return 0, None


class Master:
    def __init__(self, args):
        self.args = args
        self.name = args.name or os.path.basename(os.path.abspath(args.state_dir))
        self.lock = threading.Condition()
        index, entries = load_checkpoint(args.state_dir)
        self.ns = Namespace(entries)
        self.applied = index
        self.checkpointed = index
        # The hand-over rule, the lease and fencing are the library's: the master is active
        # while `leadership.is_writable()` (its regent leads with a valid lease, and this master
        # applied the journal up to catch_up_index and said so).
        self.leadership = Leadership(args.socket, on_active=self.on_active,
                                     on_inactive=self.on_inactive, journal_host=True)
        # Appends are fenced with leadership.term() and sent exactly once in a session.
        self.journal = Journal(args.socket, self.leadership, retry_for=5.0)
        self.write_lock = threading.Lock()
        self.last_status = None
        if index:
            log(self.name, f"loaded the checkpoint at journal index {index}")

    def active_term(self):
        return self.leadership.term() if self.leadership.is_writable() else None

    # ----- Tail -----

    def tail(self):
        while True:
            try:
                for entry in self.journal.tail(self.applied + 1):
                    self.apply(entry)
            except JournalCompacted as gone:
                self.recover(gone.first_index)
            except (RegentError, ValueError) as e:
                log(self.name, f"tail lost ({e}); retrying")
                time.sleep(0.2)

    def apply(self, entry):
        try:
            op = json.loads(entry.op)
        except ValueError:
            op = None  # not one of ours (another writer's bytes): skipped alike everywhere
        with self.lock:
            if entry.index != self.applied + 1:
                raise ValueError(f"index {entry.index} after {self.applied}")
            if isinstance(op, dict):
                self.ns.apply(op)
            self.applied = entry.index
            self.lock.notify_all()
        self.leadership.applied(entry.index)

    def recover(self, first_index):
        """410: copy the newest peer checkpoint that reaches the first retained index."""
        best = None
        for peer in self.args.peer:
            index, entries = load_checkpoint(peer)
            if entries is not None and index + 1 >= first_index and index > self.applied:
                if best is None or index > best[0]:
                    best = (index, entries, peer)
        if best is None:
            log(self.name, f"the journal starts at {first_index}, after our index {self.applied}, "
                           "and no peer checkpoint covers the gap; waiting")
            time.sleep(1)
            return
        index, entries, peer = best
        with self.lock:
            self.ns = Namespace(entries)
            self.applied = index
            self.lock.notify_all()
        self.leadership.applied(index)
        log(self.name, f"copied the checkpoint of {peer} at index {index}; tailing from there")

    # ----- Leadership -----

    def on_active(self, term, catch_up_index):
        log(self.name, f"active in term {term}: caught up to journal index {self.applied} "
                       f"(catch_up_index {catch_up_index})")

    def on_inactive(self, reason):
        log(self.name, f"standby: {reason}")

    def coordinate(self):
        """Checkpoints and the status file."""
        last_checkpoint = time.monotonic()
        while True:
            if (time.monotonic() - last_checkpoint) * 1000 >= self.args.checkpoint_ms:
                last_checkpoint = time.monotonic()
                self.checkpoint()
            self.write_status()
            time.sleep(0.02)

    def checkpoint(self):
        with self.lock:
            index, entries = self.applied, dict(self.ns.entries)
        if index == self.checkpointed:
            return
        write_json_atomically(os.path.join(self.args.state_dir, "checkpoint.json"),
                              {"index": index, "namespace": entries})
        self.checkpointed = index
        try:
            self.journal.checkpoint(index)
        except RegentError:
            pass  # reported again with the next checkpoint

    def write_status(self):
        term = self.active_term()
        with self.lock:
            status = {"name": self.name, "active": term is not None,
                      "term": term, "applied": self.applied,
                      "digest": self.ns.digest(), "entries": len(self.ns.entries)}
        if status != self.last_status:
            write_json_atomically(os.path.join(self.args.state_dir, "status.json"), status)
            self.last_status = status

    # ----- Clients -----

    def mutate(self, op):
        """(HTTP status, answer) for a client's mutation."""
        with self.write_lock:
            term = self.active_term()
            if term is None:
                return 503, {"error": "standby", "message": "this master is not active"}
            with self.lock:
                refused = self.ns.check(op)
            if refused:
                return 409, {"error": "refused", "message": refused}
            try:
                appended = self.journal.append(json.dumps(op, sort_keys=True).encode(),
                                               expected_term=term)
            except (TermMismatch, NotLeader, NotWritable) as e:
                # Definitive: fenced by the state machine, or never proposed.
                return 503, {"error": "not_appended", "message": str(e)}
            except RegentError as e:
                return 503, {"error": "outcome_unknown", "message": str(e)}
            index = appended.index
            with self.lock:
                deadline = time.monotonic() + 30
                while self.applied < index and time.monotonic() < deadline:
                    self.lock.wait(0.1)
                if self.applied < index:
                    return 503, {"error": "outcome_unknown",
                                 "message": f"index {index} committed, not yet applied here"}
            return 200, {"index": index, "term": appended.term}

    def serve_clients(self):
        master = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, value):
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with master.lock:
                    self.answer(200, {"active": master.active_term() is not None,
                                      "applied": master.applied, "digest": master.ns.digest(),
                                      "namespace": sorted(master.ns.entries.items())})

            def do_POST(self):
                try:
                    length = int(self.headers.get("content-length", "0"))
                    op = json.loads(self.rfile.read(length))
                    if not isinstance(op, dict):
                        raise ValueError("an operation is a JSON object")
                except ValueError as e:
                    return self.answer(400, {"error": "bad_json", "message": str(e)})
                self.answer(*master.mutate(op))

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.args.port), Handler)
        log(self.name, f"serving clients on 127.0.0.1:{server.server_address[1]} (only while active)")
        server.serve_forever()

    def run(self):
        self.leadership.start()
        for target in (self.tail, self.coordinate):
            threading.Thread(target=target, daemon=True).start()
        self.serve_clients()


# ----- The client and digest commands -----

def send(ports, op, timeout=30):
    """Sends `op` to whichever master is active; retries until one takes it or `timeout`.
    Returns (200, answer), (409, refused) or (503, outcome unknown / no active master)."""
    deadline = time.monotonic() + timeout
    while True:
        for port in ports:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/", body=json.dumps(op))
                resp = conn.getresponse()
                answer = json.loads(resp.read())
                conn.close()
            except (OSError, ValueError, http.client.HTTPException):
                continue
            if resp.status in (200, 409) or answer.get("error") == "outcome_unknown":
                return resp.status, answer
        if time.monotonic() > deadline:
            return 503, {"error": "no active master"}
        time.sleep(0.05)


def active_namespace(ports, timeout=30):
    """The namespace of the active master (any master's if none becomes active in time)."""
    deadline = time.monotonic() + timeout
    fallback = {"/": "dir"}
    while True:
        for port in ports:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                view = json.loads(conn.getresponse().read())
                conn.close()
            except (OSError, ValueError, http.client.HTTPException):
                continue
            if view["active"]:
                return dict(view["namespace"])
            fallback = dict(view["namespace"])
        if time.monotonic() > deadline:
            return fallback
        time.sleep(0.05)


def random_op(rng, known):
    dirs = [p for p, k in known.items() if k == "dir"]
    kind = rng.choice(["mkdir", "create", "create", "rename", "delete"])
    if kind in ("mkdir", "create") or len(known) < 3:
        parent = rng.choice(dirs)
        name = f"{'d' if kind == 'mkdir' else 'f'}{rng.randrange(10**6)}"
        return {"op": "mkdir" if kind == "mkdir" else "create",
                "path": (parent.rstrip("/") + "/" + name)}
    path = rng.choice([p for p in known if p != "/"])
    if kind == "delete":
        return {"op": "delete", "path": path}
    return {"op": "rename", "from": path, "to": path + "r"}


def client(args):
    ports = [int(p) for p in args.ports.split(",")]
    if args.random:
        rng = random.Random(args.seed)
        # Start from the active master's namespace, so the ops make sense against it.
        known = active_namespace(ports)
        done = 0
        for _ in range(args.random):
            op = random_op(rng, known)
            status, answer = send(ports, op)
            if status == 200:
                ns = Namespace(known)
                ns.apply(op)
                known = ns.entries
                done += 1
            elif answer.get("error") == "outcome_unknown":
                # The mutation may or may not have landed: ask the next active master, which
                # has applied everything committed before it serves anyone.
                print(f"outcome unknown ({answer['message']}); re-reading", file=sys.stderr)
                time.sleep(0.5)
                known = active_namespace(ports)
            elif status != 409:
                print(json.dumps(answer), file=sys.stderr)
                return 1
        print(json.dumps({"sent": done, "digest": Namespace(known).digest()}))
        return 0
    op = {"op": args.op}
    if args.op == "rename":
        op["from"], op["to"] = args.paths[0], args.paths[1]
    else:
        op["path"] = args.paths[0]
    status, answer = send(ports, op)
    print(json.dumps(answer))
    return 0 if status == 200 else 1


def digest(args):
    for d in args.state_dirs:
        with open(os.path.join(d, "status.json")) as f:
            s = json.load(f)
        print(f"{d}: active={s['active']} applied={s['applied']} digest={s['digest']}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a master beside one regent")
    serve.add_argument("--socket", required=True, help="this master's regent socket")
    serve.add_argument("--state-dir", required=True, help="checkpoint.json and status.json")
    serve.add_argument("--port", type=int, default=0, help="clients' HTTP port (0: any)")
    serve.add_argument("--peer", action="append", default=[],
                       help="another master's state dir, to copy a checkpoint from after a 410")
    serve.add_argument("--checkpoint-ms", type=int, default=1000)
    serve.add_argument("--name")
    c = sub.add_parser("client", help="send mutations to whichever master is active")
    c.add_argument("--ports", required=True, help="the masters' ports, comma-separated")
    c.add_argument("--random", type=int, default=0, help="send this many random mutations")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("op", nargs="?", choices=["mkdir", "create", "rename", "delete"])
    c.add_argument("paths", nargs="*")
    d = sub.add_parser("digest", help="print the masters' namespace digests")
    d.add_argument("state_dirs", nargs="+")
    args = parser.parse_args()
    if args.command == "serve":
        os.makedirs(args.state_dir, exist_ok=True)
        Master(args).run()
        return 0
    if args.command == "client":
        if not args.random and (not args.op or not args.paths):
            parser.error("client: give --random N, or an op and its paths")
        return client(args)
    return digest(args)


if __name__ == "__main__":
    sys.exit(main())
