"""The API's error codes as exception types (docs/api.md, the table of codes).

Every error regent answers becomes an instance of the class registered for its `code`; a code
this library does not know becomes a plain `RegentError` that still carries it. Errors that
arise in the library itself (the host is not active, the socket is unreachable, retries ran
out) have codes of their own that do not collide with the API's.
"""


class RegentError(Exception):
    """An error answered by regent (`status` is its HTTP status) or raised by the library
    (`status` is None). `code` names the API's error code; `body` is the answer's JSON."""

    code = "error"

    def __init__(self, message, status=None, body=None, code=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body or {}
        if code is not None:
            self.code = code

    def __str__(self):
        where = f" (HTTP {self.status})" if self.status else ""
        return f"{self.code}: {self.message}{where}"


class NotLeader(RegentError):
    """503: this node does not lead; `leader_id` and `leader_address` when known."""

    code = "not_leader"

    @property
    def leader_id(self):
        return self.body.get("leader_id")

    @property
    def leader_address(self):
        return self.body.get("leader_address")


class TermMismatch(RegentError):
    """409: fenced. The write's `expected_term` is not the term of the leader that would
    append it; this host is deposed and must stop writing."""

    code = "term_mismatch"

    @property
    def expected_term(self):
        return self.body.get("expected_term")

    @property
    def term(self):
        return self.body.get("term")


class Busy(RegentError):
    """503: backpressure, a hand-over, or no answer in 10 s; retried inside with the same seq."""

    code = "busy"


class Superseded(RegentError):
    """503: another leader's entry took the write's position; retried inside."""

    code = "superseded"


class CommandRefused(RegentError):
    code = "command_refused"


class JournalCompacted(RegentError):
    """410: the journal no longer holds the index asked for; it starts at `first_index`.
    Load a checkpoint covering `first_index - 1`, then tail from its index + 1."""

    code = "journal_compacted"

    @property
    def first_index(self):
        return self.body.get("first_index")


class Compacted(RegentError):
    """410: the KV watch feed no longer holds the revision; it starts at `oldest_revision`."""

    code = "compacted"

    @property
    def oldest_revision(self):
        return self.body.get("oldest_revision")


class KeyNotFound(RegentError):
    code = "key_not_found"


class LeaderUnreachable(RegentError):
    code = "leader_unreachable"


class OutcomeUnknown(RegentError):
    """The write may or may not have been carried out (regent's `outcome_unknown`, or the
    library's retries ran out after an attempt that may have landed). Read before writing
    again."""

    code = "outcome_unknown"


class ShuttingDown(RegentError):
    code = "shutting_down"


class BadRequest(RegentError):
    """400: `bad_key`, `bad_parameter`, `bad_consistency`, `bad_json`, `bad_txn`, `bad_body`,
    `bad_operation`, `bad_batch` (the instance's `code` says which)."""

    code = "bad_request"


class PayloadTooLarge(RegentError):
    code = "payload_too_large"


class Forbidden(RegentError):
    code = "forbidden"


class ServerError(RegentError):
    """500: `storage_error` or `internal`."""

    code = "internal"


class NotWritable(RegentError):
    """Library: this host is not active (its regent is not a writable leader with a valid
    lease, or the journal is not caught up); nothing was sent."""

    code = "not_writable"


class Unavailable(RegentError):
    """Library: the socket could not be reached or the exchange broke (a timeout included)."""

    code = "unavailable"


_BY_CODE = {
    cls.code: cls
    for cls in (NotLeader, TermMismatch, Busy, Superseded, CommandRefused, JournalCompacted,
                Compacted, KeyNotFound, LeaderUnreachable, OutcomeUnknown, ShuttingDown,
                PayloadTooLarge, Forbidden)
}


def from_answer(status, body):
    """The exception for an error answer (`body` is its parsed JSON, or None)."""
    if not isinstance(body, dict):
        body = {}
    code = body.get("error") or f"http_{status}"
    message = body.get("message") or f"HTTP {status}"
    cls = _BY_CODE.get(code)
    if cls is None:
        if code.startswith("bad_"):
            cls = BadRequest
        elif code in ("storage_error", "internal"):
            cls = ServerError
        else:
            cls = RegentError
    return cls(message, status=status, body=body, code=code)
