#!/usr/bin/env python3
"""A master that knows nothing of regent: a tiny key-value server on a TCP port whose state is a
directory it owns (an append-only file, fsynced before each answer).

    master.py --port 7601 --state-dir /shared/state --log /var/log/master.log

Protocol, one line per request: `SET KEY VALUE` -> `OK NAME` (once durable), `GET KEY` -> `VALUE` or `NONE`,
`WHO` -> the name given with --name. It never asks anyone whether it may write: regent's hooks
start it on the writable node and stop (or fence) it everywhere else.

Its log has one line per life event with CLOCK_MONOTONIC nanoseconds (the clock of regent's
lease deadlines): `serving NS NAME` once it accepts requests, `stopping NS NAME` on SIGTERM.
"""
import argparse
import os
import signal
import socket
import sys
import threading
import time


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--name", default="master")
    args = ap.parse_args()
    os.makedirs(args.state_dir, exist_ok=True)
    data_path = os.path.join(args.state_dir, "data.log")
    state = {}
    if os.path.exists(data_path):
        with open(data_path, "rb") as f:
            for line in f:
                parts = line.rstrip(b"\n").split(b" ", 1)
                if len(parts) == 2:
                    state[parts[0]] = parts[1]
    data = open(data_path, "ab")
    lock = threading.Lock()

    def log(event):
        with open(args.log, "a") as f:
            f.write(f"{event} {now_ns()} {args.name}\n")
            f.flush()
            os.fsync(f.fileno())

    def on_term(_sig, _frame):
        log("stopping")
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(64)
    log("serving")

    def serve(conn):
        with conn:
            f = conn.makefile("rwb")
            for line in f:
                words = line.rstrip(b"\n").split(b" ", 2)
                if words[0] == b"SET" and len(words) == 3:
                    with lock:
                        data.write(words[1] + b" " + words[2] + b"\n")
                        data.flush()
                        os.fsync(data.fileno())
                        state[words[1]] = words[2]
                    f.write(b"OK " + args.name.encode() + b"\n")
                elif words[0] == b"GET" and len(words) == 2:
                    with lock:
                        f.write(state.get(words[1], b"NONE") + b"\n")
                elif words[0] == b"WHO":
                    f.write(args.name.encode() + b"\n")
                else:
                    f.write(b"ERR\n")
                f.flush()

    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
