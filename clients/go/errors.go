// Package regent is the host protocol of regent (docs/api.md) for Go masters: Leadership,
// Journal and Kv over the daemon's Unix socket. Standard library only; Linux; Go 1.19+.
package regent

import (
	"encoding/json"
	"fmt"
)

// The API's error codes (docs/api.md), and the library's own (NotWritable, Unavailable).
const (
	CodeNotLeader         = "not_leader"
	CodeTermMismatch      = "term_mismatch"
	CodeBusy              = "busy"
	CodeSuperseded        = "superseded"
	CodeCommandRefused    = "command_refused"
	CodeJournalCompacted  = "journal_compacted"
	CodeCompacted         = "compacted"
	CodeKeyNotFound       = "key_not_found"
	CodeLeaderUnreachable = "leader_unreachable"
	CodeOutcomeUnknown    = "outcome_unknown"
	CodeShuttingDown      = "shutting_down"
	CodeNotWritable       = "not_writable"
	CodeUnavailable       = "unavailable"
)

// Error is what regent answered (Status is its HTTP status) or what kept a request from an
// answer (Status 0). errors.Is(err, regent.ErrTermMismatch) matches by Code.
type Error struct {
	Code    string
	Status  int
	Message string
	// Body is the answer's JSON object (leader_id, first_index, term, ...).
	Body map[string]interface{}
	// Sent (Unavailable): the request may have reached regent. Timeout: no answer in time.
	Sent    bool
	Timeout bool
}

// Sentinels for errors.Is.
var (
	ErrNotLeader         = &Error{Code: CodeNotLeader}
	ErrTermMismatch      = &Error{Code: CodeTermMismatch}
	ErrBusy              = &Error{Code: CodeBusy}
	ErrSuperseded        = &Error{Code: CodeSuperseded}
	ErrCommandRefused    = &Error{Code: CodeCommandRefused}
	ErrJournalCompacted  = &Error{Code: CodeJournalCompacted}
	ErrCompacted         = &Error{Code: CodeCompacted}
	ErrKeyNotFound       = &Error{Code: CodeKeyNotFound}
	ErrLeaderUnreachable = &Error{Code: CodeLeaderUnreachable}
	ErrOutcomeUnknown    = &Error{Code: CodeOutcomeUnknown}
	ErrShuttingDown      = &Error{Code: CodeShuttingDown}
	ErrNotWritable       = &Error{Code: CodeNotWritable}
	ErrUnavailable       = &Error{Code: CodeUnavailable}
)

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is matches errors by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func (e *Error) number(name string) (uint64, bool) {
	v, ok := e.Body[name].(float64)
	return uint64(v), ok
}

// LeaderID is the leader named by not_leader, when known.
func (e *Error) LeaderID() (uint64, bool) { return e.number("leader_id") }

// FirstIndex is the journal's first index named by journal_compacted.
func (e *Error) FirstIndex() uint64 { v, _ := e.number("first_index"); return v }

// Term is the current term named by term_mismatch.
func (e *Error) Term() (uint64, bool) { return e.number("term") }

// retried: a write that got this is sent again with the same seq.
func (e *Error) retried() bool {
	switch e.Code {
	case CodeBusy, CodeSuperseded, CodeOutcomeUnknown, CodeLeaderUnreachable, CodeShuttingDown,
		CodeUnavailable:
		return true
	}
	return false
}

// errorFromAnswer is the error of a non-2xx answer.
func errorFromAnswer(status int, body []byte) *Error {
	var v map[string]interface{}
	if json.Unmarshal(body, &v) != nil {
		v = map[string]interface{}{}
	}
	return errorFromJSON(status, v)
}

func errorFromJSON(status int, v map[string]interface{}) *Error {
	code, _ := v["error"].(string)
	if code == "" {
		code = fmt.Sprintf("http_%d", status)
	}
	message, _ := v["message"].(string)
	if message == "" {
		message = fmt.Sprintf("HTTP %d", status)
	}
	return &Error{Code: code, Status: status, Message: message, Body: v}
}
