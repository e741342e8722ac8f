package regent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// LeadershipOptions configure a Leadership.
type LeadershipOptions struct {
	// JournalHost: become active only once the journal is applied up to catch_up_index (see
	// Leadership).
	JournalHost bool
	// Refresh: how often the lease's deadline is read while writable. Default 100 ms.
	Refresh time.Duration
	// Reconnect: the pause before a broken watch is opened again. Default 200 ms.
	Reconnect time.Duration
	// RequestTimeout bounds each status request and hand-over ack. Default 1 s.
	RequestTimeout time.Duration
	// OnActive: the host may write in term (its fencing token); catchUpIndex is nil when
	// nothing was reported to catch up to. Called in order with OnInactive, one at a time, from
	// a goroutine of the library's own (a callback may write, and be fenced, without blocking
	// the Leadership).
	OnActive func(term uint64, catchUpIndex *uint64)
	// OnInactive: the host must stop writing.
	OnInactive func(reason string)
}

// Leadership says whether this host may write now, and with which fencing term.
//
// Three goroutines keep it: the watcher keeps GET /v1/leadership/watch open (reconnecting);
// the refresher reads GET /v1/status every Refresh while writable (the watch does not carry
// lease renewals); the clock wakes at the lease's deadline and ends the activation if nothing
// renewed it.
//
// Invariant: IsWritable is true only while an activation's term is current and the local
// CLOCK_MONOTONIC is before the last deadline regent gave; it turns false the instant the
// deadline passes, whatever the stream says (a stopped daemon says nothing).
//
// A journal host becomes active only once it has applied the journal up to the catch_up_index
// of the event that made its regent writable (reported with Applied) and regent acknowledged
// that (POST /v1/journal/applied): the hand-over rule.
type Leadership struct {
	c    conn
	opts LeadershipOptions
	// transition is held while a transition is decided and its callback queued.
	transition sync.Mutex
	wake       chan struct{}
	done       chan struct{}
	// callbacks carries the callbacks, in order, to the goroutine that runs them; closed
	// (callbacksClosed, under transition) once Close queued the last one.
	callbacks       chan func()
	callbacksClosed bool

	mu     sync.Mutex
	closed bool
	// What the stream last said: writable in streamTerm until deadlineNs.
	writable   bool
	streamTerm uint64
	deadlineNs uint64
	// A lease warning not yet followed by a renewal.
	warned        bool
	catchUpIndex  *uint64
	catchUpTarget uint64
	applied       uint64
	// The term this host is active in (0: inactive; terms start at 1).
	activeTerm uint64
	stream     io.Closer
}

// callbacksMax bounds the callbacks queued and not yet run (transitions are rare: a host
// that holds its callback this long holds the Leadership's transitions, not its clock).
const callbacksMax = 256

// queue hands a callback to the callbacks' goroutine; called with transition held.
func (l *Leadership) queue(f func()) {
	if !l.callbacksClosed {
		l.callbacks <- f
	}
}

// StartLeadership follows the regent at socket. The callbacks may run before it returns (its
// goroutines start here).
func StartLeadership(socket string, opts LeadershipOptions) *Leadership {
	if opts.Refresh == 0 {
		opts.Refresh = 100 * time.Millisecond
	}
	if opts.Reconnect == 0 {
		opts.Reconnect = 200 * time.Millisecond
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = time.Second
	}
	l := &Leadership{c: conn{socket}, opts: opts, wake: make(chan struct{}, 1),
		done: make(chan struct{}), callbacks: make(chan func(), callbacksMax)}
	go func() {
		for f := range l.callbacks {
			f()
		}
	}()
	go l.watch()
	go l.refresh()
	go l.clock()
	return l
}

func (l *Leadership) notify() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// IsWritable: active, and the lease's deadline is ahead on the local monotonic clock.
func (l *Leadership) IsWritable() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.activeTerm != 0 && !l.warned && MonotonicNs() < l.deadlineNs
}

// Term is the fencing term of the current activation (send it as expected_term).
func (l *Leadership) Term() (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.activeTerm, l.activeTerm != 0
}

// DeadlineNs is the lease's deadline on CLOCK_MONOTONIC as regent last gave it (0: none).
func (l *Leadership) DeadlineNs() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadlineNs
}

// Applied: a journal host reports the journal index it has applied up to.
func (l *Leadership) Applied(index uint64) {
	l.mu.Lock()
	if index > l.applied {
		l.applied = index
	}
	l.mu.Unlock()
	l.maybeActivate()
}

// Fenced: a write in term was refused with term_mismatch; this host is deposed.
func (l *Leadership) Fenced(term uint64) {
	l.mu.Lock()
	current := l.activeTerm == term
	l.mu.Unlock()
	if current {
		l.deactivate(fmt.Sprintf("term_mismatch: a write in term %d was fenced", term))
	}
}

// Close ends the goroutines and the activation.
func (l *Leadership) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	stream := l.stream
	l.mu.Unlock()
	if stream != nil {
		stream.Close()
	}
	l.deactivate("closed")
	l.transition.Lock()
	if !l.callbacksClosed {
		l.callbacksClosed = true
		close(l.callbacks)
	}
	l.transition.Unlock()
}

func (l *Leadership) maybeActivate() {
	l.transition.Lock()
	defer l.transition.Unlock()
	l.mu.Lock()
	if l.closed || !l.writable || l.warned || l.activeTerm == l.streamTerm ||
		MonotonicNs() >= l.deadlineNs {
		l.mu.Unlock()
		return
	}
	term, target, applied, catchUp := l.streamTerm, l.catchUpTarget, l.applied, l.catchUpIndex
	l.mu.Unlock()
	if l.opts.JournalHost {
		if applied < target {
			return
		}
		_, err := l.c.call("POST", "/v1/journal/applied",
			[]byte(fmt.Sprintf(`{"index": %d}`, applied)), l.opts.RequestTimeout)
		if err != nil {
			return // the next event, refresh or Applied tries again
		}
	}
	l.mu.Lock()
	if !l.writable || l.streamTerm != term || MonotonicNs() >= l.deadlineNs {
		l.mu.Unlock()
		return
	}
	l.activeTerm = term
	l.mu.Unlock()
	l.notify()
	if l.opts.OnActive != nil {
		l.queue(func() { l.opts.OnActive(term, catchUp) })
	}
}

func (l *Leadership) deactivate(reason string) {
	l.transition.Lock()
	defer l.transition.Unlock()
	l.mu.Lock()
	if l.activeTerm == 0 {
		l.mu.Unlock()
		return
	}
	l.activeTerm = 0
	l.mu.Unlock()
	l.notify()
	if l.opts.OnInactive != nil {
		l.queue(func() { l.opts.OnInactive(reason) })
	}
}

type watchEvent struct {
	Event        string  `json:"event"`
	Role         string  `json:"role"`
	Term         uint64  `json:"term"`
	Writable     bool    `json:"writable"`
	CatchUpIndex *uint64 `json:"catch_up_index"`
	Lease        struct {
		Valid      bool   `json:"valid"`
		DeadlineNs uint64 `json:"deadline_monotonic_ns"`
	} `json:"lease"`
	Journal struct {
		LastIndex uint64 `json:"last_index"`
	} `json:"journal"`
}

func (l *Leadership) setNotWritable() {
	l.mu.Lock()
	l.writable = false
	l.mu.Unlock()
	l.notify()
}

func (l *Leadership) onEvent(e *watchEvent) {
	if !e.Writable {
		l.setNotWritable()
		l.deactivate(fmt.Sprintf("not writable (role %s, term %d)", e.Role, e.Term))
		return
	}
	l.mu.Lock()
	newTerm := e.Term != l.streamTerm || !l.writable
	old := l.activeTerm
	l.mu.Unlock()
	if newTerm && old != 0 && old != e.Term {
		l.deactivate(fmt.Sprintf("term %d ended (now %d)", old, e.Term))
	}
	l.mu.Lock()
	switch {
	case newTerm:
		l.streamTerm = e.Term
		l.writable = true
		l.deadlineNs = e.Lease.DeadlineNs
		l.warned = false
		l.catchUpIndex = e.CatchUpIndex
		if e.CatchUpIndex != nil {
			l.catchUpTarget = *e.CatchUpIndex
		} else {
			// Acked already (a host restarted in the term): everything committed.
			l.catchUpTarget = e.Journal.LastIndex
		}
	case e.Event == "lease_warning":
		// Not renewed lately: stop until a later deadline shows up.
		if e.Lease.DeadlineNs <= l.deadlineNs {
			l.warned = true
		}
	case e.Lease.DeadlineNs > l.deadlineNs:
		l.deadlineNs = e.Lease.DeadlineNs
		l.warned = false
	}
	l.mu.Unlock()
	l.notify()
	l.maybeActivate()
}

func (l *Leadership) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *Leadership) watch() {
	for !l.isClosed() {
		reason := "the leadership watch ended"
		body, err := l.c.stream("/v1/leadership/watch")
		if err != nil {
			reason = "the leadership watch failed: " + err.Error()
		} else {
			l.mu.Lock()
			l.stream = body
			closed := l.closed
			l.mu.Unlock()
			if closed {
				body.Close()
				return
			}
			scanner := bufio.NewScanner(body)
			scanner.Buffer(make([]byte, 64<<10), 1<<20)
			for scanner.Scan() {
				var e watchEvent
				if json.Unmarshal(scanner.Bytes(), &e) != nil {
					break
				}
				l.onEvent(&e)
			}
			body.Close()
		}
		// A stream that broke says nothing about the lease: assume it ended.
		l.setNotWritable()
		l.deactivate(reason)
		select {
		case <-l.done:
			return
		case <-time.After(l.opts.Reconnect):
		}
	}
}

func (l *Leadership) refresh() {
	for {
		l.mu.Lock()
		writable, term := l.writable, l.streamTerm
		l.mu.Unlock()
		if writable {
			// A failure leaves the lease to run out on its own; the clock ends it.
			a, err := l.c.request("GET", "/v1/status", nil, l.opts.RequestTimeout)
			var status watchEvent
			if err == nil && a.check() == nil && json.Unmarshal(a.body, &status) == nil {
				l.onStatus(&status, term)
			}
		}
		select {
		case <-l.done:
			return
		case <-time.After(l.opts.Refresh):
		}
	}
}

func (l *Leadership) onStatus(status *watchEvent, term uint64) {
	l.mu.Lock()
	if l.streamTerm != term || !l.writable {
		l.mu.Unlock()
		return
	}
	if status.Term == term && status.Writable && status.Lease.Valid &&
		status.Lease.DeadlineNs > l.deadlineNs {
		l.deadlineNs = status.Lease.DeadlineNs
		l.warned = false
	}
	l.mu.Unlock()
	l.notify()
	l.maybeActivate()
}

func (l *Leadership) clock() {
	for {
		l.mu.Lock()
		active, deadline := l.activeTerm != 0, l.deadlineNs
		l.mu.Unlock()
		now := MonotonicNs()
		if active && now >= deadline {
			l.deactivate(fmt.Sprintf("the lease ran out unrenewed at %d ns", deadline))
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if active {
			timer = time.NewTimer(time.Duration(deadline - now))
			fire = timer.C
		}
		select {
		case <-l.done:
			return
		case <-l.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}
