// Command regent-conformance is the Go library's conformance runner: one JSON step per line on
// stdin, one JSON result per line on stdout (clients/conformance/README.md). Run by
// clients/conformance/run.py:
//
//	cd clients/go && go build -o regent-conformance ./cmd/regent-conformance
//	python3 clients/conformance/run.py --regent target/release/regent -- clients/go/regent-conformance
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	regent "regent.local/client"
)

type step map[string]interface{}

func (s step) str(k string) string { v, _ := s[k].(string); return v }
func (s step) num(k string) uint64 { v, _ := s[k].(float64); return uint64(v) }
func (s step) ms(k string, d uint64) time.Duration {
	if v := s.num(k); v != 0 {
		d = v
	}
	return time.Duration(d) * time.Millisecond
}

// host is a Leadership, a Journal and a Kv on one socket; a journal host also tails the
// journal from 1 and applies it (here: keeps the indexes), reporting progress to Leadership.
type host struct {
	lead    *regent.Leadership
	journal *regent.Journal
	kv      *regent.Kv
	tail    *regent.Tail

	mu      sync.Mutex
	events  []map[string]interface{}
	applied uint64
	inOrder bool
	// held (set by hold_apply): the applier waits, the host falls behind, until release_apply.
	held bool
}

func open(s step) *host {
	h := &host{inOrder: true}
	forward, _ := s["forward"].(bool)
	opts := regent.WriteOptions{Timeout: s.ms("timeout_ms", 15000), Forward: forward}
	journalHost, _ := s["journal_host"].(bool)
	// The callbacks (under h.mu) may come before StartLeadership returns: they wait for this.
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lead = regent.StartLeadership(s.str("socket"), regent.LeadershipOptions{
		JournalHost: journalHost,
		OnActive: func(term uint64, catchUp *uint64) {
			h.mu.Lock()
			defer h.mu.Unlock()
			var c interface{}
			if catchUp != nil {
				c = *catchUp
			}
			h.events = append(h.events, map[string]interface{}{"kind": "active", "term": term,
				"catch_up_index": c, "applied": h.applied, "at_ns": regent.MonotonicNs(),
				"deadline_ns": h.lead.DeadlineNs()})
		},
		OnInactive: func(reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events = append(h.events, map[string]interface{}{"kind": "inactive",
				"reason": reason, "at_ns": regent.MonotonicNs(), "deadline_ns": h.lead.DeadlineNs()})
		},
	})
	h.journal = regent.NewJournal(s.str("socket"), h.lead, opts)
	h.kv = regent.NewKv(s.str("socket"), h.lead, opts)
	if journalHost {
		h.tail = regent.NewJournal(s.str("socket"), nil, opts).Tail(1)
		go func() {
			for {
				e, err := h.tail.Next()
				if err != nil {
					return
				}
				for {
					h.mu.Lock()
					held := h.held
					h.mu.Unlock()
					if !held {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				h.mu.Lock()
				if e.Index != h.applied+1 {
					h.inOrder = false
				}
				h.applied = e.Index
				h.mu.Unlock()
				h.lead.Applied(e.Index)
			}
		}()
	}
	return h
}

func errorResult(err error) map[string]interface{} {
	e, ok := err.(*regent.Error)
	if !ok {
		return map[string]interface{}{"error": "exception", "message": err.Error()}
	}
	out := map[string]interface{}{}
	for k, v := range e.Body {
		out[k] = v
	}
	out["error"], out["message"] = e.Code, e.Message
	if e.Status != 0 {
		out["status"] = e.Status
	}
	return out
}

func ops(s step) [][]byte {
	var out [][]byte
	list, _ := s["ops"].([]interface{})
	for _, o := range list {
		str, _ := o.(string)
		out = append(out, []byte(str))
	}
	return out
}

func run(s step, hosts map[string]*host) (interface{}, error) {
	do := s.str("do")
	switch do {
	case "open":
		hosts[s.str("host")] = open(s)
		return map[string]interface{}{"ok": true}, nil
	case "tail":
		return tail(s)
	}
	h := hosts[s.str("host")]
	if h == nil {
		return map[string]interface{}{"error": "no_such_host"}, nil
	}
	term := s.num("expected_term")
	switch do {
	case "events":
		h.mu.Lock()
		defer h.mu.Unlock()
		events := append([]map[string]interface{}{}, h.events...)
		return map[string]interface{}{"events": events}, nil
	case "is_writable":
		t, ok := h.lead.Term()
		var tv interface{}
		if ok {
			tv = t
		}
		return map[string]interface{}{"writable": h.lead.IsWritable(), "term": tv,
			"deadline_ns": h.lead.DeadlineNs(), "now_ns": regent.MonotonicNs()}, nil
	case "writable_after_deadline":
		end := time.Now().Add(s.ms("timeout_ms", 30000))
		for time.Now().Before(end) {
			deadline, now := h.lead.DeadlineNs(), regent.MonotonicNs()
			if now >= deadline {
				writable := h.lead.IsWritable()
				// A renewal read just before the stop may land meanwhile: look again.
				if h.lead.DeadlineNs() == deadline {
					return map[string]interface{}{"writable": writable, "now_ns": now,
						"deadline_ns": deadline}, nil
				}
				continue
			}
			wait := time.Duration(deadline - now)
			if wait > 50*time.Millisecond {
				wait = 50 * time.Millisecond
			}
			time.Sleep(wait)
		}
		return map[string]interface{}{"error": "deadline_not_reached"}, nil
	case "append":
		return h.journal.Append(ops(s), term)
	case "kv_put":
		return h.kv.Put([]byte(s.str("key")), []byte(s.str("value")), term)
	case "kv_delete":
		return h.kv.Delete([]byte(s.str("key")), term)
	case "kv_get":
		c := regent.Consistency(s.str("consistency"))
		if c == "" {
			c = regent.Linearizable
		}
		kv, err := h.kv.Get([]byte(s.str("key")), c)
		if err != nil || kv == nil {
			return map[string]interface{}{"value": nil}, err
		}
		return map[string]interface{}{"value": string(kv.Value), "mod_revision": kv.ModRevision,
			"create_revision": kv.CreateRevision, "version": kv.Version}, nil
	case "kv_range":
		limit := int(s.num("limit"))
		if limit == 0 {
			limit = 1000
		}
		kvs, more, err := h.kv.Range([]byte(s.str("prefix")), limit, regent.Linearizable)
		if err != nil {
			return nil, err
		}
		keys := []string{}
		for _, kv := range kvs {
			keys = append(keys, string(kv.Key))
		}
		return map[string]interface{}{"keys": keys, "more": more}, nil
	case "kv_txn":
		t, _ := s["txn"].(map[string]interface{})
		return h.kv.Txn(t["compare"], t["success"], t["failure"], term)
	case "hold_apply", "release_apply":
		h.mu.Lock()
		h.held = do == "hold_apply"
		h.mu.Unlock()
		return map[string]interface{}{"ok": true}, nil
	case "kv_watch":
		count := int(s.num("count"))
		ch := make(chan regent.Change, count)
		stop := make(chan struct{})
		defer close(stop)
		errs := make(chan error, 1)
		go func() { errs <- h.kv.Watch([]byte(s.str("prefix")), s.num("from_revision"), ch, stop) }()
		timer := time.NewTimer(s.ms("timeout_ms", 30000))
		defer timer.Stop()
		var changes []regent.Change
		for len(changes) < count {
			select {
			case c := <-ch:
				changes = append(changes, c)
			case err := <-errs:
				return nil, err
			case <-timer.C:
				return map[string]interface{}{"error": "watch_timed_out", "changes": len(changes)}, nil
			}
		}
		keys, types, values := []string{}, []string{}, []interface{}{}
		for _, c := range changes {
			keys, types = append(keys, string(c.Key)), append(types, c.Type)
			if c.Value == nil {
				values = append(values, nil)
			} else {
				values = append(values, string(c.Value))
			}
		}
		return map[string]interface{}{"keys": keys, "types": types, "values": values,
			"first_revision": changes[0].Revision, "last_revision": changes[count-1].Revision}, nil
	case "wait_applied":
		end := time.Now().Add(s.ms("timeout_ms", 30000))
		for {
			h.mu.Lock()
			applied, inOrder := h.applied, h.inOrder
			h.mu.Unlock()
			if applied >= s.num("index") {
				return map[string]interface{}{"applied": applied, "in_order": inOrder}, nil
			}
			if time.Now().After(end) {
				return map[string]interface{}{"error": "not_applied", "applied": applied}, nil
			}
			time.Sleep(50 * time.Millisecond)
		}
	case "close":
		h.lead.Close()
		if h.tail != nil {
			h.tail.Close()
		}
		delete(hosts, s.str("host"))
		return map[string]interface{}{"ok": true}, nil
	}
	return map[string]interface{}{"error": "unknown_step", "do": do}, nil
}

// tail reads the journal from "from" until index "until" (reconnecting inside the library).
func tail(s step) (interface{}, error) {
	t := regent.NewJournal(s.str("socket"), nil, regent.WriteOptions{}).Tail(s.num("from"))
	timer := time.AfterFunc(s.ms("timeout_ms", 30000), t.Close)
	defer timer.Stop()
	defer t.Close()
	var entries []*regent.Entry
	for {
		e, err := t.Next()
		if err != nil {
			return nil, err
		}
		entries = append(entries, e)
		if e.Index >= s.num("until") {
			break
		}
	}
	inOrder := true
	for i := 1; i < len(entries); i++ {
		inOrder = inOrder && entries[i].Index == entries[i-1].Index+1
	}
	first, last := entries[0], entries[len(entries)-1]
	return map[string]interface{}{"first": first.Index, "last": last.Index, "count": len(entries),
		"in_order": inOrder, "last_op": string(last.Op)}, nil
}

func main() {
	hosts := map[string]*host{}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var s step
		var result interface{}
		if err := json.Unmarshal(in.Bytes(), &s); err != nil {
			result = map[string]interface{}{"error": "bad_step", "message": err.Error()}
		} else if r, err := run(s, hosts); err != nil {
			result = errorResult(err)
		} else {
			result = r
		}
		if err := out.Encode(result); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
	}
	for _, h := range hosts {
		h.lead.Close()
	}
}
