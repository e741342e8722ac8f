package regent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Entry is one committed journal operation.
type Entry struct {
	Index uint64
	Term  uint64
	Op    []byte
}

// Appended says where an append landed.
type Appended struct {
	Index      uint64 `json:"index"`
	Term       uint64 `json:"term"`
	FirstIndex uint64 `json:"first_index"`
	LastIndex  uint64 `json:"last_index"`
	LogIndex   uint64 `json:"log_index"`
}

// Journal is the host's operation log (docs/api.md, "The host's operation journal"): fenced
// appends exactly once in a session, a tail that reconnects from the next index, the
// hand-over ack and checkpoints.
type Journal struct {
	c       conn
	session *Session
	opts    WriteOptions
}

// NewJournal: on the regent at socket; appends fenced with leadership's term (nil: each
// append names its expected term, or is not fenced).
func NewJournal(socket string, leadership *Leadership, opts WriteOptions) *Journal {
	opts = opts.withDefaults()
	return &Journal{c: conn{socket}, session: NewSession(socket, leadership, opts), opts: opts}
}

// Append appends ops (one: a plain append; more: one batch, at consecutive indexes).
// expectedTerm 0 takes the Leadership's (ErrNotWritable when it is not writable).
func (j *Journal) Append(ops [][]byte, expectedTerm uint64) (*Appended, error) {
	if len(ops) == 0 || len(ops) > 4096 {
		return nil, &Error{Code: "bad_batch", Message: fmt.Sprintf("%d operations (1..=4096)", len(ops))}
	}
	var v map[string]interface{}
	var err error
	if len(ops) == 1 {
		v, err = j.session.Write("POST", "/v1/journal", ops[0], expectedTerm)
	} else {
		var body []byte
		for _, op := range ops {
			body = binary.BigEndian.AppendUint32(body, uint32(len(op)))
			body = append(body, op...)
		}
		v, err = j.session.Write("POST", "/v1/journal?batch=true", body, expectedTerm)
	}
	if err != nil {
		return nil, err
	}
	data, _ := json.Marshal(v)
	var a Appended
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, &Error{Code: "bad_answer", Message: err.Error()}
	}
	return &a, nil
}

// Ack: POST /v1/journal/applied, this host applied the journal up to index.
func (j *Journal) Ack(index uint64) (map[string]interface{}, error) {
	return j.c.call("POST", "/v1/journal/applied", []byte(fmt.Sprintf(`{"index": %d}`, index)), j.opts.Timeout)
}

// Checkpoint: POST /v1/journal/checkpoint, this host's checkpoint covers up to index.
func (j *Journal) Checkpoint(index uint64) (map[string]interface{}, error) {
	return j.c.call("POST", "/v1/journal/checkpoint", []byte(fmt.Sprintf(`{"index": %d}`, index)), j.opts.Timeout)
}

// State: GET /v1/journal/state.
func (j *Journal) State() (map[string]interface{}, error) {
	return j.c.call("GET", "/v1/journal/state", nil, j.opts.Timeout)
}

// Tail streams the committed operations from index from on, each once and in order, opening
// the stream again from the next index whenever it breaks. Next returns them; it returns
// ErrJournalCompacted (with FirstIndex) when the next index is gone.
func (j *Journal) Tail(from uint64) *Tail {
	return &Tail{c: j.c, next: from, done: make(chan struct{})}
}

// Tail is a journal tail (see Journal.Tail).
type Tail struct {
	c      conn
	next   uint64
	body   io.ReadCloser
	reader *bufio.Reader
	done   chan struct{}
}

// Close ends the tail (a blocked Next returns).
func (t *Tail) Close() {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
	if t.body != nil {
		t.body.Close()
	}
}

// NextIndex is the index the next entry will have.
func (t *Tail) NextIndex() uint64 { return t.next }

// Next blocks for the next entry.
func (t *Tail) Next() (*Entry, error) {
	for {
		select {
		case <-t.done:
			return nil, &Error{Code: "closed", Message: "the tail was closed"}
		default:
		}
		if t.body == nil {
			body, err := t.c.stream("/v1/journal?from=" + strconv.FormatUint(t.next, 10))
			if err != nil {
				if e, ok := err.(*Error); ok && e.Code == CodeJournalCompacted {
					return nil, e
				}
				time.Sleep(200 * time.Millisecond)
				continue
			}
			t.body, t.reader = body, bufio.NewReaderSize(body, 64<<10)
		}
		var head [20]byte
		if _, err := io.ReadFull(t.reader, head[:]); err != nil {
			t.reset()
			continue
		}
		index := binary.BigEndian.Uint64(head[0:8])
		term := binary.BigEndian.Uint64(head[8:16])
		op := make([]byte, binary.BigEndian.Uint32(head[16:20]))
		if _, err := io.ReadFull(t.reader, op); err != nil {
			t.reset()
			continue
		}
		if index != t.next {
			t.reset()
			return nil, &Error{Code: "bad_stream", Message: fmt.Sprintf("journal index %d after %d", index, t.next-1)}
		}
		t.next++
		return &Entry{Index: index, Term: term, Op: op}, nil
	}
}

func (t *Tail) reset() {
	if t.body != nil {
		t.body.Close()
	}
	t.body, t.reader = nil, nil
	select {
	case <-t.done:
	case <-time.After(200 * time.Millisecond):
	}
}
