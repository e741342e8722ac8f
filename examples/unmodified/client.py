#!/usr/bin/env python3
"""A client of examples/unmodified/master.py that finds whichever master serves.

    client.py --ports 7601,7602,7603 SET a 1     # one request, to the master that answers
    client.py --ports 7601,7602,7603 --loop 20   # a write every 0.2 s for 20 s, saying who took it
"""
import argparse
import socket
import sys
import time


def ask(ports, line):
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(line.encode() + b"\n")
                answer = s.makefile("rb").readline().decode().strip()
                if answer:
                    return port, answer
        except OSError:
            continue
    return None, None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ports", required=True)
    ap.add_argument("--loop", type=float, default=0)
    ap.add_argument("request", nargs="*")
    args = ap.parse_args()
    ports = [int(p) for p in args.ports.split(",")]
    if args.loop:
        end, n = time.monotonic() + args.loop, 0
        while time.monotonic() < end:
            n += 1
            port, answer = ask(ports, f"SET k{n} v{n}")
            print(f"k{n}: {answer or 'no master answered'}" + (f" (port {port})" if port else ""))
            time.sleep(0.2)
        return 0
    port, answer = ask(ports, " ".join(args.request))
    if answer is None:
        print("no master answered", file=sys.stderr)
        return 1
    print(answer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
