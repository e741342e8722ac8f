package regent

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
)

// Consistency of a read.
type Consistency string

const (
	// Linearizable: ReadIndex, confirmed with a heartbeat round (the default).
	Linearizable Consistency = "linearizable"
	// Lease: on the leader while its lease holds, no round trip.
	Lease Consistency = "lease"
	// Local: this node's applied state as it is.
	Local Consistency = "local"
)

// KeyValue is a key's value and revisions.
type KeyValue struct {
	Key            []byte
	Value          []byte
	CreateRevision uint64
	ModRevision    uint64
	Version        uint64
}

// Change is one change seen by Watch.
type Change struct {
	Type     string // "put" or "delete"
	Key      []byte
	Value    []byte
	Revision uint64
}

// Kv is the replicated key-value store: writes fenced and exactly once in a session, reads
// at a consistency level, a watch that reconnects from the next revision.
type Kv struct {
	c       conn
	session *Session
	opts    WriteOptions
}

// NewKv: on the regent at socket; writes fenced with leadership's term (nil: not fenced
// unless a write names its term).
func NewKv(socket string, leadership *Leadership, opts WriteOptions) *Kv {
	opts = opts.withDefaults()
	return &Kv{c: conn{socket}, session: NewSession(socket, leadership, opts), opts: opts}
}

// Get returns the key, or nil when it is absent.
func (k *Kv) Get(key []byte, consistency Consistency) (*KeyValue, error) {
	a, err := k.c.request("GET", query("/v1/kv/"+EncodeKey(key), "consistency", string(consistency)), nil, k.opts.Timeout)
	if err != nil {
		return nil, err
	}
	if err := a.check(); err != nil {
		if e, ok := err.(*Error); ok && e.Code == CodeKeyNotFound {
			return nil, nil
		}
		return nil, err
	}
	num := func(h string) uint64 { n, _ := strconv.ParseUint(a.headers.Get(h), 10, 64); return n }
	return &KeyValue{Key: key, Value: a.body, CreateRevision: num("x-regent-create-revision"),
		ModRevision: num("x-regent-revision"), Version: num("x-regent-version")}, nil
}

// Put returns the answer: revision, index, term. expectedTerm 0 takes the Leadership's.
func (k *Kv) Put(key, value []byte, expectedTerm uint64) (map[string]interface{}, error) {
	return k.session.Write("PUT", "/v1/kv/"+EncodeKey(key), value, expectedTerm)
}

// Delete returns the answer: revision, index, term, deleted.
func (k *Kv) Delete(key []byte, expectedTerm uint64) (map[string]interface{}, error) {
	return k.session.Write("DELETE", "/v1/kv/"+EncodeKey(key), nil, expectedTerm)
}

// Range returns the keys under prefix (at most limit) and whether there are more.
func (k *Kv) Range(prefix []byte, limit int, consistency Consistency) ([]KeyValue, bool, error) {
	a, err := k.c.request("GET", query("/v1/kv", "prefix", string(prefix), "limit", strconv.Itoa(limit),
		"consistency", string(consistency)), nil, k.opts.Timeout)
	if err != nil {
		return nil, false, err
	}
	if err := a.check(); err != nil {
		return nil, false, err
	}
	var v struct {
		Kvs []struct {
			Key            json.RawMessage `json:"key"`
			Value          json.RawMessage `json:"value"`
			CreateRevision uint64          `json:"create_revision"`
			ModRevision    uint64          `json:"mod_revision"`
			Version        uint64          `json:"version"`
		} `json:"kvs"`
		More bool `json:"more"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil {
		return nil, false, &Error{Code: "bad_answer", Message: err.Error()}
	}
	out := make([]KeyValue, 0, len(v.Kvs))
	for _, kv := range v.Kvs {
		out = append(out, KeyValue{Key: DecodeBytes(kv.Key), Value: DecodeBytes(kv.Value),
			CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version})
	}
	return out, v.More, nil
}

// Txn sends a transaction as docs/api.md writes it (compare, success, failure as JSON values).
func (k *Kv) Txn(compare, success, failure interface{}, expectedTerm uint64) (map[string]interface{}, error) {
	body, err := json.Marshal(map[string]interface{}{"compare": orEmpty(compare),
		"success": orEmpty(success), "failure": orEmpty(failure)})
	if err != nil {
		return nil, &Error{Code: "bad_txn", Message: err.Error()}
	}
	return k.session.Write("POST", "/v1/txn", body, expectedTerm)
}

func orEmpty(v interface{}) interface{} {
	if v == nil {
		return []interface{}{}
	}
	return v
}

// Watch sends the changes under prefix from fromRevision (0: from now) on ch, in order,
// reconnecting from the next revision, until stop is closed. It returns ErrCompacted when
// the revision is gone, nil once stopped.
func (k *Kv) Watch(prefix []byte, fromRevision uint64, ch chan<- Change, stop <-chan struct{}) error {
	next := fromRevision
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		from := ""
		if next > 0 {
			from = strconv.FormatUint(next, 10)
		}
		body, err := k.c.stream(query("/v1/watch", "prefix", string(prefix), "from_revision", from))
		if err != nil {
			if e, ok := err.(*Error); ok && e.Code == CodeCompacted {
				return e
			}
		} else {
			go func() { <-stop; body.Close() }()
			scanner := bufio.NewScanner(body)
			scanner.Buffer(make([]byte, 64<<10), 4<<20)
			for scanner.Scan() {
				var e struct {
					Type     string          `json:"type"`
					Key      json.RawMessage `json:"key"`
					Value    json.RawMessage `json:"value"`
					Revision uint64          `json:"revision"`
					Error    string          `json:"error"`
				}
				if json.Unmarshal(scanner.Bytes(), &e) != nil || e.Error != "" {
					break
				}
				next = e.Revision + 1
				select {
				case ch <- Change{Type: e.Type, Key: DecodeBytes(e.Key), Value: DecodeBytes(e.Value), Revision: e.Revision}:
				case <-stop:
					body.Close()
					return nil
				}
			}
			body.Close()
		}
		select {
		case <-stop:
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// DecodeBytes reads the API's {"text": ...} / {"base64": ...} (or a plain string).
func DecodeBytes(raw json.RawMessage) []byte {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []byte(s)
	}
	var v struct {
		Text   *string `json:"text"`
		Base64 *string `json:"base64"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	if v.Text != nil {
		return []byte(*v.Text)
	}
	if v.Base64 != nil {
		b, _ := base64.StdEncoding.DecodeString(*v.Base64)
		return b
	}
	return nil
}
