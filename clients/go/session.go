package regent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SessionTTLMs: a session outlives any retry (a day).
const SessionTTLMs = 24 * 3600 * 1000

// WriteOptions bound a write's attempts.
type WriteOptions struct {
	// Timeout bounds one attempt (regent answers busy after 10 s itself). Default 15 s.
	Timeout time.Duration
	// RetryFor is how long a write is retried with the same seq. Default 30 s.
	RetryFor time.Duration
	// RetryPause is the pause between attempts. Default 200 ms.
	RetryPause time.Duration
	// Forward sets forward=true (a follower relays to the leader). A host never needs it.
	Forward bool
}

func (o WriteOptions) withDefaults() WriteOptions {
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if o.RetryFor == 0 {
		o.RetryFor = 30 * time.Second
	}
	if o.RetryPause == 0 {
		o.RetryPause = 200 * time.Millisecond
	}
	return o
}

// Session sends writes exactly once: an exactly-once session (POST /v1/session), a seq per
// write, and retries of that very seq on busy, superseded, outcome_unknown,
// leader_unreachable, shutting_down, a timeout or a broken connection, until RetryFor. A write
// ends with its answer (carried out once), ErrTermMismatch (fenced; the Leadership is told),
// ErrNotLeader (only when no earlier attempt may have landed) or ErrOutcomeUnknown.
//
// Invariant: acked_below never passes the lowest seq in flight.
type Session struct {
	c          conn
	leadership *Leadership
	opts       WriteOptions

	mu       sync.Mutex
	clientID uint64
	seq      uint64
	inFlight map[uint64]bool
}

// NewSession: on the regent at socket, fenced with leadership's term (nil: not fenced unless
// a write names its term).
func NewSession(socket string, leadership *Leadership, opts WriteOptions) *Session {
	return &Session{c: conn{socket}, leadership: leadership, opts: opts.withDefaults(),
		inFlight: map[uint64]bool{}}
}

func (s *Session) forward() string {
	if s.opts.Forward {
		return "true"
	}
	return ""
}

func (s *Session) open() (uint64, error) {
	v, err := s.c.call("POST", query("/v1/session", "forward", s.forward()),
		[]byte(fmt.Sprintf(`{"ttl_ms": %d}`, SessionTTLMs)), s.opts.Timeout)
	if err != nil {
		return 0, err
	}
	id, ok := v["client_id"].(float64)
	if !ok {
		return 0, &Error{Code: CodeOutcomeUnknown, Message: "a session answer without client_id"}
	}
	return uint64(id), nil
}

// fence: the Leadership's term while it is writable.
func (s *Session) fence() (uint64, error) {
	if s.leadership == nil {
		return 0, nil
	}
	term, ok := s.leadership.Term()
	if !ok || !s.leadership.IsWritable() {
		return 0, &Error{Code: CodeNotWritable,
			Message: "this host's regent is not a writable leader (or not caught up)"}
	}
	return term, nil
}

// Write sends one write exactly once; expectedTerm 0 takes the Leadership's. It returns the
// answer's JSON.
func (s *Session) Write(method, path string, body []byte, expectedTerm uint64) (map[string]interface{}, error) {
	if expectedTerm == 0 {
		term, err := s.fence()
		if err != nil {
			return nil, err
		}
		expectedTerm = term
	}
	s.mu.Lock()
	if s.clientID == 0 {
		id, err := s.open()
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		s.clientID = id
	}
	clientID := s.clientID
	s.seq++
	seq := s.seq
	s.inFlight[seq] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inFlight, seq)
		s.mu.Unlock()
	}()
	return s.send(method, path, body, expectedTerm, clientID, seq)
}

func (s *Session) ackedBelow(seq uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	low := seq
	for q := range s.inFlight {
		if q < low {
			low = q
		}
	}
	return low
}

func (s *Session) send(method, path string, body []byte, term, clientID, seq uint64) (map[string]interface{}, error) {
	deadline := time.Now().Add(s.opts.RetryFor)
	mayHaveLanded := false
	for {
		fence := ""
		if term != 0 {
			fence = strconv.FormatUint(term, 10)
		}
		url := query(path, "client_id", strconv.FormatUint(clientID, 10),
			"seq", strconv.FormatUint(seq, 10),
			"acked_below", strconv.FormatUint(s.ackedBelow(seq), 10),
			"expected_term", fence, "forward", s.forward())
		v, err := s.c.call(method, url, body, s.opts.Timeout)
		if err == nil {
			return v, nil
		}
		var e *Error
		if !errors.As(err, &e) {
			return nil, err
		}
		switch {
		case e.Code == CodeTermMismatch:
			if s.leadership != nil && term != 0 {
				s.leadership.Fenced(term)
			}
			return nil, e
		case e.Code == CodeNotLeader && mayHaveLanded:
			return nil, &Error{Code: CodeOutcomeUnknown, Body: e.Body,
				Message: "an earlier attempt may have landed, then: " + e.Error()}
		case e.Code == CodeCommandRefused && strings.Contains(e.Message, "session"):
			if !mayHaveLanded {
				s.mu.Lock()
				if s.clientID == clientID {
					s.clientID = 0
				}
				s.mu.Unlock()
			}
			return nil, e
		case e.retried():
			if e.Code != CodeLeaderUnreachable && (e.Code != CodeUnavailable || e.Sent) {
				mayHaveLanded = true
			}
		default:
			return nil, e
		}
		if time.Now().After(deadline) {
			if mayHaveLanded {
				return nil, &Error{Code: CodeOutcomeUnknown,
					Message: fmt.Sprintf("retries ran out after %v: %v", s.opts.RetryFor, e)}
			}
			return nil, e
		}
		time.Sleep(s.opts.RetryPause)
	}
}
