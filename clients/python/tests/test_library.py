"""Unit tests of the Python library that need no cluster (python3 -m unittest discover
clients/python/tests). The conformance runner (conformance.py) tests it against a real one."""

import os
import socket
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from regent_client import (BadRequest, Busy, JournalCompacted, Kv, Leadership,  # noqa: E402
                           NotLeader, RegentError, TermMismatch, Unavailable, monotonic_ns)
from regent_client import _http  # noqa: E402
from regent_client.errors import from_answer  # noqa: E402
from regent_client.session import decode_bytes, encode_bytes  # noqa: E402


class Errors(unittest.TestCase):
    def test_codes_become_types_with_their_fields(self):
        e = from_answer(503, {"error": "not_leader", "message": "m", "leader_id": 2})
        self.assertIsInstance(e, NotLeader)
        self.assertEqual((e.code, e.status, e.leader_id), ("not_leader", 503, 2))
        e = from_answer(409, {"error": "term_mismatch", "expected_term": 3, "term": 4})
        self.assertIsInstance(e, TermMismatch)
        self.assertEqual((e.expected_term, e.term), (3, 4))
        self.assertEqual(from_answer(410, {"error": "journal_compacted", "first_index": 9}).first_index, 9)
        self.assertIsInstance(from_answer(503, {"error": "busy"}), Busy)
        bad = from_answer(400, {"error": "bad_txn", "message": "compare"})
        self.assertIsInstance(bad, BadRequest)
        self.assertEqual(bad.code, "bad_txn")
        other = from_answer(502, None)
        self.assertEqual((type(other), other.code), (RegentError, "http_502"))
        self.assertIsInstance(JournalCompacted("x"), RegentError)


class Encoding(unittest.TestCase):
    def test_keys_queries_and_bytes(self):
        self.assertEqual(_http.encode_key("a/b c"), "a/b%20c")
        self.assertEqual(_http.encode_key(b"\x00\xff"), "%00%FF")
        self.assertEqual(_http.query("/v1/kv", prefix="k/", limit=None, forward=True),
                         "/v1/kv?prefix=k%2F&forward=true")
        self.assertEqual(decode_bytes({"base64": "AP8="}), b"\x00\xff")
        self.assertEqual(decode_bytes(encode_bytes(b"\xff")), b"\xff")
        self.assertEqual(encode_bytes("t"), {"text": "t"})


class Clock(unittest.TestCase):
    def test_the_monotonic_clock_advances(self):
        a, b = monotonic_ns(), monotonic_ns()
        self.assertTrue(0 < a <= b)


class NoDaemon(unittest.TestCase):
    def test_a_missing_socket_is_unavailable_and_nothing_was_sent(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(Unavailable) as caught:
                Kv(os.path.join(d, "none.sock")).get("k")
            self.assertFalse(caught.exception.sent)

    def test_a_leadership_without_a_daemon_is_never_writable(self):
        with tempfile.TemporaryDirectory() as d:
            lead = Leadership(os.path.join(d, "none.sock")).start()
            try:
                self.assertFalse(lead.is_writable())
                self.assertIsNone(lead.term())
            finally:
                lead.close()

    def test_a_silent_daemon_times_out(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "silent.sock")
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            server.listen(1)
            held = []
            threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
            with self.assertRaises(Unavailable) as caught:
                _http.request(path, "GET", "/v1/status", timeout=0.2)
            self.assertTrue(caught.exception.sent and caught.exception.timeout)
            server.close()


if __name__ == "__main__":
    unittest.main()
