#!/usr/bin/env python3
"""A toy master beside regent: it writes only while its regent says it may, and fences every write.

    python3 examples/host.py --socket demo/node1/regent.sock [--seconds 30]

Written on the Python client library (clients/python). Its `Leadership` keeps
GET /v1/leadership/watch open, reads the lease's renewed deadline, and answers `is_writable()`
against that deadline on the local CLOCK_MONOTONIC; `Kv.put` sends every write with
?expected_term=TERM (the term in which this node became writable) in an exactly-once session.
The host stops writing the moment it is not writable, and on any term_mismatch (the library
then ends the activation itself). Python standard library only.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "clients",
                                "python"))
from regent_client import Kv, Leadership, NotWritable, RegentError, TermMismatch  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--socket", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--key", default="toy-master/counter")
    args = p.parse_args()

    lead = Leadership(
        args.socket,
        on_active=lambda term, _: print(f"[watch] active in term {term}", flush=True),
        on_inactive=lambda why: print(f"[watch] inactive: {why}", flush=True),
    ).start()
    kv = Kv(args.socket, lead, retry_for=2.0)
    written = refused = 0
    counter = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        if not lead.is_writable():
            time.sleep(0.01)
            continue
        counter += 1
        try:
            answer = kv.put(args.key, str(counter))
        except NotWritable:
            continue
        except TermMismatch as e:
            refused += 1
            print(f"[write] fenced: {e}", flush=True)
            continue
        except RegentError as e:
            refused += 1
            print(f"[write] refused: {e}", flush=True)
            time.sleep(0.1)
            continue
        written += 1
        if written % 100 == 0:
            print(f"[write] {written} writes in term {answer['term']}, revision {answer['revision']}",
                  flush=True)
        time.sleep(0.005)
    lead.close()
    print(f"host: written={written} refused={refused}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
