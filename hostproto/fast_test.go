package hostproto

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The decoders the fast path replaced, kept as the reference it must agree with.

func oldDecode(body []byte) (*InvokeRequest, error) {
	var req InvokeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	if req.Data == nil {
		return nil, &RequestError{"no Data"}
	}
	return &req, nil
}

func oldQueueMessage(r *InvokeRequest, binding string) ([]byte, error) {
	raw, ok := r.Data[binding]
	if !ok {
		return nil, &RequestError{"no binding"}
	}
	trimmed := strings.TrimSpace(string(raw))
	if strings.HasPrefix(trimmed, "{") || strings.HasPrefix(trimmed, "[") {
		return []byte(trimmed), nil
	}
	var s1 string
	if err := json.Unmarshal(raw, &s1); err != nil {
		return nil, err
	}
	if strings.HasPrefix(s1, `"`) {
		var s2 string
		if err := json.Unmarshal([]byte(s1), &s2); err != nil {
			return nil, err
		}
		return []byte(s2), nil
	}
	return base64.StdEncoding.DecodeString(s1)
}

func oldMetaString(r *InvokeRequest, key string) string {
	raw, ok := r.Metadata[key]
	if !ok {
		return ""
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

// FuzzRequestFastPath: the fast request decoder, QueueMessage and MetaString agree with
// the encoding/json decoders they replaced on every body: same acceptance, same Data and
// Metadata, same message bytes and metadata strings.
func FuzzRequestFastPath(f *testing.F) {
	for _, name := range []string{"testdata/queue-request.json", "testdata/timer-request.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"Data":{"message":"aGVsbG8="},"Metadata":{"DequeueCount":"x"}}`,
		`{"Data":{"message":{"a":1}},"Metadata":null}`,
		`{"Data":{"m":"\"{\\\"k\\\":1}\""},"Metadata":{"Id":"\"abc\"","n":5,"s":"\"\\\"x\\\" \"","t":"\" x\""}}`,
		`{"data":{"m":1}}`, `{"Data":{"a":1},"DATA":{"b":2}}`, `{"Data":{"a":1},"Data":null}`, `{"Data":{"a":1,"a":2}}`,
		`{"D\u0061ta":{"m":1}}`, `{"Data":{"\u006d":"\"x\""}}`, `{"Data":{"m":"\"\\ud800\""}}`, `{"Data":[]}`, `[]`, `null`,
		`{"Data":{"m":"  "},"Other":{"Data":1}}`, ` {"Metadata":{},"Data":{}} `, `{"Data":{"m":"\"x\" "}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeRequest(bytes.NewReader(body))
		want, werr := oldDecode(body)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: DecodeRequest %v, encoding/json %v", body, err, werr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: DecodeRequest %q, encoding/json %q", body, got, want)
		}
		req := httptest.NewRequest("POST", "/f", bytes.NewReader(body))
		if viaHTTP, err := ReadRequest(req); err != nil || !reflect.DeepEqual(viaHTTP, want) {
			t.Fatalf("%q: ReadRequest %q %v", body, viaHTTP, err)
		}
		for k := range got.Data {
			m, err := got.QueueMessage(k)
			wm, werr := oldQueueMessage(want, k)
			if (err == nil) != (werr == nil) || err == nil && !bytes.Equal(m, wm) {
				t.Fatalf("%q: QueueMessage(%q) %q %v, encoding/json %q %v", body, k, m, err, wm, werr)
			}
		}
		for k := range got.Metadata {
			if s, ws := got.MetaString(k), oldMetaString(want, k); s != ws {
				t.Fatalf("%q: MetaString(%q) %q, encoding/json %q", body, k, s, ws)
			}
		}
	})
}

// FuzzResponseEncoding: WriteResponse writes what json.Marshal wrote for a queue
// function's answer.
func FuzzResponseEncoding(f *testing.F) {
	f.Add("job x: done", "succeeded", "outcome", true)
	f.Add("<&>\u2028\xff\"\\\n\b\f\x01", "", "", false)
	f.Fuzz(func(t *testing.T, log, value, key string, asMap bool) {
		for _, resp := range []*InvokeResponse{
			{Logs: []string{log, value}, ReturnValue: map[string]string{key: value, "outcome": log}},
			{Logs: []string{log}, ReturnValue: value},
			{ReturnValue: map[string]string(nil), Outputs: map[string]any{}},
			{Logs: nil},
			{Logs: []string{}, ReturnValue: map[string]any{key: asMap}},
		} {
			rec := httptest.NewRecorder()
			if err := WriteResponse(rec, resp); err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(resp) // with the Logs WriteResponse never leaves nil
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.Body.Bytes(); !bytes.Equal(got, want) {
				t.Fatalf("WriteResponse %s, json.Marshal %s", got, want)
			}
		}
	})
}
