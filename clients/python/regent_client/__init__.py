"""regent's host protocol (docs/api.md) for Python masters: `Leadership`, `Journal`, `Kv`.

Standard library only; Python 3.9+.

    from regent_client import Leadership, Journal

    lead = Leadership(SOCK, on_active=lambda term, catch_up: ...,
                      on_inactive=lambda why: ...).start()
    journal = Journal(SOCK, lead)
    if lead.is_writable():
        journal.append(b"op")            # fenced with lead.term(), exactly once
"""

from .errors import (BadRequest, Busy, CommandRefused, Compacted, Forbidden, JournalCompacted,
                     KeyNotFound, LeaderUnreachable, NotLeader, NotWritable, OutcomeUnknown,
                     PayloadTooLarge, RegentError, ServerError, ShuttingDown, Superseded,
                     TermMismatch, Unavailable)
from .journal import Appended, Entry, Journal
from .kv import LEASE, LINEARIZABLE, LOCAL, Change, KeyValue, Kv
from .leadership import Leadership, monotonic_ns
from .session import Session

__all__ = [
    "Leadership", "Journal", "Kv", "Session", "Entry", "Appended", "KeyValue", "Change",
    "LINEARIZABLE", "LEASE", "LOCAL", "monotonic_ns",
    "RegentError", "NotLeader", "TermMismatch", "Busy", "Superseded", "CommandRefused",
    "JournalCompacted", "Compacted", "KeyNotFound", "LeaderUnreachable", "OutcomeUnknown",
    "ShuttingDown", "BadRequest", "PayloadTooLarge", "Forbidden", "ServerError", "NotWritable",
    "Unavailable",
]
