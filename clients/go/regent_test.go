package regent

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestErrorsAreTypedByCode(t *testing.T) {
	err := error(errorFromAnswer(503, []byte(`{"error":"not_leader","message":"m","leader_id":2}`)))
	if !errors.Is(err, ErrNotLeader) || errors.Is(err, ErrBusy) {
		t.Fatalf("%v", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatal("not an *Error")
	}
	if id, ok := e.LeaderID(); !ok || id != 2 || e.Status != 503 {
		t.Fatalf("%+v", e)
	}
	gone := errorFromAnswer(410, []byte(`{"error":"journal_compacted","first_index":9}`))
	if !errors.Is(gone, ErrJournalCompacted) || gone.FirstIndex() != 9 {
		t.Fatalf("%+v", gone)
	}
	if e := errorFromAnswer(502, []byte("<html>")); e.Code != "http_502" || e.retried() {
		t.Fatalf("%+v", e)
	}
	if !errorFromAnswer(503, []byte(`{"error":"busy"}`)).retried() {
		t.Fatal("busy is retried")
	}
}

func TestKeysAndQueriesAreEncoded(t *testing.T) {
	if got := EncodeKey([]byte("a/b c\x00")); got != "a/b%20c%00" {
		t.Fatal(got)
	}
	if got := query("/v1/kv", "prefix", "k/", "limit", "", "x", "1"); got != "/v1/kv?prefix=k%2F&x=1" {
		t.Fatal(got)
	}
	if got := string(DecodeBytes([]byte(`{"base64":"AP8="}`))); got != "\x00\xff" {
		t.Fatalf("%q", got)
	}
}

func TestMonotonicClockAdvances(t *testing.T) {
	a := MonotonicNs()
	b := MonotonicNs()
	if a == 0 || b < a {
		t.Fatalf("%d then %d", a, b)
	}
}

// TestConformance runs clients/conformance/scenario.json with this library's runner against a
// real cluster when REGENT_BIN names the regent binary (CI sets it; skipped otherwise).
func TestConformance(t *testing.T) {
	bin := os.Getenv("REGENT_BIN")
	if bin == "" {
		t.Skip("REGENT_BIN is not set")
	}
	dir := t.TempDir()
	runner := filepath.Join(dir, "regent-conformance")
	build := exec.Command("go", "build", "-o", runner, "./cmd/regent-conformance")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command("python3", "../conformance/run.py", "--regent", bin, "--name", "go", "--", runner)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("the conformance scenario failed: %v", err)
	}
}
