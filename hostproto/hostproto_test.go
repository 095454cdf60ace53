package hostproto

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// The §1.5 example of docs/host-contract.md, byte for byte as the host would send it.
func TestQueueRequestContractExample(t *testing.T) {
	f, err := os.Open("testdata/queue-request.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req, err := DecodeRequest(f)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := req.QueueMessage("msg")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"orderId":"A-1001","qty":2,"customer":{"name":"Ann"},"tags":["x"]}`; string(msg) != want {
		t.Fatalf("message %s, want %s", msg, want)
	}
	m, err := req.QueueMetadata()
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "0d7c2a8e-9d55-4d1f-9d7e-6a0b1b2c3d4e" || m.DequeueCount != 1 || m.PopReceipt != "AgAAAAMAAAAAAAAAxLmJ8Q+b2gE=" {
		t.Fatalf("metadata %+v", m)
	}
	if !m.InsertionTime.Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) || m.ExpirationTime.IsZero() || m.NextVisibleTime.IsZero() {
		t.Fatalf("times %+v", m)
	}
	// JSON properties copied into Metadata keep the host's double encoding.
	if got := req.MetaString("orderId"); got != "A-1001" {
		t.Fatalf("orderId %q", got)
	}
	if got := req.MetaString("qty"); got != "2" {
		t.Fatalf("qty %q", got)
	}
}

func TestQueueMessageEncodings(t *testing.T) {
	cases := map[string]struct{ data, want string }{
		"string trigger":       {`"\"hello\""`, "hello"},
		"json text":            {`"\"{\\\"kind\\\":\\\"k\\\"}\""`, `{"kind":"k"}`},
		"binary dataType":      {`"aGVsbG8="`, "hello"},
		"docs-style object":    {`{"kind":"k"}`, `{"kind":"k"}`},
		"empty string trigger": {`"\"\""`, ""},
	}
	for name, c := range cases {
		req := &InvokeRequest{Data: map[string]json.RawMessage{"m": json.RawMessage(c.data)}}
		got, err := req.QueueMessage("m")
		if err != nil || string(got) != c.want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, c.want)
		}
	}
	for name, data := range map[string]string{
		"number":         `12`,
		"bad inner json": `"\"unterminated"`,
		"not base64":     `"hello world!"`,
	} {
		req := &InvokeRequest{Data: map[string]json.RawMessage{"m": json.RawMessage(data)}}
		_, err := req.QueueMessage("m")
		var re *RequestError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "Data.m") {
			t.Errorf("%s: want RequestError naming Data.m, got %v", name, err)
		}
	}
	req := &InvokeRequest{Data: map[string]json.RawMessage{"other": json.RawMessage(`"x"`)}}
	if _, err := req.QueueMessage("m"); err == nil || !strings.Contains(err.Error(), `no "m" binding (keys: other)`) {
		t.Fatalf("missing binding: %v", err)
	}
}

func TestQueueMetadataErrors(t *testing.T) {
	req := &InvokeRequest{Metadata: map[string]json.RawMessage{"DequeueCount": json.RawMessage(`"many"`)}}
	if _, err := req.QueueMetadata(); err == nil || !strings.Contains(err.Error(), "DequeueCount") {
		t.Fatalf("got %v", err)
	}
	req = &InvokeRequest{Metadata: map[string]json.RawMessage{"InsertionTime": json.RawMessage(`"yesterday"`)}}
	if _, err := req.QueueMetadata(); err == nil || !strings.Contains(err.Error(), "InsertionTime") {
		t.Fatalf("got %v", err)
	}
}

func TestTimerRequestContractExample(t *testing.T) {
	b, err := os.ReadFile("testdata/timer-request.json")
	if err != nil {
		t.Fatal(err)
	}
	req, err := DecodeRequest(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	ti, err := req.Timer("myTimer")
	if err != nil {
		t.Fatal(err)
	}
	if !ti.Schedule.AdjustForDST || ti.IsPastDue || ti.ScheduleStatus == nil ||
		!ti.ScheduleStatus.Next.Equal(time.Date(2024, 5, 1, 10, 15, 0, 0, time.UTC)) {
		t.Fatalf("timer %+v", ti)
	}
	null := `{"Data":{"t":{"Schedule":{"AdjustForDST":false},"ScheduleStatus":null,"IsPastDue":true}},"Metadata":{}}`
	req, _ = DecodeRequest(strings.NewReader(null))
	if ti, err := req.Timer("t"); err != nil || ti.ScheduleStatus != nil || !ti.IsPastDue {
		t.Fatalf("monitor off: %+v %v", ti, err)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	for body, want := range map[string]string{
		``:                                      "not {\"Data\"",
		`garbage`:                               "not {\"Data\"",
		`{"Metadata":{}}`:                       "no \"Data\" object",
		`{"Data":[1]}`:                          "not {\"Data\"",
		strings.Repeat("x", MaxRequestBytes+10): "larger than",
	} {
		_, err := DecodeRequest(strings.NewReader(body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.30q: got %v, want %q", body, err, want)
		}
	}
}

// §1.8: application/json content type and never an empty body.
func TestWriteResponse(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := WriteResponse(rec, &InvokeResponse{}); err != nil {
		t.Fatal(err)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("content type %q", ct)
	}
	if rec.Code != 200 || rec.Body.String() != `{"Logs":[]}` {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	WriteFailure(rec, 500, "boom")
	if rec.Code != 500 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") || !strings.Contains(rec.Body.String(), "boom") {
		t.Fatalf("failure %d %q", rec.Code, rec.Body.String())
	}
}
