// Package hostproto is the wire protocol between the Azure Functions host and a custom
// handler, as docs/host-contract.md §1.4–1.8 describes it: the invocation request
// {"Data":…,"Metadata":…} with its double-encoded values, and the response
// {"Outputs":…,"Logs":…,"ReturnValue":…}.
package hostproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names the host sets on every invocation request (§1.4).
const (
	HeaderInvocationID = "X-Azure-Functions-InvocationId"
	HeaderHostVersion  = "X-Azure-Functions-HostVersion"
)

// MaxRequestBytes bounds an invocation request body. A 64 KiB queue message grows when it
// is double-encoded and its top-level properties are copied into Metadata (§1.5).
const MaxRequestBytes = 4 << 20

// InvokeRequest is the body of POST /{FunctionName} (§1.4).
type InvokeRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// InvokeResponse is the handler's answer (§1.8). Logs is never nil when encoded, so the
// body is never empty.
type InvokeResponse struct {
	Outputs     map[string]any `json:"Outputs,omitempty"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue,omitempty"`
}

// RequestError is a malformed invocation request.
type RequestError struct{ Problem string }

func (e *RequestError) Error() string { return "invocation request: " + e.Problem }

// DecodeRequest reads an invocation request body.
func DecodeRequest(r io.Reader) (*InvokeRequest, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		return nil, &RequestError{"reading body: " + err.Error()}
	}
	if len(body) > MaxRequestBytes {
		return nil, &RequestError{fmt.Sprintf("body is larger than %d bytes", MaxRequestBytes)}
	}
	return decodeBody(body)
}

// ReadRequest reads the invocation request body of r, sized by its Content-Length when
// it has one; otherwise it is DecodeRequest.
func ReadRequest(r *http.Request) (*InvokeRequest, error) {
	n := r.ContentLength
	if n < 0 || n > MaxRequestBytes {
		return DecodeRequest(r.Body)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.Body, body); err != nil {
		return nil, &RequestError{"reading body: " + err.Error()}
	}
	return decodeBody(body)
}

// decodeBody decodes a whole request body: fast (fastRequest) when it can, else with
// encoding/json, whose errors it words.
func decodeBody(body []byte) (*InvokeRequest, error) {
	if req, ok := fastRequest(body); ok {
		return req, nil
	}
	var req InvokeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &RequestError{"body is not {\"Data\":{…},\"Metadata\":{…}} JSON: " + err.Error()}
	}
	if req.Data == nil {
		return nil, &RequestError{"body has no \"Data\" object"}
	}
	return &req, nil
}

// QueueMessage returns the queue message bytes of the trigger binding named binding. The
// host sends a string trigger as a JSON string holding the JSON text of the string (so
// unmarshal twice), and a dataType "binary" trigger as one base64 string (§1.4.1, §1.5).
// A plain JSON object (as in the docs' sample) is accepted as the message text too.
func (r *InvokeRequest) QueueMessage(binding string) ([]byte, error) {
	raw, ok := r.Data[binding]
	if !ok {
		return nil, &RequestError{fmt.Sprintf("Data has no %q binding (keys: %s)", binding, keys(r.Data))}
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return bytes.Clone(trimmed), nil
	}
	if s1, s2, double, ok := doubleString(nil, trimmed); ok {
		if double {
			return s2, nil
		}
		if len(s1) == 0 || s1[0] != '"' {
			if b, err := base64.StdEncoding.AppendDecode(nil, s1); err == nil {
				return b, nil
			}
		}
	}
	var s1 string
	if err := json.Unmarshal(raw, &s1); err != nil {
		return nil, &RequestError{fmt.Sprintf("Data.%s is not a JSON string: %v", binding, err)}
	}
	if strings.HasPrefix(s1, `"`) {
		var s2 string
		if err := json.Unmarshal([]byte(s1), &s2); err != nil {
			return nil, &RequestError{fmt.Sprintf("Data.%s holds %q, which is not the JSON text of a string: %v", binding, trunc(s1, 40), err)}
		}
		return []byte(s2), nil
	}
	b, err := base64.StdEncoding.DecodeString(s1)
	if err != nil {
		return nil, &RequestError{fmt.Sprintf("Data.%s is neither a double-encoded string nor base64 (dataType binary): %v", binding, err)}
	}
	return b, nil
}

// MetaString decodes a double-encoded string Metadata value ("\"abc\"" → abc). A value
// that is a plain JSON string or a number is returned as its text; absent → "".
func (r *InvokeRequest) MetaString(key string) string {
	raw, ok := r.Metadata[key]
	if !ok {
		return ""
	}
	var buf [128]byte
	if s1, s2, double, ok := doubleString(buf[:], raw); ok {
		if double {
			return string(s2)
		}
		if len(s1) == 0 || s1[0] != '"' {
			return string(s1)
		}
	}
	var s1 string
	if err := json.Unmarshal(raw, &s1); err != nil {
		return strings.TrimSpace(string(raw))
	}
	var s2 string
	if strings.HasPrefix(s1, `"`) && json.Unmarshal([]byte(s1), &s2) == nil {
		return s2
	}
	return s1
}

// QueueMeta is the queue trigger's metadata (§1.5).
type QueueMeta struct {
	ID              string
	DequeueCount    int
	InsertionTime   time.Time
	ExpirationTime  time.Time
	NextVisibleTime time.Time
	PopReceipt      string
}

// QueueMetadata decodes the queue trigger metadata. Missing keys stay zero; malformed
// ones are errors naming the key.
func (r *InvokeRequest) QueueMetadata() (QueueMeta, error) {
	m := QueueMeta{ID: r.MetaString("Id"), PopReceipt: r.MetaString("PopReceipt")}
	if s := r.MetaString("DequeueCount"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return m, &RequestError{fmt.Sprintf("Metadata.DequeueCount %q is not an integer", trunc(s, 20))}
		}
		m.DequeueCount = n
	}
	for _, f := range [...]struct {
		key string
		dst *time.Time
	}{{"InsertionTime", &m.InsertionTime}, {"ExpirationTime", &m.ExpirationTime}, {"NextVisibleTime", &m.NextVisibleTime}} {
		key, dst := f.key, f.dst
		s := r.MetaString(key)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return m, &RequestError{fmt.Sprintf("Metadata.%s %q is not an ISO-8601 time", key, trunc(s, 40))}
		}
		*dst = t
	}
	return m, nil
}

// TimerInfo is the timer trigger's Data value (§1.6).
type TimerInfo struct {
	Schedule struct {
		AdjustForDST bool `json:"AdjustForDST"`
	} `json:"Schedule"`
	ScheduleStatus *struct {
		Last        time.Time `json:"Last"`
		Next        time.Time `json:"Next"`
		LastUpdated time.Time `json:"LastUpdated"`
	} `json:"ScheduleStatus"`
	IsPastDue bool `json:"IsPastDue"`
}

// Timer decodes the timer trigger binding named binding.
func (r *InvokeRequest) Timer(binding string) (*TimerInfo, error) {
	raw, ok := r.Data[binding]
	if !ok {
		return nil, &RequestError{fmt.Sprintf("Data has no %q binding (keys: %s)", binding, keys(r.Data))}
	}
	var ti TimerInfo
	if err := json.Unmarshal(raw, &ti); err != nil {
		return nil, &RequestError{fmt.Sprintf("Data.%s is not a TimerInfo object: %v", binding, err)}
	}
	return &ti, nil
}

// WriteResponse writes resp with status 200 and Content-Type application/json. The host
// fails an invocation whose body is not JSON (Go would sniff text/plain) and never
// completes one with an empty body (§1.8), so both are guaranteed here.
func WriteResponse(w http.ResponseWriter, resp *InvokeResponse) error {
	if resp.Logs == nil {
		resp.Logs = []string{}
	}
	bp := respBuf.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			respBuf.Put(bp)
		}
	}()
	body, ok := appendResponse((*bp)[:0], resp)
	if ok {
		*bp = body
	} else {
		var err error
		if body, err = json.Marshal(resp); err != nil {
			return fmt.Errorf("encode invocation response: %w", err)
		}
	}
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	return err
}

// contentTypeJSON is the Content-Type of every response (one shared, never changed slice).
var contentTypeJSON = []string{"application/json; charset=utf-8"}

// WriteFailure answers with a non-2xx status, which fails the invocation (the host then
// applies its retry and poison rules, §2.3). The host ignores the body; it is JSON for
// people reading it.
func WriteFailure(w http.ResponseWriter, status int, problem string) {
	body, _ := json.Marshal(map[string]any{"Logs": []string{problem}, "error": problem})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func keys(m map[string]json.RawMessage) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return "none"
	}
	return strings.Join(ks, ", ")
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
