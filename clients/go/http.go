package regent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// conn is regent's socket: one HTTP/1.1 connection per request (no pooling: a request
// that timed out never leaves a connection behind for the next).
type conn struct {
	socket string
}

func (c conn) client(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", c.socket)
			},
		},
	}
}

type answer struct {
	status  int
	headers http.Header
	body    []byte
}

func (a *answer) check() error {
	if a.status >= 200 && a.status < 300 {
		return nil
	}
	return errorFromAnswer(a.status, a.body)
}

func (a *answer) json() (map[string]interface{}, error) {
	var v map[string]interface{}
	if err := json.Unmarshal(a.body, &v); err != nil {
		return nil, &Error{Code: "bad_answer", Status: a.status, Message: err.Error()}
	}
	return v, nil
}

func unavailable(method, path, socket string, err error, sent bool) *Error {
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("%s %s on %s: %v", method, path,
		socket, err), Sent: sent, Timeout: timeout}
}

// request sends one request and reads the whole answer.
func (c conn) request(method, path string, body []byte, timeout time.Duration) (*answer, error) {
	req, err := http.NewRequest(method, "http://regent"+path, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Code: "bad_request", Message: err.Error()}
	}
	resp, err := c.client(timeout).Do(req)
	if err != nil {
		// A refused or missing socket sent nothing; anything later may have.
		sent := !(errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "connect:"))
		return nil, unavailable(method, path, c.socket, err, sent)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, unavailable(method, path, c.socket, err, true)
	}
	return &answer{status: resp.StatusCode, headers: resp.Header, body: data}, nil
}

// call is request, check and JSON.
func (c conn) call(method, path string, body []byte, timeout time.Duration) (map[string]interface{}, error) {
	a, err := c.request(method, path, body, timeout)
	if err != nil {
		return nil, err
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a.json()
}

// stream opens a streaming GET; the caller closes the body (which also cuts a blocked read).
func (c conn) stream(path string) (io.ReadCloser, error) {
	req, err := http.NewRequest("GET", "http://regent"+path, nil)
	if err != nil {
		return nil, &Error{Code: "bad_request", Message: err.Error()}
	}
	resp, err := c.client(0).Do(req)
	if err != nil {
		return nil, unavailable("GET", path, c.socket, err, true)
	}
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, errorFromAnswer(resp.StatusCode, data)
	}
	return resp.Body, nil
}

// query renders parameters (in order) after path.
func query(path string, params ...string) string {
	var b strings.Builder
	b.WriteString(path)
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for i := 0; i+1 < len(params); i += 2 {
		if params[i+1] == "" {
			continue
		}
		b.WriteString(sep + params[i] + "=" + url.QueryEscape(params[i+1]))
		sep = "&"
	}
	return b.String()
}

// EncodeKey percent-encodes a key for a path segment ("/" stays as it is).
func EncodeKey(key []byte) string {
	var b strings.Builder
	for _, c := range key {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
